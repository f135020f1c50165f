//! Storage node `Batch` throughput on loopback: a real node (fjall engine in a temporary
//! directory, group-commit durability) served by one glommio executor pinned to one CPU, driven
//! by a client executor pinned to another, one call at a time. Each call carries 1, 16 or 128
//! writes of 100-byte values; throughput is in operations (writes), so the figures show how much
//! batching amortises the per-call cost (HTTP/2 stream, cross-core round trip, journal persist).
//!
//! Writes cycle over [`KEYS`] keys with an ever-growing one-entry clock, so every write replaces
//! the stored version (a read-modify-write that applies) and the data set stays bounded. Only the
//! call itself is timed: building and encoding the next request and checking the reply happen
//! between timed sections. `storage_batch/empty`, a Batch with no operations, is the reference:
//! the fixed cost of a call. Run with `cargo bench --bench storage_batch`.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use pairdb::{
    config::StorageConfig,
    proto::storage::{
        batch_operation::Op, batch_result::Result as BatchOutcome, BatchOperation, BatchRequest,
        BatchResponse, VectorClock, VectorClockEntry, Version, WriteRequest,
    },
    rpc::{framing, Channel, ClientConfig},
    runtime::{listen, pool::allowed_cpus, shutdown::Shutdown},
    storage::node::StorageNode,
};
use prost::Message;

const BATCH: &str = "/pairdb.storage.v1.StorageService/Batch";
/// Distinct keys the writes cycle over.
const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 100;
/// Locked io_uring memory per executor; two fit the common 8 MiB RLIMIT_MEMLOCK.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// A request for the client executor: `iters` Batch calls of `ops` writes; replies with the time
/// spent inside the calls.
struct Job {
    ops: usize,
    iters: u64,
    done: mpsc::Sender<Duration>,
}

/// A storage node on one pinned executor and a client on another.
struct Loopback {
    jobs: Option<mpsc::Sender<Job>>,
    client: Option<ExecutorJoinHandle<()>>,
    server: Option<ExecutorJoinHandle<()>>,
    shutdown: Shutdown,
    _data_dir: tempfile::TempDir,
}

impl Loopback {
    fn start() -> Loopback {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let config = StorageConfig {
            node_id: "bench".into(),
            data_dir: data_dir.path().to_path_buf(),
            ..StorageConfig::default()
        };
        let reservation =
            listen::reserve("127.0.0.1:0".parse().expect("literal address")).expect("free port");
        let addr = reservation.addr;
        let node = StorageNode::open(&config, addr).expect("storage node opens");
        let cpus = allowed_cpus();
        let (client_cpu, server_cpu) = (cpus[0], cpus[1 % cpus.len()]);

        let shutdown = Shutdown::new();
        let (bound_tx, bound_rx) = mpsc::channel();
        let server_shutdown = shutdown.clone();
        let server = LocalExecutorBuilder::new(Placement::Fixed(server_cpu))
            .name("bench-storage")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                let listener = node.bind().expect("bind the reserved port");
                bound_tx.send(()).expect("bench waits for the bind");
                node.serve_core(listener, server_shutdown).await;
            })
            .expect("server executor starts");
        bound_rx.recv().expect("server bound");
        drop(reservation);

        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let client = LocalExecutorBuilder::new(Placement::Fixed(client_cpu))
            .name("bench-client")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                let channel =
                    Channel::connect(addr, &ClientConfig::default()).await.expect("connect");
                let mut seq = 0u64;
                loop {
                    // Polled rather than blocked on, so the connection's driver keeps running.
                    match jobs_rx.try_recv() {
                        Ok(job) => {
                            let took = run_job(&channel, &job, &mut seq).await;
                            let _ = job.done.send(took);
                        }
                        Err(mpsc::TryRecvError::Empty) => {
                            glommio::timer::sleep(Duration::from_millis(1)).await
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
            })
            .expect("client executor starts");
        Loopback {
            jobs: Some(jobs_tx),
            client: Some(client),
            server: Some(server),
            shutdown,
            _data_dir: data_dir,
        }
    }

    fn run(&self, ops: usize, iters: u64) -> Duration {
        let (done, took) = mpsc::channel();
        let jobs = self.jobs.as_ref().expect("running");
        jobs.send(Job { ops, iters, done }).expect("client executor alive");
        took.recv().expect("client executor finished the job")
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(client) = self.client.take() {
            let _ = client.join();
        }
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

async fn run_job(channel: &Channel, job: &Job, seq: &mut u64) -> Duration {
    let value = Bytes::from(vec![0x5a; VALUE_BYTES]);
    let mut total = Duration::ZERO;
    for _ in 0..job.iters {
        let request = framing::encode_to_bytes(&batch(job.ops, seq, &value));
        let started = Instant::now();
        let reply = channel.unary_raw(BATCH, request, None).await.expect("Batch call");
        total += started.elapsed();
        let reply = BatchResponse::decode(reply).expect("BatchResponse");
        assert_eq!(reply.results.len(), job.ops);
        assert!(
            reply.results.iter().all(|r| matches!(r.result, Some(BatchOutcome::Write(_)))),
            "a write failed: {reply:?}"
        );
    }
    total
}

fn batch(ops: usize, seq: &mut u64, value: &Bytes) -> BatchRequest {
    let operations = (0..ops)
        .map(|_| {
            *seq += 1;
            let write = WriteRequest {
                tenant_id: "bench".into(),
                key: format!("key-{}", *seq % KEYS),
                version: Some(Version {
                    value: value.clone(),
                    vector_clock: Some(VectorClock {
                        entries: vec![VectorClockEntry {
                            coordinator_node_id: "bench/0".into(),
                            logical_timestamp: *seq as i64,
                        }],
                    }),
                    timestamp: *seq as i64,
                    writer: "bench/0".into(),
                    tombstone: false,
                }),
            };
            BatchOperation { op: Some(Op::Write(write)) }
        })
        .collect();
    BatchRequest { operations }
}

fn storage_batch(c: &mut Criterion) {
    let loopback = Loopback::start();
    let mut group = c.benchmark_group("storage_batch");
    group.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    // The reference: an empty Batch is the call's fixed cost (HTTP/2 stream, two cross-core hops,
    // routing, prost) with no engine work, so `(t(n) - t(0)) / n` is the engine's share per write.
    group.throughput(Throughput::Elements(1));
    group.bench_function("empty", |b| b.iter_custom(|iters| loopback.run(0, iters)));
    for ops in [1usize, 16, 128] {
        group.throughput(Throughput::Elements(ops as u64));
        group.bench_function(BenchmarkId::new("writes", ops), |b| {
            b.iter_custom(|iters| loopback.run(ops, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, storage_batch);
criterion_main!(benches);
