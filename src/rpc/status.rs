//! gRPC status: the code, the message and PairDB's `pairdb-error-code` trailer.
//!
//! [`Code`] is a newtype over the wire integer rather than an enum, so a code we do not know that a
//! peer sends survives a round trip unchanged. This module also owns the header encoding of a
//! status (`grpc-status`, percent-encoded `grpc-message`, `pairdb-error-code`) and the mapping from
//! HTTP statuses to gRPC codes that the gRPC HTTP/2 spec gives for replies without `grpc-status`.

use std::{borrow::Cow, fmt};

use http::{HeaderMap, HeaderValue};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::PairError;

/// Trailer that carries the PairDB error name next to the gRPC status.
pub const ERROR_CODE_HEADER: &str = "pairdb-error-code";
/// Trailer that carries a retry hint, in milliseconds, next to `RATE_LIMITED`.
pub const RETRY_AFTER_HEADER: &str = "pairdb-retry-after-ms";

/// A gRPC status code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub i32);

impl Code {
    pub const OK: Code = Code(0);
    pub const CANCELLED: Code = Code(1);
    pub const UNKNOWN: Code = Code(2);
    pub const INVALID_ARGUMENT: Code = Code(3);
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    pub const NOT_FOUND: Code = Code(5);
    pub const ALREADY_EXISTS: Code = Code(6);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    pub const FAILED_PRECONDITION: Code = Code(9);
    pub const ABORTED: Code = Code(10);
    pub const OUT_OF_RANGE: Code = Code(11);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const DATA_LOSS: Code = Code(15);
    pub const UNAUTHENTICATED: Code = Code(16);

