"""Safe YAML loading that keeps source positions and refuses hostile input.

``load_yaml`` returns plain dict/list subclasses (``Mapping``/``Sequence``) that
remember the file and the line and column of every key and item, so that later
stages can point diagnostics at the right place.

The values are built in one pass over libyaml's event stream, with an explicit
stack instead of recursion. The same loop measures the nesting depth and the size
the document would have once its aliases are expanded: documents that are too
deep or would explode (billion laughs) are refused with a diagnostic as soon as
the limit is crossed, before anything big is built. The data is the same as
``yaml.safe_load`` gives (same implicit resolution, same scalar constructors, merge
keys, ``!!set``/``!!omap``/``!!pairs``), except that a mapping key which is not
hashable is reported and dropped instead of aborting the load, and a duplicate key
is a warning (the last value wins, as in PyYAML and tosca-parser).
"""
from __future__ import annotations

import gc
import os
import re
import stat

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca.yamlmerge import MergedPairs, MergeError, kind as _kind

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = int(os.environ.get("ORCHESTRATOR_MAX_TEMPLATE_BYTES", 20 * 1024 * 1024))
MAX_DEPTH = 100
MAX_EXPANDED_NODES = 2_000_000


class Mapping(dict):
    """A dict that knows where it and each of its keys came from."""

    __slots__ = ("loc", "key_locs")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loc: Location = _NOWHERE
        self.key_locs: dict = {}

    def where(self, key=None) -> Location:
        if key is not None:
            loc = self.key_locs.get(key)
            if loc is not None:
                return loc
        return self.loc


class Sequence(list):
    """A list that knows where it and each of its items came from."""

    __slots__ = ("loc", "item_locs")

    def __init__(self, *args):
        super().__init__(*args)
        self.loc: Location = _NOWHERE
        self.item_locs: list[Location] = []

    def where(self, index=None) -> Location:
        if index is not None and 0 <= index < len(self.item_locs):
            return self.item_locs[index]
        return self.loc


_NOWHERE = Location("")


def where(value, key=None, default: Location | None = None) -> Location:
    """Location of ``value`` (or of ``value[key]``) when known."""
    if value.__class__ is Mapping or value.__class__ is Sequence or isinstance(
            value, (Mapping, Sequence)):
        try:
            loc = value.where(key)
        except TypeError:  # an unhashable key
            loc = value.loc
        if loc.file:
            return loc
    return default or _NOWHERE


# -- the loader -----------------------------------------------------------------------------------
_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SET, _OMAP, _PAIRS = _TAG + "set", _TAG + "omap", _TAG + "pairs"
_MERGE_TAG, _VALUE_TAG = _TAG + "merge", _TAG + "value"
#: SafeConstructor's constructors for scalar tags (all of them are plain functions of the text)
_SCALAR_CONSTRUCTORS = {
    _TAG + name: SafeConstructor.yaml_constructors[_TAG + name]
    for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
}
_CONSTRUCTOR = SafeConstructor()
_MAPPING_TAGS = (_MAP, _SET)
_SEQUENCE_TAGS = (_SEQ, _OMAP, _PAIRS)


class _Marker:
    """A plain scalar that only means something as a mapping key (``<<`` and ``=``)."""

    __slots__ = ("tag", "text")

    def __init__(self, tag: str, text: str):
        self.tag, self.text = tag, text


_MERGE = _Marker(_MERGE_TAG, "<<")
_VALUE = _Marker(_VALUE_TAG, "=")
_OPEN = object()  # an anchor whose collection is still being built
_MISSING = object()

_ScalarEvent, _AliasEvent = yaml.ScalarEvent, yaml.AliasEvent
_MappingStartEvent, _MappingEndEvent = yaml.MappingStartEvent, yaml.MappingEndEvent
_SequenceStartEvent, _SequenceEndEvent = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_DocumentStartEvent = yaml.DocumentStartEvent
_new_tuple = tuple.__new__
_new_dict = dict.__new__
_new_list = list.__new__


