"""Per-driver differences of the ``cloud`` provider, kept out of its common code path.

An adapter knows how one libcloud driver names sizes, finds images, injects the
deployment's key, opens the deployment's ports, tags servers and asks for spot capacity.
``Adapter`` here is the generic default, good for any driver that implements libcloud's
base NodeDriver calls; ``ec2``, ``gce`` and ``azure_arm`` have adapters of their own.
Adapters receive a live libcloud driver and return libcloud objects or plain values;
the provider translates every libcloud exception.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any
from urllib.parse import urlsplit

from orchestrator.providers.base import TAG_DEPLOYMENT, Flavor, GpuOffer, Image

#: size ``extra`` keys drivers use for the number of virtual CPUs
CPU_KEYS = ("vcpu", "vcpus", "cpus", "cpu", "guestCpus", "numberOfCores", "cores")
#: the login user cloud images of a distribution are made with
SSH_USERS = {"ubuntu": "ubuntu", "debian": "admin", "rocky": "rocky", "almalinux": "almalinux",
             "centos": "centos", "fedora": "fedora", "amazon": "ec2-user", "rhel": "ec2-user"}
_DISTRIBUTIONS = ("ubuntu", "debian", "rocky", "almalinux", "centos", "fedora", "rhel",
                  "amazon", "amzn")


def resource_name(deployment: str, suffix: str = "") -> str:
    """The name of what a deployment owns besides its servers (key pair, firewall)."""
    return f"orch-{deployment}{suffix}"


def describe_image(name: str) -> tuple[str | None, str | None]:
    """(distribution, version) guessed from an image name: 'ubuntu-22.04-x' -> ubuntu, 22.04."""
    lowered = (name or "").lower()
    distribution = next((d for d in _DISTRIBUTIONS if d in lowered), None)
    if distribution == "amzn":
        distribution = "amazon"
    version = re.search(r"(\d+(?:\.\d+)?)", lowered.split(distribution or "", 1)[-1]) \
        if distribution else None
    return distribution, version.group(1) if version else None


class Adapter:
    """The generic adapter: libcloud's base calls, tags kept as node metadata where the
    driver reports it, the key given as ``auth``, no firewall and no spot capacity."""

    name = "generic"
    supports_spot = False
    default_ssh_user = "root"

    def __init__(self, options: dict):
        self.options = options

    # --- connecting ---------------------------------------------------------------------------
    def driver_class(self, cls: type) -> type:
        return cls

    def driver_kwargs(self, args: dict, region: str | None) -> dict:
        """Constructor arguments: ``endpoint: URL`` becomes host/port/secure."""
        kwargs = dict(args)
        endpoint = kwargs.pop("endpoint", None)
        if endpoint:
            parts = urlsplit(str(endpoint))
            kwargs.setdefault("host", parts.hostname)
            if parts.port:
                kwargs.setdefault("port", parts.port)
            kwargs.setdefault("secure", parts.scheme != "http")
        if region:
            kwargs.setdefault("region", region)
        return kwargs

    # --- sizes and images ---------------------------------------------------------------------
    def gpus_of(self, size: Any) -> GpuOffer:
        table = self.options.get("gpu_sizes") or {}
        entry = table.get(size.id) or table.get(size.name)
        if entry is None:
            return GpuOffer()
        if isinstance(entry, int):
            return GpuOffer(entry, "NVIDIA")
        return GpuOffer(int(entry.get("count", 1)), entry.get("vendor", "NVIDIA"),
                        entry.get("model"))

    def flavor(self, size: Any) -> Flavor | None:
        extra = getattr(size, "extra", None) or {}
        cpus = next((extra[k] for k in CPU_KEYS if extra.get(k) not in (None, "", "NA")), 0)
        try:
            cpus = float(cpus)
        except (TypeError, ValueError):
            cpus = 0.0
        return Flavor(name=str(size.name or size.id), id=str(size.id), cpus=cpus,
                      memory_mib=float(size.ram or 0), disk_gib=float(size.disk or 0),
                      gpus=self.gpus_of(size))

    def offer_images(self, driver: Any) -> list:
        """Images to offer beside the site's own list (none: public catalogues are huge)."""
        return []

    def image(self, driver: Any, image_id: str | None, pattern: str | None) -> Any | None:
        """The image with this id, else the newest whose name matches ``pattern``."""
        images = driver.list_images()
        if image_id:
            return next((i for i in images if i.id == image_id), None)
        return newest(i for i in images if fnmatch.fnmatchcase(i.name or "", pattern or ""))

    # --- what create_node gets ----------------------------------------------------------------
    def key_kwargs(self, driver: Any, deployment: str, public_key: str | None) -> dict:
        if not public_key:
            return {}
        from libcloud.compute.base import NodeAuthSSHKey

        return {"auth": NodeAuthSSHKey(public_key)}

    def firewall_kwargs(self, driver: Any, deployment: str, ports: list, tags: dict) -> dict:
        return {}

    def tag_kwargs(self, tags: dict) -> dict:
        return {"ex_metadata": dict(tags)}

    def spot_kwargs(self) -> dict:
        return {}

    def server_kwargs(self) -> dict:
        """Further create_node arguments the driver needs (resource group, network...)."""
        return {}

    def location(self, driver: Any) -> Any | None:
        wanted = self.options.get("zone")
        if not wanted:
            return None
        return next((loc for loc in driver.list_locations()
                     if wanted in (loc.id, loc.name)), None)

    # --- reading servers ----------------------------------------------------------------------
    def node_tags(self, node: Any) -> dict:
        extra = getattr(node, "extra", None) or {}
        for key in ("tags", "labels", "metadata"):
            value = extra.get(key)
            if isinstance(value, dict) and TAG_DEPLOYMENT in value:
                return {str(k): str(v) for k, v in value.items()}
        return {}

    def list_nodes(self, driver: Any, deployment: str | None = None,
                   ids: list[str] | None = None) -> list:
        """Our servers, in ONE list call: of a deployment, or with these ids."""
        nodes = driver.list_nodes()
        if ids is not None:
            wanted = set(ids)
            return [n for n in nodes if n.id in wanted]
        return [n for n in nodes if self.node_tags(n).get(TAG_DEPLOYMENT) == deployment]

    def is_spot(self, node: Any) -> bool:
        return False

    # --- volumes ------------------------------------------------------------------------------
    def create_volume(self, driver: Any, size_gib: int, name: str, tags: dict,
                      volume_type: str | None) -> Any:
        return driver.create_volume(size_gib, name, location=self.location(driver))

    def volume_tags(self, volume: Any) -> dict:
        return self.node_tags(volume)

    def list_volumes(self, driver: Any, deployment: str | None = None,
                     ids: list[str] | None = None) -> list:
        volumes = driver.list_volumes()
        if ids is not None:
            return [v for v in volumes if v.id in set(ids)]
        return [v for v in volumes if self.volume_tags(v).get(TAG_DEPLOYMENT) == deployment]

    def attach_volume(self, driver: Any, node: Any, volume: Any, device: str | None) -> None:
        driver.attach_volume(node, volume, device)

    def detach_volume(self, driver: Any, volume: Any, server_id: str) -> None:
        driver.detach_volume(volume)

    # --- what is left when the deployment's last server is gone -------------------------------
    def cleanup(self, driver: Any, deployment: str) -> list[str]:
        """Remove the deployment's key pair and firewall; return what was removed."""
        return []


def newest(images) -> Any | None:
    """The image created last (by ``extra.creation_date`` where known, then by name)."""
    return max(images, key=lambda i: (str((i.extra or {}).get("creation_date") or ""),
                                      i.name or ""), default=None)


def offered_image(image: Any) -> Image:
    """A cloud image as an offer entry, with OS facts guessed from its name."""
    distribution, version = describe_image(image.name or "")
    return Image(name=image.name or image.id, id=image.id, distribution=distribution,
                 version=version)


def for_driver(driver: str, options: dict) -> Adapter:
    """The adapter of a libcloud driver name (``ec2``, ``gce``, ``azure_arm``...)."""
    if driver == "ec2":
        from orchestrator.providers.cloud.adapters.ec2 import Ec2Adapter
        return Ec2Adapter(options)
    if driver == "gce":
        from orchestrator.providers.cloud.adapters.gce import GceAdapter
        return GceAdapter(options)
    if driver in ("azure_arm", "azure"):
        from orchestrator.providers.cloud.adapters.azure import AzureAdapter
        return AzureAdapter(options)
    return Adapter(options)
