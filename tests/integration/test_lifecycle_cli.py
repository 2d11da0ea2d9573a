"""The lifecycle commands as a user runs them: JSON output, exit codes, confirmation,
background deploys with `logs --follow`, the per-deployment lock, sites list/check."""
import json
import subprocess
import sys
import time

import pytest

from tests import engine_support as es
from tests.conftest import ROOT


@pytest.fixture
def env(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a", tmp_path, latency={"boot": 0.2}),
                           es.site("b", tmp_path, priority=-1))
    template = es.write_template(tmp_path, es.cluster(workers=2))

    def cli(*args, stdin=None):
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "--db",
             f"sqlite:///{tmp_path / 'state.db'}", "--sites", sites, *args],
            capture_output=True, text=True, cwd=ROOT, timeout=120, input=stdin)

    return cli, template, tmp_path


def test_sites_list_and_check(env):
    cli, _, _ = env
    listed = json.loads(cli("sites", "list", "--format", "json").stdout)
    assert [s["name"] for s in listed["sites"]] == ["a", "b"]
    assert listed["sites"][0]["flavors"][2]["gpus"]["model"] == "A100"
    checked = cli("sites", "check")
    assert checked.returncode == 0
    assert "ok   a: reachable, credentials valid; offers 3 flavors, 1 images" in checked.stdout


