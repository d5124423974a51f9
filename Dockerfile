# NetTraffic-Sentinel: a privileged, host-network container for modern-kernel NAS boxes.
#
#   docker build -t nettraffic-sentinel .
#   docker compose up -d          (see compose.yaml)
#
# Stage 1 builds the daemon with the eBPF object embedded; stage 2 is a slim runtime.

FROM rust:1.95-bookworm AS build
# LLVM 22 for bpf-linker (bookworm-security carries llvm-22), and the dated nightly that builds
# the eBPF crate with -Z build-std (pinned: newer aya lines need rustc 1.98, see TOOLCHAIN notes).
ARG EBPF_NIGHTLY=nightly-2026-05-19
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev \
 && rm -rf /var/lib/apt/lists/* \
 && rustup toolchain install "$EBPF_NIGHTLY" --profile minimal --component rust-src \
 && LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version 0.13.0 \
      --no-default-features --features llvm-22
WORKDIR /src
COPY . .
ENV SENTINEL_EBPF_TOOLCHAIN=$EBPF_NIGHTLY
RUN cargo build --release --locked -p sentinel \
 && install -D target/release/sentinel /out/sentinel

FROM debian:bookworm-slim
# tzdata is not needed: time zones are embedded in the binary.
COPY --from=build /out/sentinel /usr/local/bin/sentinel
# The dashboard's port; MONITOR_IFACE defaults to the host's default-route interface; the history
# lives in the /data volume.
ENV WEB_PORT=8080 DB_PATH=/data/traffic.db
VOLUME /data
EXPOSE 8080
# No curl needed: the binary asks its own /api/health (503 while capture or storage is down).
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/sentinel", "healthcheck"]
# SIGTERM makes the daemon detach, drain and flush before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sentinel"]
