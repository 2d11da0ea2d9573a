"""cloud-init user data for a server: the deployment's SSH key for root (and for a
login user when the site names one), the node's hostname, the packages Ansible needs
(python3), and the mount points of its volumes. Nothing secret goes in: the key is the
public half."""
from __future__ import annotations

import base64
import re

import yaml

_HOSTNAME = re.compile(r"[^a-z0-9-]+")


def hostname(node: str, index: int) -> str:
    name = _HOSTNAME.sub("-", f"{node}-{index}".lower()).strip("-")
    return name[:63] or f"node-{index}"


def cloud_config(node: str, index: int, public_key: str | None, ssh_user: str = "root",
                 volumes: list[str] | None = None, extra: dict | None = None) -> str:
    """The ``#cloud-config`` document for one server."""
    config: dict = {"hostname": hostname(node, index), "preserve_hostname": False,
                    "manage_etc_hosts": True, "disable_root": False,
                    "ssh_pwauth": False, "package_update": False,
                    "packages": ["python3"]}
    if public_key:
        key = public_key.strip()
        config["ssh_authorized_keys"] = [key]
        if ssh_user != "root":
            config["users"] = ["default", {"name": ssh_user, "shell": "/bin/bash",
                                           "sudo": "ALL=(ALL) NOPASSWD:ALL",
                                           "ssh_authorized_keys": [key]}]
    if volumes:
        config["write_files"] = [{
            "path": "/etc/orchestrator/volumes", "permissions": "0644",
            "content": "".join(f"{name}\n" for name in volumes)}]
    if extra:
        for key, value in extra.items():
            if isinstance(value, list) and isinstance(config.get(key), list):
                config[key] = config[key] + [v for v in value if v not in config[key]]
            else:
                config[key] = value
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


def encoded(text: str) -> str:
    """User data as Nova wants it in the API (base64)."""
    return base64.b64encode(text.encode()).decode("ascii")
