"""Import maps: URL patterns -> local files, so that templates with remote imports parse
offline. ``{ref}`` matches one or more path segments, ``*`` one segment's characters."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import resources
from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca.yamlsource import load_yaml, read_text, where

SHIPPED_MAP = "import-map.yaml"


@dataclass(frozen=True)
class MapEntry:
    pattern: re.Pattern
    target: str  # local path (absolute)
    source: str  # the map file it came from

    @property
    def root(self) -> str:
        """The folder a mapped file (and what it imports) stays in: the map file's folder
        and the target's fixed part. A ``{ref}`` taken from the URL never leaves it."""
        fixed = os.path.dirname(os.path.normpath(self.target.split("{", 1)[0] + "x"))
        return os.path.commonpath([os.path.dirname(os.path.abspath(self.source)), fixed])


@dataclass
class ImportMap:
    entries: list[MapEntry] = field(default_factory=list)

    def lookup(self, url: str) -> str | None:
        found = self.lookup_entry(url)
        return found[0] if found else None

    def lookup_entry(self, url: str) -> tuple[str, str] | None:
        """(local path, the folder it must stay in) of the first entry matching ``url``."""
        for entry in self.entries:
            match = entry.pattern.fullmatch(url)
            if match:
                return entry.target.format(**match.groupdict()), entry.root
        return None

    @classmethod
    def load(cls, extra_files: list[str] | tuple[str, ...] = (), diagnostics=None) -> "ImportMap":
        """User maps (CLI, ORCHESTRATOR_IMPORT_MAP, XDG config) before the shipped one."""
        diagnostics = diagnostics if diagnostics is not None else Diagnostics()
        files = list(extra_files)
        env = os.environ.get("ORCHESTRATOR_IMPORT_MAP")
        if env:
            files += [p for p in env.split(os.pathsep) if p]
        user = resources.config_dir() / SHIPPED_MAP
        if user.is_file():
            files.append(str(user))
        shipped = resources.types_dir() / SHIPPED_MAP
        if shipped.is_file():
            files.append(str(shipped))
        result = cls()
        for path in files:
            result.entries.extend(_read_map(path, diagnostics))
        return result


def _pattern(url: str) -> re.Pattern:
    """``{ref}`` matches one or more path segments; ``*`` matches within one segment."""
    out = ""
    for part in re.split(r"(\{ref\}|\*)", url):
        if part == "{ref}":
            out += r"(?P<ref>.+?)"
        elif part == "*":
            out += r"[^/]*"
        else:
            out += re.escape(part)
    return re.compile(out)


def _read_map(path: str, diagnostics: Diagnostics) -> list[MapEntry]:
    text = read_text(path, diagnostics)
    if text is None:
        return []
    data = load_yaml(text, path, diagnostics)
    items = data.get("imports", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        diagnostics.error("invalid-import", "an import map is a list of {url, path} entries",
                          Location(path))
        return []
    base = Path(path).resolve().parent
    entries = []
    for index, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("url"), str)
                and isinstance(item.get("path"), str)):
            diagnostics.error("invalid-import", "each import map entry needs 'url' and 'path'",
                              where(items, index, Location(path)))
            continue
        entries.append(MapEntry(_pattern(item["url"]), str(base / item["path"]), path))
    return entries
