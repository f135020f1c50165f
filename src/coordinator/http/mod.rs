//! The HTTP/JSON API (`http_api.port`; off by default): HTTP/1.1 with keep-alive, served on every
//! request core from its own SO_REUSEPORT listener, like gRPC, and answered by calling the same
//! shard handlers gRPC calls ([`api`]), so idempotency, consistency levels and errors are the
//! gRPC ones, with no second implementation.
//!
//! ```text
//!  accept loop (one per core)        connection task (one per connection)
//!  listener.accept() ──spawn───────▶ loop { read a head (httparse) ─▶ read Content-Length
//!                                          bytes ─▶ api::handle on this core's shard ─▶
//!                                          write the reply } until close, idle or shutdown
//! ```
//!
//! Bounded everywhere: a head over [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`]
//! headers is answered 431, a body over the limit 413 without being read (the limit is
//! `max_message_bytes`, or what a `max_value_bytes` value takes in base64 if that is more), at
//! most [`MAX_CONNECTIONS_PER_CORE`] connections per core, a request must arrive within
//! [`READ_TIMEOUT`] once started and an idle keep-alive connection is closed after
//! [`IDLE_TIMEOUT`]. Requests are answered one at a time per connection, in order (pipelined
//! requests wait in the bounded buffer). Chunked request bodies are refused (411): every client
//! that sends JSON knows its length. A client deadline comes in a `Grpc-Timeout` header (as
//! grpc-gateway reads it), with the gRPC meaning: the fan-out ends by then (503
//! QUORUM_NOT_REACHED if too few replicas answered) and the request is dropped at it (504
//! DEADLINE_EXCEEDED). A handler that panics is answered 500 and the core goes on.
//! No authentication: gRPC has none yet either; when it does, this takes the same.

use std::{
    cell::RefCell,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    rc::Rc,
    time::{Duration, Instant},
};

use ahash::AHashMap;
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::FutureExt;
use glommio::net::{TcpListener, TcpStream};

use crate::{
    config::CoordinatorConfig,
    coordinator::shard::Shard,
    error::PairError,
    metrics::{Hist, Sample},
    runtime::shutdown::{Shutdown, Wait},
};

mod api;

/// Largest request head (request line and headers), bytes: as gRPC's `max_header_list_bytes`.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Connections per core before new ones are refused (as the gRPC server's).
pub const MAX_CONNECTIONS_PER_CORE: usize = 10_000;
/// How long a started request (head and body) may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reply may take to leave.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After refusing a request whose body was not read, how long and how much of the rest is read
/// and discarded before closing, so that the refusal reaches the client instead of a reset.
const LINGER: (Duration, usize) = (Duration::from_secs(2), 16 << 20);

/// Largest request body accepted: `max_message_bytes`, or room for a `max_value_bytes` value in
/// base64 (4/3 of it) with a key and the JSON around it, if that is more.
pub fn max_body_bytes(config: &CoordinatorConfig) -> usize {
    let value = config.max_value_bytes.div_ceil(3) * 4;
    // A key JSON-escaped as \u00XX takes six bytes a byte; 64 KiB for everything else.
    config.max_message_bytes.max(value + config.max_key_bytes * 6 + (64 << 10))
}

/// One core's HTTP API requests by route and status, and their latency.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RefCell<AHashMap<&'static str, RouteStats>>,
}

#[derive(Default)]
struct RouteStats {
    by_status: AHashMap<u16, u64>,
    latency: Hist,
}

impl HttpMetrics {
    /// A request to `route` was answered `status` after `elapsed` (from its head to its reply).
    fn finish(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.borrow_mut();
        let stats = routes.entry(route).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.latency.record_duration(elapsed);
    }

