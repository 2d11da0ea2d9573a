"""Property-based fuzzing of the front end.

The valid corpus (tests/fixtures/valid) is loaded as plain data, mutated (keys deleted,
values replaced by wrong types, random text, deep nesting, huge numbers, malformed
intrinsic functions, misspelt keys), dumped back to YAML and validated. Raw random text
is fuzzed too. Whatever comes in, ``load_template`` and ``service.validate`` never
raise, and a template that is not ok carries at least one error diagnostic with a
registered code and a file.

The examples are derandomised so the suite is reproducible; set
ORCHESTRATOR_FUZZ_RANDOM=1 (and ORCHESTRATOR_FUZZ_EXAMPLES=N) to explore further.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator import service
from orchestrator.cli import render
from orchestrator.diagnostics import CODES
from orchestrator.tosca import load_template

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
DOCS = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in VALID}
NAMES = sorted(DOCS)

EXAMPLES = int(os.environ.get("ORCHESTRATOR_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=not os.environ.get("ORCHESTRATOR_FUZZ_RANDOM"),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)


def examples(default: int) -> settings:
    return settings(FUZZ, max_examples=EXAMPLES or default)


# -- a scratch copy of the valid corpus, so relative and circular imports still resolve ---------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(FIXTURES / "valid", root / "valid")
    return root / "valid"


_counter = itertools.count()


def _write_doc(workdir: Path, doc) -> Path:
    path = workdir / f"mutant_{next(_counter)}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120),
                    encoding="utf-8")
    return path


def _write_text(workdir: Path, text: str | bytes) -> Path:
    path = workdir / f"raw_{next(_counter)}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


# -- the properties -----------------------------------------------------------------------------
EXAMPLE_TIME_LIMIT = 30  # seconds; one example normally takes milliseconds


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Turn a hang (an infinite loop in the code under test) into a failure."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: infinite loop?")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check(path: Path, sets: tuple[str, ...] = ()) -> None:
    with _time_limit(EXAMPLE_TIME_LIMIT):
        _check_untimed(path, sets)


def _check_untimed(path: Path, sets: tuple[str, ...]) -> None:
    """load_template and service.validate never raise and always explain a failure."""
    result = load_template(str(path), sets=sets)
    for diag in result.diagnostics:
        assert diag.code in CODES
        diag.render()
    if not result.ok:
        errors = result.diagnostics.errors
        assert errors, f"not ok but no error diagnostic: {[d.render() for d in result.diagnostics]}"
        assert any(d.file for d in errors), [d.render() for d in errors]
        for diag in errors:
            assert diag.file, diag.render()
            assert diag.message
    report = service.validate(str(path), sets=sets)
    for diag in report.diagnostics:
        assert diag.code in CODES
    if not report.valid:
        errors = report.diagnostics.errors
        assert errors, f"invalid but no error: {[d.render() for d in report.diagnostics]}"
        for diag in errors:
            assert diag.file, diag.render()
    else:
        assert result.ok
        json.dumps(report.topology.to_dict())
    # the CLI views of the report render too
    json.dumps(render.validation_json(report, with_topology=True))
    render.validation_text(report)
    if report.valid:
        render.topology_text(report.topology)


# -- value strategies ---------------------------------------------------------------------------
HUGE_NUMBERS = st.sampled_from([10**400, -(10**400), -1, 0, 2**63, -(2**63) - 1, 1e308,
                                -1e308, 5e-324, float("inf"), float("-inf"), float("nan")])
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=20),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    st.builds(lambda ch, n: ch * n, st.characters(codec="utf-8", exclude_categories=("Cs",)),
              st.integers(1_000, 200_000)),
    st.sampled_from(["", " ", "SELF", "HOST", "TARGET", "SOURCE", "UNBOUNDED", "1 GB", "8 GiB",
                     "0 MB", "-1 GB", "10 XB", "true", "null", "~", "tosca.nodes.Compute",
                     "tosca.nodes.Root", "tosca_simple_yaml_1_3", "{get_input: x}", "*alias",
                     "&anchor", "!!python/object", "%", "@", "`", "---", "...", "\t", "\x00",
                     "\ufeff", "\u202e", "😀", "a" * 5000]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), HUGE_NUMBERS, TEXT)


def _nest(value, depth: int, as_map: bool):
    for level in range(depth):
        value = {f"k{level}": value} if as_map else [value]
    return value


DEEP = st.builds(_nest, SCALARS, st.integers(1, 60), st.booleans())
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=12), st.integers()),
                                               children, max_size=4)),
    max_leaves=12,
)

FUNCTION_NAMES = ["get_input", "get_property", "get_attribute", "concat", "join", "token",
                  "get_operation_output", "get_nodes_of_type", "get_artifact",
                  "get_inpt", "get_propery", "concatt"]


def function_maps(node_names: list[str], input_names: list[str]):
    entity = st.sampled_from(["SELF", "HOST", "SOURCE", "TARGET", *node_names, "no_such_node"])
    name = st.sampled_from([*input_names, "no_such_input", "host", "num_cpus", "port",
                            "private_address", "Standard", "create", "size", "0"])
    arg = st.one_of(entity, name, SCALARS, st.integers(-3, 3))
    odd = st.one_of(st.lists(name, max_size=2), st.dictionaries(name, name, max_size=1))
    args = st.one_of(
        arg,
        st.lists(arg, max_size=6),
        st.lists(st.one_of(arg, odd), max_size=5),
        st.tuples(entity, name, odd).map(list),
        st.tuples(entity, name).map(list),
        st.tuples(entity, name, name).map(list),
        st.tuples(entity, name, name, st.integers(-3, 3)).map(list),
        st.tuples(st.lists(arg, max_size=4), TEXT).map(list),
        st.tuples(TEXT, TEXT, st.integers(-3, 3)).map(list),
        STRUCTURES,
    )
    simple = st.builds(lambda fn, a: {fn: a}, st.sampled_from(FUNCTION_NAMES), args)
    # functions nested in functions, and a few classic malformed ones
    nested = st.builds(lambda outer, inner: {outer: [inner, "x", 0]},
                       st.sampled_from(["concat", "token", "join"]), simple)
    fixed = st.sampled_from([{"concat": 5}, {"join": 5}, {"token": "abc"}, {"get_input": []},
                             {"get_input": None}, {"get_property": "SELF"},
                             {"get_property": []}, {"get_attribute": [None, None]},
                             {"get_input": {"get_input": "x"}}, {"concat": [{"concat": 5}]},
                             {"get_nodes_of_type": ["x"]}, {"get_input": ["x", 99]},
                             {"get_property": ["SELF", "SELF", "SELF"]}])
    return st.one_of(simple, nested, fixed)


# -- mutations ----------------------------------------------------------------------------------
def _slots(doc) -> list[tuple]:
    """(container, key) for every value in the document, breadth first, with paths as ids."""
    slots = []
    queue = [doc]
    seen = set()
    while queue:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                slots.append((node, key))
                queue.append(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                slots.append((node, index))
                queue.append(value)
    return slots


def _names(doc, section: str) -> list[str]:
    topology = doc.get("topology_template") if isinstance(doc, dict) else None
    block = topology.get(section) if isinstance(topology, dict) else None
    return [str(k) for k in block] if isinstance(block, dict) else []


def _typo(key: str, data) -> str:
    if not key:
        return "x"
    index = data.draw(st.integers(0, len(key) - 1), label="typo at")
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "case"]), label="typo")
    if kind == "drop":
        return key[:index] + key[index + 1:] or "x"
    if kind == "double":
        return key[:index] + key[index] + key[index:]
    if kind == "swap" and index + 1 < len(key):
        return key[:index] + key[index + 1] + key[index] + key[index + 2:]
    return key.swapcase()


NODE_TYPES = ["tosca.nodes.Root", "tosca.nodes.Compute", "tosca.nodes.SoftwareComponent",
              "tosca.nodes.BlockStorage", "tosca.nodes.DBMS", "tosca.nodes.Database",
              "tosca.nodes.WebServer", "tosca.nodes.network.Network", "tosca.nodes.network.Port",
              "tosca.nodes.Storage.BlockStorage", "tosca.nodes.LoadBalancer", "Compute",
              "tosca:Compute", "orchestrator.nodes.Compute", "tosca.nodes.Compte"]


def _requirement_entries(doc) -> list[tuple[dict, str]]:
    """(requirement entry, requirement name) for every requirement of every node."""
    entries = []
    topology = doc.get("topology_template") if isinstance(doc, dict) else None
    nodes = topology.get("node_templates") if isinstance(topology, dict) else None
    for body in (nodes.values() if isinstance(nodes, dict) else []):
        reqs = body.get("requirements") if isinstance(body, dict) else None
        for entry in (reqs if isinstance(reqs, list) else []):
            if isinstance(entry, dict) and len(entry) == 1:
                entries.append((entry, next(iter(entry))))
    return entries


def _retarget(doc, data) -> None:
    """Point a requirement at another node (itself included): cycles, mismatches."""
    entries = _requirement_entries(doc)
    nodes = _names(doc, "node_templates")
    if not entries or not nodes:
        return
    entry, name = data.draw(st.sampled_from(entries), label="requirement")
    target = data.draw(st.sampled_from(nodes), label="target")
    if isinstance(entry[name], dict):
        entry[name]["node"] = target
    else:
        entry[name] = target


def _retype(doc, data) -> None:
    topology = doc.get("topology_template") if isinstance(doc, dict) else None
    nodes = topology.get("node_templates") if isinstance(topology, dict) else None
    names = [n for n, b in nodes.items() if isinstance(b, dict)] if isinstance(nodes, dict) \
        else []
    if names:
        node = nodes[data.draw(st.sampled_from(names), label="node")]
        node["type"] = data.draw(st.sampled_from(NODE_TYPES), label="type")


def mutate(doc, data) -> None:
    op = data.draw(st.sampled_from(["delete", "scalar", "structure", "deep", "function",
                                    "rename", "wrap-list", "huge", "retarget", "retype"]),
                   label="op")
    if op == "retarget":
        return _retarget(doc, data)
    if op == "retype":
        return _retype(doc, data)
    slots = _slots(doc)
    if not slots:
        return
    container, key = data.draw(st.sampled_from(slots), label="slot")
    if op == "delete":
        if isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
        return
    if op == "rename":
        if isinstance(container, dict) and isinstance(key, str):
            new = _typo(key, data)
            if new not in container:
                container[new] = container.pop(key)
        return
    if op == "scalar":
        value = data.draw(SCALARS, label="scalar")
    elif op == "structure":
        value = data.draw(STRUCTURES, label="structure")
    elif op == "deep":
        value = data.draw(DEEP, label="deep")
    elif op == "huge":
        value = data.draw(HUGE_NUMBERS, label="huge")
    elif op == "wrap-list":
        value = [container[key]]
    else:
        value = data.draw(function_maps(_names(doc, "node_templates"), _names(doc, "inputs")),
                          label="function")
    container[key] = value


@examples(80)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_mutated_corpus_never_raises(workdir, name, data):
    doc = copy.deepcopy(DOCS[name])
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        mutate(doc, data)
    _check(_write_doc(workdir, doc))


REPO = Path(__file__).resolve().parents[2]
#: type files to mutate, with the valid template that uses them
TYPE_FILES = {
    "custom": (FIXTURES / "valid" / "lib" / "custom_types.yaml", "relative_import.yaml"),
    "orchestrator-compute": (REPO / "tosca_types" / "orchestrator" / "compute.yaml",
                             "orchestrator_gpu_vm.yaml"),
}
TYPE_DOCS = {key: yaml.safe_load(path.read_text(encoding="utf-8"))
             for key, (path, _user) in TYPE_FILES.items() if path.is_file()}


@examples(40)
@given(key=st.sampled_from(sorted(TYPE_DOCS)), data=st.data())
def test_mutated_type_definitions_never_raise(workdir, key, data):
    """Broken type definitions (imported) are diagnosed, not crashed on."""
    types = copy.deepcopy(TYPE_DOCS[key])
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        mutate(types, data)
    types_path = _write_doc(workdir, types)
    root = copy.deepcopy(DOCS[TYPE_FILES[key][1]])
    root["imports"] = [types_path.name]
    _check(_write_doc(workdir, root))


@examples(40)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_function_maps_in_properties_never_raise(workdir, name, data):
    """Put malformed or dangling intrinsic functions where values are evaluated."""
    doc = copy.deepcopy(DOCS[name])
    nodes = _names(doc, "node_templates")
    functions = function_maps(nodes, _names(doc, "inputs"))
    topology = doc["topology_template"]
    target = data.draw(st.sampled_from(["property", "capability", "output", "operation",
                                        "input-default"]), label="where")
    value = data.draw(functions, label="function")
    node = topology["node_templates"][data.draw(st.sampled_from(nodes), label="node")]
    if target == "property":
        node.setdefault("properties", {})[data.draw(st.sampled_from(
            ["component_version", "size", "port", "name", "ip_version", "order", "x"]))] = value
    elif target == "capability":
        caps = node.setdefault("capabilities", {})
        cap = caps.setdefault(data.draw(st.sampled_from(["host", "os", "endpoint"])), {})
        if isinstance(cap, dict):
            cap.setdefault("properties", {})[data.draw(st.sampled_from(
                ["num_cpus", "mem_size", "distribution", "gpus", "port"]))] = value
    elif target == "output":
        topology.setdefault("outputs", {})["fuzzed"] = {"value": value}
    elif target == "operation":
        node.setdefault("interfaces", {}).setdefault("Standard", {})["create"] = {
            "implementation": "x.sh", "inputs": {"fuzzed": value, "other": 1}}
    else:
        topology.setdefault("inputs", {})["fuzzed"] = {"type": "string", "default": value}
    _check(_write_doc(workdir, doc))


@examples(20)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_mutated_corpus_with_input_values_never_raises(workdir, name, data):
    doc = DOCS[name]
    inputs = _names(doc, "inputs") or ["x"]
    value = data.draw(st.one_of(SCALARS.filter(lambda v: not isinstance(v, float)),
                                STRUCTURES, DEEP), label="value")
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    except (ValueError, yaml.YAMLError):
        text = str(value)
    if text.endswith("\n..."):
        text = text[:-4].strip()
    sets = (f"{data.draw(st.sampled_from(inputs), label='input')}={text}",)
    path = workdir / name
    _check(path, sets)


@examples(40)
@given(text=st.text(max_size=400))
@example(text="")
@example(text="# only a comment\n")
@example(text="~\n")
@example(text="---\n...\n")
@example(text="[]\n")
@example(text="{}\n")
@example(text="tosca_definitions_version: tosca_simple_yaml_1_3\n")
@example(text="tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template: ~\n")
@example(text="tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template: {}\n")
@example(text="a: *b\n")
@example(text="\ufeff")
def test_raw_text_never_raises(workdir, text):
    _check(_write_text(workdir, text))


@examples(20)
@given(raw=st.binary(max_size=400))
def test_raw_bytes_never_raise(workdir, raw):
    _check(_write_text(workdir, raw))


TOKENS = ["tosca_definitions_version: tosca_simple_yaml_1_3", "topology_template:",
          "  node_templates:", "    a:", "      type: tosca.nodes.Compute", "  inputs:",
          "    x: {type: integer, default: 1}", "imports: [lib/custom_types.yaml]",
          "- ", "[", "]", "{", "}", ": ", "&a ", "*a", "<<: *a", "? ", "!!str ", "!!binary ",
          "|", ">", "'", '"', "#", "\t", "---", "...", "%YAML 1.2", "\n", "\n  ", "\n    "]


@examples(40)
@given(parts=st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=40))
def test_yaml_shaped_text_never_raises(workdir, parts):
    _check(_write_text(workdir, "".join(parts)))


# -- regressions: shapes the fuzzer found, pinned as plain examples -----------------------------
_HEAD = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
REGRESSIONS = {
    "group-member-is-a-list": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "  groups:\n    g:\n      type: tosca.groups.Root\n      members: [[a]]\n"),
    "group-member-is-a-map": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "  groups:\n    g:\n      type: tosca.groups.Root\n      members: [{a: 1}]\n"),
    "policy-target-is-a-list": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "  policies:\n    - p:\n        type: tosca.policies.Placement\n"
        "        targets: [[a]]\n"),
    "policy-target-is-a-map": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "  policies:\n    - p:\n        type: tosca.policies.Placement\n"
        "        targets: [{a: 1}]\n"),
    "import-name-too-long": _HEAD + "imports:\n  - " + "a" * 5000 + ".yaml\n",
    "import-path-component-too-long": _HEAD + "imports:\n  - lib/" + "b" * 300 + "/x.yaml\n",
    "import-name-with-nul": _HEAD + 'imports:\n  - "a\\0b.yaml"\n',
    "requirement-node-is-a-list": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "    b:\n      type: tosca.nodes.SoftwareComponent\n"
        "      requirements:\n        - host: {node: [a]}\n"),
    "relationship-is-a-list": _HEAD + (
        "topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Compute}\n"
        "    b:\n      type: tosca.nodes.SoftwareComponent\n"
        "      requirements:\n        - host: {node: a, relationship: [x]}\n"),
    "huge-integer": _HEAD + "metadata:\n  n: " + "9" * 5000 + "\n",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regressions(workdir, name):
    path = workdir / f"regression_{name}.yaml"
    path.write_text(REGRESSIONS[name], encoding="utf-8")
    _check(path)


def _validate_in_subprocess(tmp_path: Path, path: Path, suspect: str,
                            timeout: int = 15) -> subprocess.CompletedProcess:
    """``orchestrator validate --format json`` in a child, failing the test on a hang."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("ORCHESTRATOR_IMPORT_MAP", None)
    try:
        return subprocess.run([sys.executable, "-m", "orchestrator", "validate", str(path),
                               "--format", "json"], check=False, capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"orchestrator validate did not finish within {timeout} s ({suspect})")


