//! The gRPC client: unary calls over one HTTP/2 connection, on PairDB's own HTTP/2 layer
//! (`rpc.http2: native`) or on the `h2` crate, both on glommio.
//!
//! A [`Channel`] is one connection, usable from the core that opened it; its driver task runs on
//! that core. Callers that want several connections or reconnection keep their own small set of
//! channels (the coordinator keeps a fixed few per storage node per core). Every call sends
//! `grpc-timeout` when it has a deadline and enforces the same deadline locally.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

use ahash::AHashMap;
use futures_lite::{AsyncRead, AsyncWrite};

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;
use h2::client::SendRequest;
use http::{HeaderValue, Request, Uri};
use prost::Message;

pub use crate::config::Http2Impl;
use crate::rpc::{
    framing::{self, FrameError, DEFAULT_MAX_MESSAGE_BYTES},
    glommio_io::GlommioIo,
    http2::client::{ClientConn, ClientLimits},
    status::Status,
    tls::ClientTls,
};

/// Tunables of a client connection.
#[derive(Clone)]
pub struct ClientConfig {
    /// Largest reply accepted. 4 MiB, as gRPC's default.
    pub max_message_bytes: usize,
    /// How long to wait for TCP connect plus the HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 stream window: 1 MiB, so large replies don't stall on window updates.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window.
    pub connection_window_bytes: u32,
    /// Which HTTP/2 implementation carries the calls (`rpc.http2`).
    pub http2: Http2Impl,
    /// The `authorization` metadata sent on every call (the whole value, as
    /// `Bearer <secret>`), when set. Sent so that no HPACK table keeps it (never-indexed), and
    /// never printed.
    pub authorization: Option<Bytes>,
    /// TLS under HTTP/2 (`rpc.tls.storage_*` for a coordinator's links to storage nodes; the
    /// CLI's `--tls-ca`). None: plaintext.
    pub tls: Option<ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: Duration::from_secs(2),
            stream_window_bytes: 1 << 20,
            connection_window_bytes: 8 << 20,
            http2: Http2Impl::default(),
            authorization: None,
            tls: None,
        }
    }
}

/// Never prints the credential.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("stream_window_bytes", &self.stream_window_bytes)
            .field("connection_window_bytes", &self.connection_window_bytes)
            .field("http2", &self.http2)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// One HTTP/2 connection to a gRPC server.
#[derive(Clone)]
pub struct Channel {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    H2(H2Channel),
    Native(Rc<NativeChannel>),
}

