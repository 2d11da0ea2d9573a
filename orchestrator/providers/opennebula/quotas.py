"""Quotas from ``one.user.info`` and the flavors offered on OpenNebula, which has none.

In a user's VM_QUOTA a limit of -1 means "the default quota" (DEFAULT_USER_QUOTAS) and -2
means unlimited; ``<METRIC>_USED`` is the current usage. OpenNebula 7 may hold one entry
per set of clusters (CLUSTER_IDS): the entry without clusters is the global one.
DATASTORE_QUOTA holds one entry per datastore (ID): IMAGES and SIZE (MiB), same rules.
"""
from __future__ import annotations

from typing import Any

from orchestrator.providers.base import Flavor, Quotas

UNLIMITED, DEFAULT = -2, -1
#: Quotas field -> VM_QUOTA metric
METRICS = {"instances": "VMS", "cores": "CPU", "memory_mib": "MEMORY"}
#: the size grid offered when sites.yaml declares no flavors: cpus x MiB per cpu
GRID_CPUS = (1, 2, 4, 8, 16, 32)
GRID_MIB_PER_CPU = (2048, 4096, 8192)


def _entries(quota: Any) -> list:
    entries = getattr(quota, "VM", None) if quota is not None else None
    if entries is None:
        return []
    return list(entries) if isinstance(entries, list) else [entries]


def _global(quota: Any):
    entries = _entries(quota)
    return next((e for e in entries if not getattr(e, "CLUSTER_IDS", None)),
                entries[0] if entries else None)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _datastore_entry(quota: Any, datastore_id: int):
    entries = getattr(quota, "DATASTORE", None) if quota is not None else None
    entries = [] if entries is None else entries if isinstance(entries, list) else [entries]
    return next((e for e in entries if str(getattr(e, "ID", "")) == str(datastore_id)), None)


def _limit(own: Any, defaults: Any, metric: str) -> float | None:
    limit = _number(getattr(own, metric, None)) if own is not None else None
    if limit is None or limit == DEFAULT:
        limit = _number(getattr(defaults, metric, None)) if defaults is not None else None
    return None if limit is None or limit < 0 else limit


def datastore_quota(user: Any, datastore_id: int) -> dict[str, float | None]:
    """``images``, ``images_used``, ``size_mib``, ``size_used_mib`` of the user's quota on
    one datastore (limits None when unlimited)."""
    own = _datastore_entry(getattr(user, "DATASTORE_QUOTA", None), datastore_id)
    defaults = _datastore_entry(getattr(getattr(user, "DEFAULT_USER_QUOTAS", None),
                                        "DATASTORE_QUOTA", None), datastore_id)
    return {"images": _limit(own, defaults, "IMAGES"),
            "images_used": _number(getattr(own, "IMAGES_USED", None)) or 0.0,
            "size_mib": _limit(own, defaults, "SIZE"),
            "size_used_mib": _number(getattr(own, "SIZE_USED", None)) or 0.0}


def from_user(user: Any, datastore_id: int | None = None) -> Quotas:
    """Quotas (limits and ``used``) from a pyone USER object; volumes from the quota on
    ``datastore_id`` (the datastore volumes are made in) when given."""
    own = _global(getattr(user, "VM_QUOTA", None))
    defaults = _global(getattr(getattr(user, "DEFAULT_USER_QUOTAS", None), "VM_QUOTA", None))
    limits: dict[str, float | None] = {}
    used: dict[str, float] = {}
    for field, metric in METRICS.items():
        limits[field] = _limit(own, defaults, metric)
        used[field] = _number(getattr(own, f"{metric}_USED", None)) or 0.0 \
            if own is not None else 0.0
    volumes = volume_gib = None
    if datastore_id is not None:
        store = datastore_quota(user, datastore_id)
        volumes = None if store["images"] is None else int(store["images"])
        volume_gib = None if store["size_mib"] is None else store["size_mib"] / 1024
        used.update(volumes=store["images_used"], volume_gib=store["size_used_mib"] / 1024)
    return Quotas(instances=None if limits["instances"] is None else int(limits["instances"]),
                  cores=limits["cores"], memory_mib=limits["memory_mib"], volumes=volumes,
                  volume_gib=volume_gib, used=used)


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def merge(live: Quotas, declared: Quotas | None) -> Quotas:
    """The live quotas, further capped by what sites.yaml declares."""
    declared = declared or Quotas()
    return Quotas(instances=_smaller(live.instances, declared.instances),
                  cores=_smaller(live.cores, declared.cores),
                  memory_mib=_smaller(live.memory_mib, declared.memory_mib),
                  gpus=declared.gpus, volumes=_smaller(live.volumes, declared.volumes),
                  volume_gib=_smaller(live.volume_gib, declared.volume_gib),
                  used={**declared.used, **live.used})


def default_flavors() -> tuple[Flavor, ...]:
    """``one-<cpus>c-<GiB>g`` sizes, for sites that declare no flavors."""
    return tuple(Flavor(f"one-{cpus}c-{cpus * mib // 1024}g", cpus, cpus * mib)
                 for cpus in GRID_CPUS for mib in GRID_MIB_PER_CPU)


def fits_limits(flavor: Flavor, quotas: Quotas) -> bool:
    """Could one VM of this flavor ever fit in the quota (limits, not what is left)?"""
    return ((quotas.cores is None or flavor.cpus <= quotas.cores)
            and (quotas.memory_mib is None or flavor.memory_mib <= quotas.memory_mib)
            and (quotas.gpus is None or flavor.gpus.count <= quotas.gpus))
