"""The node image build tells what debootstrap is doing while it runs."""
import sys

import pytest

from orchestrator.providers.base import ProviderError
from orchestrator.providers.local import image

FAKE_DEBOOTSTRAP = r"""
import sys, time
print("I: Retrieving InRelease")
print("I: Checking Release signature")
for name in ("libc6", "bash", "dash"):
    print(f"I: Retrieving {name} 1.0")
    time.sleep(0.05)
print("I: Unpacking required packages...")
print("I: Unpacking libc6:amd64...")
print("I: Unpacking bash:amd64...")
print("W: a warning")
print("I: Configuring required packages...")
print("I: Base system installed successfully.")
sys.exit(int(sys.argv[1]))
"""


def _run(code: int, monkeypatch, heartbeat: float = 0.0) -> list[str]:
    monkeypatch.setattr(image, "_HEARTBEAT_S", heartbeat)
    said: list[str] = []
    image._run_streaming([sys.executable, "-c", FAKE_DEBOOTSTRAP, str(code)], said.append)
    return said


def test_phases_counts_and_warnings_are_told(monkeypatch):
    said = _run(0, monkeypatch)
    phases = [line.split("...")[0] for line in said if line.endswith(" s)") and "..." in line]
    assert phases == ["debootstrap: downloading packages", "debootstrap: unpacking packages",
                      "debootstrap: configuring packages"]
    counts = [line for line in said if "so far" in line]
    assert "debootstrap: downloading packages, 3 so far (0 s)" in counts
    assert "W: a warning" in said


def test_no_heartbeat_lines_within_ten_seconds(monkeypatch):
    said = _run(0, monkeypatch, heartbeat=10.0)
    assert not [line for line in said if "so far" in line]


def test_a_failed_build_names_the_command_and_its_last_lines(monkeypatch):
    monkeypatch.setattr(image, "_HEARTBEAT_S", 10.0)
    with pytest.raises(ProviderError) as caught:
        image._run_streaming([sys.executable, "-c", FAKE_DEBOOTSTRAP, "3"], lambda _: None)
    assert "exit 3" in str(caught.value) and "Base system installed" in str(caught.value)


def test_packages_are_counted_in_each_phase(monkeypatch):
    said = _run(0, monkeypatch)
    assert any(line.startswith("debootstrap: unpacking packages, 2 so far") for line in said)
