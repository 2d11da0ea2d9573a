"""Offline import resolution.

An import is looked up, in order: a URL -> local file map (user maps first, then the
one shipped in ``tosca_types/import-map.yaml``), a path relative to the importing
file, and the bundled ``tosca_types/`` directory. Nothing is fetched from the
network unless ``allow_remote`` is set. Every file is loaded once, so circular
imports are harmless.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import resources
from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca.yamlsource import Mapping, Sequence, load_yaml, read_text, where

REMOTE_SCHEMES = ("http", "https", "ftp")
SHIPPED_MAP = "import-map.yaml"


@dataclass(frozen=True)
class MapEntry:
    pattern: re.Pattern
    target: str  # local path (absolute)
    source: str  # the map file it came from


@dataclass
class ImportMap:
    entries: list[MapEntry] = field(default_factory=list)

    def lookup(self, url: str) -> str | None:
        for entry in self.entries:
            match = entry.pattern.fullmatch(url)
            if match:
                return entry.target.format(**match.groupdict())
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


@dataclass
class SourceDoc:
    """One loaded YAML file: its display name, where it came from and its content."""

    name: str
    origin: str  # absolute path or URL
    data: Mapping
    namespace_prefix: str | None = None


def display_name(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") or len(rel) < len(path) else path


def is_remote(ref: str) -> bool:
    return urllib.parse.urlsplit(ref).scheme in REMOTE_SCHEMES


@dataclass
class ImportResolver:
    diagnostics: Diagnostics
    import_map: ImportMap = field(default_factory=ImportMap)
    allow_remote: bool = False
    docs: list[SourceDoc] = field(default_factory=list)
    _loaded: set = field(default_factory=set)
    #: archive-internal display prefix, for CSARs ("x.csar!/")
    display_root: tuple[str, str] | None = None

    def load_root(self, path: str, name: str | None = None) -> SourceDoc | None:
        origin = str(Path(path).resolve())
        return self._load_local(origin, name or path, Location(name or path))

    def _display(self, origin: str) -> str:
        if self.display_root and origin.startswith(self.display_root[0]):
            return self.display_root[1] + os.path.relpath(origin, self.display_root[0])
        return display_name(origin)

    def _load_local(self, origin: str, name: str, at: Location,
                    prefix: str | None = None) -> SourceDoc | None:
        if origin in self._loaded:
            return None
        self._loaded.add(origin)
        text = read_text(origin, self.diagnostics, name)
        if text is None:
            return None
        return self._add(origin, name, text, prefix)

    def _add(self, origin: str, name: str, text: str, prefix: str | None) -> SourceDoc | None:
        errors = self.diagnostics.error_count
        data = load_yaml(text, name, self.diagnostics)
        if data is None and self.diagnostics.error_count > errors:
            return None  # not YAML, or refused: load_yaml said why
        if not isinstance(data, Mapping):
            what = "is empty" if data is None else f"is a YAML {_yaml_kind(data)}"
            self.diagnostics.error("not-a-mapping", f"the document {what}; a TOSCA file must be a "
                                   "YAML mapping", Location(name, 1, 1))
            return None
        doc = SourceDoc(name, origin, data, prefix)
        self.docs.append(doc)
        self._follow(doc)
        return doc

    def _follow(self, doc: SourceDoc) -> None:
        imports = doc.data.get("imports")
        if imports is None:
            return
        if not isinstance(imports, list):
            self.diagnostics.error("wrong-type", "'imports' must be a list",
                                   where(doc.data, "imports"))
            return
        repositories = doc.data.get("repositories") if isinstance(doc.data.get("repositories"),
                                                                  dict) else {}
        for index, entry in enumerate(imports):
            at = where(imports, index, where(doc.data, "imports"))
            spec = _import_spec(entry)
            if spec is None:
                self.diagnostics.error(
                    "invalid-import",
                    "an import is a file name, {file: ..., repository: ..., namespace_prefix: "
                    "...}, or {name: file}", at)
                continue
            ref, repository, prefix = spec
            if repository:
                repo = repositories.get(repository)
                url = repo.get("url") if isinstance(repo, dict) else repo
                if not isinstance(url, str):
                    self.diagnostics.error("invalid-import",
                                           f"import names unknown repository '{repository}'", at)
                    continue
                ref = url.rstrip("/") + "/" + ref.lstrip("/")
            self._resolve(doc, ref, at, prefix)

    def _resolve(self, doc: SourceDoc, ref: str, at: Location, prefix: str | None) -> None:
        if not is_remote(ref) and is_remote(doc.origin):
            ref = urllib.parse.urljoin(doc.origin, ref)
        if ref.startswith("file://"):
            ref = urllib.parse.unquote(urllib.parse.urlsplit(ref).path)
        if is_remote(ref):
            local = self.import_map.lookup(ref)
            if local:
                if os.path.isfile(local):
                    self._load_local(local, self._display(local), at, prefix)
                else:
                    self.diagnostics.error("import-not-found",
                                           f"import '{ref}' is mapped to '{local}', which does "
                                           "not exist", at)
                return
            if self.allow_remote:
                self._fetch(ref, at, prefix)
                return
            self.diagnostics.error(
                "import-remote-unmapped",
                f"remote import '{ref}' is not fetched: no network access without "
                "--allow-remote-imports",
                at,
                hint="map it to a local file with --import-map FILE containing "
                f"'- {{url: \"{ref}\", path: ./local-copy.yaml}}', or pass --allow-remote-imports",
            )
            return
        candidates = []
        if not is_remote(doc.origin):
            candidates.append(Path(doc.origin).parent / ref)
        candidates.append(resources.types_dir() / ref)
        for candidate in candidates:
            if _is_file(candidate):
                origin = str(candidate.resolve())
                self._load_local(origin, self._display(origin), at, prefix)
                return
        bundled = sorted(str(p.relative_to(resources.types_dir()))
                         for p in resources.types_dir().rglob("*.yaml"))
        self.diagnostics.error(
            "import-not-found",
            f"import '{ref}' not found next to '{doc.name}' nor in the bundled types",
            at, hint=did_you_mean(ref, bundled))

    def _fetch(self, url: str, at: Location, prefix: str | None) -> None:
        if url in self._loaded:
            return
        self._loaded.add(url)
        import urllib.request  # only with --allow-remote-imports: keep it out of startup

        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (opt-in)
                text = response.read(20 * 1024 * 1024 + 1).decode("utf-8")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self.diagnostics.error("import-fetch-failed", f"cannot fetch '{url}': {exc}", at)
            return
        self._add(url, url, text, prefix)


def _is_file(path: Path) -> bool:
    """Path.is_file that says False for names the OS refuses (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _yaml_kind(data) -> str:
    if isinstance(data, list):
        return "sequence"
    if isinstance(data, (set, frozenset)):
        return "set"
    return "scalar"


def _import_spec(entry) -> tuple[str, str | None, str | None] | None:
    """(file, repository, namespace_prefix) from any of TOSCA's import forms."""
    if isinstance(entry, str) and entry:
        return entry, None, None
    if isinstance(entry, dict):
        if "file" in entry:
            ref = entry.get("file")
            repo = entry.get("repository")
            prefix = entry.get("namespace_prefix")
            if isinstance(ref, str) and ref and (repo is None or isinstance(repo, str)):
                return ref, repo, prefix if isinstance(prefix, str) else None
            return None
        if len(entry) == 1:  # TOSCA 1.0 named import: {name: file} or {name: {file: ...}}
            value = next(iter(entry.values()))
            return _import_spec(value)
    return None


__all__ = ["ImportMap", "ImportResolver", "SourceDoc", "Sequence", "is_remote"]
