"""TOSCA front end: load a template (file or CSAR), resolve imports offline, apply
inputs, validate against the types and evaluate intrinsic functions.

    result = load_template("templates/gpu-vm.yaml", sets=["num_gpus=2"])
    if result.ok:
        result.template.nodes["vm"].capabilities["host"]["gpus"]
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Iterable

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca import csar
from orchestrator.tosca.imports import ImportMap, ImportResolver
from orchestrator.tosca.inputs import gather
from orchestrator.tosca.template import Template


@dataclass(frozen=True)
class LoadOptions:
    import_maps: tuple[str, ...] = ()
    allow_remote_imports: bool = False


@dataclass
class LoadResult:
    template: Template | None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

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
                return _load(entry, given, options, diags, (root + os.sep, path + "!/"))
        return _load(path, given, options, diags, None)
    except RecursionError:
        diags.error("yaml-too-deep", "the template is nested too deeply to process",
                    Location(path))
        return LoadResult(None, diags)


def _load(path, given, options, diags, display_root) -> LoadResult:
    resolver = ImportResolver(diags, ImportMap.load(options.import_maps, diags),
                              options.allow_remote_imports, display_root=display_root)
    name = display_root[1] + os.path.relpath(path, display_root[0]) if display_root else path
    root = resolver.load_root(path, name)
    if root is None:
        return LoadResult(None, diags)
    template = Template(resolver.docs, diags).build(given)
    return LoadResult(template, diags)


__all__ = ["LoadOptions", "LoadResult", "load_template", "Template"]
