"""The ``cloud`` provider: public clouds through apache-libcloud's compute drivers.

One code path for every driver; what differs between drivers (size names, image lookup,
key handling, firewalls, tags, spot capacity) lives in ``adapters/``. Servers carry the
``orchestrator-*`` tags, so ``find`` and a retried ``create`` see what exists; ``poll`` of
any number of servers is one list call; the deployment's key pair and firewall are made
with its first server and removed with its last. Options: docs/cloud.md.
"""
from __future__ import annotations

import inspect
import socket
import threading
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    TAG_DEPLOYMENT,
    CheckResult,
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
from orchestrator.providers.cloud import credentials
from orchestrator.providers.cloud.adapters import SSH_USERS, for_driver, offered_image

OPTIONS = ("gpu_sizes", "gpu_models", "size_families", "architecture", "image_owner",
           "ssh_user", "zone", "spot_max_price", "cleanup_timeout", "resource_group",
           "network", "subnet")
_TRANSIENT_WORDS = ("RequestLimitExceeded", "Throttling", "ThrottlingException",
                    "ServiceUnavailable", "InternalError", "Unavailable", "rateLimitExceeded",
                    "TooManyRequests", "DependencyViolation", "IncorrectState")
_QUOTA_WORDS = ("InstanceLimitExceeded", "VcpuLimitExceeded", "QuotaExceeded",
                "VolumeLimitExceeded", "InsufficientInstanceCapacity",
                "MaxSpotInstanceCountExceeded", "QUOTA_EXCEEDED")
_STATES = {"running": ACTIVE, "pending": BUILDING, "starting": BUILDING, "rebooting": BUILDING,
           "reconfiguring": BUILDING, "migrating": BUILDING, "terminated": DELETED,
           "error": ERROR, "stopped": ERROR, "stopping": ERROR, "suspended": ERROR,
           "paused": ERROR}
VOLUME = "volume:"


