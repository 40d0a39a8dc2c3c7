#!/usr/bin/env python3
"""Helpers for the native local cluster (stdlib only, Python 3.11).

    local_cluster.py free-ports N                 N free loopback TCP ports
    local_cluster.py check-cluster cluster.json   the Redis Cluster topology: mode, primaries, the shared limit
    local_cluster.py cluster-ports N              N ports for Redis Cluster nodes (each and its bus port, +10000, free)
    local_cluster.py listening LOG PID TIMEOUT    wait for the gateway's "listening" line; print addr admin_addr backend
    local_cluster.py wait-http URL TIMEOUT        wait for a 200 from URL
    local_cluster.py otlp-sink PORT               a stand-in OpenTelemetry Collector: OTLP/HTTP logs, counted
    local_cluster.py check CLUSTER_JSON           the assertions of scripts/test-local-cluster.sh

Loopback only: the load balancer, gateways, Redis, Prometheus and every client address used
here are in 127.0.0.0/8 (clients bind 127.0.1.x and up so each is its own address).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import http.server
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Small tools for scripts/local-cluster.sh
# --------------------------------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cluster_ports(n: int) -> list[int]:
    """Redis Cluster listens on port + 10000 too, so a node's port must be at most 55535."""
    ports: list[int] = []
    for port in random.sample(range(20000, 55535), 2000):
        if len(ports) == n:
            break
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        ports.append(port)
    return ports


