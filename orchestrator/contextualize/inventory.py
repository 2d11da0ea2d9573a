"""Build an Ansible inventory (the YAML/JSON dict form) from host descriptions.

A host description is a plain dict (see ``configurator`` for the full contract)::

    {"node": "vm", "index": 0,                  # group and host name "vm-0"
     "ansible_host": "127.0.0.1", "ansible_port": 40022, "ansible_user": "root",
     "ansible_ssh_private_key_file": "/path/to/key",
     "private_address": "10.88.0.7",            # for /etc/hosts (cluster_hosts)
     "ssh_options": {"KexAlgorithms": "curve25519-sha256"},
                                                # optional: more ``ssh -o`` options (the
                                                # provider's ``ssh_options`` attribute)
     "jump_host": {"host": "1.2.3.4", "port": 22, "user": "root"},
                                                # optional: used when ansible_host is unset
                                                # (also "user@host:port"); reached with
                                                # the same private key
     "properties": {...},                       # optional: the node's properties -> vars
     "vars": {...}}                             # optional: more host vars

Every host lands in a group named after its node template (``group`` overrides it),
named ``<node>-<index>`` (``name`` overrides it).
"""
from __future__ import annotations

import shlex
from collections.abc import Iterable

from orchestrator.tosca.functions import Deferred, to_plain

SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
CONNECTION_KEYS = ("ansible_host", "ansible_port", "ansible_user",
                   "ansible_ssh_private_key_file", "ansible_become", "ansible_connection",
                   "ansible_python_interpreter")


def host_name(host: dict) -> str:
    """The inventory name of a host description: ``<node>-<index>``."""
    return str(host.get("name") or f"{host['node']}-{int(host.get('index', 0))}")


def _plain_vars(values: dict | None) -> dict:
    """Variables Ansible can take: unresolved (Deferred) and unset values are left out."""
    result = {}
    for key, value in (values or {}).items():
        if value is None or isinstance(value, Deferred):
            continue
        result[str(key)] = to_plain(value)
    return result


def _jump(spec) -> tuple[str, int, str]:
    if isinstance(spec, dict):
        return str(spec["host"]), int(spec.get("port") or 22), str(spec.get("user") or "root")
    user, _, rest = str(spec).rpartition("@")
    address, _, port = rest.partition(":")
    return address, int(port or 22), user or "root"


def _ssh_options(host: dict) -> str:
    """The fixed options plus the host's ``ssh_options``."""
    extra = host.get("ssh_options") or {}
    return " ".join([SSH_COMMON_ARGS] + [f"-o {shlex.quote(f'{name}={value}')}"
                                         for name, value in sorted(extra.items())])


def ssh_common_args(host: dict) -> str:
    """SSH options; a host without a reachable address goes through its jump host with a
    ProxyCommand that uses the same private key (ProxyJump would not pass the key on)."""
    options = _ssh_options(host)
    args = options
    if not host.get("ansible_host") and host.get("jump_host"):
        address, port, user = _jump(host["jump_host"])
        key = host.get("ansible_ssh_private_key_file")
        identity = f"-i {shlex.quote(str(key))} " if key else ""
        proxy = (f"ssh {identity}-p {port} {options} -o LogLevel=ERROR -W %h:%p "
                 f"{shlex.quote(user)}@{shlex.quote(address)}")
        args += f" -o ProxyCommand={shlex.quote(proxy)}"
    return args


def host_vars(host: dict) -> dict:
    """The connection and node variables of one host."""
    variables = _plain_vars(host.get("properties"))
    for key in CONNECTION_KEYS:
        if host.get(key) is not None:
            variables[key] = host[key]
    if not host.get("ansible_host"):
        if not host.get("private_address"):
            raise ValueError(f"host {host_name(host)} has neither ansible_host nor "
                             "private_address")
        variables["ansible_host"] = host["private_address"]
    variables.setdefault("ansible_user", "root")
    # no interpreter discovery round trip per host; override with the host key
    variables.setdefault("ansible_python_interpreter", "/usr/bin/python3")
    variables["ansible_ssh_common_args"] = ssh_common_args(host)
    variables["private_address"] = host.get("private_address") or variables["ansible_host"]
    variables["tosca_node"] = host.get("node")
    variables["tosca_index"] = int(host.get("index", 0))
    variables.update(_plain_vars(host.get("vars")))
    return variables


def cluster_hosts(hosts: Iterable[dict]) -> list[dict]:
    """``[{name, address}]`` for every host: what the base role writes to /etc/hosts."""
    return [{"name": host_name(h), "address": h.get("private_address") or h.get("ansible_host")}
            for h in hosts]


def build_inventory(hosts: Iterable[dict], group_vars: dict | None = None) -> dict:
    """An inventory dict: ``all.children.<node>.hosts.<node>-<index>: {vars}``.

    ``group_vars`` (group name -> vars) become the groups' vars."""
    children: dict = {}
    for host in hosts:
        group = str(host.get("group") or host["node"])
        entry = children.setdefault(group, {"hosts": {}})
        entry["hosts"][host_name(host)] = host_vars(host)
    for group, variables in (group_vars or {}).items():
        if group in children:
            children[group]["vars"] = _plain_vars(variables)
    return {"all": {"children": children}}
