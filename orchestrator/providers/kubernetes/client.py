"""The provider's one door to the API server: REST calls through the kubernetes client's
ApiClient (its kubeconfig / in-cluster configuration, authentication and TLS), with
plain dicts in and out, and every failure translated into a ProviderError here.

The kubernetes package is imported on first use only.
"""
from __future__ import annotations

import json
import os
import threading
from urllib.parse import quote

from orchestrator.providers.base import ProviderError, TransientProviderError
from orchestrator.providers.kubernetes.status import api_error

#: where each resource lives: the API group/version prefix of its path
PREFIXES = {"namespaces": "/api/v1", "nodes": "/api/v1", "pods": "/api/v1",
            "services": "/api/v1", "secrets": "/api/v1", "persistentvolumeclaims": "/api/v1",
            "events": "/api/v1", "statefulsets": "/apis/apps/v1",
            "ingresses": "/apis/networking.k8s.io/v1"}
CLUSTER_SCOPED = ("namespaces", "nodes")


def path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    prefix = PREFIXES[resource]
    where = "" if resource in CLUSTER_SCOPED or namespace is None else \
        f"/namespaces/{quote(namespace, safe='')}"
    return f"{prefix}{where}/{resource}" + (f"/{quote(name, safe='')}" if name else "")


class KubeApi:
    """REST calls against one cluster, configured from the site's credentials."""

    def __init__(self, site: str, credentials: dict | None, timeout: float = 30.0):
        self.site = site
        self.credentials = dict(credentials or {})
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()
        self.calls = 0

    def describe(self) -> str:
        creds = self.credentials
        if creds.get("kubeconfig") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            where = creds.get("kubeconfig") or os.environ.get("KUBECONFIG") or "~/.kube/config"
            return f"kubeconfig {where}" + (f", context {creds['context']}"
                                            if creds.get("context") else "")
        return "in-cluster service account"

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        try:
            from kubernetes import client as k8s_client
            from kubernetes import config as k8s_config
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise ProviderError("the kubernetes provider needs the kubernetes package: "
                                "pip install 'tosca-orchestrator[kubernetes]'") from exc
        creds = self.credentials
        configuration = k8s_client.Configuration()
        try:
            if creds.get("kubeconfig") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_kube_config(
                    config_file=os.path.expanduser(creds["kubeconfig"])
                    if creds.get("kubeconfig") else None,
                    context=creds.get("context"), client_configuration=configuration,
                    persist_config=False)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
        except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise ProviderError(f"site '{self.site}': cannot load the Kubernetes "
                                f"configuration ({self.describe()}): {exc}") from exc
        configuration.retries = 1
        return k8s_client.ApiClient(configuration=configuration)

    @property
    def host(self) -> str:
        return str(self.client().configuration.host)

    def request(self, method: str, url: str, action: str, body: dict | None = None,
                query: dict | None = None, allow: tuple[int, ...] = ()) -> dict | None:
        """``METHOD url`` with a JSON body; the decoded reply, or None when the reply's
        status is in ``allow`` (404 on a read or delete, 409 on a create...)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        api = self.client()
        self.calls += 1
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            code, reason, data = self._send(api, method, url, headers, body, params)
        except ApiException as exc:  # older clients raise for every non-2xx reply
            code, reason, data = exc.status, exc.reason, exc.body
            if not code:  # the REST layer's own failure (TLS, no reply)
                raise api_error(self.site, action, code, reason, data) from None
        except (HTTPError, OSError) as exc:
            raise TransientProviderError(f"site '{self.site}': {action}: the API server "
                                         f"at {api.configuration.host} cannot be reached: "
                                         f"{exc}") from None
        if code in allow:
            return None
        if not 200 <= code <= 299:
            raise api_error(self.site, action, code, reason, data)
        try:
            return json.loads(data or b"{}")
        except ValueError as exc:
            raise ProviderError(f"site '{self.site}': {action}: the API server sent no JSON "
                                f"({data[:100]!r})") from exc

    def _send(self, api, method: str, url: str, headers: dict, body, params: list
              ) -> tuple[int, str, bytes]:
        """(status, reason, body) of one call, through the ApiClient's own request path
        (kubernetes >= 35 ``param_serialize``/``call_api``; older clients' ``call_api``)."""
        if hasattr(api, "param_serialize"):
            serialized = api.param_serialize(method=method, resource_path=url,
                                             header_params=headers, body=body,
                                             query_params=params, auth_settings=["BearerToken"])
            reply = api.call_api(*serialized, _request_timeout=self.timeout)
            return reply.status, reply.reason, reply.read()
        reply = api.call_api(url, method, query_params=params, header_params=headers,
                             body=body, auth_settings=["BearerToken"], _preload_content=False,
                             _return_http_data_only=True, _request_timeout=self.timeout)
        return reply.status, reply.reason, reply.data

    # --- shorthands ---------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        return self.request("GET", path(resource, namespace, name),
                            f"read {resource} {name}", allow=(404,))

    def list(self, resource: str, namespace: str | None, selector: str | None = None
             ) -> list[dict]:
        reply = self.request("GET", path(resource, namespace),
                             f"list {resource}" + (f" in namespace {namespace}"
                                                   if namespace else ""),
                             query={"labelSelector": selector or None})
        return list((reply or {}).get("items") or ())

    def create(self, resource: str, namespace: str | None, body: dict) -> dict | None:
        """The created object, or None when one of that name exists (409)."""
        name = body["metadata"]["name"]
        return self.request("POST", path(resource, namespace), f"create {resource} {name}"
                            + (f" in namespace {namespace}" if namespace else ""),
                            body=body, allow=(409,))

    def replace(self, resource: str, namespace: str | None, body: dict) -> dict:
        name = body["metadata"]["name"]
        return self.request("PUT", path(resource, namespace, name),
                            f"update {resource} {name}", body=body) or {}

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        self.request("DELETE", path(resource, namespace, name), f"delete {resource} {name}",
                     body={"kind": "DeleteOptions", "apiVersion": "v1",
                           "propagationPolicy": "Background"},
                     allow=(404, 409) if resource == "namespaces" else (404,))  # 409: going

    def delete_collection(self, resource: str, namespace: str, selector: str) -> None:
        self.request("DELETE", path(resource, namespace), f"delete {resource} ({selector})",
                     query={"labelSelector": selector},
                     body={"kind": "DeleteOptions", "apiVersion": "v1",
                           "propagationPolicy": "Background"}, allow=(404,))

    def version(self) -> dict:
        return self.request("GET", "/version", "read the server version") or {}

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not fail the caller
                pass