def listening(log: str, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in Path(log).read_text().splitlines():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("msg") == "listening":
                    print(msg.get("addr"), msg.get("admin_addr"), msg.get("rate_limit_backend", "?"))
                    return 0
        except FileNotFoundError:
            pass
        if not Path(f"/proc/{pid}").exists():
            print(f"process {pid} exited before listening", file=sys.stderr)
            return 3
        time.sleep(0.05)
    print(f"no listening line in {log} after {timeout} s", file=sys.stderr)
    return 4


def wait_http(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return 0
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    print(f"{url} not answering 200 after {timeout} s: {last}", file=sys.stderr)
    return 4


class Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True
    lock = threading.Lock()
    stats = {"requests": 0, "records": 0, "errors": 0, "content_types": {}}


class SinkHandler(http.server.BaseHTTPRequestHandler):
    """OTLP/HTTP logs receiver answering 200; counts log records (JSON encoding)."""

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ctype = self.headers.get("Content-Type", "")
        records, error = 0, False
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if "json" in ctype:
                doc = json.loads(body)
                records = sum(len(sl.get("logRecords", [])) for rl in doc.get("resourceLogs", [])
                              for sl in rl.get("scopeLogs", []))
        except Exception:
            error = True
        with Sink.lock:
            Sink.stats["requests"] += 1
            Sink.stats["records"] += records
            Sink.stats["errors"] += int(error or self.path != "/v1/logs")
            Sink.stats["content_types"][ctype] = Sink.stats["content_types"].get(ctype, 0) + 1
        out = b"{}" if "json" in ctype else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if "json" in ctype else "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        with Sink.lock:
            out = json.dumps(Sink.stats).encode()
        self.send_response(200 if self.path in ("/stats", "/health") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def otlp_sink(port: int) -> int:
    server = Sink(("127.0.0.1", port), SinkHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    return 0


# --------------------------------------------------------------------------------------------
# The assertions
# --------------------------------------------------------------------------------------------

def event(i: int) -> dict:
    return {"level": random.choice(["info", "info", "info", "warn", "error"]), "scope": f"component-{i % 7}",
            "sessionId": f"session-{i}", "message": f"local cluster event {i}",
            "timestamp": "2025-01-15T10:30:45.123Z", "context": {"action": "button_click", "n": i}}


class Http:
    """One keep-alive connection from a chosen loopback source address."""

    def __init__(self, host: str, port: int, source: str | None = None):
        self.host, self.port, self.source = host, port, source
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                                       source_address=(self.source, 0) if self.source else None)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()


def host_port(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def post_batch(client: Http, n_events: int, xff: str | None = None):
    # Named as an allow-listed app (LOCAL_CLUSTER: CLIENT_TELEMETRY_ALLOWED_APPS), so the per-app
    # dashboard panels have data too.
    app = {"name": "local-demo", "version": "1.0.0", "environment": "local"}
    body = json.dumps({"app": app, "events": [event(random.randrange(10**6)) for _ in range(n_events)]}).encode()
    headers = {"Content-Type": "application/json"}
    if xff:
        headers["X-Forwarded-For"] = xff
    t0 = time.monotonic()
    status, headers_, _ = client.request("POST", "/api/client-telemetry", body, headers)
    return status, headers_, time.monotonic() - t0


def metrics_text(admin: str) -> str:
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_sum(text: str, name: str, labels: dict | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if not m:
            continue
        if labels and not all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            continue
        total += float(m.group(2))
    return total


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params):
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
            doc = json.loads(r.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"{path}: {doc}")
        return doc["data"]

    def query(self, expr: str):
        try:
            return self.get("/api/v1/query", query=expr)["result"], None
        except urllib.error.HTTPError as e:
            return None, f"HTTP {e.code}: {e.read().decode()[:300]}"
        except Exception as e:
            return None, str(e)

    def scalar_sum(self, expr: str) -> float | None:
        result, err = self.query(expr)
        if err or not result:
            return None
        return sum(float(r["value"][1]) for r in result)


def wait_until(fn, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    return value


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.lines = []

    def ok(self, name: str, detail: str = ""):
        self.passed += 1
        print(f"ok    {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, problems):
        self.failed += 1
        print(f"FAIL  {name}", flush=True)
        for p in problems if isinstance(problems, list) else [problems]:
            print(f"        - {p}", flush=True)

    def check(self, name: str, problems: list[str], detail: str = ""):
        (self.fail(name, problems) if problems else self.ok(name, detail))

    def note(self, text: str):
        print(f"note  {text}", flush=True)


def has_values(result) -> bool:
    for r in result or []:
        try:
            if not math.isnan(float(r["value"][1])):
                return True
        except (KeyError, ValueError):
            pass
    return False


def check(cluster_json: str) -> int:
    c = json.loads(Path(cluster_json).read_text())
    rep = Report()
    random.seed(7)
    limit = int(c["limit"])
    nginx_host, nginx_port = host_port(c["nginx"])
    gateways = c["gateways"]
    prom = Prometheus(c["prometheus"])
    backend = c["backend"]
    sent_total = 0

    # --- 0. Every replica ready, on the expected backend ------------------------------------
    problems = []
    for g in gateways:
        try:
            with urllib.request.urlopen(f"http://{g['admin']}/readyz", timeout=5) as r:
                body = json.loads(r.read())
            if body.get("rateLimiter", {}).get("backend") != backend:
                problems.append(f"{g['name']}: /readyz reports {body}")
        except Exception as e:
            problems.append(f"{g['name']}: /readyz: {e}")
    rep.check(f"{len(gateways)} gateways ready on the {backend} backend", problems)
    # Counters that appear mid-burst have no known start: let Prometheus scrape every replica
    # before the traffic, and pace the traffic over several scrapes.
    up_query = 'up{job="client-telemetry"}'
    up = wait_until(lambda: (lambda r: r if r and len(r) == len(gateways) and all(x["value"][1] == "1" for x in r) else None)(
        prom.query(up_query)[0]), 15)
    rep.check(f"Prometheus scrapes every replica: up == 1 x{len(gateways)}",
              [] if up else [f"{up_query} = {prom.query(up_query)}"],
              ", ".join(sorted(x["metric"]["instance"] for x in up or [])))
    time.sleep(1.2)
    before = {g["name"]: metric_sum(metrics_text(g["admin"]), "client_telemetry_requests_total") for g in gateways}

    # --- 1. Many clients through nginx, two connections each, concurrently ----------------------
    # 30 clients, two connections each, plus one flooding client on four connections: every
    # client must get exactly `limit` admitted whichever replicas its requests land on, and the
    # refusals (> 100/min over 5 minutes, whatever the backend) must trip the 429 alert.
    n_clients, per_client = 30, limit + 30
    clients = [f"127.0.1.{i}" for i in range(1, n_clients + 1)]
    flood_ip, flood_per_conn = "127.0.7.1", 150
    connections = [(ip, n, 0.12) for ip in clients for n in (per_client // 2, per_client - per_client // 2)]
    connections += [(flood_ip, flood_per_conn, 0.02)] * 4
    results: dict[str, list] = {ip: [] for ip, _, _ in connections}
    lock = threading.Lock()

    def run_connection(ip: str, n: int, pause: float):
        conn = Http(nginx_host, nginx_port, ip)
        try:
            for _ in range(n):
                status, headers, elapsed = post_batch(conn, random.choice([1, 2, 5, 10, 20, 20, 50]))
                with lock:
                    results[ip].append((status, headers, elapsed))
                time.sleep(pause)  # ~4 s in all: the counters rise over several scrapes
        finally:
            conn.close()

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(connections)) as pool:
        futures = [pool.submit(run_connection, *conn) for conn in connections]
        for f in futures:
            f.result()
    elapsed = time.monotonic() - t0
    sent_total += sum(n for _, n, _ in connections)
    statuses = [s for r in results.values() for s, _, _ in r]
    server_errors = [s for s in statuses if s >= 500]
    rep.check("no 5xx through the load balancer", [f"{len(server_errors)} answers >= 500: {sorted(set(server_errors))}"]
              if server_errors else [], f"{len(statuses)} requests from {len(results)} addresses in {elapsed:.1f} s")
    problems = []
    for ip, rs in results.items():
        limited = [h for s, h, _ in rs if s == 429]
        for h in limited[:1]:
            if not h.get("retry-after", "").isdigit():
                problems.append(f"{ip}: 429 without a Retry-After in seconds ({h.get('retry-after')!r})")
        if rs and "ratelimit-policy" not in rs[0][1]:
            problems.append(f"{ip}: no RateLimit-Policy header through nginx")
    rep.check("429s carry Retry-After and the RateLimit headers through nginx", problems)

    # The assertion: one limit for the fleet, whichever replica nginx picks.
    problems = []
    admitted = {ip: sum(1 for s, _, _ in rs if s != 429) for ip, rs in results.items()}
    for ip, n in admitted.items():
        if n != limit:
            problems.append(f"{ip}: {n} of {len(results[ip])} requests admitted, the limit is {limit} per window")
    if problems:
        errors = sum(metric_sum(metrics_text(g["admin"]), "client_telemetry_rate_limiter_errors_total") for g in gateways)
        problems.insert(0, f"backend {backend}: admitted per client ranges {min(admitted.values())}..{max(admitted.values())}"
                           f" for a limit of {limit} across {len(gateways)} replicas: the limit is not shared"
                           + (f" ({int(errors)} limiter errors during the flood: those requests were decided by the"
                              " local fallback; is the machine overloaded?)" if errors else ""))
    rep.check("the limit is shared across replicas through the load balancer", problems[:6],
              f"every client admitted exactly {limit}, of {per_client} or {4 * flood_per_conn}")

    after = {g["name"]: metric_sum(metrics_text(g["admin"]), "client_telemetry_requests_total") for g in gateways}
    served = {name: after[name] - before[name] for name in after}
    share = min(served.values()) / max(1, sum(served.values()))
    rep.check("nginx spreads the requests over every replica",
              [] if share > 0.15 else [f"requests per replica: {served}"],
              ", ".join(f"{k} {int(v)}" for k, v in served.items()))

    # --- 2. Client identity: only nginx is believed --------------------------------------------
    # A client rotating X-Forwarded-For through nginx must still be one client: its remaining
    # quota (RateLimit: "ip";r=N) goes down. If the header were believed, every request would be a
    # new client with r = limit - 1. Holds on either backend; on Redis the admitted count is exact too.
    def remaining(headers):
        m = re.search(r"\br=(\d+)", headers.get("ratelimit", ""))
        return int(m.group(1)) if m else None

    spoofer = Http(nginx_host, nginx_port, "127.0.2.1")
    spoofed = [post_batch(spoofer, 1, xff=f"203.0.113.{i % 250 + 1}")[:2] for i in range(limit + 5)]
    spoofer.close()
    g1h, g1p = host_port(gateways[0]["addr"])
    direct = Http(g1h, g1p, "127.0.3.1")
    direct_statuses = [post_batch(direct, 1, xff=f"198.51.100.{i % 250 + 1}")[0] for i in range(limit + 5)]
    direct.close()
    sent_total += 2 * (limit + 5)
    problems = []
    lowest = min((r for r in (remaining(h) for _, h in spoofed) if r is not None), default=None)
    if lowest is None or lowest >= limit - 2:
        problems.append(f"through nginx, a client rotating X-Forwarded-For kept remaining={lowest} of {limit}: "
                        "the spoofed header was believed (nginx must overwrite it)")
    if backend == "redis" and sum(s != 429 for s, _ in spoofed) != limit:
        problems.append(f"through nginx, a client rotating X-Forwarded-For got {sum(s != 429 for s, _ in spoofed)} "
                        f"admitted, not {limit}")
    if sum(s != 429 for s in direct_statuses) != limit:
        problems.append(f"direct to {gateways[0]['name']}, a peer that is not the proxy got "
                        f"{sum(s != 429 for s in direct_statuses)} admitted, not {limit}: its X-Forwarded-For was believed")
    rep.check("X-Forwarded-For believed from nginx only (spoofing through and around it fails)", problems)

    # Some invalid input, so the status and rejection panels have more than 204/429.
    mixed = Http(nginx_host, nginx_port, "127.0.6.1")
    for body in [{"events": [event(1), dict(event(2), level="debug")]}, {"events": [dict(event(3), timestamp="yesterday")]}]:
        mixed.request("POST", "/api/client-telemetry", json.dumps(body).encode(), {"Content-Type": "application/json"})
    mixed.request("POST", "/api/client-telemetry", b"{not json", {"Content-Type": "application/json"})
    mixed.close()
    sent_total += 3

    # --- 3. Prometheus saw all of it --------------------------------------------------------------
    total_query = 'sum(client_telemetry_requests_total{job="client-telemetry"})'
    seen = wait_until(lambda: prom.scalar_sum(total_query) == sent_total, 15)
    rep.check("Prometheus counts every request sent",
              [] if seen else [f"{total_query} = {prom.scalar_sum(total_query)}, sent {sent_total}"],
              f"{sent_total} requests")

    # --- 4. The forwarder delivers to the collector stand-in ----------------------------------
    if "client_telemetry_otlp_exports_total" in metrics_text(gateways[0]["admin"]):
        def delivered():
            accepted = sum(metric_sum(metrics_text(g["admin"]), "client_telemetry_events_total") for g in gateways)
            with urllib.request.urlopen(f"{c['otlp_sink']}/stats", timeout=5) as r:
                stats = json.loads(r.read())
            return (stats, accepted) if stats["records"] >= accepted > 0 else None
        got = wait_until(delivered, 15)
        with urllib.request.urlopen(f"{c['otlp_sink']}/stats", timeout=5) as r:
            stats = json.loads(r.read())
        rep.check("every accepted event reached the OTLP sink", [] if got else [f"sink {stats}"],
                  f"{stats['records']} log records in {stats['requests']} exports")
    else:
        rep.note("this gateway build exports no client_telemetry_otlp_* metrics: forwarding not exercised")

    # --- 5. Redis outage: ingest goes on, the limiter reports degraded ------------------------
    degraded_expected = False
    if backend == "redis" and c.get("redis_pid"):
        try:
            os.kill(int(c["redis_pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
        outage = Http(nginx_host, nginx_port, "127.0.4.1")
        answers = [post_batch(outage, 2) for _ in range(15)]
        outage.close()
        sent_total += len(answers)
        slow = [round(e, 3) for _, _, e in answers if e > 1.0]
        bad = [s for s, _, _ in answers if s >= 500]
        rep.check("Redis killed: no 5xx and no request waits on it", [f"statuses {bad}"] * bool(bad) +
                  [f"slow answers (s): {slow}"] * bool(slow),
                  f"{len(answers)} requests, slowest {max(e for _, _, e in answers) * 1000:.0f} ms")
        degraded_expected = True
    else:
        rep.note(f"backend {backend}: the Redis outage phase does not apply")

    # --- 6. Every dashboard query returns data -----------------------------------------------
    time.sleep(2.5)  # two scrapes after the last traffic
    dashboard = json.loads((ROOT / "deploy" / "observability" / "dashboard.json").read_text())
    problems, n = [], 0

    def walk(panels):
        for p in panels:
            yield from ((p["title"], t) for t in p.get("targets", []) if t.get("expr"))
            yield from walk(p.get("panels", []))

    for title, target in walk(dashboard["panels"]):
        n += 1
        # Dashboard variables as Grafana would fill them here: the contract's job, every
        # cluster/namespace/replica (this Prometheus has no such labels), the base's CPU request.
        values = {"__rate_interval": "1m", "job": "client-telemetry", "cpu_request_cores": "0.5"}
        expr = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), target["expr"])
        result, err = prom.query(expr)
        if err:
            problems.append(f"{title!r} {target['refId']}: error {err}")
        elif not has_values(result):
            problems.append(f"{title!r} {target['refId']}: no data: {expr}")
    rep.check("every dashboard query returns data from this Prometheus", problems, f"{n} queries")

    # --- 7. Every alert rule evaluates; the ones this traffic trips are pending -------------
    rules = []
    group_data = wait_until(lambda: (lambda g: g if g and all(r.get("lastEvaluation", "").startswith("20")
                                                              for grp in g for r in grp["rules"]) else None)(
        prom.get("/api/v1/rules")["groups"]), 10)
    for grp in group_data or prom.get("/api/v1/rules")["groups"]:
        rules += grp["rules"]
    problems = []
    if len(rules) < 7:
        problems.append(f"Prometheus loaded {len(rules)} rules")
    for r in rules:
        if r.get("health") != "ok":
            problems.append(f"{r['name']}: health {r.get('health')} {r.get('lastError', '')}")
        _, err = prom.query(r["query"])
        if err:
            problems.append(f"{r['name']}: query error {err}")
    rep.check("every alert rule loads and evaluates on this Prometheus", problems, f"{len(rules)} rules")

    def alert_expr(name):
        return next(r["query"] for r in rules if r["name"] == name)

    problems = []
    if rules:
        result, _ = prom.query(alert_expr("ClientTelemetryRateLimitViolations"))
        if not result:
            problems.append("ClientTelemetryRateLimitViolations: expression empty after a 429 flood")
        active = prom.get("/api/v1/alerts")["alerts"]
        if not any(a["labels"]["alertname"] == "ClientTelemetryRateLimitViolations" for a in active):
            problems.append(f"ClientTelemetryRateLimitViolations is not pending/firing: {active}")
        result, _ = prom.query(alert_expr("ClientTelemetryNoReplicasUp"))
        if result:
            problems.append(f"ClientTelemetryNoReplicasUp true while every replica is up: {result}")
        if degraded_expected:
            # The rule weighs the share of the last 15 minutes degraded; on this test's time scale
            # (1 s scrapes, a Redis killed seconds ago) the same expression over the last 5 s.
            result, _ = prom.query(alert_expr("ClientTelemetryRateLimiterDegraded").replace("[15m]", "[5s]"))
            if not result:
                problems.append("ClientTelemetryRateLimiterDegraded: expression empty with Redis killed")
    rep.check("alerts react to this traffic: 429 flood pending, no-replicas quiet"
              + (", limiter degraded" if degraded_expected else ""), problems)

    # --- 8. All replicas stop: drained gracefully, and the no-replicas alert trips -------------
    for g in gateways:
        try:
            os.kill(int(g["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass
    problems = []
    for g in gateways:
        stopped = wait_until(lambda: '"msg":"stopped"' in Path(g["log"]).read_text(), 10)
        if not stopped:
            problems.append(f"{g['name']}: no 'stopped' line within 10 s of SIGTERM")
    rep.check("SIGTERM: every replica drains and stops", problems)
    if rules:
        tripped = wait_until(lambda: prom.query(alert_expr("ClientTelemetryNoReplicasUp"))[0], 10)
        rep.check("ClientTelemetryNoReplicasUp expression is true once every replica is gone",
                  [] if tripped else ["still empty 10 s after the last replica stopped"])

    print(f"local-cluster: {rep.passed} passed, {rep.failed} failed", flush=True)
    return 1 if rep.failed else 0


def check_cluster(cluster_json: str) -> int:
    """Started with LOCAL_CLUSTER_REDIS=cluster: every replica on the Cluster, and one limit for the
    fleet for clients whose keys land on every shard (sent through nginx from their own address)."""
    c = json.loads(Path(cluster_json).read_text())
    rep = Report()
    limit = int(c["limit"])
    nginx_host, nginx_port = host_port(c["nginx"])
    problems = []
    for g in c["gateways"]:
        with urllib.request.urlopen(f"http://{g['admin']}/readyz", timeout=5) as r:
            redis = json.loads(r.read()).get("rateLimiter", {}).get("redis", {})
        if redis.get("mode") != "cluster" or redis.get("primariesAnswering") != 3:
            problems.append(f"{g['name']}: /readyz says {redis}")
    rep.check("every replica reaches the Cluster: mode cluster, 3 primaries answering", problems)
    clients = [f"127.0.{9}.{i}" for i in range(1, 13)]
    problems = []
    for ip in clients:
        conn = Http(nginx_host, nginx_port, source=ip)
        statuses = [post_batch(conn, 1)[0] for _ in range(limit + 3)]
        conn.close()
        if statuses.count(204) != limit or statuses.count(429) != 3:
            problems.append(f"{ip}: {statuses}")
    rep.check(f"one limit for the fleet on the Cluster: {len(clients)} clients, each exactly {limit} of {limit + 3}",
              problems)
    print(f"local-cluster (Redis Cluster): {rep.passed} passed, {rep.failed} failed", flush=True)
    return 1 if rep.failed else 0


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "free-ports":
        print(" ".join(map(str, free_ports(int(argv[2])))))
        return 0
    if cmd == "cluster-ports":
        print(" ".join(map(str, cluster_ports(int(argv[2])))))
        return 0
    if cmd == "listening":
        return listening(argv[2], int(argv[3]), float(argv[4]))
    if cmd == "wait-http":
        return wait_http(argv[2], float(argv[3]))
    if cmd == "otlp-sink":
        return otlp_sink(int(argv[2]))
    if cmd == "check":
        return check(argv[2])
    if cmd == "check-cluster":
        return check_cluster(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
