"""BlockStorage volumes on OpenNebula: persistent DATABLOCK images.

A volume is an image allocated with ``one.image.allocate`` in the site's image datastore
(``options.image_datastore``, default 1; ``options.volume_types`` maps a node's
``volume_type`` to another one) with TYPE = DATABLOCK, SIZE in MiB, PERSISTENT = YES and the
``ORCHESTRATOR_*`` labels in its TEMPLATE, so that ``find`` and a retried ``create`` see
it. Its provider id is ``image:<ID>``; its status comes from the image STATE (INIT and
LOCKED while the datastore makes it, READY or USED once usable, ERROR with the cloud's
TEMPLATE/ERROR message). An attachment is a DISK of the VM (``one.vm.attach`` /
``one.vm.detach``), id ``<VM ID>/image:<ID>``; both wait for the VM to leave
ACTIVE/HOTPLUG, so the disk is in (or out of) the VM when they return.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    Resource,
    ResourceSpec,
    TransientProviderError,
)
from orchestrator.providers.opennebula import quotas as one_quotas
from orchestrator.providers.opennebula import states
from orchestrator.providers.opennebula import vmtemplate as vmt

PREFIX = "image:"
#: OpenNebula's Image::ImageState, by number
IMAGE_STATES = ("INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR", "CLONE", "DELETE",
                "USED_PERS", "LOCKED_USED", "LOCKED_USED_PERS")
DATABLOCK = 2  # Image::ImageType
DEFAULT_DATASTORE = 1  # the "default" image datastore of every OpenNebula
IMAGE_DATASTORE = 0  # Datastore TYPE of image datastores
MINE = -3
_BUILDING = {"INIT", "LOCKED", "CLONE"}
_IN_USE = {"USED", "USED_PERS", "LOCKED_USED", "LOCKED_USED_PERS"}
#: VM states in which OpenNebula is letting go of the VM's disks
_LEAVING = ("SHUTDOWN", "EPILOG", "CLEANUP", "HOTPLUG", "DONE")
_TARGET = re.compile(r"^(?:/dev/)?([a-z]{2,4}[a-z]?)$")
POLL_S = 0.2


def is_volume(provider_id: str) -> bool:
    return str(provider_id).startswith(PREFIX)


def image_id(provider_id: str) -> int:
    text = str(provider_id)[len(PREFIX):] if is_volume(provider_id) else str(provider_id)
    if not text.isdigit():
        raise ProviderError(f"{provider_id!r} is not an OpenNebula volume id (image:<ID>)")
    return int(text)


def image_name(spec: ResourceSpec) -> str:
    """Unique per user, as OpenNebula requires of image names."""
    return f"orch-{spec.deployment}-{spec.node}-{spec.index}"


def state_name(state: Any) -> str:
    number = int(state or 0)
    return IMAGE_STATES[number] if 0 <= number < len(IMAGE_STATES) else f"STATE {number}"


def target_of(device: str | None) -> str | None:
    """``/dev/vdb`` -> ``vdb`` (the DISK TARGET); None lets OpenNebula choose."""
    if not device:
        return None
    match = _TARGET.match(str(device).strip())
    if not match:
        raise ProviderError(f"device {device!r} cannot be an OpenNebula disk TARGET "
                            "(expected a name like /dev/vdb or sdc)")
    return match.group(1)


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def _ids(holder: Any) -> list[int]:
    return [int(i) for i in _as_list(getattr(holder, "ID", None))]


def disk_of(vm: Any, number: int) -> dict | None:
    """The VM's DISK holding image ``number``."""
    disks = _as_list((vm.TEMPLATE or {}).get("DISK"))
    return next((d for d in disks if str(d.get("IMAGE_ID")) == str(number)), None)


def _error_of(vm: Any) -> str:
    error = (vm.USER_TEMPLATE or {}).get("ERROR") if vm is not None else None
    return f": {error}" if error else ""


