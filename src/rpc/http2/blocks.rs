//! Header blocks the server sends, HPACK-encoded without the dynamic table: the common ones are
//! built once, statuses on demand.

use std::sync::OnceLock;

use super::hpack;
use crate::rpc::status::{Code, Status};

/// Static table index of `:status: 200`.
const STATUS_200: usize = 8;
/// Static table index of the name `:status`.
const STATUS_NAME: usize = 8;
/// Static table index of the name `content-type`.
const CONTENT_TYPE_NAME: usize = 31;

/// `:status: 200`, `content-type: application/grpc`: the headers of every gRPC reply.
pub fn response_headers() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut block = Vec::with_capacity(24);
        hpack::encode_indexed(STATUS_200, &mut block);
        hpack::encode_literal_indexed_name(CONTENT_TYPE_NAME, b"application/grpc", &mut block);
        block
    })
}

/// `grpc-status: 0`: the trailers of every successful unary reply.
pub fn ok_trailers() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut block = Vec::with_capacity(16);
        hpack::encode_literal(b"grpc-status", b"0", &mut block);
        block
    })
}

/// The trailers carrying `status`: `grpc-status`, `grpc-message` when there is text, and
/// `pairdb-error-code` (every error carries one; transport-level ones use the code's name).
pub fn status_trailers(status: &Status, block: &mut Vec<u8>) {
    let mut status_named;
    let status = if !status.is_ok() && status.error_code.is_none() {
        status_named = status.clone();
        status_named.error_code = Some(status.code.name());
        &status_named
    } else {
        status
    };
    status.write_fields(|name, value| hpack::encode_literal(name, value, block));
}

/// A Trailers-Only reply: response headers and the status in one block.
pub fn trailers_only(status: &Status) -> Vec<u8> {
    let mut block = Vec::with_capacity(64 + status.message.len());
    block.extend_from_slice(response_headers());
    status_trailers(status, &mut block);
    if status.code == Code::UNIMPLEMENTED {
        hpack::encode_literal(b"grpc-accept-encoding", b"identity", &mut block);
    }
    block
}

/// A plain HTTP reply's headers: `:status` and, when given, a content-type.
pub fn http_headers(code: u16, content_type: Option<&[u8]>) -> Vec<u8> {
    let mut block = Vec::with_capacity(32);
    if code == 200 {
        hpack::encode_indexed(STATUS_200, &mut block);
    } else {
        hpack::encode_literal_indexed_name(STATUS_NAME, code.to_string().as_bytes(), &mut block);
    }
    if let Some(ct) = content_type {
        hpack::encode_literal_indexed_name(CONTENT_TYPE_NAME, ct, &mut block);
    }
    block
}
