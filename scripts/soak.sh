#!/usr/bin/env bash
# Soak: the release gateway for N minutes (default 5) with OTLP forwarding pointed at a closed port
# (the collector down for the whole run) under steady, paced wrk load (scripts/bench/post.lua,
# 20-event batches, many clients). RSS (VmRSS from /proc/<pid>/status) is sampled every 5 s and
# printed as a table with the forwarding counters.
#
# Plateau criterion: after a warm-up (the first third of the run, at least 10 s), the RSS of the
# last half of the run may not exceed the peak RSS of the warm-up-to-half-time stretch by more
# than SOAK_TOLERANCE_MIB (default 8 MiB, allocator noise). Memory that grows with the number of
# requests or with the length of the outage keeps climbing and fails this; a bounded queue does not.
# Also fails on any 5xx, or if the gateway dies.
#
# Not part of CI (it takes minutes). Usage: scripts/soak.sh [minutes]
#   env: SOAK_RATE (requests/s, default 1000), SOAK_CONNECTIONS (16), SOAK_TOLERANCE_MIB (8),
#        GATEWAY_BIN (a release binary to soak instead of building this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
rate=${SOAK_RATE:-1000}
connections=${SOAK_CONNECTIONS:-16}
tolerance=${SOAK_TOLERANCE_MIB:-8}
interval=5
command -v wrk >/dev/null || { echo "missing: wrk (apt-get install wrk, or run scripts/bench.sh once)" >&2; exit 1; }

if [[ -z ${GATEWAY_BIN:-} ]]; then
  cargo build --release --locked --bins
  GATEWAY_BIN=${CARGO_TARGET_DIR:-target}/release/client-telemetry
fi
tmp=$(mktemp -d)
gateway_pid=
wrk_pid=
cleanup() {
  [[ -n $wrk_pid ]] && kill "$wrk_pid" 2>/dev/null || true
  [[ -n $gateway_pid ]] && kill "$gateway_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
closed=$(free_port) # nothing listens there: every export is refused
python3 -c "import sys; sys.path.insert(0, 'scripts/bench'); import run; print(run.body_file(20, sys.argv[1]))" "$tmp" \
  >"$tmp/body-path"

env -i PATH="$PATH" CLIENT_TELEMETRY_BIND="127.0.0.1:$port" CLIENT_TELEMETRY_TRUSTED_PROXIES=127.0.0.1 \
  CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS=1000000000 \
  OTEL_COLLECTOR_ENDPOINT="http://127.0.0.1:$closed/v1/logs" \
  "$GATEWAY_BIN" >/dev/null 2>"$tmp/stderr" &
gateway_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$tmp/stderr" >&2; exit 1; }

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$gateway_pid/status"; }
metric() { # sum of every sample of one metric, optionally filtered by a label text
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v name="$1" -v label="${2:-}" \
    'index($0, name) == 1 && index($0, label) { sum += $NF } END { printf "%d", sum }'
}

seconds=$((minutes * 60))
BENCH_BODY=$(cat "$tmp/body-path") BENCH_CLIENTS=10000 BENCH_RATE=$rate BENCH_CONNECTIONS=$connections \
  wrk -t2 -c"$connections" -d"${seconds}s" -s scripts/bench/post.lua "http://127.0.0.1:$port/api/client-telemetry" \
  >"$tmp/wrk.out" 2>&1 &
wrk_pid=$!

echo "soak: ${minutes} min, ${rate} req/s x 20 events, collector down (port $closed), RSS every ${interval} s"
printf '%6s %9s %12s %12s %12s %12s\n' "t (s)" "RSS MiB" "accepted" "otlp failed" "otlp dropped" "queue depth"
samples=()
started=$(date +%s)
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep "$interval"
  kill -0 "$gateway_pid" 2>/dev/null || { echo "the gateway died" >&2; cat "$tmp/stderr" >&2; exit 1; }
  t=$(($(date +%s) - started))
  ((t <= seconds)) || break
  rss=$(rss_mib)
  samples+=("$t $rss")
  printf '%6d %9s %12s %12s %12s %12s\n' "$t" "$rss" "$(metric client_telemetry_events_total)" \
    "$(metric client_telemetry_otlp_events_total 'result="failed"')" \
    "$(metric client_telemetry_otlp_events_total 'result="dropped"')" "$(metric client_telemetry_otlp_queue_depth)"
done
wait "$wrk_pid" || true
wrk_pid=
grep '^BENCH ' "$tmp/wrk.out" || { cat "$tmp/wrk.out" >&2; exit 1; }
server_errors=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^client_telemetry_requests_total\{.*status="5/ { s += $NF } END { printf "%d", s }')

warmup=$((seconds / 3 > 10 ? seconds / 3 : 10))
half=$((seconds / 2))
printf '%s\n' "${samples[@]}" | awk -v warmup="$warmup" -v half="$half" -v tol="$tolerance" -v errors="$server_errors" '
  $1 >= warmup && $1 <= half { if ($2 > ref) ref = $2; nref++ }
  $1 > half { if ($2 > late) late = $2; nlate++ }
  END {
    if (nref == 0 || nlate == 0) { print "soak: too few samples for the plateau check (run at least 1 minute)"; exit 1 }
    printf "plateau: peak %.1f MiB from %d s to %d s, peak %.1f MiB after %d s (tolerance %d MiB); 5xx: %d\n",
      ref, warmup, half, late, half, tol, errors
    if (late > ref + tol) { print "FAIL: RSS kept growing"; exit 1 }
    if (errors > 0) { print "FAIL: the gateway answered 5xx"; exit 1 }
    print "PASS: RSS plateaued"
  }'
