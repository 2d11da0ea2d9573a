"""Masking of secrets (passwords, tokens, keys, credentials) in anything shown to users."""
from __future__ import annotations

from orchestrator.tosca.secret import SECRET_NAME, Secret, SecretValue, is_secret, tainted

MASK = "******"


def mask(value, secret_values: frozenset = frozenset()):
    """Copy of plain data with values under secret-looking keys, values computed from a
    secret (a :class:`SecretValue`) and known secret values (also inside a longer text)
    replaced by a mask."""
    if isinstance(value, SecretValue):
        return MASK
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if is_secret(key) and item not in (None, "", {}, []) and not isinstance(
                    item, (dict, list, bool)):  # a flag such as secret: true is no secret
                out[key] = MASK
            elif is_secret(key) and isinstance(item, dict) and _is_function(item) and \
                    not tainted(item):
                out[key] = item  # a reference such as {get_input: password} is not a secret
            else:
                out[key] = mask(item, secret_values)
        return out
    if isinstance(value, list):
        return [mask(v, secret_values) for v in value]
    if isinstance(value, str) and secret_values and _contains(value, secret_values):
        return MASK
    return value


def _contains(text: str, secret_values: frozenset) -> bool:
    """The text is, or has in it, a known secret (short ones only when they are all of it:
    a one-letter secret is in most texts)."""
    return text in secret_values or any(
        len(s) >= 4 and s in text for s in secret_values if isinstance(s, str))


def _is_function(item: dict) -> bool:
    return len(item) == 1 and str(next(iter(item))).startswith(("get_", "concat", "join", "token"))


def mask_topology(data: dict) -> dict:
    """Mask a Topology.to_dict(): secret inputs' values and defaults, and every place where
    their values or secret-named properties appear."""
    secrets = frozenset(
        str(i["value"]) for i in data.get("inputs", []) if i.get("secret") and
        isinstance(i.get("value"), (str, int)) and str(i["value"]))
    inputs = []
    for item in data.get("inputs", []):
        item = dict(item)
        if item.get("secret"):
            for key in ("value", "default"):
                if item.get(key) not in (None, ""):
                    item[key] = MASK
        inputs.append(item)
    result = mask({k: v for k, v in data.items() if k != "inputs"}, secrets)
    result["inputs"] = inputs
    return result


__all__ = ["MASK", "SECRET_NAME", "Secret", "SecretValue", "is_secret", "mask", "mask_topology",
           "tainted"]
