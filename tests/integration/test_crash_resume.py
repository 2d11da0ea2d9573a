"""SIGKILL the CLI at several points of a deploy; `deploy --resume` must end with exactly
the expected resources in the (file-backed) simulated cloud: no duplicate, no orphan."""
import json
import subprocess
import sys
from collections import Counter

import pytest

from tests import engine_support as es
from tests.conftest import ROOT

WORKERS = 3
EXPECTED = {("head", "0")} | {("worker", str(i)) for i in range(WORKERS)}


def _cli(tmp_path, sites_file, *args):
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--db", f"sqlite:///{tmp_path / 'state.db'}",
         "--sites", sites_file, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def _cloud(tmp_path):
    data = json.loads((tmp_path / "cloud-a.json").read_text())
    return [r for r in data["resources"].values() if r.get("deleted_at") is None]


@pytest.mark.parametrize("fault", [
    {"operation": "create", "kind": "crash_before", "on_call": 1},
    {"operation": "create", "kind": "crash_after", "on_call": 1},
    {"operation": "create", "kind": "crash_after", "on_call": 3},
    {"operation": "create", "kind": "crash_before", "on_call": 4},
    {"operation": "poll", "kind": "crash_after", "on_call": 2},
], ids=lambda f: f"{f['kind']}-{f['operation']}-{f['on_call']}")
def test_kill_and_resume(tmp_path, fault):
    template = es.write_template(tmp_path, es.cluster(workers=WORKERS))
    crashing = es.write_sites(tmp_path, es.site("a", tmp_path, latency={"boot": 0.2},
                                                faults=[fault]))
    killed = _cli(tmp_path, crashing, "deploy", template, "--name", "demo", "--yes")
    assert killed.returncode == -9, killed.stderr
    healthy = es.write_sites(tmp_path, es.site("a", tmp_path, latency={"boot": 0.2}))
    resumed = _cli(tmp_path, healthy, "deploy", "--resume", "demo", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    alive = _cloud(tmp_path)
    keys = Counter((r["tags"]["orchestrator-node"], r["tags"]["orchestrator-index"])
                   for r in alive)
    assert set(keys) == EXPECTED, keys
    assert max(keys.values()) == 1, f"duplicates: {keys}"
    status = json.loads(_cli(tmp_path, healthy, "status", "demo", "--format", "json").stdout)
    assert status["deployment"]["status"] == "deployed"
    computes = {r["provider_id"] for r in status["resources"] if r["kind"] == "compute"}
    assert computes == {r["id"] for r in alive}
    again = _cli(tmp_path, healthy, "plan", template, "--name", "demo", "--format", "json")
    assert json.loads(again.stdout)["summary"]["create"] == 0
    gone = _cli(tmp_path, healthy, "delete", "demo", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert _cloud(tmp_path) == []