impl Channel {
    /// Connects to `addr` and completes the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Channel, Status> {
        let inner = match config.http2 {
            Http2Impl::H2 => Inner::H2(H2Channel::connect(addr, config).await?),
            Http2Impl::Native => Inner::Native(NativeChannel::connect(addr, config).await?),
        };
        Ok(Channel { inner })
    }

    /// True once the connection is gone; open a new channel then.
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::H2(c) => c.closed.get(),
            Inner::Native(c) => c.is_closed(),
        }
    }

    /// Calls the unary method at `path` (`/package.Service/Method`).
    pub async fn unary<Req: Message, Resp: Message + Default>(
        &self,
        path: &str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, Status> {
        let reply = self.unary_raw(path, framing::encode_to_bytes(req), timeout).await?;
        Resp::decode(reply)
            .map_err(|e| Status::internal(format!("undecodable reply from {path}: {e}")))
    }

    /// Calls `path` with an already framed request; returns the reply message bytes.
    pub async fn unary_raw(
        &self,
        path: &str,
        framed_request: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, Status> {
        let call = async {
            match &self.inner {
                Inner::H2(c) => c.call(path, framed_request, timeout).await,
                Inner::Native(c) => c.call(path, framed_request, timeout).await,
            }
        };
        match timeout {
            None => call.await,
            Some(t) => {
                futures_lite::future::or(call, async {
                    glommio::timer::sleep(t).await;
                    Err(Status::deadline_exceeded(format!("{path}: no reply within {t:?}")))
                })
                .await
            }
        }
    }
}

/// A channel on the `h2` crate.
#[derive(Clone)]
struct H2Channel {
    send: SendRequest<Bytes>,
    authority: http::uri::Authority,
    closed: Rc<Cell<bool>>,
    max_message_bytes: usize,
    /// The `authorization` value of every call, marked sensitive (never indexed by HPACK).
    authorization: Option<HeaderValue>,
}

impl H2Channel {
    async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<H2Channel, Status> {
        let closed = Rc::new(Cell::new(false));
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| Status::unavailable(format!("connect to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            match &config.tls {
                None => h2_start(stream, addr, config, closed.clone()).await,
                Some(tls) => {
                    let stream = tls.connect(addr, stream).await?;
                    h2_start(stream, addr, config, closed.clone()).await
                }
            }
        };
        let send = match glommio::timer::timeout(config.connect_timeout, async {
            Ok(connect.await)
        })
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(Status::unavailable(format!("connect to {addr}: timed out"))),
        };
        let authority = addr
            .to_string()
            .parse()
            .map_err(|e| Status::internal(format!("address {addr} is not an authority: {e}")))?;
        let authorization = match &config.authorization {
            None => None,
            Some(raw) => {
                let mut value = HeaderValue::from_maybe_shared(raw.clone()).map_err(|_| {
                    Status::internal("the authorization value is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(H2Channel {
            send,
            authority,
            closed,
            max_message_bytes: config.max_message_bytes,
            authorization,
        })
    }

    async fn call(
        &self,
        path: &str,
        framed_request: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, Status> {
        let mut send = self.send.clone().ready().await.map_err(transport_status)?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Status::internal(format!("bad method path {path:?}: {e}")))?;
        let mut req = Request::post(uri).body(()).map_err(|e| Status::internal(e.to_string()))?;
        let headers = req.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("pairdb/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(t) = timeout {
            headers.insert("grpc-timeout", encode_timeout(t));
        }
        if let Some(auth) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, auth.clone());
        }
        let (response, mut stream) = send.send_request(req, false).map_err(transport_status)?;
        stream.send_data(framed_request, true).map_err(transport_status)?;
        let response = response.await.map_err(transport_status)?;
        let (parts, mut body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(Status::from_http_status(parts.status));
        }
        if let Some(status) = Status::from_headers(&parts.headers) {
            // Trailers-Only reply.
            return Err(if status.is_ok() {
                Status::internal(format!("{path}: OK without a reply message"))
            } else {
                status
            });
        }
        let mut buf = BytesMut::new();
        let mut message = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(transport_status)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if message.is_none() && buf.is_empty() {
                if let Ok(Some(len)) = framing::peek_len(&chunk, self.max_message_bytes) {
                    if chunk.len() == framing::PREFIX_LEN + len {
                        message = Some(chunk.slice(framing::PREFIX_LEN..));
                        continue;
                    }
                }
            }
            buf.extend_from_slice(&chunk);
            if message.is_none() {
                message =
                    framing::decode(&mut buf, self.max_message_bytes).map_err(|e| match e {
                        // The gRPC spec's code for a message over the receiver's limit.
                        FrameError::TooLarge { .. } => {
                            Status::resource_exhausted(format!("{path}: reply too large: {e}"))
                        }
                        _ => Status::internal(format!("{path}: bad reply framing: {e}")),
                    })?;
            }
        }
        let trailers = body.trailers().await.map_err(transport_status)?;
        let status = trailers.as_ref().and_then(Status::from_headers).unwrap_or_else(|| {
            Status::internal(format!("{path}: reply ended without grpc-status"))
        });
        if !status.is_ok() {
            return Err(status);
        }
        message.ok_or_else(|| Status::internal(format!("{path}: OK without a reply message")))
    }
}

/// The `h2` handshake over `stream` (plain TCP or TLS); spawns the connection's driver, which
/// sets `closed` when the connection ends.
async fn h2_start<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    stream: S,
    addr: SocketAddr,
    config: &ClientConfig,
    closed: Rc<Cell<bool>>,
) -> Result<SendRequest<Bytes>, Status> {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .max_send_buffer_size(config.max_message_bytes + framing::PREFIX_LEN)
        .handshake::<_, Bytes>(GlommioIo(stream))
        .await
        .map_err(|e| Status::unavailable(format!("HTTP/2 handshake with {addr}: {e}")))?;
    glommio::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "client connection ended");
        }
        closed.set(true);
    })
    .detach();
    Ok(send)
}

