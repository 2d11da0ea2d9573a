"""The OASIS TOSCA TC conformance suites (``../shared/corpus/oasis-tosca-tests/tests/``),
run case by case against each case's expected outcome.

A case's outcome is ``validate(...).valid``: valid or invalid, nothing finer (the suites
name their own error classes, which are not ours). Each suite says how a case states what
is expected (``SUITES``). A case listed in ``KNOWN_MISSES`` is one we knowingly judge
otherwise, with the reason; its test asserts that it *still* misses, so a change that
fixes it fails here until the table is updated. Nothing is skipped but the whole module,
when the corpus is absent (``require_corpus``: a skip locally, a failure under CI=1).

Import policy: the service's default (imports confined to the template's folder), plus
the corpus' ``import-map.yaml``, which maps the suite's remote imports
(``https://github.com/oasis-open/tosca-test-assertions/...``) to the suite's own
``dependencies/`` folder, so the remote-import cases run without network.
``allow_local_imports`` is not needed by the 1.0 suite; a suite whose cases import
``../`` above their folder may set it in its ``Suite`` (a local conformance run).

Adding the 2.0 suite (``tosca_2_0/``, 423 cases, each ``X.yaml`` with an ``X_test.py``
asserting exit code 0 = valid, 1 = invalid) is one more ``Suite`` entry with its own
``expects_invalid``, once a 2.0 front end exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.tosca import LoadOptions
from orchestrator.validation import validate
from tests.conftest import CORPUS, require_corpus

SUITES_ROOT = CORPUS / "oasis-tosca-tests" / "tests"
IMPORT_MAP = CORPUS / "import-map.yaml"

#: (suite, case file name) -> why our outcome differs from the case's expectation
KNOWN_MISSES: dict[tuple[str, str], str] = {
    ("tosca_simple_yaml_1_0", "3.1.2-tosca_definitions_version-05-not_first_line.yml"):
        "expects an error for tosca_definitions_version after 'description'; ours is the "
        "warning version-not-first (an error under --strict): the version is unambiguous "
        "wherever it is, and yaml.dump sorts keys, so generated templates (our own tests' "
        "among them) put it after 'description' or 'imports'",
}

_RAISES_ERROR = re.compile(r"(?<!optional )assert raises the error")
_ERRORS_TAG = re.compile(r"^\s*oasis\.testAssertion\.tags\.errors\s*:", re.MULTILINE)


def expects_invalid_1_0(path: Path) -> bool:
    """TOSCA Simple Profile 1.0 suite: invalid when the metadata has
    ``oasis.testAssertion.tags.errors`` or a predicate ``assert raises the error``
    (``optional assert raises the warning`` keeps a case valid). Read from the text: some
    cases are not loadable YAML (an undefined alias), which is what they test."""
    text = path.read_text(encoding="utf-8")
    return bool(_ERRORS_TAG.search(text) or _RAISES_ERROR.search(text))


@dataclass(frozen=True)
class Suite:
    folder: str
    pattern: str
    expects_invalid: Callable[[Path], bool]
    options: LoadOptions
    #: the fewest cases that must match their expectation (the issue's target)
    target: int


SUITES = {
    "tosca_simple_yaml_1_0": Suite("tosca_simple_yaml_1_0", "*.yml", expects_invalid_1_0,
                                   LoadOptions(import_maps=(str(IMPORT_MAP),)), target=48),
}


def _cases() -> list:
    cases = []
    for name, suite in SUITES.items():
        files = sorted((SUITES_ROOT / suite.folder).glob(suite.pattern))
        cases += [pytest.param(name, path.name, id=f"{name}/{path.stem}") for path in files]
    return cases


CASES = _cases()


def _outcome(suite_name: str, case: str) -> tuple[bool, bool, str]:
    """(expected valid, judged valid, the diagnostics rendered)."""
    suite = SUITES[suite_name]
    path = SUITES_ROOT / suite.folder / case
    report = validate(str(path), options=suite.options)
    rendered = "\n".join(d.render() for d in report.diagnostics) or "(no diagnostics)"
    return not suite.expects_invalid(path), report.valid, rendered


def test_the_suites_are_there():
    require_corpus()
    for name, suite in SUITES.items():
        assert list((SUITES_ROOT / suite.folder).glob(suite.pattern)), name
    assert len([c for c in CASES if c.values[0] == "tosca_simple_yaml_1_0"]) == 50


def test_the_known_misses_name_real_cases_within_the_target():
    require_corpus()
    names = {tuple(case.values) for case in CASES}
    assert not set(KNOWN_MISSES) - names, "stale entries in KNOWN_MISSES"
    for name, suite in SUITES.items():
        total = sum(1 for case in CASES if case.values[0] == name)
        misses = sum(1 for suite_name, _ in KNOWN_MISSES if suite_name == name)
        assert total - misses >= suite.target, f"{name}: {total - misses}/{total} match"


@pytest.mark.parametrize("suite,case", CASES or [pytest.param(None, None, id="no-corpus")])
def test_case_outcome(suite, case):
    require_corpus()
    expected, judged, rendered = _outcome(suite, case)
    reason = KNOWN_MISSES.get((suite, case))
    want = "valid" if expected else "invalid"
    if reason is None:
        assert judged == expected, f"{case}: expected {want}, judged otherwise:\n{rendered}"
    else:
        assert judged != expected, (f"{case} is a known miss ({reason}) but now matches its "
                                    f"expectation ({want}): remove it from KNOWN_MISSES")
