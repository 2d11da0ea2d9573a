"""The one facade the front ends (CLI, API) use. Core code never prints."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator import resources
from orchestrator.validation import ValidationReport, resolve_template, validate

__all__ = ["ValidationReport", "resolve_template", "validate", "catalogue", "orchestrator",
           "load_plan", "schema", "sites_data", "check_data"]


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    path: str
    description: str | None
    metadata: dict = field(default_factory=dict)
    inputs: tuple = ()
    valid: bool = True


def catalogue() -> list[CatalogueEntry]:
    """The catalogue templates with their descriptions and input metadata."""
    entries = []
    folder = resources.templates_dir()
    for path in sorted(folder.glob("*.y*ml")):
        report = validate(str(path))
        topo = report.topology
        entries.append(CatalogueEntry(
            name=path.stem, path=str(path),
            description=topo.description if topo else None,
            metadata=topo.metadata if topo else {},
            inputs=tuple(i.to_dict() for i in topo.inputs) if topo else (),
            valid=report.valid))
    return entries


def orchestrator(db: str | None = None, sites: str | None = None, owner: str = "local",
                 on_event=None):
    """The deployment lifecycle facade (plan, apply, deploy, delete, status...)."""
    from orchestrator.lifecycle import Orchestrator

    return Orchestrator(db=db, sites=sites, owner=owner, on_event=on_event)


def load_plan(path: str):
    """Read a saved plan, validated against the shipped JSON Schema."""
    import json

    import jsonschema

    from orchestrator.errors import OrchestratorError
    from orchestrator.plan import Plan

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise OrchestratorError(f"cannot read plan {path}: {exc}") from exc
    errors = sorted(jsonschema.Draft202012Validator(schema("plan")).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise OrchestratorError(f"{path}: not a valid plan: at {where}: {first.message}")
    return Plan.from_dict(data)


def sites_data(orch) -> dict:
    from dataclasses import asdict

    catalogue = orch.catalogue
    return {"source": catalogue.source, "sites": [
        {k: v for k, v in asdict(site).items() if k not in ("file", "line")}
        for site in catalogue.sites.values()]}


def check_data(orch) -> list[dict]:
    from dataclasses import asdict

    return [asdict(result) for result in orch.check_sites()]


def schema(name: str) -> dict:
    """A shipped JSON Schema: "plan" or "sites" (orchestrator/schemas/NAME.schema.json)."""
    import json
    from importlib import resources as importlib_resources

    text = importlib_resources.files("orchestrator.schemas").joinpath(
        f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
