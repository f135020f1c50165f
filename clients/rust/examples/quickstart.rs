//! Quickstart: run `pairdb dev` (or `cargo run --release -- dev` in the workspace), then
//!
//! ```sh
//! cargo run -p pairdb-client --example quickstart            # 127.0.0.1:50051
//! cargo run -p pairdb-client --example quickstart -- HOST:PORT [HOST:PORT...]
//! ```

use std::time::Duration;

use pairdb_client::{Client, Consistency, Error, WriteOptions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut addresses: Vec<String> = std::env::args().skip(1).collect();
    if addresses.is_empty() {
        addresses.push("127.0.0.1:50051".into());
    }
    let client = Client::builder()
        .addresses(addresses)
        .tenant("default")
        .timeout(Duration::from_secs(2))
        .build()?;

    // Write, read, overwrite what was read.
    let written = client.put("greeting", "hello").await?;
    println!(
        "put greeting (idempotency key {}, {} replicas)",
        written.idempotency_key, written.replica_count
    );
    let read = client.get("greeting").await?;
    println!("get greeting = {:?}", String::from_utf8_lossy(&read.value));
    client
        .put_with(
            "greeting",
            "hello again",
            WriteOptions::new().consistency(Consistency::All).context(read.clock),
        )
        .await?;

    // Read-modify-write: a counter.
    let bump = |current: Option<&[u8]>| {
        let n: u64 = current.and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()).unwrap_or(0);
        Some((n + 1).to_string().into_bytes())
    };
    client.update("visits", bump).await?;
    let visits = client.get("visits").await?;
    println!("visits = {}", String::from_utf8_lossy(&visits.value));

    // Typed errors.
    client.delete("greeting").await?;
    match client.get("greeting").await {
        Err(Error::KeyNotFound { message }) => println!("after delete: {message}"),
        other => println!("after delete: unexpected {other:?}"),
    }
    match client.with_tenant("nobody").get("k").await {
        Err(e @ Error::TenantNotFound { .. }) => println!("unknown tenant: {e}"),
        other => println!("unknown tenant: unexpected {other:?}"),
    }

    // Tenants and nodes.
    match client.create_tenant("quickstart", 3).await {
        Ok(t) => println!("created tenant {} (rf {})", t.tenant_id, t.replication_factor),
        Err(Error::TenantExists { .. }) => println!("tenant quickstart exists already"),
        Err(e) => return Err(e),
    }
    for node in client.list_storage_nodes().await? {
        println!("node {} on {}:{} is {}", node.node_id, node.host, node.port, node.status);
    }
    Ok(())
}
