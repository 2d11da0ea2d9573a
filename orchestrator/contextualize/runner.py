"""Run one operation (a playbook) against a set of hosts with ansible-runner.

Every run gets a private data dir (``<data_dir>/runs/<tmp>``), removed afterwards so the
extra vars (which may hold secrets) do not linger; facts are cached in
``<data_dir>/fact_cache`` (jsonfile) and shared between runs, SSH pipelining is on and
forks cover every host. ``set_stats`` data of the run become its ``outputs``.
"""
from __future__ import annotations

import importlib.util
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
from orchestrator.tosca.secret import redact

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
    failures: dict = field(default_factory=dict)  # host -> (task, message), first failure
    host_outputs: dict = field(default_factory=dict)  # host -> its own set_stats data
    host_logs: dict = field(default_factory=dict)  # host -> the run's output for that host

    def changed(self) -> int:
        return sum((self.stats.get("changed") or {}).values())


def _add_stats(outputs: dict, stats: dict) -> None:
    """Merge one set_stats result into a host's outputs the way Ansible aggregates."""
    for key, value in (stats.get("data") or {}).items():
        old = outputs.get(key)
        if not stats.get("aggregate", True) or old is None or type(old) is not type(value):
            outputs[key] = value
        elif isinstance(value, dict):
            outputs[key] = {**old, **value}
        elif isinstance(value, (list, int, float, str)) and not isinstance(value, bool):
            outputs[key] = old + value
        else:
            outputs[key] = value


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
        **_strategy(),
    }


def _strategy() -> dict:
    """Mitogen's strategy when it is installed (it keeps one Python interpreter per
    host for the whole run instead of starting one per task: the run's cost per host
    drops several times); ``ORCHESTRATOR_ANSIBLE_STRATEGY`` names another strategy
    (``linear`` turns it off)."""
    wanted = os.environ.get("ORCHESTRATOR_ANSIBLE_STRATEGY", "mitogen_linear")
    if not wanted.startswith("mitogen"):
        return {"ANSIBLE_STRATEGY": wanted}
    try:
        spec = importlib.util.find_spec("ansible_mitogen")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return {}
    plugins = os.path.join(list(spec.submodule_search_locations)[0], "plugins", "strategy")
    return {"ANSIBLE_STRATEGY_PLUGINS": plugins, "ANSIBLE_STRATEGY": wanted}


