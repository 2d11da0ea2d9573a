"""Engine benchmark: plan + apply on the simulated cloud, makespan, API calls, IM.

    python benchmarks/engine.py [--sizes 100,500] [--repeat 3] [--json] [--strict]
                                [--with-im] [--im-venv DIR] [--profile]

Every measurement runs in a fresh subprocess (``python benchmarks/engine.py --worker
SPEC``) with its own temporary SQLite state database and an in-memory simulated site
(``provider: simulated``, unlimited quotas, high concurrency). The worker imports the
modules first (reported separately as *import*), then times only the calls under test
with ``time.perf_counter()`` (wall) and ``resource.getrusage`` (user + sys CPU of the
whole process, every thread included):

a) deploy: N computes as N distinct node templates      (shape ``distinct``)
b) deploy: ONE compute node with ``scalable.count: N``   (shape ``count``)
   -> plan and apply wall/CPU times separately and together; zero latencies.
c) makespan: a 200-node, three-level topology (compute -> base software -> two apps)
   with 2 s boot and 1 s configure latency, against the critical path.
d) API calls per created instance with a 0.5 s boot (100 instances, both shapes).
e) ``--with-im``: the Infrastructure Manager (IM) with its Dummy cloud, started from a
   separate virtual environment; reference figures from the issue otherwise.

Times are medians over ``--repeat`` runs. Targets are printed as PASS/MISS lines; the
exit status is 0 whatever they say unless ``--strict`` is given (then 1 on a MISS), and
2 when a run of ours fails (a failed apply, a wrong resource count, a crash).
See benchmarks/README.md, section "Engine".
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TARGET_N = 500
TARGET_DEPLOY_S = 2.0            # plan + apply of 500 instances, each shape
TARGET_MAKESPAN_RATIO = 1.1      # apply wall time / critical path
TARGET_ESTIMATE_ERROR = 0.10     # |plan estimate - critical path| / critical path
TARGET_CALLS_PER_INSTANCE = 3.0

# (c) the makespan topology: CHAINS x (compute, base, app_a, app_b) = 200 nodes
CHAINS = 50
BOOT_S, CONFIGURE_S = 2.0, 1.0
# (d) API calls
CALLS_N, CALLS_BOOT_S = 100, 0.5
EXECUTOR = {"max_workers": 256, "configure_concurrency": 200, "poll_interval_s": 0.05}
SITE_CONCURRENCY = 1000

# IM reference figures (Infrastructure Manager 2.0, Dummy cloud), from the issue
IM_REFERENCE = {"count=500": 49.0, "distinct=100": 13.0}
IM_REFERENCE_TIMEOUT = {"distinct=500": 14 * 60.0}  # did not finish within
IM_AUTH = ("id = dummy; type = Dummy\\nid = im; type = InfrastructureManager; "
           "username = bench; password = bench")


# --------------------------------------------------------------------------- inputs

def sites_yaml(latency: dict | None = None) -> str:
    import yaml

    site = {"name": "sim", "provider": "simulated", "concurrency": SITE_CONCURRENCY,
            "flavors": [{"name": "m1.small", "cpus": 2, "memory_mib": 4096, "disk_gib": 20},
                        {"name": "m1.large", "cpus": 8, "memory_mib": 16384, "disk_gib": 80}],
            "images": [{"name": "ubuntu-22.04", "distribution": "ubuntu", "version": "22.04"}],
            "quotas": {}, "options": {"latency": dict(latency or {})}}
    return yaml.safe_dump({"sites": [site]}, sort_keys=False)


def _compute(name: str, i: int, count: int | None = None, tosca_types: bool = False) -> str:
    cpus, mem = ((1, "2 GB"), (2, "4 GB"), (4, "8 GB"))[i % 3]
    node_type = "tosca.nodes.Compute" if tosca_types else "orchestrator.nodes.Compute"
    lines = [f"    {name}:",
             f"      type: {node_type}",
             "      capabilities:",
             f"        host: {{properties: {{num_cpus: {cpus}, mem_size: {mem}}}}}",
             "        os: {properties: {type: linux, distribution: ubuntu}}"]
    if count is not None:
        if tosca_types:  # normative Scalable: what IM reads as the instance count
            lines.append(f"        scalable: {{properties: {{min_instances: 1, "
                         f"default_instances: {count}, max_instances: {count}}}}}")
        else:
            lines.append(f"        scalable: {{properties: {{count: {count}}}}}")
    return "\n".join(lines)


def deploy_template(n: int, shape: str) -> str:
    head = ("tosca_definitions_version: tosca_simple_yaml_1_3\n"
            "imports: [orchestrator/all.yaml]\n"
            f"description: engine benchmark, {n} instances ({shape})\n"
            "topology_template:\n  node_templates:\n")
    if shape == "distinct":
        body = [_compute(f"vm_{i}", i) for i in range(n)]
    else:
        body = [_compute("vm", 0, count=n)]
    return head + "\n".join(body) + "\n"


def makespan_template(chains: int = CHAINS) -> str:
    """``chains`` x (compute, base on it, two apps on it that depend on base)."""
    parts = ["tosca_definitions_version: tosca_simple_yaml_1_3",
             "imports: [orchestrator/all.yaml]",
             f"description: engine benchmark, {4 * chains} nodes in three levels",
             "topology_template:", "  node_templates:"]
    for i in range(chains):
        parts.append(_compute(f"vm_{i}", i))
        parts += [f"    base_{i}:", "      type: tosca.nodes.SoftwareComponent",
                  f"      requirements: [{{host: vm_{i}}}]"]
        for app in ("a", "b"):
            parts += [f"    app{app}_{i}:", "      type: tosca.nodes.SoftwareComponent",
                      f"      requirements: [{{host: vm_{i}}}, {{dependency: base_{i}}}]"]
    return "\n".join(parts) + "\n"


def im_template(n: int, shape: str) -> str:
    """The same deployment for IM: normative types only (IM reads TOSCA 1.0)."""
    head = ("tosca_definitions_version: tosca_simple_yaml_1_0\n"
            "topology_template:\n  node_templates:\n")
    if shape == "distinct":
        body = [_compute(f"vm_{i}", i, tosca_types=True) for i in range(n)]
    else:
        body = [_compute("vm", 0, count=n, tosca_types=True)]
    return head + "\n".join(body) + "\n"


# --------------------------------------------------------------------------- worker
# Runs in the measured subprocess; nothing of ours is imported before the clock starts.

LAZY_MODULES = ("orchestrator.lifecycle", "orchestrator.sites", "orchestrator.state",
                "orchestrator.state.store", "orchestrator.state.db", "orchestrator.plan",
                "orchestrator.placement", "orchestrator.engine.executor",
                "orchestrator.engine.outputs", "orchestrator.providers.simulated",
                "jsonschema", "alembic.command", "sqlalchemy.dialects.sqlite")

def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _maxrss_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def _engine_makespan(timings: dict) -> float | None:
    spans = [(s, e) for s, e in timings.values() if s and e]
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else None


def _worker(spec: dict) -> int:
    result: dict = {"spec": spec}
    start = time.perf_counter()
    import importlib

    from orchestrator import service
    from orchestrator.engine import ExecutorOptions
    from orchestrator.providers import simulated
    # what plan and apply import lazily (state store, SQLAlchemy, Alembic, jsonschema):
    # imports stay out of the timed region, as in benchmarks/frontend.py
    for module in LAZY_MODULES:
        importlib.import_module(module)
    result["import_s"] = time.perf_counter() - start

    orch = service.orchestrator(db=f"sqlite:///{spec['db']}", sites=spec["sites"])
    orch.options = ExecutorOptions(**EXECUTOR)
    profiler = _start_profiler(spec["profile"]) if spec.get("profile") else None
    error = None
    try:
        wall, cpu = time.perf_counter(), _cpu()
        planned = orch.plan(spec["template"], name="bench")
        result["plan_s"], result["plan_cpu_s"] = time.perf_counter() - wall, _cpu() - cpu
        wall, cpu = time.perf_counter(), _cpu()
        applied = orch.apply(planned.plan)
        result["apply_s"], result["apply_cpu_s"] = time.perf_counter() - wall, _cpu() - cpu
    finally:
        profile = _stop_profiler(profiler) if profiler else None
    result["total_s"] = result["plan_s"] + result["apply_s"]
    result["total_cpu_s"] = result["plan_cpu_s"] + result["apply_cpu_s"]
    plan = planned.plan
    result["steps"] = len(plan.steps)
    result["summary"] = plan.summary
    result["estimated_duration_s"] = plan.estimated_duration_s
    result["engine_makespan_s"] = _engine_makespan(applied.run.timings)
    site = orch.catalogue.get("sim")
    result["api_calls"] = simulated.api_calls(site)
    live = [r for r in simulated.resources(site) if r["kind"] == "compute"]
    result["instances"] = len(live)
    result["peak_rss_mb"] = _maxrss_mb()
    if not applied.run.ok:
        error = f"apply failed: {applied.run.failed}"
    elif len(live) != spec["expect_instances"]:
        error = f"expected {spec['expect_instances']} instances, the cloud has {len(live)}"
    elif plan.summary["configure"] != spec.get("expect_configure", 0):
        error = f"expected {spec.get('expect_configure', 0)} configure steps, plan has " \
                f"{plan.summary['configure']}"
    result["error"] = error
    orch.close()
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    if profile is not None:
        sys.stdout.write("\n@@PROFILE@@" + profile)
    sys.stdout.flush()
    return 0 if error is None else 3


# cProfile sees one thread; the engine runs steps in a thread pool, so every new thread
# gets its own profiler (threading.setprofile) and the stats are merged at the end.
_PROFILERS: list = []


def _start_profiler(clock: str = "wall"):
    import cProfile
    import threading

    timer = time.thread_time if clock == "cpu" else time.perf_counter

    def per_thread(frame, event, arg):
        profiler = cProfile.Profile(timer)
        _PROFILERS.append(profiler)
        sys.setprofile(None)
        profiler.enable()

    threading.setprofile(per_thread)
    main = cProfile.Profile(timer)
    main.enable()
    return main


def _stop_profiler(main, limit: int = 35) -> str:
    import io
    import pstats
    import threading

    main.disable()
    threading.setprofile(None)
    out = io.StringIO()
    stats = pstats.Stats(main, stream=out)
    for profiler in _PROFILERS:
        profiler.disable()
        stats.add(profiler)
    out.write(f"(merged: main thread + {len(_PROFILERS)} worker threads)\n")
    stats.sort_stats("cumulative").print_stats(r"orchestrator/", limit)
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# --------------------------------------------------------------------------- parent

class BenchmarkError(RuntimeError):
    """A run of ours failed: fail loudly (exit 2)."""


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _run_worker(spec: dict, timeout: float) -> dict:
    import subprocess

    if os.path.exists(spec["db"]):
        os.remove(spec["db"])  # a fresh state database for every run
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{spec['label']} took longer than {timeout:g} s") from None
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        raise BenchmarkError(f"{spec['label']}: worker crashed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
    tail = proc.stdout[marker + len("@@RESULT@@"):]
    profile = None
    if "@@PROFILE@@" in tail:
        tail, profile = tail.split("@@PROFILE@@", 1)
    result = json.loads(tail.strip())
    if result["error"]:
        raise BenchmarkError(f"{spec['label']}: {result['error']}")
    if profile is not None:
        result["profile"] = profile
    return result


def _median(values):
    from statistics import median

    return median(values)


def _summary(runs: list[dict], keys=("plan_s", "plan_cpu_s", "apply_s", "apply_cpu_s",
                                     "total_s", "total_cpu_s")) -> dict:
    out = {key: _median([r[key] for r in runs]) for key in keys}
    out["runs_total_s"] = [round(r["total_s"], 4) for r in runs]
    out["import_s"] = _median([r["import_s"] for r in runs])
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["api_calls"] = runs[-1]["api_calls"]
    out["steps"] = runs[-1]["steps"]
    out["estimated_duration_s"] = runs[-1]["estimated_duration_s"]
    return out


def _spec(label: str, template: str, sites: str, workdir: str, expect: int,
          expect_configure: int = 0) -> dict:
    return {"label": label, "template": template, "sites": sites,
            "db": os.path.join(workdir, "state.db"), "expect_instances": expect,
            "expect_configure": expect_configure}


def measure_deploy(sizes, repeat, workdir, timeout) -> list[dict]:
    sites = _write(os.path.join(workdir, "sites-zero.yaml"), sites_yaml())
    rows = []
    for n in sizes:
        for shape in ("distinct", "count"):
            template = _write(os.path.join(workdir, f"deploy-{shape}-{n}.yaml"),
                              deploy_template(n, shape))
            spec = _spec(f"deploy {shape} N={n}", template, sites, workdir, n)
            runs = []
            for i in range(repeat):
                _progress(f"{spec['label']}: run {i + 1}/{repeat}")
                runs.append(_run_worker(spec, timeout))
            rows.append({"n": n, "shape": shape, **_summary(runs)})
    return rows


def measure_makespan(repeat, workdir, timeout, chains: int = CHAINS) -> dict:
    sites = _write(os.path.join(workdir, "sites-makespan.yaml"),
                   sites_yaml({"boot": BOOT_S, "configure": CONFIGURE_S}))
    template = _write(os.path.join(workdir, "makespan.yaml"), makespan_template(chains))
    spec = _spec(f"makespan {4 * chains} nodes", template, sites, workdir, chains,
                 expect_configure=3 * chains)
    runs = []
    for i in range(repeat):
        _progress(f"{spec['label']}: run {i + 1}/{repeat}")
        runs.append(_run_worker(spec, timeout))
    row = _summary(runs)
    # the critical path from the latencies the site declares: create + boot + poll of the
    # compute, then two configure levels (base, then the apps that depend on it)
    row["nodes"] = 4 * chains
    row["critical_path_s"] = BOOT_S + 2 * CONFIGURE_S
    row["engine_makespan_s"] = _median([r["engine_makespan_s"] for r in runs])
    row["ratio"] = row["apply_s"] / row["critical_path_s"]
    row["engine_ratio"] = row["engine_makespan_s"] / row["critical_path_s"]
    est = row["estimated_duration_s"]
    row["ratio_to_estimate"] = row["apply_s"] / est if est else None
    return row


def measure_calls(repeat, workdir, timeout) -> list[dict]:
    sites = _write(os.path.join(workdir, "sites-calls.yaml"), sites_yaml({"boot": CALLS_BOOT_S}))
    rows = []
    for shape in ("distinct", "count"):
        template = _write(os.path.join(workdir, f"calls-{shape}.yaml"),
                          deploy_template(CALLS_N, shape))
        spec = _spec(f"API calls {shape} N={CALLS_N}", template, sites, workdir, CALLS_N)
        runs = []
        for i in range(repeat):
            _progress(f"{spec['label']}: run {i + 1}/{repeat}")
            runs.append(_run_worker(spec, timeout))
        totals = [sum(r["api_calls"].values()) for r in runs]
        rows.append({"shape": shape, "instances": CALLS_N, "boot_s": CALLS_BOOT_S,
                     "api_calls": runs[totals.index(max(totals))]["api_calls"],
                     "total_calls": max(totals),
                     "per_instance": max(totals) / CALLS_N})
    return rows


# --------------------------------------------------------------------------- IM

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


IM_LAUNCHER = r"""
import sys
from IM.config import Config
port, work = int(sys.argv[1]), sys.argv[2]
Config.REST_ADDRESS, Config.REST_PORT = "127.0.0.1", port
Config.DATA_DB = "sqlite://" + work + "/inf.dat"
Config.LOG_FILE, Config.LOG_LEVEL = work + "/im.log", "ERROR"
from IM import im_service  # reads Config when imported
sys.argv = sys.argv[:1]
im_service.config_logging()
im_service.launch_daemon()
"""


class IMService:
    """A fresh IM REST service on 127.0.0.1 (Dummy cloud) in its own virtual environment."""

    def __init__(self, venv: str, workdir: str):
        self.python = os.path.join(venv, "bin", "python")
        self.workdir = workdir
        self.process = None
        self.url = None

    def __enter__(self):
        import subprocess
        import urllib.request

        if not os.path.exists(self.python):
            raise RuntimeError(f"no IM virtual environment at {os.path.dirname(self.python)}"
                               " (python -m venv DIR && DIR/bin/pip install im==2.0.0)")
        os.makedirs(self.workdir, exist_ok=True)
        launcher = _write(os.path.join(self.workdir, "launch_im.py"), IM_LAUNCHER)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(self.workdir, "im.out"), "w")
        self.process = subprocess.Popen([self.python, launcher, str(port), self.workdir],
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"IM service exited with {self.process.returncode}; see "
                                   f"{self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/version", timeout=2) as answer:
                    self.version = answer.read().decode().strip()
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError("IM service did not answer within 60 s")

    def __exit__(self, *exc):
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except Exception:  # noqa: BLE001
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 timeout: float = 900.0):
        import urllib.request

        request = urllib.request.Request(self.url + path, data=body, method=method, headers={
            "Authorization": IM_AUTH, "Content-Type": "text/yaml",
            "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.headers, answer.read().decode()

    def deploy(self, template: str, timeout: float) -> dict:
        """POST the template (synchronous: returns once the VMs exist), then poll the
        state until 'configured'. Times from the start of the POST."""
        start = time.perf_counter()
        headers, _ = self._request("POST", "/infrastructures", template.encode(), timeout)
        created = time.perf_counter() - start
        inf_id = headers.get("InfID")
        state = None
        while time.perf_counter() - start < timeout:
            _, text = self._request("GET", f"/infrastructures/{inf_id}/state")
            data = json.loads(text)
            state = (data.get("state") or {}).get("state")
            if state in ("configured", "unconfigured", "failed"):
                break
            time.sleep(0.2)
        total = time.perf_counter() - start
        vms = len((json.loads(text).get("state") or {}).get("vm_states") or {})
        return {"post_s": created, "total_s": total, "state": state, "vms": vms}


def measure_im(venv, repeat, workdir, timeout, n: int = 100) -> dict:
    """IM with its Dummy cloud: count=n and n distinct nodes, a fresh service per run."""
    result = {"status": "ok", "venv": venv, "n": n, "runs": {}}
    for shape in ("count", "distinct"):
        template = im_template(n, shape)
        runs = []
        for i in range(repeat):
            _progress(f"IM {shape} N={n}: run {i + 1}/{repeat}")
            with IMService(venv, os.path.join(workdir, f"im-{shape}-{i}")) as im:
                result["version"] = im.version
                run = im.deploy(template, timeout)
            if run["state"] != "configured" or run["vms"] != n:
                raise RuntimeError(f"IM ended in state {run['state']} with {run['vms']} VMs "
                                   f"(expected configured, {n})")
            runs.append(run)
        result["runs"][f"{shape}={n}"] = {
            "total_s": _median([r["total_s"] for r in runs]),
            "post_s": _median([r["post_s"] for r in runs]),
            "runs_total_s": [round(r["total_s"], 3) for r in runs]}
    return result


# --------------------------------------------------------------------------- targets

def _ours(deploy_rows, n, shape):
    return next((r for r in deploy_rows if r["n"] == n and r["shape"] == shape), None)


def im_comparison(deploy_rows, im: dict | None) -> list[dict]:
    """Ratios IM / ours; measured ones when IM ran, the issue's reference figures always."""
    rows = []
    if im and im.get("status") == "ok":
        for key, data in im["runs"].items():
            shape, n = key.split("=")
            ours = _ours(deploy_rows, int(n), shape)
            rows.append({"case": key, "source": "measured", "im_s": data["total_s"],
                         "ours_s": ours["total_s"] if ours else None,
                         "ratio": data["total_s"] / ours["total_s"] if ours else None})
    for key, seconds in IM_REFERENCE.items():
        shape, n = key.split("=")
        ours = _ours(deploy_rows, int(n), shape)
        rows.append({"case": key, "source": "reference", "im_s": seconds,
                     "ours_s": ours["total_s"] if ours else None,
                     "ratio": seconds / ours["total_s"] if ours else None})
    for key, seconds in IM_REFERENCE_TIMEOUT.items():
        shape, n = key.split("=")
        ours = _ours(deploy_rows, int(n), shape)
        rows.append({"case": key, "source": "reference", "im_s": None, "im_at_least_s": seconds,
                     "ours_s": ours["total_s"] if ours else None,
                     "ratio_at_least": seconds / ours["total_s"] if ours else None})
    return rows


