//! The gRPC server: HTTP/2 (the `h2` crate) on glommio, unary calls plus the one bidi-streaming
//! method that server reflection needs.
//!
//! ```text
//!  accept loop (one per core, SO_REUSEPORT)         connection task (one per connection)
//!  ──────────────────────────────────────           ─────────────────────────────────────────
//!  listener.accept() ──spawn──────────────────────▶ h2 handshake
//!                                                   loop {
//!                                                     poll_accept() ─▶ new stream ─▶ push onto
//!                                                                      in_flight (not spawned)
//!                                                     poll in_flight: read body, route, decode,
//!                                                                     handler, send reply
//!                                                   }  until the peer closes or GOAWAY drained
//! ```
//!
//! Streams are polled inside their connection's task instead of being spawned: a spawned task
//! would be polled at once, inside the connection's poll, and h2 would then flush after every
//! single response (one `send(2)` per request). Polled together, the replies of every stream that
//! finished in one turn leave in one write; `shared/notes/h2-on-glommio.md` measured this at about
//! 2x the throughput.
//!
//! Errors follow the gRPC HTTP/2 spec: a wrong `content-type` gets HTTP 415, everything else a
//! Trailers-Only reply carrying `grpc-status`, `grpc-message` and `pairdb-error-code`.
//!
//! Files: this one accepts connections and runs their streams (reading messages, deadlines,
//! limits); [`router`] maps paths to handlers and holds the streaming call API; [`reply`] writes
//! replies, statuses and trailers.

