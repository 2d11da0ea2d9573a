"""Property-based fuzzing of ``plan``, not only of validate: whatever numbers a template
gives its instance counts, scaling bounds, cpus, GPUs and sizes, and however the valid
corpus is mutated, a plan on a simulated site (with quotas and without) is made or refused
with an ``OrchestratorError``; never an internal error (IndexError, OverflowError) and
never minutes of work (the per-node instance limit bounds it). Kept to a few seconds."""
from __future__ import annotations

import copy
import itertools
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import service
from orchestrator.errors import OrchestratorError
from orchestrator.validation import validate
from tests.unit.test_fuzz import DOCS, FIXTURES, HUGE_NUMBERS, NAMES, _time_limit, examples, \
    mutate

SITES = """sites:
  - name: quota
    provider: simulated
    quotas: {instances: 50, cores: 400, memory_mib: 1600000, gpus: 8}
    flavors:
      - {name: small, cpus: 2, memory_mib: 4096, disk_gib: 40}
      - {name: gpu, cpus: 16, memory_mib: 131072, disk_gib: 200,
         gpus: {count: 2, vendor: NVIDIA, model: A100}}
    images:
      - {name: ubuntu-22.04, distribution: ubuntu, version: "22.04"}
  - name: open
    provider: simulated
    flavors:
      - {name: huge, cpus: 256, memory_mib: 2097152, disk_gib: 20000}
    images:
      - {name: ubuntu-22.04, distribution: ubuntu, version: "22.04"}
"""
NUMBERS = st.one_of(st.integers(0, 60), st.integers(0, 3), HUGE_NUMBERS, st.integers(-5, 1500),
                    st.integers(), st.floats(),
                    st.sampled_from(["-1", "1e400", "3 GB", "-2 GB", "1e30 TB", "99999 PB"]))
SCALABLE = ("count", "default_instances", "min_instances", "max_instances")
HOST = ("num_cpus", "num_gpus", "mem_size", "disk_size")
PLAN_TIME_LIMIT = 30  # seconds; one plan here takes milliseconds
_names = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-plan")
    shutil.copytree(FIXTURES / "valid", root / "valid")
    (root / "sites.yaml").write_text(SITES, encoding="utf-8")
    orch = service.orchestrator(db=f"sqlite:///{root / 'state.db'}",
                                sites=str(root / "sites.yaml"))
    return root / "valid", orch


def _plan(world, doc) -> None:
    """validate, then plan: a plan or an OrchestratorError, nothing else."""
    folder, orch = world
    path = folder / f"plan_{next(_names)}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    report = validate(str(path))
    if not report.valid or report.missing_inputs or report.unresolved_paths:
        return
    with _time_limit(PLAN_TIME_LIMIT):
        try:
            result = orch.plan(str(path), name=path.stem, refresh=False)
        except OrchestratorError as exc:
            assert str(exc)
            return
    for step in result.plan.steps:
        assert step.index >= 0
    assert len(result.plan.steps) < 20 * 1000  # the per-node limit bounds a plan


def _compute(properties: dict) -> dict:
    scalable = {k: v for k, v in properties.items() if k in SCALABLE and k != "count"}
    host = {k: v for k, v in properties.items() if k in HOST}
    return {"tosca_definitions_version": "tosca_simple_yaml_1_3",
            "imports": ["orchestrator/all.yaml"],
            "topology_template": {"node_templates": {"vm": {
                "type": "tosca.nodes.Compute",
                "capabilities": {"scalable": {"properties": scalable},
                                 "host": {"properties": host},
                                 "os": {"properties": {"distribution": "ubuntu"}}}}}}}


@examples(60)
@given(properties=st.dictionaries(st.sampled_from(SCALABLE + HOST), NUMBERS, max_size=5))
def test_any_numbers_plan_or_are_refused(world, properties):
    _plan(world, _compute(properties))


@examples(30)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_a_mutated_corpus_plans_or_is_refused(world, name, data):
    doc = copy.deepcopy(DOCS[name])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate(doc, data)
    _plan(world, doc)


@pytest.mark.parametrize("properties", [{"default_instances": -1}, {"min_instances": -2},
                                        {"default_instances": 10**300},
                                        {"num_cpus": 10**400},
                                        {"default_instances": 1000000},
                                        {"min_instances": 5, "max_instances": 2}])
def test_the_numbers_of_the_issue_are_refused_at_validate(world, properties):
    folder, _ = world
    path = Path(folder) / f"issue_{next(_names)}.yaml"
    path.write_text(yaml.safe_dump(_compute(properties)), encoding="utf-8")
    report = validate(str(path))
    assert not report.valid
    assert [d.code for d in report.diagnostics.errors] == ["out-of-range"]