class CloudProvider(Provider):
    """Provider of ``provider: cloud`` sites (apache-libcloud compute drivers)."""

    type_name = "cloud"

    def __init__(self, site: Any):
        super().__init__(site)
        self.options = site_options(site, OPTIONS, "cloud")
        self.driver_name, self._args, self.region = credentials.driver_arguments(site)
        self._secrets = credentials.secret_values(self._args)
        self.adapter = for_driver(self.driver_name, self.options)
        self.driver_class = self._driver_class()
        self._local = threading.local()  # libcloud connections are not thread-safe
        self._offer: Offer | None = None
        self._sizes: dict[str, Any] = {}

    # --- the driver and the one place libcloud errors are translated ----------------------------
    def _driver_class(self) -> type:
        """The libcloud driver class, its arguments checked against its constructor (no
        network: some drivers fetch a token as soon as they are made)."""
        from libcloud.compute.providers import get_driver

        try:
            cls = self.adapter.driver_class(get_driver(self.driver_name))
        except AttributeError:
            raise ProviderError(f"site '{self.site.name}': libcloud has no compute driver "
                                f"'{self.driver_name}'") from None
        kwargs = self.adapter.driver_kwargs(self._args, self.region)
        try:
            inspect.signature(cls.__init__).bind(None, **kwargs)
        except TypeError as exc:  # names arguments, never their values
            raise ProviderError(f"site '{self.site.name}': libcloud driver "
                                f"'{self.driver_name}' does not take the arguments "
                                f"{sorted(kwargs)}: {exc}") from None
        return cls

    def driver(self) -> Any:
        """This thread's libcloud driver, made on first use."""
        driver = getattr(self._local, "driver", None)
        if driver is None:
            try:
                driver = self.driver_class(**self.adapter.driver_kwargs(self._args,
                                                                        self.region))
            except Exception as exc:  # noqa: BLE001 - bad arguments, token refused
                raise self._error(exc, f"cannot set up libcloud driver '{self.driver_name}'"
                                  ) from None
            self._local.driver = driver
        return driver

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - libcloud raises many kinds
            raise self._error(exc, what) from exc

    def _error(self, exc: Exception, what: str) -> ProviderError:
        """A ProviderError (or subclass) naming the site, the action and the cloud's text."""
        from libcloud.common.exceptions import BaseHTTPError
        from libcloud.common.types import InvalidCredsError

        raw = getattr(exc, "message", None) or getattr(exc, "value", None) or str(exc)
        code = getattr(exc, "code", None)
        text = credentials.scrub(str(raw).strip() or (f"HTTP {code}" if code else
                                                      type(exc).__name__), self._secrets)
        message = f"site '{self.site.name}': {what}: {text}"
        if isinstance(exc, InvalidCredsError):
            return ProviderError(f"site '{self.site.name}': {what}: credentials refused ({text})")
        if any(word in text for word in _QUOTA_WORDS):
            return QuotaExceededError(message)
        if isinstance(exc, (socket.error, ConnectionError, TimeoutError)) or \
                type(exc).__module__.startswith(("requests", "urllib3")) or \
                (isinstance(exc, BaseHTTPError) and code in (429, 500, 502, 503, 504)) or \
                any(word in text for word in _TRANSIENT_WORDS):
            return TransientProviderError(message)
        if "NotFound" in text or "does not exist" in text or code == 404:
            return NotFoundError(message)
        return ProviderError(message)

    # --- what the site offers ------------------------------------------------------------------
    def offer(self) -> Offer:
        if self._offer is None:
            driver = self.driver()
            sizes = self._call("listing sizes", driver.list_sizes)
            flavors = {}
            for size in sizes:
                flavor = self.adapter.flavor(size)
                if flavor is not None:
                    flavors[flavor.name] = flavor
                    self._sizes[flavor.name] = size
            for flavor in self.site.flavors:  # sites.yaml completes what the API says
                flavors[flavor.name] = flavor
            images = {i.name: i for i in map(offered_image, self._call(
                "listing images", self.adapter.offer_images, driver)) if i.name}
            for image in self.site.images:
                images[image.name] = image
            self._offer = Offer(tuple(flavors.values()), tuple(images.values()),
                                self.site.quotas)
        return self._offer

    def check(self) -> CheckResult:
        name = self.site.name
        try:
            self._call("listing servers", self.adapter.list_nodes, self.driver(), "-")
            offer = self.offer()
        except TransientProviderError as exc:
            return CheckResult(name, False, False, str(exc))
        except ProviderError as exc:
            return CheckResult(name, True, "credentials refused" not in str(exc), str(exc))
        return CheckResult(name, True, True, f"libcloud driver {self.driver_name} answers; "
                           f"{len(offer.flavors)} sizes, {len(offer.images)} images", offer)

    def estimate(self, kind: str, action: str) -> float:
        return {"compute": 60.0, "volume": 10.0}.get(kind, 1.0)

    # --- create --------------------------------------------------------------------------------
    def create(self, spec: ResourceSpec) -> Resource:
        if spec.kind == "compute":
            return self._create_server(spec)
        if spec.kind == "volume":
            return self._create_volume(spec)
        if spec.kind in ("network", "port"):
            return Resource(f"{spec.kind}:{spec.deployment}/{spec.node}/{spec.index}", spec.kind,
                            ACTIVE, dict(spec.tags), {"note": "servers use the site's default "
                                                      "network; ports open in the firewall"})
        raise ProviderError(f"the cloud provider cannot create a {spec.kind!r}")

    def _create_server(self, spec: ResourceSpec) -> Resource:
        driver, tags = self.driver(), spec.tags
        found = [n for n in self._call("listing servers", self.adapter.list_nodes, driver,
                                       spec.deployment)
                 if _same_instance(self.adapter.node_tags(n), tags)
                 and self._status(n)[0] != DELETED]
        if found:  # made by an earlier, interrupted attempt
            return self._resource(found[0])
        props = spec.properties or {}
        requirements = props.get("requirements") or {}
        size = self._size(spec.flavor)
        image = self._image(spec.image)
        kwargs = {**self.adapter.server_kwargs(), **self.adapter.tag_kwargs(tags)}
        kwargs.update(self._call("importing the deployment's key", self.adapter.key_kwargs,
                                 driver, spec.deployment, props.get("ssh_public_key")))
        kwargs.update(self._call("opening the deployment's ports", self.adapter.firewall_kwargs,
                                 driver, spec.deployment, list(props.get("ports") or ()), tags))
        if requirements.get("preemptible"):
            if not self.adapter.supports_spot:
                raise ProviderError(f"site '{self.site.name}': libcloud driver "
                                    f"{self.driver_name} cannot ask for spot/preemptible "
                                    f"servers ({spec.node}[{spec.index}] requires one)")
            kwargs.update(self.adapter.spot_kwargs())
        location = self._call("finding the zone", self.adapter.location, driver)
        if location is not None:
            kwargs["location"] = location
        name = f"{spec.node}-{spec.index}-{spec.deployment[:8]}"
        node = self._call(f"creating server {spec.node}[{spec.index}]", driver.create_node,
                          name=name, size=size, image=image, **kwargs)
        return self._resource(node)

    def _size(self, flavor: str | None) -> Any:
        from libcloud.compute.base import NodeSize

        if not flavor:
            raise ProviderError(f"site '{self.site.name}': no size chosen for the server")
        declared = self.site.flavor(flavor)
        ident = (declared.id if declared and declared.id else None) or flavor
        if ident in self._sizes:
            return self._sizes[ident]
        return NodeSize(ident, ident, declared.memory_mib if declared else 0,
                        declared.disk_gib if declared else 0, None, None, self.driver())

    def _image(self, name: str | None) -> Any:
        declared = self.site.image(name) if name else None
        offered = next((i for i in (self._offer.images if self._offer else ())
                        if name in (i.name, *i.aliases)), None) if name else None
        image_id = (declared or offered).id if (declared or offered) else None
        pattern = (declared.name if declared else name) if not image_id else None
        if not image_id and not pattern:
            raise ProviderError(f"site '{self.site.name}': no image chosen for the server")
        found = self._call(f"looking up image {image_id or pattern}", self.adapter.image,
                           self.driver(), image_id, pattern)
        if found is None:
            raise ProviderError(f"site '{self.site.name}': no image "
                                + (f"with id {image_id}" if image_id else
                                   f"named like {pattern!r}") + " in the cloud")
        return found

    # --- read ----------------------------------------------------------------------------------
    def _status(self, node: Any) -> tuple[str, str | None]:
        state = str(getattr(node, "state", "unknown")).lower().rsplit(".", 1)[-1]
        raw = str((node.extra or {}).get("status") or "").lower()
        if state == "unknown" and raw in ("shutting-down", "terminated", "deleting"):
            return DELETED, None
        status = _STATES.get(state, BUILDING)
        fault = None
        if status == ERROR:
            reason = (node.extra or {}).get("reason") or (node.extra or {}).get(
                "state_reason") or ""
            fault = f"server is {state}" + (f": {reason}" if reason else "")
        return status, fault

    def _resource(self, node: Any) -> Resource:
        status, fault = self._status(node)
        public = [a for a in node.public_ips or () if a]
        private = [a for a in node.private_ips or () if a]
        tags = self.adapter.node_tags(node)
        image = next((i for i in self.site.images if i.id == (node.extra or {}).get(
            "image_id")), None)
        user = self.options.get("ssh_user") or SSH_USERS.get(
            (image.distribution or "").lower() if image else "",
            self.adapter.default_ssh_user)
        extra = node.extra or {}
        attributes = {
            "public_address": public[0] if public else None,
            "private_address": private[0] if private else None,
            "ssh_host": public[0] if public else (private[0] if private else None),
            "ssh_port": 22, "ssh_user": user, "instance_id": node.id, "name": node.name,
            "flavor": extra.get("instance_type") or (node.size.id if node.size else None),
            "image": extra.get("image_id") or (node.image.id if node.image else None),
            "zone": extra.get("availability") or extra.get("zone"),
            "spot": self.adapter.is_spot(node),
        }
        return Resource(node.id, "compute", status, tags,
                        {k: v for k, v in attributes.items() if v is not None}, fault)

    def _volume_resource(self, volume: Any) -> Resource:
        state = str(getattr(volume, "state", "")).lower().rsplit(".", 1)[-1]
        status = {"creating": BUILDING, "available": ACTIVE, "inuse": ACTIVE, "in-use": ACTIVE,
                  "deleting": DELETED, "deleted": DELETED, "error": ERROR}.get(state, ACTIVE)
        return Resource(VOLUME + volume.id, "volume", status, self.adapter.volume_tags(volume),
                        {"volume_id": volume.id, "size_gib": volume.size})

    def find(self, deployment: str) -> list[Resource]:
        driver = self.driver()
        nodes = self._call("listing servers", self.adapter.list_nodes, driver, deployment)
        found = [r for r in map(self._resource, nodes) if r.status != DELETED]
        volumes = self._call("listing volumes", self.adapter.list_volumes, driver, deployment)
        return found + [r for r in map(self._volume_resource, volumes) if r.status != DELETED]

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        driver = self.driver()
        servers = [i for i in provider_ids if ":" not in i]
        volumes = [i[len(VOLUME):] for i in provider_ids if i.startswith(VOLUME)]
        result: dict[str, Resource] = {}
        if servers:
            for node in self._call("listing servers", self.adapter.list_nodes, driver,
                                   None, servers):
                result[node.id] = self._resource(node)
        if volumes:
            for volume in self._call("listing volumes", self.adapter.list_volumes, driver,
                                     None, volumes):
                result[VOLUME + volume.id] = self._volume_resource(volume)
        for ident in provider_ids:
            if ident not in result:
                kind = "volume" if ident.startswith(VOLUME) else ident.split(":")[0] \
                    if ":" in ident else "compute"
                status = ACTIVE if kind in ("network", "port") else DELETED
                result[ident] = Resource(ident, kind, status)
        return result

    # --- update and delete ---------------------------------------------------------------------
    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        current = self.poll([provider_id])[provider_id]
        if current.status == DELETED:
            raise NotFoundError(f"site '{self.site.name}': {provider_id} does not exist")
        if spec.kind == "compute" and spec.flavor and spec.flavor != \
                current.attributes.get("flavor"):
            raise ProviderError(f"site '{self.site.name}': {provider_id} cannot change size "
                                f"in place (to {spec.flavor}); a replace is needed")
        return current

    def delete(self, provider_id: str) -> None:
        if provider_id.startswith(("network:", "port:")):
            return
        driver = self.driver()
        if provider_id.startswith(VOLUME):
            return self._delete_volume(driver, provider_id[len(VOLUME):])
        nodes = self._call("listing servers", self.adapter.list_nodes, driver, None,
                           [provider_id])
        if not nodes:
            return
        node = nodes[0]
        if self._status(node)[0] != DELETED:
            self._call(f"deleting server {provider_id}", driver.destroy_node, node)
        deployment = self.adapter.node_tags(node).get(TAG_DEPLOYMENT)
        if deployment:
            self._cleanup_if_last(driver, deployment)

    def release(self, deployment: str) -> None:
        self._cleanup_if_last(self.driver(), deployment)

    def _cleanup_if_last(self, driver: Any, deployment: str) -> None:
        """The key pair and firewall go with the deployment's last server. Every delete
        checks after its own server is gone, so of concurrent deletes the last one sees
        none left."""
        left = self._call("listing servers", self.adapter.list_nodes, driver, deployment)
        if any(self._status(n)[0] != DELETED for n in left):
            return
        self._call("removing the deployment's key pair and firewall", self.adapter.cleanup,
                   driver, deployment)

    # --- volumes ---------------------------------------------------------------------------------
    def _create_volume(self, spec: ResourceSpec) -> Resource:
        driver, tags = self.driver(), spec.tags
        for volume in self._call("listing volumes", self.adapter.list_volumes, driver,
                                 spec.deployment):
            if _same_instance(self.adapter.volume_tags(volume), tags):
                return self._volume_resource(volume)
        props = spec.properties or {}
        size = int(props.get("size_gib") or 1)
        name = f"{spec.node}-{spec.index}-{spec.deployment[:8]}"
        volume = self._call(f"creating volume {spec.node}[{spec.index}]",
                            self.adapter.create_volume, driver, max(1, size), name, tags,
                            props.get("volume_type"))
        return self._volume_resource(volume)

    def _delete_volume(self, driver: Any, volume_id: str) -> None:
        volumes = self._call("listing volumes", self.adapter.list_volumes, driver, None,
                             [volume_id])
        if volumes:
            self._call(f"deleting volume {volume_id}", driver.destroy_volume, volumes[0])

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        driver = self.driver()
        plain = volume_id[len(VOLUME):] if volume_id.startswith(VOLUME) else volume_id
        nodes = self._call("listing servers", self.adapter.list_nodes, driver, None, [server_id])
        volumes = self._call("listing volumes", self.adapter.list_volumes, driver, None, [plain])
        if not nodes or not volumes:
            raise NotFoundError(f"site '{self.site.name}': cannot attach {volume_id} to "
                                f"{server_id}: " + ("server" if not nodes else "volume")
                                + " not found")
        attached = (volumes[0].extra or {}).get("instance_id")
        if attached != server_id:
            self._call(f"attaching {volume_id} to {server_id}", self.adapter.attach_volume,
                       driver, nodes[0], volumes[0], device)
        return Resource(f"{server_id}/{volume_id}", "attachment", ACTIVE,
                        attributes={"device": device or (volumes[0].extra or {}).get("device")})

    def detach(self, attachment_id: str) -> None:
        server_id, _, volume_id = attachment_id.partition("/")
        plain = volume_id[len(VOLUME):] if volume_id.startswith(VOLUME) else volume_id
        driver = self.driver()
        volumes = self._call("listing volumes", self.adapter.list_volumes, driver, None, [plain])
        if volumes and (volumes[0].extra or {}).get("instance_id") == server_id:
            self._call(f"detaching {volume_id}", self.adapter.detach_volume, driver, volumes[0],
                       server_id)


def _same_instance(found: dict, wanted: dict) -> bool:
    """Tags of the same deployment, node, index and kind (GCE labels lowercase keys)."""
    lowered = {str(k).lower(): str(v).lower() for k, v in found.items()}
    return all(lowered.get(k.lower()) == str(v).lower() for k, v in wanted.items())