use std::{
    future::{poll_fn, Future},
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::{stream::FuturesUnordered, FutureExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use h2::{server::SendResponse, RecvStream};
use http::{Request, StatusCode};

pub use crate::config::Http2Impl;
use crate::{
    error::PairError,
    rpc::RpcMetrics,
    rpc::{
        framing::{self, FrameError, DEFAULT_MAX_MESSAGE_BYTES},
        glommio_io::GlommioIo,
        status::{Code, Status},
    },
    runtime::shutdown::Shutdown,
};

mod native;
pub(crate) use native::read_into;
mod reply;
mod router;

use crate::rpc::http2::server::is_grpc_proto;
use reply::{send_http_error, send_reply, send_status};
use router::Route;
pub use router::{CallContext, Router, StreamingCall};

/// Tunables of one gRPC server. Every default has its reason next to it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request message accepted, and largest reply sent. 4 MiB, as gRPC's own default.
    pub max_message_bytes: usize,
    /// Concurrent streams per connection. 1024 lets a pipelining client (h2load -m 32, a batching
    /// coordinator) keep the core busy, while bounding per-connection memory.
    pub max_concurrent_streams: u32,
    /// Connections per core before new ones are refused. Bounds memory under a connection flood.
    pub max_connections_per_core: usize,
    /// HTTP/2 stream flow-control window. 1 MiB lets a 4 MiB message arrive in four round trips
    /// instead of sixty-four with the 64 KiB protocol default.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection flow-control window: room for several large streams at once.
    pub connection_window_bytes: u32,
    /// Largest header block accepted. 16 KiB is far above any gRPC request's needs.
    pub max_header_list_bytes: u32,
    /// How long a new connection may take to finish the HTTP/2 handshake.
    pub handshake_timeout: Duration,
    /// Which HTTP/2 implementation serves the connections (`rpc.http2`).
    pub http2: Http2Impl,
    /// TLS on this port (`rpc.tls.cert_file`...): every connection must complete a TLS
    /// handshake, within `handshake_timeout`, before HTTP/2 starts. None: plaintext.
    pub tls: Option<crate::rpc::tls::ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: 1024,
            max_connections_per_core: 10_000,
            stream_window_bytes: 1 << 20,
            connection_window_bytes: 8 << 20,
            max_header_list_bytes: 16 << 10,
            handshake_timeout: Duration::from_secs(10),
            http2: Http2Impl::default(),
            tls: None,
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` fires, then stops accepting, sends GOAWAY on every
/// connection and returns once they drained or `drain_timeout` passed. `gate`: this core's place
/// among the cores sharing the listener (see `runtime::accept`), `None` where each core has its
/// own.
pub async fn serve(
    listener: TcpListener,
    gate: Option<crate::runtime::accept::AcceptGate>,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
    drain_timeout: Duration,
) {
    let limit = config.max_connections_per_core;
    let stop = shutdown.clone();
    crate::runtime::accept::serve_connections(
        listener,
        "grpc",
        limit,
        gate,
        &stop,
        drain_timeout,
        |stream| {
            let (router, config, shutdown) = (router.clone(), config.clone(), shutdown.clone());
            async move {
                match (&config.tls, config.http2) {
                    (None, Http2Impl::Native) => {
                        native::serve_connection(stream, router, config, shutdown).await
                    }
                    (None, Http2Impl::H2) => {
                        serve_connection(stream, router, config, shutdown).await
                    }
                    (Some(tls), _) => {
                        let tls = tls.clone();
                        serve_tls_connection(stream, tls, router, config, shutdown).await
                    }
                }
            }
        },
    )
    .await;
}

/// Completes the TLS handshake on `stream` (within the handshake timeout), then serves HTTP/2
/// over it with the configured layer. A failed or late handshake closes the connection and
/// counts in `pairdb_rpc_tls_handshake_failures_total`.
async fn serve_tls_connection(
    stream: TcpStream,
    tls: crate::rpc::tls::ServerTls,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let accepted =
        glommio::timer::timeout(config.handshake_timeout, async { Ok(tls.accept(stream).await) })
            .await;
    let io = match accepted {
        Ok(Ok(io)) => io,
        failed => {
            match failed {
                Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                _ => tracing::debug!(?peer, "TLS handshake timed out"),
            }
            if let Some(m) = router.metrics.as_deref() {
                m.record_tls_handshake_failure();
            }
            return;
        }
    };
    match config.http2 {
        Http2Impl::Native => native::serve_stream(io, peer, router, config, shutdown).await,
        Http2Impl::H2 => serve_h2(io, peer, router, config, shutdown).await,
    }
}

/// Serves one HTTP/2 connection until the peer leaves or a graceful shutdown completes.
pub async fn serve_connection(
    stream: TcpStream,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
) {
    let peer = stream.peer_addr().ok();
    // Replies are small and latency-bound; Nagle would hold them for up to 40 ms.
    let _ = stream.set_nodelay(true);
    serve_h2(stream, peer, router, config, shutdown).await
}

/// Serves HTTP/2 with the `h2` crate over `stream` (plain TCP or TLS).
async fn serve_h2<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static>(
    stream: S,
    peer: Option<SocketAddr>,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
) {
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(config.max_concurrent_streams)
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .max_header_list_size(config.max_header_list_bytes)
        .max_send_buffer_size(config.max_message_bytes + framing::PREFIX_LEN)
        // h2's rapid-reset guard counts streams a client reset before we accepted them. A
        // coordinator whose deadlines expire while this node is briefly stalled resets many at
        // once; the default (20) then closes the whole connection with `too_many_resets`,
        // failing every other call on it. 1024 still bounds the work a hostile client can cause.
        .max_pending_accept_reset_streams(1024)
        .handshake::<_, Bytes>(GlommioIo(stream));
    let mut conn = match glommio::timer::timeout(config.handshake_timeout, async {
        Ok(handshake.await)
    })
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(?peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let mut in_flight: FuturesUnordered<Pin<Box<dyn Future<Output = ()>>>> =
        FuturesUnordered::new();
    let mut stop = pin!(shutdown.wait());
    let mut goaway_sent = false;
    poll_fn(|cx| {
        if !goaway_sent && stop.as_mut().poll(cx).is_ready() {
            conn.graceful_shutdown();
            goaway_sent = true;
        }
        // Bounded turns per poll so that one busy connection cannot starve the core's others.
        for _ in 0..64 {
            let mut progressed = false;
            loop {
                match conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        in_flight.push(Box::pin(handle_stream(
                            req,
                            respond,
                            router.clone(),
                            config.clone(),
                            peer,
                        )));
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(?peer, error = %e, "connection error");
                        return Poll::Ready(());
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            while let Poll::Ready(Some(())) = in_flight.poll_next_unpin(cx) {
                progressed = true;
            }
            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

async fn handle_stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    peer: Option<SocketAddr>,
) {
    let (parts, mut body) = req.into_parts();
    let is_grpc =
        parts.headers.get(http::header::CONTENT_TYPE).is_some_and(|v| is_grpc_proto(v.as_bytes()));
    if !is_grpc {
        // The spec's answer to a non-gRPC content-type: plain HTTP 415, no grpc-status.
        send_http_error(&mut respond, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return;
    }
    if parts.method != http::Method::POST {
        send_status(
            &mut respond,
            &Status::unimplemented(format!("method {} is not POST", parts.method)),
        );
        return;
    }
    let path = parts.uri.path();
    // Before anything else about the call, so that a caller without the credential learns
    // nothing about it (not even whether the method exists).
    if let Err(status) =
        router.authorize(path, parts.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes()))
    {
        send_status(&mut respond, &status);
        return;
    }
    let Some(route) = router.routes.get(path) else {
        let status =
            Status::from(PairError::UnknownMethod(format!("unknown service or method {path}")));
        send_status(&mut respond, &status);
        return;
    };
    if let Some(encoding) = parts.headers.get("grpc-encoding") {
        if encoding.as_bytes() != b"identity" {
            let status = Status::from(PairError::UnsupportedEncoding(format!(
                "grpc-encoding {:?} is not supported; this server accepts identity only",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
            send_status(&mut respond, &status);
            return;
        }
    }
    let timeout = match parts.headers.get("grpc-timeout").map(|v| parse_timeout(v.as_bytes())) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => {
            send_status(
                &mut respond,
                &Status::from(PairError::InvalidRequest("malformed grpc-timeout".into())),
            );
            return;
        }
    };
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| Bytes::copy_from_slice(v.as_bytes()));
    let ctx = CallContext { deadline: timeout.map(|t| Instant::now() + t), peer, authorization };
    match route {
        Route::Unary(handler) => {
            let in_flight = router.metrics.as_deref().map(RpcMetrics::start);
            let work = async {
                let mut buf = BytesMut::new();
                let max = config.max_message_bytes;
                let Some(msg) = read_message(&mut body, &mut buf, max).await? else {
                    return Err(Status::from(PairError::InvalidRequest(
                        "unary call carried no request message".into(),
                    )));
                };
                if read_message(&mut body, &mut buf, max).await?.is_some() {
                    return Err(Status::from(PairError::InvalidRequest(
                        "unary call carried more than one request message".into(),
                    )));
                }
                // A handler bug must cost one call, never the core.
                match AssertUnwindSafe(handler(msg, ctx)).catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => Err(Status::internal("handler panicked")),
                }
            };
            let result = match timeout {
                Some(t) => with_deadline(work, t).await,
                None => work.await,
            };
            let code = match result {
                Ok(reply) if reply.len() > config.max_message_bytes + framing::PREFIX_LEN => {
                    send_status(
                        &mut respond,
                        &Status::from(PairError::MessageTooLarge(format!(
                            "reply of {} bytes exceeds the limit of {} bytes",
                            reply.len() - framing::PREFIX_LEN,
                            config.max_message_bytes
                        ))),
                    );
                    Code::RESOURCE_EXHAUSTED
                }
                Ok(reply) => {
                    send_reply(&mut respond, reply);
                    Code::OK
                }
                Err(status) => {
                    send_status(&mut respond, &status);
                    status.code
                }
            };
            if let (Some(metrics), Some(call)) = (router.metrics.as_deref(), in_flight) {
                metrics.finish(path, code, call.started().elapsed());
            }
        }
        Route::Streaming(handler) => {
            let call = StreamingCall::h2(body, respond, config.max_message_bytes, ctx);
            let _ = AssertUnwindSafe(handler(call)).catch_unwind().await;
        }
    }
}

/// Races `work` against the call's deadline.
async fn with_deadline<F: Future<Output = Result<Bytes, Status>>>(
    work: F,
    timeout: Duration,
) -> Result<Bytes, Status> {
    futures_lite::future::or(work, async {
        glommio::timer::sleep(timeout).await;
        Err(Status::from(PairError::DeadlineExceeded("deadline from grpc-timeout passed".into())))
    })
    .await
}

/// Reads the next complete message from `body`, keeping leftovers in `buf`. Returns `Ok(None)`
/// when the stream ended cleanly between messages.
pub(crate) async fn read_message(
    body: &mut RecvStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, Status> {
    loop {
        match framing::decode(buf, max) {
            Ok(Some(msg)) => return Ok(Some(msg)),
            Ok(None) => {}
            Err(e) => return Err(frame_error_status(e)),
        }
        match body.data().await {
            Some(Ok(chunk)) => {
                // Flow control: the bytes are ours now, let the peer send more.
                let _ = body.flow_control().release_capacity(chunk.len());
                if buf.is_empty() {
                    // Common case: a whole message in one DATA frame. Take it without copying.
                    if let Ok(Some(len)) = framing::peek_len(&chunk, max) {
                        if chunk.len() == framing::PREFIX_LEN + len {
                            return Ok(Some(chunk.slice(framing::PREFIX_LEN..)));
                        }
                    }
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(Status::cancelled(format!("request stream failed: {e}"))),
            None if buf.is_empty() => return Ok(None),
            None => {
                let declared = framing::peek_len(buf, usize::MAX).ok().flatten();
                return Err(Status::from(PairError::InvalidRequest(match declared {
                    Some(len) => format!(
                        "truncated message: stream ended after {} of {len} bytes",
                        buf.len() - framing::PREFIX_LEN
                    ),
                    None => format!(
                        "truncated message: stream ended inside a {}-byte prefix",
                        buf.len()
                    ),
                })));
            }
        }
    }
}

fn frame_error_status(e: FrameError) -> Status {
    match e {
        FrameError::Compressed => Status::from(PairError::UnsupportedEncoding(e.to_string())),
        FrameError::InvalidFlag(_) => Status::from(PairError::InvalidRequest(e.to_string())),
        FrameError::TooLarge { .. } => Status::from(PairError::MessageTooLarge(e.to_string())),
    }
}

/// Parses `grpc-timeout` ("TimeoutValue TimeoutUnit": at most 8 digits, then H M S m u n).
pub fn parse_timeout(raw: &[u8]) -> Option<Duration> {
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit[0] {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for ok in ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8"] {
            assert!(is_grpc_proto(ok.as_bytes()), "{ok}");
        }
        for bad in
            ["application/grpc-web", "application/grpc+json", "application/grpcx", "text/plain"]
        {
            assert!(!is_grpc_proto(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn timeout_units() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<Duration>)] = &[
            ("1H",        Some(Duration::from_secs(3600))),
            ("2M",        Some(Duration::from_secs(120))),
            ("3S",        Some(Duration::from_secs(3))),
            ("250m",      Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n",        Some(Duration::from_nanos(5))),
            ("123456789m", None),
            ("m",         None),
            ("10x",       None),
            ("",          None),
            ("-1S",       None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_timeout(raw.as_bytes()), *want, "{raw}");
        }
    }
}
