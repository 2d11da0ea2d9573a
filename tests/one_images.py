"""Images, datastores and disk hot-plug of the loopback OpenNebula front end
(tests/one_server.py): a PROTOCOL TEST DOUBLE, not support for a real cloud.

The ``one.*`` methods follow OpenNebula's XML-RPC reference: ``one.image.allocate(session,
template, datastore_id[, check_capacity])``, ``one.image.info(session, id)``,
``one.image.delete(session, id)``, ``one.imagepool.info(session, filter, start, end)``,
``one.datastorepool.info(session)``, ``one.vm.attach(session, vm_id, disk_template)`` and
``one.vm.detach(session, vm_id, disk_id)``. The rules are oned's: an image is LOCKED while
the datastore driver makes it, then READY (or ERROR with TEMPLATE/ERROR); a persistent image
in use by a VM is USED_PERS and cannot be attached to a second VM nor deleted ("There are 1
VMs using it."); a VM attaches or detaches a disk only when RUNNING (through
ACTIVE/HOTPLUG) or POWEROFF; images are released when the detach completes or the VM is
DONE; datastore quotas (IMAGES, SIZE in MiB) and capacity are enforced at allocation.
"""
from __future__ import annotations

import itertools
import time

from tests.one_xml import Fault, datastore_xml, image_xml, parse_template

AUTHORIZATION, NO_EXISTS, ACTION, XML_RPC_API, ALLOCATE = 0x0200, 0x0400, 0x0800, 0x1000, 0x4000
IMAGE_STATES = ("INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR", "CLONE", "DELETE",
                "USED_PERS", "LOCKED_USED", "LOCKED_USED_PERS")
INIT, READY, USED, DISABLED, LOCKED, ERROR, CLONE, DELETE, USED_PERS = range(9)
IMAGE_TYPES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT")
#: VM STATE / LCM_STATE numbers the hot-plug needs
ACTIVE, DONE, POWEROFF, RUNNING, HOTPLUG = 3, 6, 8, 3, 17
UNLIMITED, DEFAULT = -2, -1
#: attributes of an image template that oned keeps as image fields, not in TEMPLATE
IMAGE_FIELDS = {"NAME", "TYPE", "PERSISTENT", "SIZE", "PATH", "SOURCE", "FORMAT", "FS"}


def default_datastores() -> dict:
    return {0: {"NAME": "system", "TYPE": 1, "TOTAL_MB": 1_000_000},
            1: {"NAME": "default", "TYPE": 0, "TOTAL_MB": 1_000_000},
            2: {"NAME": "files", "TYPE": 2, "TOTAL_MB": 100_000}}


