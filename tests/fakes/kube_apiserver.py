"""A loopback HTTP server speaking the Kubernetes REST protocol: a PROTOCOL TEST DOUBLE
for the kubernetes provider's tests, not a Kubernetes and not support for one.

No API server can run on the test machines, so this one implements, faithfully to the
Kubernetes API conventions, what the provider uses: paths of the core, apps/v1 and
networking.k8s.io/v1 groups; get, list and watch with label selectors, create, update
(PUT with resourceVersion conflicts), delete and deletecollection; ``Status`` replies
for 401, 403 (RBAC and terminating namespaces), 404, 409 (AlreadyExists, Conflict) and
422 (Invalid, with causes); a global resourceVersion; and controllers that move state
over time: StatefulSets make pods, a scheduler places pods on nodes by requests, node
selectors and affinity (or says why not, in the PodScheduled condition and a
FailedScheduling event), pods go Pending -> Running -> Ready (or ImagePullBackOff /
CrashLoopBackOff for images told to fail), claims bind, namespaces terminate.

    with FakeKubeApiServer(nodes=[node("n1", gpus=2, gpu_product="NVIDIA-A100-SXM4-80GB")]) \
            as api:
        api.write_kubeconfig(path)
"""
from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes import kube_objects as ko
from tests.fakes.kube_objects import node

__all__ = ["FakeKubeApiServer", "node"]


