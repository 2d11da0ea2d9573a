"""The ``openstack`` provider: Nova servers, Cinder volumes and Neutron networks through
openstacksdk, for one site (an OpenStack project in one region).

Every resource carries the ``orchestrator-*`` tags (server and volume metadata, Neutron
tags; the keypair's name holds the deployment id), so ``find`` and a retried ``create``
see what exists. A deployment's shared resources (keypair, security groups, default
network and router, floating IPs) are made on first use and removed with its last
server. Options (sites.yaml ``options:``) are listed in docs/openstack.md.
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
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    CheckResult,
    NotFoundError,
    Offer,
    Provider,
    ProviderError,
    Resource,
    ResourceSpec,
    TransientProviderError,
    site_options,
)
from orchestrator.providers.openstack import flavors as catalogue
from orchestrator.providers.openstack import servers
from orchestrator.providers.openstack import userdata
from orchestrator.providers.openstack.gate import DeploymentGate
from orchestrator.providers.openstack.network import Plumbing, tags_of
from orchestrator.providers.openstack.quota import QuotaGuard
from orchestrator.providers.openstack.session import Calls, connect
from orchestrator.providers.openstack.volumes import PREFIX as VOLUME, Volumes
from orchestrator.providers.openstack.volumes import to_resource as _volume_resource

OPTIONS = ("clouds_file", "region", "interface", "verify", "cacert", "network",
           "external_network", "ssh_user", "ssh_cidr", "dns_nameservers", "volume_type",
           "availability_zone", "boot_timeout", "delete_timeout", "cloud_config",
           "quota_refresh_s", "offer_ttl_s", "api_timeout", "reschedule_after_s")
NETWORK, PORT = "network:", "port:"


class OpenStackProvider(Provider):
    """Provider of ``provider: openstack`` sites."""

    type_name = "openstack"

    def __init__(self, site: Any):
        super().__init__(site)
        self.options = site_options(site, OPTIONS, "openstack")
        self.calls = Calls(site.name)
        self.ssh_user = str(self.options.get("ssh_user") or "root")
        self.delete_timeout = float(self.options.get("delete_timeout", 300))
        self.boot_timeout = float(self.options.get("boot_timeout", 900))
        self.reschedule_after_s = float(self.options.get("reschedule_after_s", 300))
        self._boots: dict[str, dict] = {}  # server id -> create arguments, while building
        self._replaced: dict[str, str] = {}  # lost server id -> the server asked again
        self._conn = None
        self._lock = threading.Lock()
        self._offer: tuple[float, Offer] | None = None
        self._owner: dict[str, str] = {}  # server id -> deployment
        self._floating: dict[str, str] = {}  # server id -> floating address
        self._confirmed: set[str] = set()  # servers whose resize was confirmed
        self.gate = DeploymentGate()

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def conn(self):
        with self._lock:
            if self._conn is None:
                conn = connect(self.site, self.options)
                # authenticate now, so a refused credential is told as such (the SDK
                # would otherwise authenticate inside the first proxy lookup)
                self.calls("authenticate", conn.authorize)
                self._conn = conn
                self.plumbing = Plumbing(self._conn, self.calls, self.options)
                self.volumes = Volumes(self._conn, self.calls, self.options)
                self.quota = QuotaGuard(self._conn, self.calls, self.site,
                                        float(self.options.get("quota_refresh_s", 5)))
            return self._conn

    def _ready(self):
        return self.conn  # makes plumbing, volumes and quota

    def close(self) -> None:
        if self._conn is not None:
            self.calls("close connection", self._conn.close)
            self._conn = None

    # -- what the site offers --------------------------------------------------------------------
    def offer(self) -> Offer:
        ttl = float(self.options.get("offer_ttl_s", 60))
        if self._offer and time.monotonic() - self._offer[0] < ttl:
            return self._offer[1]
        conn = self.conn
        flavors = catalogue.merged_flavors(
            self.calls.listing("list flavors", conn.compute.flavors, details=True),
            self.site.flavors)
        images = catalogue.merged_images(
            self.calls.listing("list images", conn.image.images), self.site.images)
        offer = Offer(flavors=flavors, images=images, quotas=self.quota.quotas())
        self._offer = (time.monotonic(), offer)
        return offer

    def check(self) -> CheckResult:
        name = self.site.name
        try:
            offer = self.offer()
        except TransientProviderError as exc:
            return CheckResult(name, False, False, str(exc))
        except ProviderError as exc:
            refused = "credentials were refused" in str(exc)
            return CheckResult(name, refused, False, str(exc))
        gpu = [f.name for f in offer.flavors if f.gpus.count]
        return CheckResult(name, True, True, f"{len(offer.flavors)} flavors ({len(gpu)} with "
                           f"GPUs), {len(offer.images)} images", offer=offer)

    def estimate(self, kind: str, action: str) -> float:
        return {"compute": 30.0, "volume": 5.0, "network": 3.0, "port": 0.0}.get(kind, 2.0)

    def _flavor(self, name: str | None):
        flavors = self.offer().flavors
        found = next((f for f in flavors if name in (f.name, f.id)), None)
        if found is None:
            raise ProviderError(f"site '{self.site.name}': flavor '{name}' does not exist "
                                f"(known: {', '.join(f.name for f in flavors) or 'none'})")
        return found

    def _image(self, name: str | None):
        images = self.offer().images
        found = next((i for i in images if name in (i.name, i.id, *i.aliases)), None)
        if found is None:
            raise ProviderError(f"site '{self.site.name}': image '{name}' does not exist")
        return found

    # -- create ----------------------------------------------------------------------------------
    def create(self, spec: ResourceSpec) -> Resource:
        self._ready()
        if spec.kind == "compute":
            return self._create_server(spec)
        if spec.kind == "volume":
            self.quota.reserve_volume(int((spec.properties or {}).get("size_gib") or 1))
            return self.volumes.create(spec)
        if spec.kind == "network":
            with self.gate.creating(spec.deployment):
                network = self.plumbing.ensure_network(
                    spec.deployment, spec.node, _network_properties(spec.properties))
            return Resource(NETWORK + network, "network", ACTIVE, dict(spec.tags),
                            {"network_id": network})
        if spec.kind == "port":
            return Resource(f"{PORT}{spec.deployment}/{spec.node}/{spec.index}", "port",
                            ACTIVE, dict(spec.tags),
                            {"note": "Nova makes the server's port on its network"})
        raise ProviderError(f"the openstack provider cannot create a {spec.kind!r}")

    def _servers(self, deployment: str | None = None) -> list:
        filters = {"tags": servers.deployment_tag(deployment)} if deployment else {}
        found = self.calls.listing("list servers", self.conn.compute.servers, details=True,
                                   **filters)
        if deployment:
            found = [s for s in found
                     if servers.server_tags(s).get(TAG_DEPLOYMENT) == deployment]
        for server in found:
            owner = servers.server_tags(server).get(TAG_DEPLOYMENT)
            if owner:
                self._owner[server.id] = owner
        return found

    def _create_server(self, spec: ResourceSpec) -> Resource:
        mine = [s for s in self._servers(spec.deployment)
                if servers.server_tags(s).get(TAG_NODE) == spec.node and
                servers.server_tags(s).get(TAG_INDEX) == str(spec.index)]
        if mine:
            return self._resources(mine)[mine[0].id]
        flavor, image = self._flavor(spec.flavor), self._image(spec.image)
        props = dict(spec.properties or {})
        self.quota.reserve_server(flavor)
        with self.gate.creating(spec.deployment):
            args = self._server_args(spec, props, flavor, image)
            server = self.calls(f"create server {spec.node}[{spec.index}]",
                                self.conn.compute.create_server, **args)
        self._owner[server.id] = spec.deployment
        self._boots[server.id] = args
        return servers.to_resource(server, self.ssh_user)

    def _server_args(self, spec: ResourceSpec, props: dict, flavor, image) -> dict:
        deployment, public_key = spec.deployment, props.get("ssh_public_key")
        key_name = self.plumbing.keypair(deployment, public_key)
        groups = self.plumbing.security_groups(deployment, spec.node, props.get("ports") or [])
        networks = [self.plumbing.ensure_network(deployment, name, {})
                    for name in props.get("networks") or ()]
        if not networks:
            existing = self.options.get("network")
            networks = [self.plumbing.existing_network(str(existing)) if existing else
                        self.plumbing.ensure_network(deployment, None, {})]
        metadata = dict(spec.tags)
        if props.get("public_ip"):
            metadata[servers.META_PUBLIC] = "1"
        text = userdata.cloud_config(spec.node, spec.index, public_key, self.ssh_user,
                                     props.get("volumes"), self.options.get("cloud_config"))
        args = {"name": servers.server_name(deployment, spec.node, spec.index),
                "flavor_id": flavor.id or flavor.name, "image_id": image.id or image.name,
                "networks": [{"uuid": n} for n in networks],
                "security_groups": [{"name": g} for g in groups],  # ids work too
                "metadata": metadata, "tags": [servers.deployment_tag(deployment)],
                "user_data": userdata.encoded(text)}
        if key_name:
            args["key_name"] = key_name
        if self.options.get("availability_zone"):
            args["availability_zone"] = str(self.options["availability_zone"])
        return args

    # -- read ------------------------------------------------------------------------------------
    def _resources(self, found: list) -> dict[str, Resource]:
        result = {}
        for server in found:
            floating = self._floating.get(server.id)
            status = str(server.status or "").upper()
            if status == "ACTIVE" and servers.wants_public_ip(server) and not floating:
                tags = servers.server_tags(server)
                floating = self.plumbing.floating_ip(
                    server.id, tags.get(TAG_DEPLOYMENT, ""), tags.get(TAG_NODE, ""),
                    int(tags.get(TAG_INDEX, 0)))
                self._floating[server.id] = floating
            if status == "VERIFY_RESIZE" and server.id not in self._confirmed:
                self.calls("confirm resize", self.conn.compute.confirm_server_resize,
                           server.id)
                self._confirmed.add(server.id)
            if status == "ERROR" and not getattr(server, "fault", None):
                server = self._with_fault(server)
            result[server.id] = servers.to_resource(server, self.ssh_user, floating,
                                                    self.boot_timeout)
            if result[server.id].status != BUILDING:
                self._boots.pop(server.id, None)
        return result

    def _with_fault(self, server):
        """The server as shown alone: lists leave out the fault of servers that never
        left cell0 (scheduling failures such as "No valid host was found")."""
        try:
            return self.calls("get server", self.conn.compute.get_server, server.id)
        except NotFoundError:
            return server

    def find(self, deployment: str) -> list[Resource]:
        self._ready()
        found = list(self._resources(self._servers(deployment)).values())
        found += [r for r in map(_volume_resource, self.volumes.listing(
            {TAG_DEPLOYMENT: deployment}))]
        networks = self.plumbing.tagged("networks", self.conn.network.networks,
                                         {TAG_DEPLOYMENT: deployment, TAG_KIND: "network"})
        found += [Resource(NETWORK + n.id, "network", ACTIVE, tags_of(n), {"network_id": n.id})
                  for n in networks]
        return found

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        self._ready()
        result: dict[str, Resource] = {}
        server_ids = [i for i in provider_ids if ":" not in i]
        if server_ids:
            actual = {pid: self._replaced.get(pid, pid) for pid in server_ids}
            owners = {self._owner.get(i) for i in actual.values()}
            listed = self._servers(owners.pop()) if len(owners) == 1 and None not in owners \
                else self._servers()
            listed = [self._reboot_if_lost(s) for s in listed if s.id in set(actual.values())]
            known = self._resources(listed)
            for pid in server_ids:
                now = self._replaced.get(pid, pid)
                result[pid] = known.get(now) or Resource(now, "compute", DELETED)
        volume_ids = [i for i in provider_ids if i.startswith(VOLUME)]
        if volume_ids:
            listed = {VOLUME + v.id: v for v in self.calls.listing(
                "list volumes", self.conn.block_storage.volumes, details=True)}
            for pid in volume_ids:
                volume = listed.get(pid)
                result[pid] = _volume_resource(volume) if volume is not None else \
                    Resource(pid, "volume", DELETED)
        for pid in provider_ids:
            if pid not in result:
                kind = "port" if pid.startswith(PORT) else "network"
                result[pid] = Resource(pid, kind, ACTIVE)
        return result

    def _reboot_if_lost(self, server):
        """A boot request Nova lost (still 'scheduling' after ``reschedule_after_s``, which
        a control plane under stress can do) is asked again, once per server, with the
        same arguments: the engine is told the new server under the old id."""
        if str(server.status).upper() != "BUILD" or \
                getattr(server, "task_state", None) != "scheduling" or \
                server.id not in self._boots or \
                servers.building_for(server) < self.reschedule_after_s:
            return server
        args = self._boots.pop(server.id)
        self.calls(f"delete lost server {server.id}", self.conn.compute.delete_server,
                   server.id, ignore_missing=True)
        again = self.calls(f"create server {args['name']} again",
                           self.conn.compute.create_server, **args)
        for old, new in list(self._replaced.items()):
            if new == server.id:
                self._replaced[old] = again.id
        self._replaced[server.id] = again.id
        self._owner[again.id] = self._owner.get(server.id, "")
        return again

    # -- update and delete -----------------------------------------------------------------------
    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        self._ready()
        if provider_id.startswith(VOLUME):
            return self.volumes.extend(provider_id, (spec.properties or {}).get("size_gib"))
        current = self.poll([provider_id])[provider_id]
        if current.status == DELETED:
            raise NotFoundError(f"site '{self.site.name}': server {provider_id} does not exist")
        if spec.kind != "compute" or not spec.flavor or \
                current.attributes.get("flavor") in (spec.flavor, self._flavor(spec.flavor).id):
            return current
        flavor = self._flavor(spec.flavor)
        self.calls(f"resize server {provider_id}", self.conn.compute.resize_server,
                   provider_id, flavor.id)
        self._confirmed.discard(provider_id)
        return Resource(provider_id, "compute", BUILDING, current.tags, current.attributes)

    def delete(self, provider_id: str) -> None:
        self._ready()
        if provider_id.startswith(PORT):
            return
        if provider_id.startswith(VOLUME):
            self.volumes.delete(provider_id, self.delete_timeout)
            return
        if provider_id.startswith(NETWORK):
            self._delete_network(provider_id[len(NETWORK):])
            return
        self._delete_server(provider_id)

    def _delete_network(self, network_id: str) -> None:
        try:
            network = self.calls("get network", self.conn.network.get_network, network_id)
        except NotFoundError:
            return
        deployment = tags_of(network).get(TAG_DEPLOYMENT)
        if deployment:
            self.plumbing.delete_network(network_id, deployment)
            self._cleanup_if_unused(deployment)

    def _delete_server(self, server_id: str) -> None:
        try:
            server = self.calls("get server", self.conn.compute.get_server, server_id)
        except NotFoundError:
            return
        tags = servers.server_tags(server)
        deployment = tags.get(TAG_DEPLOYMENT)
        if not deployment:
            raise ProviderError(f"site '{self.site.name}': server {server_id} was not made "
                                "by the orchestrator; not deleting it")
        self.plumbing.delete_floating_ips(deployment, tags.get(TAG_NODE),
                                          int(tags.get(TAG_INDEX, 0)))
        self.calls(f"delete server {server_id}", self.conn.compute.delete_server, server_id,
                   ignore_missing=True)
        self._wait_gone(server_id)
        self._floating.pop(server_id, None)
        self._owner.pop(server_id, None)
        self._cleanup_if_unused(deployment)

    def _wait_gone(self, server_id: str) -> None:
        """Wait until Nova has removed the server; ask again when Nova dropped the delete
        (its task state went back from 'deleting' to none after a failure)."""
        deadline = time.monotonic() + self.delete_timeout
        asked = time.monotonic()
        while time.monotonic() < deadline:
            try:
                server = self.calls("get server", self.conn.compute.get_server, server_id)
            except NotFoundError:
                return
            if str(server.status).upper() in ("DELETED", "SOFT_DELETED"):
                return
            if getattr(server, "task_state", None) is None and time.monotonic() - asked > 10:
                self.calls(f"delete server {server_id}", self.conn.compute.delete_server,
                           server_id, ignore_missing=True)
                asked = time.monotonic()
            time.sleep(0.5)
        raise TransientProviderError(f"site '{self.site.name}': server {server_id} is still "
                                     f"there {self.delete_timeout:g}s after deleting it")

    def release(self, deployment: str) -> None:
        """Remove the deployment's shared resources (keypair, security groups, floating
        IPs, default network and router) when it has no server left on this site."""
        self._ready()
        self._cleanup_if_unused(deployment)

    def _cleanup_if_unused(self, deployment: str) -> None:
        """Remove the deployment's shared resources once it has no server left (no create
        of the deployment may run meanwhile in this process)."""
        with self.gate.removing(deployment):
            if self._servers(deployment):
                return
            keep = self.calls.listing("list networks", self.conn.network.networks,
                                      tags=f"{TAG_DEPLOYMENT}={deployment},{TAG_KIND}=network")
            self.plumbing.cleanup(deployment, networks=not keep)

    # -- volumes ---------------------------------------------------------------------------------
    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        self._ready()
        return self.volumes.attach(server_id, volume_id, device, self.delete_timeout)

    def detach(self, attachment_id: str) -> None:
        self._ready()
        server_id, _, volume_id = attachment_id.partition("/")
        self.volumes.detach(server_id, volume_id, self.delete_timeout)


def _network_properties(properties: dict | None) -> dict:
    """The network node's own settings, where the plan passes them."""
    props = dict(properties or {})
    nested = props.get("properties")
    if isinstance(nested, dict):
        props.update(nested)
    return {k: props[k] for k in ("network_name", "network_id", "existing", "cidr")
            if props.get(k) not in (None, "")}


