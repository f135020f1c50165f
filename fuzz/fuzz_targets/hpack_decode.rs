//! `cargo +nightly fuzz run hpack_decode`: see `pairdb::rpc::http2::fuzzing::hpack`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pairdb::rpc::http2::fuzzing::hpack(data));