def evaluate_targets(deploy_rows, makespan, calls) -> list[dict]:
    checks = []

    def check(name, target, value, ok, note=None):
        checks.append({"name": name, "target": target, "value": value,
                       "status": "SKIP" if value is None else ("PASS" if ok else "MISS"),
                       "note": note})

    for shape in ("distinct", "count"):
        row = _ours(deploy_rows, TARGET_N, shape)
        name = f"plan+apply {TARGET_N} instances ({shape})"
        if row is None:
            check(name, f"<= {TARGET_DEPLOY_S:g} s", None, False, f"N={TARGET_N} not measured")
        else:
            check(name, f"<= {TARGET_DEPLOY_S:g} s", row["total_s"],
                  row["total_s"] <= TARGET_DEPLOY_S)
    if makespan is None:
        check("makespan / critical path", f"<= {TARGET_MAKESPAN_RATIO:g}", None, False,
              "not measured")
        check("plan estimate vs critical path", f"within {TARGET_ESTIMATE_ERROR:.0%}", None,
              False, "not measured")
    else:
        check("makespan / critical path", f"<= {TARGET_MAKESPAN_RATIO:g}", makespan["ratio"],
              makespan["ratio"] <= TARGET_MAKESPAN_RATIO,
              f"apply {makespan['apply_s']:.2f} s vs {makespan['critical_path_s']:g} s; "
              f"engine alone {makespan['engine_ratio']:.3f}")
        est, cp = makespan["estimated_duration_s"], makespan["critical_path_s"]
        error = abs(est - cp) / cp
        check("plan estimate vs critical path", f"within {TARGET_ESTIMATE_ERROR:.0%}", error,
              error <= TARGET_ESTIMATE_ERROR,
              f"estimated_duration_s {est:g} s, critical path {cp:g} s"
              + ("; the estimate is NOT a lower bound of the makespan"
                 if est > makespan["apply_s"] else ""))
    for row in calls or []:
        check(f"API calls per instance ({row['shape']})", f"<= {TARGET_CALLS_PER_INSTANCE:g}",
              row["per_instance"], row["per_instance"] <= TARGET_CALLS_PER_INSTANCE,
              f"{row['total_calls']} calls for {row['instances']} instances")
    return checks


