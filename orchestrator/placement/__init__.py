"""Placement: for every compute node choose a site, a flavor and an image.

The smallest flavor that satisfies the node wins, GPUs first (count, vendor, model),
then InfiniBand, cpus, memory and disk, as the INDIGO orchestrator does. Images are
chosen explicitly or by OS distribution/version, GPU driver and CUDA version. Policies
pin nodes to sites (site names, or SLA ids served by a site); quotas are summed over
the whole deployment. Feasible sites are ranked (priority, then weight); the whole
deployment goes to the best site that can take it, and every node keeps the ordered
list of other sites it could fail over to. When nothing fits, PlacementError says for
every site why not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import PlacementError
from orchestrator.placement.matching import match_flavor, match_image, version_key
from orchestrator.providers.base import Flavor, Image, Offer
from orchestrator.topology.model import Node, Topology

SITE_POLICIES = {"orchestrator.policies.Placement": "site",
                 "tosca.policies.indigo.Placement": "cloud_id"}
SLA_POLICIES = {"orchestrator.policies.SlaPlacement": "sla_id",
                "tosca.policies.indigo.SlaPlacement": "sla_id",
                "tosca.policies.indigo.CredentialsAwareSlaPlacement": "sla_id"}


@dataclass(frozen=True)
class Choice:
    site: str
    flavor: Flavor
    image: Image | None

    def to_dict(self) -> dict:
        return {"site": self.site, "flavor": self.flavor.name,
                "image": self.image.name if self.image else None}


@dataclass(frozen=True)
class NodePlacement:
    node: str
    choice: Choice
    failover: tuple[Choice, ...] = ()

    @property
    def site(self) -> str:
        return self.choice.site

    def to_dict(self) -> dict:
        data = self.choice.to_dict()
        data["node"] = self.node
        data["failover"] = [c.to_dict() for c in self.failover]
        return data


@dataclass(frozen=True)
class Placement:
    site: str | None  # the deployment's primary site
    nodes: dict  # node name -> NodePlacement
    ranked_sites: tuple[str, ...] = ()
    rejected: dict = field(default_factory=dict)  # site -> reasons

    def site_of(self, node: str) -> str | None:
        placed = self.nodes.get(node)
        return placed.site if placed else self.site

    def to_dict(self) -> dict:
        return {"site": self.site, "ranked_sites": list(self.ranked_sites),
                "nodes": {n: p.to_dict() for n, p in self.nodes.items()},
                "rejected": {s: list(r) for s, r in self.rejected.items()}}


def _allowed_sites(topology: Topology, sites: list) -> dict[str, set[str] | None]:
    """Node name -> the set of site names its policies allow (None: any)."""
    allowed: dict[str, set[str] | None] = {n: None for n in topology.nodes}
    for policy in topology.policies:
        ptype = policy.type or ""
        names: set[str] | None = None
        if ptype in SITE_POLICIES:
            wanted = policy.properties.get(SITE_POLICIES[ptype])
            if wanted:
                names = {str(wanted)}
        elif ptype in SLA_POLICIES:
            sla = policy.properties.get(SLA_POLICIES[ptype])
            if sla:
                names = {s.name for s in sites if str(sla) in s.sla_ids}
        if names is None:
            continue
        targets = policy.targets or tuple(topology.nodes)
        for target in targets:
            members = [target]
            for group in topology.groups:
                if group.name == target:
                    members = list(group.members)
            for member in members:
                current = allowed.get(member)
                allowed[member] = names if current is None else current & names
    return allowed


def rank_sites(sites: list) -> list:
    return sorted(sites, key=lambda s: (-s.priority, -s.weight, s.name))


def _needs(node: Node, flavor: Flavor) -> dict[str, float]:
    count = node.compute.scaling.count
    return {"instances": count, "cores": flavor.cpus * count,
            "memory_mib": flavor.memory_mib * count, "gpus": flavor.gpus.count * count,
            "volumes": len(node.compute.volumes) * count,
            "volume_gib": sum(v.size_gib or 0 for v in node.compute.volumes) * count}


def usage_of(rows, offer: Offer) -> dict[str, float]:
    """What existing compute resources (with ``spec['flavor']``) use of a site's quota."""
    flavors = {f.name: f for f in offer.flavors}
    used: dict[str, float] = {}
    for row in rows:
        flavor = flavors.get((row.spec or {}).get("flavor"))
        if row.kind != "compute" or flavor is None or row.status == "deleted":
            continue
        for key, value in (("instances", 1), ("cores", flavor.cpus),
                           ("memory_mib", flavor.memory_mib), ("gpus", flavor.gpus.count)):
            used[key] = used.get(key, 0) + value
    return used


