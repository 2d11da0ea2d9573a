import os
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
#: real templates, type files and conformance suites written by others (its README says
#: what each is); read in place, never copied into the project
CORPUS = ROOT.parent / "shared" / "corpus"


def require_corpus() -> None:
    """Skip when the shared corpus is absent (a clone of the project alone); under CI=1
    its absence is a failure, like the other components CI must have."""
    if CORPUS.is_dir():
        return
    reason = f"the shared corpus is absent ({CORPUS})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it")
    pytest.skip(reason)


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> path, with the text dedented."""

    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)

    return _write


def codes(result):
    return [d.code for d in result.diagnostics]


def errors(result):
    return [(d.code, d.line) for d in result.diagnostics if d.is_error]
