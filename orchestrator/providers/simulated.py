"""A simulated cloud, in process, that creates nothing real: for trying the orchestrator
without a cloud (docs/sites.md), for tests and for benchmarks; never for real work.

Sites with ``provider: simulated`` get a cloud that creates nothing real but behaves
like one where the orchestrator can tell: servers are ``building`` until their boot
time has passed, quotas run out, API calls take time, fail on cue and can kill the
calling process right before or after the cloud acted. Its configuration comes from
the site (docs/sites.md, "simulated"):

- ``flavors``, ``images``, ``quotas`` of the site are the whole offer;
- ``options.state_file``: keep the cloud in a JSON file, rewritten atomically after
  every call under an ``fcntl`` lock, so several processes share one cloud and a test
  can SIGKILL the orchestrator and look at what exists (the CLI names one under the
  data folder when the site does not). Without it the cloud lives in memory, shared
  by every SimulatedProvider of the same site name in the process;
- ``options.latency``: ``{create, delete, update, poll, find, boot}`` seconds (and
  ``configure``, which the engine's recording Configurator sleeps per software step);
- ``options.faults``: ``[{operation, kind, on_call, times, node, message}]``: the
  ``on_call``-th call (1-based; counted per node when ``node`` is given) and the
  ``times - 1`` after it fail. ``transient``/``quota``/``permanent`` fail before the
  cloud acts; ``timeout`` lets the cloud act and then loses the answer;
  ``crash_before``/``crash_after`` (``crash`` = ``crash_after``) SIGKILL the process
  before the cloud acts or right after the result is persisted;
- ``options.boot_error``: ``{node, message}`` (or a list): that node's servers end in
  ``error`` with the message as their fault, like Nova's;
- ``options.unreachable`` / ``options.credentials_invalid``: for ``check()``.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from orchestrator.diagnostics import did_you_mean
from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
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

FORMAT_VERSION = 1
OPERATIONS = ("create", "delete", "poll", "update", "find", "offer", "attach", "detach")
FAULT_KINDS = ("transient", "timeout", "quota", "permanent", "crash", "crash_before",
               "crash_after")
OPTIONS = ("state_file", "latency", "faults", "boot_error", "unreachable",
           "credentials_invalid")
#: seconds per call; ``configure`` is read by the engine's recording Configurator
LATENCIES = ("create", "delete", "update", "poll", "find", "boot", "configure")
QUOTA_KEYS = ("instances", "cores", "memory_mib", "gpus", "volumes", "volume_gib")


def _clock() -> float:
    """Wall-clock seconds; tests may monkeypatch it to step through boot times."""
    return time.time()


@dataclass(frozen=True)
class Fault:
    operation: str
    kind: str
    on_call: int = 1
    times: int = 1
    node: str | None = None
    message: str | None = None

    def fires(self, count: int) -> bool:
        return self.on_call <= count < self.on_call + self.times


@dataclass(frozen=True)
class SimulatedConfig:
    latency: dict
    faults: tuple[Fault, ...] = ()
    boot_errors: dict | None = None  # node (None: every node) -> message
    unreachable: bool = False
    credentials_invalid: bool = False

    @classmethod
    def from_site(cls, site: Any) -> SimulatedConfig:
        options = site_options(site, OPTIONS, "simulated")
        latency = {k: 0.0 for k in LATENCIES}
        for key, value in (options.get("latency") or {}).items():
            if key not in LATENCIES or not isinstance(value, (int, float)) or value < 0:
                raise ProviderError(f"site '{site.name}': latency.{key} must be one of "
                                    f"{', '.join(LATENCIES)} with seconds >= 0")
            latency[key] = float(value)
        if "find" not in (options.get("latency") or {}):
            latency["find"] = latency["poll"]
        errors = options.get("boot_error") or []
        errors = [errors] if isinstance(errors, dict) else errors
        return cls(latency=latency,
                   faults=tuple(_fault(site.name, f) for f in options.get("faults") or ()),
                   boot_errors={e.get("node"): str(e.get("message", "boot failed"))
                                for e in errors},
                   unreachable=bool(options.get("unreachable")),
                   credentials_invalid=bool(options.get("credentials_invalid")))


def _fault(site: str, data: Any) -> Fault:
    try:
        fault = Fault(**data)
    except TypeError as exc:
        raise ProviderError(f"site '{site}': malformed fault {data!r}: {exc}") from None
    if fault.operation not in OPERATIONS or fault.kind not in FAULT_KINDS \
            or not isinstance(fault.on_call, int) or fault.on_call < 1 \
            or not isinstance(fault.times, int) or fault.times < 1:
        raise ProviderError(f"site '{site}': fault {data!r} needs operation in "
                            f"{OPERATIONS}, kind in {FAULT_KINDS}, on_call and times >= 1")
    return fault


def _fresh_state(site: str) -> dict:
    return {"format_version": FORMAT_VERSION, "site": site, "next_id": 1, "next_private": 1,
            "next_public": 0, "resources": {}, "calls": {}, "node_calls": {},
            "faults_fired": []}


def _tag_key(tags: dict) -> tuple:
    return tuple(str(tags.get(k)) for k in (TAG_DEPLOYMENT, TAG_NODE, TAG_INDEX, TAG_KIND))


def _address(first: int, second: int, n: int) -> str:
    """The n-th (0-based) host address from ``first.second.0.0`` up, skipping .0 and .255."""
    block, host = divmod(n, 254)
    return f"{first}.{second + block // 256}.{block % 256}.{host + 1}"


class SimulatedCloud:
    """The state of one simulated cloud, shared by every provider of the same site."""

    _registry: ClassVar[dict[tuple, SimulatedCloud]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, site_name: str, state_file: str | None = None):
        self.site_name = site_name
        self.state_file = state_file
        self.lock = threading.RLock()
        self._state = _fresh_state(site_name)
        self._stamp: tuple | None = None
        self._index: dict[tuple, str] = {}
        self._usage: dict | None = None  # totals of live resources, recomputed when None

    @classmethod
    def for_site(cls, site: Any) -> SimulatedCloud:
        """The cloud of ``site`` (a Site, or a site name for an in-memory cloud)."""
        name = site if isinstance(site, str) else site.name
        path = None if isinstance(site, str) else _state_path(site)
        key = ("file", path) if path else ("memory", name)
        with cls._registry_lock:
            cloud = cls._registry.get(key)
            if cloud is None:
                cloud = cls._registry[key] = cls(name, path)
            return cloud

    # --- state and persistence ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        """Exclusive access to the state; persisted afterwards (also on error)."""
        with self.lock:
            if not self.state_file:
                yield self._state
                return
            with self._file_lock():
                state = self._load()
                try:
                    yield state
                finally:
                    self.save(state)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        import fcntl

        os.makedirs(os.path.dirname(self.state_file) or ".", exist_ok=True)
        with open(self.state_file + ".lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def snapshot(self) -> dict:
        """A deep copy of the whole state, for tests."""
        with self.lock:
            return copy.deepcopy(self._load() if self.state_file else self._state)

    def reset(self) -> None:
        with self.lock:
            if self.state_file:
                with self._file_lock():
                    if os.path.exists(self.state_file):
                        os.remove(self.state_file)
            self._state, self._stamp, self._index = _fresh_state(self.site_name), None, {}
            self._usage = None

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.state_file)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _load(self) -> dict:
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp:
            return self._state
        if stamp is None:
            state = _fresh_state(self.site_name)
        else:
            try:
                with open(self.state_file, encoding="utf-8") as handle:
                    state = json.load(handle)
            except (OSError, ValueError) as exc:
                raise ProviderError(f"simulated cloud state {self.state_file} is unreadable: "
                                    f"{exc}") from exc
        self._state, self._stamp, self._usage = state, stamp, None
        self._index = {_tag_key(r["tags"]): r["id"] for r in state["resources"].values()
                       if r.get("deleted_at") is None}
        return state

    def save(self, state: dict) -> None:
        if not self.state_file:
            return
        folder = os.path.dirname(self.state_file) or "."
        fd, tmp = tempfile.mkstemp(prefix=".simulated-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(state, separators=(",", ":")))  # C encoder: fast
            os.replace(tmp, self.state_file)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        self._state, self._stamp = state, self._file_stamp()

    # --- records -----------------------------------------------------------------------

    def live(self, state: dict, provider_id: str) -> dict | None:
        record = state["resources"].get(provider_id)
        return record if record and record.get("deleted_at") is None else None

    def by_tags(self, state: dict, tags: dict) -> dict | None:
        provider_id = self._index.get(_tag_key(tags))
        return self.live(state, provider_id) if provider_id else None

    def add(self, state: dict, record: dict) -> None:
        state["resources"][record["id"]] = record
        self._index[_tag_key(record["tags"])] = record["id"]
        self._count_usage(record["usage"], 1)

    def remove(self, state: dict, record: dict, now: float) -> None:
        record["deleted_at"] = now
        self._index.pop(_tag_key(record["tags"]), None)
        self._count_usage(record["usage"], -1)

    def set_usage(self, record: dict, usage: dict) -> None:
        self._count_usage(record["usage"], -1)
        record["usage"] = usage
        self._count_usage(usage, 1)

    def _count_usage(self, usage: dict, sign: int) -> None:
        if self._usage is not None:
            for key, amount in usage.items():
                self._usage[key] += sign * amount

    def usage(self, state: dict, exclude: str | None = None) -> dict:
        """Quota usage of the live resources (but ``exclude``)."""
        if self._usage is None:
            total = {k: 0 for k in QUOTA_KEYS}
            for record in state["resources"].values():
                if record.get("deleted_at") is None:
                    for key, amount in record["usage"].items():
                        total[key] += amount
            self._usage = total
        total = dict(self._usage)
        if exclude is not None and self.live(state, exclude) is not None:
            for key, amount in state["resources"][exclude]["usage"].items():
                total[key] -= amount
        return total


def _state_path(site: Any) -> str | None:
    path = (getattr(site, "options", None) or {}).get("state_file")
    if not path:
        return None
    path = os.path.expanduser(os.path.expandvars(str(path)))
    if not os.path.isabs(path) and getattr(site, "file", ""):
        path = os.path.join(os.path.dirname(os.path.abspath(site.file)), path)
    return os.path.realpath(path)


def _resource(record: dict, now: float) -> Resource:
    fault = None
    if record.get("deleted_at") is not None:
        status = DELETED
    elif now < record["ready_at"]:
        status = BUILDING
    elif record.get("boot_fault"):
        status, fault = ERROR, record["boot_fault"]
    else:
        status = ACTIVE
    return Resource(provider_id=record["id"], kind=record["kind"], status=status,
                    tags=dict(record["tags"]), attributes=copy.deepcopy(record["attributes"]),
                    fault=fault)


class SimulatedProvider(Provider):
    """Provider of ``provider: simulated`` sites (tests and benchmarks only)."""

    type_name = "simulated"
    reached_over_ssh = False  # nothing runs on its servers
    records_operations = True  # software operations are recorded as if they ran

    def __init__(self, site: Any):
        super().__init__(site)
        self.config = SimulatedConfig.from_site(site)
        self.cloud = SimulatedCloud.for_site(site)

    # --- the Provider interface ----------------------------------------------------------

    def offer(self) -> Offer:
        with self.cloud.transaction() as state:
            self._reachable()
            fault = self._call(state, "offer", set())
            offer = self._offer(state)
            self._after(fault, state)
            return offer

    def check(self) -> CheckResult:
        name = self.site.name
        if self.config.unreachable:
            return CheckResult(name, False, False, "simulated site is unreachable")
        if self.config.credentials_invalid:
            return CheckResult(name, True, False, "simulated site rejects the credentials")
        with self.cloud.transaction() as state:
            self._count(state, "check", set())
            return CheckResult(name, True, True, "simulated cloud (tests and benchmarks only)",
                               offer=self._offer(state))

    def create(self, spec: ResourceSpec) -> Resource:
        self._sleep("create")
        with self.cloud.transaction() as state:
            self._reachable()
            existing = self.cloud.by_tags(state, spec.tags)
            if existing is not None:
                self._count(state, "create_existing", set())
                return _resource(existing, _clock())
            fault = self._call(state, "create", {spec.node})
            record = self._new_record(state, spec)
            self.cloud.add(state, record)
            self._after(fault, state)
            return replace(_resource(record, _clock()), status=BUILDING)  # as clouds answer

    def find(self, deployment: str) -> list[Resource]:
        self._sleep("find")
        with self.cloud.transaction() as state:
            self._reachable()
            records = [r for r in state["resources"].values() if r.get("deleted_at") is None
                       and r["tags"].get(TAG_DEPLOYMENT) == deployment]
            fault = self._call(state, "find", {r["tags"].get(TAG_NODE) for r in records})
            now = _clock()
            found = [_resource(r, now) for r in records]
            self._after(fault, state)
            return found

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        self._sleep("poll")
        with self.cloud.transaction() as state:
            self._reachable()
            records = {i: state["resources"].get(i) for i in provider_ids}
            nodes = {r["tags"].get(TAG_NODE) for r in records.values()
                     if r and r.get("deleted_at") is None}
            fault = self._call(state, "poll", nodes)
            now = _clock()
            result = {i: _resource(r, now) if r else Resource(i, "unknown", DELETED)
                      for i, r in records.items()}
            self._after(fault, state)
            return result

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        with self.cloud.transaction() as state:
            self._reachable()
            server = self.cloud.live(state, server_id)
            volume = self.cloud.live(state, volume_id)
            if server is None or volume is None:
                missing = server_id if server is None else volume_id
                raise NotFoundError(f"site '{self.site.name}': no resource {missing}")
            fault = self._call(state, "attach", {server["tags"].get(TAG_NODE)})
            attached = server["attributes"].setdefault("volumes", {})
            attached[volume_id] = device
            volume["attributes"]["attached_to"] = server_id
            self._after(fault, state)
        return Resource(provider_id=f"{server_id}/{volume_id}", kind="attachment",
                        status=ACTIVE, tags={},
                        attributes={"server": server_id, "volume": volume_id,
                                    "device": device})

    def detach(self, attachment_id: str) -> None:
        server_id, _, volume_id = attachment_id.partition("/")
        with self.cloud.transaction() as state:
            self._reachable()
            server = self.cloud.live(state, server_id)
            volume = self.cloud.live(state, volume_id)
            fault = self._call(state, "detach",
                               {server["tags"].get(TAG_NODE)} if server else set())
            if server is not None:
                server["attributes"].get("volumes", {}).pop(volume_id, None)
            if volume is not None:
                volume["attributes"].pop("attached_to", None)
            self._after(fault, state)

    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        self._sleep("update")
        with self.cloud.transaction() as state:
            self._reachable()
            record = self.cloud.live(state, provider_id)
            if record is None:
                raise NotFoundError(f"site '{self.site.name}': no resource {provider_id}")
            fault = self._call(state, "update", {record["tags"].get(TAG_NODE)})
            self._apply_update(state, record, spec)
            self._after(fault, state)
            return _resource(record, _clock())

    def delete(self, provider_id: str) -> None:
        self._sleep("delete")
        with self.cloud.transaction() as state:
            self._reachable()
            record = self.cloud.live(state, provider_id)
            nodes = {record["tags"].get(TAG_NODE)} if record else set()
            fault = self._call(state, "delete", nodes)
            if record is not None:
                self.cloud.remove(state, record, _clock())
            self._after(fault, state)

    def estimate(self, kind: str, action: str) -> float:
        latency = self.config.latency
        if action == "create":
            return latency["create"] + latency["boot"] + latency["poll"]
        if action in ("delete", "update"):
            return latency[action]
        return super().estimate(kind, action)

    # --- calls, faults and latency -------------------------------------------------------

    def _sleep(self, operation: str) -> None:
        seconds = self.config.latency.get(operation, 0.0)
        if seconds:
            time.sleep(seconds)

    def _reachable(self) -> None:
        if self.config.unreachable:
            raise TransientProviderError(
                f"site '{self.site.name}': connection refused (simulated unreachable site)")

    @staticmethod
    def _count(state: dict, operation: str, nodes: set) -> None:
        state["calls"][operation] = state["calls"].get(operation, 0) + 1
        for node in nodes:
            key = f"{operation}:{node}"
            state["node_calls"][key] = state["node_calls"].get(key, 0) + 1

    def _call(self, state: dict, operation: str, nodes: set) -> Fault | None:
        """Count a call; raise or crash for a fault that strikes before the cloud acts,
        return one that strikes after it (timeout, crash_after)."""
        self._count(state, operation, nodes)
        for fault in self.config.faults:
            if fault.operation != operation or (fault.node and fault.node not in nodes):
                continue
            key = f"{operation}:{fault.node}" if fault.node else None
            count = state["node_calls"][key] if key else state["calls"][operation]
            if not fault.fires(count):
                continue
            state["faults_fired"].append({"operation": operation, "kind": fault.kind,
                                          "call": count, "node": fault.node})
            where = f"site '{self.site.name}': simulated {fault.kind} on {operation} #{count}"
            if fault.kind == "transient":
                raise TransientProviderError(fault.message or f"{where} (HTTP 503)")
            if fault.kind == "quota":
                raise QuotaExceededError(fault.message or f"{where}: quota exceeded")
            if fault.kind == "permanent":
                raise ProviderError(fault.message or f"{where} (HTTP 400)")
            if fault.kind == "crash_before":
                self._crash(state)
            return fault
        return None

    def _after(self, fault: Fault | None, state: dict) -> None:
        if fault is None:
            return
        if fault.kind in ("crash", "crash_after"):
            self._crash(state)
        if fault.kind == "timeout":
            raise TransientProviderError(
                fault.message or f"site '{self.site.name}': {fault.operation} timed out")

    def _crash(self, state: dict) -> None:
        self.cloud.save(state)
        os.kill(os.getpid(), signal.SIGKILL)

    # --- resources ---------------------------------------------------------------------

    def _offer(self, state: dict) -> Offer:
        quotas = replace(self.site.quotas, used=self.cloud.usage(state))
        return Offer(flavors=tuple(self.site.flavors), images=tuple(self.site.images),
                     quotas=quotas)

    def _flavor(self, name: str | None) -> Flavor:
        flavor = next((f for f in self.site.flavors if name in (f.name, f.id)), None)
        if flavor is None:
            names = [f.name for f in self.site.flavors]
            hint = did_you_mean(name, names)
            raise ProviderError(f"site '{self.site.name}': no flavor '{name}' (known: "
                                f"{', '.join(names) or 'none'})" + (f"; {hint}" if hint else ""))
        return flavor

    def _image(self, name: str | None) -> Image:
        image = next((i for i in self.site.images if name in (i.name, i.id, *i.aliases)), None)
        if image is None:
            names = [i.name for i in self.site.images]
            hint = did_you_mean(name, names)
            raise ProviderError(f"site '{self.site.name}': no image '{name}' (known: "
                                f"{', '.join(names) or 'none'})" + (f"; {hint}" if hint else ""))
        return image

    def _check_quota(self, state: dict, usage: dict, exclude: str | None = None) -> None:
        used = self.cloud.usage(state, exclude)
        for key in QUOTA_KEYS:
            limit = getattr(self.site.quotas, key, None)
            wanted = usage.get(key, 0)
            if limit is not None and wanted and used[key] + wanted > limit:
                raise QuotaExceededError(
                    f"site '{self.site.name}': quota '{key}' exceeded: {wanted:g} requested, "
                    f"{used[key]:g} of {limit:g} in use")

    @staticmethod
    def _compute_usage(flavor: Flavor) -> tuple[dict, dict]:
        gpus = flavor.gpus
        usage = {"instances": 1, "cores": flavor.cpus, "memory_mib": flavor.memory_mib,
                 "gpus": gpus.count}
        attributes = {"flavor": flavor.name, "cpus": flavor.cpus,
                      "memory_mib": flavor.memory_mib, "disk_gib": flavor.disk_gib,
                      "gpus": {"count": gpus.count, "vendor": gpus.vendor, "model": gpus.model},
                      "infiniband": flavor.infiniband}
        return usage, attributes

    def _volume_size(self, spec: ResourceSpec) -> float:
        size = spec.properties.get("size_gib")
        if not isinstance(size, (int, float)) or isinstance(size, bool) or size <= 0:
            raise ProviderError(f"site '{self.site.name}': volume '{spec.node}' needs "
                                f"properties.size_gib > 0 (got {size!r})")
        return size

    def _new_record(self, state: dict, spec: ResourceSpec) -> dict:
        usage: dict = {}
        attributes: dict = {"name": f"{spec.deployment}-{spec.node}-{spec.index}"}
        if spec.kind == "compute":
            flavor, image = self._flavor(spec.flavor), self._image(spec.image)
            usage, more = self._compute_usage(flavor)
            attributes.update(more, image=image.name)
        elif spec.kind == "volume":
            usage = {"volumes": 1, "volume_gib": self._volume_size(spec)}
            attributes["size_gib"] = usage["volume_gib"]
        self._check_quota(state, usage)
        number = state["next_id"]
        state["next_id"] += 1
        if spec.kind == "compute":
            attributes["private_address"] = _address(10, 0, state["next_private"])
            state["next_private"] += 1
            if spec.properties.get("public_ip"):
                attributes["public_address"] = _address(198, 18, state["next_public"])
                state["next_public"] += 1
        now = _clock()
        errors = self.config.boot_errors or {}
        boot_fault = errors.get(spec.node, errors.get(None)) if spec.kind == "compute" else None
        return {"id": f"sim-{self.site.name}-{number}", "kind": spec.kind,
                "tags": dict(spec.tags), "attributes": attributes, "usage": usage,
                "created_at": now, "ready_at": now + self.config.latency["boot"],
                "boot_fault": boot_fault, "deleted_at": None}

    def _apply_update(self, state: dict, record: dict, spec: ResourceSpec) -> None:
        attributes = record["attributes"]
        if record["kind"] == "compute":
            if spec.image and self._image(spec.image).name != attributes.get("image"):
                raise ProviderError(f"site '{self.site.name}': changing the image of "
                                    f"{record['id']} needs a new server")
            if spec.flavor and spec.flavor != attributes.get("flavor"):
                usage, more = self._compute_usage(self._flavor(spec.flavor))
                self._check_quota(state, usage, exclude=record["id"])
                self.cloud.set_usage(record, usage)
                attributes.update(more)
        elif record["kind"] == "volume" and "size_gib" in spec.properties:
            size = self._volume_size(spec)
            if size < attributes["size_gib"]:
                raise ProviderError(f"site '{self.site.name}': volume {record['id']} cannot "
                                    f"shrink from {attributes['size_gib']} to {size} GiB")
            usage = {"volumes": 1, "volume_gib": size}
            self._check_quota(state, usage, exclude=record["id"])
            self.cloud.set_usage(record, usage)
            attributes["size_gib"] = size
        record["updated_at"] = _clock()


# --- helpers for tests ---------------------------------------------------------------------

def cloud_state(site: Any) -> dict:
    """A copy of the whole simulated cloud of ``site`` (resources, calls, faults fired)."""
    return SimulatedCloud.for_site(site).snapshot()


def api_calls(site: Any) -> dict[str, int]:
    """How many calls of each operation the site's cloud has answered."""
    return dict(cloud_state(site)["calls"])


def resources(site: Any, include_deleted: bool = False) -> list[dict]:
    """The resource records of the site's cloud, in creation order."""
    records = cloud_state(site)["resources"].values()
    return [r for r in records if include_deleted or r.get("deleted_at") is None]


def reset(site: Any) -> None:
    """Forget everything the site's cloud holds (and remove its state file)."""
    SimulatedCloud.for_site(site).reset()


def reset_all() -> None:
    """Forget every in-process cloud (state files are left alone)."""
    with SimulatedCloud._registry_lock:
        SimulatedCloud._registry.clear()
