//! `cargo +nightly fuzz run http2_connection`: see `pairdb::rpc::http2::fuzzing::connection`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pairdb::rpc::http2::fuzzing::connection(data));
