"""The template corpus: every valid fixture validates and builds a topology; every
invalid fixture yields the diagnostic its header announces, at the right place.

Each ``tests/fixtures/invalid/*.yaml`` starts with a header line::

    # expect: <code> <line> [hint: <name> | message: <text>]

``line`` is the 1-based line the diagnostic must point at; ``hint: NAME`` means the
diagnostic's hint must suggest ``'NAME'`` (did-you-mean); ``message: TEXT`` means the
message must contain TEXT.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import service
from orchestrator.diagnostics import CODES, Severity
from orchestrator.tosca import load_template
from orchestrator.tosca.functions import Deferred

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
WARNINGS = sorted((FIXTURES / "warnings").glob("*.yaml"))
REPO = Path(__file__).resolve().parents[2]

HEADER = re.compile(r"^# expect: (?P<code>[a-z-]+) (?P<line>\d+)"
                    r"(?: (?P<kind>hint|message): (?P<text>.+?))?\s*$")

#: codes the invalid corpus must cover (one fixture each at least)
REQUIRED_CODES = {
    "yaml-syntax", "missing-version", "unsupported-version",
    "unknown-section", "missing-field", "unknown-type", "unknown-property",
    "missing-property", "type-mismatch", "constraint-violation", "unknown-capability",
    "unknown-requirement", "unknown-node", "requirement-mismatch", "unknown-interface",
    "unknown-operation", "dependency-cycle", "undefined-input",
    "invalid-function", "unresolved-reference", "function-cycle", "import-not-found",
    "import-remote-unmapped", "missing-value", "unknown-target", "wrong-type",
}


#: codes that are warnings: the template stays valid (and invalid under --strict)
WARNING_CODES = {"duplicate-key", "missing-input", "remote-implementation"}


@dataclass(frozen=True)
class Expectation:
    code: str
    line: int
    hint: str | None = None
    message: str | None = None


def expectation(path: Path) -> Expectation:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = HEADER.match(first)
    assert match, f"{path.name}: first line must be '# expect: <code> <line> ...', got {first!r}"
    kind, text = match["kind"], match["text"]
    return Expectation(match["code"], int(match["line"]),
                       hint=text if kind == "hint" else None,
                       message=text if kind == "message" else None)


def _render(diagnostics) -> str:
    return "\n".join(d.render() for d in diagnostics) or "(no diagnostics)"


def _isolated_env(tmp_path: Path) -> dict:
    """Environment for subprocesses: no user import map or config leaks in."""
    env = dict(os.environ)
    env.pop("ORCHESTRATOR_IMPORT_MAP", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["PYTHONWARNINGS"] = "error"
    return env


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_IMPORT_MAP", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


# -- the corpus itself ----------------------------------------------------------------------
def test_corpus_is_populated():
    assert len(VALID) >= 10, [p.name for p in VALID]
    assert len(INVALID) >= 30, [p.name for p in INVALID]


def test_invalid_corpus_covers_the_required_codes():
    covered = {expectation(p).code for p in INVALID}
    assert REQUIRED_CODES <= covered, sorted(REQUIRED_CODES - covered)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_fixture_header_is_well_formed(path):
    expected = expectation(path)
    assert expected.code in CODES
    assert 1 <= expected.line <= len(path.read_text(encoding="utf-8").splitlines())


# -- valid templates --------------------------------------------------------------------------
@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_template_loads_without_errors(path):
    result = load_template(str(path))
    assert not result.diagnostics.has_errors, _render(result.diagnostics)
    assert result.ok
    assert result.template is not None
    assert result.template.nodes


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_template_builds_a_topology(path):
    report = service.validate(str(path))
    assert not report.diagnostics.has_errors, _render(report.diagnostics)
    assert report.valid
    topology = report.topology
    assert topology is not None
    assert topology.nodes
    assert set(topology.order) == set(topology.nodes)
    # every node points back at this file (or an import of it)
    for node in topology.nodes.values():
        assert node.file and node.line > 0
    # the JSON form is serialisable
    json.dumps(topology.to_dict())


def _valid(name: str):
    report = service.validate(str(FIXTURES / "valid" / name))
    assert report.valid, _render(report.diagnostics)
    return report.topology


def test_tosca10_inputs_and_capability_paths():
    topology = _valid("tosca10_compute.yaml")
    assert topology.version == "tosca_simple_yaml_1_0"
    server = topology.nodes["server"]
    assert server.compute.cpus == 2
    assert server.compute.os.distribution == "ubuntu"
    outputs = {o.name: o.value for o in topology.outputs}
    assert outputs["server_cpus"] == 2
    assert isinstance(outputs["server_ip"], Deferred)
    assert outputs["server_ip"].function == "get_attribute"


def test_tosca10_inputs_are_overridable():
    report = service.validate(str(FIXTURES / "valid" / "tosca10_compute.yaml"),
                              sets=["cpus=8", "distro=debian"])
    assert report.valid, _render(report.diagnostics)
    assert report.topology.nodes["server"].compute.cpus == 8
    assert report.topology.nodes["server"].compute.os.distribution == "debian"


def test_tosca10_input_constraint_applies_to_given_values():
    report = service.validate(str(FIXTURES / "valid" / "tosca10_compute.yaml"),
                              sets=["cpus=3"])
    assert not report.valid
    assert any(d.code == "constraint-violation" for d in report.diagnostics.errors)


def test_functions_are_evaluated():
    result = load_template(str(FIXTURES / "valid" / "tosca13_functions.yaml"))
    assert result.ok, _render(result.diagnostics)
    inputs = result.template.nodes["app"].interfaces["Standard"]["create"]["inputs"]
    assert inputs["hostname"] == "node-cern.ch"
    assert inputs["first_zone"] == "zone-a"
    assert inputs["last_zone"] == "zone-c"
    assert inputs["all_zones"] == "zone-a,zone-b,zone-c"
    assert inputs["zones_no_sep"] == "abc"
    assert inputs["host_label"] == "c"
    assert inputs["domain"] == "example.org"
    assert inputs["version"] == "1.2.3"
    assert inputs["worker_cpus"] == 2
    assert inputs["worker_distro"] == "cluster"  # token of the fqdn, through get_property
    assert inputs["nested"]["list_of_things"] == ["azone-b", 42]
    assert isinstance(inputs["computed_ip"], Deferred)
    assert inputs["computed_ip"].node == "worker"  # HOST resolved to the hosting node
    outputs = result.template.outputs
    assert outputs["joined"]["value"] == "cern.ch/example.org"
    assert isinstance(outputs["ip_concat"]["value"], Deferred)


def test_software_stack_relationships_and_host_lookups():
    topology = _valid("tosca12_software_stack.yaml")
    kinds = {(r.source, r.target): r.kind for r in topology.relationships}
    assert kinds[("dbms", "db_server")] == "HostedOn"
    assert kinds[("database", "dbms")] == "HostedOn"
    assert kinds[("web_app", "web_server")] == "HostedOn"
    assert kinds[("web_app", "database")] == "ConnectsTo"
    order = list(topology.order)
    assert order.index("db_server") < order.index("dbms") < order.index("database")
    assert order.index("database") < order.index("web_app")
    assert topology.nodes["database"].properties["port"] == 3306
    configure = {(o.interface, o.name): o for o in topology.nodes["dbms"].operations}
    inputs = configure[("Standard", "configure")].inputs
    assert inputs["host_cpus"] == 4
    assert inputs["root_password"] == "s3cret"
    assert topology.metadata.get("template_name") == "software-stack"


def test_block_storage_attachments():
    topology = _valid("tosca13_block_storage.yaml")
    volumes = {v.node: v for v in topology.nodes["server"].compute.volumes}
    assert volumes["data_volume"].location == "/data"
    assert volumes["data_volume"].device == "/dev/vdb"
    assert volumes["scratch_volume"].location == "/scratch"  # from the relationship template
    assert volumes["scratch_volume"].volume_id == "vol-0123"


def test_network_links_and_bindings():
    topology = _valid("tosca13_network.yaml")
    kinds = {(r.source, r.target): r.kind for r in topology.relationships}
    assert kinds[("port", "server")] == "BindsTo"
    assert kinds[("port", "private_net")] == "LinksTo"
    assert topology.nodes["server"].compute.networks == ("private_net",)


def test_groups_and_policies():
    topology = _valid("tosca13_groups_policies.yaml")
    groups = {g.name: g for g in topology.groups}
    assert groups["workers"].members == ("worker1", "worker2")
    policies = {p.name: p for p in topology.policies}
    assert set(policies) == {"placement", "scaling", "monitoring"}
    assert policies["scaling"].targets == ("workers", "frontend")


def test_relative_and_circular_imports():
    topology = _valid("relative_import.yaml")
    assert topology.nodes["application"].type == "corpus.nodes.Application"
    assert topology.nodes["application"].properties["listen_port"] == 9090
    topology = _valid("circular_a.yaml")
    assert topology.nodes["b"].properties["from_b"] == "a"
    assert topology.nodes["b"].type == "corpus.nodes.B"


def test_orchestrator_gpu_types():
    topology = _valid("orchestrator_gpu_vm.yaml")
    vm = topology.nodes["gpu_vm"].compute
    assert (vm.gpus.count, vm.gpus.vendor, vm.gpus.model) == (1, "NVIDIA", "A100")
    assert vm.public_ip is True
    assert {p.port for p in vm.ports} == {22, 8888}
    report = service.validate(str(FIXTURES / "valid" / "orchestrator_gpu_vm.yaml"),
                              sets=["num_gpus=4", "gpu_model=H100"])
    assert report.valid, _render(report.diagnostics)
    vm = report.topology.nodes["gpu_vm"].compute
    assert (vm.gpus.count, vm.gpus.model) == (4, "H100")


def test_orchestrator_infiniband_cluster():
    topology = _valid("orchestrator_infiniband_cluster.yaml")
    worker = topology.nodes["worker"].compute
    assert worker.infiniband is True
    assert worker.gpus.count == 4
    assert worker.scaling.count == 2
    head = topology.nodes["head"].compute
    assert head.infiniband is True
    assert [v.location for v in head.volumes] == ["/shared"]


# -- invalid templates ------------------------------------------------------------------------
@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_template_reports_the_expected_diagnostic(path):
    expected = expectation(path)
    report = service.validate(str(path))
    assert not report.valid
    errors = report.diagnostics.errors
    assert errors, "no error reported"
    rendered = _render(report.diagnostics)
    with_code = [d for d in errors if d.code == expected.code]
    assert with_code, f"no [{expected.code}] error:\n{rendered}"
    at_line = [d for d in with_code if d.line == expected.line]
    assert at_line, f"[{expected.code}] is not at line {expected.line}:\n{rendered}"
    diag = at_line[0]
    assert diag.severity is Severity.ERROR
    assert diag.file.endswith(path.name), diag.file
    assert Path(diag.file).resolve() == path.resolve()
    assert diag.column > 0, diag.render()
    assert diag.message
    if expected.hint is not None:
        assert diag.hint and f"'{expected.hint}'" in diag.hint, diag.render()
    if expected.message is not None:
        assert expected.message in diag.message, diag.render()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_template_has_only_its_deliberate_error(path):
    """One deliberate error: no unrelated error diagnostics cascade from it."""
    expected = expectation(path)
    report = service.validate(str(path))
    others = [d for d in report.diagnostics.errors if d.code != expected.code]
    assert not others, _render(others)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_template_via_load_template(path):
    """The front end alone reports it too (except cycles, found when building the graph)."""
    expected = expectation(path)
    result = load_template(str(path))
    if expected.code == "dependency-cycle":
        assert result.ok, _render(result.diagnostics)
        return
    assert not result.ok
    assert any(d.code == expected.code and d.line == expected.line
               for d in result.diagnostics.errors), _render(result.diagnostics)
    for diag in result.diagnostics:
        assert diag.code in CODES


# -- through the CLI --------------------------------------------------------------------------
def _cli(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], check=False,
                          capture_output=True, text=True, cwd=REPO,
                          env=_isolated_env(tmp_path), timeout=120)


CLI_CASES = ["unknown_type.yaml", "unknown_property.yaml", "dependency_cycle.yaml",
             "yaml_syntax.yaml", "import_remote_unmapped.yaml"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_json_reports_invalid_templates(tmp_path, name):
    path = FIXTURES / "invalid" / name
    expected = expectation(path)
    proc = _cli(tmp_path, "validate", str(path), "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["valid"] is False
    assert data["errors"] >= 1
    diagnostics = data["diagnostics"]
    assert isinstance(diagnostics, list) and diagnostics
    for diag in diagnostics:
        assert {"code", "severity", "message", "file", "line", "column"} <= set(diag)
        assert diag["code"] in CODES
    assert any(d["code"] == expected.code and d["line"] == expected.line
               and d["severity"] == "error" and d["file"].endswith(name)
               for d in diagnostics), json.dumps(diagnostics, indent=2)


def test_cli_text_reports_file_line_and_column(tmp_path):
    path = FIXTURES / "invalid" / "unknown_type.yaml"
    proc = _cli(tmp_path, "validate", str(path))
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"{path.name}:7:" in out
    assert "[unknown-type]" in out
    assert "tosca.nodes.Compute" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", ["tosca13_functions.yaml", "orchestrator_gpu_vm.yaml"])
def test_cli_json_accepts_valid_templates(tmp_path, name):
    proc = _cli(tmp_path, "validate", str(FIXTURES / "valid" / name), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["valid"] is True
    assert data["errors"] == 0


def test_cli_usage_error_exits_2(tmp_path):
    proc = _cli(tmp_path, "validate")
    assert proc.returncode == 2, proc.stdout + proc.stderr


def test_dsl_definitions_anchors_and_merge_keys():
    topology = _valid("tosca13_dsl_definitions.yaml")
    small = topology.nodes["small"].compute
    large = topology.nodes["large"].compute
    plain = topology.nodes["plain"].compute
    assert (small.cpus, small.os.version) == (1, "22.04")
    assert (large.cpus, large.os.version) == (16, "24.04")  # explicit keys win over <<
    assert large.memory_mib == small.memory_mib  # merged from the shared block
    assert plain.os.distribution == "ubuntu"


# -- templates that are valid with a warning --------------------------------------------------
def test_warning_corpus_covers_the_warning_codes():
    assert {expectation(p).code for p in WARNINGS} == WARNING_CODES


@pytest.mark.parametrize("path", WARNINGS, ids=lambda p: p.name)
def test_warning_template_is_valid_with_its_warning(path):
    expected = expectation(path)
    report = service.validate(str(path))
    assert report.valid, _render(report.diagnostics)
    warnings = [d for d in report.diagnostics if d.code == expected.code]
    assert [d.severity for d in warnings] == [Severity.WARNING], _render(report.diagnostics)
    [diag] = warnings
    assert (Path(diag.file).resolve(), diag.line) == (path.resolve(), expected.line)
    assert diag.column > 0, diag.render()
    if expected.message is not None:
        assert expected.message in diag.message, diag.render()


@pytest.mark.parametrize("path", WARNINGS, ids=lambda p: p.name)
def test_warning_template_fails_validate_strict(path, tmp_path):
    cli = [sys.executable, "-m", "orchestrator", "validate"]
    env = _isolated_env(tmp_path)
    relaxed = subprocess.run([*cli, str(path)], capture_output=True, text=True, env=env)
    assert relaxed.returncode == 0, relaxed.stderr
    assert f"warning [{expectation(path).code}]" in relaxed.stdout + relaxed.stderr
    strict = subprocess.run([*cli, "--strict", str(path)], capture_output=True, text=True,
                            env=env)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert f"warning [{expectation(path).code}]" in strict.stderr
    assert "--strict" in strict.stderr
