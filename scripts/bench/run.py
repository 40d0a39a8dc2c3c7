#!/usr/bin/env python3
"""Side-by-side benchmark of the gateway against a bare actix-web ceiling.

Each round runs every scenario once, in order, so slow drifts of this noisy machine hit all of
them alike; the table reports medians over rounds. Load: wrk on loopback (closed loop: the
maximum), many distinct clients through a trusted X-Forwarded-For, the browser client's body
(origin head and events with context). `--open-loop` adds latency at fixed arrival rates
(examples/loadgen.rs); `--pin` adds each scenario with the server and the load generator on
separate cores.
"""
import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
TARGET = TARGET if TARGET.is_absolute() else ROOT / TARGET
RELEASE = TARGET / "release"
OUT = TARGET / "bench"
NO_LIMIT = {"CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS": "1000000000"}
CHALLENGE = {"CLIENT_TELEMETRY_CHALLENGE_ENABLED": "true",
             "CLIENT_TELEMETRY_CHALLENGE_SECRETS": "bench-challenge-secret-0123456789abcdef"}
RECORDS = {"CLIENT_TELEMETRY_RATE_LIMIT_UNIT": "record"}
SESSIONS_DEDUP = {"CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS": "1000000000",
                  "CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS": "60000"}


@dataclass
class Scenario:
    name: str
    binary: str = "gateway"  # or "ceiling"
    env: dict = field(default_factory=dict)
    events: int = 20
    clients: int = 10_000
    needs: tuple = ()  # "redis", "redis-cluster", "sink"
    replicas: int = 1
    ids: bool = False  # session and batch ids on every request, as the browser client sends them
    gateway_bin: Path = None  # another build of the gateway (--compare); None: this checkout's
    body: str = "native"  # native, otlp-json, otlp-proto or faro: the format (and route) of the load
    pinned: bool = False  # server(s) on core 0, load generator on core 1 (--pin)


