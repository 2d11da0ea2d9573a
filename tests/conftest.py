import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


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