    /// This core's samples: `pairdb_http_requests_total{route, status}` and
    /// `pairdb_http_latency_seconds{route}`. Routes are a fixed set, so the series are bounded.
    pub fn samples(&self, out: &mut Vec<Sample>) {
        let routes = self.routes.borrow();
        let mut names: Vec<&&'static str> = routes.keys().collect();
        names.sort();
        for route in names {
            let stats = &routes[*route];
            let mut statuses: Vec<(&u16, &u64)> = stats.by_status.iter().collect();
            statuses.sort();
            for (status, n) in statuses {
                out.push(
                    Sample::counter(
                        "pairdb_http_requests_total",
                        "HTTP/JSON API requests answered, by route and HTTP status.",
                        *n,
                    )
                    .label("route", *route)
                    .label("status", status.to_string()),
                );
            }
            out.push(
                Sample::latency(
                    "pairdb_http_latency_seconds",
                    "HTTP/JSON API request latency, from the request head to the reply.",
                    &stats.latency,
                )
                .label("route", *route),
            );
        }
    }
}

/// Serves the HTTP API on `listener` with core `shard` until `shutdown` fires, then stops
/// accepting, closes idle connections, and returns once the others finished their request or
/// `drain_timeout` passed. Requests are counted in `metrics`.
pub async fn serve(
    listener: TcpListener,
    shard: Rc<Shard>,
    metrics: Rc<HttpMetrics>,
    max_body: usize,
    shutdown: Shutdown,
    drain_timeout: Duration,
) {
    let limit = MAX_CONNECTIONS_PER_CORE;
    let stop = shutdown.clone();
    crate::runtime::accept::serve_connections(
        listener,
        "http-api",
        limit,
        None,
        &stop,
        drain_timeout,
        |stream| {
            let (shard, shutdown, metrics) = (shard.clone(), shutdown.clone(), metrics.clone());
            async move { Connection::new(stream, max_body, metrics).serve(shard, shutdown).await }
        },
    )
    .await;
}

/// What the head says about the request, owned (the buffer it was parsed from moves on).
struct Head {
    len: usize,
    method: String,
    target: String,
    content_length: usize,
    keep_alive: bool,
    expect_continue: bool,
    idempotency_key: Option<String>,
    /// The raw `Authorization` header (never logged).
    authorization: Option<Bytes>,
    /// From `Grpc-Timeout` (grpc-gateway's header for a client deadline, in gRPC's format).
    timeout: Option<Duration>,
}

/// A request refused before its body was read: the HTTP status and the error; the connection
/// closes after the reply.
struct Refusal {
    status: u16,
    error: PairError,
}

fn refuse(status: u16, error: PairError) -> Refusal {
    Refusal { status, error }
}

impl Head {
    fn parse(req: &httparse::Request<'_, '_>, len: usize) -> Result<Head, Refusal> {
        let bad = |m: String| refuse(400, PairError::invalid(m));
        let method = req.method.unwrap_or_default().to_owned();
        let target = req.path.unwrap_or_default().to_owned();
        let http11 = req.version == Some(1);
        let mut content_length: Option<usize> = None;
        let mut keep_alive = http11;
        let mut expect_continue = false;
        let mut idempotency_key = None;
        let mut authorization = None;
        let mut timeout = None;
        for h in req.headers.iter() {
            let value = || std::str::from_utf8(h.value).map(str::trim);
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = value()
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| bad("Content-Length is not a number".into()))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(bad("conflicting Content-Length headers".into()));
                }
                content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(refuse(
                    411,
                    PairError::invalid(
                        "Transfer-Encoding (chunked bodies) is not supported: send Content-Length",
                    ),
                ));
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = value().unwrap_or_default().to_ascii_lowercase();
                for token in v.split(',').map(str::trim) {
                    match token {
                        "close" => keep_alive = false,
                        "keep-alive" => keep_alive = true,
                        _ => {}
                    }
                }
            } else if h.name.eq_ignore_ascii_case("expect") {
                if value().is_ok_and(|v| v.eq_ignore_ascii_case("100-continue")) {
                    expect_continue = http11;
                } else {
                    return Err(refuse(417, PairError::invalid("only Expect: 100-continue")));
                }
            } else if h.name.eq_ignore_ascii_case("grpc-timeout") {
                let t = crate::rpc::server::parse_timeout(h.value).ok_or_else(|| {
                    bad("malformed Grpc-Timeout (gRPC's format: up to 8 digits and a unit \
                         H, M, S, m, u or n, e.g. 500m)"
                        .into())
                })?;
                timeout = Some(t);
            } else if h.name.eq_ignore_ascii_case("authorization") {
                authorization = Some(Bytes::copy_from_slice(h.value));
            } else if h.name.eq_ignore_ascii_case("idempotency-key") {
                let v = value().map_err(|_| bad("Idempotency-Key is not UTF-8".into()))?;
                idempotency_key = Some(v.to_owned());
            }
        }
        Ok(Head {
            len,
            method,
            target,
            content_length: content_length.unwrap_or(0),
            keep_alive,
            expect_continue,
            idempotency_key,
            authorization,
            timeout,
        })
    }
}

