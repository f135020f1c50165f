//! The request header list: collected and validated (RFC 9113 §8.2-8.3) while HPACK decodes it,
//! keeping only the fields the server uses.

use bytes::Bytes;

use super::{ContentType, Limits, Method, RequestHead};

/// Collects and validates a header list (RFC 9113 §8.2-8.3) while it is decoded.
pub(super) struct Fields {
    max_list: usize,
    max_fields: usize,
    list_bytes: usize,
    count: usize,
    pub(super) too_large: bool,
    pub(super) malformed: bool,
    pub(super) pseudo_seen: bool,
    regular_seen: bool,
    method: Option<Method>,
    scheme: bool,
    path: Option<String>,
    content_type: ContentType,
    pub(super) content_length: Option<u64>,
    grpc_timeout: Option<Bytes>,
    grpc_encoding: Option<Bytes>,
    authorization: Option<Bytes>,
    /// Length and case-folded hash of `:authority`, to compare a `host` field with, without
    /// keeping a copy.
    authority: Option<(usize, u64)>,
    request: bool,
}

impl Fields {
    pub(super) fn new(limits: &Limits, request: bool) -> Fields {
        Fields {
            max_list: limits.max_header_list_bytes as usize,
            max_fields: limits.max_header_fields,
            list_bytes: 0,
            count: 0,
            too_large: false,
            malformed: false,
            pseudo_seen: false,
            regular_seen: false,
            method: None,
            scheme: false,
            path: None,
            content_type: ContentType::Missing,
            content_length: None,
            grpc_timeout: None,
            grpc_encoding: None,
            authorization: None,
            authority: None,
            request,
        }
    }

    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        self.count += 1;
        self.list_bytes += name.len() + value.len() + 32;
        if self.count > self.max_fields || self.list_bytes > self.max_list {
            // Keep decoding (HPACK must stay in sync) but keep nothing more.
            self.too_large = true;
            return;
        }
        if !valid_value(value) {
            self.malformed = true;
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            self.pseudo_seen = true;
            if self.regular_seen || !self.request {
                self.malformed = true;
                return;
            }
            match pseudo {
                b"method" if self.method.is_none() => {
                    self.method = Some(match value {
                        b"POST" => Method::Post,
                        b"GET" => Method::Get,
                        b"HEAD" => Method::Head,
                        _ => Method::Other,
                    })
                }
                b"scheme" if !self.scheme => self.scheme = true,
                b"path" if self.path.is_none() => {
                    if value.is_empty() {
                        self.malformed = true;
                    }
                    self.path = Some(String::from_utf8_lossy(value).into_owned());
                }
                b"authority" => self.authority = Some((value.len(), folded_hash(value))),
                _ => self.malformed = true,
            }
            return;
        }
        self.regular_seen = true;
        if !valid_name(name) {
            self.malformed = true;
            return;
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => self.malformed = true,
            b"te" if value != b"trailers" => self.malformed = true,
            // A `host` naming another entity than `:authority` (RFC 9113 §8.3.1).
            b"host" if self.authority.is_some_and(|a| a != (value.len(), folded_hash(value))) => {
                self.malformed = true
            }
            b"content-type" => {
                self.content_type =
                    if is_grpc_proto(value) { ContentType::GrpcProto } else { ContentType::Other }
            }
            b"content-length" => {
                match std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()) {
                    Some(n) if self.content_length.is_none_or(|c| c == n) => {
                        self.content_length = Some(n)
                    }
                    _ => self.malformed = true,
                }
            }
            b"grpc-timeout" => self.grpc_timeout = Some(Bytes::copy_from_slice(value)),
            b"grpc-encoding" => self.grpc_encoding = Some(Bytes::copy_from_slice(value)),
            b"authorization" => self.authorization = Some(Bytes::copy_from_slice(value)),
            _ => {}
        }
    }

    /// A request has :method, :scheme and :path (RFC 9113 §8.3.1).
    pub(super) fn complete(&self) -> bool {
        self.method.is_some() && self.scheme && self.path.is_some()
    }

    pub(super) fn into_head(self) -> RequestHead {
        RequestHead {
            method: self.method.unwrap_or(Method::Other),
            path: self.path.unwrap_or_default(),
            content_type: self.content_type,
            grpc_timeout: self.grpc_timeout,
            grpc_encoding: self.grpc_encoding,
            authorization: self.authorization,
        }
    }
}

/// A field name as RFC 9113 §8.2.1 allows it in a regular field: not empty, and no byte in
/// 0x00-0x20, 0x41-0x5a (uppercase), 0x7f-0xff or `:`.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| b > 0x20 && b < 0x7f && b != b':' && !b.is_ascii_uppercase())
}

/// A field value as RFC 9113 §8.2.1 allows it: no NUL, CR or LF, and no leading or trailing
/// space or tab.
fn valid_value(value: &[u8]) -> bool {
    let edge_ok = |b: Option<&u8>| !matches!(b, Some(b' ' | b'\t'));
    edge_ok(value.first())
        && edge_ok(value.last())
        && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
}

/// FNV-1a of the ASCII-lowercased bytes: compares a `host` with `:authority` case-insensitively.
fn folded_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

/// True for the content-types of gRPC with protobuf messages: `application/grpc` and
/// `application/grpc+proto`, optionally with parameters. A bare prefix match would also take
/// gRPC-Web (`application/grpc-web...`) and JSON-coded gRPC (`+json`), which this server cannot
/// decode; those get HTTP 415 instead.
pub fn is_grpc_proto(content_type: &[u8]) -> bool {
    let Some(rest) = content_type.strip_prefix(b"application/grpc") else { return false };
    let rest = rest.strip_prefix(b"+proto").unwrap_or(rest);
    rest.is_empty() || rest.starts_with(b";")
}
