"""Type and constraint checking of property, attribute and input values.

Primitive types and TOSCA scalar units are checked here; constraint semantics and
scalar-unit arithmetic come from tosca-parser (``toscaparser.elements``).
"""
from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass

import toscaparser.functions  # noqa: F401  (tosca-parser's constraints need it imported)
from toscaparser.elements import constraints as tp_constraints
from toscaparser.elements import scalarunit as tp_scalar

from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca import versions
from orchestrator.tosca.secret import SecretValue, taint
from orchestrator.tosca.types import PRIMITIVE_TYPES, TypeRegistry
from orchestrator.tosca.yamlsource import where

_SCALARS = {
    "scalar-unit.size": tp_scalar.ScalarUnit_Size,
    "scalar-unit.time": tp_scalar.ScalarUnit_Time,
    "scalar-unit.frequency": tp_scalar.ScalarUnit_Frequency,
}
if hasattr(tp_scalar, "ScalarUnit_Bitrate"):
    _SCALARS["scalar-unit.bitrate"] = tp_scalar.ScalarUnit_Bitrate

_VERSION = re.compile(r"^\d+(\.\d+){0,2}(\.[A-Za-z0-9_]+(-\d+)?)?$")
_INTEGER = re.compile(r"[+-]?\d{1,30}")
_CONSTRAINT_CACHE: dict[tuple, object] = {}
_PLAIN = frozenset({str, int, float, bool, type(None)})
_PRIMITIVE_NAMES = sorted(PRIMITIVE_TYPES)
_Deferred = None


def is_deferred(value) -> bool:
    """True when the value contains a function that can only be resolved later."""
    if value.__class__ in _PLAIN:
        return False
    global _Deferred
    if _Deferred is None:
        from orchestrator.tosca.functions import Deferred

        _Deferred = Deferred
    return _contains_deferred(value)


def _contains_deferred(value) -> bool:
    if isinstance(value, _Deferred):
        return True
    if isinstance(value, dict):
        return any(v.__class__ not in _PLAIN and _contains_deferred(v) for v in value.values())
    if isinstance(value, list):
        return any(v.__class__ not in _PLAIN and _contains_deferred(v) for v in value)
    return False


def scalar_to(value, type_name: str, unit: str) -> float | None:
    """Convert a scalar-unit string ("8 GB") into ``unit``; None when not convertible."""
    if _SCALARS.get(type_name) is None or value is None:
        return None
    try:
        return _scalar_to(value, value.__class__, type_name, unit)
    except TypeError:  # unhashable: not a scalar unit anyway
        return None


@functools.lru_cache(maxsize=4096)
def _scalar_to(value, _cls: type, type_name: str, unit: str) -> float | None:
    try:
        return float(_SCALARS[type_name](value).get_num_from_scalar_unit(unit))
    except Exception:  # tosca-parser raises plain ValueError and friends
        return None


@functools.lru_cache(maxsize=4096)
def _valid_scalar_unit(type_name: str, _cls: type, value) -> bool:
    try:
        _SCALARS[type_name](value).validate_scalar_unit()
    except Exception:  # tosca-parser raises plain ValueError and friends
        return False
    return True


