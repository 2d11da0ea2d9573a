"""What an OpenStack site offers: flavors (with GPUs and InfiniBand read from their
extra_specs), images (with OS and GPU-driver metadata) and quotas, each merged with what
the site catalogue declares for what the cloud does not say."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Iterable

from orchestrator.providers.base import Flavor, GpuOffer, Image, Quotas

#: GPU models whose vendor an alias name implies (pci_passthrough:alias=a100:2)
_VENDORS = (("NVIDIA", re.compile(r"^(?:[AHLBKPTVG]\d{1,3}|RTX|GTX|QUADRO|TESLA|TITAN|GH\d|GB\d)",
                                  re.I)),
            ("AMD", re.compile(r"^(?:MI\d|RADEON|INSTINCT)", re.I)),
            ("Intel", re.compile(r"^(?:MAX|FLEX|ARC|GAUDI|PVC)", re.I)))
_VENDOR_PREFIX = re.compile(r"^(nvidia|amd|intel)[-_ ]?", re.I)
_NIC_ALIAS = re.compile(r"(infiniband|^ib[-_]?|mlx|connectx|hca)", re.I)
_GPU_RESOURCE = re.compile(r"^resources\d*(?:_[A-Za-z0-9]+)?:(PGPU|VGPU|CUSTOM_\w*GPU\w*)$")
_TRUE = {"true", "yes", "1", "required", "on"}


def _last(key: str) -> str:
    return key.rsplit(":", 1)[-1].lower()


def _prop(specs: dict, *names: str) -> str | None:
    """The value of the first spec whose key (or its part after the last ':') is a name."""
    for key, value in specs.items():
        if _last(key) in names or key.lower() in names:
            if value not in (None, ""):
                return str(value)
    return None


def _int(text: str | None) -> int:
    try:
        return int(float(str(text).strip()))
    except (TypeError, ValueError):
        return 0


def vendor_of(model: str | None) -> str | None:
    if not model:
        return None
    for vendor, pattern in _VENDORS:
        if pattern.match(model):
            return vendor
    return None


def gpus_from_specs(specs: dict) -> GpuOffer:
    """GPUs a flavor gives: ``pci_passthrough:alias`` (``a100:2``, several comma-separated),
    ``resources:PGPU`` / ``resources:VGPU`` (granular groups too), and properties naming
    the count, vendor and model (``gpu_count``/``num_gpus``, ``gpu_vendor``, ``gpu_model``)."""
    count, model, vendor = 0, None, None
    for alias in (specs.get("pci_passthrough:alias") or "").split(","):
        name, _, number = alias.strip().partition(":")
        if not name or _NIC_ALIAS.search(name):
            continue
        count += _int(number or 1) or 1
        prefix = _VENDOR_PREFIX.match(name)
        vendor = vendor or (prefix.group(1) if prefix else None)
        model = model or _VENDOR_PREFIX.sub("", name).upper()
    if not count:
        count = sum(_int(v) for k, v in specs.items() if _GPU_RESOURCE.match(k))
    declared = _int(_prop(specs, "gpu_count", "num_gpus", "gpus", "gpu_number"))
    count = count or declared
    if not count and (_prop(specs, "has_gpu", "gpu") or "").lower() in _TRUE:
        count = 1
    model = _prop(specs, "gpu_model", "gpu_type") or model
    vendor = _prop(specs, "gpu_vendor") or vendor or vendor_of(model)
    if not count:
        return GpuOffer()
    if vendor and vendor.upper() in ("NVIDIA", "AMD"):
        vendor = vendor.upper()
    return GpuOffer(count, vendor, model)


def infiniband_from_specs(specs: dict) -> bool:
    """InfiniBand from a property (``infiniband``, ``has_infiniband``, ``ib``), a required
    trait naming it (``trait:CUSTOM_INFINIBAND=required``) or a PCI alias of an HCA."""
    for key, value in specs.items():
        text = str(value).lower()
        if key.startswith("trait") and "INFINIBAND" in key.upper() and text == "required":
            return True
        if _last(key) in ("infiniband", "has_infiniband", "ib", "infiniband_support") and \
                text in _TRUE:
            return True
    aliases = (specs.get("pci_passthrough:alias") or "").split(",")
    return any(_NIC_ALIAS.search(a.partition(":")[0].strip()) for a in aliases if a.strip())


def flavor_from_cloud(flavor: Any) -> Flavor:
    specs = dict(getattr(flavor, "extra_specs", None) or {})
    preemptible = (_prop(specs, "preemptible", "spot") or "").lower() in _TRUE
    return Flavor(name=flavor.name, id=flavor.id, cpus=float(flavor.vcpus or 0),
                  memory_mib=float(flavor.ram or 0), disk_gib=float(flavor.disk or 0),
                  gpus=gpus_from_specs(specs), infiniband=infiniband_from_specs(specs),
                  preemptible=preemptible)


def merge_flavor(live: Flavor, declared: Flavor | None) -> Flavor:
    """The cloud's sizes, completed by the site's declaration (GPU model, InfiniBand)."""
    if declared is None:
        return live
    gpus = live.gpus
    if declared.gpus.count and not gpus.count:
        gpus = declared.gpus
    elif gpus.count:
        gpus = GpuOffer(gpus.count, gpus.vendor or declared.gpus.vendor,
                        gpus.model or declared.gpus.model)
    return replace(live, gpus=gpus, infiniband=live.infiniband or declared.infiniband,
                   preemptible=live.preemptible or declared.preemptible)


def merged_flavors(cloud_flavors: Iterable[Any], declared: Iterable[Flavor]) -> tuple:
    declared = list(declared)
    result = []
    for item in cloud_flavors:
        if getattr(item, "is_disabled", False):
            continue
        live = flavor_from_cloud(item)
        site = next((f for f in declared if f.name == live.name or
                     (f.id is not None and str(f.id) == live.id)), None)
        result.append(merge_flavor(live, site))
    return tuple(sorted(result, key=lambda f: (f.gpus.count, f.cpus, f.memory_mib, f.name)))


def _image_prop(image: Any, *names: str) -> str | None:
    props = dict(getattr(image, "properties", None) or {})
    for name in names:
        value = getattr(image, name, None) if not name.startswith("_") else None
        if value in (None, ""):
            value = props.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def image_from_cloud(image: Any) -> Image:
    return Image(name=image.name or image.id, id=image.id,
                 distribution=(_image_prop(image, "os_distro") or "").lower() or None,
                 version=_image_prop(image, "os_version"),
                 architecture=_image_prop(image, "architecture", "hw_architecture"),
                 gpu_driver=_image_prop(image, "gpu_driver", "nvidia_driver",
                                        "nvidia_driver_version"),
                 cuda_version=_image_prop(image, "cuda_version", "cuda"))


def merge_image(live: Image, declared: Image | None) -> Image:
    if declared is None:
        return live
    return Image(name=live.name, id=live.id,
                 distribution=live.distribution or declared.distribution,
                 version=live.version or declared.version,
                 architecture=live.architecture or declared.architecture,
                 gpu_driver=live.gpu_driver or declared.gpu_driver,
                 cuda_version=live.cuda_version or declared.cuda_version,
                 aliases=tuple(dict.fromkeys((*live.aliases, *declared.aliases))))


def merged_images(cloud_images: Iterable[Any], declared: Iterable[Image]) -> tuple:
    declared = list(declared)
    result = []
    for item in cloud_images:
        if getattr(item, "status", "active") != "active":
            continue
        live = image_from_cloud(item)
        site = next((i for i in declared if i.name == live.name or
                     (i.id is not None and str(i.id) == live.id)), None)
        result.append(merge_image(live, site))
    return tuple(result)


def _limit(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number < 0 else number


def _lowest(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def merged_quotas(compute: Any, volume: Any, declared: Quotas) -> Quotas:
    """Live limits and usage (Nova, Cinder), the lower of cloud and site where both say."""
    used: dict = {}
    usage = dict(getattr(compute, "usage", None) or {}) if compute is not None else {}
    used.update({"instances": usage.get("instances", 0), "cores": usage.get("cores", 0),
                 "memory_mib": usage.get("ram", 0)})
    vusage = dict(getattr(volume, "usage", None) or {}) if volume is not None else {}
    used.update({"volumes": vusage.get("volumes", 0), "volume_gib": vusage.get("gigabytes", 0)})
    instances = _limit(getattr(compute, "instances", None)) if compute is not None else None
    cores = _limit(getattr(compute, "cores", None)) if compute is not None else None
    ram = _limit(getattr(compute, "ram", None)) if compute is not None else None
    volumes = _limit(getattr(volume, "volumes", None)) if volume is not None else None
    gib = _limit(getattr(volume, "gigabytes", None)) if volume is not None else None
    lowest_instances = _lowest(instances, declared.instances)
    lowest_volumes = _lowest(volumes, declared.volumes)
    return Quotas(instances=int(lowest_instances) if lowest_instances is not None else None,
                  cores=_lowest(cores, declared.cores),
                  memory_mib=_lowest(ram, declared.memory_mib), gpus=declared.gpus,
                  volumes=int(lowest_volumes) if lowest_volumes is not None else None,
                  volume_gib=_lowest(gib, declared.volume_gib),
                  used={**dict(declared.used or {}), **used})
