"""Every real-world template of the shared corpus that validates also plans (and every one
that does not is listed in docs/compatibility.md with its reason): on a simulated
site catalogue with GPU and InfiniBand flavors (tests/fixtures/sites/corpus.yaml), with a
value for each required input the template leaves to its user, as a form would ask."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import service
from orchestrator.validation import validate
from tests.conftest import CORPUS, require_corpus

REPO = Path(__file__).resolve().parents[2]
SITES = REPO / "tests" / "fixtures" / "sites" / "corpus.yaml"
COMPATIBILITY = (REPO / "docs" / "compatibility.md").read_text(encoding="utf-8")
SETS = ("indigo-tosca-templates", "indigo-tosca-types/*/examples", "infn-tosca-templates")


def _templates() -> list[Path]:
    found: set[Path] = set()
    for pattern in SETS:
        for folder in CORPUS.glob(pattern):
            found.update(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml")
                         and "tosca_definitions_version" in p.read_text(errors="replace"))
    return sorted(found)


TEMPLATES = _templates() if CORPUS.is_dir() else []


def _value_for(spec: dict):
    """A value a user could give for a required input: the first valid value, the lower
    bound of a range, else a plain value of the input's type."""
    for constraint in spec.get("constraints") or ():
        if "valid_values" in constraint:
            return constraint["valid_values"][0]
        if "in_range" in constraint:
            return constraint["in_range"][0]
    return {"string": "value", "integer": 1, "float": 1.0, "boolean": True,
            "scalar-unit.size": "10 GB", "list": [], "map": {}}.get(spec.get("type"), "value")


@pytest.fixture(scope="module")
def orch(tmp_path_factory):
    require_corpus()
    folder = tmp_path_factory.mktemp("corpus-plans")
    return service.orchestrator(db=f"sqlite:///{folder}/state.db", sites=str(SITES))


def test_the_corpus_has_templates():
    require_corpus()
    assert len(TEMPLATES) >= 100, len(TEMPLATES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_a_valid_corpus_template_plans(orch, path):
    report = validate(str(path))
    if not report.valid:  # a defect of the template itself, listed with its reason
        first = report.diagnostics.errors[0]
        row = next((line for line in COMPATIBILITY.splitlines()
                    if f"`{path.relative_to(CORPUS)}`" in line), None)
        assert row is not None, f"refused but not in docs/compatibility.md: {first.render()}"
        assert f"`{first.code}`" in row, (row, first.render())
        return
    missing = {d.message.split("'")[1] for d in report.missing_inputs}
    specs = {i.name: i.to_dict() for i in report.topology.inputs}
    sets = [f"{name}={json.dumps(_value_for(specs[name]))}" for name in sorted(missing)]
    result = orch.plan(str(path), sets=sets, name=f"c{abs(hash(str(path))) % 10**8}")
    plan = result.plan
    creates = [s for s in plan.steps if s.action == "create" and s.kind == "compute"]
    for node in report.topology.nodes.values():
        if node.compute is not None:  # each instance of each compute node gets a server
            placed = [s for s in creates if s.node == node.name]
            assert len(placed) == node.compute.scaling.count, (node.name, len(placed))
    assert all(s.site == "corpus-sim" for s in creates)
