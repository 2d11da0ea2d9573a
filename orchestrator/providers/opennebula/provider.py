"""The ``opennebula`` provider: compute nodes are OpenNebula VMs, driven through pyone
(OpenNebula's XML-RPC API).

A VM is allocated from a template generated from the node's requirements
(vmtemplate.py) and carries the ``ORCHESTRATOR_*`` labels in its USER_TEMPLATE, so that
``find`` and a retried ``create`` see it; its status comes from STATE / LCM_STATE
(states.py). ``poll`` of any number of VMs is one ``one.vmpool.info`` call over the range
of their ids. Quotas come from ``one.user.info`` and are checked before allocating.
Volumes are persistent DATABLOCK images (volumes.py). Options (sites.yaml ``options:``)
are listed in docs/opennebula.md.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    TAG_DEPLOYMENT,
    CheckResult,
    Flavor,
    Image,
    NotFoundError,
    Offer,
    Provider,
    ProviderError,
    QuotaExceededError,
    Resource,
    ResourceSpec,
    TransientProviderError,
    site_options,
)
from orchestrator.providers.opennebula import quotas as one_quotas
from orchestrator.providers.opennebula import states
from orchestrator.providers.opennebula import vmtemplate as vmt
from orchestrator.providers.opennebula import volumes as one_volumes
from orchestrator.providers.opennebula.client import Connection, CredentialsError

OPTIONS = ("network", "public_network", "gpu_pci", "infiniband", "ssh_user",
           "private_reachable", "cpu_ratio", "start_script", "template", "timeout",
           "https_verify", "state_timeout", "image_datastore", "volume_types",
           "volume_template")
#: filter flags of the pool calls: the user's own resources, all those the user may use
MINE, ALL = -3, -2
NOT_DONE = -1
OFFER_TTL_S = 30.0


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


class OpenNebulaProvider(Provider):
    """Provider of ``provider: opennebula`` sites."""

    type_name = "opennebula"

    def __init__(self, site: Any):
        super().__init__(site)
        self.options = site_options(site, OPTIONS, "opennebula")
        self.one = Connection(site.name, getattr(site, "credentials", None),
                              timeout=float(self.options.get("timeout", 60)),
                              https_verify=bool(self.options.get("https_verify", True)))
        self._lock = threading.Lock()
        self._offer: tuple[float, Offer] | None = None
        self._pools: dict[str, dict[str, int]] = {}
        self.volumes = one_volumes.Volumes(self.one, site.name, self.options)

    # --- what the site offers --------------------------------------------------------------

    def offer(self) -> Offer:
        with self._lock:
            if self._offer and time.monotonic() - self._offer[0] < OFFER_TTL_S:
                return self._offer[1]
        quotas = self.quotas()
        flavors = tuple(f for f in (self.site.flavors or one_quotas.default_flavors())
                        if one_quotas.fits_limits(f, quotas))
        images = list(self.site.images)
        declared = {name for i in images for name in (i.name, i.id, *i.aliases) if name}
        for name, image_id in self._pool("image").items():
            if name not in declared and str(image_id) not in declared:
                images.append(Image(name, id=str(image_id)))
        offer = Offer(flavors=flavors, images=tuple(images), quotas=quotas)
        with self._lock:
            self._offer = (time.monotonic(), offer)
        return offer

    def quotas(self):
        """The user's VM quota and datastore quota of the volumes' datastore
        (one.user.info), capped by the site's declared quotas."""
        user = self.one.call("user.info", -1)
        return one_quotas.merge(one_quotas.from_user(user, self.volumes.datastore_id()),
                                self.site.quotas)

    def _pool(self, kind: str, refresh: bool = False) -> dict[str, int]:
        """name -> id of the images (OS images only) or virtual networks the user may use."""
        if refresh or kind not in self._pools:
            if kind == "image":
                pool = self.one.call("imagepool.info", ALL, -1, -1)
                found = {i.NAME: int(i.ID) for i in _as_list(getattr(pool, "IMAGE", None))
                         if int(i.TYPE or 0) == 0}
            else:
                pool = self.one.call("vnpool.info", ALL, -1, -1)
                found = {n.NAME: int(n.ID) for n in _as_list(getattr(pool, "VNET", None))}
            self._pools[kind] = found
        return self._pools[kind]

    def _lookup(self, kind: str, ref: Any, what: str) -> int:
        """The id of an image or network given by id or by name."""
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        found = self._pool(kind).get(str(ref))
        if found is None:
            found = self._pool(kind, refresh=True).get(str(ref))
        if found is None:
            from orchestrator.diagnostics import did_you_mean

            names = self._pool(kind)
            hint = did_you_mean(str(ref), list(names))
            raise ProviderError(f"site '{self.site.name}': no {what} named {ref!r} "
                                f"(known: {', '.join(sorted(names)) or 'none'})"
                                + (f"; {hint}" if hint else ""))
        return found

    def check(self) -> CheckResult:
        name = self.site.name
        try:
            version = self.one.call("system.version")
            offer = self.offer()
        except CredentialsError as exc:
            reachable = "rejected" in str(exc)
            return CheckResult(name, reachable, False, str(exc))
        except TransientProviderError as exc:
            return CheckResult(name, False, False, str(exc))
        except ProviderError as exc:
            return CheckResult(name, True, True, f"OpenNebula answers but: {exc}")
        left = offer.quotas.remaining("instances")
        return CheckResult(name, True, True, f"OpenNebula {version} at {self.one.endpoint} as "
                           f"user {self.one.user}; {len(offer.flavors)} flavors, "
                           f"{len(offer.images)} images; VMs left in quota: "
                           f"{'unlimited' if left is None else f'{left:g}'}", offer=offer)

    def estimate(self, kind: str, action: str) -> float:
        return {"compute": 90.0, "volume": 10.0}.get(kind, 1.0)

    # --- create ----------------------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        if spec.kind == "compute":
            return self._create_vm(spec)
        if spec.kind == "volume":
            return self.volumes.create(spec)
        if spec.kind == "network":
            network = self._network_id(self.options.get("network"))
            return Resource(f"vnet:{network}", "network", ACTIVE, dict(spec.tags),
                            {"network_id": network})
        if spec.kind == "port":
            return Resource(f"port:{spec.deployment}/{spec.node}/{spec.index}", "port", ACTIVE,
                            dict(spec.tags), {"note": "OpenNebula security groups are not "
                                              "managed: the site's network policy applies"})
        raise ProviderError(f"site '{self.site.name}': the opennebula provider cannot create "
                            f"a {spec.kind!r}")

    def _create_vm(self, spec: ResourceSpec) -> Resource:
        existing = self._ours(spec.tags)
        if existing:
            vm = existing[0]
            if states.state_name(int(vm.STATE)) == "HOLD":
                self.one.call("vm.action", "release", int(vm.ID))
            return self._resource(vm)
        flavor = self._flavor(spec)
        self._check_quota(spec, flavor)
        requirements = (spec.properties or {}).get("requirements") or {}
        template = vmt.vm_template(spec, flavor, self._image_id(spec.image),
                                   float(requirements.get("disk_gib") or flavor.disk_gib or 0),
                                   self._network_ids(spec, flavor), self._pci(spec, flavor),
                                   self.options)
        vm_id = self.one.call("vm.allocate", template, False)
        return Resource(str(vm_id), "compute", BUILDING, dict(spec.tags),
                        {"vm_id": int(vm_id), "name": vmt.vm_name(spec.deployment, spec.node,
                                                                  spec.index)})

    def _flavor(self, spec: ResourceSpec) -> Flavor:
        if spec.flavor:
            found = self.site.flavor(spec.flavor) or next(
                (f for f in one_quotas.default_flavors() if f.name == spec.flavor), None)
            if found is None:
                raise ProviderError(f"site '{self.site.name}': no flavor named {spec.flavor!r}")
            return found
        req = (spec.properties or {}).get("requirements") or {}
        return Flavor("custom", float(req.get("cpus") or 1), float(req.get("memory_mib")
                                                                   or 2048))

    def _check_quota(self, spec: ResourceSpec, flavor: Flavor) -> None:
        quotas = self.quotas()
        gpus = flavor.gpus.count or int(((spec.properties or {}).get("requirements") or {})
                                        .get("gpus", {}).get("count") or 0)
        for key, amount, shown in (("instances", 1, "VMS"), ("cores", flavor.cpus, "CPU"),
                                   ("memory_mib", flavor.memory_mib, "MEMORY"),
                                   ("gpus", gpus, "gpus")):
            left = quotas.remaining(key)
            if amount and left is not None and amount > left:
                limit = getattr(quotas, key)
                raise QuotaExceededError(
                    f"site '{self.site.name}': quota '{key}' (OpenNebula VM quota {shown}) "
                    f"exceeded for {spec.node}[{spec.index}]: {amount:g} requested, "
                    f"{limit - left:g} of {limit:g} in use")

    def _image_id(self, name: str | None) -> int | None:
        if not name:
            raise ProviderError(f"site '{self.site.name}': no image for the VM (declare images "
                                "in sites.yaml or ask for an OS in the template)")
        declared = self.site.image(name)
        ref = declared.id if declared and declared.id else (declared.name if declared
                                                            else name)
        return self._lookup("image", ref, "image")

    def _network_id(self, ref: Any) -> int:
        if ref is not None:
            return self._lookup("network", ref, "virtual network")
        networks = self._pool("network")
        if len(networks) == 1:
            return next(iter(networks.values()))
        raise ProviderError(f"site '{self.site.name}': options.network must name the VMs' "
                            f"network (the user may use: {', '.join(sorted(networks)) or 'none'})")

    def _network_ids(self, spec: ResourceSpec, flavor: Flavor) -> list[int]:
        found = [self._network_id(self.options.get("network"))]
        if (spec.properties or {}).get("public_ip"):
            public = self.options.get("public_network")
            if public is None:
                raise ProviderError(f"site '{self.site.name}': {spec.node} asks for a public "
                                    "address but options.public_network is not set")
            found.append(self._lookup("network", public, "virtual network"))
        infiniband = self.options.get("infiniband") or {}
        if self._wants_infiniband(spec, flavor) and infiniband.get("network") is not None:
            found.append(self._lookup("network", infiniband["network"], "virtual network"))
        return found

    def _wants_infiniband(self, spec: ResourceSpec, flavor: Flavor) -> bool:
        req = (spec.properties or {}).get("requirements") or {}
        return bool(req.get("infiniband") or flavor.infiniband)

    def _pci(self, spec: ResourceSpec, flavor: Flavor) -> list[dict]:
        req = (spec.properties or {}).get("requirements") or {}
        gpus = dict(req.get("gpus") or {})
        if flavor.gpus.count:
            gpus = {**gpus, "count": flavor.gpus.count, "vendor": flavor.gpus.vendor
                    or gpus.get("vendor"), "model": flavor.gpus.model or gpus.get("model")}
        devices = vmt.pci_for_gpus(gpus, self.options.get("gpu_pci") or {}, self.site.name)
        if self._wants_infiniband(spec, flavor):
            infiniband = self.options.get("infiniband") or {}
            if not infiniband.get("pci") and infiniband.get("network") is None:
                raise ProviderError(f"site '{self.site.name}': {spec.node} needs InfiniBand but "
                                    "the site declares none (options.infiniband.pci or .network)")
            if infiniband.get("pci"):
                ids = infiniband["pci"]
                devices.append({"VENDOR": ids.get("vendor"), "DEVICE": ids.get("device"),
                                "CLASS": ids.get("class")})
        return devices

    # --- read ------------------------------------------------------------------------------

    def _vms(self, start: int = -1, end: int = -1) -> list:
        pool = self.one.call("vmpool.info", MINE, start, end, NOT_DONE)
        return _as_list(getattr(pool, "VM", None))

    def _ours(self, tags: dict) -> list:
        return [vm for vm in self._vms()
                if all(vmt.tags_of(vm.USER_TEMPLATE or {}).get(k) == str(v)
                       for k, v in tags.items())]

    def _resource(self, vm: Any) -> Resource:
        user_template = vm.USER_TEMPLATE or {}
        status, fault = states.classify(int(vm.ID), int(vm.STATE), int(vm.LCM_STATE),
                                        user_template.get("ERROR") or None)
        attributes = {"vm_id": int(vm.ID), "name": vm.NAME,
                      "state": states.describe(int(vm.STATE), int(vm.LCM_STATE)),
                      **self._addresses(vm.TEMPLATE or {})}
        return Resource(str(vm.ID), "compute", status, vmt.tags_of(user_template), attributes,
                        fault)

    def _addresses(self, template: dict) -> dict:
        nics = _as_list(template.get("NIC"))
        public = self.options.get("public_network")
        public_nics = [n for n in nics if public is not None and
                       str(public) in (n.get("NETWORK"), n.get("NETWORK_ID"))]
        private = next((n.get("IP") for n in nics if n not in public_nics and n.get("IP")), None)
        public_ip = next((n.get("IP") for n in public_nics if n.get("IP")), None)
        reachable = public_ip or (private if self.options.get("private_reachable", True)
                                  else None)
        return {"private_address": private, "public_address": public_ip,
                "addresses": [n.get("IP") for n in nics if n.get("IP")],
                "ssh_host": reachable, "ssh_port": 22,
                "ssh_user": self.options.get("ssh_user") or "root"}

    def find(self, deployment: str) -> list[Resource]:
        vms = self._ours({TAG_DEPLOYMENT: deployment})
        return [self._resource(vm) for vm in vms] + self.volumes.find(deployment, vms)

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        numbers = [int(i) for i in provider_ids if str(i).isdigit()]
        found = self.volumes.poll([i for i in provider_ids if one_volumes.is_volume(i)])
        if numbers:
            for vm in self._vms(min(numbers), max(numbers)):
                if int(vm.ID) in numbers:
                    found[str(vm.ID)] = self._resource(vm)
        result = {}
        for provider_id in provider_ids:
            if provider_id in found:
                result[provider_id] = found[provider_id]
            elif str(provider_id).isdigit():
                result[provider_id] = Resource(provider_id, "compute", DELETED)
            else:
                kind = "network" if provider_id.startswith("vnet:") else "port"
                result[provider_id] = Resource(provider_id, kind, ACTIVE)
        return result

    # --- update and delete -----------------------------------------------------------------

    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        if one_volumes.is_volume(provider_id):
            return self.volumes.update(provider_id, spec)
        if spec.kind != "compute" or not str(provider_id).isdigit():
            return self.poll([provider_id])[provider_id]
        vm = self.one.call("vm.info", int(provider_id))
        flavor = self._flavor(spec)
        template = vm.TEMPLATE or {}
        if flavor.gpus.count != len(_as_list(template.get("PCI"))) and flavor.gpus.count:
            raise ProviderError(f"VM {provider_id}: GPUs cannot be changed in place; replace it")
        wanted = dict(vmt.capacity(flavor, float(self.options.get("cpu_ratio", 1.0))))
        if all(str(template.get(k)) == str(v) for k, v in wanted.items()):
            return self._resource(vm)
        self._check_quota(spec, Flavor(flavor.name, max(0.0, flavor.cpus - float(
            template.get("VCPU") or 0)), max(0.0, flavor.memory_mib - float(
                template.get("MEMORY") or 0))))
        running = states.state_name(int(vm.STATE)) == "ACTIVE"
        if running:
            self.one.call("vm.action", "poweroff-hard", int(provider_id))
            self._wait_for(int(provider_id), "POWEROFF")
        self.one.call("vm.resize", int(provider_id), vmt.render(list(wanted.items())), True)
        if running or states.state_name(int(vm.STATE)) == "POWEROFF":
            self.one.call("vm.action", "resume", int(provider_id))
        return self.poll([provider_id])[provider_id]

    def _wait_for(self, vm_id: int, state: str) -> None:
        deadline = time.monotonic() + float(self.options.get("state_timeout", 300))
        while time.monotonic() < deadline:
            vm = self.one.call("vm.info", vm_id)
            if states.state_name(int(vm.STATE)) == state:
                return
            if states.is_failure(int(vm.STATE), int(vm.LCM_STATE)):
                raise ProviderError(states.classify(vm_id, int(vm.STATE), int(vm.LCM_STATE),
                                                    (vm.USER_TEMPLATE or {}).get("ERROR"))[1])
            time.sleep(0.5)
        raise TransientProviderError(f"site '{self.site.name}': VM {vm_id} did not reach "
                                     f"{state} in time")

    def delete(self, provider_id: str) -> None:
        if one_volumes.is_volume(provider_id):
            return self.volumes.delete(provider_id)
        if not str(provider_id).isdigit():
            return  # vnet: and port: records are the site's, not ours
        try:
            self.one.call("vm.action", "terminate-hard", int(provider_id))
        except NotFoundError:
            return  # gone already
        except ProviderError:
            try:
                vm = self.one.call("vm.info", int(provider_id))
            except NotFoundError:
                return
            shown = states.describe(int(vm.STATE), int(vm.LCM_STATE))
            if shown == "DONE" or any(w in shown for w in ("SHUTDOWN", "EPILOG", "CLEANUP")):
                return  # already on its way out
            raise

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        return self.volumes.attach(server_id, volume_id, device)

    def detach(self, attachment_id: str) -> None:
        self.volumes.detach(attachment_id)
