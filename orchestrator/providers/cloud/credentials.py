"""The libcloud driver and its arguments, from a site's ``credentials`` reference.

``{driver: NAME, args_file: PATH}``: a YAML or JSON file with the driver's constructor
arguments (relative paths are relative to sites.yaml). ``{driver: NAME, env: {ARG: VAR}}``:
each argument from an environment variable. ``region`` is optional in both. Values are
never echoed: errors name the file, the argument or the variable, and ``scrub`` removes
any argument value from a text (a cloud's error message) before it is shown.
"""
from __future__ import annotations

import json
import os
from typing import Any

from orchestrator.providers.base import ProviderError

#: argument names whose values are secrets (scrubbed from messages)
PUBLIC_ARGS = ("host", "port", "secure", "region", "project", "endpoint", "api_version",
               "datacenter", "auth_type", "scopes", "tenant_id", "subscription_id")


def driver_arguments(site: Any) -> tuple[str, dict, str | None]:
    """(driver name, constructor arguments, region) of a ``cloud`` site."""
    creds = dict(getattr(site, "credentials", None) or {})
    name = creds.get("driver")
    if not name:
        raise ProviderError(f"site '{site.name}': credentials need 'driver' (a libcloud "
                            "compute driver name such as ec2, gce or azure_arm)")
    args: dict = {}
    if creds.get("args_file"):
        args.update(_args_file(site, str(creds["args_file"])))
    for argument, variable in (creds.get("env") or {}).items():
        value = os.environ.get(str(variable))
        if value is None:
            raise ProviderError(f"site '{site.name}': environment variable {variable} (for "
                                f"the driver argument '{argument}') is not set")
        args[str(argument)] = value
    region = creds.get("region") or args.pop("region", None)
    return str(name), args, region


def _args_file(site: Any, path: str) -> dict:
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and getattr(site, "file", ""):
        path = os.path.join(os.path.dirname(os.path.abspath(site.file)), path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ProviderError(f"site '{site.name}': cannot read the driver arguments file "
                            f"{path}: {exc.strerror}") from None
    try:
        import yaml

        data = yaml.safe_load(text) if not path.endswith(".json") else json.loads(text)
    except (ValueError, yaml.YAMLError):
        raise ProviderError(f"site '{site.name}': the driver arguments file {path} is not "
                            "valid YAML/JSON") from None
    if not isinstance(data, dict):
        raise ProviderError(f"site '{site.name}': the driver arguments file {path} must hold "
                            "a mapping of argument names to values")
    return data


def secret_values(args: dict) -> list[str]:
    """Argument values that must never be shown (all but a few public ones)."""
    return [str(v) for k, v in args.items()
            if k not in PUBLIC_ARGS and isinstance(v, (str, int)) and len(str(v)) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text
