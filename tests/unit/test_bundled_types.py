"""The bundled INDIGO-DataCloud / INFN-Cloud type files stand in for the real ones.

Every template of the shared corpus (``<repo>/../shared/corpus``) is validated twice: with
the bundled types only (the shipped import map) and with the real upstream type files
(the corpus's own import map, consulted first). Where both are accepted they must yield
the same topology (node names and types, relationships, property values and defaults);
where only one is accepted, it must be for a reason that is not about the types, except
for a refusal caused by the real type file itself (a defect upstream). Every type name a
template uses must resolve offline with the bundled types.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.render import validation_json
from orchestrator.topology.secrets import is_secret
from orchestrator.tosca.imports import ImportMap
from orchestrator.validation import ValidationReport, validate
from tests.conftest import CORPUS, require_corpus

REPO = Path(__file__).resolve().parents[2]
CORPUS_MAP = CORPUS / "import-map.yaml"
TYPES_DIR = REPO / "tosca_types"
TEMPLATE_SETS = ("indigo-tosca-templates", "indigo-tosca-types/*/examples",
                 "infn-tosca-templates")
#: folders of the real type files: a diagnostic located there is about the upstream types
UPSTREAM_TYPE_DIRS = (CORPUS / "indigo-tosca-types", CORPUS / "infn-tosca-types")
TYPE_SECTIONS = ("data_types", "artifact_types", "capability_types", "interface_types",
                 "relationship_types", "node_types", "group_types", "policy_types")
#: names a bundled file defines beyond an upstream file it stands for: a parent type the
#: devel branch uses without defining it, and types newer than master / v2.8.0
BUNDLED_ADDITIONS = {"tosca.nodes.ec3.Application", "tosca.nodes.indigo.AnsibleRecipe",
                     "tosca.artifacts.AnsibleGalaxy.collection"}
#: diagnostics meaning a type or an import is missing offline
MISSING_CODES = {"unknown-type", "import-remote-unmapped", "import-not-found"}


def _templates() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    found: set[Path] = set()
    for pattern in TEMPLATE_SETS:
        for folder in CORPUS.glob(pattern):
            found.update(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))
    return sorted(found)


TEMPLATES = _templates()


def _params() -> list:
    if not TEMPLATES:
        return [pytest.param(None, id="no-corpus")]
    return [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in TEMPLATES]


@pytest.fixture(scope="module", autouse=True)
def _no_user_config(tmp_path_factory):
    """No user import map or XDG config leaks into the validations (cached for the module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ORCHESTRATOR_IMPORT_MAP", raising=False)
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
        _bundled.cache_clear()
        _real.cache_clear()
        yield
        _bundled.cache_clear()
        _real.cache_clear()


@functools.cache
def _bundled(path: Path) -> ValidationReport:
    return validate(str(path))


@functools.cache
def _real(path: Path) -> ValidationReport:
    return validate(str(path), import_maps=[str(CORPUS_MAP)])


def _render(report: ValidationReport) -> str:
    return "\n".join(d.render() for d in report.diagnostics.sorted()) or "(no diagnostics)"


def _in_upstream_types(file: str | None) -> bool:
    if not file:
        return False
    path = Path(file) if os.path.isabs(file) else (Path.cwd() / file)
    path = path.resolve()
    return any(path.is_relative_to(folder.resolve()) for folder in UPSTREAM_TYPE_DIRS)


def _upstream_defect(report: ValidationReport) -> bool:
    """Refused only because of errors located in the real type files."""
    errors = report.diagnostics.errors
    return bool(errors) and all(_in_upstream_types(d.file) for d in errors)


def _public(properties: dict) -> dict:
    """Properties without the secret-named ones (the bundled types give secrets no default)."""
    return {k: v for k, v in (properties or {}).items() if not is_secret(k)}


def _comparable(report: ValidationReport) -> dict:
    """The topology's JSON form (as ``inspect --format json`` prints it) without what may
    differ between the two type sets: source positions, operations and artifacts."""
    topology = validation_json(report, with_topology=True)["topology"]
    nodes = {
        name: {"type": node["type"], "types": node["types"], "kind": node["kind"],
               "host": node["host"], "compute": node["compute"],
               "properties": _public(node["properties"]),
               "capabilities": {cap: _public(props)
                                for cap, props in (node["capabilities"] or {}).items()}}
        for name, node in topology["nodes"].items()}
    relationships = [{**{k: v for k, v in rel.items() if k != "operations"},
                      "properties": _public(rel["properties"])}
                     for rel in topology["relationships"]]
    return {"nodes": nodes, "relationships": relationships, "order": topology["order"],
            "inputs": topology["inputs"], "outputs": topology["outputs"],
            "policies": topology["policies"], "groups": topology["groups"]}


def _differences(left, right, path="") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                out.append(f"{path}/{key}: bundled={left.get(key)!r} real={right.get(key)!r}")
            else:
                out += _differences(left[key], right[key], f"{path}/{key}")
        return out
    return [] if left == right else [f"{path}: bundled={left!r} real={right!r}"]


# -- the corpus --------------------------------------------------------------------------------
def test_corpus_has_the_template_sets():
    require_corpus()
    assert len(TEMPLATES) >= 100, len(TEMPLATES)


@pytest.mark.parametrize("path", _params())
def test_types_resolve_with_the_bundled_files(path):
    require_corpus()
    missing = [d for d in _bundled(path).diagnostics if d.code in MISSING_CODES]
    assert not missing, "\n".join(d.render() for d in missing)


@pytest.mark.parametrize("path", _params())
def test_bundled_and_real_types_agree(path):
    require_corpus()
    bundled, real = _bundled(path), _real(path)
    if bundled.valid and real.valid:
        differences = _differences(_comparable(bundled), _comparable(real))
        assert not differences, "\n".join(differences[:40])
    elif real.valid:
        pytest.fail(f"refused with the bundled types only:\n{_render(bundled)}")
    elif bundled.valid:
        assert _upstream_defect(real), f"refused with the real types only:\n{_render(real)}"


# -- the import map ----------------------------------------------------------------------------
@functools.cache
def _yaml(path: Path) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}


