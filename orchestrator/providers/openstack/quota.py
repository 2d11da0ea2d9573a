"""Quotas of an OpenStack project, checked before a server or volume is asked for.

Limits and usage come from Nova and Cinder (one call each, refreshed every few seconds);
what this process asked for since the last refresh is counted on top, so fifty servers
created at once are checked against the quota without fifty quota calls. Nova and
Cinder still enforce their quotas themselves: their refusals become QuotaExceededError
too (see session.translate)."""
from __future__ import annotations

import threading
import time
from typing import Any

from orchestrator.providers.base import Flavor, QuotaExceededError, Quotas, \
    TransientProviderError
from orchestrator.providers.openstack.flavors import merged_quotas

_LABELS = {"instances": "instances", "cores": "cores", "memory_mib": "ram (MiB)",
           "gpus": "gpus", "volumes": "volumes", "volume_gib": "gigabytes"}


class QuotaGuard:
    def __init__(self, conn, calls, site: Any, refresh_s: float = 5.0):
        self.conn = conn
        self.calls = calls
        self.site = site
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snapshot: tuple[float, Quotas] | None = None
        self._pending: dict[str, float] = {}

    def quotas(self) -> Quotas:
        """Limits and usage of the project, merged with the site's declared quotas."""
        project = self.calls("authenticate", lambda: self.conn.current_project_id)
        compute = self.calls("read compute quotas", self.conn.compute.get_quota_set,
                             project, usage=True)
        try:
            volume = self.calls("read volume quotas", self.conn.block_storage.get_quota_set,
                                project, usage=True)
        except TransientProviderError:
            raise
        except Exception:  # a cloud without Cinder: no volume quotas to plan against
            volume = None
        return merged_quotas(compute, volume, self.site.quotas)

    def _current(self) -> Quotas:
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > self.refresh_s:
            quotas = self.quotas()
            with self._lock:
                self._snapshot = (time.monotonic(), quotas)
                self._pending = {}
        return self._snapshot[1]

    def _reserve(self, wanted: dict[str, float], what: str) -> None:
        quotas = self._current()
        with self._lock:
            for key, amount in wanted.items():
                if not amount:
                    continue
                remaining = quotas.remaining(key)
                if remaining is None:
                    continue
                pending = self._pending.get(key, 0.0)
                if amount > remaining - pending:
                    limit = getattr(quotas, key)
                    used = float(quotas.used.get(key, 0)) + pending
                    raise QuotaExceededError(
                        f"site '{self.site.name}': quota '{_LABELS[key]}' exceeded for {what}: "
                        f"{amount:g} requested, {used:g} of {limit:g} in use")
            for key, amount in wanted.items():
                self._pending[key] = self._pending.get(key, 0.0) + float(amount or 0)

    def reserve_server(self, flavor: Flavor) -> None:
        self._reserve({"instances": 1, "cores": flavor.cpus, "memory_mib": flavor.memory_mib,
                       "gpus": flavor.gpus.count}, f"a server of flavor {flavor.name}")

    def reserve_volume(self, size_gib: int) -> None:
        self._reserve({"volumes": 1, "volume_gib": size_gib}, f"a {size_gib} GiB volume")
