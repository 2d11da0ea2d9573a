"""OpenStack benchmark: wall time and API calls to deploy N servers on a real (local)
OpenStack, ours beside the Infrastructure Manager's OpenStack connector.

    python benchmarks/openstack.py [--sizes 20,50] [--repeat R] [--with-im] [--im-venv DIR]
                                   [--json]

The local OpenStack of tests/e2e/openstack/ is used: the one running in
$ORCHESTRATOR_OPENSTACK_DIR, else one started for this run in a temporary directory
(about 4.5 minutes) and stopped at the end. For each N:

* ours: plan + apply of one compute node with ``scalable.count: N`` (m1.tiny, Ubuntu
  image, the deployment's own network, key pair and security group) through the engine,
  until every server is ACTIVE with an address; then delete, until nothing is left;
* IM (``--with-im``): the Infrastructure Manager 2.0 REST service, started from its own
  virtual environment (``--im-venv``, default $IM_VENV or a new one under a temporary
  directory, made with ``pip install im==2.0.0``), given a RADL with N VMs on the same
  project, image, flavor (m1.tiny) and a private network, without contextualisation,
  launching up to 50 VMs at once as ours does; timed until every VM is ``running``, then
  destroyed.

API calls are counted on the client side the same way for both: every HTTP request the
process sends through ``requests`` (openstacksdk/keystoneauth and libcloud both use it),
Keystone token requests included, separately for deploy and delete. Each size runs
``--repeat`` times per side (sides alternating); the report gives medians, with the range,
of the successful runs, and ratios IM / ours of the medians (above 1: we are faster or
make fewer calls) only where both sides succeeded. A failed run is reported as such and
makes the exit status 2. Servers on Nova's fake virt driver become ACTIVE in seconds, so
the times measure the orchestrators and the control plane, not a hypervisor.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file's own directory first on sys.path would shadow the openstack SDK
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

TEMPLATE = """tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orchestrator/all.yaml]
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
        os: {properties: {distribution: ubuntu, version: "22.04"}}
        scalable: {properties: {count: %d}}
