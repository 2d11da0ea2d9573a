"""Validation of a template: parse, check, build its topology. Never raises for bad
input; every problem is a Diagnostic in the report."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Iterable

from orchestrator import resources
from orchestrator.diagnostics import Diagnostic, Diagnostics, Severity
from orchestrator.errors import TemplateError
from orchestrator.topology import Topology, build_topology
from orchestrator.tosca import LoadOptions, load_template


@dataclass
class ValidationReport:
    file: str
    diagnostics: Diagnostics
    topology: Topology | None = None
    remote_imports: dict[str, str] = field(default_factory=dict)  # URL -> sha256 used

    @property
    def valid(self) -> bool:
        return not self.diagnostics.has_errors and self.topology is not None

    @property
    def missing_inputs(self) -> list[Diagnostic]:
        """The required inputs that have no value (warnings at validation)."""
        return [d for d in self.diagnostics if d.code == "missing-input"]

    @property
    def unresolved_paths(self) -> list[Diagnostic]:
        """Function paths that do not resolve with these inputs (warnings at validation)."""
        return [d for d in self.diagnostics if d.code == "unresolved-path"]


def require_inputs(report: ValidationReport) -> None:
    """Refuse to plan or deploy a template that is invalid, lacks input values, or has
    function paths that these inputs leave unresolved; the error lists every missing
    input with its description (and every unresolved path)."""
    if not report.valid:
        raise TemplateError(f"{report.file} is invalid", report.diagnostics)
    missing, paths = report.missing_inputs, report.unresolved_paths
    if not missing and not paths:
        return
    diagnostics = Diagnostics()
    diagnostics.extend(replace(d, severity=Severity.ERROR) for d in missing + paths)
    if missing:
        names = ", ".join(d.message.split("'")[1] for d in missing)
        raise TemplateError(f"{report.file} needs a value for input(s) {names} "
                            "(--set NAME=VALUE or -i inputs.yaml)", diagnostics)
    raise TemplateError(f"{report.file}: {len(paths)} function path(s) do not resolve with "
                        "these inputs", diagnostics)


def resolve_template(name: str) -> str:
    """A path as given, or the name of a catalogue template (with or without .yaml)."""
    if os.path.exists(name):
        return name
    folder = resources.templates_dir()
    for candidate in (folder / name, folder / f"{name}.yaml", folder / f"{name}.yml"):
        if candidate.is_file():
            return str(candidate)
    return name


def validate(template: str, input_files: Iterable[str] = (), sets: Iterable[str] = (),
             import_maps: Iterable[str] = (), allow_remote_imports: bool = False,
             options: LoadOptions | None = None) -> ValidationReport:
    """Parse, validate and build the topology of a template; never raises for bad input.
    ``options`` (the import policy) wins over ``import_maps``/``allow_remote_imports``."""
    path = resolve_template(template)
    options = options or LoadOptions(tuple(import_maps), allow_remote_imports)
    result = load_template(path, tuple(input_files), tuple(sets), options)
    report = ValidationReport(path, result.diagnostics, remote_imports=result.remote_imports)
    if result.template is not None and not result.diagnostics.has_errors:
        report.topology = build_topology(result.template, result.diagnostics)
    return report
