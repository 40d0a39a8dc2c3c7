#!/usr/bin/env bash
# The one command that passes every test on a fresh machine (CI runs exactly this).
# It installs or checks what the tests need, then runs: format and lint checks, the Rust unit and
# integration tests (real binary, real redis-server), the browser client's tests (unit + headless
# Chromium), the deployment checks and the native local cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }
source scripts/lib/apt.sh

command -v cargo >/dev/null || { echo "missing: cargo (the Rust toolchain: install rustup)" >&2; exit 1; }
need redis-server redis-server
need redis-cli redis-tools     # `redis-cli --cluster create` (tests/redis_cluster.rs)
need openssl openssl           # the test CA of tests/tls.rs
if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

step "rustfmt"
cargo fmt --all --check
step "clippy"
cargo clippy --all-targets --locked -- -D warnings
step "module imports (no cycle between the top-level modules of src/)"
python3 scripts/check_imports.py

step "Rust tests (unit + integration over real sockets)"
cargo build --locked
cargo nextest run --locked --no-fail-fast

export GATEWAY_BIN="$PWD/target/debug/client-telemetry"
for script in scripts/test-client.sh scripts/test-deploy.sh scripts/test-local-cluster.sh; do
  step "$script"
  bash "$script"
done
step "all tests passed"
