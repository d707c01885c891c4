# syntax=docker/dockerfile:1.7
# imgpipe: one image for every mode (serve, bridge, process, sweep, audit, up).
#
#   docker buildx build --platform linux/arm64 -t <ecr-url>:<tag> --push .
#
# (ARM64 because the ECS tasks run on Graviton; infra/README.md, "Build and
# push the image".)

# --- build ---------------------------------------------------------------------
FROM rust:1-bookworm AS build
# cmake and the libcurl headers: rdkafka builds its bundled librdkafka
# (Debian's is too old); libssl-dev: librdkafka's TLS and SCRAM (the
# rdkafka "ssl" feature); cmake and nasm also build the bundled
# libjpeg-turbo (JPEG shrink-on-load) with its SIMD code.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake nasm libcurl4-openssl-dev libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin imgpipe \
 && install -m 0755 target/release/imgpipe /usr/local/bin/imgpipe

# --- run -------------------------------------------------------------------------
FROM debian:bookworm-slim
# python3: the example script; bubblewrap: the script sandbox; util-linux:
# prlimit (the script's resource limits); curl: container health checks;
# libcurl4/libssl3/zlib1g: what librdkafka links.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 bubblewrap util-linux curl ca-certificates libcurl4 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 imgpipe \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin imgpipe

# The binary looks for policies/default.toml and the script command
# (scripts/example.py) relative to its working directory. Both stay owned
# by root: the imgpipe user (and a script it runs) cannot change them.
WORKDIR /app
COPY --from=build /usr/local/bin/imgpipe /usr/local/bin/imgpipe
COPY policies/default.toml policies/default.toml
COPY scripts/ scripts/

USER 10001:10001
# 8080: the HTTP API (imgpipe serve / up); 9464: /metrics and /healthz of
# bridge, process and sweep ([telemetry] listen).
EXPOSE 8080 9464
ENTRYPOINT ["imgpipe"]
CMD ["up"]