    /// The canonical upper-case name, or `CODE(n)` for codes outside the spec.
    pub fn name(self) -> Cow<'static, str> {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        match usize::try_from(self.0).ok().and_then(|i| NAMES.get(i)) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("CODE({})", self.0)),
        }
    }

    /// The HTTP status that stands for this code in an HTTP/JSON API, as grpc-gateway maps them
    /// (`HTTPStatusFromCode`): the inverse direction of [`Status::from_http_status`].
    pub fn http_status(self) -> u16 {
        match self {
            Code::OK => 200,
            Code::CANCELLED => 499,
            Code::INVALID_ARGUMENT | Code::FAILED_PRECONDITION | Code::OUT_OF_RANGE => 400,
            Code::UNAUTHENTICATED => 401,
            Code::PERMISSION_DENIED => 403,
            Code::NOT_FOUND => 404,
            Code::ALREADY_EXISTS | Code::ABORTED => 409,
            Code::RESOURCE_EXHAUSTED => 429,
            Code::UNIMPLEMENTED => 501,
            Code::UNAVAILABLE => 503,
            Code::DEADLINE_EXCEEDED => 504,
            // UNKNOWN, INTERNAL, DATA_LOSS and codes outside the spec.
            _ => 500,
        }
    }

    /// The pre-encoded `grpc-status` header value.
    fn header_value(self) -> HeaderValue {
        const VALUES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        match usize::try_from(self.0).ok().and_then(|i| VALUES.get(i)) {
            Some(v) => HeaderValue::from_static(v),
            None => HeaderValue::from(self.0),
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A gRPC error (or OK) status with its message and optional PairDB error name.
#[derive(Clone, PartialEq, Eq)]
pub struct Status {
    /// The gRPC code.
    pub code: Code,
    /// Human-readable text, sent percent-encoded in `grpc-message`.
    pub message: String,
    /// PairDB's error name, sent in `pairdb-error-code` (for example `TENANT_NOT_FOUND`).
    pub error_code: Option<Cow<'static, str>>,
    /// A retry hint, sent in `pairdb-retry-after-ms` (set for `RATE_LIMITED`).
    pub retry_after_ms: Option<u64>,
}

macro_rules! constructors {
    ($($fn_name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($code), "` status with this message.")]
            pub fn $fn_name(message: impl Into<String>) -> Status {
                Status::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with no PairDB error name.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), error_code: None, retry_after_ms: None }
    }

    /// Adds the PairDB error name sent in `pairdb-error-code`.
    pub fn with_error_code(mut self, error_code: &'static str) -> Self {
        self.error_code = Some(Cow::Borrowed(error_code));
        self
    }

    constructors! {
        cancelled => CANCELLED,
        unknown => UNKNOWN,
        invalid_argument => INVALID_ARGUMENT,
        deadline_exceeded => DEADLINE_EXCEEDED,
        not_found => NOT_FOUND,
        already_exists => ALREADY_EXISTS,
        permission_denied => PERMISSION_DENIED,
        resource_exhausted => RESOURCE_EXHAUSTED,
        failed_precondition => FAILED_PRECONDITION,
        aborted => ABORTED,
        unimplemented => UNIMPLEMENTED,
        internal => INTERNAL,
        unavailable => UNAVAILABLE,
        unauthenticated => UNAUTHENTICATED,
    }

    /// True for `grpc-status: 0`.
    pub fn is_ok(&self) -> bool {
        self.code == Code::OK
    }

    /// Writes `grpc-status`, `grpc-message` (when non-empty) and `pairdb-error-code` (when set).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("grpc-status", self.code.header_value());
        if !self.message.is_empty() {
            let encoded = utf8_percent_encode(&self.message, MESSAGE_ENCODE_SET).to_string();
            if let Ok(v) = HeaderValue::try_from(encoded) {
                headers.insert("grpc-message", v);
            }
        }
        if let Some(error_code) = &self.error_code {
            if let Ok(v) = HeaderValue::try_from(error_code.as_ref()) {
                headers.insert(ERROR_CODE_HEADER, v);
            }
        }
        if let Some(ms) = self.retry_after_ms {
            headers.insert(RETRY_AFTER_HEADER, HeaderValue::from(ms));
        }
    }

    /// Calls `field(name, value)` for each of the fields [`Status::write_headers`] writes, in
    /// the same order and encoding, without building a `HeaderMap`.
    pub fn write_fields(&self, mut field: impl FnMut(&[u8], &[u8])) {
        let code = self.code.header_value();
        field(b"grpc-status", code.as_bytes());
        if !self.message.is_empty() {
            let encoded = utf8_percent_encode(&self.message, MESSAGE_ENCODE_SET).to_string();
            field(b"grpc-message", encoded.as_bytes());
        }
        if let Some(error_code) = &self.error_code {
            if HeaderValue::try_from(error_code.as_ref()).is_ok() {
                field(ERROR_CODE_HEADER.as_bytes(), error_code.as_bytes());
            }
        }
        if let Some(ms) = self.retry_after_ms {
            field(RETRY_AFTER_HEADER.as_bytes(), ms.to_string().as_bytes());
        }
    }

    /// Reads a status from headers or trailers; `None` when there is no `grpc-status`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Status> {
        let raw = headers.get("grpc-status")?;
        let code = raw
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map(Code)
            .unwrap_or(Code::UNKNOWN);
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        let error_code = headers
            .get(ERROR_CODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| Cow::Owned(s.to_owned()));
        let retry_after_ms = headers
            .get(RETRY_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        Some(Status { code, message, error_code, retry_after_ms })
    }

    /// The gRPC code for an HTTP reply that carries no `grpc-status`, per the gRPC HTTP/2 spec
    /// ("HTTP to gRPC Status Code Mapping").
    pub fn from_http_status(status: http::StatusCode) -> Status {
        let code = match status.as_u16() {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        };
        Status::new(code, format!("HTTP status {status} without grpc-status"))
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(error_code) = &self.error_code {
            write!(f, " [{error_code}]")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Status {}

impl From<&PairError> for Status {
    /// THE place a PairDB error becomes a gRPC status and its `pairdb-error-code`: one arm per
    /// error, so a new error cannot be added without choosing its status here.
    fn from(e: &PairError) -> Status {
        use PairError as E;
        let (code, error_code) = match e {
            E::InvalidRequest(_) => (Code::INVALID_ARGUMENT, "INVALID_REQUEST"),
            E::KeyTooLarge { .. } => (Code::INVALID_ARGUMENT, "KEY_TOO_LARGE"),
            E::ValueTooLarge { .. } => (Code::INVALID_ARGUMENT, "VALUE_TOO_LARGE"),
            E::InvalidReplicationFactor { registered: None, .. } => {
                (Code::INVALID_ARGUMENT, "INVALID_REPLICATION_FACTOR")
            }
            E::InvalidReplicationFactor { registered: Some(_), .. } => {
                (Code::FAILED_PRECONDITION, "INVALID_REPLICATION_FACTOR")
            }
            E::TenantNotFound { .. } => (Code::NOT_FOUND, "TENANT_NOT_FOUND"),
            E::KeyNotFound { .. } => (Code::NOT_FOUND, "KEY_NOT_FOUND"),
            E::NodeNotFound { .. } => (Code::NOT_FOUND, "NODE_NOT_FOUND"),
            E::MigrationNotFound { .. } => (Code::NOT_FOUND, "MIGRATION_NOT_FOUND"),
            E::TenantExists(_) => (Code::ALREADY_EXISTS, "TENANT_EXISTS"),
            E::NodeExists(_) => (Code::ALREADY_EXISTS, "NODE_EXISTS"),
            E::NodeInUse(_) => (Code::FAILED_PRECONDITION, "NODE_IN_USE"),
            E::MigrationInProgress(_) => (Code::FAILED_PRECONDITION, "MIGRATION_IN_PROGRESS"),
            E::MigrationNotCancellable(_) => {
                (Code::FAILED_PRECONDITION, "MIGRATION_NOT_CANCELLABLE")
            }
            E::PlacementStale(_) => (Code::UNAVAILABLE, "PLACEMENT_STALE"),
            E::QuorumNotReached { .. } => (Code::UNAVAILABLE, "QUORUM_NOT_REACHED"),
            E::IdempotencyKeyConflict { .. } => {
                (Code::FAILED_PRECONDITION, "IDEMPOTENCY_KEY_CONFLICT")
            }
            E::IdempotencyInProgress => (Code::ABORTED, "IDEMPOTENCY_IN_PROGRESS"),
            E::IdempotencyUnavailable => (Code::UNAVAILABLE, "IDEMPOTENCY_UNAVAILABLE"),
            E::MetadataUnavailable(_) => (Code::UNAVAILABLE, "METADATA_UNAVAILABLE"),
            E::MetadataCorrupt(_) => (Code::INTERNAL, "METADATA_CORRUPT"),
            E::StorageUnavailable(_) => (Code::UNAVAILABLE, "STORAGE_UNAVAILABLE"),
            E::StorageCorrupt(_) => (Code::INTERNAL, "STORAGE_CORRUPT"),
            E::BatchTooLarge(_) => (Code::INVALID_ARGUMENT, "BATCH_TOO_LARGE"),
            E::MessageTooLarge(_) => (Code::RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE"),
            E::UnknownMethod(_) => (Code::UNIMPLEMENTED, "UNKNOWN_METHOD"),
            E::UnsupportedEncoding(_) => (Code::UNIMPLEMENTED, "UNSUPPORTED_ENCODING"),
            E::ServiceNotFound(_) => (Code::NOT_FOUND, "SERVICE_NOT_FOUND"),
            E::DeadlineExceeded(_) => (Code::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
            E::Unauthorized(_) => (Code::UNAUTHENTICATED, "UNAUTHORIZED"),
            E::Forbidden(_) => (Code::PERMISSION_DENIED, "FORBIDDEN"),
            E::RateLimited { .. } => (Code::RESOURCE_EXHAUSTED, "RATE_LIMITED"),
            E::Internal(_) => (Code::INTERNAL, "INTERNAL"),
        };
        let mut status = Status::new(code, e.to_string()).with_error_code(error_code);
        if let E::RateLimited { retry_after_ms, .. } = e {
            status.retry_after_ms = Some(*retry_after_ms);
        }
        status
    }
}

impl From<PairError> for Status {
    fn from(e: PairError) -> Status {
        Status::from(&e)
    }
}

/// The gRPC spec's percent-encoding for `grpc-message`: everything outside printable ASCII
/// (0x20-0x7E), and `%` itself.
const MESSAGE_ENCODE_SET: &AsciiSet = &CONTROLS.add(b'%');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_percent_encoded() {
        let status =
            Status::not_found("tenant «t1» 100% gone\n").with_error_code("TENANT_NOT_FOUND");
        let mut headers = HeaderMap::new();
        status.write_headers(&mut headers);
        assert_eq!(headers["grpc-status"], "5");
        assert_eq!(headers["grpc-message"], "tenant %C2%ABt1%C2%BB 100%25 gone%0A");
        assert_eq!(headers[ERROR_CODE_HEADER], "TENANT_NOT_FOUND");
        assert_eq!(Status::from_headers(&headers), Some(status));
    }

    #[test]
    fn rate_limited_carries_its_retry_hint() {
        let e =
            PairError::RateLimited { tenant_id: "a".into(), reason: "bytes", retry_after_ms: 42 };
        let status = Status::from(&e);
        assert_eq!(status.code, Code::RESOURCE_EXHAUSTED);
        assert_eq!(status.error_code.as_deref(), Some("RATE_LIMITED"));
        let mut headers = HeaderMap::new();
        status.write_headers(&mut headers);
        assert_eq!(headers[RETRY_AFTER_HEADER], "42");
        let mut fields = Vec::new();
        status.write_fields(|n, v| fields.push((n.to_vec(), v.to_vec())));
        assert!(fields.contains(&(RETRY_AFTER_HEADER.as_bytes().to_vec(), b"42".to_vec())));
        assert_eq!(Status::from_headers(&headers), Some(status));
    }

    #[test]
    fn unknown_codes_survive() {
        let mut headers = HeaderMap::new();
        Status::new(Code(42), "").write_headers(&mut headers);
        assert_eq!(Status::from_headers(&headers).map(|s| s.code), Some(Code(42)));
        assert_eq!(Code(42).name(), "CODE(42)");
    }

    #[test]
    fn http_status_of_codes() {
        let cases = [
            (Code::OK, 200),
            (Code::INVALID_ARGUMENT, 400),
            (Code::FAILED_PRECONDITION, 400),
            (Code::NOT_FOUND, 404),
            (Code::ALREADY_EXISTS, 409),
            (Code::ABORTED, 409),
            (Code::RESOURCE_EXHAUSTED, 429),
            (Code::UNAVAILABLE, 503),
            (Code::DEADLINE_EXCEEDED, 504),
            (Code::UNIMPLEMENTED, 501),
            (Code::INTERNAL, 500),
            (Code::UNAUTHENTICATED, 401),
            (Code::PERMISSION_DENIED, 403),
            (Code(42), 500),
        ];
        for (code, want) in cases {
            assert_eq!(code.http_status(), want, "{code}");
        }
    }

    #[test]
    fn http_status_mapping() {
        let cases = [(400, Code::INTERNAL), (404, Code::UNIMPLEMENTED), (503, Code::UNAVAILABLE)];
        for (http, want) in cases {
            let got = Status::from_http_status(http::StatusCode::from_u16(http).unwrap()).code;
            assert_eq!(got, want, "{http}");
        }
    }
}
