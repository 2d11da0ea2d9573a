"""The site catalogue: which clouds the orchestrator may use, read from ``sites.yaml``.

A site names a provider plugin, a *reference* to credentials kept where its ecosystem
keeps them (``clouds.yaml``, ``one_auth``, a kubeconfig, libcloud driver arguments),
and what the cloud cannot tell by itself: GPU models and InfiniBand of its flavors,
OS metadata of its images, quotas, priority, concurrency and the SLA ids it serves.
See docs/sites.md for the format. The file is validated against the shipped JSON
Schema (orchestrator/schemas/sites.schema.json); every problem becomes an
``invalid-site`` diagnostic pointing at the offending key.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.errors import OrchestratorError
from orchestrator.providers.base import Flavor, GpuOffer, Image, Quotas
from orchestrator.tosca.yamlsource import Mapping, Sequence, load_yaml, read_text, where

ENV_SITES = "ORCHESTRATOR_SITES"
#: provider names that ship with the orchestrator (their SDKs may not be installed yet)
BUILTIN_PROVIDERS = ("local", "openstack", "opennebula", "kubernetes", "cloud", "simulated")
SECRET_HINT = "put credentials in clouds.yaml/one_auth/kubeconfig, not sites.yaml"
_SECRET_WORDS = {"password", "passwd", "pass", "secret", "token", "key", "apikey"}
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string",
               "object": "a mapping", "array": "a list", "boolean": "true or false",
               "null": "null"}
#: how each provider refers to its credentials, for "missing field" hints
CREDENTIAL_FORMS = {
    "openstack": "credentials: {cloud: NAME} names an entry of clouds.yaml",
    "opennebula": "credentials: {endpoint: URL, auth_file: ~/.one/one_auth}",
    "kubernetes": "credentials: {kubeconfig: PATH, context: NAME}",
    "cloud": "credentials: {driver: NAME, args_file: PATH} or {driver: NAME, env: {ARG: VAR}}",
}


@dataclass(frozen=True)
class Site:
    name: str
    provider: str
    credentials: dict = field(default_factory=dict)
    priority: int = 0
    weight: float = 1.0
    concurrency: int = 10
    flavors: tuple[Flavor, ...] = ()
    images: tuple[Image, ...] = ()
    quotas: Quotas = field(default_factory=Quotas)
    sla_ids: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    file: str = ""
    line: int = 0

    def flavor(self, name: str) -> Flavor | None:
        return next((f for f in self.flavors if name in (f.name, f.id)), None)

    def image(self, name: str) -> Image | None:
        return next((i for i in self.images if name in (i.name, i.id, *i.aliases)), None)


DEFAULT_SITE = Site(name="local", provider="local", priority=0)


@dataclass
class SiteCatalogue:
    sites: dict[str, Site]
    source: str | None = None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    def get(self, name: str) -> Site:
        site = self.sites.get(name)
        if site is not None:
            return site
        where_from = self.source or "the default catalogue"
        known = ", ".join(sorted(self.sites)) or "none"
        hint = did_you_mean(name, self.sites)
        raise OrchestratorError(f"no site named '{name}' in {where_from} (known: {known})"
                                + (f"; {hint}" if hint else ""))

    def __contains__(self, name: object) -> bool:
        return name in self.sites

    def __iter__(self) -> Iterator[Site]:
        return iter(self.ordered())

    def __len__(self) -> int:
        return len(self.sites)

    def ordered(self) -> list[Site]:
        """Sites by priority (higher first), then by name."""
        return sorted(self.sites.values(), key=lambda s: (-s.priority, s.name))

    def for_sla(self, sla_id: str) -> list[Site]:
        return [s for s in self.ordered() if str(sla_id) in s.sla_ids]

    @property
    def ok(self) -> bool:
        return not self.diagnostics.has_errors

    def raise_on_error(self) -> None:
        """Raise OrchestratorError listing every error diagnostic, if there is one."""
        if self.ok:
            return
        lines = "\n".join(d.render() for d in self.diagnostics.sorted() if d.is_error)
        raise OrchestratorError(f"the site catalogue {self.source} is invalid:\n{lines}")


def find_sites_file(explicit: str | None) -> str | None:
    """--sites, then $ORCHESTRATOR_SITES, then $XDG_CONFIG_HOME/orchestrator/sites.yaml.

    An explicit path or the environment variable is returned even when the file is
    missing (so that loading reports it); the XDG default only when it exists."""
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get(ENV_SITES)
    if env:
        return os.path.expanduser(env)
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".config")
    default = os.path.join(config, "orchestrator", "sites.yaml")
    return default if os.path.isfile(default) else None


def load_sites(path: str | None = None) -> SiteCatalogue:
    """Load and validate a site catalogue; without any file, one local site."""
    path = find_sites_file(path)
    diagnostics = Diagnostics()
    if path is None:
        return SiteCatalogue({DEFAULT_SITE.name: DEFAULT_SITE}, None, diagnostics)
    catalogue = SiteCatalogue({}, path, diagnostics)
    text = read_text(path, diagnostics)
    if text is None:
        return catalogue
    data = load_yaml(text, path, diagnostics)
    if diagnostics.has_errors:
        return catalogue
    if not isinstance(data, dict):
        diagnostics.error("invalid-site", "a site catalogue is a mapping with a 'sites' list",
                          where(data, default=Location(path, 1, 1)))
        return catalogue
    bad = _validate_schema(data, path, diagnostics)
    entries = data.get("sites") if isinstance(data.get("sites"), list) else []
    _check_entries(entries, path, diagnostics)
    for index, entry in enumerate(entries):
        if index in bad or not isinstance(entry, dict):
            continue
        site = _build_site(entry, where(entries, index, Location(path)))
        catalogue.sites.setdefault(site.name, site)
    return catalogue


def simulated_clouds_in(catalogue: SiteCatalogue, folder: str) -> SiteCatalogue:
    """The catalogue with each simulated site that names no ``state_file`` keeping its cloud
    in a file under ``folder`` (one per site of this catalogue file), so that the commands a
    user runs one after another share one cloud: the CLI's default."""
    import hashlib

    tag = hashlib.sha256(os.path.abspath(catalogue.source or "-").encode()).hexdigest()[:8]
    sites = {name: site if site.provider != "simulated" or site.options.get("state_file")
             else replace(site, options={**site.options, "state_file": os.path.join(
                 folder, f"{name}-{tag}.json")})
             for name, site in catalogue.sites.items()}
    return replace(catalogue, sites=sites)