"""

# IM's OpenStack connector picks the cheapest flavor with vcpus >= cpu.count, ram >=
# memory.size and disk >= disks.free_size (5 GB when the RADL gives neither that nor
# disk.0.size, which m1.tiny's 1 GB disk fails; disk.0.size would also make it boot from a
# new volume) whose name is instance_type: m1.tiny, as ours.
RADL = """network private (outbound = 'no' and provider_id = '%(network)s')
system node (
  cpu.count >= 1 and memory.size >= 512m and disks.free_size >= 1g and
  instance_type = 'm1.tiny' and
  net_interface.0.connection = 'private' and
  disk.0.image.url = 'ost://127.0.0.1/%(image)s' and
  disk.0.os.name = 'linux' and disk.0.os.credentials.username = 'root'
)
deploy node %(count)d
contextualize ()
"""

COUNTER = r'''
import atexit, collections, json, os, threading
import requests.adapters

_counts = collections.Counter()
_lock = threading.Lock()
_send = requests.adapters.HTTPAdapter.send


def _counting(self, request, *args, **kwargs):
    from urllib.parse import urlsplit
    parts = urlsplit(request.url)
    with _lock:
        _counts[f"{request.method} :{parts.port}"] += 1
    return _send(self, request, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _counting


def api_calls():
    with _lock:
        return dict(_counts)


def reset():
    with _lock:
        _counts.clear()


def _dump():
    path = os.environ.get("OPENSTACK_CALLS_FILE")
    if path:
        with open(path + ".tmp", "w") as handle:
            json.dump(api_calls(), handle)
        os.replace(path + ".tmp", path)


def _dump_often():
    # IM is stopped with a signal, which skips atexit: the counts are kept current instead
    import time
    while True:
        time.sleep(0.2)
        _dump()


atexit.register(_dump)
if os.environ.get("OPENSTACK_CALLS_FILE"):
    threading.Thread(target=_dump_often, daemon=True).start()
'''


def _counter(workdir: Path):
    """The request counter, installed in this process (the same code IM's launcher runs)."""
    path = workdir / "api_counter.py"
    path.write_text(COUNTER)
    sys.path.insert(0, str(workdir))
    import api_counter  # written just above
    return api_counter


def ours(cloud, workdir: Path, n: int, counter, attempt: int = 1) -> dict:
    import yaml

    from tests import engine_support as es

    run = workdir / f"ours-{n}-{attempt}"
    run.mkdir()
    sites = run / "sites.yaml"
    sites.write_text(yaml.safe_dump({"sites": [{
        "name": "bench", "provider": "openstack", "credentials": {"cloud": "orch-main"},
        "concurrency": 50, "options": {"clouds_file": str(cloud.clouds_file),
                                        "reschedule_after_s": 60}}]}))
    template = run / "template.yaml"
    template.write_text(TEMPLATE % n)
    orch = es.orchestrator(run, str(sites), poll_interval_s=0.5)
    name = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    counter.reset()
    start = time.perf_counter()
    applied = orch.apply(orch.plan(str(template), name=name).plan)
    deploy_s = time.perf_counter() - start
    deploy_calls = counter.api_calls()
    ok = applied.run.ok and sum(1 for r in orch.store.resources(applied.deployment.id)
                                if r.kind == "compute" and r.status == "active") == n
    counter.reset()
    start = time.perf_counter()
    deleted = orch.delete(name)
    delete_s = time.perf_counter() - start
    failed = dict(applied.run.failed)
    if not ok and not failed:
        failed["deploy"] = f"fewer than {n} servers active"
    if deleted is None or not deleted.ok:
        failed["delete"] = "; ".join(f"{k}: {v}" for k, v in
                                     (deleted.failed if deleted else {}).items()) or "failed"
    return {"ok": not failed, "deploy_s": deploy_s, "delete_s": delete_s,
            "deploy_calls": sum(deploy_calls.values()), "calls_by_port": deploy_calls,
            "delete_calls": sum(counter.api_calls().values()), "failed": failed}


IM_LAUNCHER = r"""
import sys
sys.path.insert(0, sys.argv[3])
import api_counter  # counts this process's HTTP requests into $OPENSTACK_CALLS_FILE
from IM.config import Config
port, work = int(sys.argv[1]), sys.argv[2]
Config.REST_ADDRESS, Config.REST_PORT = "127.0.0.1", port
Config.DATA_DB = "sqlite://" + work + "/inf.dat"
Config.LOG_FILE, Config.LOG_LEVEL = work + "/im.log", "INFO"
Config.MAX_SIMULTANEOUS_LAUNCHES = 50
from IM import im_service
sys.argv = sys.argv[:1]
im_service.config_logging()
im_service.launch_daemon()
"""


def im_venv(requested: str | None, workdir: Path) -> Path:
    venv = Path(requested or os.environ.get("IM_VENV") or workdir / "im-venv")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating IM's virtual environment in {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "im==2.0.0"], check=True,
                       timeout=900)
    return venv


