#!/usr/bin/env bash
# The compose topology, natively and on loopback only (this machine runs no container engine):
#   redis-server  ->  3 gateway processes (Redis limiter)  <-  nginx (load balancer, X-Forwarded-For)
#   an OTLP/HTTP sink standing in for the collector; Prometheus scraping every replica's admin
#   /metrics with deploy/observability/alerts.yaml loaded.
#
#   scripts/local-cluster.sh start     start everything, print the addresses (also in $DIR/cluster.env)
#   scripts/local-cluster.sh stop      stop everything this script started (by recorded process id)
#   scripts/local-cluster.sh status
#
# Environment: GATEWAY_BIN (default target/debug/client-telemetry), LOCAL_CLUSTER_DIR (default
# target/local-cluster), LOCAL_CLUSTER_BACKEND (redis|memory, default redis),
# LOCAL_CLUSTER_REDIS (standalone|cluster, default standalone: cluster starts a three-primary Redis
# Cluster instead of one redis-server), LOCAL_CLUSTER_LIMIT (requests per client per minute, default 20).
# Needs redis-server, nginx, prometheus and python3 on PATH (scripts/test-local-cluster.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${LOCAL_CLUSTER_DIR:-$ROOT/target/local-cluster}
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/debug/client-telemetry}
BACKEND=${LOCAL_CLUSTER_BACKEND:-redis}
REDIS_TOPOLOGY=${LOCAL_CLUSTER_REDIS:-standalone}
LIMIT=${LOCAL_CLUSTER_LIMIT:-20}
REPLICAS=3
PROXY_ADDR=127.0.0.2 # nginx connects to the gateways from here; the only address they trust
HELPER=(python3 "$ROOT/scripts/local_cluster.py")
PATH=$PATH:/usr/sbin:/usr/local/sbin

log() { printf 'local-cluster: %s\n' "$*" >&2; }

# launch <name> <log> <command...>: own process group (so stop reaches nginx's workers too).
launch() {
  local name=$1 out=$2; shift 2
  setsid "$@" >"$out" 2>"$out.err" </dev/null &
  local pid=$!
  printf '%s %s\n' "$pid" "$1" >"$DIR/pids/$name"
  LAUNCHED_PID=$pid
}

