"""The positioned YAML loader (orchestrator.tosca.yamlsource) against yaml.safe_load.

Whatever loads with ``yaml.safe_load`` loads to the same data (same types, same key
order) with a location for every key and item; whatever safe_load refuses gives an
error diagnostic with a position; hostile input (aliases that explode, deep nesting)
is refused quickly.
"""
from __future__ import annotations

import datetime
import math
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca import yamlsource
from orchestrator.tosca.yamlsource import Mapping, Sequence, load_yaml, where

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(p for folder in ("templates", "tosca_types", "tests/fixtures")
                for p in (ROOT / folder).rglob("*") if p.suffix in (".yaml", ".yml"))


# -- helpers -------------------------------------------------------------------------------------
def same(a, b, path="$") -> None:
    """Strict equality: same types (Mapping/Sequence count as dict/list), same key order,
    NaN equal to NaN."""
    plain_a = dict if isinstance(a, dict) else list if isinstance(a, list) else type(a)
    plain_b = dict if isinstance(b, dict) else list if isinstance(b, list) else type(b)
    assert plain_a is plain_b, f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for index, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{index}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    elif isinstance(a, tuple):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}({index})")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def load(text: str, name: str = "t.yaml"):
    diags = Diagnostics()
    return load_yaml(text, name, diags), diags


