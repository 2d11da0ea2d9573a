"""The hardening of validate and plan against numbers no plan can use, structures the
grammar does not have, playbooks that do not exist, and saved plans or CSARs made to
exhaust the process (the fixtures of tests/fixtures/invalid cover each error; these
cover the settings, the search order and the paths outside validate)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator import service
from orchestrator.errors import OrchestratorError
from orchestrator.plan.build import compute_indexes
from orchestrator.topology.model import ScalingSpec
from orchestrator.tosca import LoadOptions
from orchestrator.validation import validate
from tests.conftest import ROOT

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
SCALED = HEADER + """topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        scalable: {properties: {default_instances: COUNT}}
"""


def _codes(report, severity: str = "error") -> list[str]:
    return [d.code for d in report.diagnostics if d.severity.value == severity]


# -- the per-node instance limit ------------------------------------------------------------
def test_the_instance_limit_is_1000_by_default(write, monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_MAX_INSTANCES", raising=False)
    assert validate(write("ok.yaml", SCALED.replace("COUNT", "1000"))).valid
    refused = validate(write("no.yaml", SCALED.replace("COUNT", "1001")))
    assert _codes(refused) == ["out-of-range"]
    assert "ORCHESTRATOR_MAX_INSTANCES" in refused.diagnostics.errors[0].hint


def test_the_instance_limit_is_configurable(write, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_MAX_INSTANCES", "5")
    assert validate(write("ok.yaml", SCALED.replace("COUNT", "5"))).valid
    assert _codes(validate(write("no.yaml", SCALED.replace("COUNT", "6")))) == ["out-of-range"]
    monkeypatch.setenv("ORCHESTRATOR_MAX_INSTANCES", "not-a-number")  # the default then
    assert validate(write("d.yaml", SCALED.replace("COUNT", "1000"))).valid


def test_a_count_within_the_bounds_it_is_given_is_valid(write):
    text = SCALED.replace("{default_instances: COUNT}",
                          "{default_instances: 3, min_instances: 0, max_instances: 3}")
    assert validate(write("t.yaml", text)).valid
    above = text.replace("max_instances: 3", "max_instances: 2")
    report = validate(write("above.yaml", above))
    assert _codes(report) == ["out-of-range"]
    assert "above max_instances (2)" in report.diagnostics.errors[0].message
    # the normative default max_instances (1) is no bound the author set
    assert validate(write("default.yaml", SCALED.replace("COUNT", "4"))).valid


def test_an_input_gives_its_number_at_the_place_it_is_used(write):
    text = HEADER + """topology_template:
  inputs:
    workers: {type: integer, default: 2}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        scalable: {properties: {default_instances: {get_input: workers}}}
"""
    path = write("t.yaml", text)
    assert validate(path).valid
    report = validate(path, sets=["workers=-4"])
    [error] = report.diagnostics.errors
    assert (error.code, error.line) == ("out-of-range", 9)


def test_sizes_beyond_the_sane_maxima_are_refused(write):
    text = HEADER + """topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {mem_size: 2000000 TB, disk_size: 10 GB}}
    data:
      type: tosca.nodes.BlockStorage
      properties: {size: 5000000 TB}
"""
    report = validate(write("t.yaml", text))
    assert sorted((d.code, d.line) for d in report.diagnostics.errors) == [
        ("out-of-range", 7), ("out-of-range", 10)]


def test_a_plan_never_pops_an_empty_list():
    from types import SimpleNamespace

    node = SimpleNamespace(name="vm", compute=SimpleNamespace(scaling=ScalingSpec(count=-1)))
    assert compute_indexes(node, []) == []


# -- structures the grammar does not have -------------------------------------------------
def test_an_unknown_key_of_a_relationship_template_is_an_error(write):
    text = HEADER + """topology_template:
  relationship_templates:
    mount:
      type: tosca.relationships.AttachesTo
      requirments: []
  node_templates:
    vm: {type: tosca.nodes.Compute}
