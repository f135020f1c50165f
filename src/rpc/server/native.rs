//! The native HTTP/2 server (`rpc.http2: native`): one glommio task per connection drives a
//! sans-IO [`Conn`] and runs the connection's calls inside the same task.
//!
//! ```text
//!  loop (one poll of the connection task) {
//!    read what the socket has ──▶ Conn::recv ──▶ events: request / message / end / cancel
//!    events ──▶ route, validate, start handlers (polled here, not spawned)
//!    finished handlers ──▶ reply frames appended to Conn's output
//!    write the output: one send for everything this turn produced
//!  }
//! ```
//!
//! Handler futures live in one `FuturesUnordered` per connection, so replies of every call that
//! finished in one turn leave in one write, as on the h2 path. A peer that stops reading stops
//! being read ([`Conn::wants_read`]); every other bound is the [`Conn`]'s.

use std::{
    cell::RefCell,
    future::{poll_fn, Future},
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    rc::Rc,
    task::{Context, Poll, Waker},
    time::Instant,
};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::{
    future::{AbortHandle, Abortable},
    stream::FuturesUnordered,
    FutureExt, StreamExt,
};
use glommio::net::TcpStream;

use super::{parse_timeout, router::Route, with_deadline, Router, ServerConfig, StreamingCall};

mod streaming;

use crate::{
    error::PairError,
    rpc::{
        framing,
        http2::{
            blocks,
            server::{Conn, ContentType, Event, Limits, Method, RequestHead},
        },
        status::{Code, Status},
        RpcMetrics,
    },
    runtime::shutdown::Shutdown,
};
pub(crate) use streaming::StreamHandle;
use streaming::{Outgoing, StreamShared};

/// The answer to a plain HTTP request (a browser, `curl --http2-prior-knowledge`, a conformance
/// suite): this port speaks gRPC.
const PLAIN_BODY: &[u8] = b"PairDB gRPC endpoint: speak gRPC (HTTP/2, application/grpc) here.\n";

/// The protocol bounds of a connection, from the server's configuration.
pub fn limits(config: &ServerConfig) -> Limits {
    Limits {
        max_concurrent_streams: config.max_concurrent_streams,
        stream_window: config.stream_window_bytes,
        connection_window: config.connection_window_bytes,
        max_header_list_bytes: config.max_header_list_bytes,
        max_message_bytes: config.max_message_bytes,
        header_timeout: config.handshake_timeout,
        ..Limits::default()
    }
}

/// What the connection knows of each call.
enum Call {
    /// A unary call waiting for its request message and the end of the request.
    Unary {
        path: String,
        ctx: super::CallContext,
        message: Option<Bytes>,
        /// The deadline's timer while the request body is still arriving.
        deadline: Option<AbortHandle>,
    },
    /// The handler runs; aborting it drops its work.
    Running(AbortHandle),
    /// A streaming call: its handler reads and writes through the shared state.
    Streaming(Rc<RefCell<StreamShared>>),
    /// The call was answered early (an error); its remaining frames are ignored.
    Answered,
}

fn deadline_exceeded() -> Status {
    Status::from(PairError::DeadlineExceeded("deadline from grpc-timeout passed".into()))
}

/// A finished unary handler.
struct Finished {
    stream: u32,
    reply: Result<Bytes, Status>,
}

type Running = Pin<Box<dyn Future<Output = Option<Finished>>>>;

/// Serves one connection with the native HTTP/2 layer until the peer leaves, the protocol fails
/// or a graceful shutdown drained it.
pub async fn serve_connection(
    io: TcpStream,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
) {
    let peer = io.peer_addr().ok();
    let _ = io.set_nodelay(true);
    serve_stream(io, peer, router, config, shutdown).await
}

