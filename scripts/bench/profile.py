#!/usr/bin/env python3
"""Where an event's cost goes: instructions per event by stage, counted by callgrind.

The release gateway runs under `valgrind --tool=callgrind` with instrumentation off; once it listens,
it is switched on, a fixed load is sent (examples/loadgen, the benchmark's body), and the
profile is dumped before shutdown, so start-up and shutdown are not counted. Instruction counts are
deterministic to a fraction of a percent: unlike wall-clock figures on this shared machine, two
builds compare reliably (`--compare <binary>`). Syscalls are counted separately by `strace -c -f`
over the same load (`--syscalls`), since callgrind counts only user-space instructions.

  python3 scripts/bench/profile.py [--requests 400] [--otlp] [--compare BINARY] [--syscalls]

Needs valgrind and the release build (`cargo build --release --bins --examples`).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the benchmark's body, ports and sink)

# Stage: inclusive cost of these functions (demangled, without hashes), summed; a function named
# in an earlier stage is not counted again in a later one (callgrind's inclusive figures of nested
# calls would count twice otherwise). "other" is what is left: HTTP parsing and answers, the async
# runtime, the handler's own glue, the allocator outside the stages.
STAGES = [
    ("limiter (memory)", [r"<client_telemetry::ratelimit::\w+::\w+ as client_telemetry::ratelimit::RateLimiter>::",
                          r"client_telemetry::ingest::attempt::attempt"]),
    ("content checks", [r"client_telemetry::ingest::body::", r"client_telemetry::ingest::access::"]),
    ("parse + validate", [r"client_telemetry::ingest::formats::\w+::decode"]),
    ("scrub", [r"client_telemetry::scrub::Scrubber::scrub_event", r"client_telemetry::scrub::Scrubber::scrub_origin"]),
    ("log line format", [r"client_telemetry::ingest::event_log::write", r"client_telemetry::observability::logging::rfc3339_now"]),
    ("log write (writer thread)", [r"client_telemetry::observability::logging::write_lines"]),
    ("OTLP mapping + encoding (worker)", [r"client_telemetry::forward::Forwarder::enqueue"]),
    ("OTLP batching, framing, export", [r"client_telemetry::forward::exporter::", r"awc::"]),
    ("metrics", [r"client_telemetry::ingest::metrics::", r"prometheus::"]),
]


def annotate(out_file):
    """{function: inclusive Ir} and the total, from callgrind_annotate."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                          capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"^([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))
    functions = {}
    for line in text.splitlines():
        # "<Ir> (<share>)  <file>:<function> [<object>]"; a function shows once per source file its
        # inlined parts come from, each inclusive of the nested ones: the largest is the function's
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+[^:\s]*:(.+?)(?: \[[^\]]*\])?$", line)
        if m:
            name = m.group(2).strip()
            functions[name] = max(functions.get(name, 0), int(m.group(1).replace(",", "")))
    return total, functions


def stage_costs(total, functions):
    costs, taken = {}, set()
    for stage, patterns in STAGES:
        # the outermost matching function of each pattern: its inclusive cost covers the nested ones
        cost = 0
        for pattern in patterns:
            matches = {f: c for f, c in functions.items() if re.match(pattern, f) and f not in taken}
            if matches:
                top = max(matches, key=matches.get)
                cost += matches[top]
                taken.update(matches)
        costs[stage] = cost
    costs["other (HTTP, runtime, handler glue)"] = total - sum(costs.values())
    costs["total"] = total
    return costs


def gateway(args, services):
    """A free port and the environment of the one-worker gateway both measurements run."""
    port = run.free_port()
    env = {"PATH": os.environ["PATH"], "CLIENT_TELEMETRY_BIND": f"127.0.0.1:{port}",
           "CLIENT_TELEMETRY_TRUSTED_PROXIES": "127.0.0.1", "CLIENT_TELEMETRY_WORKERS": "1", **run.NO_LIMIT}
    if args.otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{services['sink'].port}"
    return port, env


def loadgen(port, body):
    """The load both measurements send: the benchmark's body on 4 connections (add --rate, --duration)."""
    return [str(run.RELEASE / "examples" / "loadgen"), "--url", f"http://127.0.0.1:{port}/api/client-telemetry",
            "--body", str(body), "--connections", "4"]


