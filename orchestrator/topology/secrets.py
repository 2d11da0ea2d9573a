"""Masking of secrets (passwords, tokens, keys, credentials) in anything shown to users."""
from __future__ import annotations

import functools
import re

MASK = "******"
SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|passw|secret|token|private_?key|credential|"
                         r"api_?key", re.I)


def is_secret(name: str, schema: dict | None = None) -> bool:
    """A name that holds a secret, or a definition whose metadata says ``secret: true``."""
    metadata = (schema or {}).get("metadata") if isinstance(schema, dict) else None
    if isinstance(metadata, dict) and str(metadata.get("secret", "")).lower() == "true":
        return True
    return _secret_name(str(name))


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    # Masking walks every key of every value shown (a polled status, a list of resources):
    # the same few hundred names again and again.
    return bool(SECRET_NAME.search(name))


def mask(value, secret_values: frozenset = frozenset()):
    """Copy of plain data with values under secret-looking keys (and known secret values)
    replaced by a mask."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if is_secret(key) and item not in (None, "", {}, []) and not isinstance(
                    item, (dict, list, bool)):  # a flag such as secret: true is no secret
                out[key] = MASK
            elif is_secret(key) and isinstance(item, dict) and _is_function(item):
                out[key] = item  # a reference such as {get_input: password} is not a secret
            else:
                out[key] = mask(item, secret_values)
        return out
    if isinstance(value, list):
        return [mask(v, secret_values) for v in value]
    if isinstance(value, str) and value in secret_values:
        return MASK
    return value


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