alive() { # alive <pid> <command>: still the process we started (pids get reused)
  [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' </proc/"$1"/cmdline | grep -qF -- "$2"
}

stop() {
  [[ -d $DIR/pids ]] || return 0
  local name pid cmd
  # Reverse start order: Prometheus and nginx first, then the gateways drain, then the rest.
  for name in prometheus nginx $(ls -r "$DIR/pids" | grep '^gateway-' || true) otlp-sink \
    $(ls "$DIR/pids" | grep '^redis' || true); do
    [[ -f $DIR/pids/$name ]] || continue
    read -r pid cmd <"$DIR/pids/$name"
    if alive "$pid" "$cmd"; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" "$cmd" || break; sleep 0.1; done
      if alive "$pid" "$cmd"; then
        log "$name ($pid) ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$DIR/pids/$name"
  done
}

status() {
  local f pid cmd running=
  for f in "$DIR"/pids/*; do
    [[ -f $f ]] || continue
    read -r pid cmd <"$f"
    if alive "$pid" "$cmd"; then echo "$(basename "$f"): running ($pid)"; running=1; else echo "$(basename "$f"): gone ($pid)"; fi
  done
  if [[ -n $running ]]; then cat "$DIR/cluster.env"; else echo "not running"; fi
}

wait_redis() { # PING until PONG, 10 s at most
  local port=$1
  for _ in $(seq 100); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'PING\r\n' >&3
      local reply=
      read -r -t 1 reply <&3 || true
      exec 3>&-
      [[ $reply == +PONG* ]] && return 0
    fi
    sleep 0.1
  done
  return 1
}

fail_start() {
  log "start failed: $*"
  local f
  for f in "$DIR"/*.err; do [[ -s $f ]] && { log "--- $(basename "$f")"; tail -5 "$f" >&2; }; done
  stop
  exit 1
}

start() {
  [[ -x $GATEWAY_BIN ]] || { log "no gateway binary at $GATEWAY_BIN: run cargo build, or set GATEWAY_BIN"; exit 1; }
  local tool
  for tool in redis-server nginx prometheus python3; do
    command -v "$tool" >/dev/null || { log "missing $tool (scripts/test-local-cluster.sh installs it)"; exit 1; }
  done
  if [[ -d $DIR/pids ]] && [[ -n $(ls -A "$DIR/pids") ]]; then
    log "already started in $DIR (scripts/local-cluster.sh stop first)"; exit 1
  fi
  rm -rf "$DIR" && mkdir -p "$DIR/pids" "$DIR/redis" "$DIR/nginx/tmp" "$DIR/prometheus/data"
  local redis_port sink_port nginx_port prom_port
  local ports
  ports=$("${HELPER[@]}" free-ports 4) || { log "could not find free ports"; exit 1; }
  read -r redis_port sink_port nginx_port prom_port <<<"$ports"

  # Redis: nothing on disk, like the deployments.
  local cluster_args=() more=
  if [[ $REDIS_TOPOLOGY == cluster ]]; then
    cluster_args=(--cluster-enabled yes)
    # A Cluster node's port must leave room for its bus port (+10000).
    read -r redis_port more <<<"$("${HELPER[@]}" cluster-ports 3)" || fail_start "could not find free ports"
  fi
  launch redis "$DIR/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$DIR/redis" --daemonize no "${cluster_args[@]}"
  local redis_pid=$LAUNCHED_PID
  wait_redis "$redis_port" || fail_start "redis-server did not answer PING on 127.0.0.1:$redis_port"
  local redis_mode=standalone redis_url=redis://127.0.0.1:$redis_port/0
  if [[ $REDIS_TOPOLOGY == cluster ]]; then
    # Two more primaries beside the first, then one cluster of the three (no replicas: local use).
    local node nodes=("127.0.0.1:$redis_port") urls=("redis://127.0.0.1:$redis_port")
    for node in $more; do
      mkdir -p "$DIR/redis-$node"
      launch "redis-$node" "$DIR/redis-$node.log" redis-server --port "$node" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$DIR/redis-$node" --daemonize no --cluster-enabled yes
      wait_redis "$node" || fail_start "redis-server did not answer PING on 127.0.0.1:$node"
      nodes+=("127.0.0.1:$node"); urls+=("redis://127.0.0.1:$node")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/redis-cluster.log" 2>&1 \
      || fail_start "redis-cli --cluster create failed (see $DIR/redis-cluster.log)"
    for _ in $(seq 100); do
      redis-cli -p "$redis_port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    redis_mode=cluster redis_url=$(IFS=,; echo "${urls[*]}")
  fi

  launch otlp-sink "$DIR/otlp-sink.log" "${HELPER[@]}" otlp-sink "$sink_port"
  "${HELPER[@]}" wait-http "http://127.0.0.1:$sink_port/health" 10 || fail_start "OTLP sink did not start"

  # Gateways: port 0, addresses read back from their "listening" line. The Redis timeout and pool
  # are generous: debug builds on a busy 2-core machine (250 ms was seen to expire) would otherwise
  # fall back to the local limiter now and then, and the shared-limit check is about sharing, not
  # about Redis latency. A killed Redis still fails at once (connection refused).
  local i addr admin got_backend upstreams="" targets="" gateways_json=""
  for i in $(seq 1 $REPLICAS); do
    CLIENT_TELEMETRY_BIND=127.0.0.1:0 \
      CLIENT_TELEMETRY_ADMIN_BIND=127.0.0.1:0 \
      CLIENT_TELEMETRY_WORKERS=1 \
      CLIENT_TELEMETRY_LOG_LEVEL=info \
      CLIENT_TELEMETRY_RATE_LIMIT_BACKEND=$BACKEND \
      CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS=60000 \
      CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS=$LIMIT \
      CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE=$redis_mode \
      CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL=$redis_url \
      CLIENT_TELEMETRY_RATE_LIMIT_REDIS_KEY_PREFIX=client-telemetry-local: \
      CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS=2000 \
      CLIENT_TELEMETRY_TRUSTED_PROXIES=$PROXY_ADDR/32 \
      CLIENT_TELEMETRY_ALLOWED_APPS=local-demo \
      CLIENT_TELEMETRY_SHUTDOWN_DELAY_MS=0 \
      CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS=3000 \
      OTEL_COLLECTOR_ENDPOINT=http://127.0.0.1:$sink_port/v1/logs \
      OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=http/json \
      OTEL_SERVICE_NAME=client-telemetry \
      OTEL_RESOURCE_ATTRIBUTES=service.instance.id=gateway-$i \
      launch "gateway-$i" "$DIR/gateway-$i.log" "$GATEWAY_BIN"
    local pid=$LAUNCHED_PID
    local line
    line=$("${HELPER[@]}" listening "$DIR/gateway-$i.log" "$pid" 20) || fail_start "gateway-$i did not start"
    read -r addr admin got_backend <<<"$line"
    [[ $admin != None && $admin != null ]] || fail_start "gateway-$i has no admin listener"
    upstreams+="        server $addr max_fails=2 fail_timeout=5s;"$'\n'
    targets+="          - $admin"$'\n'
    gateways_json+="${gateways_json:+,}{\"name\":\"gateway-$i\",\"addr\":\"$addr\",\"admin\":\"$admin\",\"pid\":$pid,\"log\":\"$DIR/gateway-$i.log\",\"backend\":\"$got_backend\"}"
  done

  # nginx: what deploy/compose/nginx.conf does, on loopback ports, connecting from $PROXY_ADDR.
  # Under root, nginx's workers would drop to nobody, who cannot reach $DIR inside a private
  # (0700) checkout, so request bodies buffered to its temp files would fail with 500. The workers
  # run as whoever runs the cluster, as they do for any other user (nginx ignores `user` then).
  local nginx_user=""
  [[ $(id -u) -eq 0 ]] && nginx_user="user root;"
  cat >"$DIR/nginx/nginx.conf" <<EOF
$nginx_user
worker_processes 2;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $DIR/nginx/tmp/body;
    proxy_temp_path $DIR/nginx/tmp/proxy;
    fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
    scgi_temp_path $DIR/nginx/tmp/scgi;
    upstream gateways {
$upstreams        keepalive 32;
    }
    server {
        listen 127.0.0.1:$nginx_port;
        client_max_body_size 1m;
        location / {
            proxy_pass http://gateways;
            proxy_bind $PROXY_ADDR;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }
    }
}
EOF
  launch nginx "$DIR/nginx.log" nginx -p "$DIR/nginx" -e "$DIR/nginx/error.log" -c "$DIR/nginx/nginx.conf" -g "daemon off;"
  local ok=
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  [[ -n $ok ]] || fail_start "nginx did not listen on 127.0.0.1:$nginx_port ($(tail -2 "$DIR/nginx/error.log" 2>/dev/null))"

  # Prometheus: 1 s scrapes and rule evaluation, so a test sees results in seconds.
  cat >"$DIR/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/observability/alerts.yaml
scrape_configs:
  - job_name: client-telemetry
    static_configs:
      - targets:
$targets
EOF
  launch prometheus "$DIR/prometheus.log" prometheus --config.file="$DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$DIR/prometheus/data" --storage.tsdb.retention.time=1h \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
  "${HELPER[@]}" wait-http "http://127.0.0.1:$prom_port/-/ready" 30 || fail_start "Prometheus not ready"

  cat >"$DIR/cluster.json" <<EOF
{"nginx":"127.0.0.1:$nginx_port","prometheus":"http://127.0.0.1:$prom_port","otlp_sink":"http://127.0.0.1:$sink_port",
 "redis_port":$redis_port,"redis_pid":$redis_pid,"redis_mode":"$redis_mode","backend":"$BACKEND","limit":$LIMIT,"proxy_addr":"$PROXY_ADDR",
 "gateways":[$gateways_json]}
EOF
  cat >"$DIR/cluster.env" <<EOF
INGEST_URL=http://127.0.0.1:$nginx_port/api/client-telemetry
PROMETHEUS_URL=http://127.0.0.1:$prom_port
OTLP_SINK_URL=http://127.0.0.1:$sink_port/stats
RATE_LIMIT_REDIS_MODE=$redis_mode
RATE_LIMIT_REDIS_URL=$redis_url
RATE_LIMIT_BACKEND=$BACKEND
EOF
  log "up ($REPLICAS gateways on the $BACKEND backend, Redis $redis_mode), state in $DIR"
  cat "$DIR/cluster.env"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
