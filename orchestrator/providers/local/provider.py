"""The ``local`` provider: every node is a container on this machine (podman or docker).

A compute node is a container running sshd, reachable on a port published on
127.0.0.1; a volume is a named volume mounted at ``/mnt/<volume>``; every deployment
gets its own network, removed with its last container. Everything carries the
``orchestrator-*`` labels, so ``find`` and a retried ``create`` see what exists.
Options (sites.yaml ``options:``) are listed in docs/sites.md, "The local provider".
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    DELETED,
    TAG_DEPLOYMENT,
    TAG_KIND,
    CheckResult,
    Flavor,
    GpuOffer,
    Image,
    NotFoundError,
    Offer,
    Provider,
    ProviderError,
    Resource,
    ResourceSpec,
    TransientProviderError,
    site_options,
)
from orchestrator.providers.local import node as nodes
from orchestrator.providers.local.image import DEFAULT_IMAGE, can_build, ensure_image
from orchestrator.providers.local.runtime import DEFAULT_ULIMITS, Runtime, tail

OPTIONS = ("engine", "runtime", "ulimits", "image", "image_name", "ca_bundle",
           "share_ca_bundle", "resource_limits", "mirror", "timeout", "ssh_options")
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
_LIMIT_ERRORS = ("cgroup", "cpu", "memory", "controller", "not supported")
_HEX = re.compile(r"^[0-9a-f]{12,64}$")


class LocalProvider(Provider):
    """Provider of ``provider: local`` sites: containers on this machine."""

    type_name = "local"

    def __init__(self, site: Any):
        super().__init__(site)
        options = site_options(site, OPTIONS, "local")
        self.options = options
        self.runtime = Runtime(options.get("engine"), options.get("runtime", "auto"),
                               tuple(options.get("ulimits") or DEFAULT_ULIMITS),
                               float(options.get("timeout", 300)))
        self.image_name = str(options.get("image_name") or DEFAULT_IMAGE)
        self._lock = threading.Lock()
        self._image_ready: set[str] = set()
        self._limits_ok: bool | None = None if options.get("resource_limits", True) else False
        self._addresses: dict[str, dict] = {}  # container id -> attributes from inspect
        self._offer: Offer | None = None

    # --- what the site offers --------------------------------------------------------------

    def offer(self) -> Offer:
        if self._offer is None:
            self._offer = Offer(flavors=self._flavors(), images=self._images(),
                                quotas=self.site.quotas)
        return self._offer

    def _flavors(self) -> tuple[Flavor, ...]:
        cpus, memory = os.cpu_count() or 1, _host_memory_mib()
        found: dict[str, Flavor] = {}
        size = 1
        while size < cpus:
            found[f"local-{size}"] = Flavor(f"local-{size}", size, min(2048 * size, memory))
            size *= 2
        found["local"] = Flavor("local", cpus, memory)
        count, model = host_gpus()
        if count:
            found["local-gpu"] = Flavor("local-gpu", cpus, memory,
                                        gpus=GpuOffer(count, "NVIDIA", model))
        for flavor in self.site.flavors:  # sites.yaml may add or override
            found[flavor.name] = flavor
        return tuple(found.values())

    def _images(self) -> tuple[Image, ...]:
        images = {"debian-12": Image("debian-12", id=self.image_name, distribution="debian",
                                     version="12", aliases=("bookworm", "debian",
                                                            self.image_name))}
        for image in self.site.images:
            images[image.name] = image
        return tuple(images.values())

    def check(self) -> CheckResult:
        name = self.site.name
        if not self.runtime.available:
            return CheckResult(name, False, False, f"{self.runtime.engine} is not installed")
        try:
            self.runtime.run(["info", "--format", "{{.Host.OCIRuntime.Name}}"
                              if self.runtime.is_podman else "{{.ServerVersion}}"], timeout=60)
        except ProviderError as exc:
            return CheckResult(name, False, False, f"{self.runtime.engine} does not work: {exc}")
        if self.runtime.exists("image", self.image_name):
            image = f"image {self.image_name} present"
        else:
            why = can_build()
            image = (f"image {self.image_name} missing, built on first use (debootstrap)"
                     if why is None and not self.options.get("image") else
                     f"image {self.image_name} missing, pulled from {self.options['image']} "
                     "on first use" if self.options.get("image") else
                     f"image {self.image_name} missing and not buildable: {why}")
        offer = self.offer()
        return CheckResult(name, True, True, f"{self.runtime.engine} works; {image}; flavors: "
                           + ", ".join(f.name for f in offer.flavors), offer=offer)

    def estimate(self, kind: str, action: str) -> float:
        return {"compute": 5.0, "volume": 1.0, "network": 1.0, "port": 0.0}.get(kind, 1.0)

    # --- create ----------------------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        if spec.kind == "compute":
            return self._create_container(spec)
        if spec.kind == "volume":
            return self._ensure_volume(spec.deployment, spec.node, spec.index)
        if spec.kind == "network":
            network = self._ensure_network(spec.deployment)
            return Resource(f"net:{network}", "network", ACTIVE, dict(spec.tags),
                            {"network": network})
        if spec.kind == "port":
            return Resource(f"port:{spec.deployment}/{spec.node}/{spec.index}", "port", ACTIVE,
                            dict(spec.tags), {"note": "ports are published with the container"})
        raise ProviderError(f"the local provider cannot create a {spec.kind!r}")

    def _create_container(self, spec: ResourceSpec) -> Resource:
        existing = self._containers(spec.tags)
        if existing:
            entry = existing[0]
            if nodes.container_state(entry) in ("created", "configured", "initialized"):
                self.runtime.run(["start", entry["Id"]])
            return self._resources([entry["Id"]])[entry["Id"]]
        image = self._image_for(spec.image)
        network = self._ensure_network(spec.deployment)
        for volume in (spec.properties or {}).get("volumes") or ():
            self._ensure_volume(spec.deployment, volume, spec.index)
        flavor = self.site.flavor(spec.flavor) if spec.flavor else None
        flavor = flavor or next((f for f in self.offer().flavors if f.name == spec.flavor), None)
        gpus = bool(flavor and flavor.gpus.count and host_gpus()[0])
        name = nodes.container_name(spec.deployment, spec.node, spec.index)

        def args(limits: bool) -> list[str]:
            return nodes.run_args(spec, image, network, flavor, self.runtime.ulimits,
                                  self._ca_bundle(), gpus, limits)

        try:
            done = self.runtime.run(args(self._limits_ok is not False))
        except ProviderError as exc:
            text = str(exc).lower()
            if "already in use" in text:  # a concurrent or earlier create made it
                found = self._containers(spec.tags)
                if found:
                    return self._resources([found[0]["Id"]])[found[0]["Id"]]
                raise ProviderError(f"a container named {name} exists that this deployment "
                                    "did not make (remove it, or rename the node)") from None
            if "network" in text and ("not found" in text or "no such" in text):
                # the deployment's last container was deleted meanwhile, and its network
                self.runtime.run(["rm", "-f", name], check=False)
                network = self._ensure_network(spec.deployment)
                done = self.runtime.run(args(self._limits_ok is not False))
            elif self._limits_ok is not False and flavor is not None and \
                    any(word in text for word in _LIMIT_ERRORS):
                self._limits_ok = False  # cgroups refuse limits here: run without them
                self.runtime.run(["rm", "-f", name], check=False)
                done = self.runtime.run(args(False))
            else:
                self.runtime.run(["rm", "-f", name], check=False)
                raise
        else:
            if flavor is not None and self._limits_ok is None:
                self._limits_ok = True
        container = done.stdout.decode().strip().splitlines()[-1]
        return self._resources([container])[container]

    def _image_for(self, requested: str | None) -> str:
        image = next((i for i in self.offer().images if requested in (i.name, *i.aliases)),
                     None) if requested else None
        ref = (image.id if image and image.id else None) or self.image_name
        if ref in self._image_ready:
            return ref
        if ref == self.image_name:
            ensure_image(ref, runtime=self.runtime, pull=self.options.get("image"),
                         mirror=self.options.get("mirror"))
        elif not self.runtime.exists("image", ref):
            done = self.runtime.run(["pull", "-q", ref], check=False, timeout=900)
            if done.returncode != 0:
                raise ProviderError(f"image {ref} is not on this machine and cannot be pulled: "
                                    f"{tail(done.stderr, 2)}")
        self._image_ready.add(ref)
        return ref

    def _ca_bundle(self) -> str | None:
        path = self.options.get("ca_bundle")
        if not path and self.options.get("share_ca_bundle", True):
            path = HOST_CA
        path = os.path.expanduser(str(path)) if path else None
        return path if path and os.path.isfile(path) else None

    def _ensure_network(self, deployment: str) -> str:
        name = nodes.network_name(deployment)
        with self._lock:
            if not self.runtime.exists("network", name):
                done = self.runtime.run(["network", "create", "--label",
                                         f"{TAG_DEPLOYMENT}={deployment}", name], check=False)
                if done.returncode != 0 and "exists" not in tail(done.stderr).lower():
                    raise ProviderError(f"cannot create network {name}: {tail(done.stderr)}")
        return name

    def _ensure_volume(self, deployment: str, node: str, index: int) -> Resource:
        name = nodes.volume_name(deployment, node, index)
        tags = ResourceSpec("volume", deployment, node, index).tags
        if not self.runtime.exists("volume", name):
            done = self.runtime.run(["volume", "create", *nodes.label_args(tags), name],
                                    check=False)
            if done.returncode != 0 and "exists" not in tail(done.stderr).lower():
                raise ProviderError(f"cannot create volume {name}: {tail(done.stderr)}")
        return Resource(name, "volume", ACTIVE, tags, {"volume_name": name})

    # --- read ------------------------------------------------------------------------------

    def _containers(self, tags: dict) -> list[dict]:
        args = ["ps", "-a", "--format", "json"] if self.runtime.is_podman else \
            ["ps", "-a", "--no-trunc", "--format", "{{json .}}"]
        for key, value in tags.items():
            args += ["--filter", f"label={key}={value}"]
        entries = self.runtime.records(args)
        for entry in entries:  # docker says "ID"
            entry.setdefault("Id", entry.get("ID"))
        return entries

    def _inspect(self, ids: list[str]) -> dict[str, dict]:
        """Private addresses of containers, cached (they keep them while they live)."""
        missing = [i for i in ids if i not in self._addresses]
        if missing:
            done = self.runtime.run(["container", "inspect", *missing], check=False)
            try:
                data = json.loads(done.stdout or b"[]")
            except ValueError:
                data = []
            for item in data:
                networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
                address = next((n.get("IPAddress") for n in networks.values()
                                if n.get("IPAddress")), None)
                if address:  # only a started container has one
                    self._addresses[item["Id"]] = {"private_address": address,
                                                   "network": next(iter(networks), None)}
        return {i: self._addresses.get(i, {}) for i in ids}

    def _resources(self, ids: list[str], entries: list[dict] | None = None
                   ) -> dict[str, Resource]:
        if entries is None:
            entries = self._containers({TAG_KIND: "compute"})
        by_id = {e.get("Id") or e.get("ID"): e for e in entries}
        wanted = {i: next((e for k, e in by_id.items() if k and k.startswith(i)), None)
                  for i in ids}
        extra = self._inspect([e["Id"] for e in wanted.values()
                               if e and nodes.container_state(e) == "running"])
        result = {}
        for provider_id, entry in wanted.items():
            if entry is None:
                result[provider_id] = Resource(provider_id, "compute", DELETED)
                continue
            up = nodes.container_state(entry) == "running" and \
                nodes.sshd_answers(nodes.ssh_port(nodes.port_map(entry)))
            resource = nodes.compute_resource(entry, extra.get(entry["Id"]), up,
                                              self.options.get("ssh_options"))
            if resource.fault:
                logs = self.runtime.run(["logs", "--tail", "5", entry["Id"]], check=False)
                resource = Resource(provider_id, "compute", resource.status, resource.tags,
                                    resource.attributes, resource.fault + ": " +
                                    tail((logs.stdout or b"") + (logs.stderr or b""), 5))
            result[provider_id] = resource
        return result

    def _volumes(self, tags: dict) -> list[Resource]:
        args = ["volume", "ls", "--format", "json" if self.runtime.is_podman else "{{json .}}"]
        for key, value in tags.items():
            args += ["--filter", f"label={key}={value}"]
        return [Resource(v["Name"], "volume", ACTIVE, nodes.labels_of(v),
                         {"volume_name": v["Name"]}) for v in self.runtime.records(args)]

    def find(self, deployment: str) -> list[Resource]:
        entries = self._containers({TAG_DEPLOYMENT: deployment})
        found = list(self._resources([e["Id"] for e in entries], entries).values())
        found += self._volumes({TAG_DEPLOYMENT: deployment})
        return found

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        containers = [i for i in provider_ids if _HEX.match(i)]
        volumes = [i for i in provider_ids if i not in containers and ":" not in i]
        result = self._resources(containers) if containers else {}
        if volumes:
            live = {v.provider_id: v for v in self._volumes({TAG_KIND: "volume"})}
            result.update({i: live.get(i) or Resource(i, "volume", DELETED) for i in volumes})
        for other in provider_ids:
            if other not in result:  # net:... and port:... records
                kind = "network" if other.startswith("net:") else "port"
                result[other] = Resource(other, kind, ACTIVE)
        return result

    # --- update and delete -----------------------------------------------------------------

    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        current = self.poll([provider_id])[provider_id]
        if current.status == DELETED:
            raise NotFoundError(f"{provider_id} does not exist")
        if spec.kind != "compute":
            return current  # local volumes have no size to grow
        flavor = self.site.flavor(spec.flavor) if spec.flavor else None
        flavor = flavor or next((f for f in self.offer().flavors if f.name == spec.flavor), None)
        if flavor is None:
            return current
        if flavor.gpus.count:
            raise ProviderError(f"{provider_id}: GPUs cannot be added in place; replace it")
        done = self.runtime.run(["update", "--cpus", f"{float(flavor.cpus):g}", "--memory",
                                 f"{int(flavor.memory_mib)}m", provider_id], check=False)
        if done.returncode != 0:
            raise ProviderError(f"{provider_id} cannot be resized in place ("
                                f"{tail(done.stderr, 2)}); a replace is needed")
        return self.poll([provider_id])[provider_id]

    def start(self, provider_id: str) -> Resource:
        return self._power("start", provider_id)

    def stop(self, provider_id: str) -> Resource:
        return self._power("stop", provider_id)

    def _power(self, action: str, provider_id: str) -> Resource:
        if not _HEX.match(provider_id):
            raise ProviderError(f"{provider_id} is not a server: only servers {action}")
        args = [action, "-t", "10", provider_id] if action == "stop" else [action, provider_id]
        done = self.runtime.run(args, check=False)
        if done.returncode != 0:
            raise ProviderError(f"cannot {action} {provider_id}: {tail(done.stderr, 2)}")
        return self.poll([provider_id])[provider_id]

    def delete(self, provider_id: str) -> None:
        if provider_id.startswith("port:"):
            return
        if provider_id.startswith("net:"):
            deployment = self._network_deployment(provider_id[4:])
            if deployment:
                self._remove_network_if_unused(deployment)
            return
        if not _HEX.match(provider_id):
            done = self.runtime.run(["volume", "rm", provider_id], check=False)
            err = tail(done.stderr).lower()
            if done.returncode != 0 and "no such" not in err and "no volume" not in err:
                kind = TransientProviderError if "in use" in err else ProviderError
                raise kind(f"cannot delete volume {provider_id}: {tail(done.stderr)}")
            return
        done = self.runtime.run(["container", "inspect", "--format",
                                 f'{{{{index .Config.Labels "{TAG_DEPLOYMENT}"}}}}',
                                 provider_id], check=False)
        if done.returncode != 0:
            return  # gone already
        deployment = done.stdout.decode().strip()
        self.runtime.run(["rm", "-f", "-t", "0", provider_id] if self.runtime.is_podman
                         else ["rm", "-f", provider_id])
        self._addresses.pop(provider_id, None)
        if deployment:
            self._remove_network_if_unused(deployment)

    def _network_deployment(self, network: str) -> str | None:
        done = self.runtime.run(["network", "inspect", "--format",
                                 f'{{{{index .Labels "{TAG_DEPLOYMENT}"}}}}', network],
                                check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    def release(self, deployment: str) -> None:
        self._remove_network_if_unused(deployment)

    def _remove_network_if_unused(self, deployment: str) -> None:
        if self._containers({TAG_DEPLOYMENT: deployment}):
            return
        name = nodes.network_name(deployment)
        with self._lock:
            done = self.runtime.run(["network", "rm", name], check=False)
        err = tail(done.stderr).lower()
        if done.returncode != 0 and not any(w in err for w in ("no such", "not found",
                                                                "unable to find")):
            if "in use" in err or "containers" in err:
                return  # a container of the deployment appeared meanwhile
            raise ProviderError(f"cannot remove network {name}: {tail(done.stderr)}")

    # --- volumes ---------------------------------------------------------------------------

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        done = self.runtime.run(["container", "inspect", "--format",
                                 "{{range .Mounts}}{{.Name}}={{.Destination}}\n{{end}}",
                                 server_id], check=False)
        if done.returncode != 0:
            raise NotFoundError(f"container {server_id} does not exist")
        mounts = dict(line.split("=", 1) for line in done.stdout.decode().splitlines()
                      if "=" in line)
        if volume_id not in mounts:
            raise ProviderError(f"volume {volume_id} is not mounted in container {server_id}: "
                                "local volumes are mounted when the container is created "
                                "(list the volume in the compute node's requirements)")
        return Resource(f"{server_id}/{volume_id}", "attachment", ACTIVE,
                        attributes={"location": mounts[volume_id], "device": device})

    def detach(self, attachment_id: str) -> None:
        """Nothing to do: the mount goes with the container."""


def _host_memory_mib() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return float(int(line.split()[1]) // 1024)
    except OSError:
        pass
    return 2048.0


_gpus: tuple[int, str | None] | None = None


def host_gpus() -> tuple[int, str | None]:
    """(count, model) of the host's NVIDIA GPUs from ``nvidia-smi -L``; (0, None) if none."""
    global _gpus
    if _gpus is None:
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=20, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        _gpus = parse_gpus(out)
    return _gpus


def parse_gpus(listing: str) -> tuple[int, str | None]:
    """(count, model of the first) from ``nvidia-smi -L`` output."""
    models = [m.group(1).strip() for m in re.finditer(r"^GPU \d+: (.+?)(?: \(UUID.*)?$",
                                                      listing, re.MULTILINE)]
    models = [re.sub(r"^NVIDIA\s+", "", m) for m in models]
    return len(models), models[0] if models else None
