#!/usr/bin/env bash
# Benchmark: release builds, wrk as load generator on loopback, scenarios side by side and
# alternating, medians over rounds. Writes target/bench/results.{md,json} (and a PNG chart when
# matplotlib is available) and the scrubber's cost per event. Options go to scripts/bench/run.py (--help):
# among them --open-loop (latency at fixed arrival rates, examples/loadgen.rs) and --pin (each
# scenario also with server and load generator on separate cores).
#   bash scripts/bench.sh --profile [options of scripts/bench/profile.py]
# instead counts instructions per event by stage under callgrind (valgrind).
# Honours CARGO_TARGET_DIR (binaries and results then live there instead of target/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/apt.sh
if [[ ${1:-} == --profile ]]; then
  shift
  need valgrind valgrind
  need strace strace
  cargo build --release --locked --bins --examples
  exec python3 scripts/bench/profile.py "$@"
fi
need wrk wrk
need redis-server redis-server
need taskset util-linux
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib >/dev/null 2>&1 || echo "matplotlib unavailable: no PNG chart" >&2
cargo build --release --locked --bins --examples
target="${CARGO_TARGET_DIR:-target}"
python3 scripts/bench/run.py "$@"
# PII scrubbing's own cost per event (the memory vs memory-no-scrub rows show it on the full path).
printf '\nScrubbing, per event:\n' | tee -a "$target/bench/results.md"
"$target/release/examples/scrub_cost" | tee -a "$target/bench/results.md"