"""
    report = validate(write("t.yaml", text))
    [error] = report.diagnostics.errors
    assert (error.code, error.line) == ("unknown-section", 6)
    assert "requirments" in error.message


# -- implementations ----------------------------------------------------------------------
APP = HEADER + """topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: server}]
      artifacts:
        setup: {file: setup.yml, type: tosca.artifacts.Implementation}
      interfaces:
        Standard:
          configure: IMPLEMENTATION
"""


@pytest.mark.parametrize("implementation", ["playbooks/base.yml", "base.yml", "mine.yml",
                                            "roles/mine.yml", "setup"])
def test_an_implementation_found_where_the_configurator_looks_is_valid(write, implementation):
    write("mine.yml", "- hosts: all\n")
    write("roles/mine.yml", "- hosts: all\n")
    report = validate(write("t.yaml", APP.replace("IMPLEMENTATION", implementation)))
    assert report.valid, [d.render() for d in report.diagnostics]
    assert not _codes(report, "warning")


@pytest.mark.parametrize("implementation", ["absent.yml", "playbooks/absent.yml",
                                            "sub/absent.sh"])
def test_an_implementation_found_nowhere_is_an_error(write, implementation):
    report = validate(write("t.yaml", APP.replace("IMPLEMENTATION", implementation)))
    [error] = report.diagnostics.errors
    assert (error.code, error.line, error.node) == ("implementation-not-found", 12, "app")


@pytest.mark.parametrize("implementation", ["/etc/absent.yml", "../../absent.yml",
                                            "/etc/ansible/present.yml"])
def test_paths_out_of_the_search_folders_are_refused_unless_allowed(write, implementation):
    """A template posted to the service cannot make a worker run a playbook elsewhere on
    the server; validate does not tell which files exist there (absent and present read
    alike); a local user allows it as for imports."""
    path = write("t.yaml", APP.replace("IMPLEMENTATION", implementation))
    refused = validate(path)
    [error] = refused.diagnostics.errors
    assert error.code == "implementation-not-found" and "outside" in error.message
    assert "exist" not in error.message
    allowed = validate(path, options=LoadOptions(allow_local_imports=True))
    assert allowed.valid, [d.render() for d in allowed.diagnostics]


def test_a_remote_implementation_of_a_type_is_no_warning(write):
    """INDIGO / INFN-Cloud types name their playbooks as https URLs: not on every node."""
    types = HEADER + """node_types:
  my.App:
    derived_from: tosca.nodes.SoftwareComponent
    interfaces:
      Standard:
        configure: https://example.org/artifacts/app.yml
"""
    write("types.yaml", types)
    text = HEADER + """imports: [types.yaml]
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
    app:
      type: my.App
      requirements: [{host: server}]
"""
    report = validate(write("t.yaml", text))
    assert report.valid and not _codes(report, "warning"), [
        d.render() for d in report.diagnostics]


# -- saved plans and archives ---------------------------------------------------------------
def _deep(depth: int) -> str:
    return '{"format_version": 1, "steps": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [200_000, 500, 101])
def test_a_plan_nested_too_deeply_is_refused(tmp_path, depth):
    path = tmp_path / "plan.json"
    path.write_text(_deep(depth))
    with pytest.raises(OrchestratorError, match="nested more than 100 levels"):
        service.load_plan(str(path))


def test_apply_of_a_deeply_nested_plan_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(_deep(200_000))
    env_home = {"XDG_CONFIG_HOME": str(tmp_path / "config"),
                "XDG_DATA_HOME": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--db",
                           f"sqlite:///{tmp_path / 's.db'}", "apply", str(path)],
                          capture_output=True, text=True, cwd=ROOT, env=env_home, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nested more than" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_a_plan_the_schema_lets_through_but_from_dict_cannot_read_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"not": "a plan"}))
    with pytest.raises(OrchestratorError, match="not a valid plan"):
        service.load_plan(str(path))
