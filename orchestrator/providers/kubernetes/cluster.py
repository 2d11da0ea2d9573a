"""What the provider works out about a cluster and an instance: site settings, flavors
from the cluster's nodes, the container an instance runs, provider ids, volumes, and
changes to an existing StatefulSet (mounts, resources)."""
from __future__ import annotations

import re
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    ERROR,
    Flavor,
    GpuOffer,
    ProviderError,
    Quotas,
    Resource,
)
from orchestrator.providers.kubernetes import manifests as mf
from orchestrator.providers.kubernetes.client import KubeApi

RESOURCE_OF_KIND = {"StatefulSet": "statefulsets", "Service": "services", "Secret": "secrets",
                    "PersistentVolumeClaim": "persistentvolumeclaims", "Ingress": "ingresses",
                    "Namespace": "namespaces"}
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3,
             "n": 1e-9, "u": 1e-6}


def settings_from(site: Any, options: dict) -> mf.Settings:
    """The manifests' settings from the site's options (validated here)."""
    for key in ("service_type", "public_service_type"):
        value = options.get(key)
        if value is not None and value not in mf.SERVICE_TYPES:
            raise ProviderError(f"site '{site.name}': option {key} must be one of "
                                f"{', '.join(mf.SERVICE_TYPES)} (got {value!r})")
    namespace = (getattr(site, "credentials", None) or {}).get("namespace")
    given = {key: options[key] for key in (
        "service_type", "public_service_type", "ingress_domain", "ingress_class",
        "rdma_resource", "cvmfs_storage_class", "storage_class", "gpu_resource",
        "gpu_product_label", "image_pull_policy") if options.get(key) is not None}
    if options.get("rdma_count") is not None:
        given["rdma_count"] = int(options["rdma_count"])
    if options.get("keep_alive_command"):
        given["keep_alive_command"] = tuple(str(a) for a in options["keep_alive_command"])
    return mf.Settings(shared_namespace=str(namespace) if namespace else None, **given)


# --- ids ------------------------------------------------------------------------------------

def compute_id(namespace: str, name: str) -> str:
    return f"statefulset:{namespace}:{name}"


def volume_id(namespace: str, name: str) -> str:
    return f"pvc:{namespace}:{name}"


