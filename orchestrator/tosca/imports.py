"""Offline, confined import resolution.

An import is looked up, in order: a URL -> local file map (user maps first, then the
one shipped in ``tosca_types/import-map.yaml``), a path relative to the importing
file, and the bundled ``tosca_types/`` directory. A relative path never leaves the
folder its importer belongs to (the template's folder or CSAR, the bundled types, an
import map's folder), symbolic links included; absolute paths and ``file://`` URLs are
read only with ``allow_local`` (the CLI's --allow-local-imports), never by the service.
An import that is absent, unreadable or refused gets one message, and a diagnostic
never quotes a file that is not TOSCA. Nothing is fetched from the network unless
``allow_remote`` is set (then through ``fetch.Fetcher``: https, public addresses,
cached). Every file is loaded once, so circular imports are harmless.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import resources
from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca.fetch import Fetcher, FetchError
from orchestrator.tosca.importmap import SHIPPED_MAP, ImportMap, MapEntry  # noqa: F401
from orchestrator.tosca.yamlsource import Mapping, Sequence, load_yaml, read_text, where

REMOTE_SCHEMES = ("http", "https", "ftp")
TOSCA_SECTIONS = frozenset({
    "tosca_definitions_version", "tosca_default_namespace", "template_name", "template_author",
    "template_version", "namespace", "metadata", "description", "dsl_definitions",
    "repositories", "imports", "topology_template", "node_types", "relationship_types",
    "capability_types", "data_types", "interface_types", "artifact_types", "group_types",
    "policy_types", "profile", "functions", "service_template"})


@dataclass
class SourceDoc:
    """One loaded YAML file: its display name, where it came from and its content."""

    name: str
    origin: str  # absolute path or URL
    data: Mapping
    namespace_prefix: str | None = None
    #: the folder this file's relative imports must stay in (None: a fetched file, or a
    #: file read with --allow-local-imports, which may import what its user can read)
    root: str | None = None


def display_name(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") or len(rel) < len(path) else path


def is_remote(ref: str) -> bool:
    return urllib.parse.urlsplit(ref).scheme in REMOTE_SCHEMES


def within(path: str, root: str) -> bool:
    """Whether ``path`` (already a real path) is ``root`` (made real here) or under it."""
    real_root = _real(root)
    try:
        return os.path.commonpath([path, real_root]) == real_root
    except ValueError:
        return False


@dataclass
class ImportResolver:
    """Follows imports under a policy: without ``allow_local``, relative paths only, each
    confined to the importing file's root (the template's folder or CSAR, the bundled
    types, an import map's folder); ``allow_remote`` with a ``fetcher`` for the rest."""

    diagnostics: Diagnostics
    import_map: ImportMap = field(default_factory=ImportMap)
    allow_remote: bool = False
    docs: list[SourceDoc] = field(default_factory=list)
    _loaded: set = field(default_factory=set)
    #: archive-internal display prefix, for CSARs ("x.csar!/")
    display_root: tuple[str, str] | None = None
    allow_local: bool = False
    fetcher: Fetcher | None = None
    #: the remote imports read, URL -> sha256 of the bytes used
    remote_imports: dict[str, str] = field(default_factory=dict)

    def load_root(self, path: str, name: str | None = None,
                  root: str | None = None) -> SourceDoc | None:
        origin = _real(path)
        root = _real(root) if root else os.path.dirname(origin)
        return self._load_local(origin, name or path, Location(name or path),
                                root=None if self.allow_local else root, imported=False)

    def _display(self, origin: str) -> str:
        if self.display_root and origin.startswith(self.display_root[0]):
            return self.display_root[1] + os.path.relpath(origin, self.display_root[0])
        return display_name(origin)

    def _load_local(self, origin: str, name: str, at: Location, prefix: str | None = None,
                    root: str | None = None, imported: bool = True,
                    ref: str | None = None) -> SourceDoc | None:
        if origin in self._loaded:
            return None
        self._loaded.add(origin)
        if not imported:
            text = read_text(origin, self.diagnostics, name)
            return None if text is None else self._add(origin, name, text, prefix, root)
        scratch = Diagnostics()
        text = read_text(origin, scratch, name)
        if text is None:
            if self.allow_local or not any(d.code == "file-not-found" for d in scratch):
                self.diagnostics.extend(scratch)  # too large, not UTF-8: a file of its own
            else:  # unreadable looks like absent, and like outside the folder
                self._unresolved(ref or name, at)
            return None
        return self._add(origin, name, text, prefix, root, at)

    def _add(self, origin: str, name: str, text: str, prefix: str | None,
             root: str | None, at: Location | None = None) -> SourceDoc | None:
        if at is not None:  # an import: quote nothing of a file that is not TOSCA
            scratch = Diagnostics()
            data = load_yaml(text, name, scratch)
            if not is_tosca_definitions(data, text):
                self.diagnostics.error(
                    "not-a-tosca-file", f"import '{name}' is not a TOSCA definitions file "
                    "(a YAML mapping with tosca_definitions_version)", at)
                return None
            self.diagnostics.extend(scratch)
            if data is None:
                return None
        else:
            errors = self.diagnostics.error_count
            data = load_yaml(text, name, self.diagnostics)
            if data is None and self.diagnostics.error_count > errors:
                return None  # not YAML, or refused: load_yaml said why
            if not isinstance(data, Mapping):
                what = "is empty" if data is None else f"is a YAML {_yaml_kind(data)}"
                self.diagnostics.error("not-a-mapping", f"the document {what}; a TOSCA file "
                                       "must be a YAML mapping", Location(name, 1, 1))
                return None
        doc = SourceDoc(name, origin, data, prefix, root)
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

    def _unresolved(self, ref: str, at: Location) -> None:
        """One message for absent, unreadable and refused (outside every allowed folder)
        imports, so that no caller learns which files exist where it may not look."""
        bundled = sorted(str(p.relative_to(resources.types_dir()))
                         for p in resources.types_dir().rglob("*.yaml"))
        self.diagnostics.error(
            "import-not-found",
            f"import '{ref}' cannot be resolved: no such file within the template's folder, "
            "the bundled types or an import map", at, hint=did_you_mean(ref, bundled))

    def _resolve(self, doc: SourceDoc, ref: str, at: Location, prefix: str | None) -> None:
        scheme = urllib.parse.urlsplit(ref).scheme.lower()
        if is_remote(doc.origin) and not is_remote(ref):
            if scheme == "file" or os.path.isabs(ref):
                self._unresolved(ref, at)  # a fetched file never reads a local one
                return
            ref = urllib.parse.urljoin(doc.origin, ref)
        elif scheme == "file" or os.path.isabs(ref):
            self._local_absolute(ref, at, prefix)
            return
        if is_remote(ref):
            self._remote(ref, at, prefix)
            return
        candidates = [(os.path.join(os.path.dirname(doc.origin), ref), doc.root)]
        types = str(resources.types_dir())
        candidates.append((os.path.join(types, ref), types))
        for candidate, root in candidates:
            real = _real(candidate)
            if (root is None and self.allow_local) or (root and within(real, root)):
                if _is_file(Path(real)):
                    self._load_local(real, self._display(real), at, prefix,
                                     root if not self.allow_local else None, ref=ref)
                    return
        if self.allow_local:
            self.diagnostics.error("import-not-found", f"import '{ref}' not found next to "
                                   f"'{doc.name}' nor in the bundled types", at)
            return
        self._unresolved(ref, at)

    def _local_absolute(self, ref: str, at: Location, prefix: str | None) -> None:
        """An absolute path or file:// URL: only for a local user who allowed it."""
        if not self.allow_local:
            self._unresolved(ref, at)
            return
        path = urllib.parse.unquote(urllib.parse.urlsplit(ref).path) \
            if ref.lower().startswith("file:") else ref
        real = _real(path)
        if not os.path.exists(real):
            self.diagnostics.error("import-not-found", f"import '{ref}' not found", at)
            return
        self._load_local(real, self._display(real), at, prefix, None, ref=ref)

    def _remote(self, ref: str, at: Location, prefix: str | None) -> None:
        mapped = self.import_map.lookup_entry(ref)
        if mapped:
            local, root = mapped
            real = _real(local)
            if within(real, root) and _is_file(Path(real)):
                self._load_local(real, self._display(real), at, prefix,
                                 None if self.allow_local else root, ref=ref)
            else:
                self.diagnostics.error("import-not-found", f"import '{ref}' is mapped to a "
                                       "file that does not exist (see the import map)", at)
            return
        if self.allow_remote:
            self.fetcher = self.fetcher or Fetcher()
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

    def _fetch(self, url: str, at: Location, prefix: str | None) -> None:
        if url in self._loaded:
            return
        self._loaded.add(url)
        try:
            fetched = self.fetcher.get(url)
            text = fetched.data.decode("utf-8-sig")
        except FetchError as exc:
            self.diagnostics.error("import-fetch-failed", f"cannot fetch '{url}': {exc}", at)
            return
        except UnicodeDecodeError:
            self.diagnostics.error("import-fetch-failed", f"'{url}' is not UTF-8 text", at)
            return
        self.remote_imports[url] = fetched.sha256
        self._add(url, url, text, prefix, None, at)


def is_tosca_definitions(data, text: str) -> bool:
    """Whether an imported file is TOSCA: a mapping with tosca_definitions_version or only
    TOSCA sections (or YAML that fails to parse but says it is TOSCA)."""
    if data is None:
        return "tosca_definitions_version" in text
    if not isinstance(data, Mapping) or not data:
        return False
    return "tosca_definitions_version" in data or all(k in TOSCA_SECTIONS for k in data)


def _real(path: str) -> str:
    """os.path.realpath that never raises: a name the OS refuses (NUL bytes) stays as is
    and is then found nowhere."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


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


def _import_spec(entry, named: bool = True) -> tuple[str, str | None, str | None] | None:
    """(file, repository, namespace_prefix) from any of TOSCA's import forms; ``named``:
    whether the 1.0 named form ``{name: file or {file: ...}}`` may still follow."""
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
        if named and len(entry) == 1:  # TOSCA 1.0 named import: {name: file or {file: ...}}
            value = next(iter(entry.values()))
            return _import_spec(value, named=False)
    return None


__all__ = ["ImportMap", "ImportResolver", "SourceDoc", "Sequence", "is_remote"]