enum ReadError {
    /// EOF, a socket error, a timeout or the shutdown: close without a reply.
    Closed,
}

struct Connection {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    /// Bytes received and not consumed yet: at most one head's worth plus one body.
    buf: Vec<u8>,
    max_body: usize,
    metrics: Rc<HttpMetrics>,
}

impl Connection {
    fn new(stream: TcpStream, max_body: usize, metrics: Rc<HttpMetrics>) -> Connection {
        let peer = stream.peer_addr().ok();
        // Replies are small and latency-bound; Nagle would hold them for up to 40 ms.
        let _ = stream.set_nodelay(true);
        Connection { stream, peer, buf: Vec::with_capacity(4096), max_body, metrics }
    }

    async fn serve(mut self, shard: Rc<Shard>, shutdown: Shutdown) {
        let mut stop = pin!(shutdown.wait());
        loop {
            let head = match self.read_head(&mut stop).await {
                Ok(Ok(head)) => head,
                Ok(Err(refusal)) => {
                    self.refuse(refusal).await;
                    return;
                }
                Err(ReadError::Closed) => return,
            };
            self.buf.drain(..head.len);
            if head.content_length > self.max_body {
                let e = PairError::MessageTooLarge(format!(
                    "request body is {} bytes, over the {}-byte limit",
                    head.content_length, self.max_body
                ));
                self.refuse(refuse(413, e)).await;
                return;
            }
            if head.expect_continue
                && head.content_length > self.buf.len()
                && self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
            {
                return;
            }
            if self.read_body(head.content_length).await.is_err() {
                return;
            }
            let started = Instant::now();
            let rest = self.buf.split_off(head.content_length);
            let body = std::mem::replace(&mut self.buf, rest);
            let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
            let req = api::Request {
                method: &head.method,
                path,
                query,
                idempotency_key: head.idempotency_key.as_deref(),
                authorization: head.authorization.clone(),
                body: &body,
                peer: self.peer,
                deadline: head.timeout.map(|t| started + t),
            };
            // As gRPC does with grpc-timeout: the handler is dropped at the deadline (which
            // releases an idempotency claim it holds) and the answer is DEADLINE_EXCEEDED.
            // Boxed: the handler future is large (every route), and unboxed it overflowed a
            // core thread's stack in debug builds.
            let work = AssertUnwindSafe(Box::pin(api::handle(shard.clone(), req))).catch_unwind();
            let outcome = match head.timeout {
                None => Some(work.await),
                Some(t) => {
                    futures_lite::future::or(async { Some(work.await) }, async {
                        glommio::timer::sleep(t).await;
                        None
                    })
                    .await
                }
            };
            let reply = match outcome {
                Some(Ok(reply)) => reply,
                Some(Err(_)) => {
                    tracing::error!(method = %head.method, path, "HTTP API handler panicked");
                    api::Reply::error(&PairError::Internal("the handler panicked".into()), None)
                }
                None => api::Reply::error(
                    &PairError::DeadlineExceeded("deadline from Grpc-Timeout passed".into()),
                    None,
                ),
            };
            self.metrics.finish(reply.route, reply.status, started.elapsed());
            let keep_alive = head.keep_alive && !shutdown.is_triggered();
            if self.reply(&reply, keep_alive).await.is_err() || !keep_alive {
                return;
            }
        }
    }