/// A connected stream of a native channel.
enum NativeIo {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

/// A channel on PairDB's own HTTP/2 layer: a driver task on this core owns the socket and the
/// sans-IO [`ClientConn`]; calls register a waiter and are woken with their result.
struct NativeChannel {
    state: RefCell<NativeState>,
}

struct NativeState {
    conn: ClientConn,
    waiters: AHashMap<u32, Waiter>,
    /// Calls waiting for a stream slot (the server's MAX_CONCURRENT_STREAMS).
    queued: VecDeque<Waker>,
    driver: Option<Waker>,
    closed: Option<String>,
}

#[derive(Default)]
struct Waiter {
    result: Option<Result<Bytes, Status>>,
    waker: Option<Waker>,
}

impl NativeChannel {
    async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Rc<NativeChannel>, Status> {
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| Status::unavailable(format!("connect to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            Ok::<_, Status>(match &config.tls {
                None => NativeIo::Plain(stream),
                Some(tls) => NativeIo::Tls(Box::new(tls.connect(addr, stream).await?)),
            })
        };
        let stream = match glommio::timer::timeout(config.connect_timeout, async {
            Ok(connect.await)
        })
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(Status::unavailable(format!("connect to {addr}: timed out"))),
        };
        let limits = ClientLimits {
            max_message_bytes: config.max_message_bytes,
            stream_window: config.stream_window_bytes,
            connection_window: config.connection_window_bytes,
        };
        let channel = Rc::new(NativeChannel {
            state: RefCell::new(NativeState {
                conn: {
                    let mut conn = ClientConn::new(limits, &addr.to_string());
                    if let Some(auth) = &config.authorization {
                        conn.set_authorization(auth);
                    }
                    conn
                },
                waiters: AHashMap::new(),
                queued: VecDeque::new(),
                driver: None,
                closed: None,
            }),
        });
        let driver = channel.clone();
        match stream {
            NativeIo::Plain(io) => {
                glommio::spawn_local(async move { driver.drive(io, addr).await }).detach();
            }
            NativeIo::Tls(io) => {
                glommio::spawn_local(async move { driver.drive(*io, addr).await }).detach();
            }
        }
        Ok(channel)
    }

    fn is_closed(&self) -> bool {
        self.state.borrow().closed.is_some()
    }

    async fn call(
        self: &Rc<Self>,
        path: &str,
        framed: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, Status> {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if let Some(why) = &st.closed {
                return Poll::Ready(Err(Status::unavailable(format!("transport: {why}"))));
            }
            if st.conn.can_start() {
                return Poll::Ready(Ok(()));
            }
            st.queued.push_back(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let id = {
            let mut st = self.state.borrow_mut();
            let timeout = timeout.map(encode_timeout);
            let id = st.conn.start(path, framed, timeout.as_ref().map(|t| t.as_bytes()))?;
            st.waiters.insert(id, Waiter::default());
            if let Some(w) = &st.driver {
                w.wake_by_ref();
            }
            id
        };
        let mut guard = CallGuard { channel: self, id, finished: false };
        let result = poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            let Some(waiter) = st.waiters.get_mut(&id) else {
                return Poll::Ready(Err(Status::unavailable("transport: call lost")));
            };
            if let Some(result) = waiter.result.take() {
                st.waiters.remove(&id);
                return Poll::Ready(result);
            }
            waiter.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        guard.finished = true;
        result.map_err(|s| with_path(s, path))
    }

    /// Owns the socket: reads into the connection, hands finished calls to their waiters,
    /// writes what the connection produced (one write per turn for every call started).
    /// Generic over the stream (plain TCP or TLS): one compiled copy each.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(self: Rc<Self>, mut io: S, addr: SocketAddr) {
        let mut rbuf = BytesMut::new();
        let why = poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.driver = Some(cx.waker().clone());
            }
            for _ in 0..64 {
                let mut progressed = false;
                match crate::rpc::server::read_into(&mut io, cx, &mut rbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready("the server closed the connection".to_owned())
                    }
                    Poll::Ready(Ok(_)) => {
                        st.conn.recv(&mut rbuf);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(format!("read: {e}")),
                    Poll::Pending => {}
                }
                st.deliver();
                loop {
                    let out = st.conn.output();
                    if out.is_empty() {
                        // TLS keeps records it could not send yet; plain TCP's flush is a no-op.
                        if let Poll::Ready(Err(e)) = Pin::new(&mut io).poll_flush(cx) {
                            return Poll::Ready(format!("write: {e}"));
                        }
                        break;
                    }
                    match Pin::new(&mut io).poll_write(cx, out) {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            out.drain(..n);
                            progressed = true;
                        }
                        Poll::Ready(Ok(_)) => {
                            return Poll::Ready("write: socket closed".to_owned())
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(format!("write: {e}")),
                        Poll::Pending => break,
                    }
                }
                if let Some(why) = st.conn.closed_reason() {
                    if st.conn.in_flight() == 0 && st.conn.output().is_empty() {
                        return Poll::Ready(why);
                    }
                }
                if !progressed {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        tracing::debug!(%addr, reason = %why, "client connection ended");
        let mut st = self.state.borrow_mut();
        st.conn.fail_all(&why);
        st.deliver();
        st.closed = Some(why);
        for w in st.queued.drain(..) {
            w.wake();
        }
        for w in st.waiters.values_mut() {
            if w.result.is_none() {
                w.result = Some(Err(Status::unavailable("transport: connection closed")));
            }
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
    }
}

impl NativeState {
    /// Hands finished calls to their waiters, and stream slots to queued calls.
    fn deliver(&mut self) {
        let mut freed = false;
        while let Some(done) = self.conn.next_done() {
            freed = true;
            if let Some(w) = self.waiters.get_mut(&done.stream) {
                w.result = Some(done.result);
                if let Some(waker) = w.waker.take() {
                    waker.wake();
                }
            }
        }
        if freed {
            while self.conn.can_start() {
                let Some(w) = self.queued.pop_front() else { break };
                w.wake();
            }
        }
    }
}

/// Cancels a call whose caller stopped waiting (a deadline, a dropped future).
struct CallGuard<'a> {
    channel: &'a NativeChannel,
    id: u32,
    finished: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut st = self.channel.state.borrow_mut();
        st.waiters.remove(&self.id);
        st.conn.cancel(self.id);
        if let Some(w) = &st.driver {
            w.wake_by_ref();
        }
    }
}

