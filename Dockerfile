# syntax=docker/dockerfile:1
# client-telemetry: release build in a full Rust image, run in distroless (no shell, no package
# manager, non-root). Orchestrators probe /healthz and /readyz on the admin port, so no HEALTHCHECK.
# Release builds: scripts/release-image.sh (one tag per build: <version>-<git short sha>, with the
# commit passed in, since .git is not in the build context). By hand:
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t client-telemetry:0.1.0-$(git rev-parse --short HEAD) .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# The commit being built, for client_telemetry_build_info{commit} (the build reads GIT_COMMIT).
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# .git is not in the build context: the commit (`--version`, build_info metric) comes as an argument.
ARG GIT_COMMIT=unknown
ENV BUILD_GIT_COMMIT=${GIT_COMMIT}
# Everything the binary is built from: the browser build and the demo page are embedded in it
# (src/client_assets.rs), the Lua script of the Redis limiter lives in src/.
COPY src ./src
COPY examples ./examples
COPY client/dist/client-telemetry.min.js client/dist/client-telemetry-solver.min.js ./client/dist/
COPY client/demo ./client/demo
# Cache mounts keep the crate registry and the dependency build between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin client-telemetry \
    && install -D -m 0755 target/release/client-telemetry /out/client-telemetry

# glibc and libgcc from Debian 12, like the build stage; nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG GIT_COMMIT=unknown
ARG VERSION=unknown
LABEL org.opencontainers.image.title="client-telemetry" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
COPY --from=build /out/client-telemetry /usr/local/bin/client-telemetry
# The deployment's defaults: ingest on 8080, admin (/healthz /readyz /metrics) on 8081.
ENV CLIENT_TELEMETRY_BIND=0.0.0.0:8080 \
    CLIENT_TELEMETRY_ADMIN_BIND=0.0.0.0:8081
EXPOSE 8080/tcp 8081/tcp
# distroless "nonroot" (65532); numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# SIGTERM goes straight to the gateway (PID 1), which drains and exits 0.
ENTRYPOINT ["/usr/local/bin/client-telemetry"]