@dataclass
class Checker:
    registry: TypeRegistry
    diagnostics: Diagnostics
    node: str | None = None

    def check(self, value, schema: dict, name: str, loc: Location):
        """Check ``value`` against a property/attribute/input definition; return it normalised."""
        type_name = schema.get("type") if isinstance(schema, dict) else None
        if not isinstance(type_name, str):
            return value
        if value is None or is_deferred(value):
            return value
        constraints = schema.get("constraints")
        if not constraints:
            return self.check_type(value, type_name, schema, name, loc)
        diagnostics = self.diagnostics
        before = diagnostics.error_count
        value = self.check_type(value, type_name, schema, name, loc)
        if diagnostics.error_count == before:  # constraints only apply to well-typed values
            self.check_constraints(value, type_name, constraints, name, loc)
        return value

    # -- types ------------------------------------------------------------------------------
    def _mismatch(self, value, type_name: str, name: str, loc: Location):
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self.diagnostics.error("type-mismatch", f"'{name}' must be of type {type_name}, got "
                               f"{shown}", loc, node=self.node)

    def check_type(self, value, type_name: str, schema: dict, name: str, loc: Location):
        if type_name in PRIMITIVE_TYPES:
            return self._check_primitive(value, type_name, schema, name, loc)
        if type_name in ("tosca.datatypes.json", "tosca.datatypes.xml", "json", "xml"):
            return value
        datatype = self.registry.get("data_types", type_name)
        if datatype is None:
            self.diagnostics.error("unknown-type", f"'{name}' has unknown data type "
                                   f"'{type_name}'", where(schema, "type", loc), node=self.node,
                                   hint=did_you_mean(type_name, _PRIMITIVE_NAMES)
                                   or self.registry.suggest("data_types", type_name))
            return value
        chain = self.registry.chain("data_types", datatype.name)
        base = None
        for type_name_ in chain:  # derived from a primitive, or tosca-parser's "type: integer"
            definition = self.registry.types["data_types"][type_name_]
            for candidate in (definition.data.get("type"), definition.parent):
                if base is None and candidate in PRIMITIVE_TYPES:
                    base = candidate
        if base is not None:  # a primitive-based data type, with constraints
            value = self._check_primitive(value, base, schema, name, loc)
            for type_name_ in chain:
                definition = self.registry.types["data_types"][type_name_].data
                self.check_constraints(value, base, definition.get("constraints"), name, loc)
            return value
        return self._check_complex(value, datatype.name, name, loc)

    def _check_primitive(self, value, type_name: str, schema: dict, name: str, loc: Location):
        if isinstance(value, SecretValue):  # checked as its plain value, and stays secret
            return taint(self._check_primitive(value.reveal(), type_name, schema, name, loc))
        if type_name == "string":
            if isinstance(value, bool):  # `default: true` where a string is declared
                text = "true" if value else "false"
                self.diagnostics.warning(
                    "type-mismatch", f"'{name}' is declared as a string but has the YAML "
                    f"boolean {text}; read as the string '{text}' (quote it to say so)", loc,
                    node=self.node)
                return text
            if not isinstance(value, (str, int, float)):
                self._mismatch(value, type_name, name, loc)
                return value
            return value if isinstance(value, str) else str(value)
        if type_name == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
                return int(value)
            self._mismatch(value, type_name, name, loc)
            return value
        if type_name == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
            self._mismatch(value, type_name, name, loc)
            return value
        if type_name == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            self._mismatch(value, type_name, name, loc)
            return value
        if type_name == "timestamp":
            if isinstance(value, (datetime.date, datetime.datetime)):
                return value
            if isinstance(value, str):
                try:
                    datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
                    return value
                except ValueError:
                    pass
            self._mismatch(value, type_name, name, loc)
            return value
        if type_name == "version":
            text = str(value) if isinstance(value, (str, int, float)) and \
                not isinstance(value, bool) else None
            if text is None or not _VERSION.match(text):
                self._mismatch(value, type_name, name, loc)
                return value
            return text
        if type_name == "range":
            ok = isinstance(value, list) and len(value) == 2 and all(
                (isinstance(v, int) and not isinstance(v, bool)) or v == "UNBOUNDED"
                for v in value)
            if ok and all(isinstance(v, int) for v in value) and value[0] > value[1]:
                ok = False
            if not ok:
                self._mismatch(value, type_name, name, loc)
            return value
        if type_name == "list":
            if not isinstance(value, list):
                self._mismatch(value, type_name, name, loc)
                return value
            entry = schema.get("entry_schema") if isinstance(schema, dict) else None
            entry = {"type": entry} if isinstance(entry, str) else entry
            if isinstance(entry, dict):
                for index, item in enumerate(value):
                    value[index] = self.check(item, entry, f"{name}[{index}]",
                                              where(value, index, loc))
            return value
        if type_name == "map":
            if not isinstance(value, dict):
                self._mismatch(value, type_name, name, loc)
                return value
            entry = schema.get("entry_schema") if isinstance(schema, dict) else None
            entry = {"type": entry} if isinstance(entry, str) else entry
            if isinstance(entry, dict):
                for key in list(value):
                    value[key] = self.check(value[key], entry, f"{name}.{key}",
                                            where(value, key, loc))
            return value
        if type_name in _SCALARS:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                self._mismatch(value, type_name, name, loc)
                return value
            if not _valid_scalar_unit(type_name, value.__class__, value):
                self.diagnostics.error(
                    "type-mismatch", f"'{name}' must be a {type_name} such as "
                    f"{'8 GB' if type_name.endswith('size') else '10 s'}, got {value!r}",
                    loc, node=self.node)
            return value
        return value  # "any", "null"

    def _check_complex(self, value, datatype: str, name: str, loc: Location):
        if not isinstance(value, dict):
            self._mismatch(value, datatype, name, loc)
            return value
        props = self.registry.properties("data_types", datatype)
        for key in value:
            if key not in props:
                self.diagnostics.error(
                    "unknown-property", f"'{name}' of type {datatype} has no field '{key}'",
                    where(value, key, loc), node=self.node, hint=did_you_mean(key, props))
        for key, prop in props.items():
            if not isinstance(prop, dict):
                continue
            if key in value:
                value[key] = self.check(value[key], prop, f"{name}.{key}", where(value, key, loc))
            elif "default" in prop:
                value[key] = prop["default"]
            elif prop.get("required", True) is not False:
                self.diagnostics.error("missing-property", f"'{name}' of type {datatype} needs "
                                       f"field '{key}'", loc, node=self.node)
        return value

    # -- constraints ------------------------------------------------------------------------
    def _check_pattern(self, value, pattern, name: str, loc: Location, at: Location) -> None:
        """TOSCA's pattern constraint (a full match), with a time limit on the match so
        that a catastrophically backtracking pattern cannot hang validation."""
        problem = _pattern_error(pattern)
        if problem:
            self.diagnostics.error("invalid-type-definition", f"constraint on '{name}': "
                                   f"{problem}", at, node=self.node)
            return
        if not isinstance(value, str):
            return
        try:
            matched = _compiled_cached(pattern).fullmatch(value, timeout=PATTERN_TIMEOUT_S)
        except TimeoutError:
            self.diagnostics.error("constraint-violation", f"'{name}': matching pattern "
                                   f"{pattern!r} took longer than {PATTERN_TIMEOUT_S}s; "
                                   "simplify the pattern", at, node=self.node)
            return
        if matched is None:
            self.diagnostics.error("constraint-violation", f"value {value!r} of '{name}' does "
                                   f"not match the pattern {pattern!r}", loc, node=self.node)

    def _check_version(self, value, item: dict, name: str, loc: Location, at: Location):
        """A constraint on a version, compared as TOSCA versions (20.04 the float and
        "20.04" the string are the same version)."""
        operator, argument = next(iter(item.items()))
        try:
            ok = versions.satisfies(value, operator, argument)
        except ValueError as exc:
            self.diagnostics.error("invalid-type-definition", f"invalid constraint on "
                                   f"'{name}': {exc}", at, node=self.node)
            return
        if not ok:
            shown = [versions.version_text(a) or a for a in argument] \
                if isinstance(argument, list) else versions.version_text(argument) or argument
            self.diagnostics.error("constraint-violation", f"version {value} of '{name}' does "
                                   f"not meet {operator} {shown}", loc, node=self.node)

    def check_constraints(self, value, type_name: str, constraints, name: str, loc: Location):
        if not constraints or value is None or is_deferred(value):
            return
        if type_name == "range" and isinstance(value, list):
            # a range satisfies a constraint when both its bounds do
            for bound in value:
                if isinstance(bound, int):
                    self.check_constraints(bound, "integer", constraints, name, loc)
            return
        if isinstance(constraints, dict):  # tosca-parser reads a map as one constraint each
            self.diagnostics.warning("invalid-type-definition", f"constraints of '{name}' should "
                                     "be a list of single-key mappings; read this map as one "
                                     "constraint per key", where(constraints, None, loc),
                                     node=self.node)
            constraints = [{key: item} for key, item in constraints.items()]
        elif not isinstance(constraints, list):
            self.diagnostics.error("invalid-type-definition", f"constraints of '{name}' must be a "
                                   "list", loc, node=self.node)
            return
        for index, item in enumerate(constraints):
            at = where(constraints, index, loc)  # the constraint's own line, not the value's
            if not isinstance(item, dict) or len(item) != 1:
                self.diagnostics.error("invalid-type-definition", f"a constraint of '{name}' must "
                                       "be a single-key mapping", at, node=self.node)
                continue
            if "pattern" in item:
                self._check_pattern(value, item["pattern"], name, loc, at)
                continue
            if type_name == "version" and next(iter(item)) in versions.OPERATORS:
                self._check_version(value, item, name, loc, at)
                continue
            if type_name == "string":  # YAML booleans among a string's values: as read
                item = {op: _bools_as_text(arg) for op, arg in item.items()}
            key = (type_name, repr(item))
            constraint = _CONSTRAINT_CACHE.get(key)
            try:
                if constraint is None:
                    constraint = tp_constraints.Constraint(name, type_name, dict(item))
                    _CONSTRAINT_CACHE[key] = constraint
                constraint.property_name = name
                constraint.validate(value)
            except Exception as exc:  # tosca-parser raises its own exception family
                kind = type(exc).__name__
                if kind == "InvalidSchemaError":
                    self.diagnostics.error("invalid-type-definition",
                                           f"invalid constraint on '{name}': {exc}", at,
                                           node=self.node)
                else:
                    self.diagnostics.error("constraint-violation", _constraint_message(exc, name,
                                                                                     value),
                                           loc, node=self.node)


PATTERN_TIMEOUT_S = 0.5


def _bools_as_text(argument):
    """A constraint argument with YAML booleans spelt as the strings a string value reads
    them as (see ``_check_primitive``)."""
    if isinstance(argument, bool):
        return "true" if argument else "false"
    if isinstance(argument, list):
        return [_bools_as_text(item) for item in argument]
    return argument


def _compiled(pattern: str):
    """The pattern compiled by the ``regex`` module (which can time out a match)."""
    import regex

    return regex.compile(pattern)


def _pattern_error(pattern) -> str | None:
    if not isinstance(pattern, str):
        return "a pattern must be a string"
    try:
        _compiled_cached(pattern)
    except Exception as exc:  # regex.error, and anything a hostile pattern provokes
        return f"invalid regular expression {pattern!r}: {exc}"
    return None


_PATTERNS: dict = {}


def _compiled_cached(pattern: str):
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = _compiled(pattern)
    return found


def _constraint_message(exc: Exception, name: str, value) -> str:
    text = str(exc).strip()
    if not text or len(text) > 300:
        text = f"value {value!r} of '{name}' breaks a constraint"
    return text
