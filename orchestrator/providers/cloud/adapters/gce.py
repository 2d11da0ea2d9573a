"""Google Compute Engine through libcloud's ``gce`` driver (built from its sites.yaml entry
and checked without network access; not exercised end to end here).

- Tags become labels (lowercase letters, digits, '-' and '_'), found by a filter on them.
- The deployment's key goes into the instance metadata (``ssh-keys``).
- Ports open in a firewall rule ``orch-<deployment>`` that targets the network tag of the
  same name; it goes with the last server.
- Preemptible requests become preemptible VMs; images by name or family.
"""
from __future__ import annotations

import re
from typing import Any

from orchestrator.providers.base import TAG_DEPLOYMENT
from orchestrator.providers.cloud.adapters import Adapter, resource_name


def label(value: str) -> str:
    """A GCE label key or value: lowercase, [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


class GceAdapter(Adapter):
    name = "gce"
    supports_spot = True

    def driver_kwargs(self, args: dict, region: str | None) -> dict:
        kwargs = super().driver_kwargs(args, None)  # a zone is chosen per call, lazily
        kwargs.pop("datacenter", None)  # the driver would look it up while constructing
        return kwargs

    def image(self, driver: Any, image_id: str | None, pattern: str | None) -> Any | None:
        if image_id:
            return driver.ex_get_image(image_id)
        if pattern and "*" not in pattern and "?" not in pattern:
            return driver.ex_get_image(pattern)  # a name or an image family
        return super().image(driver, None, pattern)

    def key_kwargs(self, driver: Any, deployment: str, public_key: str | None) -> dict:
        if not public_key:
            return {}
        user = self.options.get("ssh_user") or "orchestrator"
        return {"ex_metadata": {"ssh-keys": f"{user}:{public_key.strip()}"}}

    def firewall_kwargs(self, driver: Any, deployment: str, ports: list, tags: dict) -> dict:
        name = resource_name(deployment)
        try:
            driver.ex_get_firewall(name)
        except Exception as exc:  # noqa: BLE001 - ResourceNotFoundError
            if "notFound" not in str(exc) and "not found" not in str(exc).lower():
                raise
            allowed: dict[str, list[str]] = {"tcp": ["22"]}
            for rule in ports:
                span = f"{rule['port']}-{rule['end_port']}" if rule.get("end_port") \
                    else str(rule["port"])
                allowed.setdefault(str(rule.get("protocol") or "tcp").lower(), []).append(span)
            sources = sorted({r.get("remote_cidr") or "0.0.0.0/0" for r in ports}
                             | {"0.0.0.0/0"})
            driver.ex_create_firewall(name, [{"IPProtocol": p, "ports": v}
                                             for p, v in allowed.items()],
                                      source_ranges=sources, target_tags=[name])
        return {"ex_tags": [name]}

    def tag_kwargs(self, tags: dict) -> dict:
        return {"ex_labels": {label(k): label(v) for k, v in tags.items()}}

    def spot_kwargs(self) -> dict:
        return {"ex_preemptible": True}

    def location(self, driver: Any) -> Any | None:
        return self.options.get("zone")

    def node_tags(self, node: Any) -> dict:
        return dict((node.extra or {}).get("labels") or {})

    def list_nodes(self, driver: Any, deployment: str | None = None,
                   ids: list[str] | None = None) -> list:
        nodes = driver.list_nodes()
        if ids is not None:
            return [n for n in nodes if n.id in set(ids)]
        return [n for n in nodes if self.node_tags(n).get(label(TAG_DEPLOYMENT))
                == label(deployment or "")]

    def is_spot(self, node: Any) -> bool:
        return bool(((node.extra or {}).get("scheduling") or {}).get("preemptible"))

    def cleanup(self, driver: Any, deployment: str) -> list[str]:
        name = resource_name(deployment)
        try:
            driver.ex_destroy_firewall(driver.ex_get_firewall(name))
        except Exception as exc:  # noqa: BLE001
            if "notFound" in str(exc) or "not found" in str(exc).lower():
                return []
            raise
        return [f"firewall {name}"]
