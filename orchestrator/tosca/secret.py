"""Secrets as a taint: a value computed from a secret is secret, end to end.

A secret value is a :class:`SecretValue`: a secret string is a :class:`Secret` (a ``str``
subclass), a secret number a :class:`SecretInt` or :class:`SecretFloat`, a secret boolean a
:class:`SecretBool` (an ``int`` subclass: ``bool`` cannot be subclassed), and a secret map
or list holds secret leaves. Every consumer that handles the plain value keeps working,
while anything that shows values can tell a secret apart and mask it. Taint starts where a
secret enters (a secret input's value, a secret property, a secret attribute or operation
output at run time) and spreads through the functions that compute new values from old
ones (``concat``, ``join``, ``token``, and a path into a secret map or list). ``repr`` of a
secret is masked, so a diagnostic that quotes a value does not leak it; ``str`` and JSON
give the value itself (:func:`untaint` gives it back as plain data).
"""
from __future__ import annotations

import functools
import json
import re

SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|passw|secret|token|private_?key|credential|"
                         r"api_?key", re.I)
REPR_MASK = "'******'"


class SecretValue:
    """What every secret scalar is (a marker: masking and sealing look for it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REPR_MASK

    def reveal(self):
        """The plain value (for sealing it, or giving it to a playbook; never to show)."""
        raise NotImplementedError


class Secret(SecretValue, str):
    """A string computed from a secret."""

    __slots__ = ()

    def reveal(self) -> str:
        return str.__str__(self)

    def __reduce__(self):
        return Secret, (str(self),)


class SecretInt(SecretValue, int):
    """A secret integer (a PIN, a port kept secret)."""

    __slots__ = ()
    __str__ = int.__repr__

    def reveal(self) -> int:
        return int(self)

    def __reduce__(self):
        return SecretInt, (int(self),)


class SecretFloat(SecretValue, float):
    __slots__ = ()
    __str__ = float.__repr__

    def reveal(self) -> float:
        return float(self)

    def __reduce__(self):
        return SecretFloat, (float(self),)


class SecretBool(SecretValue, int):
    """A secret boolean: 0 or 1, shown as ``True``/``False`` like a bool (its JSON form is
    0 or 1, so :func:`untaint` it before anything but masking or sealing sees it)."""

    __slots__ = ()

    def __str__(self) -> str:
        return str(bool(self))

    def reveal(self) -> bool:
        return bool(self)

    def __reduce__(self):
        return SecretBool, (bool(self),)


def taint(value):
    """``value`` with every scalar in it marked secret (maps and lists are copied)."""
    if isinstance(value, SecretValue) or value is None:
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, bool):
        return SecretBool(value)
    if isinstance(value, int):
        return SecretInt(value)
    if isinstance(value, float):
        return SecretFloat(value)
    if isinstance(value, dict):
        return {k: taint(v) for k, v in value.items()}
    if isinstance(value, list):
        return [taint(v) for v in value]
    if isinstance(value, tuple):
        return tuple(taint(v) for v in value)
    return value


def tainted(value) -> bool:
    """Whether anything in ``value`` (plain data, or a Deferred's arguments) is secret."""
    if isinstance(value, SecretValue):
        return True
    if isinstance(value, (str, int, float)) or value is None:
        return False
    if isinstance(value, dict):
        return any(tainted(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(tainted(v) for v in value)
    args = getattr(value, "args", None)  # a functions.Deferred
    return isinstance(args, tuple) and any(tainted(a) for a in args)


def untaint(value):
    """A copy with every secret turned back into its plain value: for what must use the
    value itself (sealing it, a playbook's extra vars), never for what is shown."""
    if isinstance(value, SecretValue):
        return value.reveal()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {k: untaint(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [untaint(v) for v in value]
    return value


def secret_texts(value, shortest: int = 4) -> set[str]:
    """The texts of the secrets in ``value`` (and their JSON-escaped forms), to find and
    redact them in what a program printed; booleans and texts shorter than ``shortest``
    are left out (they are in most texts)."""
    found: set[str] = set()
    if isinstance(value, SecretValue):
        if not isinstance(value, SecretBool):
            text = str(value.reveal())
            if len(text) >= shortest:
                found.update((text, json.dumps(text)[1:-1]))
    elif isinstance(value, dict):
        for item in value.values():
            found |= secret_texts(item, shortest)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= secret_texts(item, shortest)
    return found


def redact(text: str, secrets, mask: str = "******") -> str:
    """``text`` with every one of ``secrets`` (texts) in it replaced by ``mask``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, mask)
    return text


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
