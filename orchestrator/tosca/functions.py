"""TOSCA intrinsic functions.

``get_input``, ``get_property``, ``concat``, ``join``, ``token`` and
``get_nodes_of_type`` are evaluated while the template is parsed. ``get_attribute``,
``get_operation_output`` and ``get_artifact`` depend on live state: they become
``Deferred`` values whose targets are checked now and resolved later against the
deployment's state (see ``resolve_deferred``).
"""
from __future__ import annotations

import base64
import difflib
import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from orchestrator.diagnostics import Diagnostics, Location, Severity, did_you_mean
from orchestrator.tosca.secret import SecretBool, keep_taint
from orchestrator.tosca.yamlsource import Mapping, Sequence, where

STATIC = {"get_input", "get_property", "concat", "join", "token", "get_nodes_of_type"}
DEFERRED = {"get_attribute", "get_operation_output", "get_artifact"}
FUNCTIONS = STATIC | DEFERRED
KEYWORDS = {"SELF", "SOURCE", "TARGET", "HOST"}


@dataclass(frozen=True)
class Deferred:
    """A function whose value is only known once the deployment exists."""

    function: str
    args: tuple
    node: str | None = None  # the node that SELF referred to (resolved entity for get_*)

    def to_json(self) -> dict:
        return {self.function: [to_plain(a) for a in self.args]}

    def __str__(self) -> str:
        return "{" + self.function + ": " + repr([to_plain(a) for a in self.args]) + "}"


_SCALARS = frozenset({str, int, bool, type(None)})


