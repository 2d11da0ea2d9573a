"""Secrets as a taint: a value computed from a secret is secret, end to end.

A secret string is a :class:`Secret`, a ``str`` subclass, so every consumer that handles
text keeps working while anything that shows values can tell it apart and mask it. Taint
starts where a secret enters (a secret input's value, a secret property, a secret
attribute or operation output at run time) and spreads through the functions that compute
new values from old ones (``concat``, ``join``, ``token``, and a path into a secret map or
list). ``repr`` of a Secret is masked, so a diagnostic that quotes a value does not leak it.

Only strings are tainted: a secret number or boolean is masked by its name alone.
"""
from __future__ import annotations

import functools
import re

SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|passw|secret|token|private_?key|credential|"
                         r"api_?key", re.I)
REPR_MASK = "'******'"


class Secret(str):
    """A string computed from a secret."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REPR_MASK

    def __reduce__(self):
        return Secret, (str(self),)


def taint(value):
    """``value`` with every string in it marked secret (maps and lists are copied)."""
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict):
        return {k: taint(v) for k, v in value.items()}
    if isinstance(value, list):
        return [taint(v) for v in value]
    if isinstance(value, tuple):
        return tuple(taint(v) for v in value)
    return value


def tainted(value) -> bool:
    """Whether anything in ``value`` (plain data, or a Deferred's arguments) is secret."""
    if isinstance(value, Secret):
        return True
    if isinstance(value, str) or value is None:
        return False
    if isinstance(value, dict):
        return any(tainted(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(tainted(v) for v in value)
    args = getattr(value, "args", None)  # a functions.Deferred
    return isinstance(args, tuple) and any(tainted(a) for a in args)


def untaint(value):
    """A copy with every Secret turned back into a plain ``str``: for what must use the
    value itself (sealing it, a playbook's extra vars), never for what is shown."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {k: untaint(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [untaint(v) for v in value]
    return value


def keep_taint(result, *sources):
    """``result`` marked secret when any of ``sources`` is (a value computed from them)."""
    if isinstance(result, str) and not isinstance(result, Secret) and any(
            tainted(s) for s in sources):
        return Secret(result)
    return result


def is_secret(name, schema: dict | None = None) -> bool:
    """A name that holds a secret, or a definition whose metadata says ``secret: true``."""
    metadata = schema.get("metadata") if isinstance(schema, dict) else None
    if isinstance(metadata, dict) and str(metadata.get("secret", "")).lower() == "true":
        return True
    return _secret_name(str(name))


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    # Masking walks every key of every value shown (a polled status, a list of resources):
    # the same few hundred names again and again.
    return bool(SECRET_NAME.search(name))