/// [`serve_connection`] over any stream: plain TCP or TLS (`rpc.tls`). Generic, so each kind of
/// stream gets its own compiled copy and the plaintext path pays nothing for TLS.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    peer: Option<SocketAddr>,
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    shutdown: Shutdown,
) {
    let now = Instant::now();
    let mut conn = Conn::new(limits(&config), now);
    let mut state = ConnTask {
        router,
        config,
        peer,
        calls: AHashMap::new(),
        running: FuturesUnordered::new(),
        streaming: Vec::new(),
        conn_waker: Rc::new(RefCell::new(None)),
    };
    // Grows on demand: an idle connection holds no read buffer worth speaking of.
    let mut rbuf = BytesMut::new();
    let mut read_closed = false;
    let mut stop = pin!(shutdown.wait());
    let mut timer: Option<(Instant, Pin<Box<glommio::timer::Timer>>)> = None;
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            conn.go_away();
        }
        state.remember_waker(cx);
        // Bounded turns per poll, so that one busy connection cannot starve the core's others.
        for _ in 0..64 {
            let mut progressed = false;
            if !read_closed && conn.wants_read() {
                match read_into(&mut io, cx, &mut rbuf) {
                    Poll::Ready(Ok(0)) => {
                        read_closed = true;
                        progressed = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        conn.recv(&mut rbuf, Instant::now());
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(?peer, error = %e, "read failed");
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            while let Some(event) = conn.next_event() {
                state.on_event(&mut conn, event);
                progressed = true;
            }
            while let Poll::Ready(Some(done)) = state.running.poll_next_unpin(cx) {
                if let Some(done) = done {
                    state.reply(&mut conn, done);
                }
                progressed = true;
            }
            if state.pump_streaming(&mut conn) {
                progressed = true;
            }
            match write_out(&mut io, &mut conn, cx) {
                Ok(wrote) => progressed |= wrote,
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "write failed");
                    return Poll::Ready(());
                }
            }
            if let Some(s) = conn.take_stats() {
                if let Some(m) = state.router.metrics.as_deref() {
                    m.record_http2(&s);
                }
            }
            if conn.output().is_empty()
                && (conn.is_finished() || (read_closed && state.calls.is_empty()))
            {
                return Poll::Ready(());
            }
            if !progressed {
                // Timers: a started header block, a closed window, idleness.
                let now = Instant::now();
                match conn.check_timeouts(now) {
                    Some(due) if timer.as_ref().is_none_or(|(at, _)| due < *at) => {
                        let mut t = Box::pin(glommio::timer::Timer::new(due - now));
                        if t.as_mut().poll(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                        timer = Some((due, t));
                    }
                    _ => {}
                }
                if let Some((_, t)) = timer.as_mut() {
                    if t.as_mut().poll(cx).is_ready() {
                        timer = None;
                        cx.waker().wake_by_ref();
                    }
                }
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    let _ = futures_lite::AsyncWriteExt::close(&mut io).await;
}

thread_local! {
    /// One read buffer per core, shared by its connections: glommio completes a read into its
    /// own buffer and copies it out only when polled, so no read holds this across polls, and
    /// ten thousand idle connections do not each keep 64 KiB.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 << 10]);
}

/// Reads what `io` has into the end of `buf` (at most 64 KiB); `Ok(0)` at end of stream.
pub(crate) fn read_into<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| match Pin::new(io).poll_read(cx, scratch) {
        Poll::Ready(Ok(n)) => {
            buf.extend_from_slice(&scratch[..n]);
            Poll::Ready(Ok(n))
        }
        other => other,
    })
}

/// Writes as much of the output as the socket takes; true when something was written.
fn write_out<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Conn,
    cx: &mut Context<'_>,
) -> std::io::Result<bool> {
    let mut wrote = false;
    loop {
        let out = conn.output();
        if out.is_empty() {
            // TLS keeps records it could not send yet; plain TCP's flush is a no-op.
            return match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Err(e)) => Err(e),
                _ => Ok(wrote),
            };
        }
        match Pin::new(&mut *io).poll_write(cx, out) {
            Poll::Ready(Ok(0)) => {
                return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "socket closed"))
            }
            Poll::Ready(Ok(n)) => {
                out.drain(..n);
                wrote = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(wrote),
        }
    }
}

struct ConnTask {
    router: Rc<Router>,
    config: Rc<ServerConfig>,
    peer: Option<SocketAddr>,
    calls: AHashMap<u32, Call>,
    running: FuturesUnordered<Running>,
    streaming: Vec<(u32, Rc<RefCell<StreamShared>>)>,
    conn_waker: Rc<RefCell<Option<Waker>>>,
}