def to_plain(value):
    """Copy a value into plain JSON-able Python data (Deferred -> its TOSCA form).

    Values YAML can express but JSON cannot become text: timestamps in ISO 8601,
    ``!!binary`` in base64, infinite and NaN floats as YAML spells them (".inf",
    "-.inf", ".nan"); a ``!!set`` becomes a list.
    """
    if value.__class__ in _SCALARS:
        return value
    if isinstance(value, Deferred):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (set, frozenset)):
        items = [to_plain(v) for v in value]
        try:
            return sorted(items)
        except TypeError:  # mixed types: any stable order
            return sorted(items, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def walk(value, path, missing=None):
    """Follow map keys and list indexes of ``path`` into ``value``; ``missing`` when a
    step does not exist."""
    for step in path:
        if isinstance(value, dict) and not isinstance(step, (list, dict)) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and not isinstance(step, bool) \
                and -len(value) <= step < len(value):
            value = value[step]
        else:
            return missing
    return value


def function_name(value) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in FUNCTIONS:
            return key
    return None


class Context(Protocol):
    """What the evaluator needs from the template (implemented by template.Template)."""

    diagnostics: Diagnostics

    def input_value(self, name: str, loc: Location, node: str | None) -> Any: ...
    def node_exists(self, name: str) -> bool: ...
    def host_of(self, node: str) -> str | None: ...
    def property_of(self, node: str, path: list, loc: Location, self_node: str | None) -> Any: ...
    def attribute_declared(self, node: str, path: list) -> bool: ...
    def operation_declared(self, node: str, interface: str, operation: str) -> bool: ...
    def nodes_of_type(self, type_name: str) -> list[str]: ...
    def node_names(self) -> list[str]: ...
    def artifact_names(self, node: str) -> list[str]: ...


_MISSING = object()


@dataclass
class Scope:
    self_node: str | None = None
    source: str | None = None
    target: str | None = None
    #: in a relationship's interface: the relationship's properties, which SELF names first
    relationship: dict | None = None
    #: the output being evaluated (its unresolved paths are null, not a refusal to plan)
    output: str | None = None


class Evaluator:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.diagnostics = ctx.diagnostics

    def evaluate(self, value, scope: Scope, loc: Location):
        if value.__class__ in _PLAIN:
            return value
        name = function_name(value)
        if name is not None:
            here = where(value, name, loc)
            return self._call(name, value[name], scope, here)
        if isinstance(value, dict):
            self._warn_misspelt(value, scope, loc)
            return self.evaluate_map(value, scope, loc)
        if isinstance(value, list):
            out = Sequence()
            if isinstance(value, Sequence):
                out.loc, out.item_locs = value.loc, value.item_locs
            for index, item in enumerate(value):
                out.append(self.evaluate(item, scope, where(value, index, loc)))
            return out
        return value

    def evaluate_map(self, value, scope: Scope, loc: Location) -> dict:
        """Evaluate each value of a map of named values (properties, operation inputs), so
        that a single entry named like a function ("token") stays a named entry."""
        if not isinstance(value, dict):
            return self.evaluate(value, scope, loc)
        out = Mapping()
        if isinstance(value, Mapping):
            out.loc, out.key_locs = value.loc, value.key_locs
        for key, item in value.items():
            out[key] = self.evaluate(item, scope, where(value, key, loc))
        return out

    def _warn_misspelt(self, value: dict, scope: Scope, loc: Location) -> None:
        if len(value) != 1:
            return
        key = next(iter(value))
        if not isinstance(key, str):
            return
        close = _misspelt_function(key)
        if close:
            self.diagnostics.add("unknown-function", f"'{key}' is not an intrinsic function; the "
                                 "value is kept as a plain map", where(value, key, loc),
                                 node=scope.self_node, hint=f"did you mean '{close[0]}'?",
                                 severity=Severity.WARNING)

    def _bad(self, message: str, loc: Location, scope: Scope, code: str = "invalid-function"):
        self.diagnostics.error(code, message, loc, node=scope.self_node)
        return None

    def _call(self, name: str, args, scope: Scope, loc: Location):
        handler: Callable = getattr(self, "_fn_" + name)
        return handler(args, scope, loc)

    # -- static functions ---------------------------------------------------------------------
    def _fn_get_input(self, args, scope: Scope, loc: Location):
        path = list(args) if isinstance(args, list) else [args]
        if not path or not isinstance(path[0], str) or not _all_keys(path[1:]):
            return self._bad("get_input takes an input name (or [name, key, ...])", loc, scope)
        value = self.ctx.input_value(path[0], loc, scope.self_node)
        return self._descend(value, path[1:], f"input '{path[0]}'", loc, scope)

    def _entity(self, entity, scope: Scope, loc: Location, fn: str) -> str | None:
        if not isinstance(entity, str):
            return self._bad(f"{fn}: the first argument must be a node name or SELF, SOURCE, "
                             "TARGET, HOST", loc, scope)
        if entity in ("SELF", "SOURCE", "TARGET"):
            node = {"SELF": scope.self_node, "SOURCE": scope.source or scope.self_node,
                    "TARGET": scope.target}[entity]
            if node is None:
                return self._bad(f"{fn}: {entity} has no meaning here", loc, scope,
                                 "unresolved-reference")
            return node
        if entity == "HOST":
            start = scope.self_node
            host = self.ctx.host_of(start) if start else None
            if host is None:
                return self._bad(f"{fn}: HOST used on '{start}', which is not hosted on any node",
                                 loc, scope, "unresolved-reference")
            return host
        if not self.ctx.node_exists(entity):
            self.diagnostics.error("unknown-node", f"{fn} refers to node '{entity}', which does "
                                   "not exist", loc, node=scope.self_node,
                                   hint=did_you_mean(entity, self.ctx.node_names()))
            return None
        return entity

    def _fn_get_property(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or len(args) < 2 or not _all_keys(args[1:]):
            return self._bad("get_property takes [entity, (capability or requirement,) property, "
                             "nested keys...]", loc, scope)
        if args[0] == "SELF" and scope.relationship and args[1] in scope.relationship:
            what = f"get_property: property {args[1]} of the relationship"
            return self._descend(scope.relationship[args[1]], list(args[2:]), what, loc, scope)
        node = self._entity(args[0], scope, loc, "get_property")
        if node is None:
            return None
        path = list(args[1:])
        if args[0] == "HOST":  # the first host up the chain that has the property
            current: str | None = node
            visited: set[str] = set()
            while current is not None and current not in visited:  # a hosting cycle ends it
                visited.add(current)
                value = self.ctx.property_of(current, path, loc, None)
                if value is not _MISSING:
                    return value
                current = self.ctx.host_of(current)
            return self._bad(f"get_property: no host of '{scope.self_node}' has property "
                             f"'{path[0]}'", loc, scope, "unresolved-reference")
        value = self.ctx.property_of(node, path, loc, scope.self_node)
        if value is not _MISSING:
            return value
        for known in range(len(path) - 1, 0, -1):  # the longest part of the path that exists
            prefix = self.ctx.property_of(node, path[:known], loc, scope.self_node)
            if prefix is not _MISSING:
                what = f"get_property: property {'.'.join(str(p) for p in path[:known])} of " \
                       f"node '{node}'"
                return self._descend(prefix, path[known:], what, loc, scope)
        return self._bad(f"get_property: node '{node}' has no property "
                         f"{'.'.join(str(p) for p in path)}", loc, scope, "unresolved-reference")

    def _descend(self, value, path: list, what: str, loc: Location, scope: Scope):
        """Follow ``path`` into ``value``. A list index or a key that the value lacks with
        the current inputs is a warning (``unresolved-path``: plan and deploy refuse it, as
        the inputs they get may make it resolve); a step into a scalar is an error."""
        for step in path:
            if isinstance(value, Deferred):
                return Deferred(value.function, value.args + (step,), value.node)
            found = walk(value, [step], _MISSING)
            if found is _MISSING:
                if isinstance(value, list) and isinstance(step, int):
                    why = f"index {step} is out of range of a list of {len(value)} item(s)"
                elif isinstance(value, dict):
                    why = f"there is no key {step!r}"
                elif value is None:
                    why = f"it has no value to take {step!r} from"
                else:
                    return self._bad(f"{what} has no element {step!r} (it is a "
                                     f"{type(value).__name__})", loc, scope,
                                     "unresolved-reference")
                if scope.output is not None:  # nothing deployed depends on it
                    self.diagnostics.warning(
                        "unresolved-output", f"output '{scope.output}': {what}: {why} with the "
                        "current inputs; the output is null", loc)
                    return None
                self.diagnostics.warning(
                    "unresolved-path", f"{what}: {why} with the current inputs; it must "
                    "resolve when the deployment is planned", loc, node=scope.self_node)
                return None
            value = found
        return value

    def _fn_concat(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list):
            return self._bad("concat takes a list of values", loc, scope)
        parts = [self.evaluate(a, scope, where(args, i, loc)) for i, a in enumerate(args)]
        if any(isinstance(p, Deferred) for p in parts):
            return Deferred("concat", tuple(parts), scope.self_node)
        if any(isinstance(p, (dict, list)) for p in parts):
            return self._bad("concat takes scalar values", loc, scope)
        return keep_taint("".join("" if p is None else _text(p) for p in parts), parts)

    def _fn_join(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or not args or not isinstance(args[0], list) or len(
                args) > 2 or (len(args) == 2 and not isinstance(args[1], str)):
            return self._bad("join takes [[values...], optional delimiter]", loc, scope)
        values = self.evaluate(args[0], scope, loc)
        delimiter = args[1] if len(args) == 2 else ""
        if any(isinstance(p, Deferred) for p in values):
            return Deferred("join", (tuple(values), delimiter), scope.self_node)
        if any(isinstance(p, (dict, list)) for p in values):
            return self._bad("join takes scalar values", loc, scope)
        return keep_taint(delimiter.join(_text(p) for p in values), values)

    def _fn_token(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or len(args) != 3 or not isinstance(args[1], str) or \
                not isinstance(args[2], int) or isinstance(args[2], bool):
            return self._bad("token takes [string, separator characters, index]", loc, scope)
        text = self.evaluate(args[0], scope, loc)
        if isinstance(text, Deferred):
            return Deferred("token", (text, args[1], args[2]), scope.self_node)
        if not isinstance(text, (str, int, float)):
            return self._bad("token: the first argument must be a string", loc, scope)
        return keep_taint(token(_text(text), args[1], args[2],
                                lambda m: self._bad(m, loc, scope)), text)

    def _fn_get_nodes_of_type(self, args, scope: Scope, loc: Location):
        if not isinstance(args, str):
            return self._bad("get_nodes_of_type takes a node type name", loc, scope)
        return self.ctx.nodes_of_type(args)

    # -- deferred functions -------------------------------------------------------------------
    def _fn_get_attribute(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or len(args) < 2 or not _all_keys(args[1:]):
            return self._bad("get_attribute takes [entity, (capability or requirement,) "
                             "attribute, nested keys...]", loc, scope)
        node = self._entity(args[0], scope, loc, "get_attribute")
        if node is None:
            return None
        if not self.ctx.attribute_declared(node, list(args[1:])):
            self.diagnostics.warning(
                "unresolved-reference", f"get_attribute: '{args[1]}' is not an attribute or "
                f"property declared by node '{node}'; it must be set at run time", loc,
                node=scope.self_node)
        return Deferred("get_attribute", tuple(args), node)

    def _fn_get_operation_output(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or len(args) != 4 or not all(isinstance(a, str)
                                                                   for a in args):
            return self._bad("get_operation_output takes [entity, interface, operation, "
                             "output]", loc, scope)
        node = self._entity(args[0], scope, loc, "get_operation_output")
        if node is None:
            return None
        if not self.ctx.operation_declared(node, args[1], args[2]):
            return self._bad(f"get_operation_output: node '{node}' has no operation "
                             f"{args[1]}.{args[2]}", loc, scope, "unresolved-reference")
        return Deferred("get_operation_output", tuple(args), node)

    def _fn_get_artifact(self, args, scope: Scope, loc: Location):
        if not isinstance(args, list) or len(args) < 2 or not isinstance(args[1], str) or \
                not _all_keys(args[2:]):
            return self._bad("get_artifact takes [entity, artifact name, ...]", loc, scope)
        node = self._entity(args[0], scope, loc, "get_artifact")
        if node is None:
            return None
        artifact_names = getattr(self.ctx, "artifact_names", None)
        names = artifact_names(node) if artifact_names is not None else None
        if names is not None and args[1] not in names:
            self.diagnostics.error("unresolved-reference", f"get_artifact: node '{node}' has no "
                                   f"artifact '{args[1]}'", loc, node=scope.self_node,
                                   hint=did_you_mean(args[1], names))
            return None
        return Deferred("get_artifact", tuple(args), node)


_PLAIN = frozenset({str, int, float, bool, type(None)})  # values that evaluate to themselves
_FUNCTION_LIST = sorted(FUNCTIONS)


@functools.lru_cache(maxsize=1024)
def _misspelt_function(key: str) -> list[str]:
    """The intrinsic function ``key`` looks like a misspelling of, if any ([] or [name])."""
    if not re.fullmatch(r"[a-z_]+", key):
        return []
    return difflib.get_close_matches(key, _FUNCTION_LIST, n=1, cutoff=0.8)


def _all_keys(path) -> bool:
    """Names and indices only: a path into properties has no lists or maps in it."""
    return all(not isinstance(step, (dict, list, set, tuple)) for step in path)


def _text(value) -> str:
    if isinstance(value, (bool, SecretBool)):
        return "true" if value else "false"
    return str(value)


def token(text: str, separators: str, index: int, on_error=None):
    parts = re.split("[" + re.escape(separators) + "]", text) if separators else [text]
    if not -len(parts) <= index < len(parts):
        if on_error:
            return on_error(f"token: index {index} out of range for {len(parts)} tokens")
        return None
    return parts[index]


def resolve_deferred(value, lookup: Callable[[Deferred], Any]):
    """Replace Deferred values using ``lookup`` for get_attribute/get_operation_output/
    get_artifact; concat/join/token are recomputed from their resolved parts."""
    if isinstance(value, Deferred):
        if value.function == "concat":
            parts = [resolve_deferred(p, lookup) for p in value.args]
            return keep_taint("".join("" if p is None else _text(p) for p in parts), parts)
        if value.function == "join":
            values, delimiter = value.args
            parts = [resolve_deferred(p, lookup) for p in values]
            return keep_taint(delimiter.join(_text(p) for p in parts), parts)
        if value.function == "token":
            text, separators, index = value.args
            resolved = resolve_deferred(text, lookup)
            return None if resolved is None else keep_taint(
                token(_text(resolved), separators, index), resolved)
        return lookup(value)
    if isinstance(value, dict):
        return {k: resolve_deferred(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_deferred(v, lookup) for v in value]
    return value


MISSING = _MISSING
