"""Throwaway Debian 12 containers (the local provider's node image) that the role tests run
playbooks against, over SSH as the orchestrator does: in check mode (what a role would
write) or for real (test_roles_hardware.py). Never the machine running the tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
IMAGE = "localhost/orchestrator-node:bookworm"
VENV_BIN = Path(os.sys.executable).parent


@contextmanager
def node(folder: Path, hostname: str = "roles-node", podman_args=()):
    """A fresh node for the duration of the block (skips where podman or Ansible is
    missing, except in CI, where that is a failure)."""
    pytest.importorskip("ansible_runner", reason="needs the `ansible` extra")
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            raise RuntimeError("podman is required in CI (.ci/containers.sh)")
        pytest.skip("podman is not installed")
    from orchestrator.providers.local.image import ensure_image

    ensure_image(IMAGE)  # the local provider's base image, built once when missing
    made = Target(folder, hostname=hostname, podman_args=podman_args)
    try:
        yield made
    finally:
        made.remove()


class Target:
    """One Debian 12 container running sshd, reached as root with a fresh key."""

    def __init__(self, folder: Path, hostname: str = "roles-node", podman_args=()):
        self.folder = folder
        self.key = folder / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
                       check=True)
        self.label = f"orchestrator-test=roles-{uuid.uuid4().hex[:12]}"
        start = ("mkdir -p /run/sshd /root/.ssh && printf '%s\\n' \"$KEY\" > "
                 "/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && "
                 "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e")
        started = subprocess.run(
            ["podman", "--runtime", "runc", "run", "-d", "--label", self.label,
             "--ulimit", "nofile=10000:10000", "--ulimit", "nproc=10000:10000",
             "--hostname", hostname, "-p", "127.0.0.1::22/tcp", *podman_args,
             "-e", f"KEY={(folder / 'id_ed25519.pub').read_text().strip()}",
             "--entrypoint", "/bin/sh", IMAGE, "-c", start],
            capture_output=True, text=True)
        assert started.returncode == 0, f"podman run failed: {started.stderr.strip()}"
        self.id = started.stdout.strip()
        port = subprocess.run(["podman", "port", self.id, "22/tcp"], check=True,
                              capture_output=True, text=True).stdout.split(":")[-1]
        self.port = int(port)
        deadline = time.monotonic() + 60
        while not self._ssh_answers():
            assert time.monotonic() < deadline, "sshd of the check target never answered"
            time.sleep(0.5)
        # what the packages' create step would have made: their system users
        self.exec("for u in slurm munge condor; do id $u >/dev/null 2>&1 || "
                  "useradd --system $u; done")

    def _ssh_answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                return conn.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def exec(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", self.id, "sh", "-c", command],
                              capture_output=True, text=True, check=check)

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "0", self.id], capture_output=True)

    def check(self, playbook: str | Path, **extravars) -> "Rendered":
        """Run ``playbook`` in check mode with ``extravars``; what it would write."""
        return self.run(playbook, check=True, **extravars)

    def apply(self, playbook: str | Path, **extravars) -> "Rendered":
        """Run ``playbook`` for real in the container; what it wrote and returned."""
        return self.run(playbook, check=False, **extravars)

    def run(self, playbook: str | Path, check: bool, **extravars) -> "Rendered":
        import ansible_runner

        private = self.folder / f"run-{uuid.uuid4().hex[:8]}"
        private.mkdir()
        run = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(PLAYBOOKS / playbook if isinstance(playbook, str) else playbook),
            inventory={"all": {"hosts": {"node-0": {
                "ansible_host": "127.0.0.1", "ansible_port": self.port,
                "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                           "-o UserKnownHostsFile=/dev/null",
                "private_address": "10.88.3.7"}}}},
            extravars=extravars, cmdline="--check --diff" if check else "--diff",
            quiet=True,
            envvars={"ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
                     "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "True",
                     "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"})
        rendered = Rendered()
        for event in run.events:
            data = event.get("event_data") or {}
            res = data.get("res") or {}
            for item in [res, *(res.get("results") or [])]:
                diffs = item.get("diff") if isinstance(item, dict) else None
                for diff in ([diffs] if isinstance(diffs, dict) else diffs or []):
                    args = (item.get("invocation") or {}).get("module_args") or {}
                    dest = item.get("dest") or args.get("dest") or args.get("path") or \
                        (diff.get("before_header") or "").removesuffix(" (content)")
                    if "after" in diff and dest:
                        rendered.files[dest] = diff["after"]
                if isinstance(item, dict) and item.get("msg") and event["event"] == "runner_on_ok":
                    rendered.messages.append(str(item["msg"]))
            if event.get("event") == "playbook_on_stats":
                rendered.stats = {k: v for k, v in (data.get("artifact_data") or {}).items()
                                  if k != "_run"}
        stdout = Path(run.config.artifact_dir, "stdout")
        rendered.stdout = stdout.read_text() if stdout.exists() else ""
        assert run.status == "successful", rendered.stdout[-4000:]
        return rendered


class Rendered:
    def __init__(self):
        self.files: dict[str, str] = {}
        self.messages: list[str] = []
        self.stats: dict = {}
        self.stdout = ""

    def file(self, path: str) -> str:
        assert path in self.files, f"{path} not rendered; rendered: {sorted(self.files)}"
        return self.files[path]