# --------------------------------------------------------------------------- output

def _table(headers, rows) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines


def print_report(data) -> None:
    meta, deploy, makespan, calls = (data["meta"], data["deploy"], data["makespan"],
                                     data["calls"])
    print(f"Engine benchmark ({meta['python']}, {meta['cpu_count']} CPUs, repeat="
          f"{meta['repeat']}; medians; fresh process, fresh SQLite state and in-memory "
          f"simulated site per run)")
    load = meta.get("load_average") or {}
    if load.get("start") and load.get("end"):
        print(f"load average (1/5/15 min) at start {load['start']}, at end {load['end']}: "
              f"other processes on this machine slow the runs down")
    if deploy:
        print("\na/b) deploy N instances, zero latency: wall (CPU) seconds")
        rows = []
        for r in deploy:
            rows.append([str(r["n"]), r["shape"], f"{r['plan_s']:.3f} ({r['plan_cpu_s']:.3f})",
                         f"{r['apply_s']:.3f} ({r['apply_cpu_s']:.3f})",
                         f"{r['total_s']:.3f} ({r['total_cpu_s']:.3f})",
                         f"{r['total_s'] / r['n'] * 1000:.2f}", str(r["steps"]),
                         f"{r['peak_rss_mb']:.0f}", f"{r['import_s']:.2f}"])
        for line in _table(["N", "shape", "plan s (cpu)", "apply s (cpu)", "total s (cpu)",
                            "ms/inst", "steps", "RSS MB", "import s"], rows):
            print("  " + line)
        for r in deploy:
            print(f"  N={r['n']} {r['shape']}: total runs {', '.join(map(str, r['runs_total_s']))}"
                  f" s; API calls {r['api_calls']}")
    if makespan:
        m = makespan
        print(f"\nc) makespan: {m['nodes']} nodes in three levels (compute -> base -> 2 apps), "
              f"boot {BOOT_S:g} s, configure {CONFIGURE_S:g} s")
        print(f"  critical path (create+boot+poll, configure, configure): "
              f"{m['critical_path_s']:.3f} s")
        print(f"  plan estimated_duration_s:                             "
              f"{m['estimated_duration_s']:.3f} s")
        print(f"  apply wall time (makespan):                            {m['apply_s']:.3f} s"
              f"  -> {m['ratio']:.3f}x critical path"
              + (f", {m['ratio_to_estimate']:.3f}x estimate" if m["ratio_to_estimate"] else ""))
        print(f"  engine only (first step start to last step end):       "
              f"{m['engine_makespan_s']:.3f} s  -> {m['engine_ratio']:.3f}x critical path")
        print(f"  plan {m['plan_s']:.3f} s (cpu {m['plan_cpu_s']:.3f}), apply cpu "
              f"{m['apply_cpu_s']:.3f} s; runs (plan+apply) "
              f"{', '.join(map(str, m['runs_total_s']))} s")
    if calls:
        print(f"\nd) API calls, {CALLS_N} instances, boot {CALLS_BOOT_S:g} s")
        for r in calls:
            print(f"  {r['shape']:8} {r['total_calls']} calls = {r['per_instance']:.2f} per "
                  f"instance  {r['api_calls']}")
    im = data.get("im")
    print("\ne) Infrastructure Manager (IM)")
    if im is None:
        print("  IM: not run (pass --with-im)")
    elif im["status"] != "ok":
        print(f"  IM: not available ({im['reason']})")
    else:
        print(f"  IM {im.get('version', '?')} measured in this run (Dummy cloud, fresh service "
              "per run, POST /infrastructures until state 'configured'):")
        for key, r in im["runs"].items():
            print(f"    {key}: {r['total_s']:.3f} s (POST {r['post_s']:.3f} s); runs "
                  f"{', '.join(map(str, r['runs_total_s']))}")
    for c in data["im_comparison"]:
        ours = f"{c['ours_s']:.3f} s" if c["ours_s"] is not None else "not measured"
        if c["source"] == "measured":
            label = "measured in this run"
            im_text = f"{c['im_s']:.2f} s"
        else:
            label = "reference figure, not measured in this run"
            im_text = (f"{c['im_s']:g} s" if c.get("im_s") is not None
                       else f"> {c['im_at_least_s']:g} s (did not finish)")
        if c.get("ratio") is not None:
            ratio = f"{c['ratio']:.1f}x faster"
        elif c.get("ratio_at_least") is not None:
            ratio = f"> {c['ratio_at_least']:.0f}x faster"
        else:
            ratio = "-"
        print(f"  {c['case']:13} IM {im_text:28} ours {ours:14} ours {ratio}  ({label})")
    print("\nTargets:")
    for c in data["targets"]:
        value = c["value"]
        shown = "-" if value is None else f"{value:.3f}"
        note = f"  ({c['note']})" if c["note"] else ""
        print(f"  {c['status']:4}  {c['name']}: {shown} (target {c['target']}){note}")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> int:
    import argparse
    import platform
    import tempfile

    parser = argparse.ArgumentParser(description="Benchmark the deployment engine on the "
                                     "simulated cloud (and optionally IM).")
    parser.add_argument("--sizes", default="100,500",
                        help="comma-separated N for the deploy measurements (a, b)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--only", default="deploy,makespan,calls",
                        help="comma-separated subset of deploy,makespan,calls")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds before one run of ours is an error")
    parser.add_argument("--with-im", action="store_true",
                        help="also measure the Infrastructure Manager (Dummy cloud)")
    parser.add_argument("--im-venv", default=os.environ.get("IM_VENV", "/tmp/im-venv"),
                        help="virtual environment with `pip install im==2.0.0` "
                             "(default $IM_VENV or /tmp/im-venv; never the project's)")
    parser.add_argument("--im-timeout", type=float, default=900.0,
                        help="seconds one IM deployment may take")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile (all threads) the slowest deploy measurement once, "
                             "printed after the report (to stderr with --json)")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu (default): thread CPU time; wall: time each thread spends "
                             "in a function, waiting included (shows pool and lock waits; "
                             "summed over all threads)")
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        parser.error("sizes and --repeat must be positive")
    if only - {"deploy", "makespan", "calls"}:
        parser.error("--only takes deploy, makespan, calls")

    profile = None
    load_start = _loadavg()
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as workdir:
        try:
            deploy = measure_deploy(sizes, args.repeat, workdir, args.timeout) \
                if "deploy" in only else []
            makespan = measure_makespan(args.repeat, workdir, args.timeout) \
                if "makespan" in only else None
            calls = measure_calls(args.repeat, workdir, args.timeout) \
                if "calls" in only else []
            if args.profile and deploy:
                slowest = max(deploy, key=lambda r: r["total_s"])
                spec = _spec(f"profile deploy {slowest['shape']} N={slowest['n']}",
                             os.path.join(workdir, f"deploy-{slowest['shape']}-"
                                          f"{slowest['n']}.yaml"),
                             os.path.join(workdir, "sites-zero.yaml"), workdir, slowest["n"])
                spec["profile"] = args.profile_clock
                _progress(f"{spec['label']}")
                run = _run_worker(spec, args.timeout)
                profile = (f"cProfile ({args.profile_clock} clock, every thread) of deploy "
                           f"{slowest['shape']} N={slowest['n']} (plan "
                           f"{run['plan_s']:.2f} s + apply {run['apply_s']:.2f} s under the "
                           f"profiler):\n{run['profile']}")
        except BenchmarkError as exc:
            print(f"benchmark FAILED: {exc}", file=sys.stderr)
            return 2
        im = None
        if args.with_im:
            try:
                im = measure_im(args.im_venv, args.repeat, workdir, args.im_timeout)
            except Exception as exc:  # noqa: BLE001 - IM is optional: say why and go on
                im = {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}
    data = {
        "meta": {"python": f"Python {platform.python_version()}",
                 "load_average": {"start": load_start, "end": _loadavg()},
                 "platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "repeat": args.repeat, "executor": EXECUTOR,
                 "site_concurrency": SITE_CONCURRENCY},
        "deploy": deploy, "makespan": makespan, "calls": calls, "im": im,
    }
    data["im_comparison"] = im_comparison(deploy, im)
    data["targets"] = evaluate_targets(deploy, makespan, calls)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(data)
    if profile is not None:
        (sys.stderr if args.json else sys.stdout).write("\n" + profile)
    missed = any(c["status"] == "MISS" for c in data["targets"])
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(json.loads(sys.argv[2])))
    sys.exit(main())