# --- schema validation ---------------------------------------------------------------

def sites_schema() -> dict:
    """The shipped JSON Schema of sites.yaml."""
    text = resources.files("orchestrator.schemas").joinpath("sites.schema.json").read_text()
    return json.loads(text)


def _validate_schema(data: dict, path: str, diagnostics: Diagnostics) -> set[int]:
    """Add one diagnostic per schema error; return the indexes of sites with errors."""
    from jsonschema import Draft202012Validator  # lazily: only when a catalogue exists

    schema = sites_schema()
    validator = Draft202012Validator(schema)
    bad: set[int] = set()
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        parts = list(error.absolute_path)
        if len(parts) >= 2 and parts[0] == "sites" and isinstance(parts[1], int):
            bad.add(parts[1])
        for message, loc, hint in _describe(error, data, path, schema):
            diagnostics.error("invalid-site", message, loc, hint=hint)
    return bad


def _locate(root: Any, parts: list, path: str) -> Location:
    """The location of the key (or list item) at the end of a JSON path."""
    loc = where(root, default=Location(path, 1, 1))
    node = root
    for part in parts:
        if isinstance(node, dict) and part in node or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            loc = where(node, part, loc)
            node = node[part]
        else:
            break
    return loc


def _subject(data: dict, parts: list) -> tuple[str, str]:
    """("site 'cnaf': ", "flavors[1].gpus") for a JSON path."""
    prefix = ""
    if len(parts) >= 2 and parts[0] == "sites" and isinstance(parts[1], int):
        name = _site_entry(data, parts).get("name")
        prefix = f"site '{name}': " if isinstance(name, str) else f"sites[{parts[1]}]: "
        parts = parts[2:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return prefix, text


def _site_entry(data: dict, parts: list) -> dict:
    if len(parts) >= 2 and parts[0] == "sites" and isinstance(parts[1], int):
        entry = data["sites"][parts[1]]
        return entry if isinstance(entry, dict) else {}
    return {}


def _shown(value: Any, parts: list) -> str:
    if "credentials" in parts or "options" in parts:
        return type(value).__name__  # never echo what may be a secret
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error, data: dict, path: str, schema: dict) -> list[tuple[str, Location, str | None]]:
    parts = list(error.absolute_path)
    prefix, field_name = _subject(data, parts)
    what = field_name or ("the site" if prefix else "the catalogue")
    loc = _locate(data, parts, path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [k for k in value if k not in known
                  and not any(re.search(p, str(k)) for p in patterns)]
        return [(f"{prefix}unknown field '{k}' in {what}", _locate(data, parts + [k], path),
                 did_you_mean(k, known)) for k in extras]
    if kind == "required" and isinstance(value, dict):
        hint = None
        if field_name.startswith("credentials") or "credentials" in expected:
            hint = CREDENTIAL_FORMS.get(str(_site_entry(data, parts).get("provider")))
        return [(f"{prefix}{what} is missing the required field '{k}'", loc, hint)
                for k in expected if k not in value]
    if kind == "type":
        types = [expected] if isinstance(expected, str) else expected
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        hint = None
        if isinstance(value, float) and "string" in types:
            hint = f'quote it: "{value}"'
        return [(f"{prefix}{what} must be {words} (got {_shown(value, parts)})", loc, hint)]
    bounds = {"minimum": "at least", "exclusiveMinimum": "greater than", "maximum": "at most",
              "exclusiveMaximum": "less than"}
    if kind in bounds:
        return [(f"{prefix}{what} must be {bounds[kind]} {expected} (got {value})", loc, None)]
    if kind == "pattern" and parts[-1:] in (["name"], ["provider"]):
        message = (f"{prefix}{what} {_shown(value, parts)} is not a valid {parts[-1]} "
                   "(letters, digits, '_', '.' and '-', starting with a letter or digit)")
        return [(message, loc, None)]
    if kind == "pattern":
        message = f"{prefix}{what} {_shown(value, parts)} does not match the pattern {expected}"
        return [(message, loc, None)]
    if kind == "minLength":
        return [(f"{prefix}{what} must not be empty", loc, None)]
    return [(f"{prefix}{what}: {error.message}", loc, None)]


# --- checks beyond the schema --------------------------------------------------------

def _check_entries(entries: list, path: str, diagnostics: Diagnostics) -> None:
    names = _installed_providers()
    first: dict[str, Location] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if isinstance(name, str):
            loc = where(entry, "name", Location(path))
            if name in first:
                diagnostics.error("invalid-site", f"site '{name}' is defined twice (first at "
                                  f"line {first[name].line})", loc)
            else:
                first[name] = loc
        label = f"site '{name}'" if isinstance(name, str) else f"sites[{index}]"
        provider = entry.get("provider")
        if isinstance(provider, str) and provider not in names:
            diagnostics.warning(
                "invalid-site", f"{label}: no provider '{provider}' is installed (yet); known: "
                f"{', '.join(sorted(names))}", where(entry, "provider", Location(path)),
                hint=did_you_mean(provider, names))
        for key in ("credentials", "options"):
            _check_secrets(entry.get(key), f"{label}: {key}", path, diagnostics)
        _check_unique(entry, label, path, diagnostics)


def _installed_providers() -> set[str]:
    from orchestrator.providers import provider_names

    return set(BUILTIN_PROVIDERS) | set(provider_names())


def _is_secret_name(key: object) -> bool:
    if not isinstance(key, str) or "public" in key.lower():
        return False
    return re.split(r"[_\-.]", key.lower())[-1] in _SECRET_WORDS


def _check_secrets(value: Any, label: str, path: str, diagnostics: Diagnostics) -> None:
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key == "env" and label.endswith("credentials"):
            continue  # names of environment variables, not their values
        if isinstance(item, dict):
            _check_secrets(item, f"{label}.{key}", path, diagnostics)
        elif _is_secret_name(key) and isinstance(item, (str, int, float)) \
                and not isinstance(item, bool) and item != "":
            diagnostics.error("invalid-site", f"{label}.{key} holds a literal secret: "
                              f"{SECRET_HINT}", where(value, key, Location(path)))


def _check_unique(entry: dict, label: str, path: str, diagnostics: Diagnostics) -> None:
    for section in ("flavors", "images"):
        items = entry.get(section)
        if not isinstance(items, list):
            continue
        seen: dict[str, int] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            aliases = item.get("aliases") if isinstance(item.get("aliases"), list) else []
            for name in [item.get("name"), *aliases]:
                if not isinstance(name, str):
                    continue
                if name in seen:
                    diagnostics.error(
                        "invalid-site", f"{label}: {section[:-1]} name '{name}' is used twice "
                        f"(first at line {seen[name]})", where(item, "name", Location(path)))
                else:
                    seen[name] = where(item, "name", Location(path)).line


# --- building values -----------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Positioned YAML values as plain dicts and lists."""
    if isinstance(value, (Mapping, dict)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (Sequence, list)):
        return [_plain(v) for v in value]
    return value


def _flavor(data: dict) -> Flavor:
    gpus = data.get("gpus") or 0
    offer = GpuOffer(count=gpus) if isinstance(gpus, int) else GpuOffer(
        count=gpus.get("count", 0), vendor=gpus.get("vendor"), model=gpus.get("model"))
    return Flavor(name=data["name"], cpus=data["cpus"], memory_mib=data["memory_mib"],
                  disk_gib=data.get("disk_gib", 0), gpus=offer,
                  infiniband=bool(data.get("infiniband", False)),
                  preemptible=bool(data.get("preemptible", False)),
                  id=None if data.get("id") is None else str(data["id"]))


def _image(data: dict) -> Image:
    def text(key: str) -> str | None:
        return None if data.get(key) is None else str(data[key])

    return Image(name=data["name"], id=text("id"), distribution=text("distribution"),
                 version=text("version"), architecture=text("architecture"),
                 gpu_driver=text("gpu_driver"), cuda_version=text("cuda_version"),
                 aliases=tuple(data.get("aliases") or ()))


def _build_site(entry: dict, loc: Location) -> Site:
    quotas = entry.get("quotas") or {}
    return Site(
        name=entry["name"], provider=entry["provider"],
        credentials=_plain(entry.get("credentials") or {}),
        priority=entry.get("priority", 0), weight=float(entry.get("weight", 1.0)),
        concurrency=entry.get("concurrency", 10),
        flavors=tuple(_flavor(f) for f in entry.get("flavors") or ()),
        images=tuple(_image(i) for i in entry.get("images") or ()),
        quotas=Quotas(**{k: v for k, v in quotas.items()}),
        sla_ids=tuple(str(s) for s in entry.get("sla_ids") or ()),
        options=_plain(entry.get("options") or {}),
        file=loc.file, line=loc.line,
    )