HOSTING_CYCLE = _HEAD + """\
node_types:
  corpus.nodes.Anywhere:
    derived_from: tosca.nodes.SoftwareComponent
    capabilities:
      host:
        type: tosca.capabilities.Container
    requirements:
      - host:
          capability: tosca.capabilities.Container
          relationship: tosca.relationships.HostedOn
topology_template:
  node_templates:
    a:
      type: corpus.nodes.Anywhere
      requirements:
        - host: b
    b:
      type: corpus.nodes.Anywhere
      requirements:
        - host: {host_of_b}
      properties:
        component_version: { get_property: [HOST, no_such_property] }
"""


@pytest.mark.parametrize("shape", ["two-node-cycle", "self-hosted"])
def test_get_property_host_terminates_on_a_hosting_cycle(tmp_path, shape):
    """get_property HOST walks up the hosting chain; a cycle in it must not hang."""
    text = HOSTING_CYCLE.replace("{host_of_b}", "a" if shape == "two-node-cycle" else "b")
    path = tmp_path / "hosting_cycle.yaml"
    path.write_text(text, encoding="utf-8")
    proc = _validate_in_subprocess(tmp_path, path, "infinite loop")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    codes = {d["code"] for d in json.loads(proc.stdout)["diagnostics"]}
    assert codes & {"dependency-cycle", "unresolved-reference"}, codes


