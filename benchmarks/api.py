"""REST API latency under load: p50/p99 of GET /v1/deployments/{id} and throughput with
100 concurrent clients on loopback, with the service idle and while a 500-node simulated
deployment is submitted, planned and applied by the same server's workers.

    python benchmarks/api.py [--clients 100] [--seconds 10] [--nodes 500] [--rate R] [--json]

Every phase also measures references under the same load: every 10th request of each client
is ``GET /health`` (a database query, no token), every 10th (offset by 5) ``GET /version``
(the framework alone); the ratios target/reference are printed beside the absolute numbers
(the machine is shared: compare ratios), with the API process's CPU time per request. The
load generator runs in its own process (``--load``: raw asyncio HTTP/1.1 keep-alive
connections, no HTTP library) and its CPU use is reported, as is the server's (API process
and worker process apart). Target: p99 under 50 ms while busy. Printed, never asserted."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 50.0
TERMINAL = ("deployed", "failed")
# Every 10th request of a client goes to /health (a database query, no token), every 10th
# (offset by 5) to /version (the framework alone): references measured under the same load.
REFERENCES = {0: ("health", "/health"), 5: ("version", "/version")}
REFERENCE_EVERY = 10
KINDS = ("target", "health", "version")

# -- the load generator (``--load``, its own process) -----------------------------------------
# One raw asyncio HTTP/1.1 keep-alive connection per client, GET after GET (or paced at --rate
# requests per second per client); some requests go to the references. It prints "ready" once
# every client is connected, runs until a line arrives on stdin (or --seconds pass), then prints
# its samples [start (system-wide monotonic clock), latency s, kind, status], wall time and own
# CPU time.

def _request(host: str, path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\n\r\n").encode("ascii")


async def _read_response(reader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if length is not None:
        await reader.readexactly(length)
    while chunked:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        chunked = size > 0
    return int(head[9:12])


async def _client(address, requests: dict, samples: list, stop, ready, rate: float) -> None:
    import asyncio
    import random

    reader, writer = await asyncio.open_connection(*address)
    ready.release()
    count = random.randrange(REFERENCE_EVERY)
    due = time.monotonic() + (random.random() / rate if rate else 0)
    try:
        while not stop.is_set():
            count += 1
            kind = REFERENCES.get(count % REFERENCE_EVERY, ("target",))[0]
            if rate:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += 1 / rate
            start = time.monotonic()
            writer.write(requests[kind])
            status = await _read_response(reader)
            samples.append((start, time.monotonic() - start, kind, status))
    finally:
        writer.close()


async def _load(args, token: str) -> dict:
    import asyncio
    import resource
    from urllib.parse import urlparse

    url = urlparse(args.url)
    requests = {"target": _request(url.netloc, args.path, token),
                **{kind: _request(url.netloc, path, token) for kind, path in REFERENCES.values()}}
    samples: list = []
    stop, ready = asyncio.Event(), asyncio.Semaphore(0)
    tasks = [asyncio.create_task(_client((url.hostname, url.port), requests, samples, stop,
                                         ready, args.rate)) for _ in range(args.clients)]
    for _ in range(args.clients):
        await ready.acquire()
    print("ready", flush=True)
    began = time.monotonic()
    stdin = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.wait([stdin], timeout=args.seconds)
    stop.set()
    wall = time.monotonic() - began
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"samples": samples, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "connection_errors": [repr(o) for o in outcomes if isinstance(o, BaseException)][:5]}


def load_main(argv) -> int:
    import asyncio

    parser = argparse.ArgumentParser(description="the load generator")
    for name in ("--url", "--token-file", "--path"):
        parser.add_argument(name, required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=0)
    args = parser.parse_args(argv)
    token = Path(args.token_file).read_text().strip()
    try:  # uvloop when installed: the generator's own CPU per request is about halved
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    json.dump(run(_load(args, token)), sys.stdout)
    print(flush=True)
    os._exit(0)  # the stdin reader thread may still be blocked


# -- the server's CPU, from /proc --------------------------------------------------------------

def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu(pid: int) -> dict:
    """CPU seconds of the API processes (the server and, with --api-workers, the processes
    it spawned) and of the worker process, so far."""
    from tests.integration.api_server import children

    workers = {c: "orchestrator.api.workers" in cmd for c, cmd in children(pid).items()}
    return {"api": _cpu_s(pid) + sum(_cpu_s(c) for c, w in workers.items() if not w),
            "workers": sum(_cpu_s(c) for c, w in workers.items() if w)}


# -- one phase: the load process against the server --------------------------------------------

def _start_load(url: str, token_file: str, path: str, clients: int, seconds: float,
                rate: float):
    process = subprocess.Popen(
        [sys.executable, __file__, "--load", "--url", url, "--token-file", token_file,
         "--path", path, "--clients", str(clients), "--seconds", str(seconds),
         "--rate", str(rate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise RuntimeError(f"the load generator did not start: {line!r}")
    return process


def _finish_load(process) -> dict:
    out, _ = process.communicate("stop\n", timeout=120)
    return json.loads(out)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _stats(samples, since: float, until: float) -> dict:
    window = [s for s in samples if since <= s[0] <= until]
    result = {"window_s": until - since}
    for kind in KINDS:
        latencies = sorted(s[1] for s in window if s[2] == kind)
        if not latencies:
            result[kind] = None
            continue
        result[kind] = {"requests": len(latencies),
                        "errors": sum(1 for s in window if s[2] == kind and s[3] != 200),
                        "p50_ms": 1000 * statistics.median(latencies),
                        "p99_ms": 1000 * _percentile(latencies, 0.99),
                        "max_ms": 1000 * latencies[-1],
                        "throughput_rps": len(latencies) / max(until - since, 1e-9)}
    for kind in KINDS[1:]:
        if result["target"] and result[kind]:
            result[f"p50_ratio_{kind}"] = result["target"]["p50_ms"] / result[kind]["p50_ms"]
            result[f"p99_ratio_{kind}"] = result["target"]["p99_ms"] / result[kind]["p99_ms"]
    result["requests"] = len(window)
    return result


def _phase(server, token_file: str, path: str, clients: int, seconds: float,
           during=None, rate: float = 0) -> dict:
    """Run the load; ``during()`` (if given) runs meanwhile and returns the window (start,
    end) the statistics cover; otherwise the whole run does."""
    cpu_before = _server_cpu(server.process.pid)
    load = _start_load(server.url, token_file, path, clients,
                       seconds if during is None else 3600, rate)
    began = time.monotonic()
    extra = {}
    try:
        if during is None:
            time.sleep(seconds)
            window = (began, time.monotonic())
        else:
            window, extra = during()
    finally:
        result = _finish_load(load)
    cpu_after = _server_cpu(server.process.pid)
    stats = _stats(result["samples"], *window)
    stats.update(extra)
    stats["load_cpu_s"] = result["cpu_s"]
    stats["load_wall_s"] = result["wall_s"]
    stats["server_cpu_s"] = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    # Whole-run CPU over whole-run requests (the load ran a little longer than the window).
    total = max(len(result["samples"]), 1)
    stats["api_cpu_ms_per_request"] = 1000 * stats["server_cpu_s"]["api"] / total
    stats["connection_errors"] = result["connection_errors"]
    return stats


def _big_deployment(api, support, es, nodes: int, timeout_s: float, name: str):
    def during():
        time.sleep(0.5)  # the load is established first
        start = time.monotonic()
        big = api.post("/v1/deployments", json={
            "name": name, "template": support.template_text(es.cluster(workers=nodes - 1))})
        assert big.status_code == 202, big.text
        accepted = time.monotonic()
        data = {"status": "?"}
        while time.monotonic() - start < timeout_s:
            data = api.get(f"/v1/deployments/{big.json()['id']}").json()
            if data["status"] in TERMINAL and data["pending_work"] == 0:
                break
            time.sleep(0.2)
        end = time.monotonic()
        return (start, end), {"big_status": data["status"], "submit_s": accepted - start,
                              "big_status_reason": data.get("status_reason")}
    return during


# -- the whole run -----------------------------------------------------------------------------

def _phases(args, server, api, support, es, token_file: str, path: str) -> dict:
    phases = {}
    print("measuring one client ...", file=sys.stderr)
    phases["single"] = _phase(server, token_file, path, 1, min(args.seconds, 3))
    runs = [("", 0.0)] + ([(f"-paced{args.rate:g}", args.rate)] if args.rate else [])
    for suffix, rate in runs:
        print(f"measuring {args.clients} clients{suffix}, idle ...", file=sys.stderr)
        phases[f"idle{suffix}"] = _phase(server, token_file, path, args.clients, args.seconds,
                                         rate=rate)
        print(f"measuring {args.clients} clients{suffix} while a {args.nodes}-node deployment "
              "is submitted, planned and applied ...", file=sys.stderr)
        phases[f"busy{suffix}"] = _phase(
            server, token_file, path, args.clients, args.seconds,
            _big_deployment(api, support, es, args.nodes, args.busy_timeout, f"big{suffix}"),
            rate=rate)
    return phases


def _server_stack() -> str:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {loop}+{http}"


def measure(args) -> dict:
    from tests import engine_support as es
    from tests.fakes.oidc_issuer import OIDCIssuer
    from tests.integration import api_server as support

    with tempfile.TemporaryDirectory(prefix="bench-api-") as folder, OIDCIssuer() as issuer:
        tmp = Path(folder)
        sites = es.write_sites(tmp, es.site("sim", tmp, latency={"boot": 0.5, "create": 0.02}))
        server = support.start_server(tmp, db=f"sqlite:///{tmp / 'state.db'}", sites=sites,
                                      issuer=issuer.url, workers=2, extra_env=args.env,
                                      api_workers=args.api_workers)
        token_file = tmp / "token"
        token_file.write_text(issuer.token("bench", expires_in=3600))
        try:
            api = support.client(server, token_file.read_text())
            small = api.post("/v1/deployments", json={"name": "target",
                                                      "template": support.template_text()})
            target = small.json()["id"]
            support.wait_for(api, target)
            phases = _phases(args, server, api, support, es, str(token_file),
                             f"/v1/deployments/{target}")
        finally:
            server.stop()
    busy = phases["busy"]["target"]
    return {"clients": args.clients, "seconds": args.seconds, "nodes": args.nodes,
            "rate": args.rate, "api_workers": args.api_workers, "server": _server_stack(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "phases": phases,
            "target_p99_ms": TARGET_P99_MS,
            "target_met": busy is not None and busy["p99_ms"] < TARGET_P99_MS
            and busy["errors"] == 0}


def _report_phase(label: str, data: dict, clients: int) -> None:
    target = data["target"]
    print(f"{label:12} {clients:3} clients {data['window_s']:5.1f} s  GET deployment  p50 "
          f"{target['p50_ms']:7.1f} ms  p99 {target['p99_ms']:7.1f} ms  "
          f"{target['throughput_rps']:5.0f} req/s  ({target['requests']} requests, "
          f"{target['errors']} errors)")
    for kind, path in REFERENCES.values():
        if data[kind]:
            print(f"{'':36}{path:15} p50 {data[kind]['p50_ms']:7.1f} ms  p99 "
                  f"{data[kind]['p99_ms']:7.1f} ms  deployment/{kind}: p50 "
                  f"{data[f'p50_ratio_{kind}']:.2f}  p99 {data[f'p99_ratio_{kind}']:.2f}")
    window = max(data["load_wall_s"], 1e-9)
    cpu = data["server_cpu_s"]
    print(f"{'':36}CPU cores: load generator {data['load_cpu_s'] / window:.2f}, API process(es) "
          f"{cpu['api'] / window:.2f} ({data['api_cpu_ms_per_request']:.2f} ms per request), "
          f"worker process {cpu['workers'] / window:.2f}")
    if data.get("connection_errors"):
        print(f"{'':36}connection errors: {data['connection_errors']}")
    if "big_status" in data:
        reason = f": {data['big_status_reason']}" if data.get("big_status_reason") else ""
        print(f"{'':36}the big deployment was submitted in {data['submit_s']:.2f} s, ran "
              f"{data['window_s']:.1f} s and ended '{data['big_status']}'{reason[:200]}")


def report(result: dict) -> None:
    print(f"{result['server']}, {result.get('api_workers', 1)} API process(es), "
          f"{result['cpus']} CPUs, load average before the run "
          f"{result['load_average'][0]:.1f}; clients back to back unless 'paced' (requests per "
          "second per client)")
    for label, data in result["phases"].items():
        _report_phase(label, data, 1 if label == "single" else result["clients"])
    busy, idle = result["phases"]["busy"], result["phases"]["idle"]
    print(f"busy/idle p99 ratio {busy['target']['p99_ms'] / idle['target']['p99_ms']:.2f}; "
          f"target p99 < {TARGET_P99_MS:.0f} ms while busy ({result['clients']} clients back "
          f"to back): {'met' if result['target_met'] else 'NOT met'}")


def main() -> int:
    if "--load" in sys.argv:
        return load_main([a for a in sys.argv[1:] if a != "--load"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10, help="length of the idle phase")
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--busy-timeout", type=float, default=300)
    parser.add_argument("--rate", type=float, default=0, help="also measure with every client "
                        "paced at RATE requests per second (an idle and a busy phase more)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the server (repeatable)")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes of the "
                        "server (orchestrator serve --api-workers)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
