"""Provider plugins, found through the ``orchestrator.providers`` entry-point group.

A third party adds a provider with ``pip install`` and an entry point such as
``mycloud = mypackage.provider:MyCloudProvider``. Plugins are imported only when a
site uses them, so ``orchestrator --help`` never loads a cloud SDK.
"""
from __future__ import annotations

import importlib.util
import threading
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider

GROUP = "orchestrator.providers"
#: the pip extra that installs each built-in provider's SDK
EXTRAS = {"openstack": "openstack", "opennebula": "opennebula", "kubernetes": "kubernetes",
          "cloud": "cloud"}
#: the module of that SDK: the providers import it lazily, so its absence is checked here
SDK_MODULES = {"openstack": "openstack", "opennebula": "pyone", "kubernetes": "kubernetes",
               "cloud": "libcloud"}

_lock = threading.Lock()
_instances: dict[str, Provider] = {}


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        found.setdefault(point.name, point)
    return found


def provider_names() -> list[str]:
    """Names of the installed providers (the values ``provider:`` may take)."""
    return sorted(_entry_points())


def get_provider_class(name: str) -> type[Provider]:
    """The Provider subclass registered under ``name``, imported on first use."""
    from orchestrator.diagnostics import did_you_mean
    from orchestrator.providers.base import Provider

    points = _entry_points()
    point = points.get(name)
    if point is None:
        hint = did_you_mean(name, points)
        raise OrchestratorError(
            f"no provider '{name}' is installed; known: {', '.join(sorted(points)) or 'none'}"
            + (f" ({hint})" if hint else ""))
    try:
        cls = point.load()
        if name in SDK_MODULES and importlib.util.find_spec(SDK_MODULES[name]) is None:
            raise ModuleNotFoundError(f"No module named '{SDK_MODULES[name]}'")
    except ImportError as exc:
        extra = EXTRAS.get(name)
        how = f"; install it with: pip install 'tosca-orchestrator[{extra}]'" if extra else ""
        raise OrchestratorError(f"provider '{name}' cannot be loaded: {exc}{how}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise OrchestratorError(f"entry point '{name}' ({point.value}) is not a Provider class")
    return cls


def provider_for(site: Any) -> Provider:
    """The provider instance serving ``site`` (one per site name and configuration)."""
    with _lock:
        cached = _instances.get(site.name)
        if cached is not None and cached.site == site:
            return cached
    provider = get_provider_class(site.provider)(site)
    with _lock:
        old = _instances.get(site.name)
        if old is not None and old.site == site:
            provider.close()
            return old
        _instances[site.name] = provider  # a replaced one may still be in use: not closed
    return provider


def close_all() -> None:
    """Close and forget every cached provider instance."""
    with _lock:
        providers = list(_instances.values())
        _instances.clear()
    for provider in providers:
        provider.close()
