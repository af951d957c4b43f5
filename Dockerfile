# syntax=docker/dockerfile:1
#
# The sessiond container image:
#
#   docker build -t ghcr.io/sessiond/sessiond:0.1.0 .
#   docker run --rm -p 50051:50051 ghcr.io/sessiond/sessiond:0.1.0
#
# Three build stages share one Rust toolchain: `planner` reduces the
# manifests to a recipe, `builder` compiles the dependencies from that recipe
# alone (a layer that is rebuilt only when Cargo.toml or Cargo.lock change)
# and then sessiond itself, in the release profile (no debug info, symbols
# kept). The runtime stage is distroless: glibc, CA certificates, no shell,
# user 65532. The tag is sessiond's version (`sessiond --version`,
# Cargo.toml), which is also the Helm chart's appVersion.

FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies only: cached until the recipe changes. With the build's
# flags (`--cfg tokio_unstable`), so that the build below reuses them.
COPY --from=planner /build/recipe.json recipe.json
COPY .cargo/config.toml .cargo/config.toml
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin sessiond
# Then sessiond.
COPY . .
RUN cargo build --release --locked --bin sessiond \
 && install -D -m 0755 target/release/sessiond /out/usr/local/bin/sessiond \
 && install -D -m 0644 config/roles.yaml /out/etc/sessiond/roles.yaml \
 && install -d /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/local/bin/sessiond /usr/local/bin/sessiond
COPY --from=builder /out/etc/sessiond/roles.yaml /etc/sessiond/roles.yaml
# The embedded store's directory, writable by sessiond's user. Mount a
# volume here to keep the store across containers.
COPY --from=builder --chown=65532:65532 /out/data /data
USER 65532:65532
ENV SESSIOND_LISTEN=0.0.0.0:50051 \
    SESSIOND_DATA_DIR=/data \
    SESSIOND_ROLES_FILE=/etc/sessiond/roles.yaml
EXPOSE 50051
# `sessiond probe` asks grpc.health.v1 on the loopback address of
# SESSIOND_LISTEN, over TLS when SESSIOND_TLS_CERT is set, and exits 0 only
# on SERVING. Exec form: the image has no shell.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/sessiond", "probe", "--timeout=2s"]
ENTRYPOINT ["/usr/local/bin/sessiond"]