FUNCTION_TEMPLATE = _HEAD + """\
topology_template:
  inputs:
    settings: {type: map, default: {a: 1}}
  node_templates:
    server:
      type: tosca.nodes.Compute
      artifacts:
        installer: {file: install.sh}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host: server
  outputs:
    fuzzed:
      value: VALUE
"""

#: argument shapes the fuzzer found or that sit next to them: lists and maps where a name
#: (capability, property, attribute, input key, ...) is expected
ODD_FUNCTION_ARGUMENTS = [
    "{get_property: [server, host, [num_cpus]]}",
    "{get_property: [server, host, {a: 1}]}",
    "{get_property: [app, host, [num_cpus]]}",
    "{get_property: [app, host, host, [num_cpus]]}",
    "{get_property: [server, [host], num_cpus]}",
    "{get_property: [[server], host, num_cpus]}",
    "{get_attribute: [server, host, [ip_address]]}",
    "{get_attribute: [server, [private_address]]}",
    "{get_attribute: [app, host, [private_address]]}",
    "{get_input: [settings, [a]]}",
    "{get_input: [settings, {a: 1}]}",
    "{get_input: [[settings]]}",
    "{get_operation_output: [server, [Standard], create, out]}",
    "{get_artifact: [server, [installer]]}",
    "{get_nodes_of_type: {a: 1}}",
    "{token: [[a], ',', 0]}",
    "{join: [[[a]], ',']}",
    "{concat: [{get_property: [server, host, [num_cpus]]}]}",
]


@pytest.mark.parametrize("value", ODD_FUNCTION_ARGUMENTS)
def test_function_arguments_of_any_shape(workdir, value):
    path = workdir / "odd_function.yaml"
    path.write_text(FUNCTION_TEMPLATE.replace("VALUE", value), encoding="utf-8")
    _check(path)


REDOS = _HEAD + """\
node_types:
  corpus.nodes.Named:
    derived_from: tosca.nodes.Root
    properties:
      label:
        type: string
        constraints:
          - pattern: "(a+)+$"
topology_template:
  node_templates:
    named:
      type: corpus.nodes.Named
      properties:
        label: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab
"""


def test_pattern_constraint_cannot_hang_validation(tmp_path):
    """A pattern with catastrophic backtracking (ReDoS) must not stall validate."""
    path = tmp_path / "redos.yaml"
    path.write_text(REDOS, encoding="utf-8")
    proc = _validate_in_subprocess(tmp_path, path, "regex backtracking")
    assert proc.returncode in (0, 1), proc.stderr
    assert "internal error" not in proc.stderr
    json.loads(proc.stdout)
