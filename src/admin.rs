//! The admin HTTP port: `/metrics` (Prometheus text format), `/health/live` and `/health/ready`.
//!
//! A plain HTTP/1.1 server on its own std thread, not on the request cores: a scrape merges every
//! core's metrics and may read the metadata store (blocking), and a probe must answer even when
//! every core is busy. It is deliberately small and bounded: GET and HEAD only, one request per
//! connection (`Connection: close`), requests over [`MAX_REQUEST_BYTES`] refused, at most
//! [`MAX_CONNECTIONS`] connections served at once (more are answered 503 and closed), and every
//! socket read and write has a timeout, so a stuck client costs one thread for a few seconds.
//!
//! Liveness is "the process answers". Readiness is the [`HealthState`] the role maintains (the
//! coordinator: metadata store answers and enough storage nodes are up for a quorum at the
//! default replication factor; every role: not shutting down), the same state that
//! `grpc.health.v1` reports.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    metrics::{self, MetricsHub, Sample},
    rpc::health::HealthState,
};

/// Connections served at once; more get a 503. Scrapers and probes need one or two each.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head accepted, bytes. A GET for one of three paths needs far less.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Socket read and write timeout.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the cores' snapshots.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Process-wide samples computed at scrape time, off the cores (may block).
pub type ExtraSamples = Box<dyn Fn(&mut Vec<Sample>) + Send + Sync>;

/// What the admin port reports on.
pub struct AdminSource {
    /// The cores' metrics.
    pub hub: MetricsHub,
    /// Readiness (and shutdown), shared with `grpc.health.v1`.
    pub health: HealthState,
    /// Process-wide samples (hints pending in the store, ...).
    pub extra: ExtraSamples,
}

impl AdminSource {
    /// The `/metrics` body.
    pub fn metrics_text(&self) -> String {
        let (mut samples, missing) = self.hub.scrape(SCRAPE_TIMEOUT);
        samples.push(Sample::gauge(
            "pairdb_scrape_cores_missing",
            "Cores that did not answer this scrape in time (their metrics are left out).",
            missing as f64,
        ));
        samples.push(Sample::gauge(
            "pairdb_ready",
            "1 when the process is ready to serve (as /health/ready), else 0.",
            if self.health.is_ready() { 1.0 } else { 0.0 },
        ));
        (self.extra)(&mut samples);
        metrics::render(&metrics::merge(samples))
    }
}

/// Serves the admin port on `listener` from a thread of its own, for the life of the process.
pub fn spawn(listener: TcpListener, source: Arc<AdminSource>) -> io::Result<()> {
    std::thread::Builder::new().name("pairdb-admin".into()).spawn(move || {
        let open = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                // Out of descriptors: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let _ = respond(&stream, 503, "text/plain", "too many admin connections\n", false);
                continue;
            }
            let (source, done) = (source.clone(), open.clone());
            let spawned =
                std::thread::Builder::new().name("pairdb-admin-conn".into()).spawn(move || {
                    serve(stream, &source);
                    done.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    })?;
    Ok(())
}

fn serve(stream: TcpStream, source: &AdminSource) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let head = match read_head(&stream) {
        Ok(head) => head,
        Err(RequestError::TooLarge) => {
            let _ = respond(&stream, 431, "text/plain", "request too large\n", false);
            return;
        }
        Err(RequestError::Io) => return,
    };
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(&stream, 405, "text/plain", "only GET and HEAD\n", head_only);
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let _ = match path {
        "/metrics" => respond(
            &stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &source.metrics_text(),
            head_only,
        ),
        "/health/live" => respond(&stream, 200, "text/plain", "live\n", head_only),
        "/health/ready" if source.health.is_ready() => {
            respond(&stream, 200, "text/plain", "ready\n", head_only)
        }
        "/health/ready" => {
            let body = format!("not ready: {}\n", source.health.not_ready_reason());
            respond(&stream, 503, "text/plain", &body, head_only)
        }
        _ => respond(
            &stream,
            404,
            "text/plain",
            "try /metrics, /health/live, /health/ready\n",
            head_only,
        ),
    };
}

enum RequestError {
    TooLarge,
    Io,
}

/// Reads up to the end of the request head (the blank line); the request line is what we need.
fn read_head(mut stream: &TcpStream) -> Result<String, RequestError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if end > MAX_REQUEST_BYTES {
                return Err(RequestError::TooLarge);
            }
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| RequestError::Io);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(RequestError::Io),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn respond(
    mut stream: &TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// A minimal HTTP/1.1 GET, for `pairdb probe` and tests: the status code and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")?;
    let mut reply = Vec::new();
    stream.take(64 << 20).read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of HTTP head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(health: HealthState) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let source = AdminSource {
            hub: MetricsHub::new(),
            health,
            extra: Box::new(|out| out.push(Sample::counter("pairdb_test_total", "t.", 3))),
        };
        spawn(listener, Arc::new(source)).unwrap();
        addr
    }

    #[test]
    fn endpoints_answer() {
        let health = HealthState::default();
        let addr = start(health.clone());
        let t = Duration::from_secs(5);
        assert_eq!(get(addr, "/health/live", t).unwrap().0, 200);
        assert_eq!(get(addr, "/health/ready", t).unwrap().0, 200);
        health.set_ready(false, "no quorum");
        let (status, body) = get(addr, "/health/ready", t).unwrap();
        assert_eq!((status, body.as_str()), (503, "not ready: no quorum\n"));
        let (status, body) = get(addr, "/metrics", t).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("pairdb_test_total 3\n"), "{body}");
        assert!(body.contains("pairdb_ready 0\n"), "{body}");
        assert_eq!(get(addr, "/nope", t).unwrap().0, 404);
    }

    #[test]
    fn oversized_requests_are_refused() {
        let addr = start(HealthState::default());
        let mut s = TcpStream::connect(addr).unwrap();
        let big = format!("GET /metrics HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_REQUEST_BYTES));
        let _ = s.write_all(big.as_bytes());
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    }
}
