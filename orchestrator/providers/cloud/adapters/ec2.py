"""Amazon EC2 (and EC2-compatible endpoints) through libcloud's ``ec2`` driver.

- Requests are signed with Signature Version 4 (what AWS and its emulators route by).
- Replies are parsed whether or not their XML namespace ends with '/': libcloud looks
  elements up in ``http://ec2.amazonaws.com/doc/2016-11-15/`` while some EC2-compatible
  endpoints (moto among them) answer in the same namespace without the slash, which left
  key fingerprints, group ids and more unparsed.
- The deployment's key is imported as key pair ``orch-<deployment>``; its ports open in a
  security group of the same name, tagged with the deployment; both go with the last server.
- Servers are tagged at creation (TagSpecification), found by tag filters, polled with
  one DescribeInstances filtered by instance id, and run as spot instances on request.
- GPU models come from a table of instance families (libcloud knows only the count).
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any

from orchestrator.providers.base import TAG_DEPLOYMENT, GpuOffer
from orchestrator.providers.cloud.adapters import Adapter, newest, resource_name

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"  # libcloud's EC2 API version

#: GPU vendor and model per instance family; sites add or override with options.gpu_models
GPU_FAMILIES = {
    "p2": ("NVIDIA", "K80"), "p3": ("NVIDIA", "V100"), "p3dn": ("NVIDIA", "V100"),
    "p4d": ("NVIDIA", "A100"), "p4de": ("NVIDIA", "A100"), "p5": ("NVIDIA", "H100"),
    "p5e": ("NVIDIA", "H200"), "p5en": ("NVIDIA", "H200"), "g3": ("NVIDIA", "M60"),
    "g3s": ("NVIDIA", "M60"), "g4dn": ("NVIDIA", "T4"), "g4ad": ("AMD", "V520"),
    "g5": ("NVIDIA", "A10G"), "g5g": ("NVIDIA", "T4G"), "g6": ("NVIDIA", "L4"),
    "gr6": ("NVIDIA", "L4"), "g6e": ("NVIDIA", "L40S"),
}
_DUPLICATE = ("Duplicate", "already exists")
_GONE = ("NotFound", "does not exist")
_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def tolerant_driver(cls: type) -> type:
    """A subclass of libcloud's EC2 driver whose replies parse with or without the
    namespace's trailing slash (see the module's docstring)."""
    with _classes_lock:
        if cls in _classes:
            return _classes[cls]
        bare = f'xmlns="{NAMESPACE.rstrip("/")}"'

        class Response(cls.connectionCls.responseCls):
            def parse_body(self):
                if isinstance(self.body, str) and bare in self.body:
                    self.body = self.body.replace(bare, f'xmlns="{NAMESPACE}"', 1)
                return super().parse_body()

            def parse_error(self):  # libcloud finds Errors/Error only outside a namespace
                if isinstance(self.body, str) and "<Response xmlns=" in self.body:
                    self.body = re.sub(r'<Response xmlns="[^"]*"', "<Response", self.body, 1)
                return super().parse_error()

        connection = type("EC2Connection", (cls.connectionCls,), {"responseCls": Response})
        _classes[cls] = type(cls.__name__, (cls,), {"connectionCls": connection})
        return _classes[cls]


def tag_specification(resource_type: str, tags: dict) -> dict:
    """TagSpecification query parameters: tags applied atomically with the creation."""
    params = {"TagSpecification.1.ResourceType": resource_type}
    for number, (key, value) in enumerate(sorted(tags.items()), start=1):
        params[f"TagSpecification.1.Tag.{number}.Key"] = key
        params[f"TagSpecification.1.Tag.{number}.Value"] = str(value)
    return params


def _has(exc: Exception, words: tuple[str, ...]) -> bool:
    return any(word in str(exc) for word in words)


class _Ref:
    """What delete_key_pair needs of a key pair: its name."""

    def __init__(self, ident: str, name: str | None = None):
        self.id, self.name = ident, name


class Ec2Adapter(Adapter):
    name = "ec2"
    supports_spot = True
    default_ssh_user = "ubuntu"

    def driver_class(self, cls: type) -> type:
        return tolerant_driver(cls)

    def driver_kwargs(self, args: dict, region: str | None) -> dict:
        kwargs = super().driver_kwargs(args, region)
        kwargs.setdefault("signature_version", "4")
        return kwargs

    # --- sizes and images ---------------------------------------------------------------------
    def gpus_of(self, size: Any) -> GpuOffer:
        declared = super().gpus_of(size)
        if declared.count:
            return declared
        count = (size.extra or {}).get("gpu")
        if not count or not str(count).isdigit():
            return GpuOffer()
        family = size.id.split(".")[0]
        models = {**GPU_FAMILIES,
                  **{k: ("NVIDIA", v) if isinstance(v, str) else tuple(v)
                     for k, v in (self.options.get("gpu_models") or {}).items()}}
        vendor, model = models.get(size.id) or models.get(family) or ("NVIDIA", None)
        return GpuOffer(int(count), vendor, model)

    def flavor(self, size: Any):
        families = self.options.get("size_families")
        if families and size.id.split(".")[0] not in families:
            return None
        processor = str((size.extra or {}).get("physicalProcessor") or "")
        arm = "Graviton" in processor
        if arm != (self.options.get("architecture") in ("arm64", "aarch64")):
            return None  # images are built for one architecture
        return super().flavor(size)

    def offer_images(self, driver: Any) -> list:
        owner = self.options.get("image_owner", "self")
        return list(driver.list_images(ex_owner=owner)) if owner else []

    def image(self, driver: Any, image_id: str | None, pattern: str | None) -> Any | None:
        if image_id:
            found = driver.list_images(ex_image_ids=[image_id])
            return found[0] if found else None
        owner = self.options.get("image_owner", "self")
        return newest(driver.list_images(ex_owner=owner or None,
                                         ex_filters={"name": pattern or ""}))

    # --- key pair, security group, tags, spot -------------------------------------------------
    def key_kwargs(self, driver: Any, deployment: str, public_key: str | None) -> dict:
        if not public_key:
            return {}
        name = resource_name(deployment)
        try:
            driver.import_key_pair_from_string(name, public_key.strip())
        except Exception as exc:  # noqa: BLE001 - libcloud raises plain Exceptions
            if not _has(exc, _DUPLICATE):
                raise
        return {"ex_keyname": name}

    def firewall_kwargs(self, driver: Any, deployment: str, ports: list, tags: dict) -> dict:
        name = resource_name(deployment)
        found = driver.ex_get_security_groups(filters={"group-name": name})
        if found:
            group_id = found[0].id
        else:
            params = {"Action": "CreateSecurityGroup", "GroupName": name,
                      "GroupDescription": f"orchestrator deployment {deployment}",
                      **tag_specification("security-group",
                                          {TAG_DEPLOYMENT: tags[TAG_DEPLOYMENT]})}
            try:
                driver.connection.request(driver.path, params=params)
            except Exception as exc:  # noqa: BLE001
                if not _has(exc, _DUPLICATE):
                    raise
            group_id = driver.ex_get_security_groups(filters={"group-name": name})[0].id
        rules = [{"port": 22, "protocol": "tcp", "remote_cidr": "0.0.0.0/0"}, *ports]
        for rule in rules:
            try:
                driver.ex_authorize_security_group_ingress(
                    group_id, int(rule["port"]), int(rule.get("end_port") or rule["port"]),
                    cidr_ips=[rule.get("remote_cidr") or "0.0.0.0/0"],
                    protocol=str(rule.get("protocol") or "tcp").lower())
            except Exception as exc:  # noqa: BLE001
                if not _has(exc, _DUPLICATE):
                    raise
        return {"ex_security_groups": [name]}

    def tag_kwargs(self, tags: dict) -> dict:
        return {"ex_metadata": dict(tags)}

    def spot_kwargs(self) -> dict:
        price = self.options.get("spot_max_price")
        return {"ex_spot": True, **({"ex_spot_max_price": float(price)} if price else {})}

    def location(self, driver: Any) -> Any | None:
        wanted = self.options.get("zone")
        if not wanted:
            return None
        return next((loc for loc in driver.list_locations()
                     if wanted in (loc.availability_zone.name, loc.name)), None)

    # --- reading ------------------------------------------------------------------------------
    def node_tags(self, node: Any) -> dict:
        return dict((node.extra or {}).get("tags") or {})

    def list_nodes(self, driver: Any, deployment: str | None = None,
                   ids: list[str] | None = None) -> list:
        if ids is not None:
            return driver.list_nodes(ex_filters={"instance-id": list(ids)}) if ids else []
        return driver.list_nodes(ex_filters={f"tag:{TAG_DEPLOYMENT}": deployment})

    def is_spot(self, node: Any) -> bool:
        return (node.extra or {}).get("instance_lifecycle") == "spot"

    # --- volumes ------------------------------------------------------------------------------
    def create_volume(self, driver: Any, size_gib: int, name: str, tags: dict,
                      volume_type: str | None) -> Any:
        location = self.location(driver) or driver.list_locations()[0]
        params = {"Action": "CreateVolume", "Size": str(size_gib),
                  "AvailabilityZone": location.availability_zone.name,
                  "VolumeType": volume_type or "gp3",
                  **tag_specification("volume", {"Name": name, **tags})}
        answer = driver.connection.request(driver.path, params=params).object
        volume_id = answer.findtext(f"{{{NAMESPACE}}}volumeId")
        return driver.list_volumes(ex_filters={"volume-id": [volume_id]})[0]

    def volume_tags(self, volume: Any) -> dict:
        return dict((volume.extra or {}).get("tags") or {})

    def list_volumes(self, driver: Any, deployment: str | None = None,
                     ids: list[str] | None = None) -> list:
        if ids is not None:
            return driver.list_volumes(ex_filters={"volume-id": list(ids)}) if ids else []
        return driver.list_volumes(ex_filters={f"tag:{TAG_DEPLOYMENT}": deployment})

    def attach_volume(self, driver: Any, node: Any, volume: Any, device: str | None) -> None:
        if not device:
            used = {m.get("device_name") for m in (node.extra or {}).get(
                "block_device_mapping") or []}
            device = next(f"/dev/sd{c}" for c in "fghijklmnop" if f"/dev/sd{c}" not in used)
        driver.attach_volume(node, volume, device)

    def detach_volume(self, driver: Any, volume: Any, server_id: str) -> None:
        driver.connection.request(driver.path, params={
            "Action": "DetachVolume", "VolumeId": volume.id, "InstanceId": server_id})

    # --- clean-up -----------------------------------------------------------------------------
    def cleanup(self, driver: Any, deployment: str) -> list[str]:
        """Delete the key pair, then the security group once no instance holds it (AWS
        refuses with DependencyViolation while terminating instances still do)."""
        name = resource_name(deployment)
        removed = []
        try:
            driver.delete_key_pair(_Ref(name, name))
            removed.append(f"key pair {name}")
        except Exception as exc:  # noqa: BLE001
            if not _has(exc, _GONE):
                raise
        deadline = time.monotonic() + float(self.options.get("cleanup_timeout", 300))
        while True:
            groups = driver.ex_get_security_groups(filters={"group-name": name})
            if not groups:
                return removed
            try:
                driver.ex_delete_security_group_by_id(groups[0].id)
                return removed + [f"security group {name}"]
            except Exception as exc:  # noqa: BLE001
                if _has(exc, _GONE):
                    return removed
                if "DependencyViolation" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2)
