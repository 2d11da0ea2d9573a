"""Refreshing a deployment's state from its clouds: what the providers report replaces
what the state remembers, so drift (a server deleted outside the orchestrator, one tagged
for the deployment but missing from state) shows up in the next plan. A part of
``lifecycle.Orchestrator``, kept in its own module."""
from __future__ import annotations

from orchestrator.errors import OrchestratorError
from orchestrator.plan import Existing
from orchestrator.providers.base import ACTIVE, DELETED, TAG_INDEX, TAG_KIND, TAG_NODE

#: kinds some providers keep as records only (attachments, ports, networks made
#: implicitly) and do not list in ``find()``
UNLISTED_KINDS = ("attachment", "network", "port")


class Refreshing:
    """What ``Orchestrator`` refreshes; it provides ``store`` and ``provider()``."""

    def _existing(self, record) -> list[Existing]:
        return [Existing(r.node, r.index, r.kind, r.site, r.provider_id, r.status, r.spec or {},
                         r.attributes or {}) for r in self.store.resources(record.id)]

    def refresh(self, record) -> list[Existing]:
        """Ask the providers what really exists, so drift shows up in the next plan."""
        rows = self.store.resources(record.id)
        sites = {r.site for r in rows if r.site and r.kind != "software"}
        for site in sorted(sites):
            try:
                found = {(r.tags.get(TAG_NODE), int(r.tags.get(TAG_INDEX, 0)),
                          r.tags.get(TAG_KIND)): r for r in self.provider(site).find(record.id)}
            except OrchestratorError as exc:
                self.store.add_event(record.id, "refresh-failed", f"site {site}: {exc}",
                                     level="warning")
                continue
            listed = {kind for _, _, kind in found}
            for row in rows:
                if row.site != site or row.kind == "software":
                    continue
                if row.kind in UNLISTED_KINDS and row.kind not in listed:
                    continue  # a provider that does not list these cannot show their drift
                resource = found.pop((row.node, row.index, row.kind), None)
                if resource is None:
                    if row.provider_id and row.status != DELETED:
                        self.store.upsert_resource(record.id, row.node, row.index, row.kind,
                                                   status=DELETED)
                        self.store.add_event(record.id, "drift", f"{row.node}[{row.index}] "
                                             f"({row.kind}) no longer exists on site {site}",
                                             level="warning")
                    continue
                self.store.upsert_resource(
                    record.id, row.node, row.index, row.kind, provider_id=resource.provider_id,
                    status=resource.status if row.status != "creating" or resource.status
                    != ACTIVE else "creating", attributes=dict(resource.attributes))
            for (node, index, kind), resource in found.items():  # tagged as ours, not in state
                self.store.upsert_resource(record.id, node, index, kind, site=site,
                                           provider_id=resource.provider_id,
                                           status=resource.status,
                                           attributes=dict(resource.attributes), spec={})
                self.store.add_event(record.id, "adopted", f"found {node}[{index}] ({kind}) "
                                     f"tagged for this deployment on site {site}",
                                     level="warning")
        return self._existing(record)