class _Refused(Exception):
    """The document cannot be loaded: ``code`` and ``message`` at 0-based line/column."""

    def __init__(self, code: str, message: str, line: int | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.code, self.message, self.line, self.column = code, message, line, column


def _syntax(message: str, mark) -> _Refused:
    return _Refused("yaml-syntax", message, mark.line, mark.column)


def _construct_scalar(tag: str, text: str, event):
    """The value of a scalar with a resolved or explicit tag, as SafeLoader builds it."""
    constructor = _SCALAR_CONSTRUCTORS.get(tag)
    if constructor is None:
        if tag == _MERGE_TAG:
            return _MERGE
        if tag == _VALUE_TAG:
            return _VALUE
        mark = event.start_mark
        if tag in _MAPPING_TAGS:
            raise _syntax("expected a mapping node, but found scalar", mark)
        if tag in _SEQUENCE_TAGS:
            raise _syntax("expected a sequence node, but found scalar", mark)
        raise _syntax(f"could not determine a constructor for the tag {tag!r}", mark)
    if tag == _STR:
        return text
    node = ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
    try:
        return constructor(_CONSTRUCTOR, node)
    except yaml.MarkedYAMLError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:  # huge ints, impossible dates
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _syntax(message, event.start_mark) from None


def _merge(mapping: Mapping, merges: list, merged: MergedPairs) -> None:
    """Apply the ``<<`` merge keys of a finished mapping as the installed PyYAML does."""
    try:
        merged.flatten(mapping, merges)
    except MergeError as exc:
        raise _Refused("yaml-syntax", exc.message, exc.line, exc.column) from None


def _pairs(sequence: Sequence) -> Sequence:
    """``!!omap`` and ``!!pairs``: a list of (key, value) tuples."""
    pairs = []
    for index, item in enumerate(sequence):
        if not isinstance(item, dict) or len(item) != 1:
            loc = sequence.item_locs[index]
            raise _Refused("yaml-syntax", "expected a mapping of length 1, but found "
                           f"{_kind(item)}", loc.line - 1, loc.column - 1)
        pairs.append(next(iter(item.items())))
    sequence[:] = pairs
    return sequence


def _not_a_key(value, line: int, column: int) -> _Refused:
    return _Refused("yaml-syntax", f"could not determine a constructor for the tag {value.tag!r}",
                    line, column)


def _compose(text: str, filename: str, diagnostics: Diagnostics):
    """Build the positioned value of the single document in ``text``.

    The collection being filled is held in locals (``container``, its ``locs``,
    ``in_map``, the pending ``key`` and where it was); its enclosing ones wait on
    ``stack``. ``meta`` is [anchor, node count at its start, line, column, tag, merges].
    """
    loader = _Loader(text)
    get_event = loader.get_event
    resolve = loader.resolve
    plain: dict = {}  # plain scalar text -> value (all of them are immutable)
    anchors: dict = {}  # name -> (value, expanded size, line, column)
    merged = MergedPairs()
    stack: list = []
    push, pop = stack.append, stack.pop
    container = locs = meta = None
    in_map = False
    key = _MISSING
    key_line = key_column = 0
    count = 0
    documents = 0
    root = None
    max_depth, max_nodes = MAX_DEPTH, MAX_EXPANDED_NODES
    new_loc, location = _new_tuple, Location
    implicit_pair = (True, False)
    Marker = _Marker
    try:
        while True:
            event = get_event()
            cls = event.__class__
            if cls is _ScalarEvent:
                count += 1
                mark = event.start_mark
                line = mark.line
                column = mark.column
                tag = event.tag
                if tag is None or tag == "!":
                    value = event.value
                    if event.implicit[0]:
                        cached = plain.get(value, _MISSING)
                        if cached is _MISSING:
                            cached = plain[value] = _construct_scalar(
                                resolve(ScalarNode, value, implicit_pair), value, event)
                        value = cached
                else:
                    value = _construct_scalar(tag, event.value, event)
                if event.anchor is not None:
                    anchor = event.anchor
                    if anchor in anchors:
                        raise _duplicate_anchor(anchor, anchors[anchor], mark)
                    anchors[anchor] = (value, 1, line, column)
            elif cls is _MappingStartEvent or cls is _SequenceStartEvent:
                count += 1
                mark = event.start_mark
                line = mark.line
                column = mark.column
                tag = event.tag
                if container is not None:
                    push((container, locs, in_map, key, key_line, key_column, meta))
                    if len(stack) >= max_depth:
                        raise _Refused("yaml-too-deep", f"nesting deeper than {max_depth} "
                                       "levels", line, column)
                anchor = event.anchor
                if cls is _MappingStartEvent:
                    if tag is not None and tag != "!" and tag != _MAP and tag != _SET:
                        raise _wrong_collection(tag, "mapping", mark)
                    container = _new_dict(Mapping)
                    locs = container.key_locs = {}
                    in_map = True
                else:
                    if tag is not None and tag != "!" and tag != _SEQ and tag != _OMAP and \
                            tag != _PAIRS:
                        raise _wrong_collection(tag, "sequence", mark)
                    container = _new_list(Sequence)
                    locs = container.item_locs = []
                    in_map = False
                container.loc = new_loc(location, (filename, line + 1, column + 1))
                key = _MISSING
                meta = [anchor, count, line, column, tag, None]
                if anchor is not None:
                    if anchor in anchors:
                        raise _duplicate_anchor(anchor, anchors[anchor], mark)
                    anchors[anchor] = (_OPEN, 0, line, column)
                if count > max_nodes:
                    raise _bomb(line, column)
                continue
            elif cls is _MappingEndEvent or cls is _SequenceEndEvent:
                value = container
                done = meta
                if stack:
                    container, locs, in_map, key, key_line, key_column, meta = pop()
                else:
                    container = locs = meta = None
                    in_map = False
                line = done[2]
                column = done[3]
                tag = done[4]
                if tag is not None:
                    if tag == _SET:
                        if done[5] is not None:
                            _merge(value, done[5], merged)
                        value = set(value)
                    elif tag == _OMAP or tag == _PAIRS:
                        value = _pairs(value)
                    elif done[5] is not None:
                        _merge(value, done[5], merged)
                elif done[5] is not None:
                    _merge(value, done[5], merged)
                if done[0] is not None:
                    anchors[done[0]] = (value, count - done[1] + 1, line, column)
            elif cls is _AliasEvent:
                mark = event.start_mark
                line = mark.line
                column = mark.column
                entry = anchors.get(event.anchor)
                if entry is None:
                    raise _syntax(f"found undefined alias {event.anchor!r}", mark)
                value = entry[0]
                if value is _OPEN:
                    raise _Refused("yaml-syntax", "found unconstructable recursive node",
                                   entry[2], entry[3])
                count += entry[1]
                if count > max_nodes:
                    raise _bomb(line, column)
            elif event is None:
                break
            elif cls is _DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _syntax("expected a single document in the stream, but found "
                                  "another document", event.start_mark)
                continue
            else:  # stream start and end, document end
                continue

            # attach the finished value to the collection being filled
            if in_map:
                if key is _MISSING:
                    if value.__class__ is Marker and value is _VALUE:
                        value = value.text
                    key = value
                    key_line = line
                    key_column = column
                    continue
                if value.__class__ is Marker:
                    raise _not_a_key(value, line, column)
                if key is _MERGE:
                    if meta[5] is None:
                        meta[5] = []
                    meta[5].append((value, line, column))
                    key = _MISSING
                    continue
                key_loc = new_loc(location, (filename, key_line + 1, key_column + 1))
                try:
                    seen = key in locs
                except TypeError:
                    diagnostics.error("wrong-type", "a mapping key must be a scalar", key_loc)
                    key = _MISSING
                    continue
                if seen and meta[4] != _SET:
                    first = locs[key]
                    diagnostics.warning(
                        "duplicate-key", f"key '{key}' appears twice in this mapping (first at "
                        f"line {first.line}, column {first.column}); the last value is used",
                        key_loc)
                container[key] = value
                locs[key] = key_loc
                key = _MISSING
            elif container is not None:
                if value.__class__ is Marker:
                    raise _not_a_key(value, line, column)
                container.append(value)
                locs.append(new_loc(location, (filename, line + 1, column + 1)))
            else:
                if value.__class__ is Marker:
                    raise _not_a_key(value, line, column)
                root = value
    finally:
        loader.dispose()
    return root


def _bomb(line: int, column: int) -> _Refused:
    return _Refused("yaml-bomb", f"the document would expand to more than {MAX_EXPANDED_NODES} "
                    "values through aliases; refusing it", line, column)


def _duplicate_anchor(name: str, first, mark) -> _Refused:
    return _syntax(f"found duplicate anchor {name!r} (first occurrence at line {first[2] + 1})",
                   mark)


def _wrong_collection(tag: str, found: str, mark) -> _Refused:
    if tag in _SCALAR_CONSTRUCTORS:
        return _syntax(f"expected a scalar node, but found {found}", mark)
    if tag in _MAPPING_TAGS:
        return _syntax(f"expected a mapping node, but found {found}", mark)
    if tag in _SEQUENCE_TAGS:
        return _syntax(f"expected a sequence node, but found {found}", mark)
    return _syntax(f"could not determine a constructor for the tag {tag!r}", mark)


def read_text(path: str, diagnostics: Diagnostics, display: str | None = None) -> str | None:
    """Read a UTF-8 text file within the size limit, or add a diagnostic.

    Only regular files are read: a device such as /dev/zero never ends and a named
    pipe blocks until someone writes to it.
    """
    name = display or path
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        diagnostics.error("file-not-found", f"cannot read '{name}': no such file", Location(name))
        return None
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        diagnostics.error("file-not-found", f"cannot read '{name}': it is {what}", Location(name))
        return None
    if info.st_size > MAX_FILE_BYTES:
        _too_large(name, info.st_size, diagnostics)
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        diagnostics.error("file-not-found", f"cannot read '{name}': {exc.strerror}", Location(name))
        return None
    if len(data) > MAX_FILE_BYTES:
        _too_large(name, len(data), diagnostics)
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        diagnostics.error("yaml-syntax", f"'{name}' is not UTF-8 text: {exc.reason}",
                          Location(name))
    return None


def _too_large(name: str, size: int, diagnostics: Diagnostics) -> None:
    diagnostics.error(
        "file-too-large",
        f"'{name}' is {size // (1024 * 1024)} MiB; the limit is "
        f"{MAX_FILE_BYTES // (1024 * 1024)} MiB (ORCHESTRATOR_MAX_TEMPLATE_BYTES)",
        Location(name),
    )


_BREAK = re.compile("\r\n|\r|\n|\x85|\u2028|\u2029")


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a reader error's offset (bytes of UTF-8 for libyaml)."""
    if _Loader is not yaml.SafeLoader:
        offset = len(text.encode("utf-8", "surrogatepass")[:max(offset, 0)].decode(
            "utf-8", "replace"))
    prefix = text[:offset]
    breaks = list(_BREAK.finditer(prefix))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, offset - start + 1


def load_yaml(text: str, filename: str, diagnostics: Diagnostics):
    """Parse one YAML document into positioned values; None (with a diagnostic) on failure.

    An empty document is None too, without a diagnostic: callers that need a value
    tell the two apart by the diagnostics' error count.
    """
    if len(text) > MAX_FILE_BYTES // 4 and len(
            text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        diagnostics.error("file-too-large", f"'{filename}' exceeds {MAX_FILE_BYTES} bytes",
                          Location(filename))
        return None
    collecting = gc.isenabled()
    if collecting:  # the loader allocates many objects and no cycles: skip the collector
        gc.disable()
    try:
        return _compose(text, filename, diagnostics)
    except _Refused as exc:
        if exc.line is None:
            loc = Location(filename)
        else:
            loc = Location(filename, exc.line + 1, exc.column + 1)
        diagnostics.error(exc.code, exc.message, loc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        problem = f"{exc.problem or exc.context}"
        if "nesting depth" in problem:  # libyaml >= 0.2.6 stops deep flow collections itself
            diagnostics.error("yaml-too-deep", f"nesting deeper than {MAX_DEPTH} levels", loc)
        else:
            diagnostics.error("yaml-syntax", problem, loc)
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, exc.position)
        diagnostics.error("yaml-syntax", str(exc).splitlines()[0], Location(filename, line,
                                                                             column))
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        diagnostics.error("yaml-syntax", str(exc).splitlines()[0] if str(exc) else
                          type(exc).__name__, Location(filename))
    except RecursionError:
        diagnostics.error("yaml-too-deep", "the document is nested too deeply to load",
                          Location(filename))
    finally:
        if collecting:
            gc.enable()
    return None