impl ConnTask {
    fn remember_waker(&self, cx: &Context<'_>) {
        let mut w = self.conn_waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }

    fn on_event(&mut self, conn: &mut Conn, event: Event) {
        match event {
            Event::Request { stream, head } => self.on_request(conn, stream, head),
            Event::Message { stream, message } => match self.calls.get_mut(&stream) {
                Some(Call::Unary { message: slot, .. }) => {
                    if slot.is_none() {
                        *slot = Some(message);
                    } else {
                        self.answer(
                            conn,
                            stream,
                            &Status::from(PairError::InvalidRequest(
                                "unary call carried more than one request message".into(),
                            )),
                        );
                    }
                }
                Some(Call::Streaming(shared)) => shared.borrow_mut().deliver(Ok(message)),
                _ => {}
            },
            Event::BadMessage { stream, error } => {
                let status = super::frame_error_status(error);
                match self.calls.get(&stream) {
                    Some(Call::Unary { .. }) => self.answer(conn, stream, &status),
                    Some(Call::Streaming(shared)) => shared.borrow_mut().deliver(Err(status)),
                    _ => {}
                }
            }
            Event::End { stream, leftover, declared } => {
                let truncated = (leftover > 0).then(|| {
                    Status::from(PairError::InvalidRequest(match declared {
                        Some(len) => format!(
                            "truncated message: stream ended after {} of {len} bytes",
                            leftover - framing::PREFIX_LEN
                        ),
                        None => format!(
                            "truncated message: stream ended inside a {leftover}-byte prefix"
                        ),
                    }))
                });
                match self.calls.remove(&stream) {
                    Some(Call::Unary { path, ctx, message, deadline }) => {
                        if let Some(timer) = deadline {
                            timer.abort();
                        }
                        if let Some(status) = truncated {
                            self.calls.insert(stream, Call::Answered);
                            self.answer(conn, stream, &status);
                            return;
                        }
                        let Some(message) = message else {
                            self.calls.insert(stream, Call::Answered);
                            self.answer(
                                conn,
                                stream,
                                &Status::from(PairError::InvalidRequest(
                                    "unary call carried no request message".into(),
                                )),
                            );
                            return;
                        };
                        self.start_unary(stream, path, ctx, message);
                    }
                    Some(Call::Streaming(shared)) => {
                        {
                            let mut s = shared.borrow_mut();
                            if let Some(status) = truncated {
                                s.deliver(Err(status));
                            }
                            s.ended = true;
                            s.wake_reader();
                        }
                        self.calls.insert(stream, Call::Streaming(shared));
                    }
                    Some(other) => {
                        self.calls.insert(stream, other);
                    }
                    None => {}
                }
                self.forget_if_done(conn, stream);
            }
            Event::Cancelled { stream } => match self.calls.remove(&stream) {
                Some(Call::Running(abort)) | Some(Call::Unary { deadline: Some(abort), .. }) => {
                    abort.abort()
                }
                Some(Call::Streaming(shared)) => {
                    let mut s = shared.borrow_mut();
                    s.cancelled = true;
                    s.wake_reader();
                }
                _ => {}
            },
        }
    }

    /// Drops the bookkeeping of a call whose stream the connection has closed.
    /// An answered call needs no bookkeeping: the connection finishes sending its reply (even
    /// behind flow control) and drops the rest of its request; events for a stream without a
    /// call are ignored.
    fn forget_if_done(&mut self, _conn: &Conn, stream: u32) {
        if matches!(self.calls.get(&stream), Some(Call::Answered)) {
            self.calls.remove(&stream);
        }
    }