fn with_path(mut status: Status, path: &str) -> Status {
    if status.code == crate::rpc::status::Code::INTERNAL && !status.message.starts_with(path) {
        status.message = format!("{path}: {}", status.message);
    }
    status
}

/// Formats a `grpc-timeout` value: the finest unit whose value fits the spec's eight digits.
pub fn encode_timeout(t: Duration) -> HeaderValue {
    let micros = t.as_micros();
    let text = if micros < 100_000_000 {
        format!("{micros}u")
    } else if t.as_millis() < 100_000_000 {
        format!("{}m", t.as_millis())
    } else {
        format!("{}S", t.as_secs().min(99_999_999))
    };
    // Digits and an ASCII unit letter are always a valid header value.
    HeaderValue::try_from(text).expect("ascii")
}

/// Maps a transport failure to a status: a stream refused or a connection lost means the server
/// could not take the call (UNAVAILABLE); a cancelled stream is CANCELLED.
fn transport_status(e: h2::Error) -> Status {
    if e.reason() == Some(h2::Reason::CANCEL) {
        return Status::cancelled(format!("stream cancelled: {e}"));
    }
    Status::unavailable(format!("transport: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::server::parse_timeout;

    #[test]
    fn timeout_encoding_round_trips_within_unit() {
        for t in [
            Duration::from_micros(1),
            Duration::from_millis(250),
            Duration::from_secs(200),
            Duration::from_secs(10 * 86400),
        ] {
            let v = encode_timeout(t);
            let back = parse_timeout(v.as_bytes()).unwrap();
            assert!(back <= t && t - back < Duration::from_secs(1), "{t:?} -> {v:?} -> {back:?}");
        }
    }
}