def _control_dir() -> str:
    folder = os.path.join(tempfile.gettempdir(), f"orch-cp-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _remove_control_dir_if_empty() -> None:
    """Take the control-socket folder away once no ssh master lives in it (with Mitogen's
    strategy none ever does); a run that starts meanwhile makes it again, and an ssh that
    finds it gone runs without connection sharing."""
    try:
        os.rmdir(os.path.join(tempfile.gettempdir(), f"orch-cp-{os.getuid()}"))
    except OSError:
        pass  # in use, or already gone


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


def _redact(result: OperationResult, secrets) -> None:
    """Take the operation's secrets out of everything the run printed (a playbook may show
    an input: ``debug: var=db_password``) before it is logged, raised or recorded."""
    if not secrets:
        return
    result.stdout = redact(result.stdout, secrets)
    result.host_logs = {h: redact(t, secrets) for h, t in result.host_logs.items()}
    result.failures = {h: (redact(task, secrets), redact(message, secrets))
                       for h, (task, message) in result.failures.items()}
    for events in result.events.values():
        for event in events:
            if isinstance(event.get("stdout"), str):
                event["stdout"] = redact(event["stdout"], secrets)


def _write_logs(logs_dir: Path | None, hosts: list[dict], operation: str,
                result: OperationResult) -> None:
    """Append each host's part of the run to ``<logs_dir>/<host>.log``."""
    if logs_dir is None:
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    with _LOG_LOCK:
        for host in hosts:
            name = host_name(host)
            text = result.host_logs.get(name, result.stdout) if len(hosts) > 1 \
                else result.stdout
            with open(logs_dir / f"{name}.log", "a", encoding="utf-8") as log:
                log.write(f"=== {operation} ===\n{text}\n")


def _collect(run, operation: str, stdout: str, names: set[str]) -> OperationResult:
    """Walk ansible-runner's events: failures, outputs and log lines per host."""
    result = OperationResult(operation, run.status, int(run.rc or 0), stdout=stdout)
    lines: dict[str, list[str]] = {name: [] for name in names}
    for event in run.events:
        data = event.get("event_data") or {}
        host, text = data.get("host"), event.get("stdout") or ""
        if text:  # a host's own lines to its log; play and task headers to every log
            for name in ([host] if host else lines):
                lines.get(name, []).append(text)
        if host:
            result.events.setdefault(host, []).append(
                {k: event.get(k) for k in ("event", "counter", "stdout")}
                | {"task": data.get("task")})
        kind = event.get("event")
        if kind in FAILED_EVENTS and not data.get("ignore_errors"):
            failed_host, task, message = _failure(event)
            result.failures.setdefault(failed_host, (task, message))
        elif kind == "runner_on_ok" and host:
            stats = (data.get("res") or {}).get("ansible_stats")
            if isinstance(stats, dict):
                _add_stats(result.host_outputs.setdefault(host, {}), stats)
        elif kind == "playbook_on_stats":
            artifact = data.get("artifact_data") or {}
            result.outputs = {k: v for k, v in artifact.items() if k != "_run"}
            result.stats = {k: data.get(k) or {} for k in
                            ("ok", "changed", "failures", "dark", "skipped", "rescued",
                             "ignored", "processed")}
    result.host_logs = {name: "\n".join(text) for name, text in lines.items()}
    return result


def run_playbook(playbook: str | Path, hosts: list[dict], *, data_dir: str | Path,
                 operation: str = "Standard.configure", extravars: dict | None = None,
                 logs_dir: str | Path | None = None, group_vars: dict | None = None,
                 timeout: int | None = None, check: bool = False,
                 roles_path: tuple = (), secrets=frozenset()) -> OperationResult:
    """Run ``playbook`` on ``hosts`` in one ansible-runner run and report what happened
    on each host (``failures``, ``host_outputs``, ``host_logs``, with every text of
    ``secrets`` masked); raises nothing for a failed host (see ``run_operation``)."""
    import ansible_runner  # lazily: the `ansible` extra

    playbook = Path(playbook).resolve()
    data_dir = Path(data_dir).resolve()
    for sub in ("runs", "fact_cache", "ansible-tmp", "cp"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    forks = max(5, len(hosts))
    private = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir / "runs"))
    try:
        run = ansible_runner.run(
            private_data_dir=str(private), playbook=str(playbook),
            inventory=build_inventory(hosts, group_vars), extravars=dict(extravars or {}),
            envvars=_env(data_dir, playbook, forks, roles_path), forks=forks, quiet=True,
            fact_cache_type="jsonfile", fact_cache=str(data_dir / "fact_cache"),
            project_dir=str(playbook.parent), timeout=timeout,
            cmdline="--check --diff" if check else None, suppress_env_files=True)
        stdout_file = Path(run.config.artifact_dir) / "stdout"
        stdout = stdout_file.read_text(errors="replace") if stdout_file.exists() else ""
        result = _collect(run, operation, stdout, {host_name(h) for h in hosts})
        _redact(result, secrets)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        _remove_control_dir_if_empty()
    _write_logs(Path(logs_dir) if logs_dir else None, hosts, operation, result)
    return result


def run_failure(result: OperationResult, label: str, host: str | None = None
                ) -> ContextualizationError | None:
    """The error of a run (of one host of it when ``host`` is given), or None."""
    failed = host if host is not None else next(iter(result.failures), None)
    if failed in result.failures:
        task, message = result.failures[failed]
        return ContextualizationError(f"node {label} ({failed}): operation {result.operation} "
                                      f"failed at task '{task}': {message}")
    ran = host is not None and result.status in ("failed", "successful") \
        and bool(result.events.get(host))
    if (result.status != "successful" or result.rc != 0) and not ran:
        status = "failed" if result.status == "successful" else result.status
        tail = "\n".join(result.stdout.strip().splitlines()[-5:])
        return ContextualizationError(f"node {label}: operation {result.operation} "
                                      f"{status} (rc {result.rc}): {tail}")
    return None


def run_operation(playbook: str | Path, hosts: list[dict], *, data_dir: str | Path,
                  operation: str = "Standard.configure", extravars: dict | None = None,
                  logs_dir: str | Path | None = None, node: str | None = None,
                  group_vars: dict | None = None, timeout: int | None = None,
                  check: bool = False, roles_path: tuple = (),
                  secrets=frozenset()) -> OperationResult:
    """Run ``playbook`` on ``hosts``; raise ContextualizationError when any host fails.

    The error message names the node, the operation, the failed task and Ansible's message.
    """
    result = run_playbook(playbook, hosts, data_dir=data_dir, operation=operation,
                          extravars=extravars, logs_dir=logs_dir, group_vars=group_vars,
                          timeout=timeout, check=check, roles_path=roles_path,
                          secrets=secrets)
    label = node or ", ".join(sorted({str(h.get("node")) for h in hosts}))
    error = run_failure(result, label)
    if error is not None:
        raise error
    return result
