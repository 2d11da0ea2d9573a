"""Range checks of the numbers a plan is made from, at validate, with their positions.

Instance counts and scaling bounds are whole numbers of 0 or more, consistent with one
another (``min_instances <= max_instances``; the count between the bounds the template
sets); a node asks for at most ``ORCHESTRATOR_MAX_INSTANCES`` instances (default 1,000);
cpus, GPUs, memory, disk and volume sizes stay below sane maxima, so no later step
meets a number it cannot convert or a loop it cannot finish. The site's quotas are
placement's to check.
"""
from __future__ import annotations

import math
import os

from orchestrator.diagnostics import Location
from orchestrator.tosca.functions import Deferred
from orchestrator.tosca.values import scalar_to
from orchestrator.tosca.yamlsource import where

LIMIT_ENV = "ORCHESTRATOR_MAX_INSTANCES"
DEFAULT_INSTANCE_LIMIT = 1000
MAX_BOUND = 2**31 - 1  # min_instances / max_instances: what a database integer holds
MAX_CPUS = 65536
MAX_GPUS = 1024
MAX_MEMORY_MIB = 1024**3  # 1 PiB
MAX_DISK_GIB = 1024**3  # 1 EiB
COUNT_KEYS = ("count", "default_instances")  # INDIGO's name first: the topology's order
STORAGE_TYPES = ("tosca.nodes.BlockStorage", "tosca.nodes.Storage.BlockStorage")


def instance_limit() -> int:
    """The most instances one node may ask for: ``ORCHESTRATOR_MAX_INSTANCES`` when it is
    a whole number of 1 or more, else 1,000."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    return int(text) if text.isdigit() and 0 < len(text) < 10 and int(text) > 0 \
        else DEFAULT_INSTANCE_LIMIT


def _number(value):
    """An int or float of the template (not a bool, not a deferred value), else None."""
    if isinstance(value, bool) or isinstance(value, Deferred):
        return None
    return value if isinstance(value, (int, float)) else None


def _show(value) -> str:
    if isinstance(value, int) and value.bit_length() > 64:  # no str(): it may be too long
        digits = int((abs(value).bit_length() - 1) * math.log10(2)) + 1
        digits += abs(value) >= 10**digits
        return f"a number of {digits} digits"
    return repr(value) if isinstance(value, float) else str(value)


class _Node:
    """The checks of one node template; ``where`` finds each value's position."""

    def __init__(self, template, node, reported: set):
        self.diags = template.diagnostics
        self.reported = reported  # where errors are already (a constraint of the type)
        self.node = node
        caps = node.raw.get("capabilities") if isinstance(node.raw, dict) else None
        self.raw_caps = caps if isinstance(caps, dict) else {}

    def given(self, cap: str):
        """The properties the template itself writes for capability ``cap``."""
        body = self.raw_caps.get(cap)
        props = body.get("properties") if isinstance(body, dict) else None
        return props if isinstance(props, dict) else {}

    def where(self, cap: str, key: str, sub: str | None = None) -> Location:
        props = self.given(cap)
        loc = where(props, key, where(self.raw_caps, cap, self.node.loc))
        return where(props.get(key), sub, loc) if sub else loc

    def error(self, message: str, loc: Location, hint: str | None = None) -> None:
        self.diags.error("out-of-range", message, loc, node=self.node.name, hint=hint)

    def bounded(self, what: str, value, top: float, loc: Location, hint=None,
                whole: bool = True):
        """``value`` when it is in [0, top] (and whole, if asked), else None after an
        error; None without one when it is no number (the type checks said so)."""
        value = _number(value)
        if value is None or tuple(loc) in self.reported:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.error(f"{what} is {_show(value)}: not a finite number", loc)
        elif value < 0:
            self.error(f"{what} is {_show(value)}: it must be 0 or more", loc)
        elif value > top:
            self.error(f"{what} is {_show(value)}: at most {top:,} allowed", loc, hint)
        elif whole and value != int(value):
            self.error(f"{what} is {_show(value)}: it must be a whole number", loc)
        else:
            return value
        return None

    # -- scaling ------------------------------------------------------------------------------
    def scaling(self, limit: int) -> None:
        scalable = self.node.capabilities.get("scalable")
        if not isinstance(scalable, dict):
            return
        hint = f"{LIMIT_ENV} sets the limit per node"
        counts = {key: self.bounded(f"scalable {key}", scalable.get(key), limit,
                                    self.where("scalable", key), hint) for key in COUNT_KEYS}
        low = self.bounded("scalable min_instances", scalable.get("min_instances"), MAX_BOUND,
                           self.where("scalable", "min_instances"))
        high = self.bounded("scalable max_instances", scalable.get("max_instances"), MAX_BOUND,
                            self.where("scalable", "max_instances"))
        written = self.given("scalable")
        if "min_instances" not in written:
            low = None  # the type's default bounds are no limit the author set
        if "max_instances" not in written:
            high = None
        if low is not None and high is not None and low > high:
            self.error(f"scalable min_instances ({low}) is above max_instances ({high})",
                       self.where("scalable", "min_instances"))
            return
        key = next((k for k in COUNT_KEYS if _number(scalable.get(k)) is not None), None)
        count = counts.get(key) if key else None
        if count is None or key not in written:
            return
        if high is not None and count > high:
            self.error(f"scalable {key} ({count}) is above max_instances ({high})",
                       self.where("scalable", key))
        elif low is not None and count < low:
            self.error(f"scalable {key} ({count}) is below min_instances ({low})",
                       self.where("scalable", key))

    # -- sizes --------------------------------------------------------------------------------
    def size(self, what: str, value, unit: str, top: int, loc: Location) -> None:
        if isinstance(value, str):
            converted = scalar_to(value, "scalar-unit.size", unit)
            if converted is None:
                return  # not a size: the type checks report it
            self.bounded(f"{what} ({value})", converted, top, loc, whole=False)
        else:
            self.bounded(what, value, top, loc, whole=False)

    def host(self) -> None:
        host = self.node.capabilities.get("host")
        if not isinstance(host, dict):
            return
        self.bounded("host num_cpus", host.get("num_cpus"), MAX_CPUS,
                     self.where("host", "num_cpus"), whole=False)
        self.bounded("host num_gpus", host.get("num_gpus"), MAX_GPUS,
                     self.where("host", "num_gpus"))
        gpus = host.get("gpus")
        if isinstance(gpus, dict):
            self.bounded("host gpus count", gpus.get("count"), MAX_GPUS,
                         self.where("host", "gpus", "count"))
        self.size("host mem_size", host.get("mem_size"), "MiB", MAX_MEMORY_MIB,
                  self.where("host", "mem_size"))
        self.size("host disk_size", host.get("disk_size"), "GiB", MAX_DISK_GIB,
                  self.where("host", "disk_size"))

    def storage(self, registry) -> None:
        if not any(registry.resolve("node_types", t) and
                   registry.is_a("node_types", self.node.type, t) for t in STORAGE_TYPES):
            return
        props = self.node.raw.get("properties") if isinstance(self.node.raw, dict) else None
        loc = where(props, "size", self.node.loc) if isinstance(props, dict) else self.node.loc
        self.size("size", self.node.properties.get("size"), "GiB", MAX_DISK_GIB, loc)


def check_ranges(template) -> None:
    """Report every number of the template's nodes that no plan can be made from."""
    limit = instance_limit()
    reported = {(d.file, d.line, d.column) for d in template.diagnostics.errors}
    for node in template.nodes.values():
        checks = _Node(template, node, reported)
        checks.scaling(limit)
        checks.host()
        checks.storage(template.registry)
