"""Flavor and image matching for one compute node, with a reason when nothing fits."""
from __future__ import annotations

import re

from orchestrator.providers.base import Flavor, Image
from orchestrator.topology.model import ComputeRequirements


def version_key(text) -> tuple:
    """'12.2' -> (12, 2); non-numeric parts sort after numbers."""
    if text is None:
        return ()
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.\-_]", str(text)) if p)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()


def _model_matches(wanted: str, offered: str | None) -> bool:
    """'A100' matches 'A100', 'a100-80gb' and 'NVIDIA A100'; 'A10' does not match 'A100'."""
    if not offered:
        return False
    tokens = re.split(r"[\s_\-/]+", offered.lower())
    return wanted.lower() in tokens or wanted.lower() == offered.lower()


def _gpu_text(count: int, vendor: str | None, model: str | None) -> str:
    return f"{count} x " + (" ".join(x for x in (vendor, model) if x) or "GPU")


def gpu_fits(req: ComputeRequirements, flavor: Flavor) -> bool:
    want = req.gpus
    if want.count <= 0:
        return True
    have = flavor.gpus
    if have.count < want.count:
        return False
    if want.vendor and not _same(want.vendor, have.vendor):
        return False
    return not want.model or _model_matches(want.model, have.model)


def match_flavor(req: ComputeRequirements, flavors: tuple[Flavor, ...]
                 ) -> tuple[Flavor | None, str]:
    """The smallest flavor satisfying ``req`` (GPU fit first), or None and why."""
    if not flavors:
        return None, "the site offers no flavors"
    if req.instance_type:
        named = [f for f in flavors if req.instance_type in (f.name, f.id)]
        if not named:
            return None, f"no flavor named {req.instance_type}"
        flavors = tuple(named)
    candidates = list(flavors)
    if req.gpus.count > 0:
        candidates = [f for f in candidates if gpu_fits(req, f)]
        if not candidates:
            gpu_flavors = [f for f in flavors if f.gpus.count]
            wanted = _gpu_text(req.gpus.count, req.gpus.vendor, req.gpus.model)
            if not gpu_flavors:
                return None, f"no flavor with {wanted} (the site has no GPU flavors)"
            best = max(gpu_flavors, key=lambda f: (f.gpus.count, f.name))
            return None, (f"no flavor with {wanted} (largest GPU flavor: "
                          f"{_gpu_text(best.gpus.count, None, best.gpus.model)})")
    if req.infiniband:
        candidates = [f for f in candidates if f.infiniband]
        if not candidates:
            return None, "no flavor with InfiniBand" + (
                f" and {_gpu_text(req.gpus.count, req.gpus.vendor, req.gpus.model)}"
                if req.gpus.count else "")
    if not req.preemptible:
        kept = [f for f in candidates if not f.preemptible]
        candidates = kept or candidates if req.instance_type else kept
    for attr, need, unit in (("cpus", req.cpus, "cpus"),
                             ("memory_mib", req.memory_mib, "MiB memory"),
                             ("disk_gib", req.disk_gib, "GiB disk")):
        if need is None:
            continue
        fitting = [f for f in candidates if getattr(f, attr) >= need or (attr == "disk_gib" and
                                                                         not f.disk_gib)]
        if not fitting:
            largest = max((getattr(f, attr) for f in candidates), default=0)
            return None, f"no flavor with {need:g} {unit} (largest: {largest:g})"
        candidates = fitting
    if not candidates:
        return None, "no suitable flavor"
    # the smallest that fits; GPU-less requests stay off GPU flavors when possible;
    # preemptible requests prefer preemptible flavors
    return min(candidates, key=lambda f: (f.gpus.count, req.preemptible and not f.preemptible,
                                          f.cpus, f.memory_mib, f.disk_gib or 0, f.name)), ""


def _image_named(name: str, images: tuple[Image, ...]) -> Image | None:
    for image in images:
        if name in (image.name, image.id) or name in image.aliases:
            return image
    return None


def match_image(req: ComputeRequirements, images: tuple[Image, ...]
                ) -> tuple[Image | None, str]:
    """(image, "") when one fits; (None, "") when the provider's default applies;
    (None, reason) when the site cannot satisfy the OS requirements."""
    os_req = req.os
    if os_req.image:
        found = _image_named(os_req.image, images)
        if found is not None:
            return found, ""
        if not images:  # the site lists no images: the provider resolves the name itself
            return Image(name=os_req.image), ""
        return None, f"no image named {os_req.image}"
    wants_driver = bool(os_req.gpu_driver) and str(os_req.gpu_driver).lower() not in ("false",
                                                                                      "0")
    if not any((os_req.distribution, os_req.version, wants_driver, os_req.cuda_version)):
        if req.gpus.count and images:
            with_driver = [i for i in images if i.gpu_driver]
            if with_driver:
                return with_driver[0], ""
        return (images[0] if images else None), ""
    candidates = list(images)
    described = []
    if os_req.distribution:
        described.append(os_req.distribution)
        candidates = [i for i in candidates if _same(i.distribution, os_req.distribution)]
    if os_req.version:
        described.append(os_req.version)
        want = version_key(os_req.version)
        candidates = [i for i in candidates if version_key(i.version)[:len(want)] == want]
    if wants_driver:
        described.append("GPU driver")
        candidates = [i for i in candidates if i.gpu_driver]
    if os_req.cuda_version:
        described.append(f"CUDA >= {os_req.cuda_version}")
        want = version_key(os_req.cuda_version)
        candidates = [i for i in candidates if i.cuda_version and version_key(i.cuda_version)
                      >= want]
    if not candidates:
        if not images:
            return None, ""  # nothing declared: the provider's default image applies
        return None, f"no image with {' '.join(described)}"
    best = max(candidates, key=lambda i: (bool(i.gpu_driver) == bool(req.gpus.count),
                                          version_key(i.version), version_key(i.cuda_version),
                                          i.name))
    return best, ""
