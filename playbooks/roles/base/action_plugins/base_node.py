"""Action of role ``base``: a node's users, their keys and sudo rules, its hostname and the
cluster's block of /etc/hosts, in one task.

Ansible starts a worker process per host for every task, skipped or not, and on a
controller that prepares many nodes at once that costs more than the work itself. This
action runs the builtin modules the role would otherwise run as six tasks (user, file,
copy, blockinfile, command), one after another on the host's connection, and reports
every step; it supports check and diff mode as those modules do."""
from __future__ import annotations

import shlex

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

KEYS_HEADER = "# Managed by the TOSCA orchestrator (role base)\n"
HOSTS_MARKER = "# {mark} TOSCA ORCHESTRATOR CLUSTER HOSTS"


def user_steps(users) -> list[tuple[str, str, dict]]:
    """(label, module, args) for each user: the account, the .ssh directory and the
    authorized keys (when keys are given), the sudoers file. A user without sudo gets a
    comment-only sudoers file, which also takes back a grant made by an earlier run."""
    steps = []
    for user in users or ():
        name = user["name"]
        home = user.get("home") or f"/home/{name}"
        steps.append((f"user {name}", "user", {
            "name": name, "shell": user.get("shell") or "/bin/bash", "home": home,
            "create_home": True}))
        keys = user.get("ssh_key") or []
        keys = [keys] if isinstance(keys, str) else [key for key in keys if key]
        if keys:
            steps.append((f"{home}/.ssh", "file", {
                "path": f"{home}/.ssh", "state": "directory", "owner": name, "group": name,
                "mode": "0700"}))
            steps.append((f"{home}/.ssh/authorized_keys", "copy", {
                "dest": f"{home}/.ssh/authorized_keys", "owner": name, "group": name,
                "mode": "0600", "content": KEYS_HEADER + "".join(f"{k}\n" for k in keys)}))
        rule = f"{name} ALL=(ALL) NOPASSWD:ALL" if boolean(user.get("sudo", False),
                                                           strict=False) \
            else f"# {name}: no sudo granted by the orchestrator"
        steps.append((f"/etc/sudoers.d/90-{name}", "copy", {
            "dest": f"/etc/sudoers.d/90-{name}", "owner": "root", "group": "root",
            "mode": "0440", "content": f"{rule}\n", "validate": "visudo -cf %s"}))
    return steps


def node_steps(hostname: str, hosts_block: str) -> list[tuple[str, str, dict]]:
    """/etc/hostname and the managed block of /etc/hosts, written in place (container
    runtimes bind-mount both, so an atomic rename would fail)."""
    steps = []
    if hostname:
        steps.append(("/etc/hostname", "copy", {
            "dest": "/etc/hostname", "content": f"{hostname}\n", "owner": "root",
            "group": "root", "mode": "0644", "unsafe_writes": True}))
    if hosts_block:
        steps.append(("/etc/hosts", "blockinfile", {
            "path": "/etc/hosts", "marker": HOSTS_MARKER, "block": hosts_block.rstrip("\n"),
            "unsafe_writes": True}))
    return steps


def apply_hostname_command(hostname: str) -> str:
    """The running hostname follows /etc/hostname. Containers without CAP_SYS_ADMIN refuse
    to change it: that is reported in the output, not a failure (/etc/hostname applies at
    the next boot)."""
    quoted = shlex.quote(hostname)
    return (f'[ "$(hostname)" = {quoted} ] && echo unchanged || '
            f"(hostname {quoted} 2>&1 && echo set || echo refused)")


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("users", "hostname", "hosts_block"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        hostname = str(args.get("hostname") or "")
        steps = user_steps(args.get("users")) + node_steps(hostname,
                                                           str(args.get("hosts_block") or ""))
        done, diffs = [], []
        for label, module, module_args in steps:
            outcome = self._step(module, module_args, task_vars)
            done.append({"step": label, "changed": bool(outcome.get("changed"))})
            if outcome.get("failed"):
                result.update(failed=True, msg=f"{label}: {outcome.get('msg', 'failed')}")
                break
            diff = outcome.get("diff")
            diffs.extend(diff if isinstance(diff, list) else [diff] if diff else [])
            if label == "/etc/hostname" and outcome.get("changed") \
                    and not self._task.check_mode:
                applied = self._execute_module("ansible.legacy.command", {
                    "_raw_params": apply_hostname_command(hostname), "_uses_shell": True},
                    task_vars=task_vars)
                result["hostname_applied"] = (applied.get("stdout") or "").strip()
        result.update(steps=done, changed=any(step["changed"] for step in done))
        if diffs:
            result["diff"] = diffs
        return result

    def _step(self, module: str, module_args: dict, task_vars) -> dict:
        if module != "copy":
            return self._execute_module(f"ansible.legacy.{module}", module_args,
                                        task_vars=task_vars)
        # copy's content goes through the copy action, which transfers it
        task = self._task.copy()
        task.args = module_args
        action = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.copy", task=task, connection=self._connection,
            play_context=self._play_context, loader=self._loader, templar=self._templar,
            shared_loader_obj=self._shared_loader_obj)
        return action.run(task_vars=task_vars)