    fn on_request(&mut self, conn: &mut Conn, stream: u32, head: RequestHead) {
        if (matches!(head.method, Method::Get | Method::Head) || head.path == "/")
            && head.content_type != ContentType::GrpcProto
        {
            // Not gRPC: a small plain answer, so that HTTP tools see a working server. `/` is
            // no gRPC method, so every method gets it there (a conformance suite POSTs to `/`);
            // a gRPC method's path with a wrong content-type gets the 415 below.
            self.calls.insert(stream, Call::Answered);
            let headers = blocks::http_headers(200, Some(b"text/plain; charset=utf-8"));
            if head.method == Method::Head {
                conn.send_headers(stream, &headers, true);
            } else {
                conn.send_headers(stream, &headers, false);
                conn.send_data(stream, Bytes::from_static(PLAIN_BODY), true);
            }
            self.forget_if_done(conn, stream);
            return;
        }
        if head.content_type != ContentType::GrpcProto {
            // The spec's answer to a non-gRPC content-type: plain HTTP 415, no grpc-status.
            self.calls.insert(stream, Call::Answered);
            conn.send_headers(stream, &blocks::http_headers(415, None), true);
            self.forget_if_done(conn, stream);
            return;
        }
        let status = if head.method != Method::Post {
            Some(Status::unimplemented("method is not POST"))
        } else if let Err(status) =
            self.router.authorize(head.path.as_str(), head.authorization.as_deref())
        {
            // Before the route: a caller without the credential learns nothing about the call.
            Some(status)
        } else if !self.router.routes.contains_key(head.path.as_str()) {
            Some(Status::from(PairError::UnknownMethod(format!(
                "unknown service or method {}",
                head.path
            ))))
        } else if head.grpc_encoding.as_deref().is_some_and(|e| e != b"identity") {
            Some(Status::from(PairError::UnsupportedEncoding(format!(
                "grpc-encoding {:?} is not supported; this server accepts identity only",
                String::from_utf8_lossy(head.grpc_encoding.as_deref().unwrap_or_default())
            ))))
        } else {
            None
        };
        if let Some(status) = status {
            self.calls.insert(stream, Call::Answered);
            self.answer(conn, stream, &status);
            return;
        }
        let timeout = match head.grpc_timeout.as_deref().map(parse_timeout) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                self.calls.insert(stream, Call::Answered);
                self.answer(
                    conn,
                    stream,
                    &Status::from(PairError::InvalidRequest("malformed grpc-timeout".into())),
                );
                return;
            }
        };
        let ctx = super::CallContext {
            deadline: timeout.map(|t| Instant::now() + t),
            peer: self.peer,
            authorization: head.authorization.clone(),
        };
        match self.router.routes.get(head.path.as_str()) {
            Some(Route::Unary(_)) => {
                // The deadline runs from the headers, while the body is still arriving too.
                let deadline = timeout.map(|t| {
                    let (abort, registration) = AbortHandle::new_pair();
                    let expire = async move {
                        glommio::timer::sleep(t).await;
                        Finished { stream, reply: Err(deadline_exceeded()) }
                    };
                    self.running
                        .push(Box::pin(Abortable::new(expire, registration).map(Result::ok)));
                    abort
                });
                self.calls
                    .insert(stream, Call::Unary { path: head.path, ctx, message: None, deadline });
            }
            Some(Route::Streaming(handler)) => {
                let shared = Rc::new(RefCell::new(StreamShared::default()));
                let call = StreamingCall::native(
                    StreamHandle::new(shared.clone(), self.conn_waker.clone()),
                    self.config.max_message_bytes,
                    ctx,
                );
                let work = AssertUnwindSafe(handler(call)).catch_unwind();
                self.running.push(Box::pin(async move {
                    let _ = work.await;
                    None
                }));
                self.streaming.push((stream, shared.clone()));
                self.calls.insert(stream, Call::Streaming(shared));
            }
            None => unreachable!("checked above"),
        }
    }

    fn start_unary(&mut self, stream: u32, path: String, ctx: super::CallContext, message: Bytes) {
        let timeout = ctx.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let router = self.router.clone();
        let max = self.config.max_message_bytes;
        let (abort, registration) = AbortHandle::new_pair();
        let work = async move {
            let metrics = router.metrics.clone();
            let in_flight = metrics.as_deref().map(RpcMetrics::start);
            let Some(Route::Unary(handler)) = router.routes.get(path.as_str()) else {
                unreachable!("routed before")
            };
            // A handler bug must cost one call, never the core.
            let call = async {
                match AssertUnwindSafe(handler(message, ctx)).catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => Err(Status::internal("handler panicked")),
                }
            };
            let reply = match timeout {
                Some(t) => with_deadline(call, t).await,
                None => call.await,
            };
            let reply = match reply {
                Ok(r) if r.len() > max + framing::PREFIX_LEN => {
                    Err(Status::from(PairError::MessageTooLarge(format!(
                        "reply of {} bytes exceeds the limit of {max} bytes",
                        r.len() - framing::PREFIX_LEN
                    ))))
                }
                other => other,
            };
            if let (Some(metrics), Some(call)) = (metrics.as_deref(), in_flight) {
                let code = reply.as_ref().map_or_else(|s| s.code, |_| Code::OK);
                metrics.finish(&path, code, call.started().elapsed());
            }
            Finished { stream, reply }
        };
        self.calls.insert(stream, Call::Running(abort));
        self.running.push(Box::pin(Abortable::new(work, registration).map(Result::ok)));
    }

    fn reply(&mut self, conn: &mut Conn, done: Finished) {
        match self.calls.remove(&done.stream) {
            Some(Call::Running(_)) => {}
            Some(Call::Unary { .. }) => {
                // The deadline passed before the request body was complete.
                self.calls.insert(done.stream, Call::Answered);
                if let Err(status) = &done.reply {
                    self.answer(conn, done.stream, status);
                }
                return;
            }
            Some(other) => {
                self.calls.insert(done.stream, other);
                self.forget_if_done(conn, done.stream);
                return;
            }
            None => return,
        }
        match done.reply {
            Ok(reply) if conn.backlog_full(reply.len()) => {
                // The peer neither reads nor opens its windows: its replies would pile up here.
                let status = Status::resource_exhausted(
                    "the connection's unsent replies are over their bound; read them first",
                );
                conn.send_headers(done.stream, &blocks::trailers_only(&status), true);
            }
            Ok(reply) => {
                if conn.send_headers(done.stream, blocks::response_headers(), false) {
                    conn.send_data(done.stream, reply, false);
                    conn.send_headers(done.stream, blocks::ok_trailers(), true);
                }
            }
            Err(status) => {
                conn.send_headers(done.stream, &blocks::trailers_only(&status), true);
            }
        }
    }

    /// Answers `stream` with `status` now (Trailers-Only) and ignores the rest of its request.
    fn answer(&mut self, conn: &mut Conn, stream: u32, status: &Status) {
        conn.send_headers(stream, &blocks::trailers_only(status), true);
        self.calls.insert(stream, Call::Answered);
        self.forget_if_done(conn, stream);
    }

    /// Moves what streaming handlers sent onto the connection; true when anything moved.
    fn pump_streaming(&mut self, conn: &mut Conn) -> bool {
        let mut moved = false;
        let calls = &mut self.calls;
        self.streaming.retain(|(id, shared)| {
            let mut s = shared.borrow_mut();
            while let Some(out) = s.outbox.pop_front() {
                if let Outgoing::Message(bytes) = &out {
                    if conn.backlog_full(bytes.len()) {
                        // The peer is not reading: the message waits in the bounded outbox.
                        s.outbox.push_front(out);
                        break;
                    }
                }
                moved = true;
                match out {
                    Outgoing::Message(bytes) => {
                        if !s.headers_sent {
                            s.headers_sent = true;
                            conn.send_headers(*id, blocks::response_headers(), false);
                        }
                        if !conn.send_data(*id, bytes, false) {
                            s.cancelled = true;
                            s.wake_reader();
                        }
                    }
                    Outgoing::Finish(status) => {
                        if s.headers_sent {
                            let mut block = Vec::new();
                            blocks::status_trailers(&status, &mut block);
                            conn.send_headers(*id, &block, true);
                        } else {
                            conn.send_headers(*id, &blocks::trailers_only(&status), true);
                        }
                        s.finished = true;
                    }
                }
            }
            let done = s.finished || s.cancelled;
            if done && calls.get(id).is_some_and(|c| matches!(c, Call::Streaming(_))) {
                calls.remove(id);
            }
            !done
        });
        moved
    }
}
