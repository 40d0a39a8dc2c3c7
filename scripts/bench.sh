#!/usr/bin/env bash
# Benchmark: release builds, wrk as load generator on loopback, scenarios side by side and
# alternating, medians over rounds. Writes target/bench/results.{md,json} (and a PNG chart when
# matplotlib is available). Options are passed to scripts/bench/run.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/apt.sh
need wrk wrk
need redis-server redis-server
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib >/dev/null 2>&1 || echo "matplotlib unavailable: no PNG chart" >&2
cargo build --release --locked --bins --examples
exec python3 scripts/bench/run.py "$@"
