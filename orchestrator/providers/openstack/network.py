"""What a deployment's servers need around them on OpenStack: a keypair, security groups
built from the exposed ports, a network (existing, or private with a subnet and a router to
the external network) and floating IPs. Everything made here carries the deployment's tags
(Neutron tags; keypairs, which have none, a name holding the deployment id), and only
tagged resources are ever deleted."""
from __future__ import annotations

import hashlib
import threading
from collections import defaultdict

from orchestrator.providers.base import (
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    NotFoundError,
    ProviderError,
)

SHARED_KINDS = ("security-group", "deployment-network", "router", "floating-ip")


def tag_list(tags: dict) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(tags.items())]


def tags_of(resource) -> dict:
    found = {}
    for tag in getattr(resource, "tags", None) or ():
        key, sep, value = str(tag).partition("=")
        if sep and key.startswith("orchestrator-"):
            found[key] = value
    return found


def deployment_tags(deployment: str, kind: str, node: str | None = None,
                    index: int | None = None) -> dict:
    tags = {TAG_DEPLOYMENT: deployment, TAG_KIND: kind}
    if node is not None:
        tags[TAG_NODE] = node
    if index is not None:
        tags[TAG_INDEX] = str(index)
    return tags


def resource_name(deployment: str, *parts: object) -> str:
    return "-".join(["orch", deployment, *(str(p) for p in parts)])[:250]


def subnet_cidr(node: str) -> str:
    digest = hashlib.sha1(node.encode()).digest()
    return f"10.{128 + digest[0] % 64}.{digest[1]}.0/24"