class FakeKubeApiServer:
    def __init__(self, nodes: list[dict] | None = None, token: str = "fake-token",
                 user: str = "alice", pod_start_s: float = 0.05, namespace_delete_s: float = 0.1):
        self.token, self.user = token, user
        self.pod_start_s, self.namespace_delete_s = pod_start_s, namespace_delete_s
        self.lock = threading.RLock()
        self.store: dict[tuple[str, str, str], dict] = {}
        self.rv = 0
        self.history: list[tuple[int, str, str, str, dict]] = []  # rv, resource, ns, type, obj
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource)
        self.faults: list[dict] = []  # {verb, resource, status, times, after}
        self.hooks: list = []  # hook(verb, resource, obj) after every committed write
        self.image_faults: dict[str, str] = {}  # image -> ImagePullBackOff | CrashLoopBackOff
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query)
        self._server: ThreadingHTTPServer | None = None
        for item in nodes or [node(f"node-{i}") for i in range(1, 4)]:
            self._put("nodes", "", copy.deepcopy(item), "ADDED")

    # --- life -----------------------------------------------------------------------------

    def __enter__(self):
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path, token: str | None = None, context: str = "fake") -> str:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": context,
                  "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                  "users": [{"name": self.user, "user": {"token": token or self.token}}],
                  "contexts": [{"name": context, "context": {"cluster": "fake",
                                                             "user": self.user}}]}
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        return str(path)

    # --- what tests look at -----------------------------------------------------------------

    def objects(self, resource: str, namespace: str | None = None,
                selector: str | None = None) -> list[dict]:
        with self.lock:
            self._tick()
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.store.items())
                    if r == resource and (namespace is None or ns == namespace)
                    and ko.matches(o, selector)]

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_part in p)

    # --- state -----------------------------------------------------------------------------

    def _put(self, resource: str, namespace: str, obj: dict, event: str) -> dict:
        self.rv += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", ko.now())
        if namespace:
            meta["namespace"] = namespace
        self.store[(resource, namespace, meta["name"])] = obj
        self.history.append((self.rv, resource, namespace, event, copy.deepcopy(obj)))
        return obj

    def _drop(self, resource: str, namespace: str, name: str) -> dict | None:
        obj = self.store.pop((resource, namespace, name), None)
        if obj is not None:
            self.rv += 1
            self.history.append((self.rv, resource, namespace, "DELETED", copy.deepcopy(obj)))
        return obj

    def _changed(self, resource: str, namespace: str, obj: dict, before: str) -> None:
        if json.dumps(obj, sort_keys=True) != before:
            self._put(resource, namespace, obj, "MODIFIED")

    # --- controllers (run at every request) ---------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        for (resource, ns, name), obj in list(self.store.items()):
            if resource == "namespaces" and obj["status"].get("phase") == "Terminating" and \
                    now >= obj["metadata"]["fake/deleteAt"]:
                for key in [k for k in self.store if k[1] == name]:
                    self._drop(*key)
                self._drop("namespaces", "", name)
        for (resource, ns, name), obj in list(self.store.items()):
            if resource == "statefulsets":
                self._statefulset(ns, obj)
            elif resource == "persistentvolumeclaims" and obj["status"]["phase"] == "Pending":
                before = json.dumps(obj, sort_keys=True)
                obj["status"] = {"phase": "Bound", "accessModes": obj["spec"]["accessModes"],
                                 "capacity": obj["spec"]["resources"]["requests"]}
                obj["spec"]["volumeName"] = f"pvc-{obj['metadata']['uid']}"
                self._changed(resource, ns, obj, before)
        for (resource, ns, name), obj in list(self.store.items()):
            if resource == "pods":
                owner = (obj["metadata"].get("ownerReferences") or [{}])[0].get("name")
                if owner and ("statefulsets", ns, owner) not in self.store:
                    self._drop("pods", ns, name)  # garbage collection
                else:
                    self._pod(ns, obj, now)

    def _statefulset(self, ns: str, sts: dict) -> None:
        name, spec = sts["metadata"]["name"], sts["spec"]
        revision = str(sts["metadata"]["generation"])
        for ordinal in range(int(spec.get("replicas", 1))):
            pod_name = f"{name}-{ordinal}"
            pod = self.store.get(("pods", ns, pod_name))
            if pod is not None and pod["metadata"]["annotations"].get("fake/revision") != revision:
                self._drop("pods", ns, pod_name)  # the template changed: replace the pod
                pod = None
            if pod is None:
                template = copy.deepcopy(spec["template"])
                meta = template.get("metadata") or {}
                labels = {**(meta.get("labels") or {}), "statefulset.kubernetes.io/pod-name":
                          pod_name, "controller-revision-hash": f"{name}-{revision}"}
                pod = {"metadata": {"name": pod_name, "labels": labels, "annotations": {
                    **(meta.get("annotations") or {}), "fake/revision": revision},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": name, "uid": sts["metadata"]["uid"],
                                         "controller": True}]},
                    "spec": {**template["spec"], "hostname": pod_name,
                             "subdomain": spec.get("serviceName")},
                    "status": {"phase": "Pending", "conditions": []}}
                self._put("pods", ns, pod, "ADDED")
        pods = [self.store.get(("pods", ns, f"{name}-{i}")) for i in range(spec.get("replicas", 1))]
        ready = sum(1 for p in pods if p and ko.condition(p, "Ready") == "True")
        before = json.dumps(sts, sort_keys=True)
        sts["status"] = {"replicas": len([p for p in pods if p]), "readyReplicas": ready,
                         "observedGeneration": sts["metadata"]["generation"]}
        self._changed("statefulsets", ns, sts, before)

    def _pod(self, ns: str, pod: dict, now: float) -> None:
        before = json.dumps(pod, sort_keys=True)
        status, meta = pod["status"], pod["metadata"]
        if not pod["spec"].get("nodeName"):
            where, why = ko.schedule(ns, pod, self.store)
            if where is None:
                if ko.condition(pod, "PodScheduled") != "False":
                    self._event(ns, pod, "FailedScheduling", why)
                ko.set_condition(pod, "PodScheduled", "False", "Unschedulable", why)
                self._changed("pods", ns, pod, before)
                return
            pod["spec"]["nodeName"] = where["metadata"]["name"]
            status["hostIP"] = where["status"]["addresses"][0]["address"]
            ko.set_condition(pod, "PodScheduled", "True")
            meta["annotations"]["fake/scheduledAt"] = str(now)
        started = float(meta["annotations"]["fake/scheduledAt"]) + self.pod_start_s
        if now >= started and status["phase"] == "Pending":
            status["podIP"] = f"10.244.{self.rv // 250 % 250}.{self.rv % 250 + 2}"
        if now >= started:
            status["containerStatuses"] = [
                ko.container_status(c, self.image_faults.get(c["image"]),
                                    now - started >= self.pod_start_s)
                for c in pod["spec"]["containers"]]
            running = all("running" in c["state"] for c in status["containerStatuses"])
            status["phase"] = "Running" if running or status["phase"] == "Running" else "Pending"
            ko.set_condition(pod, "Ready", "True" if running else "False",
                             None if running else "ContainersNotReady")
        self._changed("pods", ns, pod, before)

    def _event(self, ns: str, pod: dict, reason: str, message: str) -> None:
        name = f"{pod['metadata']['name']}.{uuid.uuid4().hex[:12]}"
        self._put("events", ns, {"metadata": {"name": name}, "type": "Warning",
                                 "reason": reason, "message": message, "involvedObject": {
                                     "kind": "Pod", "name": pod["metadata"]["name"],
                                     "namespace": ns}, "source": {"component":
                                                                  "default-scheduler"}},
                  "ADDED")

    # --- verbs ------------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers) -> tuple[int, dict] | tuple[str, dict]:
        """(status, body) of one request, or ('watch', request) for a watch."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, parts.path, parts.query))
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, ko.status(401, "Unauthorized", "Unauthorized")
        if parts.path == "/version":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"}
        route = ko.route(parts.path)
        if route is None:
            return 404, ko.status(404, "NotFound", "the server could not find the requested "
                                  "resource")
        resource, ns, name = route
        verb = ko.verb(method, name, query)
        if verb not in ("get", "list", "watch", "create", "update", "delete",
                        "deletecollection"):
            return 405, ko.status(405, "MethodNotAllowed", f"{method} is not supported by "
                                  "this test server")
        if (verb, resource) in self.forbidden:
            return 403, ko.forbidden(self.user, verb, resource, ns, name)
        with self.lock:
            fault = next((f for f in self.faults if f.get("times", 1) > 0 and
                          f["verb"] == verb and f["resource"] == resource), None)
            if fault is not None:
                fault["times"] = fault.get("times", 1) - 1
                if not fault.get("after"):
                    return fault["status"], ko.status(fault["status"], fault.get(
                        "reason", "InternalError"), fault.get("message", "injected fault"))
            self._tick()
            if verb == "watch":
                return "watch", {"resource": resource, "ns": ns, "query": query}
            code, body = getattr(self, f"_{verb}")(resource, ns, name, query, headers)
            if fault is not None and code < 300:  # acted, then failed to answer
                return fault["status"], ko.status(fault["status"], fault.get(
                    "reason", "AlreadyExists" if fault["status"] == 409 else "InternalError"),
                    fault.get("message", "injected fault after the change"))
        if code < 300 and verb in ("create", "update", "delete", "deletecollection"):
            for hook in list(self.hooks):
                hook(verb, resource, body)
        return code, body

    def _get(self, resource, ns, name, query, headers):
        obj = self.store.get((resource, ns, name))
        if obj is None:
            return 404, ko.not_found(resource, name)
        return 200, ko.with_kind(resource, copy.deepcopy(obj))

    def _list(self, resource, ns, name, query, headers):
        items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.store.items())
                 if r == resource and (ns is None or n == ns) and
                 ko.matches(o, query.get("labelSelector"))]
        version, kind = ko.KINDS[resource][:2]
        return 200, {"kind": f"{kind}List", "apiVersion": version,
                     "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def _create(self, resource, ns, name, query, headers):
        obj = headers["body"]
        name = (obj.get("metadata") or {}).get("name", "")
        if ns is not None:
            space = self.store.get(("namespaces", "", ns))
            if space is None:
                return 404, ko.not_found("namespaces", ns)
            if space["status"]["phase"] == "Terminating":
                return 403, ko.status(403, "Forbidden", f'{ko.qualified(resource)} "{name}" is '
                                      f"forbidden: unable to create new content in namespace "
                                      f"{ns} because it is being terminated")
        causes = ko.invalid(resource, obj)
        if causes:
            return 422, ko.invalid_status(resource, name, causes)
        if (resource, ns or "", name) in self.store:
            return 409, ko.status(409, "AlreadyExists", f'{ko.qualified(resource)} "{name}" '
                                  "already exists", name=name, kind=resource)
        obj = ko.defaults(resource, obj, self.store)
        return 201, ko.with_kind(resource, copy.deepcopy(self._put(resource, ns or "", obj,
                                                                    "ADDED")))

    def _update(self, resource, ns, name, query, headers):
        obj, current = headers["body"], self.store.get((resource, ns or "", name))
        if current is None:
            return 404, ko.not_found(resource, name)
        sent = (obj.get("metadata") or {}).get("resourceVersion")
        if sent and sent != current["metadata"]["resourceVersion"]:
            return 409, ko.status(409, "Conflict", f"Operation cannot be fulfilled on "
                                  f'{ko.qualified(resource)} "{name}": the object has been '
                                  "modified; please apply your changes to the latest version "
                                  "and try again")
        causes = ko.invalid(resource, obj)
        if causes:
            return 422, ko.invalid_status(resource, name, causes)
        merged = copy.deepcopy(obj)
        merged["metadata"] = {**current["metadata"], "labels": obj["metadata"].get("labels"),
                              "annotations": obj["metadata"].get("annotations")}
        merged["status"] = current.get("status", {})
        if merged.get("spec") != current.get("spec") and "generation" in current["metadata"]:
            merged["metadata"]["generation"] = current["metadata"]["generation"] + 1
        return 200, ko.with_kind(resource, copy.deepcopy(self._put(resource, ns or "", merged,
                                                                    "MODIFIED")))

    def _delete(self, resource, ns, name, query, headers):
        obj = self.store.get((resource, ns or "", name))
        if obj is None:
            return 404, ko.not_found(resource, name)
        if resource == "namespaces":
            if obj["status"]["phase"] == "Terminating":
                return 409, ko.status(409, "Conflict", f'Operation cannot be fulfilled on '
                                      f'namespaces "{name}": The system is ensuring all '
                                      "content is removed from this namespace.  Upon "
                                      "completion, this namespace will automatically be "
                                      "purged by the system.", name=name, kind=resource)
            obj["status"]["phase"] = "Terminating"
            obj["metadata"]["deletionTimestamp"] = ko.now()
            obj["metadata"]["fake/deleteAt"] = time.monotonic() + self.namespace_delete_s
            return 200, ko.with_kind(resource, copy.deepcopy(self._put(resource, "", obj,
                                                                        "MODIFIED")))
        return 200, ko.with_kind(resource, self._drop(resource, ns or "", name))

    def _deletecollection(self, resource, ns, name, query, headers):
        code, listing = self._list(resource, ns, name, query, headers)
        for item in listing["items"]:
            self._drop(resource, ns or "", item["metadata"]["name"])
        return 200, listing

    def watch_events(self, request: dict, since: int | None):
        """New (rv, type, object) events for a watch, oldest first."""
        with self.lock:
            self._tick()
            return [(rv, kind, ko.with_kind(r, copy.deepcopy(o))) for rv, r, ns, kind, o
                    in self.history if r == request["resource"] and (since is None or rv > since)
                    and (request["ns"] is None or ns == request["ns"])
                    and ko.matches(o, request["query"].get("labelSelector"))]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client killed mid-request (the crash tests do that) is not a server error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeKubeApiServer

    def log_message(self, *args):  # quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {"Authorization": self.headers.get("Authorization"),
                   "body": json.loads(raw) if raw else {}}
        code, body = self.api.handle(method, self.path, headers)
        if code == "watch":
            return self._watch(body)
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _watch(self, request: dict) -> None:
        query = request["query"]
        since = int(query["resourceVersion"]) if query.get("resourceVersion") not in (
            None, "", "0") else None
        deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 5), 30)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if since is None:  # start with the current objects, as ADDED events
            for obj in self.api.objects(request["resource"], request["ns"],
                                        query.get("labelSelector")):
                self._chunk({"type": "ADDED", "object": ko.with_kind(request["resource"], obj)})
            since = self.api.rv
        while time.monotonic() < deadline:
            for rv, kind, obj in self.api.watch_events(request, since):
                self._chunk({"type": kind, "object": obj})
                since = rv
            time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PATCH(self):
        self._serve("PATCH")

