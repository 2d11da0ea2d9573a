"""Safe YAML loading that keeps source positions and refuses hostile input.

``load_yaml`` returns plain dict/list subclasses (``Mapping``/``Sequence``) that
remember the file and the line and column of every key and item, so that later
stages can point diagnostics at the right place. Before anything is built, one
pass over libyaml's event stream measures nesting depth and the size the document
would have once its aliases are expanded; documents that are too deep or would
explode (billion laughs) are refused with a diagnostic instead of eating memory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

from orchestrator.diagnostics import Diagnostics, Location

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = int(os.environ.get("ORCHESTRATOR_MAX_TEMPLATE_BYTES", 20 * 1024 * 1024))
MAX_DEPTH = 100
MAX_EXPANDED_NODES = 2_000_000


class Mapping(dict):
    """A dict that knows where it and each of its keys came from."""

    __slots__ = ("loc", "key_locs")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loc: Location = Location("")
        self.key_locs: dict = {}

    def where(self, key=None) -> Location:
        if key is not None and key in self.key_locs:
            return self.key_locs[key]
        return self.loc


class Sequence(list):
    """A list that knows where it and each of its items came from."""

    __slots__ = ("loc", "item_locs")

    def __init__(self, *args):
        super().__init__(*args)
        self.loc: Location = Location("")
        self.item_locs: list[Location] = []

    def where(self, index=None) -> Location:
        if index is not None and 0 <= index < len(self.item_locs):
            return self.item_locs[index]
        return self.loc


def where(value, key=None, default: Location | None = None) -> Location:
    """Location of ``value`` (or of ``value[key]``) when known."""
    if isinstance(value, (Mapping, Sequence)):
        loc = value.where(key)
        if loc.file:
            return loc
    return default or Location("")


class _PositionLoader(_Loader):
    """Safe loader whose mappings and sequences carry positions."""

    def __init__(self, stream, filename: str, diagnostics: Diagnostics):
        super().__init__(stream)
        self.filename = filename
        self.diagnostics = diagnostics

    _resolved: dict = {}

    def resolve(self, kind, value, implicit):
        """Implicit tag resolution, memoised: templates repeat the same scalars a lot."""
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._resolved) < 100_000:
                self._resolved[key] = tag
        return tag

    def _loc(self, node) -> Location:
        mark = node.start_mark
        return Location(self.filename, mark.line + 1, mark.column + 1)

    def construct_positioned_map(self, node):
        data = Mapping()
        data.loc = self._loc(node)
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                self.diagnostics.error(
                    "wrong-type", "a mapping key must be a scalar", self._loc(key_node)
                )
                continue
            if key in data.key_locs:
                self.diagnostics.error(
                    "duplicate-key",
                    f"key '{key}' appears twice in this mapping (first at line "
                    f"{data.key_locs[key].line})",
                    self._loc(key_node),
                )
            data[key] = self.construct_object(value_node, deep=True)
            data.key_locs[key] = self._loc(key_node)

    def construct_positioned_seq(self, node):
        data = Sequence()
        data.loc = self._loc(node)
        yield data
        for child in node.value:
            data.append(self.construct_object(child, deep=True))
            data.item_locs.append(self._loc(child))


_PositionLoader.add_constructor("tag:yaml.org,2002:map", _PositionLoader.construct_positioned_map)
_PositionLoader.add_constructor("tag:yaml.org,2002:seq", _PositionLoader.construct_positioned_seq)


@dataclass
class _Measure:
    depth: int = 0
    expanded: int = 0
    bad: str | None = None
    mark: object = None


def _measure(text: str) -> _Measure:
    """Walk the event stream once: maximum depth and alias-expanded node count."""
    result = _Measure()
    anchors: dict[str, int] = {}
    # stack of [anchor, node count at collection start]
    stack: list[list] = []
    count = 0
    loader = _Loader(text)
    try:
        while True:
            event = loader.get_event()
            if event is None:
                break
            kind = type(event)
            if kind is yaml.ScalarEvent:
                count += 1
                if event.anchor:
                    anchors[event.anchor] = 1
            elif kind is yaml.AliasEvent:
                count += anchors.get(event.anchor, 1)
            elif kind in (yaml.MappingStartEvent, yaml.SequenceStartEvent):
                count += 1
                stack.append([event.anchor, count])
                if len(stack) > MAX_DEPTH:
                    result.bad, result.mark = "deep", event.start_mark
                    return result
            elif kind in (yaml.MappingEndEvent, yaml.SequenceEndEvent):
                anchor, start = stack.pop()
                if anchor:
                    anchors[anchor] = count - start + 1
            if count > MAX_EXPANDED_NODES:
                result.bad, result.mark = "bomb", event.start_mark
                return result
    finally:
        loader.dispose()
    result.expanded = count
    return result


def _obviously_safe(text: str) -> bool:
    """No anchors (so no alias expansion) and too few nesting markers to go deep."""
    if "&" in text:
        return False
    markers = text.count("[") + text.count("{") + text.count("- ") + text.count("? ")
    return markers < MAX_DEPTH or (markers < 10_000 and len(text) < MAX_FILE_BYTES)


def read_text(path: str, diagnostics: Diagnostics, display: str | None = None) -> str | None:
    """Read a UTF-8 text file within the size limit, or add a diagnostic."""
    name = display or path
    try:
        size = os.path.getsize(path)
    except OSError:
        diagnostics.error("file-not-found", f"cannot read '{name}': no such file", Location(name))
        return None
    if size > MAX_FILE_BYTES:
        diagnostics.error(
            "file-too-large",
            f"'{name}' is {size // (1024 * 1024)} MiB; the limit is "
            f"{MAX_FILE_BYTES // (1024 * 1024)} MiB (ORCHESTRATOR_MAX_TEMPLATE_BYTES)",
            Location(name),
        )
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        diagnostics.error("yaml-syntax", f"'{name}' is not UTF-8 text: {exc.reason}", Location(name))
    except OSError as exc:
        diagnostics.error("file-not-found", f"cannot read '{name}': {exc.strerror}", Location(name))
    return None


def load_yaml(text: str, filename: str, diagnostics: Diagnostics):
    """Parse one YAML document into positioned values; None (with a diagnostic) on failure."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        diagnostics.error("file-too-large", f"'{filename}' exceeds {MAX_FILE_BYTES} bytes",
                          Location(filename))
        return None
    try:
        measure = _Measure() if _obviously_safe(text) else _measure(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        diagnostics.error("yaml-syntax", f"{exc.problem or exc.context}", loc)
        return None
    except (yaml.YAMLError, ValueError) as exc:
        diagnostics.error("yaml-syntax", str(exc).splitlines()[0], Location(filename))
        return None
    if measure.bad:
        mark = measure.mark
        loc = Location(filename, mark.line + 1, mark.column + 1)
        if measure.bad == "deep":
            diagnostics.error("yaml-too-deep", f"nesting deeper than {MAX_DEPTH} levels", loc)
        else:
            diagnostics.error(
                "yaml-bomb",
                f"the document would expand to more than {MAX_EXPANDED_NODES} values through "
                "aliases; refusing it",
                loc,
            )
        return None
    loader = _PositionLoader(text, filename, diagnostics)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        diagnostics.error("yaml-syntax", f"{exc.problem or exc.context}", loc)
    except RecursionError:
        diagnostics.error("yaml-too-deep", "the document is nested too deeply to load",
                          Location(filename))
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        diagnostics.error("yaml-syntax", str(exc).splitlines()[0] if str(exc) else
                          type(exc).__name__, Location(filename))
    finally:
        loader.dispose()
    return None