def check_positions(value, text: str, name: str = "t.yaml", seen=None) -> None:
    """Every key and item of every collection has a location inside the text."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    lines = text.splitlines() or [""]
    if isinstance(value, Mapping):
        assert value.loc.file == name and value.loc.line >= 1
        assert set(value.key_locs) == set(value)
        for key, loc in value.key_locs.items():
            assert loc.file == name
            assert 1 <= loc.line <= len(lines) + 1 and loc.column >= 1, (key, loc)
        for item in value.values():
            check_positions(item, text, name, seen)
    elif isinstance(value, Sequence):
        assert value.loc.file == name and value.loc.line >= 1
        assert len(value.item_locs) == len(value)
        for loc in value.item_locs:
            assert loc.file == name
            assert 1 <= loc.line <= len(lines) + 1 and loc.column >= 1, loc
        for item in value:
            check_positions(item, text, name, seen)


def assert_same_as_safe_load(text: str) -> None:
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        data, diags = load(text)
        assert data is None
        assert diags.has_errors, "safe_load refuses this, we should too"
        for diag in diags.errors:
            assert diag.file == "t.yaml"
        return
    data, diags = load(text)
    assert not [d for d in diags.errors if d.code != "duplicate-key"], \
        [d.render() for d in diags]
    same(data, expected)
    check_positions(data, text)


# -- the corpus ----------------------------------------------------------------------------------
def test_the_corpus_is_not_empty():
    assert len(CORPUS) > 20


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_corpus_file_loads_like_safe_load(path):
    text = path.read_bytes().decode("utf-8-sig")
    assert_same_as_safe_load(text)


# -- hand-written cases --------------------------------------------------------------------------
EDGE_CASES = {
    "empty": "",
    "comment-only": "# nothing\n",
    "null": "~\n",
    "scalar": "just text\n",
    "explicit-document": "--- \na: 1\n...\n",
    "directive": "%YAML 1.1\n---\na: 1\n",
    "anchors-and-aliases": "a: &x {b: 1, c: [1, 2]}\nd: *x\ne: [*x, *x]\n",
    "scalar-anchor": "a: &v 12\nb: *v\nc: &s text\nd: [*s, *v]\n",
    "merge-one": "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n  z: 4\n",
    "merge-list": ("a: &a {k: a, only_a: 1}\nb: &b {k: b, only_b: 2}\n"
                   "c:\n  <<: [*a, *b]\n  own: 3\n"),
    "merge-explicit-before": "a: &a {x: 1, y: 2}\nb:\n  y: 5\n  <<: *a\n",
    "merge-inline": "a:\n  <<: {x: 1}\n  y: 2\n",
    "merge-two-keys": "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: *a\n  <<: *b\n",
    "merge-nested": ("a: &a {x: 1}\nb: &b\n  <<: *a\n  y: 2\nc:\n  <<: *b\n  z: 3\n"),
    "merge-empty-list": "a:\n  <<: []\n  b: 1\n",
    # PyYAML 6.0.4 decides these by the length of the key (yaml/pyyaml#953)
    "merge-list-long-keys": ("a: &a {key: a, only_a: 1}\nb: &b {key: b, only_b: 2}\n"
                             "c:\n  <<: [*a, *b]\n  own: 3\n"),
    "merge-two-keys-long": "a: &a {xx: 1}\nb: &b {xx: 2, y: 2}\nc:\n  <<: *a\n  <<: *b\n",
    "merge-of-an-override": ("a: &a {x: 1, yy: 1}\nb: &b\n  <<: *a\n  x: 2\n  yy: 2\n"
                             "c:\n  <<: *b\n"),
    "merge-same-anchor-twice": "a: &a {x: 1, long: 2}\nb:\n  <<: [*a, *a]\n  c: 3\n",
    "merge-fanout": ("n: &n {k0: 0, k1: 1}\na: &a {<<: *n}\nb: &b {<<: *n, k1: 5}\n"
                     "r: {<<: [*a, *b]}\n"),
    "merge-int-keys": "a: &a {1: a, 10: a}\nb: &b {1: b, 10: b}\nc: {<<: [*a, *b]}\n",
    "merge-quoted-is-a-key": "a:\n  '<<': 1\n",
    "value-key": "=: 1\n",
    "tags": ("s: !!str 12\ni: !!int '42'\nf: !!float 1\nb: !!bool yes\nn: !!null ''\n"
             "bin: !!binary aGVsbG8=\nts: !!timestamp 2001-12-14\nset: !!set {a, b}\n"
             "omap: !!omap [x: 1, y: 2]\npairs: !!pairs [x: 1, x: 2]\nseq: !!seq [1]\n"
             "map: !!map {a: 1}\n"),
    "non-specific-tag": "a: ! 12\nb: ! '12'\n",
    "booleans": "a: [yes, no, on, off, true, false, True, FALSE, y, n, Yes, NO]\n",
    "nulls": "a: [~, null, Null, NULL, '']\nb:\n",
    "ints": "a: [0, -1, +2, 0x1F, 0x_1f, 017, 0o17, 0b101, 1_000, 1:20, 190:20:30]\n",
    "floats": "a: [1.5, -0.5, .5, 1e3, 1.0e3, 6.8523015e+5, 1_000.5, .inf, -.Inf, .NaN, 1:20.5]\n",
    "timestamps": ("a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\n"
                  "c: 2001-12-14 21:59:43.10 -5\nd: 2001-12-15T02:59:43.1Z\n"
                  "e: 2002-12-14 21:59:43.10\n"),
    "strings-that-look-like-other-things": "a: ['1', 'true', '~', '0x1F', 1.2.3, 1 GB, v1]\n",
    "multi-line": ("literal: |\n  line 1\n  line 2\nfolded: >\n  a\n  b\n\n  c\n"
                   "keep: |+\n  x\n\nstrip: >-\n  y\nindented: |2\n    z\n"
                   "plain: a\n  b\n  c\nquoted: \"a\\n\\tb \\u00e9\"\nsingle: 'it''s'\n"),
    "flow-and-block": ("a: {b: [1, {c: d}], e: {f: [g, h]}}\nlist:\n- [1, 2]\n- {x: y}\n"
                       "- - nested\n  - items\n- k: v\n  k2: v2\n"),
    "complex-flow": "[a, {b: c}, [d, [e]], 'f', \"g\"]\n",
    "explicit-keys": "? a\n: 1\n? b\n",
    "unicode": "ключ: значение\n名前: 値\nemoji: 😀\n'quoted ✓': \"\\u263A\"\n",
    "empty-collections": "a: {}\nb: []\nc: [{}, []]\n",
    "numeric-keys": "1: a\n2.5: b\ntrue: c\n~: d\n2001-12-14: e\n",
    "long-string": "a: " + "x" * 10_000 + "\n",
    "crlf": "a: 1\r\nb:\r\n  - 2\r\n",
    "bom-free-unicode-escapes": "a: \"\\x41\\u00e9\\U0001F600\"\n",
    "document-end-marker": "a: 1\n...\n",
    "null-key-and-value": "? \n: \n",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_case_loads_like_safe_load(name):
    assert_same_as_safe_load(EDGE_CASES[name])


REFUSED = {
    "unknown-tag": "a: !custom {b: 1}\n",
    "unknown-scalar-tag": "a: !custom x\n",
    "python-tag": "a: !!python/object/apply:os.system [ls]\n",
    "str-tag-on-mapping": "a: !!str {b: 1}\n",
    "map-tag-on-sequence": "a: !!map [1]\n",
    "seq-tag-on-mapping": "a: !!seq {b: 1}\n",
    "omap-of-scalars": "a: !!omap [b]\n",
    "int-tag-on-text": "a: !!int abc\n",
    "bad-binary": "a: !!binary 'YQ'\n",
    "impossible-date": "a: 2024-13-45\n",
    "two-documents": "a: 1\n---\nb: 2\n",
    "undefined-alias": "a: *nowhere\n",
    "duplicate-anchor": "a: &x 1\nb: &x 2\n",
    "merge-of-a-scalar": "a:\n  <<: 1\n",
    "merge-of-a-list-of-lists": "a:\n  <<: [[1]]\n",
    "merge-tag-as-value": "a: <<\n",
    "value-tag-as-value": "a: =\n",
    "unclosed-flow": "a: [1, 2\n",
    "tab-indent": "a:\n\tb: 1\n",
    "control-character": "a: b\x07c\n",
    "huge-integer": "a: " + "9" * 5000 + "\n",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_safe_load_refuses_is_a_positioned_error(name):
    text = REFUSED[name]
    with pytest.raises((yaml.YAMLError, ValueError)):
        yaml.safe_load(text)
    data, diags = load(text)
    assert data is None
    assert [d.code for d in diags.errors] == ["yaml-syntax"], [d.render() for d in diags]
    diag = diags.errors[0]
    assert diag.file == "t.yaml" and diag.line >= 1 and diag.column >= 1, diag.render()
    assert diag.message


def test_error_positions():
    assert _error("a: 1\nb: !custom x\n") == ("yaml-syntax", 2, 4)
    assert _error("a: 1\n---\nb: 2\n") == ("yaml-syntax", 2, 1)
    assert _error("a:\n  b: *nowhere\n") == ("yaml-syntax", 2, 6)
    assert _error("a: 1\nb: " + "9" * 5000 + "\n") == ("yaml-syntax", 2, 4)
    assert _error("a:\n  <<: 1\n") == ("yaml-syntax", 2, 7)
    assert _error("a: b\nc: d\x07\n") == ("yaml-syntax", 2, 5)
    assert _error("a: [1, 2\n")[0] == "yaml-syntax"


def _error(text: str):
    _data, diags = load(text)
    diag = diags.errors[0]
    return diag.code, diag.line, diag.column


# -- positions ------------------------------------------------------------------------------------
POSITIONED = """\
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      requirements:
        - local_storage: vol
        -   host: other
  list: [a, {b: c},
     d]
