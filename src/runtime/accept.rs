//! The accept loop every server of a core shares (gRPC, the HTTP/JSON API): accept until
//! shutdown, refuse connections past a per-core limit, serve each accepted connection on a task
//! of its own, then wait for the open ones to drain. With a [`CoreBalance`], a connection goes to
//! the core that serves the fewest (see [`crate::runtime::balance`]), and connections other cores
//! hand over are served here like accepted ones.

use std::{
    cell::Cell,
    future::Future,
    pin::pin,
    rc::Rc,
    time::{Duration, Instant},
};

use glommio::net::{TcpListener, TcpStream};

use crate::runtime::{balance::CoreBalance, shutdown::Shutdown};

enum Next {
    Accepted(glommio::Result<TcpStream, ()>),
    Handed(TcpStream),
    Stop,
}

/// Accepts on `listener` until `shutdown` fires, serving each connection with `serve` on a task
/// of its own; at most `max_connections` open at once (more are closed at once, logged under
/// `server`). With `balance`, each accepted connection goes to the core serving the fewest, and
/// connections handed over by other cores are served here. Returns once the open connections
/// finished or `drain_timeout` passed.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    server: &'static str,
    max_connections: usize,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    mut balance: Option<CoreBalance>,
    mut serve: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let open = Rc::new(Cell::new(0usize));
    let balance_counts = balance.as_ref().map(|b| Rc::new(b.counter()));
    let mut stop = pin!(shutdown.wait());
    loop {
        let next = futures_lite::future::or(
            async { Next::Accepted(listener.accept().await) },
            futures_lite::future::or(
                async {
                    match balance.as_mut() {
                        Some(b) => Next::Handed(b.handed().await),
                        None => std::future::pending().await,
                    }
                },
                async {
                    (&mut stop).await;
                    Next::Stop
                },
            ),
        )
        .await;
        let stream = match next {
            Next::Stop => break,
            Next::Handed(stream) => stream,
            Next::Accepted(Ok(stream)) => match balance.as_ref() {
                Some(b) => match b.route(stream) {
                    Some(stream) => stream,
                    None => continue,
                },
                None => stream,
            },
            Next::Accepted(Err(e)) => {
                tracing::warn!(server, error = %e, "accept failed");
                // Out of descriptors or memory: back off instead of spinning on the error.
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= max_connections {
            tracing::warn!(server, limit = max_connections, "connection limit reached; closing");
            drop(stream);
            if let Some(c) = &balance_counts {
                c.closed();
            }
            continue;
        }
        open.set(open.get() + 1);
        let connection = serve(stream);
        let open = open.clone();
        let counted = balance_counts.clone();
        glommio::spawn_local(async move {
            connection.await;
            open.set(open.get() - 1);
            if let Some(c) = counted {
                c.closed();
            }
        })
        .detach();
    }
    drop(balance);
    drop(listener);
    let deadline = Instant::now() + drain_timeout;
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}
