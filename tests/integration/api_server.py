"""Helpers for the API tests: a real ``orchestrator serve`` in a subprocess on a free
loopback port (its output kept in a log file), a simulated site catalogue, and a client."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import engine_support as es
from tests.conftest import ROOT

SMALL = """
topology_template:
  inputs:
    db_password: {type: string, required: false}
    flavor_cpus: {type: integer, default: 1}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: {get_input: flavor_cpus}}}
        os: {properties: {distribution: ubuntu}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
  outputs:
    vm_ip: {value: {get_attribute: [vm, private_address]}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simulated_sites(tmp: Path, **options) -> str:
    options.setdefault("latency", {"boot": 0.05})
    return es.write_sites(tmp, es.site("sim", tmp, **options))


def template_text(body: str = SMALL) -> str:
    return "tosca_definitions_version: tosca_simple_yaml_1_3\nimports: [orchestrator/all.yaml]\n" \
        + body


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    env: dict = field(default_factory=dict)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def simulated_server(tmp: Path, issuer: str, **options):
    """A server on a fresh SQLite state and a simulated site, stopped afterwards (for a
    module-scoped fixture: ``yield from simulated_server(...)``)."""
    running = start_server(tmp, db=f"sqlite:///{tmp / 'state.db'}",
                           sites=simulated_sites(tmp), issuer=issuer, **options)
    yield running
    running.stop()


def start_server(tmp: Path, *, db: str, sites: str, issuer: str | list[str], name: str = "server",
                 workers: int = 2, extra_env: dict | None = None,
                 api_workers: int = 1) -> Server:
    port = free_port()
    log = tmp / f"{name}.log"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp / f"{name}-data"),
           "ORCHESTRATOR_SECRET_KEY": "Hq2y0iGMW8tqHcD7mbLwcl1UNm-Gz1yQWzsHdvAzvxk=",
           "ORCHESTRATOR_ADMIN_GROUPS": "admins", "ORCHESTRATOR_WORK_STALE_S": "30",
           "ORCHESTRATOR_CALLBACK_HOSTS": "127.0.0.1",  # the tests' loopback receivers
           "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("ORCHESTRATOR_URL", None)
    env.pop("ORCHESTRATOR_TOKEN", None)
    args = [sys.executable, "-m", "orchestrator", "--db", db, "--sites", sites, "serve",
            "--port", str(port), "--audience", "orchestrator", "--workers", str(workers),
            "--api-workers", str(api_workers)]
    for url in [issuer] if isinstance(issuer, str) else issuer:
        args += ["--issuer", url]
    handle = open(log, "w")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()
    server = Server(f"http://127.0.0.1:{port}", process, log, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"the server did not answer within 60 s:\n{server.output()}")


def children(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` (Linux /proc) and their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in pids:
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes() \
                    .replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return found


def client(server: Server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def wait_for(api: httpx.Client, deployment_id: str, statuses=("deployed", "failed"),
             timeout_s: float = 60) -> dict:
    """The deployment once it is in one of ``statuses`` with no work pending."""
    deadline = time.monotonic() + timeout_s
    data = {}
    while time.monotonic() < deadline:
        response = api.get(f"/v1/deployments/{deployment_id}")
        if response.status_code == 404 and "deleted" in statuses:
            return {"status": "deleted"}
        data = response.json()
        if data.get("status") in statuses and data.get("pending_work") == 0:
            return data
        time.sleep(0.1)
    raise AssertionError(f"deployment {deployment_id} did not reach {statuses}: {data}")
