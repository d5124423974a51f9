# NetTraffic-Sentinel: a host-network container with a short capability list (see compose.yaml).
#
#   docker compose up -d --build     build from source (needs the registries; about an hour on
#                                    a NAS CPU: prefer the published image, see README)
#   cargo xtask image                the same runtime image from a daemon built on this machine,
#                                    with an engine that has no network or registry
#
# Stages: `build` compiles everything from source through the project's own set-up
# (`cargo xtask setup`: Debian packages, the pinned nightly from sentinel-ebpf/ebpf-toolchain,
# bpf-linker); `runtime` is the small image users run, with the daemon from `build` or, for
# `cargo xtask image`, from an image that holds a daemon built outside (/out/sentinel).

# Where /out/sentinel comes from: the `build` stage (default) or an image's name.
ARG DAEMON=build
# The runtime base: glibc and libgcc only; the binary embeds the eBPF object, the dashboard and
# the time-zone database. `cargo xtask image` passes a base imported from Debian's packages.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The set-up is the project's own (xtask/src/setup.rs), not a copy of its steps; it reads the
# nightly pin from sentinel-ebpf/ebpf-toolchain, the file sentinel/build.rs reads.
RUN cargo xtask setup \
 && rm -rf /var/lib/apt/lists/* \
 && cargo build --release --locked -p sentinel \
 && install -D target/release/sentinel /out/sentinel

FROM ${DAEMON} AS daemon

FROM ${RUNTIME_BASE} AS runtime
COPY --from=daemon /out/sentinel /usr/local/bin/sentinel
# The dashboard's port and the history in the /data volume; MONITOR_IFACE defaults to the
# host's default-route interface.
ENV WEB_PORT=8080 DB_PATH=/data/traffic.db
VOLUME /data
EXPOSE 8080
# No curl or shell needed: the binary asks its own /api/health (503 while capture or storage
# is down).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/sentinel", "healthcheck"]
# SIGTERM makes the daemon detach, drain and flush before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sentinel"]
