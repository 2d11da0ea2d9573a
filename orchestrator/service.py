"""The one facade the front ends (CLI, API) use. Core code never prints."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator import resources
from orchestrator.validation import ValidationReport, require_inputs, resolve_template, validate

__all__ = ["ValidationReport", "require_inputs", "resolve_template", "validate", "catalogue",
           "orchestrator", "import_options", "service_import_options",
           "load_plan", "schema", "sites_data", "check_data"]


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    path: str
    description: str | None
    metadata: dict = field(default_factory=dict)
    inputs: tuple = ()
    valid: bool = True


def import_options(import_maps=(), allow_remote: bool = False, allow_local: bool = False,
                   refresh: bool = False, implementation: str = "native"):
    """The import policy of a local user (the CLI): its maps, and what it allows; and
    which implementation other catalogues' node types get (native or upstream)."""
    from orchestrator.tosca import LoadOptions

    return LoadOptions(tuple(import_maps), allow_remote_imports=allow_remote,
                       allow_local_imports=allow_local, refresh_imports=refresh,
                       implementation=implementation)


def service_import_options(import_hosts=()):
    """The service's import policy: confined to the template's folder, the bundled types
    and the operator's import maps; never local files elsewhere; remote imports only from
    the operator's ``import_hosts`` (ORCHESTRATOR_IMPORT_HOSTS; empty: none)."""
    from orchestrator.tosca import LoadOptions

    hosts = tuple(import_hosts or ())
    return LoadOptions(allow_remote_imports=bool(hosts), allow_local_imports=False,
                       import_hosts=hosts)


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
                 on_event=None, **shared):
    """The deployment lifecycle facade (plan, apply, deploy, delete, status...);
    ``shared`` passes an open ``store``/``catalogue`` and executor ``options``."""
    from orchestrator.lifecycle import Orchestrator

    return Orchestrator(db=db, sites=sites, owner=owner, on_event=on_event, **shared)


def load_plan(path: str):
    """Read a saved plan, validated against the shipped JSON Schema."""
    import json

    import jsonschema

    from orchestrator.errors import OrchestratorError
    from orchestrator.plan import Plan

    too_deep = f"cannot read plan {path}: nested more than {MAX_PLAN_DEPTH} levels deep"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except RecursionError:
        raise OrchestratorError(too_deep) from None
    except (OSError, ValueError) as exc:
        raise OrchestratorError(f"cannot read plan {path}: {exc}") from exc
    if _nesting(data) > MAX_PLAN_DEPTH:  # before the schema, which would recurse into it
        raise OrchestratorError(too_deep)
    errors = sorted(jsonschema.Draft202012Validator(schema("plan")).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise OrchestratorError(f"{path}: not a valid plan: at {where}: {first.message}")
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:  # what the schema does not rule out
        raise OrchestratorError(f"{path}: not a valid plan: {exc!r}") from exc


#: how deep a saved plan's JSON may nest (a plan nests about 6 levels; inputs add theirs)
MAX_PLAN_DEPTH = 100


def _nesting(data) -> int:
    """How deep ``data`` nests (stops counting past MAX_PLAN_DEPTH); no recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack and deepest <= MAX_PLAN_DEPTH:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in
                         (value.values() if isinstance(value, dict) else value))
    return deepest


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


# -- the service (orchestrator serve): what the REST API and its workers need ---------------------

def open_store(db: str | None = None):
    """The state store (deployments, events, the work queue, API tokens, credentials)."""
    from orchestrator.state import Store

    return Store(db)


def data_dir():
    """The server's data directory (deployment folders, the server key file)."""
    return resources.data_dir()


def deployment_dir(deployment_id: str):
    return resources.deployment_dir(deployment_id)


def catalogue_template(name: str) -> str | None:
    """The path of catalogue template ``name``, or None."""
    folder = resources.templates_dir()
    for suffix in (".yaml", ".yml"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return str(path)
    return None


def input_sets(inputs: dict) -> list[str]:
    """Input values as --set KEY=VALUE strings (JSON is YAML and keeps "22.04" a string)."""
    import json

    return [f"{key}={json.dumps(value)}" for key, value in (inputs or {}).items()]


def validate_inputs(template: str, inputs: dict, import_hosts=()) -> ValidationReport:
    """Validate a submitted template under the service's import policy."""
    return validate(template, (), input_sets(inputs),
                    options=service_import_options(import_hosts))


def split_secret_inputs(report: ValidationReport, inputs: dict) -> tuple[dict, dict]:
    """(public, secret) inputs: secrets are never stored in clear."""
    secret_names = {i.name for i in report.topology.inputs if i.secret} \
        if report.topology else set()
    public = {k: v for k, v in inputs.items() if k not in secret_names}
    secret = {k: v for k, v in inputs.items() if k in secret_names}
    return public, secret


def earlier_secrets(record) -> list[str]:
    """The names of the secret inputs a deployment was last planned with (never stored)."""
    from orchestrator.changes import earlier_secrets as names

    return names(record)


def masked(value, secret_values=frozenset()):
    """Plain data with secrets (by key name, and the given values) replaced by a mask."""
    from orchestrator.topology.secrets import mask

    return mask(value, frozenset(secret_values))


def orchestrator_for_work(store, sites: str | None, owner: str,
                          site_names: list[str] | None = None,
                          credentials: dict[str, dict] | None = None,
                          step_timeout_s: float | None = None):
    """An Orchestrator on an already open ``store`` for one piece of service work, seeing
    only ``site_names`` (when given) and with the user's ``credentials`` ({site: {...}})
    merged over the catalogue's credential references of those sites."""
    import dataclasses

    orch = orchestrator(sites=sites, owner=owner, store=store)  # the service's shared store
    if step_timeout_s:
        orch.options.step_timeout_s = float(step_timeout_s)
    catalogue = orch.catalogue
    chosen = {name: site for name, site in catalogue.sites.items()
              if not site_names or name in site_names}
    if site_names and not chosen:
        from orchestrator.errors import PlacementError

        raise PlacementError(f"none of the requested sites ({', '.join(site_names)}) is in "
                             "the site catalogue")
    for name, secret in (credentials or {}).items():
        if name in chosen:
            chosen[name] = dataclasses.replace(chosen[name], credentials={
                **chosen[name].credentials, **secret})
    return orchestrator(sites=sites, owner=owner, store=store, options=orch.options,
                        catalogue=dataclasses.replace(catalogue, sites=chosen))


def release_orchestrator(orch) -> None:
    """Close the providers of an Orchestrator made by orchestrator_for_work (not its store,
    which the service shares)."""
    orch.close()


def provider_action(orch, site: str, action: str, provider_id: str):
    """Run ``start``/``stop`` on a resource. NotImplementedError when the site's provider
    cannot."""
    if action not in ("start", "stop"):
        raise NotImplementedError(f"unknown action {action!r}")
    return getattr(orch.provider(site), action)(provider_id)
