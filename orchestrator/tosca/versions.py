"""TOSCA versions (``major.minor[.fix[.qualifier[-build]]]``) compared as versions.

YAML reads ``20.04`` as the float 20.04 and ``7`` as an integer, while an input given
as ``"20.04"`` stays a string: a ``version`` value and the arguments of its constraints
are compared here by their parts, whatever YAML made of them.
"""
from __future__ import annotations

import re

_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.([A-Za-z0-9_]+)(?:-(\d+))?)?$")

#: constraint operators and how a comparison result (-1, 0, 1) satisfies them
_COMPARISONS = {
    "equal": lambda c: c == 0,
    "greater_than": lambda c: c > 0,
    "greater_or_equal": lambda c: c >= 0,
    "less_than": lambda c: c < 0,
    "less_or_equal": lambda c: c <= 0,
}
OPERATORS = frozenset(_COMPARISONS) | {"in_range", "valid_values"}


def version_text(value) -> str | None:
    """The text of a version written as a string, an integer or a float; else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()
    return text if _VERSION.match(text) else None


def version_key(value) -> tuple | None:
    """A sortable key: (major, minor, fix, qualifier, build); None when not a version."""
    text = version_text(value)
    if text is None:
        return None
    major, minor, fix, qualifier, build = _VERSION.match(text).groups()
    return (int(major), int(minor or 0), int(fix or 0), qualifier or "", int(build or 0))


def _compare(a: tuple, b: tuple) -> int:
    return (a > b) - (a < b)


def satisfies(value, operator: str, argument) -> bool:
    """Whether version ``value`` meets ``{operator: argument}``; ValueError when the
    constraint itself is malformed (an argument that is not a version)."""
    key = version_key(value)
    if key is None:
        raise ValueError(f"{value!r} is not a version")
    if operator in _COMPARISONS:
        return _COMPARISONS[operator](_compare(key, _argument(argument)))
    if operator == "valid_values":
        if not isinstance(argument, list):
            raise ValueError("valid_values takes a list")
        return any(key == _argument(item) for item in argument)
    if operator == "in_range":
        if not isinstance(argument, list) or len(argument) != 2:
            raise ValueError("in_range takes [lower, upper]")
        low, high = (_argument(item) for item in argument)
        return low <= key <= high
    raise ValueError(f"'{operator}' does not apply to versions")


def _argument(value) -> tuple:
    key = version_key(value)
    if key is None:
        raise ValueError(f"{value!r} is not a version")
    return key
