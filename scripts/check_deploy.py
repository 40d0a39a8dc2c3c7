#!/usr/bin/env python3
"""Static checks of the deployment artefacts; scripts/test-deploy.sh runs them in its venv.

    python3 scripts/check_deploy.py all            every check, one line each, then "deploy: N passed, N failed"
    python3 scripts/check_deploy.py sync-rules     regenerate deploy/k8s/base/prometheusrule.yaml from
                                                   deploy/observability/alerts.yaml (the single source)

What "all" checks, beyond the schema validators the shell script runs:
  * Kubernetes: every object of the base, the example overlay and the request-rate HPA component,
    rendered by kustomize, against the official schemas (kubernetes-validate, strict: unknown fields
    fail) for the oldest and newest Kubernetes we support; ServiceMonitor/PrometheusRule against the
    Prometheus Operator's CRD schemas (cloudcoil models), made strict the way kubeconform does;
    then the invariants an SRE reviews by eye (probes, shutdown budget, HPA, selectors, hardening).
  * Observability: every metric, label and label value in the alert rules and the dashboard exists
    in docs/contract.md; every selector pins the contract's job; runbook anchors exist; each alert
    has a unit test that makes it fire and one that keeps it quiet (mutation check with promtool).
  * Compose: files it mounts exist, the single-source files are the ones mounted, the gateways
    trust only the load balancer, Prometheus scrapes every replica; promtool and nginx -t on the
    configs (service names rewritten to loopback).
  * Dockerfile: parsed by BuildKit's parser; multi-stage, non-root, no HEALTHCHECK, exec-form
    entrypoint, both ports exposed, every COPY source present in the build context.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OBS = DEPLOY / "observability"
ALERTS = OBS / "alerts.yaml"
ALERT_TESTS = OBS / "alerts.test.yaml"
DASHBOARD = OBS / "dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
CONTRACT = ROOT / "docs" / "contract.md"
PROMETHEUS_RULE = DEPLOY / "k8s" / "base" / "prometheusrule.yaml"
COMPOSE_DIR = DEPLOY / "compose"

# Oldest Kubernetes the manifests need (preStop sleep action, matchLabelKeys) and the newest schema shipped.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# --------------------------------------------------------------------------------------------
# The contract: metric names, their labels and enumerated values, settings, the job name.
# --------------------------------------------------------------------------------------------

# What the prometheus crate's ProcessCollector exports (contract: "process_* (…)").
PROCESS_METRICS = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
    "process_threads",
}


class Contract:
    def __init__(self) -> None:
        text = CONTRACT.read_text()
        self.metrics: dict[str, dict] = {}
        for line in text.splitlines():
            m = re.match(r"^\s*-\s+(client_telemetry_\w+)(?:\{([^}]*)\})?\s*(.*)$", line)
            if not m:
                continue
            name, labels, rest = m.group(1), m.group(2), m.group(3)
            kind = "histogram" if "histogram" in rest else "gauge" if "gauge" in rest else "counter"
            label_names = {l.strip() for l in labels.split(",")} if labels else set()
            values: dict[str, object] = {}
            for label, alts in re.findall(r"(\w+)\s*=\s*(\w+(?:\|\w+)+)", rest):
                values[label] = set(alts.split("|"))
            if "status" in label_names and "HTTP code" in rest:
                values["status"] = re.compile(r"^[1-5]\d\d$")
            self.metrics[name] = {"type": kind, "labels": label_names, "values": values}
        listed_process = set(re.findall(r"\bprocess_[a-z_]+[a-z]\b", text))
        self.process = PROCESS_METRICS | listed_process
        job = re.search(r"Prometheus job name everywhere:\s*`([^`]+)`", text)
        if not job:
            raise SystemExit("docs/contract.md names no Prometheus job")
        self.job = job.group(1)
        # Settings: the current names of docs/configuration.md's reference (generated from the code;
        # deprecated spellings are not accepted in deploy/), plus the OTel prefixes the contract allows.
        reference = (ROOT / "docs" / "configuration.md").read_text()
        rows = re.findall(r"^\| `((?:CLIENT_TELEMETRY|OTEL)_[A-Z0-9_]+)` \| [^|]* \| (.*) \|$", reference, re.M)
        self.env = {name for name, meaning in rows if not meaning.startswith("deprecated")}
        if not self.env:
            raise SystemExit("docs/configuration.md lists no settings")
        self.env_prefixes = {p.rstrip("_") + "_" for p in re.findall(r"\b(OTEL_[A-Z_]+_)\*", text)}

    def env_known(self, name: str) -> bool:
        return name in self.env or any(name.startswith(p) for p in self.env_prefixes)

    def series_names(self) -> dict[str, tuple[str, dict]]:
        """Every name a query may use -> (base metric, its contract entry)."""
        out: dict[str, tuple[str, dict]] = {}
        for name, info in self.metrics.items():
            out[name] = (name, info)
            if info["type"] == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    out[name + suffix] = (name, info)
        for name in self.process:
            out[name] = (name, {"type": "process", "labels": set(), "values": {}})
        out["up"] = ("up", {"type": "up", "labels": set(), "values": {}})
        return out


# --------------------------------------------------------------------------------------------
# PromQL: enough of a lexer to find metric names, selectors, matchers and functions.
# --------------------------------------------------------------------------------------------

PROMQL_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent",
    "absent_over_time", "label_replace", "label_join", "vector", "scalar", "time", "clamp", "clamp_min",
    "clamp_max", "abs", "ceil", "floor", "round", "sort", "sort_desc", "max_over_time", "min_over_time",
    "avg_over_time", "sum_over_time", "count_over_time", "last_over_time", "quantile_over_time", "changes",
    "resets", "predict_linear", "timestamp", "exp", "ln", "log2", "log10", "sqrt", "sgn",
    "label_values",  # Grafana's template-variable query
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "offset", "bool", "inf", "nan", "Inf", "NaN"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


# Labels Prometheus adds to every scraped series: job/instance, the Prometheus Operator's target
# labels (namespace, pod, …), and `cluster` where several clusters share one Prometheus/Thanos.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint", "cluster"}

# Metrics of other exporters some alert rules read, with the label each selector must pin
# (instead of the gateway's job) and the labels it has. docs/operations.md names the dependency.
EXTERNAL_METRICS = {
    # redis_exporter, scraped as job="client-telemetry-redis".
    "redis_evicted_keys_total": {"pin": ("job", "client-telemetry-redis"), "labels": TARGET_LABELS},
    # ingress-nginx's controller; `namespace` is exported_namespace unless scraped with honorLabels.
    "nginx_ingress_controller_requests": {
        "pin": ("ingress", "client-telemetry"),
        "labels": TARGET_LABELS | {"exported_namespace", "ingress", "status", "host", "path", "method",
                                   "canary", "controller_class", "controller_namespace", "controller_pod"}},
}


def promql_problems(expr: str, contract: Contract, where: str, job_pin: tuple[str, str] | None = None,
                    external: bool = False) -> list[str]:
    """Problems of one query: names and labels outside the contract, a selector without the job
    pin (`job="client-telemetry"` in rules; the dashboard's `job=~"$job"`)."""
    problems: list[str] = []
    job_pin = job_pin or ("=", contract.job)
    names = contract.series_names()
    if external:
        names.update({n: (n, {"type": "external", "labels": e["labels"], "values": {}, "pin": e["pin"]})
                      for n, e in EXTERNAL_METRICS.items()})
    common_labels = TARGET_LABELS
    all_labels = (set().union(*(i["labels"] for i in contract.metrics.values())) | common_labels | {"le"}
                  | (set().union(*(e["labels"] for e in EXTERNAL_METRICS.values())) if external else set()))

    # Selectors with their matchers (strings intact).
    for m in SELECTOR.finditer(expr):
        metric, body = m.group(1), m.group(2)
        if metric in PROMQL_KEYWORDS or (metric and metric in PROMQL_FUNCTIONS):
            metric = None
        matchers = MATCHER.findall(body)
        stripped = MATCHER.sub("", body).replace(",", "").strip()
        if stripped:
            problems.append(f"{where}: cannot read label matchers {{{body}}}")
        if metric is None:
            problems.append(f"{where}: selector without a metric name {{{body}}}")
            continue
        if metric not in names:
            continue  # reported below as an unknown name
        base, info = names[metric]
        allowed = info["labels"] | common_labels | ({"le"} if metric.endswith("_bucket") else set())
        labels = {label: (op, value) for label, op, value in matchers}
        for label, (op, value) in labels.items():
            if label not in allowed:
                problems.append(f"{where}: {metric} has no label {label!r} (contract: {sorted(allowed)})")
                continue
            enum = info["values"].get(label)
            if op == "=" and enum is not None:
                ok = enum.match(value) if isinstance(enum, re.Pattern) else value in enum
                if not ok:
                    problems.append(f"{where}: {metric}{{{label}={value!r}}}: not a value the contract lists")
        pin_label, pin_value = info.get("pin", ("job", None))
        if pin_value is not None:
            if labels.get(pin_label) != ("=", pin_value):
                problems.append(f'{where}: {metric} is not selected with {pin_label}="{pin_value}"')
        elif labels.get("job") != job_pin:
            problems.append(f'{where}: {metric} is not selected with job{job_pin[0]}"{job_pin[1]}"')

    for kw, labels in GROUPING.findall(expr):
        for label in filter(None, (l.strip() for l in labels.split(","))):
            if label not in all_labels:
                problems.append(f"{where}: {kw} ({label}): no metric in the contract has that label")

    # Grafana's label_values(selector, label): the last argument is a label, not a metric.
    lv = re.match(r"^\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*$", expr, re.S)
    if lv:
        if lv.group(2) not in all_labels:
            problems.append(f"{where}: label_values(…, {lv.group(2)}): no metric in the contract has that label")
        expr = f"label_values({lv.group(1)})"

    # Metric names and functions: drop strings, matchers, groupings, ranges, numbers; what is left are names.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = GROUPING.sub(" ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\boffset\s+-?(?:\d+(?:ms|[smhdwy]))+", " ", bare)  # a duration is not a name
    bare = re.sub(r"\$\{?\w+\}?", " ", bare)
    bare = re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", bare)
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?", bare):
        token, call = m.group(0).rstrip("( \t\n"), m.group(1)
        if call:
            if token not in PROMQL_FUNCTIONS and token not in PROMQL_KEYWORDS:
                problems.append(f"{where}: unknown function {token}()")
        elif token in PROMQL_KEYWORDS:
            continue
        elif token not in names:
            problems.append(f"{where}: metric {token!r} is not in docs/contract.md")
    return problems


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every panel target (rows' nested panels too) and query variable."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            out.append((f"variable ${var['name']}", q))
    return out


def alert_rules(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


# --------------------------------------------------------------------------------------------
# Small harness: each check prints one line; failures carry every problem found.
# --------------------------------------------------------------------------------------------

class Failed(Exception):
    def __init__(self, problems):
        self.problems = problems if isinstance(problems, list) else [problems]


CHECKS: list = []


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn
    return register


def require(problems: list[str]) -> None:
    if problems:
        raise Failed(problems)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# --------------------------------------------------------------------------------------------
# PrometheusRule: generated from the single rules file.
# --------------------------------------------------------------------------------------------

RULE_HEADER = """\
# GENERATED from deploy/observability/alerts.yaml by `python3 scripts/check_deploy.py sync-rules`.
# Do not edit: change alerts.yaml and regenerate (scripts/test-deploy.sh fails when they differ).
# Overlays add the label your Prometheus' ruleSelector expects (e.g. release: kube-prometheus-stack).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: client-telemetry
  labels:
    app.kubernetes.io/name: client-telemetry
spec:
"""


def render_prometheus_rule() -> str:
    lines = ALERTS.read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("groups:"))
    body = ["  " + l if l.strip() else "" for l in lines[start:]]
    return RULE_HEADER + "\n".join(body) + "\n"


@check("PrometheusRule is alerts.yaml, regenerated")
def _prometheus_rule_in_sync():
    want = render_prometheus_rule()
    have = PROMETHEUS_RULE.read_text() if PROMETHEUS_RULE.exists() else ""
    if have != want:
        raise Failed(f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from deploy/observability/alerts.yaml: "
                     "run python3 scripts/check_deploy.py sync-rules")
    assert yaml.safe_load(have)["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


# --------------------------------------------------------------------------------------------
# Observability as code.
# --------------------------------------------------------------------------------------------

@check("alert rules: metrics, labels, values and job from docs/contract.md")
def _alerts_use_contract():
    contract = Contract()
    problems = []
    rules = alert_rules(yaml.safe_load(ALERTS.read_text()))
    if not rules:
        problems.append("no alert rules")
    for r in rules:
        problems += promql_problems(r["expr"], contract, f"alert {r['alert']}", external=True)
    require(problems)


AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|topk|bottomk|quantile|stddev|stdvar)\s*"
                         r"(?:(by|without)\s*\(([^)]*)\)\s*)?\(")


@check("alert rules: environments never mix (every aggregation and match by namespace)")
def _alerts_by_namespace():
    problems = []
    for r in alert_rules(yaml.safe_load(ALERTS.read_text())):
        expr = r["expr"]
        for m in AGGREGATION.finditer(expr):
            op, kw, labels = m.group(1), m.group(2), m.group(3) or ""
            if kw != "by" or "namespace" not in {l.strip() for l in labels.split(",")}:
                problems.append(f"{r['alert']}: {op}(…) is not `by (namespace, …)`: environments would mix")
        for kw, labels in re.findall(r"\b(on|ignoring)\s*\(([^)]*)\)", expr):
            if kw != "on" or "namespace" not in {l.strip() for l in labels.split(",")}:
                problems.append(f"{r['alert']}: vector match {kw} ({labels}) does not match on namespace")
        if not re.search(r"\b(sum|max|min|avg|count|group)\s+by\s*\(", expr) and "absent(" not in expr:
            problems.append(f"{r['alert']}: aggregates nothing by namespace")
    require(problems)


@check("alert rules: severity, summary, description and a runbook anchor that exists")
def _alerts_annotated():
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), re.M)}
    problems = []
    names = set()
    for r in alert_rules(yaml.safe_load(ALERTS.read_text())):
        name = r["alert"]
        if name in names:
            problems.append(f"{name}: defined twice")
        names.add(name)
        if r.get("labels", {}).get("severity") not in {"critical", "warning", "info"}:
            problems.append(f"{name}: severity label missing or unusual")
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{name}: no {key}")
        url = ann.get("runbook_url", "")
        m = re.search(r"docs/runbook\.md#([\w\-]+)$", url)
        if not m:
            problems.append(f"{name}: runbook_url {url!r} does not point into docs/runbook.md#…")
        elif m.group(1) not in anchors:
            problems.append(f"{name}: docs/runbook.md has no heading with anchor #{m.group(1)}")
        elif m.group(1) != github_anchor(name):
            problems.append(f"{name}: runbook anchor #{m.group(1)} is not the alert's own section")
    for seed in ("ClientTelemetryRateLimitViolations", "ClientTelemetryForwardingFailures", "ClientTelemetryHighLatency",
                 "ClientTelemetryNoReplicasUp", "ClientTelemetryRateLimiterDegraded",
                 "ClientTelemetryOtlpEventsDropped", "ClientTelemetryLogLinesDropped",
                 # Operations round two: the edge, 5xx, Redis evictions.
                 "ClientTelemetryNoTraffic", "ClientTelemetryServerErrors", "ClientTelemetryRedisEvictingKeys",
                 "ClientTelemetryIngressErrors"):
        if seed not in names:
            problems.append(f"missing alert {seed}")
    require(problems)


