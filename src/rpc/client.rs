//! The gRPC client: unary calls over one HTTP/2 connection (`h2` on glommio).
//!
//! A [`Channel`] is one connection, usable from the core that opened it; its driver task runs on
//! that core. Callers that want several connections or reconnection keep their own small set of
//! channels (the coordinator keeps a fixed few per storage node per core). Every call sends
//! `grpc-timeout` when it has a deadline and enforces the same deadline locally.

use std::{cell::Cell, net::SocketAddr, rc::Rc, time::Duration};

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;
use h2::client::SendRequest;
use http::{HeaderValue, Request, Uri};
use prost::Message;

use crate::rpc::{
    framing::{self, FrameError, DEFAULT_MAX_MESSAGE_BYTES},
    glommio_io::GlommioIo,
    status::Status,
};

/// Tunables of a client connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Largest reply accepted. 4 MiB, as gRPC's default.
    pub max_message_bytes: usize,
    /// How long to wait for TCP connect plus the HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 stream window: 1 MiB, so large replies don't stall on window updates.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window.
    pub connection_window_bytes: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: Duration::from_secs(2),
            stream_window_bytes: 1 << 20,
            connection_window_bytes: 8 << 20,
        }
    }
}

/// One HTTP/2 connection to a gRPC server.
#[derive(Clone)]
pub struct Channel {
    send: SendRequest<Bytes>,
    authority: http::uri::Authority,
    closed: Rc<Cell<bool>>,
    max_message_bytes: usize,
}

impl Channel {
    /// Connects to `addr` and completes the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Channel, Status> {
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| Status::unavailable(format!("connect to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            h2::client::Builder::new()
                .initial_window_size(config.stream_window_bytes)
                .initial_connection_window_size(config.connection_window_bytes)
                .max_send_buffer_size(config.max_message_bytes + framing::PREFIX_LEN)
                .handshake::<_, Bytes>(GlommioIo(stream))
                .await
                .map_err(|e| Status::unavailable(format!("HTTP/2 handshake with {addr}: {e}")))
        };
        let (send, conn) = match glommio::timer::timeout(config.connect_timeout, async {
            Ok(connect.await)
        })
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(Status::unavailable(format!("connect to {addr}: timed out"))),
        };
        let closed = Rc::new(Cell::new(false));
        let closed_by_driver = closed.clone();
        glommio::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "client connection ended");
            }
            closed_by_driver.set(true);
        })
        .detach();
        let authority = addr
            .to_string()
            .parse()
            .map_err(|e| Status::internal(format!("address {addr} is not an authority: {e}")))?;
        Ok(Channel { send, authority, closed, max_message_bytes: config.max_message_bytes })
    }

    /// True once the connection is gone; open a new channel then.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
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
        match timeout {
            None => self.call(path, framed_request, None).await,
            Some(t) => {
                futures_lite::future::or(self.call(path, framed_request, Some(t)), async {
                    glommio::timer::sleep(t).await;
                    Err(Status::deadline_exceeded(format!("{path}: no reply within {t:?}")))
                })
                .await
            }
        }
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
