"""Cinder volumes of a deployment: created with the tags as volume metadata, attached
and detached through Nova, deleted once nothing holds them."""
from __future__ import annotations

import json
import time

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
    Resource,
    ResourceSpec,
    TransientProviderError,
)

PREFIX = "volume:"
_BUSY = ("attaching", "detaching", "creating", "reserved", "extending", "deleting",
         "downloading", "uploading", "maintenance", "backing-up", "restoring-backup")


def volume_uuid(provider_id: str) -> str:
    return provider_id[len(PREFIX):] if provider_id.startswith(PREFIX) else provider_id


def tags_of(volume) -> dict:
    meta = dict(getattr(volume, "metadata", None) or {})
    return {k: str(v) for k, v in meta.items()
            if k in (TAG_DEPLOYMENT, TAG_NODE, TAG_INDEX, TAG_KIND)}


def to_resource(volume) -> Resource:
    status = str(volume.status or "").lower()
    attributes = {"size_gib": volume.size, "volume_id": volume.id, "status": status,
                  "volume_type": getattr(volume, "volume_type", None),
                  "attachments": [a.get("server_id") for a in volume.attachments or ()]}
    pid = PREFIX + volume.id
    if status in ("available", "in-use"):
        return Resource(pid, "volume", ACTIVE, tags_of(volume), attributes)
    if status.startswith("error"):
        return Resource(pid, "volume", ERROR, tags_of(volume), attributes,
                        f"Cinder reports the volume in status {status}")
    if status == "deleted":
        return Resource(pid, "volume", DELETED, tags_of(volume), attributes)
    return Resource(pid, "volume", BUILDING, tags_of(volume), attributes)


class Volumes:
    def __init__(self, conn, calls, options: dict):
        self.conn = conn
        self.calls = calls
        self.options = options
        self._filter_by_metadata = True

    def listing(self, tags: dict) -> list:
        """Volumes whose metadata holds ``tags`` (one list call; clouds that do not let
        users filter by metadata get the project's list, filtered here)."""
        if self._filter_by_metadata:
            try:
                return self.calls.listing("list volumes", self.conn.block_storage.volumes,
                                          details=True, properties=json.dumps(tags))
            except ProviderError as exc:
                if "invalid filters" not in str(exc).lower():
                    raise
                self._filter_by_metadata = False
        every = self.calls.listing("list volumes", self.conn.block_storage.volumes,
                                   details=True)
        return [v for v in every if all(tags_of(v).get(k) == str(value)
                                        for k, value in tags.items())]

    def create(self, spec: ResourceSpec) -> Resource:
        found = self.listing(spec.tags)
        if found:
            return to_resource(found[0])
        props = spec.properties or {}
        size = props.get("size_gib") or props.get("size") or 1
        attrs = {"size": int(size), "metadata": dict(spec.tags),
                 "name": f"orch-{spec.deployment[:8]}-{spec.node}-{spec.index}"}
        volume_type = props.get("volume_type") or self.options.get("volume_type")
        if volume_type:
            attrs["volume_type"] = str(volume_type)
        zone = self.options.get("availability_zone")
        if zone:
            attrs["availability_zone"] = str(zone)
        volume = self.calls(f"create volume {spec.node}[{spec.index}]",
                            self.conn.block_storage.create_volume, **attrs)
        return to_resource(volume)

    def get(self, provider_id: str):
        try:
            return self.calls("get volume", self.conn.block_storage.get_volume,
                              volume_uuid(provider_id))
        except NotFoundError:
            return None

    def extend(self, provider_id: str, size_gib: int) -> Resource:
        volume = self.get(provider_id)
        if volume is None:
            raise NotFoundError(f"volume {provider_id} does not exist")
        if size_gib and int(size_gib) > int(volume.size):
            self.calls("extend volume", self.conn.block_storage.extend_volume, volume,
                       int(size_gib))
        elif size_gib and int(size_gib) < int(volume.size):
            raise ProviderError(f"volume {provider_id} cannot shrink from {volume.size} "
                                f"to {size_gib} GiB")
        return to_resource(self.get(provider_id) or volume)

    def wait(self, provider_id: str, ready, timeout: float, what: str):
        """Wait (bounded) until ``ready(volume)``; a volume still busy is transient."""
        deadline = time.monotonic() + timeout
        while True:
            volume = self.get(provider_id)
            if volume is None or ready(volume):
                return volume
            if time.monotonic() > deadline:
                raise TransientProviderError(f"volume {volume.id} still {volume.status} "
                                             f"after {timeout:g}s waiting to {what}")
            time.sleep(0.5)

    def delete(self, provider_id: str, timeout: float) -> None:
        volume = self.wait(provider_id, lambda v: str(v.status).lower() not in _BUSY,
                           timeout, "delete it")
        if volume is None:
            return
        if tags_of(volume).get(TAG_DEPLOYMENT) is None:
            raise ProviderError(f"volume {volume.id} was not made by the orchestrator; "
                                "not deleting it")
        if volume.attachments:
            for attachment in volume.attachments:
                self.detach(attachment.get("server_id"), volume.id, timeout)
        self.calls("delete volume", self.conn.block_storage.delete_volume, volume.id,
                   ignore_missing=True)

    def attach(self, server_id: str, provider_id: str, device: str | None,
               timeout: float) -> Resource:
        uuid = volume_uuid(provider_id)
        volume = self.get(uuid)
        if volume is None:
            raise NotFoundError(f"volume {uuid} does not exist")
        current = next((a for a in volume.attachments or ()
                        if a.get("server_id") == server_id), None)
        if current is None:
            attrs = {"volume_id": uuid}
            if device:
                attrs["device"] = device
            self.calls(f"attach volume {uuid} to server {server_id}",
                       self.conn.compute.create_volume_attachment, server_id, **attrs)
            volume = self.wait(uuid, lambda v: str(v.status).lower() == "in-use" or
                               str(v.status).lower().startswith("error"), timeout, "attach")
            current = next((a for a in (volume.attachments if volume else ()) or ()
                            if a.get("server_id") == server_id), {})
        return Resource(f"{server_id}/{uuid}", "attachment", ACTIVE,
                        attributes={"device": current.get("device") or device,
                                    "volume_id": uuid, "server_id": server_id})

    def detach(self, server_id: str, provider_id: str, timeout: float) -> None:
        uuid = volume_uuid(provider_id)
        try:
            self.calls(f"detach volume {uuid} from server {server_id}",
                       self.conn.compute.delete_volume_attachment, server_id, uuid,
                       ignore_missing=True)
        except NotFoundError:
            return
        self.wait(uuid, lambda v: not any(a.get("server_id") == server_id
                                          for a in v.attachments or ())
                  and str(v.status).lower() not in _BUSY, timeout, "detach")