def im(cloud, workdir: Path, n: int, venv: Path, network: str, image: str,
       attempt: int = 1) -> dict:
    import signal
    import socket
    import urllib.request

    run = workdir / f"im-{n}-{attempt}"
    run.mkdir()
    (run / "launch_im.py").write_text(IM_LAUNCHER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls_file = run / "calls.json"
    log = open(run / "im.out", "w")  # noqa: SIM115  (closed in the finally below)
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), str(run / "launch_im.py"), str(port), str(run),
         str(workdir)], stdout=log, stderr=subprocess.STDOUT, cwd=run,
        start_new_session=True, env={**os.environ, "OPENSTACK_CALLS_FILE": str(calls_file)})
    url = f"http://127.0.0.1:{port}"
    auth = ("id = im; type = InfrastructureManager; username = bench; password = bench\\n"
            "id = ost; type = OpenStack; host = http://127.0.0.1:5000; "
            f"username = {cloud_user()}; password = {cloud_password()}; tenant = orch-main; "
            "auth_version = 3.x_password; domain = Default")

    def call(method, path, body=None, timeout=900):
        request = urllib.request.Request(url + path, data=body, method=method, headers={
            "Authorization": auth.replace("\\n", "\n").replace("\n", "\\n"),
            "Content-Type": "text/plain", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.headers, answer.read().decode()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call("GET", "/version", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"IM did not start; see {log.name}") from None
                time.sleep(0.3)
        radl = RADL % {"network": network, "image": image, "count": n}
        start = time.perf_counter()
        headers, _ = call("POST", "/infrastructures", radl.encode())
        inf = headers.get("InfID")
        states: dict = {}
        while time.perf_counter() - start < 900:
            _, text = call("GET", f"/infrastructures/{inf}/state")
            states = (json.loads(text).get("state") or {}).get("vm_states") or {}
            if len(states) >= n and all(s in ("running", "configured", "unconfigured")
                                        for s in states.values()):
                break
            if any(s == "failed" for s in states.values()):
                break
            time.sleep(0.5)
        deploy_s = time.perf_counter() - start
        running = sum(1 for s in states.values() if s in ("running", "configured",
                                                          "unconfigured"))
        deploy_calls = _calls_of(calls_file)
        start = time.perf_counter()
        call("DELETE", f"/infrastructures/{inf}")
        delete_s = time.perf_counter() - start
        all_calls = _calls_of(calls_file)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
    if not all_calls:
        raise RuntimeError(f"IM's API calls were not counted (no {calls_file})")
    return {"ok": running == n, "deploy_s": deploy_s, "delete_s": delete_s,
            "vms_running": running, "states": sorted(set(states.values())),
            "deploy_calls": sum(deploy_calls.values()), "calls_by_port": deploy_calls,
            "delete_calls": sum(all_calls.values()) - sum(deploy_calls.values())}


def _calls_of(path: Path) -> dict:
    """IM's counts so far (its process rewrites the file every 0.2 s)."""
    time.sleep(0.5)
    return json.loads(path.read_text()) if path.exists() else {}


def cloud_user():
    from tests.e2e.openstack import harness
    return harness.USER


def cloud_password():
    from tests.e2e.openstack import harness
    return harness.USER_PASSWORD


def im_network(cloud) -> tuple[str, str]:
    """A private network for IM's VMs (IM names networks by name), and the image id."""
    conn = cloud.connection("orch-main")
    from tests.e2e.openstack import harness

    network = harness.find(conn.network.find_network, "bench-im")
    if network is None:
        network = conn.network.create_network(name="bench-im")
        conn.network.create_subnet(network_id=network.id, ip_version=4,
                                   cidr="10.99.0.0/24", name="bench-im")
    image = next(i for i in conn.image.images() if i.name == "ubuntu-22.04")
    return network.name, image.id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and side")
    parser.add_argument("--with-im", action="store_true")
    parser.add_argument("--im-venv", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    import warnings
    warnings.simplefilter("ignore")
    from tests.e2e.openstack import harness

    workdir = Path(tempfile.mkdtemp(prefix="bench-openstack-"))
    counter = _counter(workdir)
    cloud = harness.up(workdir / "cloud")
    results: dict = {"sizes": sizes, "repeat": args.repeat,
                     "ours": {n: [] for n in sizes}, "im": {n: [] for n in sizes} if
                     args.with_im else {}}
    try:
        venv = network = image = None
        if args.with_im:
            venv = im_venv(args.im_venv, workdir)
            network, image = im_network(cloud)
        for attempt in range(1, args.repeat + 1):
            for n in sizes:
                print(f"[{attempt}/{args.repeat}] ours: {n} servers ...", file=sys.stderr)
                try:
                    run = ours(cloud, workdir, n, counter, attempt)
                except Exception as exc:  # noqa: BLE001  (reported; the other runs go on)
                    run = {"ok": False, "failed": f"{type(exc).__name__}: {exc}"}
                results["ours"][n].append(run)
                _progress("ours", run)
                if not args.with_im:
                    continue
                print(f"[{attempt}/{args.repeat}] IM: {n} VMs ...", file=sys.stderr)
                try:
                    run = im(cloud, workdir, n, venv, network, image, attempt)
                except Exception as exc:  # noqa: BLE001  (reported, ours still printed)
                    run = {"ok": False, "failed": f"{type(exc).__name__}: {exc}"}
                results["im"][n].append(run)
                _progress("IM", run)
    finally:
        cloud.stop()
    report(results, args.json)
    failed = [run for side in ("ours", "im") for runs in results[side].values()
              for run in runs if not run["ok"]]
    return 2 if failed else 0


def _progress(side: str, run: dict) -> None:
    if run["ok"]:
        print(f"  {side}: deploy {run['deploy_s']:.1f} s, {run['deploy_calls']} calls; "
              f"delete {run['delete_s']:.1f} s, {run['delete_calls']} calls", file=sys.stderr)
    else:
        print(f"  {side} FAILED: {run.get('failed')}", file=sys.stderr)


def _median(values: list[float]) -> float:
    import statistics
    return statistics.median(values)


def _summary(runs: list[dict], key: str) -> str:
    """'median' or 'median (min-max)' over the successful runs."""
    values = [run[key] for run in runs if run["ok"]]
    if not values:
        return "-"
    text = f"{_median(values):.1f}" if isinstance(values[0], float) else f"{_median(values):g}"
    if len(values) > 1:
        low, high = min(values), max(values)
        text += f" ({low:.1f}-{high:.1f})" if isinstance(low, float) else f" ({low}-{high})"
    return text


def report(results: dict, as_json: bool) -> None:
    """Medians (with the range when a size ran more than once) of the successful runs;
    ratios IM / ours only where both sides succeeded; failed runs are listed."""
    if as_json:
        print(json.dumps(results, indent=2, default=str))
        return
    columns = ("deploy s", "deploy calls", "delete s", "delete calls")
    keys = ("deploy_s", "deploy_calls", "delete_s", "delete_calls")
    sides = [s for s in ("ours", "im") if results[s]]
    print(f"{'N':>4} {'side':<5} " + " ".join(f"{c:>19}" for c in columns) + "  runs ok")
    for n in results["sizes"]:
        for side in sides:
            runs = results[side][n]
            ok = sum(1 for run in runs if run["ok"])
            print(f"{n:>4} {side:<5} " + " ".join(f"{_summary(runs, k):>19}" for k in keys)
                  + f"  {ok}/{len(runs)}")
        if "im" in sides:
            mine = [r for r in results["ours"][n] if r["ok"]]
            theirs = [r for r in results["im"][n] if r["ok"]]
            if mine and theirs:
                ratios = []
                for label, k in (("time", "deploy_s"), ("calls", "deploy_calls")):
                    ratio = _median([r[k] for r in theirs]) / _median([r[k] for r in mine])
                    ratios.append(f"{label} IM/ours {ratio:.2f}")
                print(f"{n:>4} ratio " + ", ".join(ratios) + " (medians)")
            else:
                print(f"{n:>4} ratio - (no successful run on one side)")
    for side in sides:
        for n in results["sizes"]:
            for number, run in enumerate(results[side][n], 1):
                if not run["ok"]:
                    detail = run.get("failed") or f"{run.get('vms_running')} of {n} running, " \
                        f"states {run.get('states')}"
                    print(f"FAILED {side} N={n} run {number}: {detail}")


if __name__ == "__main__":
    sys.exit(main())
