"""Contextualisation benchmark: Ansible configure of N real containers (local site).

    python benchmarks/contextualize.py [--sizes 1,4,8] [--repeat 3] [--json] [--strict]

Every measurement runs in a fresh subprocess (``python benchmarks/contextualize.py
--worker SPEC``) with its own temporary SQLite state, sites.yaml (``provider: local``,
podman containers from the node image) and XDG_DATA_HOME (the deployment's SSH key,
logs, Ansible data). For each N the worker

a) engine: plans and applies ONE ``orchestrator.nodes.Compute`` with ``scalable.count:
   N`` plus a ``tosca.nodes.SoftwareComponent`` hosted on it whose Standard.configure is
   ``playbooks/base.yml`` (os_users: [alice, sudo]). It times the whole apply and the
   configure phase: from the moment the last server is up (the last ``resource-active``
   event) to the last ``configured`` event (the Orchestrator's on_event callback, stamped
   with ``time.perf_counter()``), i.e. contextualisation without the containers' start-up;
   also reported, the span from the first ``configuring`` event, which includes waiting for
   the last container;
b) ansible alone: on the same (already configured) containers, ONE
   ``orchestrator.contextualize.runner.run_operation(playbooks/base.yml, <N hosts>)`` (one
   ansible-runner run, forks >= N) with a fresh fact cache, then the same call again;
then deletes the deployment (always: ``orch.delete(name, force=True)``) and checks that
no podman container with the deployment's label is left.

Times are medians over ``--repeat`` runs. Target: time(max N)/time(1) <= 2 for the
configure phase (engine) and for one run over N hosts (ansible alone); printed as
PASS/MISS lines. Exit 0 whatever they say unless ``--strict`` (then 1 on a MISS); 2
when a run fails (a failed apply or operation, a container left behind, a crash).
See benchmarks/README.md, section "Contextualisation".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TARGET_RATIO = 2.0  # time(8)/time(1), each method
EXECUTOR = {"max_workers": 64, "configure_concurrency": 64, "poll_interval_s": 0.2}
OS_USERS = [{"name": "alice", "sudo": True}]


def template(n: int) -> str:
    return f"""tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orchestrator/all.yaml]
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 1}}}}
        scalable: {{properties: {{count: {n}}}}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: vm}}]
      interfaces:
        Standard:
          configure:
            implementation: playbooks/base.yml
            inputs:
              os_users: [{{name: alice, sudo: true}}]
