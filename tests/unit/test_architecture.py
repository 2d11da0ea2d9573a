"""The import directions of docs/DESIGN are enforced with import-linter."""
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: " in result.stdout and "0 broken" in result.stdout


def test_every_diagnostic_code_is_documented():
    from orchestrator.diagnostics import CODES

    doc = (ROOT / "docs" / "diagnostics.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in doc]
    assert missing == []


def test_plan_symbols_agree():
    from orchestrator.cli.plan_view import SYMBOLS as shown
    from orchestrator.plan import SYMBOLS

    assert shown == SYMBOLS


def test_code_style_basics():
    """pyflakes and pycodestyle rules (E, F, W) hold for the package, tests and benchmarks."""
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([exe, "check", "--select", "E,F,W", "orchestrator", "tests",
                             "benchmarks"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