class ImageMethods:
    """Mixed into FakeOpenNebula, which owns ``images``, ``datastores``,
    ``datastore_quota``, ``failing_images``, ``timings`` and the VMs."""

    def _setup_images(self, images: dict, datastores: dict | None) -> None:
        self.datastores = datastores or default_datastores()
        #: datastore id -> {"IMAGES": limit, "SIZE": limit in MiB}; -1 default, -2 unlimited
        self.datastore_quota: dict[int, dict] = {}
        #: {"name": substring of the image name, "error": message}: made in ERROR
        self.failing_images: list[dict] = []
        self.images = {}
        for image_id, image in images.items():
            record = {"uid": 0, "TYPE": 0, "PERSISTENT": 0, "DATASTORE_ID": 1,
                      "TEMPLATE": {}, **image}
            record.update({"timeline": [(0.0, READY)], "vms": set()})
            self.images[image_id] = record
        self._image_ids = itertools.count(200)

    # --- image life cycle ------------------------------------------------------------------
    def _image_state(self, image: dict) -> int | None:
        """The image's STATE now; None once oned has dropped it."""
        now = time.monotonic()
        if image.get("gone_at") is not None and image["gone_at"] <= now:
            return None
        state = image["timeline"][0][1]
        for at, next_state in image["timeline"]:
            if at <= now:
                state = next_state
        if state == ERROR and image.get("error"):
            image["TEMPLATE"]["ERROR"] = image.pop("error")  # as oned records a failure
        if state == READY and image["vms"]:
            return USED_PERS if image["PERSISTENT"] else USED
        return state

    def _image(self, uid: int, image_id: int) -> dict:
        image = self.images.get(image_id)
        if image is None or self._image_state(image) is None:
            raise Fault(f"Error getting image [{image_id}].", NO_EXISTS)
        if image["uid"] not in (0, uid):
            raise Fault(f"User [{uid}] : Not authorized to perform USE IMAGE [{image_id}].",
                        AUTHORIZATION)
        return image

    def _datastore_usage(self, uid: int, datastore_id: int) -> dict:
        mine = [i for i in self.images.values() if i["uid"] == uid and
                i["DATASTORE_ID"] == datastore_id and self._image_state(i) is not None]
        return {"IMAGES": len(mine), "SIZE": sum(int(i["SIZE"]) for i in mine)}

    def datastore_usage(self, uid: int) -> dict:
        return {ds: self._datastore_usage(uid, ds) for ds in self.datastores}

    def _check_datastore_quota(self, uid: int, datastore_id: int, size_mib: int) -> None:
        limits = self.datastore_quota.get(datastore_id) or {}
        used = self._datastore_usage(uid, datastore_id)
        for metric, amount in (("IMAGES", 1), ("SIZE", size_mib)):
            limit = limits.get(metric, UNLIMITED)
            if limit not in (UNLIMITED, DEFAULT) and used[metric] + amount > limit:
                raise Fault(f"User [{uid}] : limit of {limit} reached for {metric} quota in "
                            f"datastore [{datastore_id}].", AUTHORIZATION)

    def _release_images(self, vm: dict) -> None:
        """A VM is DONE: oned releases the images of its disks."""
        for disk in vm["template"].get("DISK", []):
            image = self.images.get(int(disk.get("IMAGE_ID", -1)))
            if image is not None:
                image["vms"].discard(vm["id"])

    # --- one.image.* -----------------------------------------------------------------------
    def m_one_image_allocate(self, uid, text, datastore_id, check_capacity=True):
        template = parse_template(text)
        name = template.get("NAME")
        if not name:
            raise Fault("Error allocating a new image. NAME attribute is required.", ALLOCATE)
        datastore = self.datastores.get(datastore_id)
        if datastore is None:
            raise Fault(f"Error getting datastore [{datastore_id}].", NO_EXISTS)
        if datastore["TYPE"] == 1:
            raise Fault("New images cannot be allocated in a system datastore.", ACTION)
        kind = str(template.get("TYPE", "OS")).upper()
        if kind not in IMAGE_TYPES:
            raise Fault(f"Error allocating a new image. Unknown image type {kind}.", ALLOCATE)
        size = template.get("SIZE")
        if kind == "DATABLOCK" and not template.get("PATH") and not str(size or "").isdigit():
            raise Fault("Error allocating a new image. SIZE (in MB) is mandatory for "
                        "DATABLOCK images without PATH.", ALLOCATE)
        taken = next((i for i, img in self.images.items() if img["uid"] == uid and
                      img["NAME"] == name and self._image_state(img) is not None), None)
        if taken is not None:
            raise Fault(f"Error allocating a new image. NAME is already taken by IMAGE "
                        f"{taken}.", ALLOCATE)
        size_mib = int(size or 0)
        self._check_datastore_quota(uid, datastore_id, size_mib)
        used = sum(int(i["SIZE"]) for i in self.images.values()
                   if i["DATASTORE_ID"] == datastore_id and self._image_state(i) is not None)
        if check_capacity and used + size_mib > datastore["TOTAL_MB"]:
            raise Fault("Not enough space in datastore", ACTION)
        image_id = next(self._image_ids)
        failure = next((f for f in self.failing_images if f["name"] in name), None)
        now, t = time.monotonic(), self.timings
        self.images[image_id] = {
            "uid": uid, "NAME": name, "TYPE": IMAGE_TYPES.index(kind), "SIZE": size_mib,
            "PERSISTENT": int(str(template.get("PERSISTENT", "NO")).upper() == "YES"),
            "DATASTORE_ID": datastore_id, "vms": set(),
            "TEMPLATE": {k: v for k, v in template.items() if k not in IMAGE_FIELDS},
            "timeline": [(now, INIT), (now + t["image_init"], LOCKED),
                         (now + t["image_init"] + t["image_mkfs"],
                          ERROR if failure else READY)]}
        if failure:
            self.images[image_id]["error"] = (f"{time.ctime()}: Error creating datablock: "
                                              f"{failure.get('error', 'mkfs failed')}")
        return image_id

    def m_one_image_info(self, uid, image_id, decrypt=False):
        image = self._image(uid, image_id)
        return image_xml(image_id, image, self._image_state(image), self._owner(image),
                         self.datastores[image["DATASTORE_ID"]]["NAME"])

    def m_one_image_delete(self, uid, image_id, force=False):
        image = self._image(uid, image_id)
        state = self._image_state(image)
        if image["vms"] or state == CLONE:
            raise Fault(f"Cannot delete image. There are {len(image['vms'])} VMs using it.",
                        ACTION)
        if state != DELETE:
            now = time.monotonic()
            image["timeline"] = [(now, DELETE)]
            image["gone_at"] = now + self.timings["image_delete"]
        return image_id

    def m_one_imagepool_info(self, uid, flag, start, end):
        if flag < -4:  # -4 group, -3 mine, -2 all, -1 mine and group, >= 0 a user's
            raise Fault("Incorrect filter flag", XML_RPC_API)
        bodies = []
        for image_id, image in sorted(self.images.items()):
            state = self._image_state(image)
            if state is None or not _in_range(image_id, start, end):
                continue
            if (flag == -3 and image["uid"] != uid) or (flag >= 0 and image["uid"] != flag):
                continue
            bodies.append(image_xml(image_id, image, state, self._owner(image),
                                    self.datastores[image["DATASTORE_ID"]]["NAME"]))
        return "<IMAGE_POOL>" + "".join(bodies) + "</IMAGE_POOL>"

    def m_one_datastorepool_info(self, uid):
        return "<DATASTORE_POOL>" + "".join(
            datastore_xml(ds_id, ds, [i for i, img in self.images.items()
                                      if img["DATASTORE_ID"] == ds_id],
                          self._datastore_used_mb(ds_id))
            for ds_id, ds in sorted(self.datastores.items())) + "</DATASTORE_POOL>"

    def _datastore_used_mb(self, datastore_id: int) -> int:
        return sum(int(i["SIZE"]) for i in self.images.values()
                   if i["DATASTORE_ID"] == datastore_id and self._image_state(i) is not None)

    def _owner(self, image: dict) -> str:
        return next((name for name, (i, _) in self.users.items() if i == image["uid"]),
                    "oneadmin")

    # --- one.vm.attach / one.vm.detach -----------------------------------------------------
    def m_one_vm_attach(self, uid, vm_id, text):
        vm = self._vm(uid, vm_id)
        disks = parse_template(text).get("DISK")
        if not isinstance(disks, list) or len(disks) != 1:
            raise Fault("VM disk attach: the template must hold one DISK vector attribute",
                        XML_RPC_API)
        state, lcm = self._state(vm)
        running = state == ACTIVE and lcm == RUNNING
        if not running and state != POWEROFF:
            raise Fault(f"Could not attach a new disk to VM {vm_id}, wrong state "
                        f"{self._shown_state(state, lcm)}.", ACTION)
        disk = disks[0]
        image_id = int(disk.get("IMAGE_ID", -1))
        image = self._acquire(uid, image_id, vm_id)
        current = vm["template"].setdefault("DISK", [])
        targets = {d.get("TARGET") for d in current}
        target = disk.get("TARGET") or next(f"vd{c}" for c in "bcdefghijklmnop"
                                            if f"vd{c}" not in targets)
        if target in targets:
            image["vms"].discard(vm_id)
            raise Fault(f"Target {target} is already in use.", ACTION)
        current.append({"DISK_ID": str(max([int(d["DISK_ID"]) for d in current] + [-1]) + 1),
                        "IMAGE": image["NAME"], "IMAGE_ID": str(image_id),
                        "IMAGE_UNAME": self._owner(image), "SIZE": str(image["SIZE"]),
                        "TARGET": target, "PERSISTENT": "YES" if image["PERSISTENT"] else "NO",
                        "DATASTORE_ID": str(image["DATASTORE_ID"]), "TYPE": "FILE"})
        if running:
            self._hotplug(vm)
        return vm_id

    def _acquire(self, uid: int, image_id: int, vm_id: int) -> dict:
        """ImageManager::acquire_image for an attach."""
        image = self._image(uid, image_id)
        state = self._image_state(image)
        if IMAGE_TYPES[image["TYPE"]] not in ("OS", "DATABLOCK", "CDROM"):
            raise Fault(f"Image {image_id} ({image['NAME']}) of type "
                        f"{IMAGE_TYPES[image['TYPE']]} cannot be used as DISK.", ACTION)
        if state == LOCKED:
            raise Fault(f"Cannot acquire image {image_id}, it is locked", ACTION)
        if state == USED_PERS:
            raise Fault(f"Cannot acquire image {image_id}, it is persistent and already in "
                        "use", ACTION)
        if state not in (READY, USED):
            raise Fault(f"Cannot acquire image {image_id}, it is in state: "
                        f"{IMAGE_STATES[state]}", ACTION)
        image["vms"].add(vm_id)
        return image

    def m_one_vm_detach(self, uid, vm_id, disk_id):
        vm = self._vm(uid, vm_id)
        state, lcm = self._state(vm)
        running = state == ACTIVE and lcm == RUNNING
        if not running and state != POWEROFF:
            raise Fault(f"Could not detach disk from VM {vm_id}, wrong state "
                        f"{self._shown_state(state, lcm)}.", ACTION)
        disks = vm["template"].get("DISK", [])
        disk = next((d for d in disks if d.get("DISK_ID") == str(disk_id)), None)
        if disk is None:
            raise Fault(f"Could not detach disk with DISK_ID {disk_id}, it does not exist.",
                        ACTION)

        def detached():
            disks.remove(disk)
            image = self.images.get(int(disk.get("IMAGE_ID", -1)))
            if image is not None:
                image["vms"].discard(vm_id)

        if running:
            self._hotplug(vm, then=detached)
        else:
            detached()
        return vm_id

    def _hotplug(self, vm: dict, then=None) -> None:
        """ACTIVE/HOTPLUG for a moment, then RUNNING (and ``then`` happens)."""
        self._schedule(vm, (0, ACTIVE, HOTPLUG), (self.timings["hotplug"], ACTIVE, RUNNING))
        if then is not None:
            vm.setdefault("effects", []).append((vm["timeline"][-1][0], then))

    # --- helpers for tests -----------------------------------------------------------------
    def live_images(self) -> list[dict]:
        """Images not (being) deleted, as plain records."""
        with self._lock:
            found = []
            for image_id, image in self.images.items():
                state = self._image_state(image)
                if state is not None and state != DELETE:
                    found.append({"id": image_id, "name": image["NAME"],
                                  "state": IMAGE_STATES[state], "size": image["SIZE"],
                                  "type": IMAGE_TYPES[image["TYPE"]],
                                  "persistent": bool(image["PERSISTENT"]),
                                  "datastore": image["DATASTORE_ID"],
                                  "template": dict(image["TEMPLATE"]),
                                  "vms": sorted(image["vms"])})
            return found


def _in_range(item: int, start: int, end: int) -> bool:
    return (start < 0 or item >= start) and (end < 0 or item <= end)