"""


def _containers(deployment_id: str) -> list:
    out = subprocess.run(["podman", "ps", "-a", "--filter",
                          f"label=orchestrator-deployment={deployment_id}", "--format",
                          "json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


# --------------------------------------------------------------------------- worker

def _worker(spec: dict) -> int:
    n, workdir = spec["n"], spec["workdir"]
    os.environ["XDG_DATA_HOME"] = os.path.join(workdir, "data")
    sys.path.insert(0, ROOT)
    import yaml

    from orchestrator import service
    from orchestrator.contextualize.runner import run_operation
    from orchestrator.engine import ExecutorOptions
    import ansible_runner  # noqa: F401  (imported up front, not inside the timed region)

    sites = os.path.join(workdir, "sites.yaml")
    with open(sites, "w") as fh:
        yaml.safe_dump({"sites": [{"name": "local", "provider": "local"}]}, fh)
    path = os.path.join(workdir, "t.yaml")
    with open(path, "w") as fh:
        fh.write(template(n))
    events: list = []
    orch = service.orchestrator(db=f"sqlite:///{os.path.join(workdir, 'state.db')}",
                                sites=sites,
                                on_event=lambda e: events.append((e.get("kind"),
                                                                  time.perf_counter())))
    orch.options = ExecutorOptions(**EXECUTOR)
    name = f"ctx{n}"
    result: dict = {"n": n}
    deployment_id = None
    try:
        planned = orch.plan(path, name=name).plan
        t0 = time.perf_counter()
        applied = orch.apply(planned)
        result["apply_s"] = time.perf_counter() - t0
        deployment_id = applied.deployment.id
        if not applied.run.ok:
            raise RuntimeError(f"apply failed: {applied.run.failed}")
        starts = [t for k, t in events if k == "configuring"]
        ends = [t for k, t in events if k == "configured"]
        up = [t for k, t in events if k == "resource-active"]
        if len(starts) != n or len(ends) != n or len(up) < n:
            raise RuntimeError(f"expected {n} configuring/configured/resource-active events, "
                               f"got {len(starts)}/{len(ends)}/{len(up)}")
        result["configure_s"] = max(ends) - max(up)
        result["configure_span_s"] = max(ends) - min(starts)

        # b) the same playbook, once, over all N containers
        key = os.path.join(os.environ["XDG_DATA_HOME"], "orchestrator", "deployments",
                           deployment_id, "ssh", "id_ed25519")
        hosts = []
        for row in sorted(orch.store.resources(deployment_id), key=lambda r: r.index):
            if row.kind != "compute":
                continue
            a = row.attributes or {}
            hosts.append({"node": "vm", "index": row.index,
                          "ansible_host": a.get("ssh_host") or a.get("public_address")
                          or a.get("private_address"),
                          "ansible_port": a.get("ssh_port") or 22,
                          "ansible_user": a.get("ssh_user") or "root",
                          "ansible_ssh_private_key_file": key,
                          "private_address": a.get("private_address"),
                          "ssh_options": a.get("ssh_options") or {}})
        if len(hosts) != n:
            raise RuntimeError(f"expected {n} compute rows, got {len(hosts)}")
        extravars = {"os_users": OS_USERS,
                     "cluster_hosts": [{"name": f"vm-{h['index']}",
                                        "address": h["private_address"]} for h in hosts]}
        data_dir = os.path.join(workdir, "ansible")  # fresh fact cache for the first run
        playbook = os.path.join(ROOT, "playbooks", "base.yml")
        for label in ("ansible_first_s", "ansible_second_s"):
            t0 = time.perf_counter()
            run_operation(playbook, hosts, data_dir=data_dir, extravars=extravars,
                          node="vm")
            result[label] = time.perf_counter() - t0
    except Exception as exc:  # reported, and the deployment still goes
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            if deployment_id is None:
                found = [r for r in orch.list() if r.name == name]
                deployment_id = found[0].id if found else None
            if deployment_id is not None or any(r.name == name for r in orch.list()):
                orch.delete(name, force=True)
            if deployment_id is not None:
                left = _containers(deployment_id)
                if left:
                    result.setdefault("error", f"{len(left)} container(s) left after delete")
        except Exception as exc:
            result.setdefault("error", f"delete: {type(exc).__name__}: {exc}")
    print(json.dumps(result))
    return 0 if "error" not in result else 1


# --------------------------------------------------------------------------- driver

def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_worker(n: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"ctxbench-{n}-") as workdir:
        spec = json.dumps({"n": n, "workdir": workdir})
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                   spec], cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"n": n, "error": f"timeout after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"n": n, "error": f"worker rc {proc.returncode}: {proc.stderr[-1500:]}"}
    return json.loads(lines[-1])


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


KEYS = ("configure_s", "configure_span_s", "apply_s", "ansible_first_s", "ansible_second_s")


def measure(sizes, repeat, timeout) -> list[dict]:
    """Rounds of one run per size (1, 4, 8, 1, 4, 8...), so that a change in the machine's
    load during the benchmark weighs on every size alike."""
    runs: dict[int, list] = {n: [] for n in sizes}
    for i in range(repeat):
        for n in sizes:
            _progress(f"N={n} run {i + 1}/{repeat}")
            run = _run_worker(n, timeout)
            if "error" in run:
                raise RuntimeError(f"N={n}: {run['error']}")
            _progress("  " + ", ".join(f"{k} {run[k]:.2f}" for k in KEYS))
            runs[n].append(run)
    return [{"n": n, "runs": runs[n], **{k: _median([r.get(k) for r in runs[n]]) for k in KEYS}}
            for n in sizes]


def evaluate(rows) -> list[dict]:
    by_n = {r["n"]: r for r in rows}
    big = max(by_n)
    checks = []
    for label, key in (("engine configure phase", "configure_s"),
                       ("ansible alone, one run over N hosts", "ansible_first_s")):
        ratio = None
        if 1 in by_n and big > 1:
            ratio = by_n[big][key] / by_n[1][key]
        checks.append({"name": f"{label}: time({big})/time(1)", "key": key,
                       "value": ratio, "target": TARGET_RATIO,
                       "status": "SKIP" if ratio is None else
                       ("PASS" if ratio <= TARGET_RATIO else "MISS")})
    return checks


def print_report(data) -> None:
    print("Contextualisation: playbooks/base.yml on N containers (local site), "
          f"medians of {data['repeat']} runs, seconds")
    print(f"{'N':>4}  {'configure phase':>15}  {'span':>6}  {'apply':>8}  {'ansible 1st':>11}  "
          f"{'ansible 2nd':>11}")
    for r in data["rows"]:
        print(f"{r['n']:>4}  {r['configure_s']:>15.2f}  {r['configure_span_s']:>6.2f}  "
              f"{r['apply_s']:>8.2f}  {r['ansible_first_s']:>11.2f}  "
              f"{r['ansible_second_s']:>11.2f}")
    print("  configure phase: engine, last server up ('resource-active') to last 'configured' "
          "event (the instances share one ansible-runner run per operation); span: from the "
          "first 'configuring' event (includes waiting for the last container to start)")
    print("  ansible 1st/2nd: run_operation once over all N hosts (forks >= N), fresh "
          "then warm fact cache")
    print("\nTargets:")
    for c in data["targets"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        print(f"  {c['status']}  {c['name']}: {value} (target <= {c['target']:g})")


def main(argv=None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return _worker(json.loads(argv[1]))
    parser = argparse.ArgumentParser(description="Benchmark Ansible contextualisation on "
                                     "the local (podman) site")
    parser.add_argument("--sizes", default="1,4,8", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per worker run (past it is an error)")
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    try:
        rows = measure(sizes, args.repeat, args.timeout)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = {"sizes": sizes, "repeat": args.repeat, "rows": rows, "targets": evaluate(rows),
            "python": sys.version.split()[0], "loadavg": list(os.getloadavg())}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_report(data)
    missed = any(c["status"] == "MISS" for c in data["targets"])
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
