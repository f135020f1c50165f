//! The accept loop every server of a core shares (gRPC, the HTTP/JSON API): accept until
//! shutdown, refuse connections past a per-core limit, serve each accepted connection on a task
//! of its own, then wait for the open ones to drain.

use std::{
    cell::Cell,
    future::Future,
    pin::pin,
    rc::Rc,
    time::{Duration, Instant},
};

use glommio::net::{TcpListener, TcpStream};

use crate::runtime::shutdown::Shutdown;

/// Accepts on `listener` until `shutdown` fires, serving each connection with `serve` on a task
/// of its own; at most `max_connections` open at once (more are closed at once, logged under
/// `server`). Returns once the open connections finished or `drain_timeout` passed.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    server: &'static str,
    max_connections: usize,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    mut serve: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let open = Rc::new(Cell::new(0usize));
    let mut stop = pin!(shutdown.wait());
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            (&mut stop).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(server, error = %e, "accept failed");
                // Out of descriptors or memory: back off instead of spinning on the error.
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= max_connections {
            tracing::warn!(server, limit = max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let connection = serve(stream);
        let open = open.clone();
        glommio::spawn_local(async move {
            connection.await;
            open.set(open.get() - 1);
        })
        .detach();
    }
    drop(listener);
    let deadline = Instant::now() + drain_timeout;
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}