def promtool_tests_pass(rules_text: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "alerts.yaml").write_text(rules_text)
        shutil.copy(ALERT_TESTS, Path(tmp) / "alerts.test.yaml")
        p = run(["promtool", "test", "rules", "alerts.test.yaml"], cwd=tmp)
        return p.returncode == 0, p.stdout + p.stderr


@check("alert unit tests can fail: each alert has a firing, a quiet and a per-namespace case (mutation)")
def _alert_tests_bite():
    ok, out = promtool_tests_pass(ALERTS.read_text())
    if not ok:
        raise Failed(f"promtool test rules fails on the real rules:\n{out}")
    doc = yaml.safe_load(ALERTS.read_text())
    mutants = []
    for i, rule in enumerate(alert_rules(doc)):
        # Never fires: some test expected it to; always fires: some test expected silence.
        # And one that mixes environments: the namespace dropped from every grouping and match.
        mixed = re.sub(r"\bon \(namespace\)", "on ()", re.sub(r"\bby \(namespace(, )?", "by (", rule["expr"]))
        for mutant, meaning in (("vector(1) < 0", "an alert that never fires"),
                                ('vector(1) > 0', "an alert that always fires"),
                                (mixed, "environments mixed (no by (namespace))")):
            mutated = copy.deepcopy(doc)
            alert_rules(mutated)[i]["expr"] = mutant
            mutants.append((f"{rule['alert']}: the unit tests still pass with {meaning}",
                            yaml.safe_dump(mutated, sort_keys=False)))
    # One promtool per core: each run is independent.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(lambda m: (m[0], promtool_tests_pass(m[1])[0]), mutants)
        require([problem for problem, passed in results if passed])


