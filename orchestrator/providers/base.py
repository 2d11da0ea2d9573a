"""The one interface every provider plugin implements.

A provider turns ResourceSpecs (what a plan step asks for) into cloud resources and
reports them back as Resources. Every call is idempotent where the cloud allows it:
a retried ``create`` finds the resource it made before by its tags instead of making a
second one. SDK exceptions never leave a provider: they are translated into
``ProviderError`` and its subclasses here. Providers register through the
``orchestrator.providers`` entry-point group and are imported lazily.

This module depends on the topology model only.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import ProviderError

#: tag keys every resource carries, so resume and delete can find what we made
TAG_DEPLOYMENT = "orchestrator-deployment"
TAG_NODE = "orchestrator-node"
TAG_INDEX = "orchestrator-index"
TAG_KIND = "orchestrator-kind"

# resource status values
BUILDING, ACTIVE, ERROR, DELETED = "building", "active", "error", "deleted"


class TransientProviderError(ProviderError):
    """Worth retrying: throttling, 409 conflicts, 5xx, timeouts."""


class QuotaExceededError(ProviderError):
    """The site has no quota left for this request; another site may."""


class NotFoundError(ProviderError):
    """The resource does not exist (any more)."""


@dataclass(frozen=True)
class GpuOffer:
    count: int = 0
    vendor: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Flavor:
    name: str
    cpus: float
    memory_mib: float
    disk_gib: float = 0
    gpus: GpuOffer = field(default_factory=GpuOffer)
    infiniband: bool = False
    preemptible: bool = False
    id: str | None = None


@dataclass(frozen=True)
class Image:
    name: str
    id: str | None = None
    distribution: str | None = None
    version: str | None = None
    architecture: str | None = None
    gpu_driver: str | None = None
    cuda_version: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quotas:
    """Limits; None means unlimited. ``used`` holds current usage where known."""

    instances: int | None = None
    cores: float | None = None
    memory_mib: float | None = None
    gpus: int | None = None
    volumes: int | None = None
    volume_gib: float | None = None
    used: dict = field(default_factory=dict)

    def remaining(self, key: str) -> float | None:
        limit = getattr(self, key)
        return None if limit is None else limit - float(self.used.get(key, 0))


@dataclass(frozen=True)
class Offer:
    """What a site can place: flavors, images and quotas (discovered + sites.yaml)."""

    flavors: tuple[Flavor, ...] = ()
    images: tuple[Image, ...] = ()
    quotas: Quotas = field(default_factory=Quotas)


@dataclass(frozen=True)
class ResourceSpec:
    """What a plan step asks a provider to create or update."""

    kind: str  # compute | volume | network | port
    deployment: str
    node: str
    index: int = 0
    flavor: str | None = None
    image: str | None = None
    properties: dict = field(default_factory=dict)  # size_gib, ports, public_ip, networks...

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_DEPLOYMENT: self.deployment, TAG_NODE: self.node,
                TAG_INDEX: str(self.index), TAG_KIND: self.kind}


@dataclass(frozen=True)
class Resource:
    provider_id: str
    kind: str
    status: str  # building | active | error | deleted
    tags: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)  # addresses, flavor, image, size...
    fault: str | None = None  # the cloud's own error message when status is error


@dataclass(frozen=True)
class CheckResult:
    site: str
    reachable: bool
    credentials_valid: bool
    message: str = ""
    offer: Offer | None = None


def site_options(site: Any, allowed: tuple[str, ...], provider: str) -> dict:
    """The site's ``options``, refusing unknown keys with a did-you-mean."""
    from orchestrator.diagnostics import did_you_mean

    options = dict(getattr(site, "options", None) or {})
    for key in options:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            raise ProviderError(f"site '{site.name}': unknown {provider} option '{key}'"
                                + (f" ({hint})" if hint else ""))
    return options


class Provider(abc.ABC):
    """Base class of provider plugins. One instance serves one site."""

    #: the value of ``provider:`` in sites.yaml
    type_name: str = ""
    #: servers of this provider are logged into over SSH (for keys and Ansible)
    reached_over_ssh: bool = True
    #: a test cloud: software operations on its servers are recorded, not run
    records_operations: bool = False

    def __init__(self, site: Any):
        self.site = site

    @abc.abstractmethod
    def offer(self) -> Offer:
        """Flavors, images and quotas, merged with what the site catalogue declares."""

    @abc.abstractmethod
    def check(self) -> CheckResult:
        """Is the site reachable, are the credentials valid, what does it offer?"""

    @abc.abstractmethod
    def create(self, spec: ResourceSpec) -> Resource:
        """Start creating a resource and return at once (status may be ``building``).
        Must not create a duplicate when a resource with the same tags exists."""

    @abc.abstractmethod
    def find(self, deployment: str) -> list[Resource]:
        """Every resource tagged with this deployment (one list call where possible)."""

    @abc.abstractmethod
    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        """Current state of many resources in one call; missing ones come back DELETED."""

    @abc.abstractmethod
    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        """Change a resource in place (resize a server, grow a volume)."""

    @abc.abstractmethod
    def delete(self, provider_id: str) -> None:
        """Delete a resource; deleting one that is already gone is not an error."""

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        """Attach a volume to a server; returns the attachment (kind ``attachment``, id
        ``SERVER/VOLUME``). Attaching what is already attached is not an error."""
        raise ProviderError(f"provider {self.type_name!r} cannot attach volumes")

    def detach(self, attachment_id: str) -> None:
        """Detach ``SERVER/VOLUME``; detaching what is not attached is not an error."""
        raise ProviderError(f"provider {self.type_name!r} cannot detach volumes")

    def start(self, provider_id: str) -> Resource:
        """Power a stopped server on again (optional)."""
        raise NotImplementedError(f"provider {self.type_name!r} (site "
                                  f"{getattr(self.site, 'name', '?')}) cannot start servers")

    def stop(self, provider_id: str) -> Resource:
        """Power a server off, keeping it and its disks (optional)."""
        raise NotImplementedError(f"provider {self.type_name!r} (site "
                                  f"{getattr(self.site, 'name', '?')}) cannot stop servers")

    def release(self, deployment: str) -> None:
        """Remove what the deployment's resources on this site shared (a key pair, a
        security group, a network the provider made by itself) when none of its
        resources is left here. The engine calls it after deleting a deployment, so a
        crash between making such an object and the first server leaves nothing behind.
        Never touches anything not tagged with this deployment."""

    def estimate(self, kind: str, action: str) -> float:
        """Typical seconds an action takes, for the plan's duration estimate."""
        return {"compute": 60.0, "volume": 10.0, "network": 5.0, "port": 2.0}.get(kind, 5.0)

    def close(self) -> None:
        """Release connections."""
