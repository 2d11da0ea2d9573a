"""Run one operation (a playbook) against a set of hosts with ansible-runner.

Every run gets a private data dir (``<data_dir>/runs/<tmp>``), removed afterwards so the
extra vars (which may hold secrets) do not linger; facts are cached in
``<data_dir>/fact_cache`` (jsonfile) and shared between runs, SSH pipelining is on and
forks cover every host. ``set_stats`` data of the run become its ``outputs``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import resources
from orchestrator.contextualize.inventory import build_inventory, host_name
from orchestrator.errors import ContextualizationError

FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable")
_LOG_LOCK = threading.Lock()


@dataclass
class OperationResult:
    operation: str
    status: str  # successful, failed, timeout, canceled
    rc: int
    outputs: dict = field(default_factory=dict)  # set_stats data (aggregate: true only)
    events: dict = field(default_factory=dict)  # host -> [event dicts]
    stats: dict = field(default_factory=dict)  # ok/changed/failures/dark... per host
    stdout: str = ""

    def changed(self) -> int:
        return sum((self.stats.get("changed") or {}).values())


def _env(data_dir: Path, playbook: Path, forks: int, roles_path=()) -> dict:
    roles = [str(playbook.parent / "roles"), str(resources.playbooks_dir() / "roles"),
             *(str(p) for p in roles_path)]
    return {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_ROLES_PATH": os.pathsep.join(roles),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCAL_TEMP": str(data_dir / "ansible-tmp"),
        # unix socket paths are limited to about 100 bytes: keep the control sockets in a
        # short per-user folder, named by Ansible's hash of host, port and user
        "ANSIBLE_SSH_CONTROL_PATH_DIR": _control_dir(),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        # Ansible's commands live beside this interpreter (a virtual environment's bin/),
        # which need not be on PATH when the orchestrator is run as .venv/bin/orchestrator
        "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                 os.environ.get("PATH", os.defpath)]),
    }


def _control_dir() -> str:
    folder = os.path.join(tempfile.gettempdir(), f"orch-cp-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _failure(event: dict) -> tuple[str, str, str]:
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    parts = [str(res.get(k)).strip() for k in ("msg", "stderr", "module_stderr")
             if res.get(k)]
    for item in res.get("results") or ():  # a loop: the first failed item says why
        if isinstance(item, dict) and item.get("failed"):
            label = item.get("_ansible_item_label", item.get("item"))
            parts = [f"item {label}"] + [str(item.get(k)).strip()
                                         for k in ("msg", "stderr", "module_stderr")
                                         if item.get(k)]
            break
    message = "; ".join(dict.fromkeys(parts)) or "no message"
    return str(data.get("host") or "?"), str(data.get("task") or "?"), message


def _write_logs(logs_dir: Path | None, hosts: list[dict], operation: str, stdout: str) -> None:
    if logs_dir is None:
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    with _LOG_LOCK:
        for host in hosts:
            with open(logs_dir / f"{host_name(host)}.log", "a", encoding="utf-8") as log:
                log.write(f"=== {operation} ===\n{stdout}\n")


def run_operation(playbook: str | Path, hosts: list[dict], *, data_dir: str | Path,
                  operation: str = "Standard.configure", extravars: dict | None = None,
                  logs_dir: str | Path | None = None, node: str | None = None,
                  group_vars: dict | None = None, timeout: int | None = None,
                  check: bool = False, roles_path: tuple = ()) -> OperationResult:
    """Run ``playbook`` on ``hosts``; raise ContextualizationError when any host fails.

    The error message names the node, the operation, the failed task and Ansible's message.
    """
    import ansible_runner  # lazily: the `ansible` extra

    playbook = Path(playbook).resolve()
    data_dir = Path(data_dir).resolve()
    for sub in ("runs", "fact_cache", "ansible-tmp", "cp"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    forks = max(5, len(hosts))
    private = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir / "runs"))
    events: dict = {}
    try:
        cmdline = "--check --diff" if check else None
        run = ansible_runner.run(
            private_data_dir=str(private), playbook=str(playbook),
            inventory=build_inventory(hosts, group_vars), extravars=dict(extravars or {}),
            envvars=_env(data_dir, playbook, forks, roles_path), forks=forks, quiet=True,
            fact_cache_type="jsonfile", fact_cache=str(data_dir / "fact_cache"),
            project_dir=str(playbook.parent), timeout=timeout, cmdline=cmdline,
            suppress_env_files=True)
        stdout_file = Path(run.config.artifact_dir) / "stdout"
        stdout = stdout_file.read_text(errors="replace") if stdout_file.exists() else ""
        failures, outputs, stats = [], {}, {}
        for event in run.events:
            data = event.get("event_data") or {}
            if data.get("host"):
                events.setdefault(data["host"], []).append(
                    {k: event.get(k) for k in ("event", "counter", "stdout")}
                    | {"task": data.get("task")})
            if event.get("event") in FAILED_EVENTS and not data.get("ignore_errors"):
                failures.append(_failure(event))
            if event.get("event") == "playbook_on_stats":
                artifact = data.get("artifact_data") or {}
                outputs = {k: v for k, v in artifact.items() if k != "_run"}
                stats = {k: data.get(k) or {} for k in
                         ("ok", "changed", "failures", "dark", "skipped", "rescued",
                          "ignored", "processed")}
        result = OperationResult(operation, run.status, int(run.rc or 0), outputs, events,
                                 stats, stdout)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    _write_logs(Path(logs_dir) if logs_dir else None, hosts, operation, stdout)
    label = node or ", ".join(sorted({str(h.get("node")) for h in hosts}))
    if failures:
        host, task, message = failures[0]
        raise ContextualizationError(
            f"node {label} ({host}): operation {operation} failed at task '{task}': {message}")
    if result.status != "successful" or result.rc != 0:
        tail = "\n".join(stdout.strip().splitlines()[-5:])
        raise ContextualizationError(
            f"node {label}: operation {operation} {result.status} (rc {result.rc}): {tail}")
    return result