@check("dashboard: JSON, unique ids, every query on contract metrics with the contract job")
def _dashboard():
    contract = Contract()
    dash = json.loads(DASHBOARD.read_text())
    problems = []
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                if not p.get("targets"):
                    problems.append(f"panel {p.get('title')!r} has no query")
                ds = p.get("datasource", {})
                if ds.get("uid") != "${datasource}":
                    problems.append(f"panel {p.get('title')!r} is not on the $datasource variable")
                for key in ("h", "w", "x", "y"):
                    if key not in p.get("gridPos", {}):
                        problems.append(f"panel {p.get('title')!r} has no gridPos.{key}")
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    if not dash.get("uid"):
        problems.append("no uid (provisioned dashboards need a stable one)")
    queries = dashboard_queries(dash)
    if len(queries) < 10:
        problems.append(f"only {len(queries)} queries")
    # Environments never mix: every selector is on the job, cluster and namespace variables.
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    for name in ("job", "cluster", "namespace"):
        if name not in variables:
            problems.append(f"no ${name} variable")
    job_var = variables.get("job", {})
    if job_var.get("type") != "textbox" or job_var.get("query") != contract.job:
        problems.append(f"$job is not a textbox defaulting to the contract's job {contract.job!r}")
    if variables.get("namespace", {}).get("includeAll") or variables.get("namespace", {}).get("multi"):
        problems.append("$namespace allows several environments at once: their series would add up")
    for where, expr in queries:
        problems += promql_problems(expr, contract, where, job_pin=("=~", "$job"))
        if where == "variable $job":
            continue
        for m in SELECTOR.finditer(expr):
            labels = {label: (op, value) for label, op, value in MATCHER.findall(m.group(2))}
            for label in ("cluster", "namespace"):
                if where.startswith(f"variable ${label}") or (label == "namespace" and where == "variable $cluster"):
                    continue
                if labels.get(label) != ("=~", f"${label}"):
                    problems.append(f'{where}: {m.group(1)} is not filtered by {label}=~"${label}"')
    # The CPU panel compares with the request as the HPA does: a share of the request, the HPA's target marked.
    cpu = next((p for p in dash["panels"] if "process_cpu_seconds_total" in json.dumps(p.get("targets", []))), None)
    dep = one(kustomize(DEPLOY / "k8s" / "base"), "Deployment", "client-telemetry")
    hpa = one(kustomize(DEPLOY / "k8s" / "base"), "HorizontalPodAutoscaler", "client-telemetry")
    request = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    request_cores = float(request[:-1]) / 1000 if request.endswith("m") else float(request)
    target = next(m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]
                  if m.get("resource", {}).get("name") == "cpu")
    if cpu is None:
        problems.append("no CPU panel")
    else:
        expr = cpu["targets"][0]["expr"]
        if not expr.rstrip().endswith("/ $cpu_request_cores") or cpu["fieldConfig"]["defaults"].get("unit") != "percentunit":
            problems.append("CPU panel is not CPU / $cpu_request_cores in percent of the request")
        steps = [s_["value"] for s_ in cpu["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])]
        if target / 100 not in steps:
            problems.append(f"CPU panel does not mark the HPA target {target} % of the request")
    if float(variables.get("cpu_request_cores", {}).get("query", "nan")) != request_cores:
        problems.append(f"$cpu_request_cores is not the Deployment's CPU request ({request} = {request_cores})")
    # The list of panels, by what they query.
    text = json.dumps(dash)
    for needle, what in [("client_telemetry_requests_total", "request rate"), ('status=\\"429\\"', "429 rate"),
                         ("client_telemetry_batch_size_bucket", "batch size distribution"),
                         ("histogram_quantile(0.99, sum by (le) (rate(client_telemetry_request_duration", "p99 latency"),
                         ('result=\\"success\\"', "forwarding success ratio"),
                         ("client_telemetry_otlp_queue_depth", "OTLP queue depth"), ("client_telemetry_otlp_events_total", "OTLP drops"),
                         ("client_telemetry_rate_limiter_duration_seconds_bucket", "limiter latency"),
                         ("client_telemetry_rate_limiter_degraded", "limiter degraded"), ("up{", "replicas"),
                         ("client_telemetry_build_info", "builds running")]:
        if needle not in text:
            problems.append(f"no panel for {what}")
    require(problems)


# --------------------------------------------------------------------------------------------
# Kubernetes.
# --------------------------------------------------------------------------------------------

def kustomize(path: Path) -> list[dict]:
    cmd = os.environ.get("KUSTOMIZE_CMD", "kubectl kustomize").split()
    p = run(cmd + [str(path)])
    if p.returncode != 0:
        raise Failed(f"{' '.join(cmd)} {path}: {p.stderr.strip()}")
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def render_targets() -> dict[str, list[dict]]:
    out = {"base": kustomize(DEPLOY / "k8s" / "base"),
           "overlays/example": kustomize(DEPLOY / "k8s" / "overlays" / "example")}
    with tempfile.TemporaryDirectory() as tmp:
        rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731 (kustomize refuses absolute paths)
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [rel(DEPLOY / "k8s" / "overlays" / "example")],
            "components": [rel(DEPLOY / "k8s" / "components" / "hpa-request-rate")]}))
        out["overlays/example + components/hpa-request-rate"] = kustomize(Path(tmp))
    return out


