//! Routing `/package.Service/Method` paths to handlers, and the API of a streaming call.

use std::{
    future::{poll_fn, Future},
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    time::{Duration, Instant},
};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use h2::{server::SendResponse, RecvStream, SendStream};
use prost::Message;

use super::{
    native::StreamHandle,
    read_message,
    reply::{grpc_response, send_status, status_trailers},
};
use crate::{
    rpc::RpcMetrics,
    rpc::{framing, status::Status},
};

/// What a handler knows about its call.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// When the client stops waiting (from `grpc-timeout`), if it said.
    pub deadline: Option<Instant>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The raw `authorization` metadata, when the call carried one (never logged).
    pub authorization: Option<Bytes>,
}

type UnaryFn =
    Box<dyn Fn(Bytes, CallContext) -> Pin<Box<dyn Future<Output = Result<Bytes, Status>>>>>;
type StreamingFn = Box<dyn Fn(StreamingCall) -> Pin<Box<dyn Future<Output = ()>>>>;

pub(super) enum Route {
    Unary(UnaryFn),
    Streaming(StreamingFn),
}

/// Maps `/package.Service/Method` paths to handlers. Built once per core: handlers capture that
/// core's state (`Rc`), never another core's.
#[derive(Default)]
pub struct Router {
    pub(super) routes: AHashMap<String, Route>,
    /// This core's call counters and latencies, when the server records them.
    pub(super) metrics: Option<Rc<RpcMetrics>>,
    /// The bearer credential every call must carry, when one is required.
    bearer: Option<BearerGuard>,
    /// A check of the credential of calls to some paths, when one is set.
    token_check: Option<TokenCheck>,
}

type CheckFn = Box<dyn Fn(Option<&[u8]>) -> Result<(), Status>>;

/// Paths whose calls must pass `check` (given the raw `authorization`) before routing.
struct TokenCheck {
    prefixes: Vec<String>,
    check: CheckFn,
}

/// A required `authorization: Bearer <secret>`, and the paths exempt from it.
struct BearerGuard {
    secret: Vec<u8>,
    open_prefixes: Vec<String>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a unary method. The request is decoded before `handler` runs (undecodable
    /// protobuf answers INVALID_ARGUMENT) and the reply is encoded after.
    pub fn unary<Req, Resp, F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Req, CallContext) -> Fut + 'static,
        Fut: Future<Output = Result<Resp, Status>> + 'static,
    {
        let handler = Rc::new(handler);
        let erased: UnaryFn = Box::new(move |bytes, ctx| {
            let handler = handler.clone();
            Box::pin(async move {
                let req = Req::decode(bytes).map_err(|e| {
                    Status::from(crate::error::PairError::InvalidRequest(format!(
                        "request is not a valid {}: {e}",
                        std::any::type_name::<Req>().rsplit("::").next().unwrap_or("message")
                    )))
                })?;
                let resp = handler(req, ctx).await?;
                Ok(framing::encode_to_bytes(&resp))
            })
        });
        self.routes.insert(path.to_owned(), Route::Unary(erased));
        self
    }

    /// Registers a streaming method; the handler owns the whole exchange.
    pub fn streaming<F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(StreamingCall) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.routes.insert(
            path.to_owned(),
            Route::Streaming(Box::new(move |call| Box::pin(handler(call)))),
        );
        self
    }

    /// Fully-qualified names of the services with at least one method, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .keys()
            .filter_map(|p| p.trim_start_matches('/').split_once('/').map(|(s, _)| s.to_owned()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Records every routed unary call (method, status, latency) and the calls in flight in
    /// `metrics`, this core's.
    pub fn with_metrics(mut self, metrics: Rc<RpcMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: Router) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// Requires every call, except to paths starting with one of `open_prefixes`, to carry
    /// `authorization: Bearer <secret>`; others are refused with UNAUTHENTICATED
    /// (`UNAUTHORIZED`) before their handler runs, and counted. The comparison takes the same
    /// time wherever the given credential differs.
    pub fn require_bearer(mut self, secret: &[u8], open_prefixes: &[&str]) -> Self {
        self.bearer = Some(BearerGuard {
            secret: secret.to_vec(),
            open_prefixes: open_prefixes.iter().map(|p| (*p).to_owned()).collect(),
        });
        self
    }

    /// Requires every call to a path starting with one of `prefixes` to pass `check`, given
    /// its raw `authorization` metadata, before it is routed; a refusal (the `Err` status) is
    /// counted as for [`Router::require_bearer`].
    pub fn check_token_for(
        mut self,
        prefixes: &[&str],
        check: impl Fn(Option<&[u8]>) -> Result<(), Status> + 'static,
    ) -> Self {
        self.token_check = Some(TokenCheck {
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            check: Box::new(check),
        });
        self
    }

    /// Whether a call to `path` with this `authorization` may run: `Err` with the status to
    /// answer when a required credential is missing or wrong (counted in the metrics).
    pub fn authorize(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Status> {
        if let Some(tc) = &self.token_check {
            if tc.prefixes.iter().any(|p| path.starts_with(p.as_str())) {
                let checked = (tc.check)(authorization);
                if checked.is_err() {
                    if let Some(metrics) = self.metrics.as_deref() {
                        metrics.record_unauthenticated();
                    }
                }
                return checked;
            }
        }
        let Some(guard) = &self.bearer else { return Ok(()) };
        if guard.open_prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            return Ok(());
        }
        let why = match authorization.map(bearer_token) {
            None => "this storage node requires the cluster credential (authorization: Bearer)",
            Some(None) => "the authorization metadata is not a Bearer credential",
            Some(Some(token)) if constant_time_eq(token, &guard.secret) => return Ok(()),
            Some(Some(_)) => "the cluster credential is wrong",
        };
        if let Some(metrics) = self.metrics.as_deref() {
            metrics.record_unauthenticated();
        }
        Err(Status::from(crate::error::PairError::Unauthorized(why.into())))
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive), None for another scheme.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
}

/// Compares `given` with `expected` in time that depends only on `expected`'s length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!*e);
    }
    std::hint::black_box(diff) == 0
}

