//! The floor of the front-end benchmark: the least a unary gRPC server on `h2` + glommio can do.
//!
//! Every request on any path is read to its end and answered with one fixed 5-byte-prefixed
//! message and `grpc-status: 0`: no routing, no header checks, no protobuf, no metrics, no
//! deadlines. Connections are served the way PairDB's server serves them (one task per
//! connection, its streams polled inside it so that one turn's replies leave in one write, the
//! same h2 settings). Whatever this reaches under `benches/scripts/front-end.sh` is what h2 and
//! glommio cost on their own; PairDB's front end can only add to it.
//!
//! ```sh
//! cargo build --release --example h2_floor
//! taskset -c 1 target/release/examples/h2_floor 127.0.0.1:58251
//! ```

use std::{future::poll_fn, pin::Pin, task::Poll};

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};
use glommio::{net::TcpListener, LocalExecutorBuilder, Placement};
use h2::{server::SendResponse, RecvStream};
use http::{HeaderMap, HeaderValue, Request, Response};
use pairdb::rpc::glommio_io::GlommioIo;

/// The reply: a `GetTenantResponse`-sized message (tenant id "default", replication factor 3).
const REPLY: &[u8] = b"\0\0\0\0\x0b\x0a\x07default\x10\x03";

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:58251".into());
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("h2-floor")
        .spawn(move || async move {
            let listener = TcpListener::bind(addr.as_str()).expect("bind");
            eprintln!("h2_floor listening on {addr}");
            loop {
                let Ok(stream) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(serve(stream)).detach();
            }
        })
        .expect("executor")
        .join()
        .expect("join");
}

async fn serve(stream: glommio::net::TcpStream) {
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(1024)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake::<_, Bytes>(GlommioIo(stream));
    let Ok(mut conn) = handshake.await else { return };
    type Call = Pin<Box<dyn std::future::Future<Output = ()>>>;
    let mut in_flight: FuturesUnordered<Call> = FuturesUnordered::new();
    poll_fn(|cx| loop {
        let mut progressed = false;
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    in_flight.push(Box::pin(answer(req, respond)));
                    progressed = true;
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = in_flight.poll_next_unpin(cx) {
            progressed = true;
        }
        if !progressed {
            return Poll::Pending;
        }
    })
    .await;
}

async fn answer(req: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let mut body = req.into_body();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let mut head = Response::new(());
    head.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let Ok(mut send) = respond.send_response(head, false) else { return };
    if send.send_data(Bytes::from_static(REPLY), false).is_ok() {
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
    }
}
