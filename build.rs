//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no system `protoc` is needed)
//! and writes the prost types plus the encoded file descriptor set that gRPC reflection serves.

use std::{env, fs, path::PathBuf};

use protox::prost::Message as _;

const PROTOS: &[&str] = &[
    "pairdb/coordinator/v1/coordinator.proto",
    "pairdb/storage/v1/storage.proto",
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let fds = protox::compile(PROTOS, ["proto"]).expect("proto/ compiles");
    fs::write(out.join("descriptor.bin"), fds.encode_to_vec()).expect("write descriptor set");
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds).expect("prost generates Rust from the descriptor set");
}
