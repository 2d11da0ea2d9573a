"""YAML merge keys (``<<``) resolved exactly as the installed PyYAML resolves them.

Which merged mapping wins a key that several provide, and in what order the keys come,
has changed between PyYAML releases: 6.0.3 lets the earlier mappings of a ``<<: [...]``
list win; 6.0.4 keeps the first occurrence of each key *node* it meets, and tells nodes
apart by the identity of their text, so that a one-character key behaves otherwise than a
longer one (yaml/pyyaml#953). A template must mean the same to us as to
``yaml.safe_load``, so instead of re-implementing either rule this module hands the
mapping's pairs, as nodes, to the installed ``SafeConstructor.flatten_mapping`` and reads
back the pairs it keeps, in its order, the later pair of a key winning as it does in
``construct_mapping``.

The nodes stand in for the scanner's: one key node per key of each mapping, shared by
every alias of that mapping, with a text object of its own (CPython shares the empty and
the one-character strings, and so do these), and the full flattened pair list of a
mapping that had merges of its own, so that merging it again sees what PyYAML would see.
"""
from __future__ import annotations

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_TAG = "tag:yaml.org,2002:"
_MERGE_TAG, _STR, _MAP, _SEQ = _TAG + "merge", _TAG + "str", _TAG + "map", _TAG + "seq"
_CONSTRUCTOR = SafeConstructor()


class MergeError(Exception):
    """A ``<<`` value that is not a mapping or a list of mappings (0-based position)."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class _KeyNode(ScalarNode):
    """A key as flatten_mapping sees it, carrying the key, its value and its location."""

    def __init__(self, key, value, loc):
        text = key if isinstance(key, str) else str(key)
        super().__init__(_STR, (text + " ")[:-1], None, None)  # a text object of its own
        self.key, self.data, self.loc = key, value, loc


_MERGE_KEY = ScalarNode(_MERGE_TAG, "<<", None, None)


def kind(value) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "sequence"
    return "scalar"


def _key_nodes(mapping: dict) -> list:
    """A mapping's pairs as flatten_mapping sees them: a key node of its own per key."""
    locs = getattr(mapping, "key_locs", None) or {}
    return [(_KeyNode(key, value, locs.get(key)), None) for key, value in mapping.items()]


class MergedPairs:
    """The key nodes of each mapping of one document, kept while it is being loaded."""

    def __init__(self):
        self._pairs: dict = {}  # id(mapping) -> (mapping, [(key node, None), ...])

    def of(self, mapping: dict) -> list:
        entry = self._pairs.get(id(mapping))
        if entry is None:
            entry = self._pairs[id(mapping)] = (mapping, _key_nodes(mapping))  # keeps it alive
        return entry[1]

    def flatten(self, mapping: dict, merges: list) -> None:
        """Apply ``merges`` ([(value, line, column)] of the ``<<`` keys, in order) to the
        finished ``mapping`` in place; its ``key_locs`` follow the keys that win."""
        node = MappingNode(_MAP, [])
        for value, line, column in merges:
            node.value.append((_MERGE_KEY, self._source(value, line, column)))
        node.value.extend(_key_nodes(mapping))
        _CONSTRUCTOR.flatten_mapping(node)
        merged: dict = {}
        locs: dict = {}
        for key_node, _ in node.value:
            merged[key_node.key] = key_node.data
            if key_node.loc is not None:
                locs[key_node.key] = key_node.loc
        mapping.clear()
        mapping.update(merged)
        mapping.key_locs = locs
        self._pairs[id(mapping)] = (mapping, node.value)

    def _source(self, value, line: int, column: int):
        if isinstance(value, dict):
            return MappingNode(_MAP, self.of(value))
        if isinstance(value, list):
            items = []
            for item in value:
                if not isinstance(item, dict):
                    raise MergeError("expected a mapping for merging, but found "
                                     f"{kind(item)}", line, column)
                items.append(MappingNode(_MAP, self.of(item)))
            return SequenceNode(_SEQ, items)
        raise MergeError("expected a mapping or list of mappings for merging, but found "
                         f"{kind(value)}", line, column)