def parse_id(provider_id: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of ``statefulset:NS:NAME``, ``pvc:NS:NAME``,
    ``namespace:NS``; ('port', '', id) for anything else."""
    parts = str(provider_id).split(":")
    if parts[0] in ("statefulset", "pvc") and len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if parts[0] == "namespace" and len(parts) == 2:
        return "namespace", parts[1], parts[1]
    return "port", "", str(provider_id)


# --- quantities and flavors -----------------------------------------------------------------

def parse_quantity(text: Any) -> float:
    """A Kubernetes quantity ('7800m', '32Gi', '1e3') as a number."""
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not match:
        return 0.0
    number, suffix = float(match[1]), match[2]
    return number * _SUFFIXES.get(suffix, 1.0)


def list_nodes(api: KubeApi) -> list[dict]:
    """The cluster's nodes; none when the user may not list them (403)."""
    try:
        return api.list("nodes", None)
    except ProviderError as exc:
        if "forbidden" in str(exc).lower():
            return []
        raise


def node_flavors(nodes: list[dict], settings: mf.Settings) -> dict[str, Flavor]:
    """One flavor per distinct node shape (allocatable CPUs, memory, GPUs, RDMA)."""
    found: dict[str, Flavor] = {}
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cpus = round(parse_quantity(allocatable.get("cpu", 0)), 1)
        memory = int(parse_quantity(allocatable.get("memory", 0)) // 2**20)
        gpus = int(parse_quantity(allocatable.get(settings.gpu_resource, 0)))
        product = ((node.get("metadata") or {}).get("labels") or {}).get(
            settings.gpu_product_label) if gpus else None
        rdma = bool(settings.rdma_resource and
                    parse_quantity(allocatable.get(settings.rdma_resource, 0)) > 0)
        name = f"node-{cpus:g}cpu-{memory // 1024}gi" + (
            f"-{gpus}x{re.sub(r'[^a-z0-9]+', '-', (product or 'gpu').lower())}" if gpus
            else "") + (
            "-rdma" if rdma else "")
        found[name] = Flavor(name, cpus, memory, gpus=GpuOffer(gpus, "NVIDIA" if gpus else None,
                                                               product), infiniband=rdma)
    return found


def pod_flavor(quotas: Quotas) -> Flavor:
    """The flavor of a site that declares none and whose nodes cannot be listed: as large
    as the quotas allow (the scheduler has the last word)."""
    return Flavor("pod", float(quotas.cores or 1024), float(quotas.memory_mib or 4194304))


def gpu_products(model: str | None, options: dict, node_flavors: dict[str, Flavor]
                 ) -> tuple[str, ...]:
    """Values of the GPU product label for a model: the site's ``gpu_products`` mapping,
    else the products of the nodes whose product names the model, else the model."""
    if not model:
        return ()
    mapping = options.get("gpu_products") or {}
    for key, values in mapping.items():
        if str(key).lower() == str(model).lower():
            return tuple(str(v) for v in ([values] if isinstance(values, str) else values))
    wanted = str(model).lower()
    seen = sorted({f.gpus.model for f in node_flavors.values() if f.gpus.model and
                   wanted in re.split(r"[\s_\-/]+", f.gpus.model.lower())})
    return tuple(seen) or (str(model),)


def container_for(spec, flavor: Flavor | None, site: Any, settings: mf.Settings,
                  options: dict, node_flavors: dict[str, Flavor]) -> mf.Container:
    """Image, requests and devices of an instance: the template's requirements first, the
    flavor's size when the flavor is one sites.yaml declares (a size, not a node shape)."""
    req = (spec.properties or {}).get("requirements") or {}
    declared = bool(flavor and site.flavor(flavor.name))
    cpus = req.get("cpus") or (flavor.cpus if declared else None)
    memory = req.get("memory_mib") or (flavor.memory_mib if declared else None)
    gpu_req = req.get("gpus") or {}
    gpus = int(gpu_req.get("count") or (flavor.gpus.count if flavor else 0) or 0)
    model = gpu_req.get("model") or (flavor.gpus.model if flavor and declared else None)
    products = gpu_products(model, options, node_flavors) if gpus else ()
    infiniband = bool(req.get("infiniband") or (flavor.infiniband if flavor else False))
    if infiniband and not settings.rdma_resource:
        raise ProviderError(f"site '{site.name}': {spec.node}[{spec.index}] needs InfiniBand "
                            "but the site sets no rdma_resource option (the RDMA device "
                            "plugin's resource name)")
    image, keep_alive = image_for(spec.image, site, options)
    return mf.Container(image=image, keep_alive=keep_alive, cpus=cpus, memory_mib=memory,
                        gpus=gpus, gpu_products=products, infiniband=infiniband)


def image_for(name: str | None, site: Any, options: dict) -> tuple[str, bool]:
    """(image reference, keep alive) for a requested image name. Images sites.yaml declares
    with a ``distribution`` are OS images (kept alive by a shell loop); other images run
    their own entrypoint; no image means the site's base OS image."""
    if not name:
        return str(options.get("image") or "docker.io/library/debian:bookworm"), True
    declared = site.image(name)
    if declared is None:
        return name, False
    return (declared.id or declared.name), bool(declared.distribution)


# --- volumes and pods -----------------------------------------------------------------------

def volume_resource(claim: dict, namespace: str) -> Resource:
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    phase = (claim.get("status") or {}).get("phase") or "Pending"
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    attributes = {"namespace": namespace, "claim_name": meta.get("name"), "phase": phase,
                  "size_gib": round(parse_quantity(size) / 2**30, 3) if size else None,
                  "storage_class": spec.get("storageClassName")}
    # a claim of a WaitForFirstConsumer class stays Pending until a pod uses it: usable
    status, fault = (ERROR, f"claim {meta.get('name')} is Lost") if phase == "Lost" else \
        (ACTIVE, None)
    return Resource(volume_id(namespace, meta.get("name", "")), "volume", status,
                    mf.tags_of(claim), attributes, fault)


def grown_claim(claim: dict, size_gib: Any, provider_id: str) -> dict | None:
    """The claim asking for ``size_gib``; None when unchanged; shrinking is refused."""
    if not size_gib:
        return None
    requests = claim.setdefault("spec", {}).setdefault("resources", {}).setdefault(
        "requests", {})
    current = parse_quantity(requests.get("storage", 0)) / 2**30
    if abs(float(size_gib) - current) < 1e-6:
        return None
    if float(size_gib) < current:
        raise ProviderError(f"volume {provider_id} cannot shrink from {current:g} GiB to "
                            f"{float(size_gib):g} GiB")
    requests["storage"] = f"{int(size_gib)}Gi"
    return claim


def exposes_ports(pod: dict | None) -> bool:
    containers = ((pod or {}).get("spec") or {}).get("containers") or ()
    return any(c.get("ports") for c in containers)


# --- changes to a StatefulSet ---------------------------------------------------------------

def with_volume(statefulset: dict, claim: str, mount: str) -> dict:
    """The StatefulSet with the claim mounted at ``mount`` (unchanged if it already is)."""
    pod = statefulset["spec"]["template"]["spec"]
    entry = mf.volume_entry(claim)
    if any(v.get("name") == entry for v in pod.get("volumes") or ()):
        return statefulset
    pod.setdefault("volumes", []).append({"name": entry,
                                          "persistentVolumeClaim": {"claimName": claim}})
    pod["containers"][0].setdefault("volumeMounts", []).append({"name": entry,
                                                                "mountPath": mount})
    return statefulset


def without_volume(statefulset: dict, claim: str) -> dict:
    pod = statefulset["spec"]["template"]["spec"]
    entry = mf.volume_entry(claim)
    pod["volumes"] = [v for v in pod.get("volumes") or () if v.get("name") != entry]
    for container in pod["containers"]:
        container["volumeMounts"] = [m for m in container.get("volumeMounts") or ()
                                     if m.get("name") != entry]
    return statefulset


def mounted_claims(statefulset: dict) -> dict[str, str]:
    """claim -> mount path of the volumes mounted in the StatefulSet's pod."""
    pod = ((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}
    by_entry = {v["name"]: (v.get("persistentVolumeClaim") or {}).get("claimName")
                for v in pod.get("volumes") or () if v.get("persistentVolumeClaim")}
    found = {}
    for container in pod.get("containers") or ():
        for mount in container.get("volumeMounts") or ():
            claim = by_entry.get(mount.get("name"))
            if claim:
                found[claim] = mount.get("mountPath")
    return found


def with_resources(statefulset: dict, container: mf.Container, settings: mf.Settings) -> dict:
    main = statefulset["spec"]["template"]["spec"]["containers"][0]
    limits = mf.resources(container, settings)
    if limits:
        main["resources"] = limits
    else:
        main.pop("resources", None)
    return statefulset