class Plumbing:
    """Keypairs, security groups, networks, routers and floating IPs of deployments."""

    def __init__(self, conn, calls, options: dict):
        self.conn = conn
        self.calls = calls
        self.options = options
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._external: str | None = None
        self._known: set[str] = set()  # keypairs known to exist
        self._groups: dict[str, str] = {}  # security group name -> id
        self._tags_on_create = True

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks[key]

    # -- tagged creation -----------------------------------------------------------------------
    def _create(self, what: str, create, tags: dict, **attrs):
        """Create a Neutron resource with its tags (in the POST where the cloud allows it,
        else right after)."""
        if self._tags_on_create:
            try:
                return self.calls(f"create {what}", create, tags=tag_list(tags), **attrs)
            except ProviderError as exc:
                if "tags" not in str(exc) or "not allowed" not in str(exc):
                    raise
                self._tags_on_create = False
        made = self.calls(f"create {what}", create, **attrs)
        self.calls(f"tag {what}", self.conn.network.set_tags, made, tag_list(tags))
        return made

    def tagged(self, what: str, listing, tags: dict, **filters) -> list:
        return self.calls.listing(f"list {what}", listing, tags=",".join(tag_list(tags)),
                                  **filters)

    # -- keypair -------------------------------------------------------------------------------
    def keypair(self, deployment: str, public_key: str | None) -> str | None:
        """The deployment's keypair (named after it), made on first use."""
        if not public_key:
            return None
        name = resource_name(deployment)
        if "keypair:" + name in self._known:
            return name
        with self.lock("keypair:" + name):
            found = self.calls.find("find keypair", self.conn.compute.find_keypair, name)
            if found is None:
                try:
                    self.calls("create keypair", self.conn.compute.create_keypair, name=name,
                               public_key=public_key.strip())
                except ProviderError as exc:
                    if "already exists" not in str(exc).lower():
                        raise
            self._known.add("keypair:" + name)
        return name

    def delete_keypair(self, deployment: str) -> None:
        name = resource_name(deployment)
        self.calls("delete keypair", self.conn.compute.delete_keypair, name,
                   ignore_missing=True)
        self._known.discard("keypair:" + name)

    # -- security groups -----------------------------------------------------------------------
    def security_groups(self, deployment: str, node: str, ports: list) -> list[str]:
        """Ids of the groups a server gets: the deployment's (SSH from ``ssh_cidr``, ICMP,
        everything between its own servers) and, when the node exposes ports, the node's."""
        shared = self._group(deployment, None, [
            {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
             "remote_ip_prefix": str(self.options.get("ssh_cidr") or "0.0.0.0/0")},
            {"protocol": "icmp", "remote_ip_prefix": "0.0.0.0/0"},
            {"remote_group_id": "SELF"}])
        groups = [shared]
        rules = [_port_rule(p) for p in ports or () if p.get("port")]
        if rules:
            groups.append(self._group(deployment, node, rules))
        return groups

    def _group(self, deployment: str, node: str | None, rules: list[dict]) -> str:
        name = resource_name(deployment, *([node] if node else []))
        if name in self._groups:
            return self._groups[name]
        tags = deployment_tags(deployment, "security-group", node)
        with self.lock("group:" + name):
            if name in self._groups:
                return self._groups[name]
            found = self.tagged("security groups", self.conn.network.security_groups, tags,
                                 name=name)
            group = found[0] if found else self._create(
                "security group", self.conn.network.create_security_group, tags, name=name,
                description="made by the TOSCA orchestrator for one deployment")
            present = [_rule_key(r) for r in getattr(group, "security_group_rules", None) or ()]
            for rule in rules:  # a group made by an interrupted call may lack some
                wanted = {"direction": "ingress", "ethertype": "IPv4", **rule}
                if wanted.get("remote_group_id") == "SELF":
                    wanted["remote_group_id"] = group.id
                if _rule_key(wanted) not in present:
                    self._rule(group.id, rule)
            self._groups[name] = group.id
        return group.id

    def _rule(self, group_id: str, rule: dict) -> None:
        attrs = {"security_group_id": group_id, "direction": "ingress", "ethertype": "IPv4",
                 **rule}
        if attrs.get("remote_group_id") == "SELF":
            attrs["remote_group_id"] = group_id
        try:
            self.calls("create security group rule",
                       self.conn.network.create_security_group_rule, **attrs)
        except ProviderError as exc:
            if "already exists" not in str(exc).lower():
                raise

    # -- networks --------------------------------------------------------------------------------
    def external_network(self) -> str | None:
        """The network floating IPs come from: ``options.external_network`` or the first
        network marked router:external."""
        if self._external is None:
            wanted = self.options.get("external_network")
            if wanted:
                found = self.calls.find("find external network",
                                        self.conn.network.find_network, str(wanted))
                if found is None:
                    raise ProviderError(f"external network '{wanted}' (options.external_"
                                        "network) does not exist")
            else:
                found = next(iter(self.calls.listing(
                    "list external networks", self.conn.network.networks,
                    is_router_external=True)), None)
            self._external = found.id if found is not None else ""
        return self._external or None

    def existing_network(self, name: str) -> str:
        found = self.calls.find("find network", self.conn.network.find_network, name)
        if found is None:
            raise ProviderError(f"network '{name}' does not exist")
        return found.id

    def ensure_network(self, deployment: str, node: str | None, properties: dict) -> str:
        """The id of the deployment's network for a network node (``node``) or of its
        default network (``node`` None): an existing one when asked for, else a private
        network with a subnet and, when the cloud has an external network, a router."""
        existing = properties.get("network_name") or properties.get("network_id")
        if existing and (properties.get("existing") or not node):
            return self.existing_network(str(existing))
        kind = "network" if node else "deployment-network"
        tags = deployment_tags(deployment, kind, node, 0 if node else None)
        name = resource_name(deployment, node or "net")
        with self.lock(name):
            found = self.tagged("networks", self.conn.network.networks, tags)
            network = found[0] if found else self._create(
                "network", self.conn.network.create_network, tags, name=name)
            subnets = self.tagged("subnets", self.conn.network.subnets, tags,
                                   network_id=network.id)
            subnet = subnets[0] if subnets else self._create(
                "subnet", self.conn.network.create_subnet, tags, name=name,
                network_id=network.id, ip_version=4,
                cidr=str(properties.get("cidr") or subnet_cidr(node or deployment)),
                dns_nameservers=list(self.options.get("dns_nameservers") or []))
            external = self.external_network()
            if external:
                self._connect_router(deployment, subnet.id, external)
        return network.id

    def _connect_router(self, deployment: str, subnet_id: str, external: str) -> None:
        tags = deployment_tags(deployment, "router")
        with self.lock(resource_name(deployment, "router")):
            found = self.tagged("routers", self.conn.network.routers, tags)
            router = found[0] if found else self._create(
                "router", self.conn.network.create_router, tags,
                name=resource_name(deployment, "router"),
                external_gateway_info={"network_id": external})
        ports = self.calls.listing("list router ports", self.conn.network.ports,
                                   device_id=router.id)
        if any(ip.get("subnet_id") == subnet_id for p in ports for ip in p.fixed_ips or ()):
            return
        try:
            self.calls("add router interface", self.conn.network.add_interface_to_router,
                       router, subnet_id=subnet_id)
        except ProviderError as exc:
            if "already" not in str(exc).lower():
                raise

    def delete_network(self, network_id: str, deployment: str) -> None:
        """Delete one of our networks: its router interfaces, subnets, then the network,
        and the deployment's router once no network uses it."""
        try:
            network = self.calls("get network", self.conn.network.get_network, network_id)
        except NotFoundError:
            return
        if tags_of(network).get(TAG_DEPLOYMENT) != deployment:
            return  # an existing network the deployment only used
        routers = self.tagged("routers", self.conn.network.routers,
                               deployment_tags(deployment, "router"))
        subnets = self.calls.listing("list subnets", self.conn.network.subnets,
                                     network_id=network_id)
        for router in routers:
            for subnet in subnets:
                try:
                    self.calls("remove router interface",
                               self.conn.network.remove_interface_from_router, router,
                               subnet_id=subnet.id)
                except (NotFoundError, ProviderError) as exc:
                    if not isinstance(exc, NotFoundError) and "not" not in str(exc).lower():
                        raise
        self.calls("delete network", self.conn.network.delete_network, network_id,
                   ignore_missing=True)
        for router in routers:
            left = self.calls.listing("list router ports", self.conn.network.ports,
                                      device_id=router.id,
                                      device_owner="network:router_interface")
            if not left:
                self.calls("delete router", self.conn.network.delete_router, router.id,
                           ignore_missing=True)

    # -- floating IPs ----------------------------------------------------------------------------
    def floating_ip(self, server_id: str, deployment: str, node: str, index: int) -> str:
        """The floating address of a server, allocated and associated on first call."""
        tags = deployment_tags(deployment, "floating-ip", node, index)
        found = self.tagged("floating IPs", self.conn.network.ips, tags)
        ports = self.calls.listing("list server ports", self.conn.network.ports,
                                   device_id=server_id)
        if not ports:
            raise ProviderError(f"server {server_id} has no port to put a floating IP on")
        if found:
            address = found[0]
            if address.port_id != ports[0].id:
                self.calls("associate floating IP", self.conn.network.update_ip, address,
                           port_id=ports[0].id)
            return address.floating_ip_address
        external = self.external_network()
        if not external:
            raise ProviderError("a public IP was asked for, but the site has no external "
                                "network (set options.external_network)")
        address = self._create("floating IP", self.conn.network.create_ip, tags,
                               floating_network_id=external, port_id=ports[0].id,
                               description=resource_name(deployment, node, index))
        return address.floating_ip_address

    def floating_ips(self, deployment: str) -> list:
        return self.tagged("floating IPs", self.conn.network.ips,
                            {TAG_DEPLOYMENT: deployment, TAG_KIND: "floating-ip"})

    def delete_floating_ips(self, deployment: str, node: str | None = None,
                            index: int | None = None) -> None:
        tags = deployment_tags(deployment, "floating-ip", node, index)
        for address in self.tagged("floating IPs", self.conn.network.ips, tags):
            self.calls("delete floating IP", self.conn.network.delete_ip, address.id,
                       ignore_missing=True)

    # -- what is left of a deployment ---------------------------------------------------------
    def leftovers(self, deployment: str) -> dict[str, list]:
        """Shared resources of a deployment: floating IPs, security groups, default
        networks, routers, keypair."""
        tags = {TAG_DEPLOYMENT: deployment}
        found = {
            "floating-ip": self.floating_ips(deployment),
            "security-group": self.tagged("security groups",
                                           self.conn.network.security_groups, tags),
            "network": self.tagged("networks", self.conn.network.networks, tags),
            "router": self.tagged("routers", self.conn.network.routers, tags),
        }
        keypair = self.calls.find("find keypair", self.conn.compute.find_keypair,
                                  resource_name(deployment))
        found["keypair"] = [keypair] if keypair is not None else []
        return found

    def cleanup(self, deployment: str, networks: bool = True) -> None:
        """Delete what a deployment shares between its servers (called once it has no
        server left): floating IPs, security groups, keypair and, with ``networks``, its
        default network and router."""
        self.delete_floating_ips(deployment)
        for group in self.tagged("security groups", self.conn.network.security_groups,
                                  {TAG_DEPLOYMENT: deployment}):
            self.calls("delete security group", self.conn.network.delete_security_group,
                       group.id, ignore_missing=True)
            self._groups.pop(group.name, None)
        self.delete_keypair(deployment)
        if not networks:
            return
        defaults = self.tagged("networks", self.conn.network.networks,
                                deployment_tags(deployment, "deployment-network"))
        for network in defaults:
            self.delete_network(network.id, deployment)
        if not self.tagged("networks", self.conn.network.networks,
                            {TAG_DEPLOYMENT: deployment}):
            for router in self.tagged("routers", self.conn.network.routers,
                                       deployment_tags(deployment, "router")):
                self.calls("clear router gateway", self.conn.network.update_router,
                           router.id, external_gateway_info={})
                self.calls("delete router", self.conn.network.delete_router, router.id,
                           ignore_missing=True)


def _rule_key(rule) -> tuple:
    get = rule.get if isinstance(rule, dict) else lambda k: getattr(rule, k, None)
    return tuple(get(k) for k in ("direction", "ethertype", "protocol", "port_range_min",
                                  "port_range_max", "remote_ip_prefix", "remote_group_id"))


def _port_rule(port: dict) -> dict:
    protocol = str(port.get("protocol") or "tcp").lower()
    rule = {"protocol": protocol,
            "remote_ip_prefix": str(port.get("remote_cidr") or "0.0.0.0/0")}
    if protocol in ("tcp", "udp", "sctp"):
        first = int(port["port"])
        rule.update(port_range_min=first, port_range_max=int(port.get("end_port") or first))
    return rule
