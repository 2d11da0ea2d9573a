"""Choosing the configurator of each software step: Ansible for sites whose servers are
reached over SSH, another (a test cloud's recorder) for the rest. A part of
``lifecycle.Orchestrator``, kept in its own module."""
from __future__ import annotations

from orchestrator.engine import Configurator


class BySite(Configurator):
    """Ansible for the software on sites reached over SSH, another configurator for the
    rest (a plan that spans such a site and a test cloud)."""

    def __init__(self, over_ssh: set, ansible: Configurator, other: Configurator):
        self.over_ssh, self.ansible, self.other = over_ssh, ansible, other

    def _for(self, step) -> Configurator:
        return self.ansible if step.site in self.over_ssh else self.other

    def configure(self, step, topology, host, site_options):
        return self._for(step).configure(step, topology, host, site_options)

    def unconfigure(self, step, topology, site_options, host_for=None):
        return self._for(step).unconfigure(step, topology, site_options, host_for)

    def run_relationship(self, relationship, operation, source_host, target_host,
                         topology=None, lookup=None):
        run = getattr(self.ansible, "run_relationship", None)
        if run is None or source_host.get("site") not in self.over_ssh:
            return {}
        return run(relationship, operation, source_host, target_host, topology, lookup)

    def estimate(self, site_options):
        return self.ansible.estimate(site_options)