def scenarios(selected):
    redis = {"CLIENT_TELEMETRY_RATE_LIMIT_BACKEND": "redis"}
    all_ = [
        Scenario("ceiling", binary="ceiling"),
        Scenario("memory"),
        Scenario("memory-no-scrub", env={"CLIENT_TELEMETRY_SCRUB_ENABLED": "false"}),
        Scenario("redis", env=redis, needs=("redis",)),
        Scenario("redis+otlp-json", env={**redis, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, needs=("redis", "sink")),
        Scenario("redis+otlp-proto", env={**redis, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, needs=("redis", "sink")),
        Scenario("memory+otlp", env={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, needs=("sink",)),
        Scenario("memory-batch1", events=1),
        Scenario("memory-batch100", events=100),
        Scenario("memory-10-clients", clients=10),
        Scenario("memory-1M-clients", clients=1_000_000),
        Scenario("redis-1M-clients", env=redis, needs=("redis",), clients=1_000_000),
        Scenario("redis-3-replicas", env=redis, needs=("redis",), replicas=3),
        # three primaries (no replicas) on loopback: how throughput and Redis CPU per call scale with shards
        Scenario("redis-cluster", env={**redis, "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE": "cluster"}, needs=("redis-cluster",)),
        Scenario("redis-cluster-3-replicas", env={**redis, "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE": "cluster"},
                 needs=("redis-cluster",), replicas=3),
        # 100 busy clients (NAT egress addresses) on a 3 s window: every key holds all 60 sub-windows
        # after the warm-up, the steady state of a busy key that a short run from empty never reaches
        Scenario("redis-busy-keys", env={**redis, "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS": "3000"}, needs=("redis",),
                 clients=100),
        Scenario("memory+sessions+dedup", env=SESSIONS_DEDUP, ids=True),
        Scenario("redis+sessions+dedup", env={**redis, **SESSIONS_DEDUP}, needs=("redis",), ids=True),
        Scenario("memory+otlp-collector-down", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}),
        # the challenge for suspected abuse, off and on, for clients that are never suspected: both
        # send the browser client's session and batch ids, which only the second reads
        Scenario("memory+ids", ids=True),
        Scenario("memory+ids+challenge", env=CHALLENGE, ids=True),
        # the other front doors, same 20 events a request: OTLP/HTTP logs as the OpenTelemetry JS
        # exporters send them (JSON and protobuf) on /v1/logs, and a Faro payload on /collect
        Scenario("otlp-json-ingest", body="otlp-json"),
        Scenario("otlp-proto-ingest", body="otlp-proto"),
        Scenario("faro-ingest", body="faro"),
        # limits counted per record (RATE_LIMIT_UNIT=record): a second limiter call weighs the
        # export's records once decoded (on Redis a second round trip)
        Scenario("otlp-proto-ingest+records", env=RECORDS, body="otlp-proto"),
        Scenario("redis+otlp-proto-ingest", env=redis, needs=("redis",), body="otlp-proto"),
        Scenario("redis+otlp-proto-ingest+records", env={**redis, **RECORDS}, needs=("redis",), body="otlp-proto"),
    ]
    by_name = {s.name: s for s in all_}
    unknown = [n for n in selected if n not in by_name]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; known: {list(by_name)}")
    return [by_name[n] for n in selected]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# The head the browser client puts before its events (client/src/index.ts: app, page, browser, sdk).
ORIGIN = {
    "app": {"name": "shop", "version": "4.2.0", "environment": "production"},
    "page": {"url": "https://shop.example.com/checkout"},
    "browser": {"language": "en-US", "brands": [{"brand": "Chromium", "version": "131"},
                                                {"brand": "Google Chrome", "version": "131"}],
                "platform": "macOS", "mobile": False},
    "sdk": {"name": "@client-telemetry/browser", "version": "0.2.0"},
}
# Server on one core, load generator on the other.
SERVER_CORE, LOAD_CORE = "0", "1"


def pinned(cmd, s, core):
    return ["taskset", "-c", core, *cmd] if s.pinned else cmd


def event(i):
    return {
        "level": ("info", "warn", "error")[i % 3],
        "scope": "checkout-form",
        "sessionId": "7f9c2ba4-e88f-4a0b-9c1d-3b5a6e7d8f90",
        "message": f"User clicked pay button (attempt {i})",
        "timestamp": "2026-11-28T10:30:45.123Z",
        "requestId": f"req-{i:06d}",
        "context": {"action": "button_click", "component": "PayButton", "cartItems": 3, "total": 59.9,
                    "experiment": {"id": "checkout-v2", "variant": "b"}, "flags": ["fast-pay", "new-ui"]},
    }


def body_file(events, tmp, fmt="native"):
    path = Path(tmp) / f"body-{fmt}-{events}"
    if not path.exists():
        if fmt == "otlp-proto":
            path.write_bytes(otlp_protobuf(events))
            return path
        if fmt == "otlp-json":
            body = otlp_json(events)
        elif fmt == "faro":
            body = faro(events)
        else:
            body = event(0) if events == 1 else {**ORIGIN, "events": [event(i) for i in range(events)]}
        # compact, as the browser client and SDKs send it (JSON.stringify): no spaces after , and :
        path.write_text(json.dumps(body, separators=(",", ":")))
    return path


# Each format's route and Content-Type.
ROUTES = {"native": ("/api/client-telemetry", "text/plain;charset=UTF-8"),
          "otlp-json": ("/v1/logs", "application/json"),
          "otlp-proto": ("/v1/logs", "application/x-protobuf"),
          "faro": ("/collect", "application/json")}
SERVICE = {"service.name": "shop", "service.version": "1.4.2", "telemetry.sdk.name": "opentelemetry",
           "telemetry.sdk.language": "webjs", "telemetry.sdk.version": "2.12.1"}


def otlp_attributes(i):
    """The native event's context and session, as OTLP record attributes (values typed)."""
    e = event(i)
    return {"session.id": e["sessionId"], "action": "button_click", "component": "PayButton", "cartItems": 3,
            "total": 59.9, "flag": "fast-pay"}


def otlp_json(events):
    def value(v):
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}
    kvs = lambda d: [{"key": k, "value": value(v)} for k, v in d.items()]
    records = [{"timeUnixNano": "1795861845123000000", "observedTimeUnixNano": "1795861845123000000",
                "severityNumber": (9, 13, 17)[i % 3], "severityText": ("INFO", "WARN", "ERROR")[i % 3],
                "body": {"stringValue": event(i)["message"]}, "attributes": kvs(otlp_attributes(i))}
               for i in range(events)]
    return {"resourceLogs": [{"resource": {"attributes": kvs(SERVICE)},
                              "scopeLogs": [{"scope": {"name": "checkout-form"}, "logRecords": records}]}]}


def otlp_protobuf(events):
    """The same export in protobuf, encoded by hand (field numbers of opentelemetry-proto)."""
    def varint(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    field = lambda tag, data: varint(tag << 3 | 2) + varint(len(data)) + data
    def any_value(v):
        if isinstance(v, bool):
            return varint(2 << 3) + varint(int(v))
        if isinstance(v, int):
            return varint(3 << 3) + varint(v)
        if isinstance(v, float):
            return varint(4 << 3 | 1) + __import__("struct").pack("<d", v)
        return field(1, v.encode())
    kvs = lambda tag, d: b"".join(field(tag, field(1, k.encode()) + field(2, any_value(v))) for k, v in d.items())
    fixed64 = lambda tag, n: varint(tag << 3 | 1) + n.to_bytes(8, "little")
    records = b"".join(field(2, fixed64(1, 1795861845123000000) + varint(2 << 3) + varint((9, 13, 17)[i % 3])
                             + field(3, ("INFO", "WARN", "ERROR")[i % 3].encode())
                             + field(5, any_value(event(i)["message"])) + kvs(6, otlp_attributes(i))
                             + fixed64(11, 1795861845123000000))
                       for i in range(events))
    scope_logs = field(1, field(1, b"checkout-form")) + records
    resource_logs = field(1, kvs(1, SERVICE)) + field(2, scope_logs)
    return field(1, resource_logs)


def faro(events):
    """A Faro web SDK payload: meta once, then logs (with context), as @grafana/faro-core sends it."""
    logs = [{"message": event(i)["message"], "level": ("info", "warn", "error")[i % 3],
             "context": {"action": "button_click", "component": "PayButton", "cartItems": "3"},
             "timestamp": "2026-11-28T10:30:45.123Z"} for i in range(events)]
    meta = {"sdk": {"name": "faro-web", "version": "2.12.1"},
            "app": {"name": "shop", "version": "1.4.2", "environment": "production"},
            "session": {"id": "7f9c2ba4-e88f-4a0b-9c1d-3b5a6e7d8f90", "attributes": {"isSampled": "true"}},
            "page": {"url": "https://shop.example/checkout"},
            "browser": {"name": "Chrome", "version": "126", "os": "Linux", "mobile": False, "language": "en-US"}}
    return {"meta": meta, "logs": logs}


class Redis:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True).stdout

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def calls(self):
        """(round trips, commands): script calls sent by clients, and every command Redis ran, the
        script's own TIME/HGETALL/HINCRBY/PEXPIRE included."""
        calls = {line[len("cmdstat_"):].split(":")[0]: int(line.split("calls=")[1].split(",")[0])
                 for line in self.cli("INFO", "commandstats").splitlines() if line.startswith("cmdstat_")}
        calls.pop("info", None)
        round_trips = sum(calls.get(c, 0) for c in ("evalsha", "evalsha_ro", "eval", "script|load", "ping"))
        return round_trips, sum(calls.values())

    def cpu_seconds(self):
        """CPU time redis-server has used, user and system (its own INFO, as a managed Redis reports it)."""
        info = dict(line.split(":", 1) for line in self.cli("INFO", "cpu").splitlines() if ":" in line)
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class RedisCluster:
    """A Redis Cluster of three primaries without replicas; its figures are the sums over the nodes."""

    def __init__(self, primaries=3):
        self.dir = tempfile.mkdtemp(prefix="bench-cluster-")
        self.nodes = []
        for _ in range(primaries):
            node = Redis.__new__(Redis)
            node.port = free_port()
            node.proc = subprocess.Popen(
                ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--dir", self.dir,
                 "--cluster-config-file", f"{self.dir}/nodes-{node.port}.conf"], stdout=subprocess.DEVNULL)
            wait_port(node.port)
            self.nodes.append(node)
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
        deadline = time.time() + 20
        while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
            if time.time() > deadline:
                sys.exit("the bench cluster did not become ready")
            time.sleep(0.1)

    def cli(self, *args):
        return "".join(n.cli(*args) for n in self.nodes)

    def url(self):
        return ",".join(n.url() for n in self.nodes)

    def calls(self):
        per_node = [n.calls() for n in self.nodes]
        return sum(t for t, _ in per_node), sum(c for _, c in per_node)

    def cpu_seconds(self):
        return sum(n.cpu_seconds() for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()
        subprocess.run(["rm", "-rf", self.dir])


class Sink:
    """The OTLP/HTTP sink: examples/ceiling on one worker, answering 200 {} on /v1/logs."""

    def __init__(self):
        self.port = free_port()
        env = {"PATH": os.environ["PATH"], "CEILING_BIND": f"127.0.0.1:{self.port}", "CEILING_WORKERS": "1"}
        self.proc = subprocess.Popen([str(RELEASE / "examples" / "ceiling")], env=env, stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def start_server(s, services, tmp, index):
    port = free_port()
    if s.binary == "ceiling":
        cmd, env = [str(RELEASE / "examples" / "ceiling")], {"CEILING_BIND": f"127.0.0.1:{port}"}
    else:
        cmd = [str(s.gateway_bin or RELEASE / "client-telemetry")]
        env = {"CLIENT_TELEMETRY_BIND": f"127.0.0.1:{port}", "CLIENT_TELEMETRY_TRUSTED_PROXIES": "127.0.0.1",
               **NO_LIMIT, **s.env}
        if store(s, services):
            env["CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL"] = store(s, services).url()
        if "sink" in s.needs:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{services['sink'].port}"
    env = {"PATH": os.environ["PATH"], **env}
    log = open(os.environ.get("BENCH_GATEWAY_LOG") or Path(tmp) / f"gateway-{index}.log", "wb")
    # pinned: the gateway sizes its workers from the cores it may use, so one
    cmd = pinned(cmd, s, SERVER_CORE)
    return port, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def run_wrk(ports, wrk_args, env, seconds, s):
    """One wrk per replica, all at once (replicas behind a load balancer); merged summary."""
    procs = [subprocess.Popen(pinned(["wrk", *wrk_args, f"-d{seconds}s", "-s", str(ROOT / "scripts/bench/post.lua"),
                                      f"http://127.0.0.1:{port}/api/client-telemetry"], s, LOAD_CORE),
                              env=env, stdout=subprocess.PIPE, text=True) for port in ports]
    return merge([wrk_summary(p.communicate()[0]) for p in procs])


def run_open_loop(ports, s, args, body, rate):
    """examples/loadgen at `rate` requests/s in total (split over the replicas): open loop, latency
    from each request's intended send time."""
    connections = max(args.connections // s.replicas, 1)
    procs = [subprocess.Popen(pinned([str(RELEASE / "examples" / "loadgen"), "--url",
                                      f"http://127.0.0.1:{port}/api/client-telemetry", "--rate", str(rate / len(ports)),
                                      "--duration", str(args.duration), "--connections", str(connections),
                                      "--body", str(body), "--clients", str(s.clients), *(["--ids"] if s.ids else [])],
                                     s, LOAD_CORE), stdout=subprocess.PIPE, text=True) for port in ports]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outs = [wrk_summary(p.communicate()[0]) for p in procs]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    merged = merge(outs)
    # A generator short of CPU sends late and blames the server: its own load is reported.
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    merged["generator_cpu"] = used / args.duration
    merged["achieved"] = merged["requests"] / args.duration / rate if rate else 0
    return merged


def merge(outs):
    merged = {k: sum(o[k] for o in outs) for k in ("requests", "errors_status")}
    merged["duration_us"] = max(o["duration_us"] for o in outs)
    # the worst replica's percentiles: what a client of the fleet can meet
    merged.update({k: max(o[k] for o in outs) for k in ("p50_us", "p99_us", "p999_us")})
    return merged


def store(s, services):
    """The Redis (or Redis Cluster) the scenario's limiter uses, if any."""
    return next((services[n] for n in ("redis", "redis-cluster") if n in s.needs), None)


def run_one(s, args, services, tmp):
    redis = store(s, services)
    if redis:
        redis.cli("FLUSHALL")
    servers = [start_server(s, services, tmp, i) for i in range(s.replicas)]
    ports, procs = [p for p, _, _ in servers], [proc for _, proc, _ in servers]
    try:
        for port in ports:
            wait_port(port)
        idle_rss = max(rss_mb(p.pid, "VmRSS") for p in procs)
        route, content_type = ROUTES[s.body]
        wrk_env = {**os.environ, "BENCH_BODY": str(body_file(s.events, tmp, s.body)), "BENCH_CLIENTS": str(s.clients),
                   "BENCH_IDS": "1" if s.ids else "0", "BENCH_PATH": route, "BENCH_CONTENT_TYPE": content_type}
        connections = max(args.connections // s.replicas, 1)
        wrk_args = [f"-t{args.threads}", f"-c{connections}"]
        run_wrk(ports, wrk_args, wrk_env, 1, s)  # warm-up
        redis_before = redis.calls() if redis else (0, 0)
        redis_cpu_before = redis.cpu_seconds() if redis else 0
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        m = run_wrk(ports, wrk_args, wrk_env, args.duration, s)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        redis_after = redis.calls() if redis else (0, 0)
        redis_cpu = redis.cpu_seconds() - redis_cpu_before if redis else 0
        redis_trips, redis_cmds = (after - before for after, before in zip(redis_after, redis_before))
        limiter_errors = (sum(metric_sum(port, "client_telemetry_rate_limiter_errors_total") for port in ports)
                          if s.binary == "gateway" else None)
        # events per successful OTLP export: the batching the forwarder achieved across requests
        exports = sum(metric_sum(port, "client_telemetry_otlp_exports_total", 'result="success"') for port in ports) \
            if s.binary == "gateway" else 0
        exported = sum(metric_sum(port, "client_telemetry_otlp_events_total", 'result="exported"') for port in ports) \
            if s.binary == "gateway" else 0
        ok = m["requests"] - m["errors_status"]
        seconds = m["duration_us"] / 1e6
        half = {}
        if args.half_rate:
            # Latency at half of the throughput just measured: the operating point an HPA aims for.
            paced_env = {**wrk_env, "BENCH_RATE": str(ok / seconds / 2 / s.replicas),
                         "BENCH_CONNECTIONS": str(connections)}
            h = run_wrk(ports, wrk_args, paced_env, args.duration, s)
            half = {"half_rate_p50_ms": h["p50_us"] / 1000, "half_rate_p99_ms": h["p99_us"] / 1000}
        if args.open_loop:
            # Open loop at fractions of the maximum just measured: queueing delay counted.
            for pct in OPEN_LOOP_LOADS:
                o = run_open_loop(ports, s, args, body_file(s.events, tmp), ok / seconds * pct / 100)
                half.update({f"ol{pct}_p50_ms": o["p50_us"] / 1000, f"ol{pct}_p99_ms": o["p99_us"] / 1000,
                             f"ol{pct}_p999_ms": o["p999_us"] / 1000, f"ol{pct}_non_2xx": o["errors_status"],
                             f"ol{pct}_generator_cpu": o["generator_cpu"], f"ol{pct}_achieved": o["achieved"]})
        if "sink" in s.needs and s.binary == "gateway":
            half.update(forwarding_outcome(ports))
        return {
            **half,
            "rps": ok / seconds,
            "eps": ok * s.events / seconds,
            "non_2xx": m["errors_status"],
            "p50_ms": m["p50_us"] / 1000, "p99_ms": m["p99_us"] / 1000, "p999_ms": m["p999_us"] / 1000,
            "cpu_s_per_M_events": cpu / max(ok * s.events, 1) * 1e6,
            "idle_rss_mb": idle_rss,
            "peak_rss_mb": max(rss_mb(p.pid, "VmHWM") for p in procs),
            "redis_trips_per_req": redis_trips / max(m["requests"], 1) if redis else None,
            "redis_cmds_per_req": redis_cmds / max(m["requests"], 1) if redis else None,
            # what one call costs Redis, network included: its capacity is about 1e6 / this per core
            "redis_cpu_us_per_trip": redis_cpu / max(redis_trips, 1) * 1e6 if redis else None,
            # decisions Redis did not make (timeouts, circuit open): the run measured the fallback too
            "limiter_errors": limiter_errors,
            "otlp_batch": exported / exports if exports else None,
        }
    finally:
        for _, proc, log in servers:
            proc.send_signal(signal.SIGTERM)
        for _, proc, log in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            os.unlink(log.name)


OPEN_LOOP_LOADS = (25, 50, 75)  # percent of the scenario's measured maximum


def forwarding_outcome(ports, settle_s=10):
    """Of the events offered to the forwarder over the gateway's life (warm-up and every load
    included), the share exported, once the queue has emptied (or `settle_s` passed)."""
    deadline = time.time() + settle_s
    while time.time() < deadline and sum(metric_sum(p, "client_telemetry_otlp_queue_depth") for p in ports) > 0:
        time.sleep(0.1)
    time.sleep(0.3)  # the last exports in flight
    outcome = {r: sum(metric_sum(p, "client_telemetry_otlp_events_total", f'result="{r}"') for p in ports)
               for r in ("exported", "failed", "dropped")}
    offered = sum(outcome.values())
    return {"otlp_exported_pct": 100 * outcome["exported"] / offered if offered else None,
            "otlp_dropped": outcome["dropped"], "otlp_failed": outcome["failed"]}


def wrk_summary(stdout):
    line = next(l for l in stdout.splitlines() if l.startswith("BENCH "))
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def metric_sum(port, name, label=""):
    """Sum of the samples of one metric in the gateway's /metrics (those carrying `label`, if given)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line)


def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scenarios", default="ceiling,memory,redis", help="comma-separated")
    p.add_argument("--half-rate", action="store_true", help="also measure latency paced at half the throughput "
                   "(wrk, closed loop: queueing delay hidden)")
    p.add_argument("--open-loop", action="store_true", help="also measure latency open loop (examples/loadgen: fixed "
                   "arrival rate, from the intended send time) at 25, 50 and 75 %% of the measured maximum")
    p.add_argument("--pin", action="store_true", help=f"also run each scenario as <name>-pinned: servers on core "
                   f"{SERVER_CORE}, load generator on core {LOAD_CORE} (taskset); Redis and the sink are not pinned")
    p.add_argument("--compare", metavar="BINARY", type=Path,
                   help="another gateway build: each gateway scenario also runs on it, as <name>@compare, in the "
                        "same rounds (A/B under the same machine noise)")
    args = p.parse_args()
    chosen = scenarios(args.scenarios.split(","))
    if args.compare:
        if not args.compare.is_file():
            sys.exit(f"--compare: no binary at {args.compare}")
        chosen = [v for s in chosen
                  for v in ([s] if s.binary == "ceiling" else
                            [s, replace(s, name=f"{s.name}@compare", gateway_bin=args.compare.resolve())])]
    if args.pin:
        chosen = [v for s in chosen for v in [s, replace(s, name=f"{s.name}-pinned", pinned=True)]]
    OUT.mkdir(parents=True, exist_ok=True)
    services = {}
    if any("redis" in s.needs for s in chosen):
        services["redis"] = Redis()
    if any("redis-cluster" in s.needs for s in chosen):
        services["redis-cluster"] = RedisCluster()
    if any("sink" in s.needs for s in chosen):
        services["sink"] = Sink()
    results = {s.name: [] for s in chosen}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for s in chosen:
                    res = run_one(s, args, services, tmp)
                    results[s.name].append(res)
                    print(f"round {r + 1} {s.name:<20} {res['rps']:>9.0f} req/s {res['eps']:>10.0f} events/s "
                          f"p99 {res['p99_ms']:.2f} ms", flush=True)
    finally:
        for svc in services.values():
            svc.stop()
    report(chosen, results, args)


def report(chosen, results, args):
    keys = ["rps", "eps", "p50_ms", "p99_ms", "p999_ms", "cpu_s_per_M_events", "idle_rss_mb", "peak_rss_mb",
            "redis_trips_per_req", "redis_cmds_per_req", "redis_cpu_us_per_trip", "limiter_errors", "non_2xx", "half_rate_p99_ms", "otlp_batch",
            "otlp_exported_pct", "otlp_dropped",
            *[f"ol{p}_{q}" for p in OPEN_LOOP_LOADS
              for q in ("p50_ms", "p99_ms", "p999_ms", "non_2xx", "generator_cpu", "achieved")]]
    med = {name: {k: median(runs, k) for k in keys} for name, runs in results.items()}
    ceiling = med.get("ceiling", {}).get("rps")
    memory = med.get("memory", {}).get("eps")
    header = ["scenario", "req/s", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU s / 1M events", "idle RSS MB",
              "peak RSS MB", "Redis round trips/req", "Redis cmds/req", "Redis CPU µs/trip", "limiter errors", "non-2xx",
              "p99 ms at half rate", "events per OTLP export", "OTLP exported %", "OTLP dropped", "vs ceiling", "vs memory"]
    rows = []
    for s in chosen:
        m = med[s.name]
        fmt = lambda v, f: "-" if v is None else format(v, f)
        rows.append([s.name, fmt(m["rps"], ".0f"), fmt(m["eps"], ".0f"), fmt(m["p50_ms"], ".2f"), fmt(m["p99_ms"], ".2f"),
                     fmt(m["p999_ms"], ".2f"), fmt(m["cpu_s_per_M_events"], ".2f"), fmt(m["idle_rss_mb"], ".1f"),
                     fmt(m["peak_rss_mb"], ".1f"), fmt(m["redis_trips_per_req"], ".2f"),
                     fmt(m["redis_cmds_per_req"], ".2f"), fmt(m["redis_cpu_us_per_trip"], ".1f"),
                     fmt(m["limiter_errors"], ".0f"), fmt(m["non_2xx"], ".0f"),
                     fmt(m["half_rate_p99_ms"], ".2f"), fmt(m["otlp_batch"], ".0f"),
                     fmt(m["otlp_exported_pct"], ".3f"), fmt(m["otlp_dropped"], ".0f"),
                     f"{m['rps'] / ceiling:.0%}" if ceiling else "-", f"{m['eps'] / memory:.0%}" if memory else "-"])
    md = [f"Medians of {args.rounds} rounds, {args.duration} s each, wrk -t{args.threads} -c{args.connections}, "
          f"{os.cpu_count()} cores shared by load generator and server.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if args.open_loop:
        md += ["", "Open loop (examples/loadgen: fixed arrival rate, latency from the intended send time), "
               "p50 / p99 / p99.9 ms at a share of each scenario's measured maximum; the generator's CPU (cores) and "
               "the share of the intended requests it completed, at the highest load:", "",
               "| scenario | " + " | ".join(f"{p} % of max" for p in OPEN_LOOP_LOADS) + " | non-2xx | generator CPU | completed |",
               "|---|" + "---|" * (len(OPEN_LOOP_LOADS) + 3)]
        for s in chosen:
            m = med[s.name]
            cells = [" / ".join("-" if m[f"ol{p}_{q}"] is None else f"{m[f'ol{p}_{q}']:.2f}"
                                for q in ("p50_ms", "p99_ms", "p999_ms")) for p in OPEN_LOOP_LOADS]
            errors = sum(m[f"ol{p}_non_2xx"] or 0 for p in OPEN_LOOP_LOADS)
            top = OPEN_LOOP_LOADS[-1]
            cpu, done = m[f"ol{top}_generator_cpu"], m[f"ol{top}_achieved"]
            md.append(f"| {s.name} | " + " | ".join(cells) + f" | {errors:.0f} | "
                      + ("-" if cpu is None else f"{cpu:.2f}") + " | " + ("-" if done is None else f"{done:.1%}") + " |")
    text = "\n".join(md)
    print("\n" + text)
    (OUT / "results.md").write_text(text + "\n")
    (OUT / "results.json").write_text(json.dumps({"args": vars(args), "medians": med, "runs": results}, indent=2, default=str))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 4))
        names = [s.name for s in chosen]
        ax.barh(names, [med[n]["eps"] for n in names])
        ax.set_xlabel("events/s (median)")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(OUT / "results.png")
    except ImportError:
        pass
    print(f"\nwritten: {OUT / 'results.md'}, results.json" + (", results.png" if (OUT / "results.png").exists() else ""))


if __name__ == "__main__":
    main()