def classify(image: Any) -> tuple[str, str | None]:
    """(status, fault) of an image."""
    name, number = state_name(image.STATE), int(image.ID)
    if name in _BUILDING:
        return BUILDING, None
    if name == "READY" or name in _IN_USE:
        return ACTIVE, None
    if name == "DELETE":
        return DELETED, None
    if name == "DISABLED":
        return ERROR, (f"image {number} ({image.NAME}) is DISABLED "
                       f"(`oneimage enable {number}`)")
    error = (image.TEMPLATE or {}).get("ERROR") or "OpenNebula gave no reason"
    return ERROR, f"image {number} ({image.NAME}) is in {name}: {error}"


class Volumes:
    """The volumes of one site; ``one`` is its client.Connection."""

    def __init__(self, one: Any, site: str, options: dict):
        self.one = one
        self.site = site
        self.options = options
        self._datastores: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._vm_locks: dict[int, threading.Lock] = {}

    @property
    def timeout(self) -> float:
        return float(self.options.get("state_timeout", 300))

    # --- datastores ------------------------------------------------------------------------

    def datastore_id(self, volume_type: str | None = None) -> int:
        """The image datastore of a volume: by its type (options.volume_types), else the
        site's (options.image_datastore), else OpenNebula's default (1)."""
        types = self.options.get("volume_types") or {}
        if volume_type and volume_type not in types:
            raise ProviderError(f"site '{self.site}': no datastore for volume_type "
                                f"{volume_type!r} (options.volume_types maps: "
                                f"{', '.join(sorted(types)) or 'none'})")
        ref = types.get(volume_type) if volume_type else self.options.get("image_datastore")
        if ref is None:
            return DEFAULT_DATASTORE
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        if self._datastores is None or str(ref) not in self._datastores:
            pool = self.one.call("datastorepool.info")
            self._datastores = {d.NAME: int(d.ID) for d in _as_list(pool.DATASTORE)
                                if int(d.TYPE or 0) == IMAGE_DATASTORE}
        if str(ref) not in self._datastores:
            raise ProviderError(f"site '{self.site}': no image datastore named {ref!r} "
                                f"(known: {', '.join(sorted(self._datastores)) or 'none'})")
        return self._datastores[str(ref)]

    # --- read ------------------------------------------------------------------------------

    def images(self, start: int = -1, end: int = -1) -> list:
        """The user's DATABLOCK images carrying our labels (one one.imagepool.info)."""
        pool = self.one.call("imagepool.info", MINE, start, end)
        return [i for i in _as_list(getattr(pool, "IMAGE", None))
                if int(i.TYPE or 0) == DATABLOCK and vmt.tags_of(i.TEMPLATE or {})]

    def ours(self, tags: dict) -> list:
        return [i for i in self.images() if state_name(i.STATE) != "DELETE" and
                all(vmt.tags_of(i.TEMPLATE or {}).get(k) == str(v) for k, v in tags.items())]

    def resource(self, image: Any) -> Resource:
        status, fault = classify(image)
        attributes = {"image_id": int(image.ID), "name": image.NAME,
                      "state": state_name(image.STATE), "size_gib": int(image.SIZE) / 1024,
                      "datastore_id": int(image.DATASTORE_ID), "datastore": image.DATASTORE,
                      "persistent": str(image.PERSISTENT) == "1",
                      "attached_to": _ids(image.VMS)}
        return Resource(f"{PREFIX}{image.ID}", "volume", status,
                        vmt.tags_of(image.TEMPLATE or {}), attributes, fault)

    def find(self, deployment: str, vms: list) -> list[Resource]:
        """The deployment's volumes, and their attachments to its VMs (from the VM
        bodies ``vms`` already listed)."""
        images = {int(i.ID): i for i in self.ours({TAG_DEPLOYMENT: deployment})}
        found = [self.resource(i) for i in images.values()]
        for vm in vms:
            index = vmt.tags_of(vm.USER_TEMPLATE or {}).get(TAG_INDEX)
            for disk in _as_list((vm.TEMPLATE or {}).get("DISK")):
                image = images.get(int(disk.get("IMAGE_ID", -1)))
                if image is None or index is None:
                    continue
                tags = {TAG_DEPLOYMENT: deployment, TAG_INDEX: index, TAG_KIND: "attachment",
                        TAG_NODE: vmt.tags_of(image.TEMPLATE or {}).get(TAG_NODE)}
                found.append(self._attachment(int(vm.ID), int(image.ID), disk, tags))
        return found

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        """Any number of volumes in one one.imagepool.info call; missing ones DELETED."""
        numbers = [image_id(i) for i in provider_ids]
        if not numbers:
            return {}
        live = {f"{PREFIX}{i.ID}": self.resource(i)
                for i in self.images(min(numbers), max(numbers))}
        return {pid: live.get(pid) or Resource(pid, "volume", DELETED) for pid in provider_ids}

    # --- create, update, delete ------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        existing = self.ours(spec.tags)
        if existing:
            return self.resource(existing[0])
        props = spec.properties or {}
        size_mib = int(math.ceil(float(props.get("size_gib") or 1) * 1024))
        datastore = self.datastore_id(props.get("volume_type"))
        self._check_quota(spec, datastore, size_mib)
        attributes: list[tuple[str, object]] = [
            ("NAME", image_name(spec)), ("TYPE", "DATABLOCK"), ("SIZE", size_mib),
            ("PERSISTENT", "YES"),
            ("DESCRIPTION", f"volume {spec.node}[{spec.index}] of deployment "
                            f"{spec.deployment}")]
        attributes += list((self.options.get("volume_template") or {}).items())
        attributes += vmt.labels(spec.tags)
        number = self.one.call("image.allocate", vmt.render(attributes), datastore)
        return Resource(f"{PREFIX}{number}", "volume", BUILDING, dict(spec.tags),
                        {"image_id": int(number), "name": image_name(spec),
                         "size_gib": size_mib / 1024, "datastore_id": datastore})

    def _check_quota(self, spec: ResourceSpec, datastore: int, size_mib: int) -> None:
        quota = one_quotas.datastore_quota(self.one.call("user.info", -1), datastore)
        for metric, amount, limit, used in (
                ("IMAGES", 1, quota["images"], quota["images_used"]),
                ("SIZE", size_mib, quota["size_mib"], quota["size_used_mib"])):
            if limit is not None and used + amount > limit:
                unit = " MiB" if metric == "SIZE" else ""
                raise QuotaExceededError(
                    f"site '{self.site}': OpenNebula datastore {datastore} quota {metric} "
                    f"exceeded for volume {spec.node}[{spec.index}]: {amount:g}{unit} "
                    f"requested, {used:g} of {limit:g}{unit} in use")

    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        current = self.poll([provider_id])[provider_id]
        wanted = (spec.properties or {}).get("size_gib")
        size = current.attributes.get("size_gib")
        if wanted and size is not None and float(wanted) != float(size):
            raise ProviderError(f"site '{self.site}': volume {provider_id} is {size:g} GiB; "
                                f"OpenNebula cannot resize a detached image to {wanted} GiB "
                                "in place (grow the disk from its VM with `onevm disk-resize`, "
                                "or replace the volume)")
        return current

    def delete(self, provider_id: str) -> None:
        """Delete the image once no VM holds it (waiting, bounded, for VMs that are
        letting go of it); an image already gone is fine."""
        number = image_id(provider_id)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                image = self.one.call("image.info", number)
            except NotFoundError:
                return
            shown = state_name(image.STATE)
            if shown == "DELETE":
                return
            if not vmt.tags_of(image.TEMPLATE or {}):
                raise ProviderError(f"site '{self.site}': image {number} ({image.NAME}) was "
                                    "not made by the orchestrator; not deleting it")
            holders = _ids(image.VMS)
            if shown not in _IN_USE and not holders:
                break
            self._refuse_if_held(number, holders)
            if time.monotonic() > deadline:
                raise TransientProviderError(
                    f"site '{self.site}': image {number} is still {shown} (VMs "
                    f"{', '.join(map(str, holders))}) after {self.timeout:g}s")
            time.sleep(POLL_S)
        try:
            self.one.call("image.delete", number)
        except NotFoundError:
            return

    def _refuse_if_held(self, number: int, holders: list[int]) -> None:
        for vm_id in holders:
            try:
                vm = self.one.call("vm.info", vm_id)
            except NotFoundError:
                continue
            shown = states.describe(int(vm.STATE), int(vm.LCM_STATE))
            if not any(word in shown for word in _LEAVING):
                raise ProviderError(f"site '{self.site}': image {number} is still attached to "
                                    f"VM {vm_id} ({shown}); detach it first")

    # --- attachments -----------------------------------------------------------------------

    def _vm_lock(self, vm_id: int) -> threading.Lock:
        with self._lock:
            return self._vm_locks.setdefault(vm_id, threading.Lock())

    def _settled(self, vm_id: int, deadline: float):
        """The VM once it is not hot-plugging; None when it is gone (DONE or unknown)."""
        while True:
            try:
                vm = self.one.call("vm.info", vm_id)
            except NotFoundError:
                return None
            name = states.state_name(int(vm.STATE))
            if name == "DONE":
                return None
            if name != "ACTIVE" or not states.lcm_name(int(vm.LCM_STATE)).startswith("HOTPLUG"):
                return vm
            if time.monotonic() > deadline:
                raise TransientProviderError(f"site '{self.site}': VM {vm_id} is still "
                                             f"{states.describe(int(vm.STATE), int(vm.LCM_STATE))}"
                                             f" after {self.timeout:g}s")
            time.sleep(POLL_S)

    def _attachment(self, vm_id: int, number: int, disk: dict, tags: dict | None = None
                    ) -> Resource:
        target = disk.get("TARGET")
        return Resource(f"{vm_id}/{PREFIX}{number}", "attachment", ACTIVE, tags or {},
                        {"vm_id": vm_id, "image_id": number, "disk_id": int(disk["DISK_ID"]),
                         "target": target, "device": f"/dev/{target}" if target else None})

    def attach(self, server_id: str, provider_id: str, device: str | None) -> Resource:
        vm_id, number = int(server_id), image_id(provider_id)
        disk_template = vmt.render([("DISK", {"IMAGE_ID": number, "TARGET": target_of(device)})])
        with self._vm_lock(vm_id):
            deadline = time.monotonic() + self.timeout
            vm = self._settled(vm_id, deadline)
            if vm is None:
                raise NotFoundError(f"site '{self.site}': VM {vm_id} is gone; cannot attach "
                                    f"image {number} to it")
            disk = disk_of(vm, number)
            if disk is None:
                self.one.call("vm.attach", vm_id, disk_template)
                vm = self._settled(vm_id, deadline)
                disk = disk_of(vm, number) if vm is not None else None
            if disk is None:
                raise ProviderError(f"site '{self.site}': OpenNebula did not attach image "
                                    f"{number} to VM {vm_id}" + _error_of(vm))
        return self._attachment(vm_id, number, disk)

    def detach(self, attachment_id: str) -> None:
        server, _, volume = str(attachment_id).partition("/")
        vm_id, number = int(server), image_id(volume)
        with self._vm_lock(vm_id):
            deadline = time.monotonic() + self.timeout
            vm = self._settled(vm_id, deadline)
            disk = disk_of(vm, number) if vm is not None else None
            if disk is None:
                return  # the VM or the disk is gone already
            shown = states.describe(int(vm.STATE), int(vm.LCM_STATE))
            if any(word in shown for word in _LEAVING):
                return  # terminating: OpenNebula releases the image when the VM is DONE
            self.one.call("vm.detach", vm_id, int(disk["DISK_ID"]))
            vm = self._settled(vm_id, deadline)
            if vm is not None and disk_of(vm, number) is not None:
                raise ProviderError(f"site '{self.site}': OpenNebula did not detach image "
                                    f"{number} from VM {vm_id}" + _error_of(vm))