"""


def test_positions_of_keys_items_and_collections():
    data, diags = load(POSITIONED, "p.yaml")
    assert not diags.items
    assert data.loc == Location("p.yaml", 1, 1)
    assert data.key_locs["tosca_definitions_version"] == Location("p.yaml", 1, 1)
    assert data.key_locs["topology_template"] == Location("p.yaml", 2, 1)
    topology = data["topology_template"]
    assert topology.loc == Location("p.yaml", 3, 3)
    server = topology["node_templates"]["server"]
    assert topology["node_templates"].where("server") == Location("p.yaml", 4, 5)
    assert server.where("type") == Location("p.yaml", 5, 7)
    requirements = server["requirements"]
    assert isinstance(requirements, Sequence)
    assert requirements.loc == Location("p.yaml", 7, 9)
    assert requirements.item_locs == [Location("p.yaml", 7, 11), Location("p.yaml", 8, 13)]
    assert requirements[1].where("host") == Location("p.yaml", 8, 13)
    flow = topology["list"]
    assert flow.loc == Location("p.yaml", 9, 9)
    assert flow.item_locs == [Location("p.yaml", 9, 10), Location("p.yaml", 9, 13),
                              Location("p.yaml", 10, 6)]
    assert flow[1].where("b") == Location("p.yaml", 9, 14)
    assert str(flow.where(2)) == "p.yaml:10:6"
    # unknown keys and indices fall back to the collection's own location
    assert server.where("nope") == server.loc
    assert flow.where(99) == flow.loc
    assert where("not a collection", default=Location("x")) == Location("x")
    assert where(server, ["unhashable"]) == server.loc


def test_positions_with_crlf_and_unicode():
    data, _ = load("é: 1\r\nb:\r\n  - ü\r\n  - 😀x\r\n")
    assert data.where("b") == Location("t.yaml", 2, 1)
    assert data["b"].item_locs == [Location("t.yaml", 3, 5), Location("t.yaml", 4, 5)]


def test_merged_keys_keep_the_location_of_their_definition():
    text = "base: &b\n  x: 1\n  y: 2\nderived:\n  <<: *b\n  y: 3\n"
    data, diags = load(text)
    assert not diags.items
    derived = data["derived"]
    assert derived == {"x": 1, "y": 3}
    assert derived.where("x") == Location("t.yaml", 2, 3)  # from the anchor
    assert derived.where("y") == Location("t.yaml", 6, 3)  # the explicit override


def test_an_alias_is_the_same_object():
    data, _ = load("a: &x {b: [1]}\nc: *x\nd: [*x]\n")
    assert data["a"] is data["c"] is data["d"][0]


def test_mapping_and_sequence_api():
    mapping = Mapping({"a": 1})
    assert mapping.loc == Location("") and mapping.key_locs == {} and mapping.where("a").file == ""
    sequence = Sequence([1, 2])
    assert sequence.loc == Location("") and sequence.item_locs == []
    assert sequence.where(0) == Location("")


# -- diagnostics from the loader -------------------------------------------------------------------
def test_duplicate_key_is_reported_at_the_second_key():
    data, diags = load("a: 1\nb: 2\na: 3\n")
    assert data == {"a": 3, "b": 2}  # the last one wins, as in PyYAML
    [diag] = diags.items
    assert (diag.code, diag.line, diag.column) == ("duplicate-key", 3, 1)
    assert "line 1" in diag.message


def test_explicit_key_overriding_a_merged_one_is_not_a_duplicate():
    _data, diags = load("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n")
    assert not diags.items
    _data, diags = load("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n  x: 3\n")
    assert [(d.code, d.line) for d in diags.items] == [("duplicate-key", 5)]


def test_non_scalar_key_is_reported_and_dropped():
    data, diags = load("a:\n  ? [x, y]\n  : 1\n  b: 2\n")
    assert data == {"a": {"b": 2}}
    [diag] = diags.items
    assert (diag.code, diag.line, diag.column) == ("wrong-type", 2, 5)


def test_recursive_alias_is_refused():
    data, diags = load("a: &x [1, *x]\n")
    assert data is None
    assert [(d.code, d.line, d.column) for d in diags.errors] == [("yaml-syntax", 1, 4)]


def test_billion_laughs_is_refused_quickly():
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for index in range(1, 12):
        previous = "a" if index == 1 else f"l{index - 1}"
        lines.append(f"l{index}: &l{index} [" + ", ".join([f"*{previous}"] * 9) + "]")
    start = time.perf_counter()
    data, diags = load("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 5
    assert data is None
    [diag] = diags.errors
    assert diag.code == "yaml-bomb" and diag.line > 1


def test_aliases_within_the_budget_are_fine():
    data, diags = load("a: &a [1, 2, 3]\nb: &b [*a, *a, *a]\nc: [*b, *b]\n")
    assert not diags.items
    assert data["c"] == [[[1, 2, 3]] * 3] * 2


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  "".join("  " * i + "- \n" for i in range(2_000)),
                                  "- " * 100_000 + "x\n",
                                  "{a: " * 100_000 + "1" + "}" * 100_000],
                         ids=["flow-sequence", "block-sequence", "compact-sequence",
                              "flow-mapping"])
def test_deep_nesting_is_refused_with_a_position(text):
    data, diags = load(text)
    assert data is None
    [diag] = diags.errors
    assert diag.code == "yaml-too-deep"
    assert diag.line >= 1 and diag.column >= 1


def test_nesting_at_the_limit_is_fine():
    depth = yamlsource.MAX_DEPTH
    data, diags = load("[" * depth + "]" * depth)
    assert not diags.items
    for _ in range(depth - 1):
        data = data[0]
    assert data == []
    _data, diags = load("[" * (depth + 1) + "]" * (depth + 1))
    assert [d.code for d in diags.errors] == ["yaml-too-deep"]


def test_text_over_the_size_limit(monkeypatch):
    monkeypatch.setattr(yamlsource, "MAX_FILE_BYTES", 100)
    data, diags = load("a: " + "é" * 60 + "\n")
    assert data is None
    assert [d.code for d in diags.errors] == ["file-too-large"]


def test_loading_leaves_the_garbage_collector_as_it_was():
    import gc

    assert gc.isenabled()
    load("a: [1, 2]\n")
    assert gc.isenabled()
    gc.disable()
    try:
        load("a: [1, 2]\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- Location and Diagnostics ---------------------------------------------------------------------
def test_location_api():
    loc = Location("f.yaml", 3, 7)
    assert (loc.file, loc.line, loc.column) == ("f.yaml", 3, 7)
    assert str(loc) == "f.yaml:3:7"
    assert str(Location("f.yaml")) == "f.yaml"
    assert Location("f.yaml") == Location("f.yaml", 0, 0)
    assert Location("f.yaml", 3, 7) == loc and hash(Location("f.yaml", 3, 7)) == hash(loc)
    assert Location(file="a", line=1, column=2).column == 2
    with pytest.raises(AttributeError):
        loc.line = 4  # type: ignore[misc]


def test_error_count_follows_the_items():
    diags = Diagnostics()
    assert diags.error_count == 0 and not diags.has_errors
    diags.warning("deprecated", "w")
    assert diags.error_count == 0 and not diags.has_errors
    diags.error("wrong-type", "e", Location("f", 1, 1))
    diags.error("wrong-type", "e", Location("f", 1, 1))  # de-duplicated
    assert diags.error_count == 1 and diags.has_errors
    other = Diagnostics()
    other.error("missing-field", "m")
    diags.extend(other)
    assert diags.error_count == 2 == len(diags.errors)
    diags.items = [d for d in diags.items if d.code != "wrong-type"]
    assert diags.error_count == 1 == len(diags.errors)


# -- generated documents ------------------------------------------------------------------------
KEYS = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    st.integers(-10**6, 10**6),
    st.booleans(),
    st.none(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["yes", "No", "on", "OFF", "~", "null", "0x1F", "017", "1:20", "1_000",
                     "2001-12-14", "1e3", ".inf", "<<", "=", "- x", "a: b", "#c", "'q'",
                     "\"", "&a", "*a", "!tag", "%", "@", "`", "|", ">", "...", "---"]),
    st.dates(),
    st.datetimes(timezones=st.none()),
    st.binary(max_size=20),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=30,
)
GENERATED = settings(deadline=None, database=None, derandomize=True, max_examples=300,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@GENERATED
@given(data=DOCUMENTS, flow=st.sampled_from([False, True, None]), width=st.sampled_from(
    [80, 20, 10**6]), indent=st.sampled_from([2, 4]), unicode=st.booleans())
def test_generated_documents_load_like_safe_load(data, flow, width, indent, unicode):
    text = yaml.safe_dump(data, default_flow_style=flow, width=width, indent=indent,
                          allow_unicode=unicode, sort_keys=False)
    assert_same_as_safe_load(text)


@GENERATED
@given(data=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                            DOCUMENTS, min_size=1, max_size=6),
       flow=st.sampled_from([False, None]))
def test_generated_key_positions_point_at_the_keys(data, flow):
    text = yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, width=10**6)
    loaded, diags = load(text)
    assert not diags.items
    lines = text.splitlines()
    _keys_at_their_positions(loaded, lines)


def _keys_at_their_positions(value, lines) -> None:
    if isinstance(value, Mapping):
        for key, loc in value.key_locs.items():
            if isinstance(key, str) and key.isidentifier() and key.isascii():
                line = lines[loc.line - 1]
                at = line[loc.column - 1:]
                assert at.startswith((key, f"'{key}'", f'"{key}"')), (key, loc, line)
        for item in value.values():
            _keys_at_their_positions(item, lines)
    elif isinstance(value, Sequence):
        for item in value:
            _keys_at_their_positions(item, lines)


@GENERATED
@given(data=DOCUMENTS)
def test_generated_anchors_and_aliases(data):
    """Repeated subtrees are dumped as anchors and aliases; they load back the same."""
    doc = {"first": data, "second": data, "list": [data, data]}
    text = yaml.safe_dump(doc, sort_keys=False)
    assert_same_as_safe_load(text)
    loaded, _ = load(text)
    if isinstance(data, (dict, list)):
        assert loaded["first"] is loaded["second"] is loaded["list"][0]


def test_dates_and_binary_come_back_typed():
    data, _ = load(yaml.safe_dump({"d": datetime.date(2024, 1, 2), "b": b"\x00\xff"}))
    assert data == {"d": datetime.date(2024, 1, 2), "b": b"\x00\xff"}
