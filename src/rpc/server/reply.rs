//! Writing replies: the response headers, a message with its trailers, Trailers-Only statuses
//! and plain HTTP errors.

use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::rpc::status::{Code, Status};

pub(super) fn grpc_response() -> Response<()> {
    let mut resp = Response::new(());
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

pub(super) fn status_trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(3);
    let mut status = status.clone();
    if !status.is_ok() && status.error_code.is_none() {
        // Every error carries a PairDB error name; transport-level ones use the gRPC code's name.
        status.error_code = Some(status.code.name());
    }
    status.write_headers(&mut trailers);
    trailers
}

pub(super) fn send_reply(respond: &mut SendResponse<Bytes>, reply: Bytes) {
    let Ok(mut stream) = respond.send_response(grpc_response(), false) else { return };
    if stream.send_data(reply, false).is_ok() {
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = stream.send_trailers(trailers);
    }
}

/// Sends `status` as a Trailers-Only reply: one HEADERS frame with END_STREAM.
pub(super) fn send_status(respond: &mut SendResponse<Bytes>, status: &Status) {
    let mut resp = grpc_response();
    resp.headers_mut().extend(status_trailers(status));
    if status.code == Code::UNIMPLEMENTED {
        resp.headers_mut().insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    }
    let _ = respond.send_response(resp, true);
}

pub(super) fn send_http_error(respond: &mut SendResponse<Bytes>, code: StatusCode) {
    let mut resp = Response::new(());
    *resp.status_mut() = code;
    let _ = respond.send_response(resp, true);
}
