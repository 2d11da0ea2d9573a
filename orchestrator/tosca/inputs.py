"""Input values from ``-i FILE`` (repeatable; later files win) and ``--set key=value``."""
from __future__ import annotations

from typing import Any, Iterable

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca.yamlsource import load_yaml, read_text, where


def gather(files: Iterable[str], sets: Iterable[str],
           diags: Diagnostics) -> dict[str, tuple[Any, Location]]:
    """Map input name -> (value, where it was given)."""
    values: dict[str, tuple[Any, Location]] = {}
    for path in files:
        text = read_text(path, diags)
        if text is None:
            continue
        data = load_yaml(text, path, diags)
        if data is None:
            continue
        if isinstance(data, dict) and set(data) == {"inputs"} and isinstance(data["inputs"],
                                                                              dict):
            data = data["inputs"]
        if not isinstance(data, dict):
            diags.error("invalid-input-file", "an inputs file must be a mapping of input names "
                        "to values", Location(path, 1, 1))
            continue
        for key, value in data.items():
            values[str(key)] = (value, where(data, key, Location(path)))
    for index, item in enumerate(sets, 1):
        key, sep, raw = item.partition("=")
        loc = Location(f"--set #{index}")
        if not sep or not key.strip():
            diags.error("invalid-input-file", f"--set expects key=value, got {item!r}", loc)
            continue
        value = ""
        if raw.strip():
            scratch = Diagnostics()
            value = load_yaml(raw, loc.file, scratch)
            refused = [d for d in scratch.errors if d.code != "yaml-syntax"]
            if refused:  # too deep, an alias bomb, too large: say so, at the --set
                diags.extend(refused)
                continue
            if scratch.has_errors:  # not YAML: the text itself
                value = raw
        values[key.strip()] = (value, loc)
    return values
