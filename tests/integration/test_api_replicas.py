"""Two replicas of `orchestrator serve` on one real PostgreSQL: 50 deployments submitted
concurrently through both run exactly once; one replica is SIGKILLed mid-way and the other
resumes and finishes its work (no duplicate server in the cloud, none lost)."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.state import Store
from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support
from tests.pg import postgres_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
COUNT = 50


def _cloud(tmp) -> list[dict]:
    data = json.loads((tmp / "cloud-sim.json").read_text())
    return [r for r in data["resources"].values() if r.get("deleted_at") is None]


def test_two_replicas_share_the_work_and_survive_a_kill(tmp_path, postgres_server):  # noqa: F811
    url = postgres_server.new_schema_url()
    sites = support.simulated_sites(tmp_path, latency={"boot": 0.4, "create": 0.05})
    with OIDCIssuer() as issuer:
        token = issuer.token("ci", groups=["load"])
        first = support.start_server(tmp_path, db=url, sites=sites, issuer=issuer.url,
                                     name="first", workers=4)
        second = support.start_server(tmp_path, db=url, sites=sites, issuer=issuer.url,
                                      name="second", workers=4)
        store = Store(url)
        try:
            ids = _submit(first, second, token)
            killed_pid = first.process.pid
            _kill_when_busy(store, first)
            with support.client(second, token) as api:
                final = [support.wait_for(api, i, timeout_s=150) for i in ids]
            assert [d["status"] for d in final] == ["deployed"] * COUNT, \
                [(d["name"], d["status_reason"]) for d in final if d["status"] != "deployed"]
            _assert_ran_once(store, ids, killed_pid)
            servers = Counter(r["tags"]["orchestrator-deployment"] for r in _cloud(tmp_path)
                              if r["kind"] == "compute")
            assert servers == {i: 1 for i in ids}
        finally:
            store.close()
            first.stop(signal.SIGKILL)
            second.stop()


def _submit(first, second, token) -> list[str]:
    def post(index: int) -> str:
        server = first if index % 2 == 0 else second
        with support.client(server, token) as api:
            response = api.post("/v1/deployments", json={
                "name": f"load-{index:02d}", "template": support.template_text()})
            assert response.status_code == 202, response.text
            return response.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(post, range(COUNT)))


def _kill_when_busy(store, server) -> None:
    """SIGKILL ``server`` once it is running work and some deployments are done."""
    pid = f":{server.process.pid}:"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [w for w in store.work_items(status="running") if pid in w.claimed_by]
        done = store.work_items(status="done")
        if running and len(done) >= 5:
            server.stop(signal.SIGKILL)
            return
        time.sleep(0.05)
    pytest.fail("the first replica never ran work while others finished")


def _assert_ran_once(store, ids, killed_pid) -> None:
    resumed = 0
    for deployment_id in ids:
        items = store.work_items(deployment_id)
        assert [(w.operation, w.status) for w in items] == [("deploy", "done")]
        events = store.events(deployment_id)
        kinds = Counter(e.kind for e in events)
        assert kinds["apply-finished"] == 1, kinds
        starts = [e.data["worker"] for e in events if e.kind == "work-started"]
        assert len(starts) == items[0].attempts
        if items[0].attempts == 2:  # begun by the killed replica, finished by the other
            resumed += 1
            assert f":{killed_pid}:" in starts[0] and f":{killed_pid}:" not in starts[1]
            assert kinds["work-resumed"] == 1
        else:
            assert items[0].attempts == 1
    assert resumed >= 1
