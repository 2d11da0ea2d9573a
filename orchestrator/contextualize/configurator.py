"""``AnsibleConfigurator``: runs a software node's TOSCA lifecycle with Ansible.

What the engine passes
----------------------
``AnsibleConfigurator(data_dir, logs_dir=None, lookup=None, template_dir=None)``:
    ``data_dir``  the deployment's data directory (private run dirs under ``runs/``, the
                  fact cache under ``fact_cache/``); ``logs_dir`` defaults to
                  ``<data_dir>/logs`` and receives ``<node>-<index>.log`` per instance;
    ``lookup``    a ``Deferred -> value`` callable for get_attribute/get_operation_output
                  inputs (``orchestrator.engine.outputs.make_lookup(ctx.rows(),
                  ctx.topology)``); a ``host["lookup"]`` given per call wins, which lets
                  the engine pass one made from the rows current at that moment;
    ``template_dir`` the template's folder (implementations are resolved there first,
                  then under ``orchestrator.resources.playbooks_dir()``); defaults to the
                  folder of ``topology.file``.

``configure(step, topology, host, site_options)`` takes ``host``, a dict describing the
compute instance the software node (``step.node``, ``step.index``) is hosted on::

    {
      "ansible_host": "127.0.0.1",        # address Ansible connects to (None: use
                                          #   private_address through jump_host)
      "ansible_port": 40022,              # SSH port (22 by default)
      "ansible_user": "root",
      "ansible_ssh_private_key_file": "/data/deployment/id_ed25519",
      "private_address": "10.88.0.7",     # cluster-internal address (/etc/hosts)
      "jump_host": "root@1.2.3.4:22",     # optional ProxyJump when ansible_host is None
      "ssh_options": {"KexAlgorithms": "curve25519-sha256"},   # optional ssh -o options
      "cluster_hosts": [{"name": "vm-0", "address": "10.88.0.7"}, ...],   # optional
      "vars": {...},                      # optional extra host vars
      "lookup": callable,                 # optional, see above
      "batch": {"group": "dep/serial/node",  # optional: the instances of this node the
                "indexes": [0, 1, 2]},       #   run configures; they share Ansible runs
    }

The inventory host is named ``<step.node>-<step.index>`` in group ``<step.node>``; the
node's properties become host vars. The Standard operations create, configure and start
that have an implementation run in that order; extra vars are the operation's inputs
(Deferred ones resolved with the lookup; unresolved and null inputs left out so role
defaults apply) plus ``tosca_node``, ``tosca_interface``, ``tosca_operation`` and
``cluster_hosts`` (``tosca_index`` is a host var). Instances of one node whose inputs
evaluate alike are configured together: one ansible-runner run per operation over all
of their hosts (forks cover them all), each instance getting its own outputs (its own
``set_stats``), its own log and its own error. It returns the attributes::

    {"state": "started", "operations": ["Standard.create", ...],
     "operation_outputs": {"Standard.create": {<set_stats data>}, ...},
     <every set_stats key>: <value>}

Failures raise ``ContextualizationError`` naming node, operation, task and message.

Relationship operations: ``run_relationship(relationship, operation, source_host,
target_host)`` runs one of ``Configure.pre_configure_source``, ``pre_configure_target``,
``post_configure_source``, ``post_configure_target``, ``add_target``, ``add_source``,
``remove_target`` on the side TOSCA says (``*_source``/``add_target``/``remove_target``
on the source's host, the others on the target's host), with extra vars
``source``, ``target``, ``source_host``, ``target_host`` (host names and addresses) plus the
operation's inputs. The engine should call ``pre_configure_*`` before the source's
``configure`` operation and ``post_configure_*``/``add_*`` after it, i.e. with the
``relationship_operations(topology, node, phase)`` helper below.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator import resources
from orchestrator.contextualize.inventory import cluster_hosts, host_name
from orchestrator.contextualize.batch import Batcher
from orchestrator.contextualize.runner import run_failure, run_operation, run_playbook
from orchestrator.engine.outputs import SECRET_ATTRIBUTES
from orchestrator.engine.steps import Configurator
from orchestrator.errors import ContextualizationError
from orchestrator.tosca.functions import Deferred, resolve_deferred, to_plain
from orchestrator.tosca.secret import secret_texts, taint, untaint

LIFECYCLE = ("create", "configure", "start")
UNDO = ("stop", "delete")  # run when the node is removed while its host stays
STANDARD = ("Standard", "tosca.interfaces.node.lifecycle.Standard")
GALAXY_ROLE = "tosca.artifacts.AnsibleGalaxy.role"
SOURCE_SIDE = ("pre_configure_source", "post_configure_source", "add_target",
               "remove_target", "target_changed")
PHASES = {"pre": ("pre_configure_source", "pre_configure_target"),
          "post": ("post_configure_source", "post_configure_target", "add_target",
                   "add_source")}


def _short(interface: str) -> str:
    return interface.rsplit(".", 1)[-1]


def evaluate_inputs(inputs: dict, lookup: Callable[[Deferred], Any] | None,
                    secrets: set | None = None) -> dict:
    """Plain extra vars from operation inputs: Deferred values resolved with ``lookup``;
    null and unresolvable values are left out (role defaults apply). The texts of the
    secrets among them are added to ``secrets`` (to be redacted from what the run prints)."""
    result = {}
    for key, value in (inputs or {}).items():
        if lookup is not None:
            value = resolve_deferred(value, lookup)
        if value is None or isinstance(value, Deferred):
            continue
        value = to_plain(value)
        if secrets is not None:
            secrets |= secret_texts(value)
        result[key] = untaint(value)  # the playbook needs the secret itself
    return result


def _holds_secret(value, secrets) -> bool:
    """A value (an operation's output) that has one of ``secrets`` in it."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return any(secret in text for secret in secrets)


def relationship_operations(topology, node: str, phase: str) -> list[tuple]:
    """``(relationship, operation)`` pairs of ``node``'s outgoing relationships to run in
    ``phase`` ("pre": before its configure, "post": after it)."""
    wanted = PHASES[phase]
    return [(rel, op) for rel in topology.relationships if rel.source == node
            for op in rel.operations if op.implementation and op.name in wanted]


class AnsibleConfigurator(Configurator):
    def __init__(self, data_dir: str | Path, logs_dir: str | Path | None = None,
                 lookup: Callable[[Deferred], Any] | None = None,
                 template_dir: str | Path | None = None, timeout: int | None = None,
                 batch_wait_s: float = 5.0):
        self.data_dir = Path(data_dir)
        self._batcher = Batcher(batch_wait_s)
        self.logs_dir = Path(logs_dir) if logs_dir else self.data_dir / "logs"
        self.lookup = lookup
        self.template_dir = Path(template_dir) if template_dir else None
        self.timeout = timeout

    # -- paths ----------------------------------------------------------------------------
    def resolve_implementation(self, implementation: str, topology=None) -> Path:
        """Relative to the template's folder first, then the project's playbooks/."""
        path = Path(implementation)
        if path.is_absolute():
            candidates = [path]
        else:
            bases = [self.template_dir] if self.template_dir else []
            if topology is not None and getattr(topology, "file", ""):
                bases.append(Path(topology.file).resolve().parent)
            playbooks = resources.playbooks_dir()
            candidates = [b / path for b in bases] + [playbooks.parent / path,
                                                       playbooks / path]
            if path.parts and path.parts[0] == "playbooks":
                candidates.append(playbooks.joinpath(*path.parts[1:]))
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise ContextualizationError(f"implementation {implementation} not found (looked in "
                                     + ", ".join(str(c) for c in candidates) + ")")

    # -- the lifecycle --------------------------------------------------------------------
    def _host(self, step, host: dict | None) -> dict:
        if not host:
            raise ContextualizationError(f"node {step.node}[{step.index}]: no host to "
                                         "configure (the engine passed no connection info)")
        return {**host, "node": step.node, "index": step.index,
                "name": f"{step.node}-{step.index}"}

    def galaxy_roles(self, node, topology=None) -> tuple[Path, ...]:
        """Folders holding the node's ``tosca.artifacts.AnsibleGalaxy.role`` artifacts.

        Nothing is downloaded: a role must be available locally, as a path (relative to
        the template) or by name in a roles folder (the template's and the project's
        ``roles/``, ``~/.ansible/roles``, ``/usr/share/ansible/roles``,
        ``/etc/ansible/roles``, ``ANSIBLE_ROLES_PATH``)."""
        folders: list[Path] = []
        base = self.template_dir or (Path(topology.file).parent if topology else Path("."))
        search = [base / "roles", resources.playbooks_dir() / "roles",
                  Path.home() / ".ansible" / "roles", Path("/usr/share/ansible/roles"),
                  Path("/etc/ansible/roles")]
        search += [Path(p) for p in os.environ.get("ANSIBLE_ROLES_PATH", "").split(":") if p]
        for name, artifact in (node.artifacts or {}).items():
            if not isinstance(artifact, dict) or artifact.get("type") != GALAXY_ROLE:
                continue
            wanted = str(artifact.get("file") or name).split(",")[0].strip()
            as_path = base / wanted
            if as_path.is_dir():
                folders.append(as_path.resolve().parent)
                continue
            found = next((folder for folder in search if (folder / wanted).is_dir()), None)
            if found is None:
                raise ContextualizationError(
                    f"node {node.name}: Ansible role '{wanted}' (artifact '{name}') is not "
                    "available locally and nothing is downloaded: install it with "
                    f"`ansible-galaxy role install {wanted} -p playbooks/roles`")
            folders.append(found)
        return tuple(dict.fromkeys(folders))

    def configure(self, step, topology, host: dict | None, site_options: dict) -> dict:
        """Run the node's Standard create/configure/start on its host. When the engine
        says (``host["batch"]``) that other instances of the node are being configured
        in this run, the instances with the same operation inputs share one Ansible run
        per operation (see ``batch.Batcher``)."""
        node = topology.nodes[step.node]
        target = self._host(step, host)
        target["properties"] = node.properties
        lookup = (host or {}).get("lookup") or self.lookup
        ops = {op.name: op for op in node.operations
               if _short(op.interface) == "Standard" and op.implementation}
        secrets = secret_texts(node.properties)  # the secret properties are host vars

        def work_of(names: tuple) -> list:
            return [(name, str(self.resolve_implementation(ops[name].implementation, topology)),
                     evaluate_inputs(ops[name].inputs, lookup, secrets))
                    for name in names if name in ops]

        work = work_of(LIFECYCLE)
        undo = work_of(UNDO)
        self._remember_undo(step, (host or {}).get("node"), undo, secrets)
        member = {"host": target, "cluster_hosts": (host or {}).get("cluster_hosts")}
        batch = (host or {}).get("batch") or {}
        run = partial(self._lifecycle, step.node, work, self.galaxy_roles(node, topology),
                      secrets=frozenset(secrets))
        if len(batch.get("indexes") or ()) < 2:
            outcome = run({step.index: member})[step.index]
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        key = json.dumps(work, sort_keys=True, default=str)
        return self._batcher.submit(batch.get("group") or step.node, key, step.index,
                                    batch["indexes"], member, run)

    def _lifecycle(self, node: str, work: list, roles: tuple, members: dict,
                   secrets=frozenset()) -> dict:
        """Run ``work`` (the lifecycle operations) over the members' hosts, one Ansible
        run per operation; index -> attributes, or the error of that instance. ``secrets``
        are masked in what the runs print, and the outputs that hold one are marked
        secret (``secret_attributes``)."""
        results: dict = {i: {"state": "started", "operations": [], "operation_outputs": {}}
                         for i in members}
        live = dict(members)
        every = {}
        for member in members.values():
            for entry in member["cluster_hosts"] or cluster_hosts([member["host"]]):
                every[entry["name"]] = entry
        for name, playbook, inputs in work:
            if not live:
                break
            label = f"Standard.{name}"
            hosts = [m["host"] for m in live.values()]
            extravars = dict(inputs, tosca_node=node, tosca_interface="Standard",
                             tosca_operation=name, cluster_hosts=list(every.values()))
            if len(live) == 1:
                extravars["tosca_index"] = next(iter(live))
            result = run_playbook(playbook, hosts, data_dir=self.data_dir, operation=label,
                                  extravars=extravars, logs_dir=self.logs_dir,
                                  timeout=self.timeout, roles_path=roles, secrets=secrets)
            for index in list(live):
                target = live[index]["host"]
                error = run_failure(result, f"{node}[{index}]", host_name(target))
                if error is not None:
                    results[index] = error
                    del live[index]
                    continue
                outputs = result.host_outputs.get(host_name(target), {}) if len(hosts) > 1 \
                    else result.outputs
                results[index]["operations"].append(label)
                results[index]["operation_outputs"][label] = outputs
                results[index].update(outputs)
                marked = [k for k, v in outputs.items() if secrets and _holds_secret(v, secrets)]
                if marked:
                    results[index][SECRET_ATTRIBUTES] = sorted(
                        {*results[index].get(SECRET_ATTRIBUTES, ()), *marked})
        return results

    # -- removal ------------------------------------------------------------------------
    def _undo_file(self, node: str, index: int) -> Path:
        return self.data_dir / "undo" / f"{node}-{index}.json"

    def _remember_undo(self, step, host_node: str | None, work: list,
                       secrets=frozenset()) -> None:
        """Keep what removing this instance will run (Standard.stop and delete, with their
        inputs as evaluated now) beside the deployment's key, private to the user: the
        topology of a later update no longer has the node."""
        path = self._undo_file(step.node, step.index)
        if not work or not host_node:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump({"host": host_node, "work": work, "secret_inputs": [
                [k for k, v in inputs.items() if _holds_secret(v, secrets)]
                for _, _, inputs in work]}, out, default=str)

    def unconfigure(self, step, topology, site_options: dict, host_for=None) -> None:
        """Run the removed instance's Standard.stop and delete on its host, when the
        host is still there (``host_for(compute_node)`` gives its connection facts; a
        host being deleted too is not logged into)."""
        path = self._undo_file(step.node, step.index)
        if not path.exists():
            return
        recorded = json.loads(path.read_text(encoding="utf-8"))
        host = host_for(recorded["host"]) if host_for else None
        if host is not None:
            target = self._host(step, host)
            member = {"host": target, "cluster_hosts": host.get("cluster_hosts")}
            work = [tuple(w) for w in recorded["work"]]
            secrets = {text for (_, _, inputs), names in zip(
                work, recorded.get("secret_inputs") or [[] for _ in work])
                for name in names for text in _texts(inputs.get(name))}
            outcome = self._lifecycle(step.node, work, (), {step.index: member},
                                      secrets=frozenset(secrets))[step.index]
            if isinstance(outcome, Exception):
                raise outcome
        path.unlink(missing_ok=True)

    def run_relationship(self, relationship, operation, source_host: dict,
                         target_host: dict, topology=None, lookup=None) -> dict:
        """Run one relationship operation (see the module docstring); returns its
        set_stats outputs."""
        on_source = operation.name in SOURCE_SIDE
        where = source_host if on_source else target_host
        secrets: set = set()
        extravars = evaluate_inputs(operation.inputs, lookup or self.lookup, secrets)
        extravars.update(
            source=relationship.source, target=relationship.target,
            source_host=host_name(source_host), target_host=host_name(target_host),
            source_address=source_host.get("private_address") or source_host.get("ansible_host"),
            target_address=target_host.get("private_address") or target_host.get("ansible_host"),
            tosca_interface=_short(operation.interface), tosca_operation=operation.name)
        label = f"{_short(operation.interface)}.{operation.name}"
        result = run_operation(self.resolve_implementation(operation.implementation, topology),
                               [where], data_dir=self.data_dir, operation=label,
                               extravars=extravars, logs_dir=self.logs_dir,
                               node=f"{relationship.source}->{relationship.target}",
                               timeout=self.timeout, secrets=frozenset(secrets))
        return result.outputs

    def estimate(self, site_options: dict) -> float:
        return float((site_options.get("latency") or {}).get("configure", 60) or 60)


def _texts(value) -> set[str]:
    """The texts of a recorded (plain) secret input, as ``secret_texts`` finds them."""
    return secret_texts(taint(value))
