"""How to reach a deployment's servers over SSH: one target per compute instance, with the
address and port to connect to, the user, the deployment's key, and the jump host for a
server that has only a private address (the first server of the deployment that can be
reached, as the engine's contextualisation does).

``ssh_command`` makes the ``ssh`` argument list for one target; ``ssh_config`` an OpenSSH
``Host`` block per target. Host keys are trusted on first use and kept per deployment
(``<deployment folder>/ssh/known_hosts``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError


@dataclass(frozen=True)
class SshTarget:
    alias: str  # <deployment>-<node>-<index>, a valid ssh_config Host name
    node: str
    index: int
    host: str | None  # None: reached through ``jump`` at ``private_address``
    port: int
    user: str
    private_address: str | None
    key_file: str | None
    known_hosts: str
    jump: str | None = None  # user@host:port

    def to_dict(self) -> dict:
        return {"node": self.node, "index": self.index, "alias": self.alias,
                "host": self.host or self.private_address, "port": self.port,
                "user": self.user, "jump_host": self.jump, "key_file": self.key_file}


def ssh_targets(deployment: str, rows, ssh_dir: Path) -> list[SshTarget]:
    """The compute instances of a deployment's resource ``rows`` that SSH can reach."""
    servers = sorted((r for r in rows if r.kind == "compute" and r.status not in
                      ("deleted", "deleting")), key=lambda r: (r.node, r.index))
    jump = None
    for row in servers:
        facts = row.attributes or {}
        reachable = facts.get("ssh_host") or facts.get("public_address")
        if isinstance(reachable, str) and reachable:
            jump = f"{facts.get('ssh_user') or 'root'}@{reachable}:{facts.get('ssh_port') or 22}"
            break
    key = ssh_dir / "id_ed25519"
    targets = []
    for row in servers:
        facts = row.attributes or {}
        reachable = facts.get("ssh_host") or facts.get("public_address")
        reachable = reachable if isinstance(reachable, str) and reachable else None
        private = facts.get("private_address")
        private = private if isinstance(private, str) and private else None
        if reachable is None and (private is None or jump is None):
            continue
        alias = "-".join(part.replace("_", "-") for part in (deployment, row.node,
                                                                 str(row.index)))
        targets.append(SshTarget(
            alias=alias, node=row.node, index=row.index, host=reachable,
            port=int(facts.get("ssh_port") or 22) if reachable else 22,
            user=str(facts.get("ssh_user") or "root"), private_address=private,
            key_file=str(key) if key.is_file() else None,
            known_hosts=str(ssh_dir / "known_hosts"), jump=None if reachable else jump))
    return targets


def choose(targets: list[SshTarget], wanted: str | None) -> SshTarget:
    """The target ``wanted`` names (``NODE`` or ``NODE/INDEX``; none: the only server)."""
    if not targets:
        raise OrchestratorError("the deployment has no server that SSH can reach")
    names = sorted({f"{t.node}/{t.index}" for t in targets})
    if wanted is None:
        if len(targets) == 1:
            return targets[0]
        raise OrchestratorError(f"say which server: {', '.join(names)}")
    node, _, index = wanted.partition("/")
    if index and not index.isdigit():
        raise OrchestratorError(f"'{wanted}' is not NODE or NODE/INDEX")
    found = [t for t in targets if t.node == node and (not index or t.index == int(index))]
    if len(found) == 1 or (found and not index):
        return found[0]
    raise OrchestratorError(f"no server '{wanted}' in this deployment; it has: "
                            f"{', '.join(names)}")


def _options(target: SshTarget) -> list[str]:
    options = [f"UserKnownHostsFile={target.known_hosts}", "StrictHostKeyChecking=accept-new",
               "LogLevel=ERROR"]
    if target.key_file:
        options += [f"IdentityFile={target.key_file}", "IdentitiesOnly=yes"]
    if target.jump:  # the jump host with the same key and known hosts (ProxyJump would not)
        user_host, _, port = target.jump.rpartition(":")
        hop = " ".join(["ssh", "-p", port, *(f"-o {o}" for o in options), "-W", "%h:%p",
                        user_host])
        options.append(f"ProxyCommand={hop}")
    return options


def ssh_command(target: SshTarget, command: tuple[str, ...] = ()) -> list[str]:
    argv = ["ssh", "-p", str(target.port)]
    for option in _options(target):
        argv += ["-o", option]
    argv.append(f"{target.user}@{target.host or target.private_address}")
    if command:
        argv += ["--", *command]
    return argv


def ssh_config(targets: list[SshTarget]) -> str:
    blocks = []
    for target in targets:
        lines = [f"Host {target.alias}",
                 f"  HostName {target.host or target.private_address}",
                 f"  Port {target.port}", f"  User {target.user}"]
        lines += [f"  {option.replace('=', ' ', 1)}" for option in _options(target)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