_RENDERED: dict | None = None


def rendered() -> dict[str, list[dict]]:
    global _RENDERED
    if _RENDERED is None:
        _RENDERED = render_targets()
    return _RENDERED


def strict_schema(schema):
    """kubeconform's --strict for CRDs: objects that list their properties accept no others."""
    if isinstance(schema, dict):
        schema = {k: strict_schema(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    return schema


def crd_validator(kind: str):
    from cloudcoil.models.prometheus_operator import v1 as monitoring_v1  # noqa: PLC0415
    import jsonschema  # noqa: PLC0415

    model = getattr(monitoring_v1, kind)
    schema = strict_schema(model.model_json_schema(by_alias=True))

    def validate(obj):
        problems = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
        try:
            model.model_validate(obj)
        except Exception as e:  # pydantic's own checks: patterns, enums
            problems.append(str(e).replace("\n", " "))
        return problems
    return validate


@check("kubernetes: every object against the official schemas, strict (kubernetes-validate, Operator CRDs)")
def _k8s_schemas():
    import kubernetes_validate  # noqa: PLC0415

    problems, counted = [], 0
    crd = {}
    for target, objects in rendered().items():
        if not objects:
            problems.append(f"{target}: renders nothing")
        for obj in objects:
            what = f"{target}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            counted += 1
            if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                kind = obj["kind"]
                crd.setdefault(kind, crd_validator(kind))
                problems += [f"{what}: {p}" for p in crd[kind](obj)]
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(map(str, e.absolute_path)) or "(root)"
                    problems.append(f"{what} (Kubernetes {version}): {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    problems.append(f"{what}: no schema ({e.message})")
    require(problems)
    return f"{counted} objects"


def by_kind(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects, kind, name=None):
    found = by_kind(objects, kind, name)
    if len(found) != 1:
        raise Failed(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def configmap_env(objects, container) -> dict[str, str]:
    env = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(one(objects, "ConfigMap", src["configMapRef"]["name"]).get("data", {}))
        if "secretRef" in src:
            secret = one(objects, "Secret", src["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
            env.update(secret.get("stringData", {}))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


def hardened(what: str, pod_spec: dict, container: dict) -> list[str]:
    problems = []
    psc, csc = pod_spec.get("securityContext", {}), container.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.append(f"{what}: runAsNonRoot not set")
    if (csc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
        problems.append(f"{what}: no non-zero runAsUser")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{what}: allowPrivilegeEscalation is not false")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{what}: root filesystem is writable")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        problems.append(f"{what}: capabilities not all dropped")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault" and \
            csc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{what}: no RuntimeDefault seccomp profile")
    if csc.get("privileged"):
        problems.append(f"{what}: privileged")
    res = container.get("resources", {})
    for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        for key in keys:
            if key not in res.get(part, {}):
                problems.append(f"{what}: no {part}.{key}")
    if pod_spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{what}: service account token mounted")
    return problems


def seconds(quantity) -> float:
    return float(quantity)


def gateway_invariants(target: str, objects: list[dict]) -> list[str]:
    contract = Contract()
    problems: list[str] = []
    p = lambda msg: problems.append(f"{target}: {msg}")  # noqa: E731
    dep = one(objects, "Deployment", "client-telemetry")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    if not matches(spec["selector"]["matchLabels"], pod_labels):
        p("Deployment selector does not match its pods")
    if "replicas" in spec:
        p("Deployment sets replicas: the HPA owns the count, and apply would reset it")
    if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") not in (0, "0", "0%"):
        p("rolling update may take capacity away (maxUnavailable > 0)")
    gw = next((c for c in pod["containers"] if c["name"] == "gateway"), None)
    if gw is None:
        raise Failed(f"{target}: no gateway container")
    problems += [f"{target}: {x}" for x in hardened("gateway", pod, gw)]
    if "cpu" not in gw.get("resources", {}).get("limits", {}):
        p("gateway: no CPU limit")
    if pod.get("enableServiceLinks") is not False:
        p("enableServiceLinks is not false: the client-telemetry Service would inject CLIENT_TELEMETRY_* variables")
    ports = {cp["name"]: cp["containerPort"] for cp in gw.get("ports", [])}
    env = configmap_env(objects, gw)
    for name in env:
        if name not in {"POD_NAME", "POD_NAMESPACE"} and not contract.env_known(name):
            p(f"setting {name} is not a current setting of docs/configuration.md")
    if env.get("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND") != "redis":
        p("the Redis rate-limit backend is not on")
    for setting, port_name in (("CLIENT_TELEMETRY_BIND", "http"), ("CLIENT_TELEMETRY_ADMIN_BIND", "admin")):
        bind = env.get(setting, "")
        if not bind.endswith(f":{ports.get(port_name)}"):
            p(f"{setting}={bind!r} does not listen on the {port_name} container port {ports.get(port_name)}")
    url = env.get("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "")
    host = re.match(r"rediss?://(?:[^@/]*@)?([^:/]+)", url)
    if not host:
        p(f"CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL {url!r} is not a redis:// URL")
    elif "." not in host.group(1) and not by_kind(objects, "Service", host.group(1)):
        p(f"CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL names Service {host.group(1)!r}, which is not deployed")
    # Probes on the admin port: readiness follows draining, liveness checks only the process.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = gw.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", ports.get("admin")):
            p(f"{probe} is not GET {path} on the admin port")
    # Shutdown budget: preStop, then SHUTDOWN_DELAY, then SHUTDOWN_GRACE, all before SIGKILL.
    pre_stop = gw.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not pre_stop:
        p("no preStop sleep: the endpoint may still receive traffic after SIGTERM")
    delay = int(env.get("CLIENT_TELEMETRY_SHUTDOWN_DELAY_MS", "0")) / 1000
    grace = int(env.get("CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS", "15000")) / 1000
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if (pre_stop or 0) + delay + grace + 5 > tgps:
        p(f"terminationGracePeriodSeconds {tgps} leaves under 5 s over preStop {pre_stop} + delay {delay} + grace {grace}")
    spreads = {c["topologyKey"] for c in pod.get("topologySpreadConstraints", [])
               if matches(c.get("labelSelector", {}).get("matchLabels"), pod_labels)}
    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
        if key not in spreads:
            p(f"no topology spread over {key}")
    # HPA.
    hpa = one(objects, "HorizontalPodAutoscaler", "client-telemetry")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
        p("the HPA does not scale the gateway Deployment")
    if hpa["apiVersion"] != "autoscaling/v2" or hpa["spec"].get("minReplicas", 1) < 2:
        p("HPA is not autoscaling/v2 with minReplicas >= 2")
    if not any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", [])):
        p("HPA does not scale on CPU")
    if "cpu" not in gw.get("resources", {}).get("requests", {}):
        p("HPA on CPU utilisation needs a CPU request")
    if hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 0) < 60:
        p("HPA scales down without a stabilization window")
    # PDB, Service, ServiceMonitor, NetworkPolicy all select the gateway pods.
    pdb = one(objects, "PodDisruptionBudget", "client-telemetry")
    if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        p("PDB does not select the gateway pods")
    svc = one(objects, "Service", "client-telemetry")
    if not matches(svc["spec"]["selector"], pod_labels):
        p("Service does not select the gateway pods")
    for sp in svc["spec"]["ports"]:
        if sp["targetPort"] not in ports and sp["targetPort"] not in ports.values():
            p(f"Service port {sp['name']} targets {sp['targetPort']}, not a gateway port")
    sm = one(objects, "ServiceMonitor", "client-telemetry")
    if not matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})):
        p("ServiceMonitor does not select the gateway Service")
    svc_ports = {sp["name"] for sp in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in svc_ports or ep.get("path", "/metrics") != "/metrics" or ep.get("port") != "admin":
            p(f"ServiceMonitor endpoint {ep} is not the admin port's /metrics")
    job = svc["metadata"].get("labels", {}).get(sm["spec"].get("jobLabel", ""), svc["metadata"]["name"])
    if job != contract.job:
        p(f"Prometheus job would be {job!r}, the contract says {contract.job!r}")
    for npol in by_kind(objects, "NetworkPolicy"):
        sel = npol["spec"]["podSelector"].get("matchLabels", {})
        pods = [(w["spec"]["template"]["spec"], w["spec"]["template"]["metadata"]["labels"])
                for w in by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")]
        names = {cp.get("name") for spec_, labels in pods if matches(sel, labels)
                 for c in spec_["containers"] for cp in c.get("ports", [])}
        if not names:
            p(f"NetworkPolicy {npol['metadata']['name']} selects no pod")
        for rule in npol["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if isinstance(port.get("port"), str) and port["port"] not in names:
                    p(f"NetworkPolicy {npol['metadata']['name']} opens port {port['port']!r}, which its pods do not name")
    # Redis demo and every other workload: hardened too.
    for sts in by_kind(objects, "StatefulSet"):
        for c in sts["spec"]["template"]["spec"]["containers"]:
            problems += [f"{target}: {x}" for x in hardened(f"{sts['metadata']['name']}/{c['name']}",
                                                             sts["spec"]["template"]["spec"], c)]
    # The single sources, shipped as-is.
    rule = one(objects, "PrometheusRule")
    if rule["spec"]["groups"] != yaml.safe_load(ALERTS.read_text())["groups"]:
        p("PrometheusRule groups differ from deploy/observability/alerts.yaml")
    dash = one(objects, "ConfigMap", "client-telemetry-dashboard")
    if dash.get("data", {}).get("client-telemetry.json") != DASHBOARD.read_text():
        p("dashboard ConfigMap is not deploy/observability/dashboard.json")
    if dash["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
        p("dashboard ConfigMap lacks the grafana_dashboard label the Grafana sidecar watches")
    rules_cm = one(objects, "ConfigMap", "client-telemetry-alert-rules")
    if rules_cm.get("data", {}).get("client-telemetry.rules.yaml") != ALERTS.read_text():
        p("alert-rules ConfigMap is not deploy/observability/alerts.yaml")
    return problems


@check("kubernetes: probes, shutdown budget, HPA, PDB, selectors, hardening, single sources")
def _k8s_invariants():
    problems = []
    for target, objects in rendered().items():
        try:
            problems += gateway_invariants(target, objects)
        except Failed as f:
            problems += f.problems
    overlay = rendered()["overlays/example"]
    if not all(o["metadata"].get("namespace") == "client-telemetry" for o in overlay if o["kind"] != "Namespace"):
        problems.append("overlays/example: not every object is in its namespace")
    env = configmap_env(overlay, one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    if not env.get("CLIENT_TELEMETRY_TRUSTED_PROXIES"):
        problems.append("overlays/example: no CLIENT_TELEMETRY_TRUSTED_PROXIES: behind an ingress every client "
                        "would share the ingress controller's address and limit")
    comp = rendered()["overlays/example + components/hpa-request-rate"]
    metrics = one(comp, "HorizontalPodAutoscaler")["spec"]["metrics"]
    if not any(m["type"] == "Pods" for m in metrics):
        problems.append("components/hpa-request-rate adds no Pods metric to the HPA")
    require(problems)


OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
SECRET_NAME = "client-telemetry-secrets"
# REGISTRY/NAME:<version>-<git sha>, @sha256:<digest>, or both.
UNIQUE_IMAGE = re.compile(r"^[\w.\-/:]+/[\w.\-]+(?=[:@])(?::\d+\.\d+\.\d+-[0-9a-f]{7,40})?(?:@sha256:[0-9a-f]{64})?$")


def env_file(path: Path) -> dict[str, str]:
    return dict(l.split("=", 1) for l in path.read_text().splitlines() if l.strip() and not l.startswith("#"))


def render_variant(files: dict[str, str]) -> list[dict]:
    """Render kustomizations written next to the example overlay (so its relative paths hold):
    files maps a path relative to a scratch directory to its text; the scratch root is rendered."""
    tmp = Path(tempfile.mkdtemp(prefix=".check-", dir=OVERLAY.parent))
    try:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        return kustomize(tmp)
    finally:
        shutil.rmtree(tmp)


def example_copy(site: dict[str, str]) -> dict[str, str]:
    """The example overlay's files, site.env replaced by `site`."""
    files = {f.name: f.read_text() for f in OVERLAY.iterdir() if f.is_file()}
    files["site.env"] = "".join(f"{k}={v}\n" for k, v in site.items())
    return files


def site_problems(objects: list[dict], site: dict[str, str], what: str) -> list[str]:
    """Each site.env value landed where it belongs in the rendered objects."""
    problems = []
    p = lambda msg: problems.append(f"{what}: {msg}")  # noqa: E731
    npol = one(objects, "NetworkPolicy", "client-telemetry")
    dep = one(objects, "Deployment", "client-telemetry")
    ports = {cp["name"] for c in dep["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}

    def admitted(port):
        names = set()
        for rule in npol["spec"]["ingress"]:
            if port in {x.get("port") for x in rule.get("ports", [])}:
                for peer in rule.get("from", [{}]):
                    sel = peer.get("namespaceSelector")
                    if sel is None:
                        names.add("*")
                        continue
                    names |= {sel.get("matchLabels", {}).get("kubernetes.io/metadata.name")} - {None}
                    for e in sel.get("matchExpressions", []):
                        if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "In":
                            names |= set(e["values"])
        return names
    assert {"http", "admin"} <= ports
    if admitted("admin") != {site["PROMETHEUS_NAMESPACE"]}:
        p(f"NetworkPolicy admits scrapes from {sorted(admitted('admin'))}, not the overlay's Prometheus namespace "
          f"{site['PROMETHEUS_NAMESPACE']!r}")
    if admitted("http") != {site["INGRESS_NAMESPACE"]}:
        p(f"NetworkPolicy admits ingest from {sorted(admitted('http'))}, not the overlay's ingress namespace "
          f"{site['INGRESS_NAMESPACE']!r}")
    ing = one(objects, "Ingress", "client-telemetry")
    if [r["host"] for r in ing["spec"]["rules"]] != [site["HOST"]] or \
            [h for t in ing["spec"]["tls"] for h in t["hosts"]] != [site["HOST"]]:
        p(f"Ingress hosts are not the overlay's HOST {site['HOST']!r}")
    if [t["secretName"] for t in ing["spec"]["tls"]] != [site["TLS_SECRET"]]:
        p("Ingress TLS Secret is not the overlay's TLS_SECRET")
    if ing["metadata"].get("annotations", {}).get("cert-manager.io/cluster-issuer") != site["CLUSTER_ISSUER"]:
        p("Ingress has no cert-manager issuer from the overlay: nothing would create its TLS Secret")
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/") and \
                obj["metadata"].get("labels", {}).get("release") != site["PROMETHEUS_RELEASE"]:
            p(f"{obj['kind']} lacks release={site['PROMETHEUS_RELEASE']}")
    for r in alert_rules(one(objects, "PrometheusRule")["spec"]):
        if not r["annotations"]["runbook_url"].startswith(site["RUNBOOK_BASE"] + "#"):
            p(f"{r['alert']}: runbook_url {r['annotations']['runbook_url']!r} is not under RUNBOOK_BASE")
    text = yaml.safe_dump_all(objects)
    for leftover in ("SITE-SPECIFIC", "site-specific"):
        if leftover in text:
            p(f"a {leftover} placeholder survives in the rendered output")
    if by_kind(objects, "ConfigMap", "site"):
        p("the site ConfigMap would be applied (it is local-config)")
    return problems


def secret_used(objects: list[dict]) -> tuple[list[str], dict[str, str]]:
    """The Secret names the gateway pods read, and the settings they get from them."""
    gw = one(objects, "Deployment", "client-telemetry")["spec"]["template"]["spec"]["containers"][0]
    names = [src["secretRef"]["name"] for src in gw.get("envFrom", []) if "secretRef" in src]
    values = {}
    for name in names:
        for sec in by_kind(objects, "Secret", name):
            values.update({k: base64.b64decode(v).decode() for k, v in sec.get("data", {}).items()})
            values.update(sec.get("stringData", {}))
    return names, values


@check("kubernetes: bring-your-own Secret, site values set in the overlay only, unique image, demo Redis locked")
def _k8s_site():
    problems = []
    overlay = rendered()["overlays/example"]
    base = rendered()["base"]
    site = env_file(OVERLAY / "site.env")
    problems += site_problems(overlay, site, "overlays/example")
    # Change every site value: each lands (one place, not a copy that happens to match the base).
    probe = {k: ("obs-probe" if k.endswith("NAMESPACE") else "probe.example.net" if k == "HOST"
                 else "https://runbooks.example.net/ct.md" if k == "RUNBOOK_BASE" else f"probe-{k.lower()}")
             for k in site}
    problems += site_problems(render_variant(example_copy(probe)), probe, "example overlay with every site.env value changed")
    # The base marks what is site-specific and sets no site's values.
    netpol_text = (DEPLOY / "k8s" / "base" / "networkpolicy.yaml").read_text()
    if netpol_text.count("# SITE-SPECIFIC") < 3:
        problems.append("base/networkpolicy.yaml does not mark both namespaces SITE-SPECIFIC")
    base_image = one(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    if base_image != "client-telemetry":
        problems.append(f"base sets the image {base_image!r}: registry and tag are the overlay's")
    if by_kind(base, "Ingress"):
        problems.append("base has an Ingress: hostnames and TLS are the overlay's")
    # Build identity: one tag per build (or a digest), so a new build rolls the pods.
    gw = one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if not UNIQUE_IMAGE.match(gw["image"]):
        problems.append(f"overlays/example image {gw['image']!r} is neither REGISTRY/NAME:<version>-<git sha> nor @sha256:<digest>")
    release = run(["bash", str(ROOT / "scripts" / "release-image.sh"), "registry.example.com/ct/client-telemetry"])
    tagged = re.search(r"-t (\S+) ", release.stdout)
    if release.returncode != 0 or not tagged or not UNIQUE_IMAGE.match(tagged.group(1)):
        problems.append(f"scripts/release-image.sh does not print a unique tag: {release.stdout}{release.stderr}")
    elif "kustomize edit set image client-telemetry=" + tagged.group(1) + "@" not in release.stdout:
        problems.append("scripts/release-image.sh does not pin the overlay to the tag and its digest")
    if gw.get("imagePullPolicy") not in ("IfNotPresent", "Always"):
        problems.append(f"imagePullPolicy {gw.get('imagePullPolicy')!r}")
    # Bring your own Secret: the pods read the Secret literally named client-telemetry-secrets.
    names, _ = secret_used(overlay)
    if names != [SECRET_NAME] or len(by_kind(overlay, "Secret", SECRET_NAME)) != 1:
        problems.append(f"overlays/example: the pods read Secrets {names}, not {SECRET_NAME!r} (a generated hash "
                        "suffix would make an overlay's own Secret of that name ignored)")
    dep = one(overlay, "Deployment")
    if dep["metadata"].get("annotations", {}).get("secret.reloader.stakater.com/reload") != SECRET_NAME:
        problems.append("the Deployment has no Reloader annotation for its Secret: a Secret change would not roll the pods")
    byo_url = "rediss://:byo-password@redis.example.internal:6380/0"
    ex = os.path.relpath(OVERLAY, OVERLAY.parent / ".check-x")
    byo_secret = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                 "metadata": {"name": SECRET_NAME}, "stringData": {"CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL": byo_url}})
    delete = ("$patch: delete\napiVersion: v1\nkind: Secret\nmetadata:\n  name: " + SECRET_NAME + "\n")
    variants = {
        "secretGenerator behavior: replace": {"kustomization.yaml": yaml.safe_dump({
            "resources": [ex],
            "secretGenerator": [{"name": SECRET_NAME, "behavior": "replace",
                                 "literals": [f"CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL={byo_url}"]}]})},
        "the generated Secret deleted, the overlay's own Secret resource (as an ExternalSecret would create it)": {
            "without/kustomization.yaml": yaml.safe_dump({"resources": [os.path.join("..", ex)], "patches": [{"patch": delete}]}),
            "secret.yaml": byo_secret,
            "kustomization.yaml": yaml.safe_dump({"resources": ["without", "secret.yaml"]})},
    }
    for how, files in variants.items():
        objects = render_variant(files)
        names, values = secret_used(objects)
        if names != [SECRET_NAME] or values.get("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL") != byo_url:
            problems.append(f"bring-your-own Secret ({how}): pods read {names} with "
                            f"CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL={values.get('CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL')!r}, not the overlay's")
    # Demo Redis: password (the gateway's URL carries the Redis's own), protected mode, no silent eviction.
    _, values = secret_used(overlay)
    sts = one(overlay, "StatefulSet", "client-telemetry-redis")
    redis = sts["spec"]["template"]["spec"]["containers"][0]
    args = redis.get("args", [])
    opt = lambda name: args[args.index(name) + 1] if name in args else None  # noqa: E731
    pw_ref = next((e["valueFrom"]["secretKeyRef"] for e in redis.get("env", []) if e["name"] == "REDIS_PASSWORD"), None)
    if opt("--requirepass") != "$(REDIS_PASSWORD)" or not pw_ref:
        problems.append("demo Redis has no password from a Secret")
    else:
        password = base64.b64decode(one(overlay, "Secret", pw_ref["name"])["data"][pw_ref["key"]]).decode()
        m = re.match(r"rediss?://(?:[^:@/]*):([^@/]+)@", values.get("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", ""))
        if not m or m.group(1) != password:
            problems.append("the gateway's CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL does not carry the demo Redis's password")
    if opt("--protected-mode") != "yes":
        problems.append("demo Redis runs with protected mode off")
    if opt("--maxmemory-policy") != "noeviction":
        problems.append(f"demo Redis maxmemory-policy {opt('--maxmemory-policy')!r} evicts limiter counters silently")
    # Optional request-rate HPA: accepted requests only, a target sized from measured capacity.
    comp = rendered()["overlays/example + components/hpa-request-rate"]
    pods = [m_["pods"] for m_ in one(comp, "HorizontalPodAutoscaler")["spec"]["metrics"] if m_["type"] == "Pods"]
    readme = (DEPLOY / "k8s" / "components" / "hpa-request-rate" / "README.md").read_text()
    for pm in pods:
        name = pm["metric"]["name"]
        if f'as: "{name}"' not in readme or 'status=~"2.."' not in readme:
            problems.append(f"components/hpa-request-rate: {name} is not the README's adapter rule over 2xx answers only")
        if not 1000 <= float(pm["target"]["averageValue"]) <= 8000:
            problems.append(f"components/hpa-request-rate: target {pm['target']['averageValue']} req/s per pod is "
                            "not sized from the measured capacity (docs/operations.md)")
    require(problems)


# --------------------------------------------------------------------------------------------
# Compose.
# --------------------------------------------------------------------------------------------

@check("compose: mounts exist, single sources mounted, LB trusted alone, every replica scraped; promtool, nginx -t")
def _compose():
    contract = Contract()
    compose = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    services = compose["services"]
    problems = []
    mounts: dict[str, list[tuple[Path, str]]] = {}
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src, dst = (vol["source"], vol["target"]) if isinstance(vol, dict) else vol.split(":")[:2]
            if src.startswith(".") or src.startswith("/"):
                path = (COMPOSE_DIR / src).resolve()
                if not path.exists():
                    problems.append(f"{name}: mounts {src}, which does not exist")
                mounts.setdefault(name, []).append((path, dst))
        build = svc.get("build")
        if build:
            ctx = (COMPOSE_DIR / (build if isinstance(build, str) else build.get("context", "."))).resolve()
            dockerfile = ctx / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            if not dockerfile.exists():
                problems.append(f"{name}: build context has no {dockerfile.name}")
    mounted = lambda svc, path: any(src == path.resolve() for src, _ in mounts.get(svc, []))  # noqa: E731
    if not mounted("prometheus", ALERTS):
        problems.append("prometheus does not mount deploy/observability/alerts.yaml")
    if not mounted("grafana", DASHBOARD):
        problems.append("grafana does not mount deploy/observability/dashboard.json")
    gateways = sorted(n for n, s in services.items() if s.get("image", "").startswith("client-telemetry"))
    if len(gateways) < 3:
        problems.append(f"{len(gateways)} gateway replicas, want 3")
    lb = services.get("nginx", {})
    lb_ips = {net.get("ipv4_address") for net in (lb.get("networks") or {}).values() if isinstance(net, dict)}
    lb_ips.discard(None)
    if len(lb_ips) != 1:
        problems.append("nginx has no single fixed address for the gateways to trust")
    for g in gateways:
        env = services[g].get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for name in env:
            if not contract.env_known(name):
                problems.append(f"{g}: setting {name} is not a current setting of docs/configuration.md")
        if env.get("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND") != "redis":
            problems.append(f"{g}: not on the Redis backend")
        if lb_ips and env.get("CLIENT_TELEMETRY_TRUSTED_PROXIES") != f"{next(iter(lb_ips))}/32":
            problems.append(f"{g}: trusts {env.get('CLIENT_TELEMETRY_TRUSTED_PROXIES')!r}, not only the load balancer")
        if not env.get("OTEL_COLLECTOR_ENDPOINT", "").startswith("http://otel-collector:4318"):
            problems.append(f"{g}: does not forward to the otel-collector service")
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    job = jobs.get(contract.job)
    if not job:
        problems.append(f"prometheus.yml has no job {contract.job!r}")
    else:
        targets = {t for sc in job.get("static_configs", []) for t in sc["targets"]}
        if targets != {f"{g}:8081" for g in gateways}:
            problems.append(f"prometheus scrapes {sorted(targets)}, not every gateway's admin port")
    nginx_conf = (COMPOSE_DIR / "nginx.conf").read_text()
    # nginx re-resolves the gateways (a recreated container has a new address): Docker's DNS as
    # resolver, and proxy_pass through a variable naming an alias every gateway, and only they, carry.
    if not re.search(r"^\s*resolver\s+127\.0\.0\.11\b[^;]*valid=", nginx_conf, re.M):
        problems.append("nginx has no resolver 127.0.0.11 with valid=: recreated gateways would not be found")
    sets = dict(re.findall(r"^\s*set\s+\$(\w+)\s+(\S+?);", nginx_conf, re.M))
    proxied = re.findall(r"^\s*proxy_pass\s+http://\$(\w+):8080;", nginx_conf, re.M)
    aliases = {g: set((services[g].get("networks") or {}).get("backend", {}).get("aliases", [])) for g in gateways}
    if len(proxied) != 1 or proxied[0] not in sets:
        problems.append("nginx does not proxy_pass through a variable (resolved at run time)")
    else:
        alias = sets[proxied[0]]
        others = [n for n, svc in services.items() if n not in gateways and isinstance(svc.get("networks"), dict)
                  and alias in (svc["networks"].get("backend") or {}).get("aliases", [])]
        if not all(alias in a for a in aliases.values()) or others:
            problems.append(f"nginx proxies to {alias!r}, which is not an alias of exactly the gateways {gateways}")
    # Idle upstream connections must close on nginx's side first (else a reused connection the
    # gateway just closed becomes a 502 on a POST, which nginx does not retry).
    # The default from the generated settings reference (docs/configuration.md).
    keep_default = re.search(r"^\| `CLIENT_TELEMETRY_KEEP_ALIVE_MS` \| `(\d+)`", (ROOT / "docs" / "configuration.md").read_text(), re.M)
    for g in gateways:
        env = services[g].get("environment", {})
        keep_ms = int(env.get("CLIENT_TELEMETRY_KEEP_ALIVE_MS") or (keep_default.group(1) if keep_default else 5000))
        for block in re.findall(r"upstream\s+\w+\s*\{([^}]*)\}", nginx_conf):
            if re.search(r"^\s*keepalive\s+\d+", block, re.M):
                t = re.search(r"^\s*keepalive_timeout\s+(\d+)(ms|s)?;", block, re.M)
                nginx_ms = int(t.group(1)) * (1 if t and t.group(2) == "ms" else 1000) if t else 60000
                if nginx_ms >= keep_ms:
                    problems.append(f"nginx keeps idle upstream connections {nginx_ms} ms, {g} closes them after {keep_ms} ms")
    # The demo Redis has a password and does not evict silently; the gateways' URL carries it.
    redis_cmd = services.get("redis", {}).get("command", [])
    ropt = lambda name: redis_cmd[redis_cmd.index(name) + 1] if name in redis_cmd else None  # noqa: E731
    if not ropt("--requirepass") or ropt("--protected-mode") != "yes" or ropt("--maxmemory-policy") != "noeviction":
        problems.append("compose redis: no password, protected mode off, or an eviction policy that weakens the limit silently")
    for g in gateways:
        url = services[g].get("environment", {}).get("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "")
        if ropt("--requirepass") and f":{ropt('--requirepass')}@" not in url:
            problems.append(f"{g}: CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL does not carry the redis password")
    if not re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr\s*;", nginx_conf):
        problems.append("nginx does not set X-Forwarded-For to the client address")
    # promtool on the real config, with the container paths pointed at the repo's files.
    with tempfile.TemporaryDirectory() as tmp:
        prom_copy = copy.deepcopy(prom)
        prom_copy["rule_files"] = [str(ALERTS)]
        (Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(prom_copy))
        p = run(["promtool", "check", "config", str(Path(tmp) / "prometheus.yml")])
        if p.returncode != 0:
            problems.append(f"promtool check config: {p.stdout}{p.stderr}")
        # nginx -t: service names resolve only inside compose, so point them at loopback.
        conf = re.sub(r"\b(gateway-\d+):8080\b", "127.0.0.1:8080", nginx_conf)
        conf = conf.replace("/var/run/nginx.pid", f"{tmp}/nginx.pid")
        (Path(tmp) / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        p = run([nginx, "-t", "-q", "-p", tmp, "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"])
        if p.returncode != 0:
            problems.append(f"nginx -t: {p.stderr.strip()}")
    otel = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    for pipeline, spec in otel.get("service", {}).get("pipelines", {}).items():
        for part in ("receivers", "processors", "exporters"):
            for comp in spec.get(part, []):
                if comp not in (otel.get(part) or {}):
                    problems.append(f"otel-collector pipeline {pipeline} uses undefined {part[:-1]} {comp}")
    if "logs" not in otel.get("service", {}).get("pipelines", {}):
        problems.append("otel-collector has no logs pipeline")
    if "debug" not in (otel.get("exporters") or {}):
        problems.append("otel-collector has no debug exporter")
    require(problems)


# --------------------------------------------------------------------------------------------
# Dockerfile.
# --------------------------------------------------------------------------------------------

def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        out.append((neg, line.lstrip("!").strip("/")))
    return out


def ignored(rel: str, patterns) -> bool:
    result = False
    for neg, pat in patterns:
        parts = rel.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) or fnmatch.fnmatch("/".join(parts[:i]), pat.replace("**/", ""))
                  for i in range(1, len(parts) + 1))
        if hit:
            result = not neg
    return result


@check("Dockerfile: BuildKit parser; multi-stage, non-root, no HEALTHCHECK, exec entrypoint, ports, COPY sources")
def _dockerfile():
    import dockerfile  # noqa: PLC0415

    cmds = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    problems = []
    stages: list[list] = []
    for c in cmds:
        if c.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(c)
    if len(stages) < 2:
        problems.append("not a multi-stage build")
    final = stages[-1] if stages else []
    users = [c.value[0] for c in final if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("final stage does not run as a non-root USER")
    if any(c.cmd == "HEALTHCHECK" for c in cmds):
        problems.append("HEALTHCHECK present (orchestrators probe /healthz and /readyz)")
    exposed = {v.split("/")[0] for c in final if c.cmd == "EXPOSE" for v in c.value}
    if not {"8080", "8081"} <= exposed:
        problems.append(f"final stage exposes {sorted(exposed)}, not 8080 and 8081")
    entry = [c for c in final if c.cmd == "ENTRYPOINT"]
    if not entry or not entry[-1].json:
        problems.append("no exec-form ENTRYPOINT (the runtime image has no shell)")
    if not any(c.cmd == "RUN" and "cargo build" in c.original and "--release" in c.original and "--locked" in c.original
               for c in cmds):
        problems.append("no `cargo build --release --locked`")
    patterns = dockerignore_patterns()
    for c in cmds:
        if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags):
            for src in c.value[:-1]:
                rel = src.strip("./") or "."
                if rel == ".":
                    continue
                if not (ROOT / rel).exists():
                    problems.append(f"COPY {src}: not in the build context")
                elif ignored(rel, patterns):
                    problems.append(f"COPY {src}: excluded by .dockerignore")
    # What the build reads besides src/: files embedded with include_str!/include_bytes!.
    copied = [src.strip("./") for c in cmds if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
              for src in c.value[:-1]]
    for rs in (ROOT / "src").rglob("*.rs"):
        for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', rs.read_text()):
            rel = os.path.relpath((rs.parent / inc).resolve(), ROOT)
            if not any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in copied):
                problems.append(f"{rs.relative_to(ROOT)} embeds {rel}, which no COPY brings into the build")
            elif ignored(rel, patterns):
                problems.append(f"{rs.relative_to(ROOT)} embeds {rel}, which .dockerignore excludes")
    for needed in ("target", ".git", "client/node_modules"):
        if not ignored(needed, patterns):
            problems.append(f".dockerignore does not exclude {needed}")
    require(problems)


# --------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    if argv[1:2] == ["sync-rules"]:
        PROMETHEUS_RULE.write_text(render_prometheus_rule())
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
        return 0
    if argv[1:2] != ["all"]:
        print(__doc__)
        return 2
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            note = fn()
            passed += 1
            print(f"ok    {name}" + (f" ({note})" if note else ""))
        except Failed as f:
            failed += 1
            print(f"FAIL  {name}")
            for problem in f.problems:
                print(f"        - {problem}")
        except Exception:  # a crash is a failure too, with its trace
            failed += 1
            print(f"FAIL  {name}\n" + "".join("        " + l for l in traceback.format_exc().splitlines(True)))
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