    /// Reads until `buf` holds a complete head. The outer error closes the connection without
    /// a word; the inner one is a request to refuse.
    async fn read_head(
        &mut self,
        stop: &mut Pin<&mut Wait>,
    ) -> Result<Result<Head, Refusal>, ReadError> {
        loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => return Ok(Head::parse(&req, len)),
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        let e = PairError::invalid(format!("more than {MAX_HEADERS} headers"));
                        return Ok(Err(refuse(431, e)));
                    }
                    Err(e) => {
                        let e = PairError::invalid(format!("malformed HTTP request: {e}"));
                        return Ok(Err(refuse(400, e)));
                    }
                }
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                let e = PairError::invalid(format!("request head over {MAX_HEAD_BYTES} bytes"));
                return Ok(Err(refuse(431, e)));
            }
            let idle = self.buf.is_empty();
            let room = MAX_HEAD_BYTES - self.buf.len();
            let read = self.read_more(room, if idle { IDLE_TIMEOUT } else { READ_TIMEOUT });
            let n = if idle {
                // Between requests a shutdown closes the connection at once.
                futures_lite::future::or(read, async {
                    stop.as_mut().await;
                    Err(ReadError::Closed)
                })
                .await?
            } else {
                read.await?
            };
            if n == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Reads until `buf` holds `len` bytes.
    async fn read_body(&mut self, len: usize) -> Result<(), ReadError> {
        while self.buf.len() < len {
            let want = len - self.buf.len();
            if self.read_more(want, READ_TIMEOUT).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    }

    /// Appends at most `max` bytes to `buf` from one read; 0 at EOF.
    async fn read_more(&mut self, max: usize, limit: Duration) -> Result<usize, ReadError> {
        let mut chunk = [0u8; 16 << 10];
        let max = max.min(chunk.len());
        let read = futures_lite::future::or(
            async { self.stream.read(&mut chunk[..max]).await.map_err(|_| ReadError::Closed) },
            async {
                glommio::timer::sleep(limit).await;
                Err(ReadError::Closed)
            },
        )
        .await?;
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(read)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ()> {
        futures_lite::future::or(
            async {
                self.stream.write_all(bytes).await.map_err(|_| ())?;
                self.stream.flush().await.map_err(|_| ())
            },
            async {
                glommio::timer::sleep(WRITE_TIMEOUT).await;
                Err(())
            },
        )
        .await
    }

    async fn reply(&mut self, reply: &api::Reply, keep_alive: bool) -> Result<(), ()> {
        let reason = http::StatusCode::from_u16(reply.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        if let Some(allow) = reply.allow {
            out.push_str(&format!("allow: {allow}\r\n"));
        }
        if let Some(secs) = reply.retry_after_secs {
            out.push_str(&format!("retry-after: {secs}\r\n"));
        }
        out.push_str(if keep_alive {
            "connection: keep-alive\r\n\r\n"
        } else {
            "connection: close\r\n\r\n"
        });
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        self.write(&bytes).await
    }

    /// Answers a request that is refused before its body was read, and closes: the rest of
    /// what the client sends is read and discarded for a moment, so that it sees the reply
    /// rather than a connection reset.
    async fn refuse(mut self, refusal: Refusal) {
        let reply = api::Reply::error(&refusal.error, Some(refusal.status));
        self.metrics.finish(reply.route, reply.status, Duration::ZERO);
        if self.reply(&reply, false).await.is_err() {
            return;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
        let deadline = Instant::now() + LINGER.0;
        let mut discarded = 0;
        while discarded < LINGER.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.buf.clear();
            match self.read_more(usize::MAX, left).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}
