"""Reading deployments: list, status, outputs (those computed from secrets masked, or
revealed to their owner on request), contextualisation logs and events. A part of
``lifecycle.Orchestrator``, kept in its own module."""
from __future__ import annotations

import json

from orchestrator import resources
from orchestrator.topology.secrets import MASK
from orchestrator.validation import validate


class Reading:
    """What ``Orchestrator`` reads back; it provides ``store``, ``owner``, ``sealer``,
    ``deployment()`` and ``_event()``."""

    def list(self):
        return self.store.list_deployments(owner=self.owner)

    def ssh_targets(self, name: str):
        """How to reach each server of deployment ``name`` over SSH (``access.SshTarget``)
        with the deployment's key, which stays in the caller's own data folder."""
        from orchestrator.access import ssh_targets

        record = self.deployment(name)
        return ssh_targets(record.name, self.store.resources(record.id),
                           resources.deployment_dir(record.id) / "ssh")

    def status(self, name: str) -> dict:
        record = self.deployment(name)
        return {"deployment": record.to_dict() | {"plan": None},
                "resources": [r.to_dict() for r in self.store.resources(record.id)]}

    def outputs(self, name: str, reveal: bool = False) -> dict:
        """The outputs resolved against the live state, those computed from a secret masked.
        ``reveal`` (the owner's explicit request: ``name`` is looked up among the owner's
        deployments only) shows them from their sealed copy, and is recorded as an event
        that names them without their values."""
        from orchestrator.engine.outputs import resolve_outputs, show_outputs

        record = self.deployment(name)
        sets = [f"{k}={json.dumps(v)}" for k, v in (record.inputs or {}).items()]
        report = validate(record.template_path, (), sets)
        live = resolve_outputs(report.topology, self.store.resources(record.id)) \
            if report.valid else dict(record.outputs or {})
        sealed_text = self.store.sealed_outputs(record.id) if reveal else None
        sealed = self._sealer().open(sealed_text) if sealed_text else {}
        shown, revealed = show_outputs(live, record.outputs or {}, sealed, MASK, reveal)
        if reveal:
            self._event(record.id, "outputs-revealed", (
                f"secret output(s) {', '.join(revealed)} shown to {self.owner} on request"
                if revealed else f"{self.owner} asked for the secret outputs: there are none"))
        return shown

    def _sealer(self):
        if self.sealer is None:
            from orchestrator.sealing import default_sealer

            self.sealer = default_sealer()
        return self.sealer

    def node_logs(self, name: str, node: str) -> list[str]:
        """Paths of the contextualisation logs of ``node`` (or ``node[index]``)."""
        folder = resources.deployment_dir(self.deployment(name).id) / "logs"
        if "[" in node:
            wanted = [folder / (node.replace("[", "-").rstrip("]") + ".log")]
        else:
            wanted = sorted(folder.glob(f"{node}-*.log"),
                            key=lambda p: int(p.stem.rsplit("-", 1)[-1])
                            if p.stem.rsplit("-", 1)[-1].isdigit() else 0)
        return [str(p) for p in wanted if p.is_file()]

    def events(self, name: str, since: int = 0) -> list:
        return self.store.events(self.deployment(name).id, since_id=since)