def profile(binary, args, tmp, services):
    port, env = gateway(args, services)
    out_file = str(Path(tmp) / f"callgrind.{Path(binary).name}.{port}")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
                             str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_port(port, timeout=120)
        body = run.body_file(args.events, tmp)
        load = loadgen(port, body)
        # warm-up, uncounted: first-touch allocations, lazy statics, connections
        subprocess.run([*load, "--rate", "50", "--duration", "1"], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        rate = 100
        result = subprocess.run([*load, "--rate", str(rate), "--duration", str(args.requests / rate)],
                                check=True, capture_output=True, text=True).stdout
        summary = run.wrk_summary(result)
        time.sleep(2)  # the log writer and the exporter finish their part of the load
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    if os.environ.get("PROFILE_KEEP"):
        subprocess.run(["cp", *Path(tmp).glob("callgrind.*"), os.environ["PROFILE_KEEP"]])
    dumps = sorted(Path(tmp).glob(Path(out_file).name + ".*"))
    dump = next((str(d) for d in dumps if d.suffix == ".1"), str(dumps[0]) if dumps else out_file)
    ok = summary["requests"] - summary["errors_status"]
    if summary["errors_status"] or summary["errors_connect"]:
        print(f"warning: {summary['errors_status']} non-2xx, {summary['errors_connect']} connection errors", file=sys.stderr)
    total, functions = annotate(dump)
    return stage_costs(total, functions), ok * args.events


def syscalls(binary, args, tmp, services):
    """Syscalls per request by strace -c -f over the same load, without valgrind."""
    port, env = gateway(args, services)
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_port(port)
        body = run.body_file(args.events, tmp)
        trace_file = Path(tmp) / "strace.txt"
        strace = subprocess.Popen(["strace", "-c", "-f", "-o", str(trace_file), "-p", str(proc.pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)
        out = subprocess.run([*loadgen(port, body), "--rate", "1000", "--duration", str(max(args.requests / 1000, 1))],
                             check=True, capture_output=True, text=True).stdout
        time.sleep(1)
        strace.send_signal(signal.SIGINT)
        strace.wait()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    requests = run.wrk_summary(out)["requests"]
    counts = {}
    for line in trace_file.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return {name: n / requests for name, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400, help="requests counted (after a warm-up)")
    p.add_argument("--events", type=int, default=20, help="events per request")
    p.add_argument("--otlp", action="store_true", help="forwarding on (protobuf), to the benchmark's sink")
    p.add_argument("--compare", type=Path, metavar="BINARY", help="another build: both profiled, side by side")
    p.add_argument("--syscalls", action="store_true", help="also count syscalls per request (strace -c -f)")
    args = p.parse_args()
    binaries = [run.RELEASE / "client-telemetry"] + ([args.compare.resolve()] if args.compare else [])
    services = {"sink": run.Sink()} if args.otlp else {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = [profile(b, args, tmp, services) for b in binaries]
            calls = syscalls(binaries[0], args, tmp, services) if args.syscalls else None
    finally:
        for svc in services.values():
            svc.stop()
    names = ["this build"] + (["--compare"] if args.compare else [])
    header = "| stage | " + " | ".join(f"{n}: instructions / event" for n in names) + \
             (" | change |" if args.compare else " | share |")
    print(f"\n{args.requests} requests of {args.events} events, forwarding {'on (protobuf)' if args.otlp else 'off'}; "
          f"callgrind instructions (all threads) per event\n")
    print(header)
    print("|---|" + "---|" * (len(names) + 1))
    for stage in results[0][0]:
        cells = [f"{costs[stage] / events:,.0f}" for costs, events in results]
        if args.compare:
            new, old = (results[0][0][stage] / results[0][1], results[1][0][stage] / results[1][1])
            extra = f"{(new / old - 1) * 100:+.1f} %" if old else "-"
        else:
            extra = f"{results[0][0][stage] / results[0][0]['total'] * 100:.1f} %"
        print(f"| {stage} | " + " | ".join(cells) + f" | {extra} |")
    if calls:
        print("\nsyscalls per request (strace -c -f, same load at 1,000 req/s, not under valgrind):\n")
        print("| syscall | per request |\n|---|---|")
        for name, n in calls.items():
            if n >= 0.01:
                print(f"| {name} | {n:.2f} |")


if __name__ == "__main__":
    main()