def _defined_names(path: Path) -> frozenset[str]:
    data = _yaml(path)
    return frozenset(name for section in TYPE_SECTIONS for name in (data.get(section) or {}))


def _with_imports(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Names a bundled file defines, with those of the files it imports (relative paths)."""
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    names = set(_defined_names(path))
    data = _yaml(path)
    for ref in data.get("imports") or []:
        if isinstance(ref, str):
            names |= _with_imports((path.parent / ref).resolve(), seen)
    return names


def _corpus_map_entries() -> list[tuple[str, Path]]:
    data = _yaml(CORPUS_MAP)
    return [(item["url"], (CORPUS / item["path"]).resolve()) for item in data
            if "indigo-dc/tosca-types" in item["url"] or "infn-cloud/tosca-types" in item["url"]]


def _url_forms(url: str) -> list[str]:
    """The URL and the other spellings of the same file that templates use."""
    forms = [url]
    if "baltig.infn.it" in url:
        forms.append(url.replace("/tosca-types/raw/", "/tosca-types/-/raw/"))
        for tag in ("v2.8.0", "v3.4.0", "master"):
            forms += [f.replace("/v3.4.0/", f"/{tag}/").replace("/master/", f"/{tag}/")
                      for f in forms[:2]]
    elif url.startswith("https://raw.githubusercontent.com/indigo-dc/tosca-types/"):
        rest = url.removeprefix("https://raw.githubusercontent.com/indigo-dc/tosca-types/")
        branch, file = rest.split("/", 1)
        forms += [f"https://github.com/indigo-dc/tosca-types/raw/{branch}/{file}",
                  f"https://github.com/indigo-dc/tosca-types/blob/{branch}/{file}?raw=true"]
    return sorted(set(forms))


def test_every_corpus_import_url_maps_to_a_bundled_file_defining_the_same_names():
    require_corpus()
    shipped = ImportMap.load([])
    problems = []
    for url, real in _corpus_map_entries():
        for form in _url_forms(url):
            local = shipped.lookup(form)
            if local is None or not Path(local).is_file():
                problems.append(f"{form}: not mapped to a bundled file ({local})")
                continue
            if not Path(local).resolve().is_relative_to(TYPES_DIR.resolve()):
                problems.append(f"{form}: mapped outside tosca_types ({local})")
                continue
            lacking = _defined_names(real) - _with_imports(Path(local).resolve())
            if lacking:
                problems.append(f"{form} -> {local}: lacks {sorted(lacking)}")
            extra = _defined_names(Path(local).resolve()) - _with_imports(real) - BUNDLED_ADDITIONS
            if extra:
                problems.append(f"{form} -> {local}: defines more than upstream {sorted(extra)}")
    assert not problems, "\n".join(problems)
