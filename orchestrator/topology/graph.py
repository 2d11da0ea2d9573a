"""Dependency order of the nodes, with cycle detection."""
from __future__ import annotations

import heapq

from orchestrator.diagnostics import Diagnostics, Location


def dependency_order(names: list[str], edges: list[tuple[str, str]], diagnostics: Diagnostics,
                     locations: dict[str, Location] | None = None) -> list[str] | None:
    """Nodes ordered so that every edge's target comes before its source.

    ``edges`` are (source, target) pairs: the source needs the target. Ties keep the
    template order, so the result is deterministic. A cycle is reported as a
    ``dependency-cycle`` diagnostic naming the nodes on it, and None is returned.
    """
    index = {name: i for i, name in enumerate(names)}
    needs: dict[str, set[str]] = {name: set() for name in names}
    needed_by: dict[str, set[str]] = {name: set() for name in names}
    for source, target in edges:
        if source in index and target in index and source != target:
            needs[source].add(target)
            needed_by[target].add(source)
        elif source == target and source in index:
            diagnostics.error("dependency-cycle", f"node '{source}' requires itself",
                              (locations or {}).get(source), node=source)
            return None
    waiting = {name: len(deps) for name, deps in needs.items()}
    ready = [(index[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for dependant in needed_by[name]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, (index[dependant], dependant))
    if len(order) == len(names):
        return order
    cycle = _find_cycle({n for n in names if waiting[n] > 0}, needs, index)
    first = cycle[0]
    diagnostics.error("dependency-cycle", "requirements form a cycle: " + " -> ".join(
        cycle + [first]), (locations or {}).get(first), node=first)
    return None


def _find_cycle(remaining: set[str], needs: dict[str, set[str]], index: dict) -> list[str]:
    start = min(remaining, key=index.get)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min((n for n in needs[node] if n in remaining), key=index.get)
    return path[seen[node]:]


def levels(order: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Depth of each node: 0 for nodes that need nothing."""
    needs: dict[str, list[str]] = {}
    for source, target in edges:
        needs.setdefault(source, []).append(target)
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[t] for t in needs.get(name, []) if t in depth), default=-1)
    return depth
