"""TOSCA front end: load a template (file or CSAR), resolve imports offline, apply
inputs, validate against the types and evaluate intrinsic functions.

    result = load_template("templates/gpu-vm.yaml", sets=["num_gpus=2"])
    if result.ok:
        result.template.nodes["vm"].capabilities["host"]["gpus"]
"""
from __future__ import annotations

import dataclasses
import gc
import os
from dataclasses import dataclass, field
from typing import Iterable

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca import csar
from orchestrator.tosca.fetch import Fetcher, FetchSettings
from orchestrator.tosca.imports import ImportMap, ImportResolver
from orchestrator.tosca.inputs import gather
from orchestrator.tosca.template import Template


@dataclass(frozen=True)
class LoadOptions:
    """How imports are resolved. The defaults are the service's policy: confined to the
    template's folder, the bundled types and the import maps, nothing fetched."""

    import_maps: tuple[str, ...] = ()
    allow_remote_imports: bool = False
    #: absolute paths, file:// URLs and ../ out of the template's folder (a local user only)
    allow_local_imports: bool = False
    #: fetch remote imports again instead of using the cached bytes
    refresh_imports: bool = False
    #: None: any host at public addresses; a tuple: only these hosts (the service's list)
    import_hosts: tuple[str, ...] | None = None
    #: limits of the fetcher (sizes, timeouts, cache folder); None: the defaults
    fetch: FetchSettings | None = None
    #: which operations a node of another catalogue's type runs: "native" (our playbooks,
    #: where playbooks/native.yaml has them) or "upstream" (the type's own)
    implementation: str = "native"

    def fetcher(self) -> Fetcher | None:
        if not self.allow_remote_imports:
            return None
        settings = self.fetch or FetchSettings()
        return Fetcher(dataclasses.replace(settings, refresh=self.refresh_imports or
                                           settings.refresh, allowed_hosts=self.import_hosts))


@dataclass
class LoadResult:
    template: Template | None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    #: the remote imports used: URL -> sha256 of the bytes read (fetched or cached)
    remote_imports: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.template is not None and not self.diagnostics.has_errors


def load_template(path: str, input_files: Iterable[str] = (), sets: Iterable[str] = (),
                  options: LoadOptions | None = None) -> LoadResult:
    """Parse and validate ``path``; never raises for bad input, reports Diagnostics."""
    # Loading allocates a great many small, long-lived objects and hardly any cycles:
    # the cyclic collector would only walk them again and again (30-40% of the time).
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        return _load_template(path, input_files, sets, options)
    finally:
        if collecting:
            gc.enable()


def _load_template(path: str, input_files: Iterable[str], sets: Iterable[str],
                   options: LoadOptions | None) -> LoadResult:
    options = options or LoadOptions()
    diags = Diagnostics()
    try:
        given = gather(input_files, sets, diags)
        if not os.path.exists(path):
            diags.error("file-not-found", f"template '{path}' does not exist", Location(path))
            return LoadResult(None, diags)
        if os.path.isdir(path):
            diags.error("file-not-found", f"'{path}' is a directory, not a template",
                        Location(path))
            return LoadResult(None, diags)
        if not os.path.isfile(path):  # a device or a named pipe: never open it
            diags.error("file-not-found", f"'{path}' is not a regular file", Location(path))
            return LoadResult(None, diags)
        if csar.is_csar(path):
            with csar.extracted(path, diags) as unpacked:
                if unpacked is None:
                    return LoadResult(None, diags)
                root, entry = unpacked
                return _load(entry, given, options, diags, (root + os.sep, path + "!/"), root)
        return _load(path, given, options, diags, None)
    except RecursionError:
        diags.error("yaml-too-deep", "the template is nested too deeply to process",
                    Location(path))
        return LoadResult(None, diags)


def _load(path, given, options, diags, display_root, folder=None) -> LoadResult:
    resolver = ImportResolver(diags, ImportMap.load(options.import_maps, diags),
                              options.allow_remote_imports, display_root=display_root,
                              allow_local=options.allow_local_imports,
                              fetcher=options.fetcher())
    name = display_root[1] + os.path.relpath(path, display_root[0]) if display_root else path
    root = resolver.load_root(path, name, folder)
    if root is None:
        return LoadResult(None, diags, resolver.remote_imports)
    template = Template(resolver.docs, diags, implementation=options.implementation,
                        allow_local=options.allow_local_imports).build(given)
    return LoadResult(template, diags, resolver.remote_imports)


__all__ = ["FetchSettings", "LoadOptions", "LoadResult", "load_template", "Template"]
