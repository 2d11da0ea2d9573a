"""`orchestrator serve --api-workers N`: N processes answer on one port, the background work
runs once for all of them, a killed API process is replaced, and stopping the server stops
every process it started."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support


def _api_processes(pid: int) -> set[int]:
    return {c for c, cmd in support.children(pid).items() if "spawn_main" in cmd}


def _worker_processes(pid: int) -> set[int]:
    return {c for c, cmd in support.children(pid).items() if "orchestrator.api.workers" in cmd}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def issuer():
    with OIDCIssuer() as running:
        yield running


def test_several_api_processes_share_the_port_and_one_worker_process(tmp_path, issuer):
    server = support.start_server(tmp_path, db=f"sqlite:///{tmp_path / 'state.db'}",
                                  sites=support.simulated_sites(tmp_path), issuer=issuer.url,
                                  api_workers=3)
    master = server.process.pid
    try:
        apis = _wait(lambda: len(_api_processes(master)) == 3 and _api_processes(master))
        assert len(apis) == 3, support.children(master)
        assert len(_wait(lambda: _worker_processes(master))) == 1, support.children(master)

        with support.client(server, issuer.token("alice")) as api:
            created = api.post("/v1/deployments", json={
                "name": "multi", "template": support.template_text()})
            assert created.status_code == 202, created.text
            deployment_id = created.json()["id"]
            final = support.wait_for(api, deployment_id)
            assert final["status"] == "deployed", final
            events = api.get(f"/v1/deployments/{deployment_id}/events").json()
            started = [e for e in events if e["kind"] == "work-started"]
            assert len(started) == 1, events  # the work ran once, not once per API process

            victim = sorted(apis)[0]
            os.kill(victim, signal.SIGKILL)
            replaced = _wait(lambda: len(_api_processes(master) - {victim}) == 3
                             and _api_processes(master), timeout_s=40)
            assert victim not in replaced and len(replaced) == 3, support.children(master)
            for _ in range(20):  # every answer comes from a live process
                assert api.get(f"/v1/deployments/{deployment_id}").status_code == 200
    finally:
        children = set(support.children(master))
        server.stop()
    assert server.process.returncode == 0, server.output()
    # multiprocessing's resource tracker ends when it reads the end of its pipe, just after
    # the server: give the children a moment, then none may be left
    _wait(lambda: not any(_alive(c) for c in children), timeout_s=10)
    left = [c for c in children if _alive(c)]
    assert not left, (left, server.output())


def test_api_processes_need_a_shared_database(tmp_path, issuer):
    with pytest.raises(RuntimeError, match="an SQLite file or PostgreSQL"):
        support.start_server(tmp_path, db="sqlite://", sites=support.simulated_sites(tmp_path),
                             issuer=issuer.url, api_workers=2)
