fn main() {
    let fds = protox::compile(["pairdb/coordinator/v1/coordinator.proto"], ["../../../proto"]).expect("protos compile");
    tonic_prost_build::configure().build_client(false).compile_fds(fds).expect("codegen");
}
