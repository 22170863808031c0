# Two images from one build: the Watch Together server and its Vigil sidecar.
#
#   docker build --target app   -t watch-together:<tag> .
#   docker build --target vigil -t vigil:<tag> .
#
#   scripts/test-images.sh     (where no registry answers: local bases, prebuilt binaries)
#
# Stages: base (the Rust toolchain with Debian's security updates) -> chef (cargo-chef)
# -> planner (the dependency recipe) -> deps (dependencies only, cached until
# Cargo.toml or Cargo.lock change) -> builder (both binaries) -> app / vigil (distroless
# runtimes: glibc and CA certificates, no shell, uid 65532).
#
# The builder is Debian 12 (bookworm), like the runtime, so the binaries link against
# the glibc they run with. Both runtimes work with a read-only root filesystem: the app
# writes nothing, Vigil writes only under /var/lib/vigil (a volume).

# The base images are build arguments, so that the images can be built where Docker
# Hub and gcr.io cannot be reached (scripts/test-images.sh makes both locally), and
# BINARIES names where the two binaries come from: the builder stage below, or an
# image holding them under /out, built outside (scripts/test-images.sh). BuildKit
# builds only the stages the target needs.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=builder

# ---------------------------------------------------------------------------------
# checkov reads the tag of a FROM only where it is written out; here it is in the
# ARG defaults above, pinned, which the structure tests check.
#checkov:skip=CKV_DOCKER_7:the base images' tags are the pinned defaults of RUST_IMAGE and RUNTIME_IMAGE
FROM ${RUST_IMAGE} AS base

# Security updates of the build image; nothing else is installed (the image's gcc and
# libc6-dev build ring and aws-lc-sys). Versions are left to Debian's security
# archive on purpose: pinning them would pin the vulnerabilities too.
RUN apt-get update \
    && apt-get upgrade -y --no-install-recommends \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# ---------------------------------------------------------------------------------
FROM base AS chef

RUN cargo install cargo-chef --locked --version 0.1.78

# ---------------------------------------------------------------------------------
FROM chef AS planner

COPY . .
# recipe.json: the workspace's manifests and lock file, without the source code.
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------
FROM chef AS deps

COPY --from=planner /src/recipe.json recipe.json
# Builds only the dependencies, for exactly the packages and profile of the builder
# below, so this layer is reused until a manifest or Cargo.lock changes.
RUN cargo chef cook --release --locked -p vigil -p watch-together --recipe-path recipe.json

# ---------------------------------------------------------------------------------
FROM deps AS builder

COPY . .
RUN cargo build --release --locked -p vigil -p watch-together \
    && install -D -m 0755 target/release/watch-together /out/usr/local/bin/watch-together \
    && install -D -m 0755 target/release/vigil /out/usr/local/bin/vigil \
    && install -d -m 0700 -o 65532 -g 65532 /out/var/lib/vigil

# ---------------------------------------------------------------------------------
# The binaries the runtimes copy: the builder's, or those of the BINARIES image.
FROM ${BINARIES} AS binaries

# ---------------------------------------------------------------------------------
# The Watch Together server.
FROM ${RUNTIME_IMAGE} AS app

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="watch-together" \
      org.opencontainers.image.description="The Watch Together server: rooms API, health endpoints and Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/plex-watch-together/vigil" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

COPY --from=binaries /out/usr/local/bin/watch-together /usr/local/bin/watch-together

ENV PORT=3000

USER 65532:65532
EXPOSE 3000

# The binary's own check (distroless has no curl): GET http://127.0.0.1:$PORT/api/health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/watch-together", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/watch-together"]

# ---------------------------------------------------------------------------------
# The Vigil sidecar, with the shipped configuration, rules and routing under
# /etc/vigil (read-only, owned by root) and its state directory under /var/lib/vigil.
FROM ${RUNTIME_IMAGE} AS vigil

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Vigil: the health-monitoring sidecar of the Watch Together server" \
      org.opencontainers.image.source="https://github.com/plex-watch-together/vigil" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

COPY --from=binaries /out/usr/local/bin/vigil /usr/local/bin/vigil
# The config names its rule files and routing relative to itself.
COPY vigil.example.yaml /etc/vigil/vigil.yaml
COPY rules/*.yaml /etc/vigil/rules/
COPY alerts/ /etc/vigil/alerts/
# Distroless has no shell to mkdir/chown with: the empty directory comes from the
# builder, owned by the runtime user. Declared a VOLUME below, so Docker and Fargate
# seed a fresh volume (the ECS task's vigil-state) with this ownership.
COPY --from=binaries --chown=65532:65532 /out/var/lib/vigil /var/lib/vigil

ENV VIGIL_CONFIG=/etc/vigil/vigil.yaml \
    VIGIL_STATE_DIR=/var/lib/vigil \
    VIGIL_LISTEN=0.0.0.0:9464

USER 65532:65532
EXPOSE 9464
VOLUME ["/var/lib/vigil"]

# GET http://127.0.0.1:9464/healthz: 200 while probe reports keep arriving.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/vigil", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/vigil", "run"]
