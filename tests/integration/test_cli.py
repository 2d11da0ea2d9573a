"""The orchestrator command as a user runs it: exit codes, text and JSON output."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GOOD = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    admin_password: {type: string, description: Admin password}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2, mem_size: 2 GB}}
    db:
      type: tosca.nodes.DBMS
      properties: {root_password: {get_input: admin_password}, port: 5432}
      requirements: [{host: vm}]
  outputs:
    address: {value: {get_attribute: [vm, public_address]}}
"""


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=120)


def test_version_and_help():
    assert run("--version").stdout.startswith("orchestrator, version ")
    result = run("--help")
    assert result.returncode == 0 and "validate" in result.stdout and "inspect" in result.stdout


def test_help_imports_no_cloud_sdk():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    modules = [line.split("|")[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")]
    assert "orchestrator.cli.main" in modules
    heavy = [m for m in modules if m.split(".")[0] in
             ("openstack", "kubernetes", "libcloud", "pyone", "toscaparser", "ansible_runner")]
    assert heavy == []


def test_validate_valid_template_exit_0(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = run("validate", str(path), "--set", "admin_password=hunter2")
    assert result.returncode == 0, result.stderr
    assert "valid (2 nodes)" in result.stdout


def test_validate_invalid_template_exit_1_with_location(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("num_cpus: 2", "num_cpu: 2"))
    result = run("validate", str(path), "--set", "admin_password=x")
    assert result.returncode == 1
    assert f"{path}:9:29: error [unknown-property] node 'vm': property 'num_cpu'" in result.stderr
    assert "did you mean 'num_cpus'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_json(tmp_path):
    """A template is valid without its inputs: each required one is a warning."""
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = run("validate", str(path), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["errors"] == 0 and data["warnings"] == 1
    (diag,) = data["diagnostics"]
    assert diag["code"] == "missing-input" and diag["line"] == 4
    assert diag["severity"] == "warning" and "Admin password" in diag["message"]
    strict = run("validate", str(path), "--format", "json", "--strict")
    assert strict.returncode == 1 and json.loads(strict.stdout)["valid"] is False


def test_plan_refuses_missing_inputs_naming_each(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD.replace("  node_templates:", "    size: {type: integer, description: "
                                 "Disk size in GB}\n  node_templates:"))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "admin_password, size" in result.stderr
    assert f"{path}:4:5: error [missing-input]" in result.stderr
    assert "Admin password" in result.stderr and "Disk size in GB" in result.stderr


@pytest.mark.parametrize("args", [["validate"], ["validate", "x.yaml", "--format", "xml"],
                                  ["no-such-command"], ["inspect", "--bogus", "x"]])
def test_usage_errors_exit_2(args):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert "Usage" in result.stderr


def test_inspect_masks_secrets(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    text = run("inspect", str(path), "--set", "admin_password=hunter2")
    assert text.returncode == 0, text.stderr
    assert "hunter2" not in text.stdout and "******" in text.stdout
    assert "2 cpus" in text.stdout and "Hosting:" in text.stdout
    data = json.loads(run("inspect", str(path), "--set", "admin_password=hunter2",
                          "--format", "json").stdout)
    assert "hunter2" not in json.dumps(data)
    topology = data["topology"]
    assert topology["order"] == ["vm", "db"]
    assert topology["nodes"]["db"]["host"] == "vm"
    assert topology["nodes"]["vm"]["compute"]["cpus"] == 2
    assert topology["outputs"][0]["value"] == {"get_attribute": ["vm", "public_address"]}


def test_missing_file_is_a_diagnostic_not_a_traceback():
    result = run("validate", "/nonexistent/template.yaml")
    assert result.returncode == 1
    assert "[file-not-found]" in result.stderr and "Traceback" not in result.stderr


def test_library_log_records_reach_stderr_only_with_debug(tmp_path):
    """An SDK's warnings (keystoneauth on an unreachable OpenStack) are not printed beside our
    own message unless --debug asks for them."""
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n  dead:\n    auth: {auth_url: 'http://127.0.0.1:9/v3', username: u, "
        "password: p, project_name: x, user_domain_name: Default, "
        "project_domain_name: Default}\n")
    (tmp_path / "sites.yaml").write_text(
        "sites:\n  - {name: dead, provider: openstack, credentials: {cloud: dead}}\n")
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}

    def check(*flags):
        return subprocess.run([sys.executable, "-m", "orchestrator", *flags, "--sites",
                               str(tmp_path / "sites.yaml"), "sites", "check"],
                              capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **env}, timeout=120)

    plain = check()
    assert plain.returncode == 1
    assert "FAIL dead" in plain.stdout + plain.stderr and "connection refused" in (
        plain.stdout + plain.stderr).lower()
    assert "keystoneauth" not in plain.stderr and "Failed to discover" not in plain.stderr
    debug = check("--debug")
    assert "WARNING keystoneauth" in debug.stderr and "FAIL dead" in debug.stdout + debug.stderr
