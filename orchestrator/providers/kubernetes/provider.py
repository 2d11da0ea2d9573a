"""The ``kubernetes`` provider: compute instances as single-replica StatefulSets.

Why one StatefulSet per instance and not one per node with ``replicas``: the engine
creates and deletes instances one (node, index) at a time, and scale-in removes the
indexes a ``removal_list`` names, not the highest ordinal. A StatefulSet per instance
keeps every create and delete idempotent on its own (the name is the tag lookup; no
read-modify-write of a shared replica count racing with other steps), and a killed
run resumes by finding exactly the instances it made. Stable names come from the
instance's headless Service. See docs/kubernetes.md for the mapping and the options.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    CheckResult,
    Flavor,
    NotFoundError,
    Offer,
    Provider,
    ProviderError,
    Resource,
    ResourceSpec,
    TransientProviderError,
    site_options,
)
from orchestrator.providers.kubernetes import cluster
from orchestrator.providers.kubernetes import manifests as mf
from orchestrator.providers.kubernetes.client import KubeApi
from orchestrator.providers.kubernetes.status import pod_attributes, pod_status, service_endpoints

OPTIONS = ("service_type", "public_service_type", "ingress_domain", "ingress_class",
           "rdma_resource", "rdma_count", "cvmfs_storage_class", "storage_class",
           "gpu_resource", "gpu_product_label", "gpu_products", "image", "image_pull_policy",
           "keep_alive_command", "unschedulable_grace_s", "timeout", "list_nodes")
DEFAULT_IMAGE = "docker.io/library/debian:bookworm"
MANAGED = "app.kubernetes.io/managed-by=tosca-orchestrator"
#: objects of an instance besides its StatefulSet, removed with it (by label selector)
COMPANIONS = ("secrets", "persistentvolumeclaims", "ingresses")


class KubernetesProvider(Provider):
    """Provider of ``provider: kubernetes`` sites."""

    type_name = "kubernetes"
    reached_over_ssh = False  # pods run no sshd: software comes as container images

    def __init__(self, site: Any):
        super().__init__(site)
        options = site_options(site, OPTIONS, "kubernetes")
        self.options = options
        self.settings = cluster.settings_from(site, options)
        self.grace_s = float(options.get("unschedulable_grace_s", 0) or 0)
        self.api = KubeApi(site.name, getattr(site, "credentials", None),
                           float(options.get("timeout", 30)))
        self._offer: Offer | None = None
        self._node_flavors: dict[str, Flavor] = {}

    # --- what the site offers -------------------------------------------------------------

    def offer(self) -> Offer:
        if self._offer is None:
            nodes: list[dict] = []
            if self.options.get("list_nodes", True):
                nodes = cluster.list_nodes(self.api)
            self._node_flavors = cluster.node_flavors(nodes, self.settings)
            flavors = {**self._node_flavors, **{f.name: f for f in self.site.flavors}}
            if not flavors:
                flavors = {"pod": cluster.pod_flavor(self.site.quotas)}
            self._offer = Offer(flavors=tuple(flavors.values()), images=tuple(self.site.images),
                                quotas=self.site.quotas)
        return self._offer

    def check(self) -> CheckResult:
        name = self.site.name
        try:
            version = self.api.version()
            offer = self.offer()
        except TransientProviderError as exc:
            return CheckResult(name, False, False, str(exc))
        except ProviderError as exc:  # it answered: refused credentials, a bad kubeconfig
            return CheckResult(name, "cannot load" not in str(exc), "401" not in str(exc)
                               and "cannot load" not in str(exc), str(exc))
        return CheckResult(name, True, True, f"Kubernetes {version.get('gitVersion', '?')} at "
                           f"{self.api.host} ({self.api.describe()}); flavors: "
                           + ", ".join(f.name for f in offer.flavors), offer=offer)

    def estimate(self, kind: str, action: str) -> float:
        return {"compute": 30.0, "volume": 5.0, "network": 2.0, "port": 0.0}.get(kind, 1.0)

    # --- create -----------------------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        if spec.kind == "port":
            return Resource(f"port:{spec.deployment}/{spec.node}/{spec.index}", "port", ACTIVE,
                            dict(spec.tags), {"note": "ports are Services of their server"})
        namespace = self._ensure_namespace(spec.deployment)
        if spec.kind == "network":
            return Resource(f"namespace:{namespace}", "network", ACTIVE, dict(spec.tags),
                            {"namespace": namespace})
        name = mf.instance_name(spec.deployment, spec.node, spec.index, self.settings)
        if spec.kind == "volume":
            claim = mf.volume_claim_manifest(spec, namespace, name, self.settings)
            made = self._create_owned("persistentvolumeclaims", namespace, claim)
            return cluster.volume_resource(made, namespace)
        if spec.kind != "compute":
            raise ProviderError(f"the kubernetes provider cannot create a {spec.kind!r}")
        existing = self.api.get("statefulsets", namespace, name)
        if existing is not None:
            self._check_owned(existing, spec.tags, "StatefulSet", namespace)
        else:
            container = cluster.container_for(spec, self._flavor(spec.flavor), self.site,
                                              self.settings, self.options, self._nodes())
            for manifest in mf.compute_manifests(spec, namespace, container, self.settings):
                resource = cluster.RESOURCE_OF_KIND[manifest["kind"]]
                self._create_owned(resource, namespace, manifest)
        return Resource(cluster.compute_id(namespace, name), "compute", BUILDING,
                        dict(spec.tags), pod_attributes(None, namespace, name))

    def _nodes(self) -> dict[str, Flavor]:
        """Flavors of the cluster's node shapes (their GPU products name node labels)."""
        self.offer()
        return self._node_flavors

    def _flavor(self, name: str | None) -> Flavor | None:
        if not name:
            return None
        return self.site.flavor(name) or next(
            (f for f in self.offer().flavors if f.name == name), None)

    def _ensure_namespace(self, deployment: str) -> str:
        namespace = mf.namespace_name(deployment, self.settings)
        if self.settings.shared_namespace:
            return namespace
        found = self.api.get("namespaces", None, namespace)
        if found is None:
            found = self.api.create("namespaces", None,
                                    mf.namespace_manifest(namespace, deployment))
            if found is None:  # made meanwhile by a concurrent step
                found = self.api.get("namespaces", None, namespace) or {}
        if (found.get("status") or {}).get("phase") == "Terminating":
            raise TransientProviderError(f"site '{self.site.name}': namespace {namespace} is "
                                         "still being deleted; retrying")
        owner = mf.tags_of(found).get("orchestrator-deployment")
        if found and owner != deployment:
            raise ProviderError(f"site '{self.site.name}': namespace {namespace} exists and "
                                f"does not belong to deployment {deployment}")
        return namespace

    def _create_owned(self, resource: str, namespace: str, manifest: dict) -> dict:
        """Create an object; when one of that name exists (409), it must be ours."""
        made = self.api.create(resource, namespace, manifest)
        if made is not None:
            return made
        name = manifest["metadata"]["name"]
        found = self.api.get(resource, namespace, name)
        if found is None:  # deleted between the two calls: try once more
            return self.api.create(resource, namespace, manifest) or manifest
        tags = mf.tags_of(manifest)
        self._check_owned(found, tags, manifest["kind"], namespace)
        return found

    def _check_owned(self, found: dict, tags: dict, kind: str, namespace: str) -> None:
        if mf.tags_of(found) != tags:
            name = (found.get("metadata") or {}).get("name")
            raise ProviderError(f"site '{self.site.name}': a {kind} named {name} exists in "
                                f"namespace {namespace} that this deployment did not make")

    # --- read -------------------------------------------------------------------------------

    def poll(self, provider_ids: list[str]) -> dict[str, Resource]:
        result: dict[str, Resource] = {}
        computes: dict[str, list[str]] = {}
        volumes: dict[str, list[str]] = {}
        for provider_id in provider_ids:
            kind, namespace, name = cluster.parse_id(provider_id)
            if kind == "statefulset":
                computes.setdefault(namespace, []).append(provider_id)
            elif kind == "pvc":
                volumes.setdefault(namespace, []).append(provider_id)
            elif kind == "namespace":
                result[provider_id] = Resource(provider_id, "network", ACTIVE,
                                               attributes={"namespace": namespace})
            else:
                result[provider_id] = Resource(provider_id, "port", ACTIVE)
        for namespace, ids in computes.items():
            result.update(self._poll_computes(namespace, ids))
        for namespace, ids in volumes.items():
            claims = {c["metadata"]["name"]: c for c in
                      self.api.list("persistentvolumeclaims", namespace, MANAGED)}
            for provider_id in ids:
                claim = claims.get(cluster.parse_id(provider_id)[2])
                result[provider_id] = cluster.volume_resource(claim, namespace) if claim \
                    else Resource(provider_id, "volume", DELETED)
        return result

    def _poll_computes(self, namespace: str, ids: list[str],
                       statefulsets: list[dict] | None = None) -> dict[str, Resource]:
        """One pod list for the namespace; StatefulSets and Services are listed only when
        a pod is missing or an active instance exposes ports."""
        pods = {p["metadata"]["name"]: p for p in
                self.api.list("pods", namespace, f"{MANAGED},orchestrator/kind=compute")}
        names = {i: cluster.parse_id(i)[2] for i in ids}
        if statefulsets is None and any(f"{n}-0" not in pods for n in names.values()):
            statefulsets = self.api.list("statefulsets", namespace, MANAGED)
        existing = None if statefulsets is None else \
            {s["metadata"]["name"]: s for s in statefulsets
             if not s["metadata"].get("deletionTimestamp")}
        now = datetime.now(timezone.utc)
        states = {}
        for provider_id, name in names.items():
            pod = pods.get(f"{name}-0")
            if pod is None and existing is not None and name not in existing:
                states[provider_id] = Resource(provider_id, "compute", DELETED)
                continue
            status, fault = pod_status(pod, now, self.grace_s)
            tags = mf.tags_of(pod or (existing or {}).get(name) or {})
            states[provider_id] = Resource(provider_id, "compute", status, tags,
                                           pod_attributes(pod, namespace, name), fault)
        exposed = [r for r in states.values() if r.status == ACTIVE and
                   cluster.exposes_ports(pods.get(r.attributes.get("pod_name", "")))]
        if exposed:
            services = {s["metadata"]["name"]: s for s in
                        self.api.list("services", namespace, MANAGED)}
            for resource in exposed:
                endpoints, public = service_endpoints(
                    services.get(f"{resource.attributes['statefulset']}-ports"),
                    resource.attributes.get("host_ip"))
                resource.attributes["endpoints"] = endpoints
                if public:
                    resource.attributes["public_address"] = public
        return states

    def find(self, deployment: str) -> list[Resource]:
        namespace = mf.namespace_name(deployment, self.settings)
        chosen = mf.selector({"orchestrator-deployment": deployment})
        statefulsets = self.api.list("statefulsets", namespace, chosen)
        ids = [cluster.compute_id(namespace, s["metadata"]["name"]) for s in statefulsets
               if not s["metadata"].get("deletionTimestamp")]
        found = list(self._poll_computes(namespace, ids, statefulsets).values()) if ids else []
        claims = self.api.list("persistentvolumeclaims", namespace,
                               f"{chosen},orchestrator/kind=volume")
        return found + [cluster.volume_resource(c, namespace) for c in claims]

    # --- update, delete ----------------------------------------------------------------------

    def update(self, provider_id: str, spec: ResourceSpec) -> Resource:
        kind, namespace, name = cluster.parse_id(provider_id)
        if kind == "pvc":
            claim = self.api.get("persistentvolumeclaims", namespace, name)
            if claim is None:
                raise NotFoundError(f"volume {provider_id} does not exist")
            wanted = (spec.properties or {}).get("size_gib")
            changed = cluster.grown_claim(claim, wanted, provider_id)
            if changed is not None:
                claim = self.api.replace("persistentvolumeclaims", namespace, changed)
            return cluster.volume_resource(claim, namespace)
        if kind != "statefulset":
            return self.poll([provider_id])[provider_id]
        current = self.api.get("statefulsets", namespace, name)
        if current is None:
            raise NotFoundError(f"{provider_id} does not exist")
        container = cluster.container_for(spec, self._flavor(spec.flavor), self.site,
                                          self.settings, self.options, self._nodes())
        self.api.replace("statefulsets", namespace,
                         cluster.with_resources(current, container, self.settings))
        return self.poll([provider_id])[provider_id]

    def delete(self, provider_id: str) -> None:
        kind, namespace, name = cluster.parse_id(provider_id)
        if kind == "port":
            return
        if kind == "statefulset":
            chosen = f"{MANAGED},orchestrator/instance={name}"
            self.api.delete_collection("statefulsets", namespace, chosen)
            for service in self.api.list("services", namespace, chosen):
                self.api.delete("services", namespace, service["metadata"]["name"])
            for resource in COMPANIONS:
                self.api.delete_collection(resource, namespace, chosen)
        elif kind == "pvc":
            self.api.delete("persistentvolumeclaims", namespace, name)
        self._remove_namespace_if_unused(namespace)

    def _remove_namespace_if_unused(self, namespace: str) -> None:
        if self.settings.shared_namespace:
            return
        for resource in ("statefulsets", "persistentvolumeclaims"):
            left = [o for o in self.api.list(resource, namespace, MANAGED)
                    if not o["metadata"].get("deletionTimestamp")]
            if left:
                return
        self.api.delete("namespaces", None, namespace)

    # --- volumes ------------------------------------------------------------------------------

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> Resource:
        _, namespace, name = cluster.parse_id(server_id)
        _, _, claim_name = cluster.parse_id(volume_id)
        statefulset = self.api.get("statefulsets", namespace, name)
        claim = self.api.get("persistentvolumeclaims", namespace, claim_name)
        if statefulset is None or claim is None:
            missing = server_id if statefulset is None else volume_id
            raise NotFoundError(f"site '{self.site.name}': {missing} does not exist")
        mounts = cluster.mounted_claims(statefulset)
        if claim_name not in mounts:
            volume_node = mf.tags_of(claim).get("orchestrator-node", claim_name)
            location = f"/mnt/{mf.dns_label(volume_node)}"
            self.api.replace("statefulsets", namespace,
                             cluster.with_volume(statefulset, claim_name, location))
            mounts[claim_name] = location
        return Resource(f"{server_id}/{volume_id}", "attachment", ACTIVE,
                        attributes={"location": mounts[claim_name], "device": device})

    def detach(self, attachment_id: str) -> None:
        server_id, _, volume_id = attachment_id.partition("/")
        _, namespace, name = cluster.parse_id(server_id)
        claim_name = cluster.parse_id(volume_id)[2]
        statefulset = self.api.get("statefulsets", namespace, name)
        if statefulset is None or claim_name not in cluster.mounted_claims(statefulset):
            return
        self.api.replace("statefulsets", namespace, cluster.without_volume(statefulset, claim_name))

    def close(self) -> None:
        self.api.close()

