# syntax=docker/dockerfile:1
# vapi-reconciler: a static-ish Rust binary on distroless (glibc, CA certificates, user 65532).
#   docker build -t vapi-reconciler:0.1.0 .
#   docker run --rm vapi-reconciler:0.1.0 --help
# Needs BuildKit (the default builder) for the cache mounts.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY migrations ./migrations
COPY src ./src
# The registry and target directories are cache mounts, so the binary is copied out of target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vapi-reconciler \
    && install -D -m 0755 target/release/vapi-reconciler /out/vapi-reconciler

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="vapi-reconciler" \
      org.opencontainers.image.description="Keeps Vapi voice assistants equal to the agents stored in Postgres." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/vapi-reconciler /usr/local/bin/vapi-reconciler
USER 65532:65532
# /healthz, /readyz and /metrics (LISTEN_ADDR, default 0.0.0.0:8080).
EXPOSE 8080
ENV LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/vapi-reconciler"]
CMD ["run"]
