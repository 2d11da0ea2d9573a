"""OpenStack benchmark: wall time and API calls to deploy N servers on a real (local)
OpenStack, ours beside the Infrastructure Manager's OpenStack connector.

    python benchmarks/openstack.py [--sizes 20,50] [--with-im] [--im-venv DIR] [--json]

The local OpenStack of tests/e2e/openstack/ is used: the one running in
$ORCHESTRATOR_OPENSTACK_DIR, else one started for this run in a temporary directory
(about 4.5 minutes) and stopped at the end. For each N:

* ours: plan + apply of one compute node with ``scalable.count: N`` (m1.tiny, Ubuntu
  image, the deployment's own network, key pair and security group) through the engine,
  until every server is ACTIVE with an address; then delete, until nothing is left;
* IM (``--with-im``): the Infrastructure Manager 2.0 REST service, started from its own
  virtual environment (``--im-venv``, default $IM_VENV or a new one under a temporary
  directory, made with ``pip install im==2.0.0``), given a RADL with N VMs on the same
  project, image and a private network, without contextualisation; timed until every VM
  is ``running``, then destroyed.

API calls are counted on the client side the same way for both: every HTTP request the
process sends through ``requests`` (openstacksdk/keystoneauth and libcloud both use it),
Keystone token requests included. Ratios are IM / ours (above 1: we are faster or make
fewer calls). Servers on Nova's fake virt driver become ACTIVE in seconds, so the times
measure the orchestrators and the control plane, not a hypervisor.
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

RADL = """network private (outbound = 'no' and provider_id = '%(network)s')
system node (
  cpu.count >= 1 and memory.size >= 512m and disk.0.free_size >= 1g and
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
        with open(path, "w") as handle:
            json.dump(api_calls(), handle)


atexit.register(_dump)
'''


def _counter(workdir: Path):
    """The request counter, installed in this process (the same code IM's launcher runs)."""
    path = workdir / "api_counter.py"
    path.write_text(COUNTER)
    sys.path.insert(0, str(workdir))
    import api_counter  # noqa: E402  (written just above)
    return api_counter


def ours(cloud, workdir: Path, n: int, counter) -> dict:
    import yaml

    from tests import engine_support as es

    run = workdir / f"ours-{n}"
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
    return {"ok": bool(ok and deleted.ok), "deploy_s": deploy_s, "delete_s": delete_s,
            "deploy_calls": sum(deploy_calls.values()), "calls_by_port": deploy_calls,
            "delete_calls": sum(counter.api_calls().values()),
            "failed": applied.run.failed}


IM_LAUNCHER = r"""
import sys
sys.path.insert(0, sys.argv[3])
import api_counter  # counts this process's HTTP requests, written at exit
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


def im(cloud, workdir: Path, n: int, venv: Path, network: str, image: str) -> dict:
    import signal
    import socket
    import urllib.request

    run = workdir / f"im-{n}"
    run.mkdir()
    (run / "launch_im.py").write_text(IM_LAUNCHER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls_file = run / "calls.json"
    log = open(run / "im.out", "w")
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
        start = time.perf_counter()
        call("DELETE", f"/infrastructures/{inf}")
        delete_s = time.perf_counter() - start
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
    calls = json.loads(calls_file.read_text()) if calls_file.exists() else {}
    return {"ok": running == n, "deploy_s": deploy_s, "delete_s": delete_s,
            "vms_running": running, "calls_total": sum(calls.values()), "calls_by_port": calls}


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
    results: dict = {"sizes": sizes, "ours": {}, "im": {}}
    try:
        for n in sizes:
            print(f"ours: {n} servers ...", file=sys.stderr)
            try:
                results["ours"][n] = ours(cloud, workdir, n, counter)
            except Exception as exc:  # noqa: BLE001  (reported; the other sizes still run)
                results["ours"][n] = {"ok": False, "failed": f"{type(exc).__name__}: {exc}",
                                      "deploy_s": float("nan"), "deploy_calls": 0,
                                      "delete_s": float("nan")}
        if args.with_im:
            venv = im_venv(args.im_venv, workdir)
            network, image = im_network(cloud)
            for n in sizes:
                print(f"IM: {n} VMs ...", file=sys.stderr)
                try:
                    results["im"][n] = im(cloud, workdir, n, venv, network, image)
                except Exception as exc:  # noqa: BLE001  (reported, ours still printed)
                    results["im"][n] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        cloud.stop()
    report(results, args.json)
    return 0 if all(r["ok"] for r in results["ours"].values()) else 2


def report(results: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2, default=str))
        return
    print(f"{'N':>4} {'ours deploy s':>14} {'calls':>6} {'delete s':>9} "
          f"{'IM deploy s':>12} {'calls':>6} {'time IM/ours':>13} {'calls IM/ours':>14}")
    for n in results["sizes"]:
        mine = results["ours"][n]
        theirs = results["im"].get(n) or {}
        line = (f"{n:>4} {mine['deploy_s']:>14.1f} {mine['deploy_calls']:>6} "
                f"{mine['delete_s']:>9.1f}")
        if theirs.get("deploy_s") is not None:
            line += (f" {theirs['deploy_s']:>12.1f} {theirs['calls_total']:>6} "
                     f"{theirs['deploy_s'] / mine['deploy_s']:>13.2f} "
                     f"{theirs['calls_total'] / max(1, mine['deploy_calls']):>14.2f}")
            if not theirs.get("ok"):
                line += f"  (IM: {theirs.get('vms_running')} of {n} running)"
        elif theirs:
            line += f"  IM failed: {theirs.get('error')}"
        print(line + ("" if mine["ok"] else "  OURS FAILED: " + str(mine["failed"])))


if __name__ == "__main__":
    sys.exit(main())
