//! Compiles the coordinator's proto (client side only) with protox: no system `protoc`.

fn main() {
    let proto_root = "../../proto";
    let file = "pairdb/coordinator/v1/coordinator.proto";
    println!("cargo:rerun-if-changed={proto_root}/{file}");
    let fds = protox::compile([file], [proto_root]).expect("coordinator.proto compiles");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // Clocks are compared and kept in the client's own types, which are `Eq`.
        .type_attribute(".pairdb.coordinator.v1.VectorClock", "#[derive(Eq)]")
        .compile_fds(fds)
        .expect("client code generation");
}