/// One streaming call: read request messages, send reply messages, finish with a status.
pub struct StreamingCall {
    io: CallIo,
    max_message_bytes: usize,
    /// Call context, as for unary calls.
    pub ctx: CallContext,
}

/// The HTTP/2 layer under a streaming call.
enum CallIo {
    H2 {
        body: RecvStream,
        respond: SendResponse<Bytes>,
        send: Option<SendStream<Bytes>>,
        buf: BytesMut,
    },
    Native(StreamHandle),
}

impl StreamingCall {
    pub(super) fn h2(
        body: RecvStream,
        respond: SendResponse<Bytes>,
        max_message_bytes: usize,
        ctx: CallContext,
    ) -> StreamingCall {
        StreamingCall {
            io: CallIo::H2 { body, respond, send: None, buf: BytesMut::new() },
            max_message_bytes,
            ctx,
        }
    }

    pub(super) fn native(
        handle: StreamHandle,
        max_message_bytes: usize,
        ctx: CallContext,
    ) -> StreamingCall {
        StreamingCall { io: CallIo::Native(handle), max_message_bytes, ctx }
    }

    /// The next request message, `Ok(None)` once the client half-closed.
    pub async fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        match &mut self.io {
            CallIo::H2 { body, buf, .. } => read_message(body, buf, self.max_message_bytes).await,
            CallIo::Native(handle) => handle.next_message().await,
        }
    }

    /// Sends one reply message (headers go out before the first).
    pub fn send_message<M: Message>(&mut self, msg: &M) -> Result<(), Status> {
        match &mut self.io {
            CallIo::H2 { respond, send, .. } => {
                if send.is_none() {
                    let stream = respond
                        .send_response(grpc_response(), false)
                        .map_err(|e| Status::cancelled(format!("client went away: {e}")))?;
                    *send = Some(stream);
                }
                let Some(send) = send.as_mut() else { unreachable!("set just above") };
                send.send_data(framing::encode_to_bytes(msg), false)
                    .map_err(|e| Status::cancelled(format!("client went away: {e}")))
            }
            CallIo::Native(handle) => handle.send(framing::encode_to_bytes(msg)),
        }
    }

    /// Waits `period`, or less if the client cancels the call first; true when it cancelled.
    pub async fn wait_cancelled_or(&mut self, period: Duration) -> bool {
        match &mut self.io {
            CallIo::H2 { respond, send, .. } => {
                let cancelled = poll_fn(|cx| match send.as_mut() {
                    Some(send) => send.poll_reset(cx).map(|_| true),
                    None => respond.poll_reset(cx).map(|_| true),
                });
                futures_lite::future::or(cancelled, async {
                    glommio::timer::sleep(period).await;
                    false
                })
                .await
            }
            CallIo::Native(handle) => handle.wait_cancelled_or(period).await,
        }
    }

    /// Ends the call with `status` (Trailers-Only when no message was sent).
    pub fn finish(self, status: Status) {
        match self.io {
            CallIo::H2 { mut respond, mut send, .. } => match send.as_mut() {
                Some(send) => {
                    let _ = send.send_trailers(status_trailers(&status));
                }
                None => send_status(&mut respond, &status),
            },
            CallIo::Native(handle) => handle.finish(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_guard() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let router = Router::new()
            .require_bearer(secret, &["/grpc.health.v1.Health/"])
            .with_metrics(Rc::new(RpcMetrics::default()));
        let path = "/pairdb.storage.v1.StorageService/Write";
        let good = [b"Bearer ".as_slice(), secret].concat();
        let lower = [b"bearer  ".as_slice(), secret].concat();
        assert!(router.authorize(path, Some(&good)).is_ok());
        assert!(router.authorize(path, Some(&lower)).is_ok());
        for bad in [
            None,
            Some(secret.as_slice()),
            Some(b"Bearer".as_slice()),
            Some(b"Bearer 0123456789abcdef0123456789abcdeX".as_slice()),
            Some(b"Bearer 0123456789abcdef0123456789abcdef0".as_slice()),
            Some(b"Basic 0123456789abcdef0123456789abcdef".as_slice()),
        ] {
            let status = router.authorize(path, bad).unwrap_err();
            assert_eq!(status.code, crate::rpc::status::Code::UNAUTHENTICATED);
        }
        assert!(router.authorize("/grpc.health.v1.Health/Check", None).is_ok());
        assert_eq!(router.metrics.as_ref().unwrap().unauthenticated(), 6);
        assert!(Router::new().authorize(path, None).is_ok());
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
