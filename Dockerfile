# syntax=docker/dockerfile:1
# Two stages: a release build, then a small runtime image with only the binary and the configs.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# protox compiles the protos in-process, so no protoc package is needed.
RUN cargo build --release --locked -p pairdb --bin pairdb

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/pairdb --create-home pairdb
COPY --from=build /src/target/release/pairdb /usr/local/bin/pairdb
COPY config/ /etc/pairdb/
USER pairdb
WORKDIR /var/lib/pairdb
# 50051: coordinator gRPC; 50061: storage node gRPC; 9090 / 9091: their admin HTTP ports
# (/metrics, /health/live, /health/ready).
EXPOSE 50051 50061 9090 9091
# Ready = the admin port answers /health/ready with 200 (for a coordinator: metadata store up and a
# quorum of storage nodes reachable). `pairdb probe` is a built-in HTTP GET, so the image needs no
# curl. For a storage node set PAIRDB_PROBE_URL=http://127.0.0.1:9091/health/ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["pairdb", "probe"]
# glommio (io_uring) needs locked memory: every executor registers 1 MiB of I/O buffers plus its
# rings. Run with a memlock limit of at least 64 MiB, e.g. `docker run --ulimit memlock=-1 ...`
# (Kubernetes has no per-pod ulimit: give the container CAP_IPC_LOCK, which exempts it from the
# limit, as k8s/ does, or raise the runtime's default; see tuning/README.md).
ENTRYPOINT ["pairdb"]
CMD ["coordinator", "--config", "/etc/pairdb/coordinator.yaml", "--host", "0.0.0.0", "--data-dir", "/var/lib/pairdb/coordinator"]