def _quota_problems(offer: Offer, chosen: dict[str, Choice], nodes: dict,
                    credit: dict | None = None) -> list[str]:
    total: dict[str, float] = {}
    for name, choice in chosen.items():
        for key, value in _needs(nodes[name], choice.flavor).items():
            total[key] = total.get(key, 0) + value
    problems = []
    for key, needed in total.items():
        left = offer.quotas.remaining(key)
        if left is not None:
            left += (credit or {}).get(key, 0)  # what this deployment already holds there
        if left is not None and needed > left:
            problems.append(f"quota {key}: {needed:g} needed, {max(left, 0):g} left")
    return problems


def place(topology: Topology, sites: list, offers: dict[str, Offer],
          credit: dict[str, dict] | None = None,
          unavailable: dict[str, str] | None = None) -> Placement:
    """Place every compute node of ``topology`` on one of ``sites`` (Site objects).
    ``credit`` gives, per site, the quota the deployment itself already uses there (an
    update may reuse it)."""
    computes = {n.name: n for n in topology.compute_nodes()}
    ranked = rank_sites(sites)
    allowed = _allowed_sites(topology, ranked)
    if not ranked:
        raise PlacementError("no site is configured (see `orchestrator sites list`)")
    # per site: the choice for each compute node, or the reasons it cannot host it
    options: dict[str, dict[str, Choice]] = {}
    rejected: dict[str, list[str]] = {}
    for site in ranked:
        offer = offers.get(site.name, Offer())
        choices: dict[str, Choice] = {}
        reasons: list[str] = []
        if (unavailable or {}).get(site.name):
            options[site.name] = choices
            rejected[site.name] = [unavailable[site.name]]
            continue
        for name, node in computes.items():
            permitted = allowed.get(name)
            if permitted is not None and site.name not in permitted:
                reasons.append(f"node {name}: placement policy allows only "
                               f"{', '.join(sorted(permitted)) or 'no site'}")
                continue
            flavor, why = match_flavor(node.compute, offer.flavors)
            if flavor is None:
                reasons.append(f"node {name}: {why}")
                continue
            image, why = match_image(node.compute, offer.images)
            if why:
                reasons.append(f"node {name}: {why}")
                continue
            choices[name] = Choice(site.name, flavor, image)
        options[site.name] = choices
        if reasons:
            rejected[site.name] = reasons
    return _choose(topology, ranked, offers, options, rejected, computes, allowed, credit or {})


def _choose(topology, ranked, offers, options, rejected, computes, allowed, credit) -> Placement:
    feasible: list[str] = []
    for site in ranked:
        choices = options[site.name]
        # nodes pinned away from this site may still go to their own site
        placed_elsewhere = {n for n in computes if n not in choices and allowed.get(n) is not None
                            and site.name not in allowed[n]}
        if set(choices) | placed_elsewhere != set(computes) or (computes and not choices):
            continue
        problems = _quota_problems(offers.get(site.name, Offer()), choices, computes,
                                   credit.get(site.name))
        if problems:
            rejected.setdefault(site.name, []).extend(problems)
            continue
        feasible.append(site.name)
    for primary in feasible:
        nodes = {}
        for name in computes:
            order = [primary] + [s.name for s in ranked if s.name != primary]
            usable = [options[s][name] for s in order if name in options[s]]
            if not usable:
                break
            nodes[name] = NodePlacement(name, usable[0], tuple(usable[1:]))
        else:
            return Placement(primary, nodes, tuple(feasible),
                             {s: tuple(r) for s, r in rejected.items()})
    if not computes and ranked:
        return Placement(ranked[0].name, {}, tuple(s.name for s in ranked), {})
    lines = [f"  site {site.name}: " + "; ".join(rejected.get(site.name, ["cannot host every "
                                                                          "node"]))
             for site in ranked]
    raise PlacementError("no site can host this deployment:\n" + "\n".join(lines))


__all__ = ["usage_of", "Choice", "NodePlacement", "Placement", "place", "rank_sites", "version_key"]
