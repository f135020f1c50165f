use std::{net::SocketAddr, rc::Rc, time::Duration};

use glommio::{net::TcpListener, LocalExecutorBuilder, Placement};
use pairdb::{
    proto::health::{HealthCheckRequest, HealthCheckResponse},
    rpc::{
        health::{self, HealthState},
        reflection, Channel, ClientConfig, Router, ServerConfig,
    },
    runtime::shutdown::Shutdown,
};

#[test]
fn health_check_round_trip() {
    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let sd = shutdown.clone();
    let server = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let router = reflection::add(health::add(Router::new(), HealthState::default()));
            pairdb::rpc::server::serve(
                listener,
                Rc::new(router),
                Rc::new(ServerConfig::default()),
                sd,
                Duration::from_secs(1),
            )
            .await;
        })
        .unwrap();
    let addr = rx.recv().unwrap();
    let client = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let ch = Channel::connect(addr, &ClientConfig::default()).await.unwrap();
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                let r: HealthCheckResponse = ch
                    .unary(
                        "/grpc.health.v1.Health/Check",
                        &HealthCheckRequest::default(),
                        Some(Duration::from_secs(1)),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, 1);
            }
            eprintln!("1000 sequential calls in {:?}", t.elapsed());
            let e = ch
                .unary::<_, HealthCheckResponse>(
                    "/grpc.health.v1.Health/Check",
                    &HealthCheckRequest { service: "nope".into() },
                    None,
                )
                .await
                .unwrap_err();
            eprintln!("{e}");
            let e = ch
                .unary::<_, HealthCheckResponse>("/x.Y/Z", &HealthCheckRequest::default(), None)
                .await
                .unwrap_err();
            eprintln!("{e}");
        })
        .unwrap();
    client.join().unwrap();
    shutdown.trigger();
    server.join().unwrap();
}
