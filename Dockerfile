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
# 50051: coordinator gRPC; 50061: storage node gRPC.
EXPOSE 50051 50061
# glommio (io_uring) needs locked memory: every executor registers 1 MiB of I/O buffers plus its
# rings. Run with a memlock limit of at least 64 MiB, e.g. `docker run --ulimit memlock=-1 ...`
# (Kubernetes: the node's container runtime default, or a privileged init raising it).
ENTRYPOINT ["pairdb"]
CMD ["coordinator", "--config", "/etc/pairdb/coordinator.yaml", "--host", "0.0.0.0", "--data-dir", "/var/lib/pairdb/coordinator"]