def test_a_saved_plan_is_applied_with_the_import_policy_it_was_made_with(env):
    """--allow-local-imports and the implementation choice travel in the plan, so apply of
    the saved plan reads the template the same way (here: a playbook outside its folder)."""
    cli, _, tmp = env
    outside = tmp / "elsewhere"
    outside.mkdir()
    (outside / "note.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    folder = tmp / "template"
    folder.mkdir()
    template = es.write_template(folder, f"""
topology_template:
  node_templates:
    vm: {{type: orchestrator.nodes.Compute}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: vm}}]
      interfaces: {{Standard: {{configure: {outside / 'note.yml'}}}}}
""")
    refused = cli("plan", template, "--name", "outside")
    assert refused.returncode == 1 and "--allow-local-imports" in refused.stderr
    plan_file = tmp / "plan.json"
    planned = cli("plan", template, "--name", "outside", "--allow-local-imports",
                  "--implementation", "upstream", "-o", str(plan_file))
    assert planned.returncode == 0, planned.stderr
    saved = json.loads(plan_file.read_text())
    assert saved["allow_local_imports"] is True and saved["implementation"] == "upstream"
    applied = cli("apply", str(plan_file), "--format", "json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["deployment"]["status"] == "deployed"


def test_deploy_requires_confirmation_without_a_terminal(env):
    cli, template, _ = env
    refused = cli("deploy", template, "--name", "demo")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert json.loads(cli("list", "--format", "json").stdout) == []


def test_plan_apply_json_and_exit_codes(env):
    cli, template, tmp = env
    plan_file = tmp / "plan.json"
    planned = cli("plan", template, "--name", "demo", "-o", str(plan_file), "--format", "json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["summary"]["create"] == 3
    applied = cli("apply", str(plan_file), "--format", "json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["deployment"]["status"] == "deployed"
    stale = cli("apply", str(plan_file))
    assert stale.returncode == 1 and "stale" in stale.stderr
    outputs = json.loads(cli("outputs", "demo", "--format", "json").stdout)
    assert outputs["head_ip"].startswith("10.")
    assert len(outputs["worker_ips"]) == 2
    broken = tmp / "broken.json"
    broken.write_text(json.dumps({"format_version": 1, "deployment": "x"}))
    bad = cli("apply", str(broken))
    assert bad.returncode == 1 and "not a valid plan" in bad.stderr
    gone = cli("delete", "demo", "--yes", "--format", "json")
    assert json.loads(gone.stdout)["deleted"] is True


def test_no_wait_and_follow(env):
    cli, template, _ = env
    started = cli("deploy", template, "--name", "bg", "--yes", "--no-wait", "--format", "json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["deployment"] == "bg"
    deadline = time.time() + 60
    while time.time() < deadline:
        listed = json.loads(cli("list", "--format", "json").stdout)
        if listed and listed[0]["status"] in ("deployed", "failed"):
            break
        time.sleep(0.5)
    followed = cli("logs", "bg", "--follow")
    assert followed.returncode == 0
    assert "deployed" in followed.stdout.splitlines()[-1]
    assert "creating compute worker[1] on site a" in followed.stdout


def test_lock_contention_between_processes(env):
    cli, template, tmp = env
    assert cli("deploy", template, "--name", "demo", "--yes").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys, time
from orchestrator.state import Store
store = Store("sqlite:///{tmp / 'state.db'}")
record = store.get_deployment("demo")
store.acquire_lock(record.id)
print("locked", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        blocked = cli("delete", "demo", "--yes")
        assert blocked.returncode == 1
        assert "locked by" in blocked.stderr and f":{holder.pid}:" in blocked.stderr
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert cli("delete", "demo", "--yes").returncode == 0  # a dead holder's lock is recovered


def test_invalid_template_and_unknown_deployment(env):
    cli, _, tmp = env
    bad = tmp / "bad.yaml"
    bad.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n"
                   "  node_templates:\n    vm: {type: tosca.nodes.Compte}\n")
    result = cli("plan", str(bad))
    assert result.returncode == 1
    assert "bad.yaml:4:10: error [unknown-type]" in result.stderr
    missing = cli("status", "nope")
    assert missing.returncode == 1 and "no deployment named 'nope'" in missing.stderr


def test_plan_records_remote_imports_and_apply_rereads_them_from_the_cache(env, monkeypatch):
    """A remote import (opt-in, over https) is recorded in the plan with its sha256; apply
    reads the cached bytes again, and refuses the plan once they changed."""
    import hashlib

    from tests.fakes.https_files import HTTPSFiles

    cli, _, tmp = env
    types = (b"tosca_definitions_version: tosca_simple_yaml_1_3\n"
             b"node_types:\n  acme.App:\n    derived_from: tosca.nodes.SoftwareComponent\n")
    with HTTPSFiles(tmp) as files:
        files.routes["/types.yaml"] = (200, {}, types)
        monkeypatch.setenv("ORCHESTRATOR_TEST_ALLOW_LOOPBACK_FETCH", "1")  # test-only
        monkeypatch.setenv("ORCHESTRATOR_TEST_IMPORT_CA", str(files.ca))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        url = files.url("/types.yaml")
        template = tmp / "remote.yaml"
        template.write_text(
            "tosca_definitions_version: tosca_simple_yaml_1_3\n"
            f"imports: [orchestrator/all.yaml, '{url}']\ntopology_template:\n"
            "  node_templates:\n    vm: {type: orchestrator.nodes.Compute}\n"
            "    app: {type: acme.App, requirements: [{host: vm}]}\n")
        refused = cli("plan", str(template), "--name", "remote")
        assert refused.returncode == 1 and "import-remote-unmapped" in refused.stderr
        plan_file = tmp / "remote-plan.json"
        planned = cli("plan", str(template), "--name", "remote", "--allow-remote-imports",
                      "-o", str(plan_file), "--format", "json")
        assert planned.returncode == 0, planned.stderr
        recorded = json.loads(plan_file.read_text())["remote_imports"]
        assert recorded == {url: hashlib.sha256(types).hexdigest()}
        assert files.hits["/types.yaml"] == 1
        applied = cli("apply", str(plan_file), "--format", "json")
        assert applied.returncode == 0, applied.stderr
        assert files.hits["/types.yaml"] == 1  # apply read the cached bytes
        for body in (tmp / "cache" / "orchestrator" / "imports").glob("*.body"):
            body.write_bytes(types + b"# changed\n")  # the cached copy is not what was planned
            (body.with_suffix(".json")).write_text(json.dumps(
                {"url": url, "sha256": hashlib.sha256(types + b"# changed\n").hexdigest()}))
        stale = cli("apply", str(plan_file))
        assert stale.returncode == 1 and "remote imports changed" in stale.stderr
        assert files.hits["/types.yaml"] == 1
