"""Connecting to an OpenStack cloud, and turning SDK exceptions into ProviderErrors.

Credentials are never read here: the site names a ``clouds.yaml`` entry
(``credentials: {cloud: NAME}``) and openstacksdk's own configuration loader does the
rest, so every auth type it knows works unchanged: passwords, application credentials
(``v3applicationcredential``), tokens (``token`` / ``v3token``) and OIDC-federated
access tokens (``v3oidcaccesstoken``). ``cloud: envvars`` takes the ``OS_*`` variables.
"""
from __future__ import annotations

import os
import re
from typing import Any

from orchestrator.providers.base import (
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    TransientProviderError,
)

#: HTTP statuses worth retrying (the quota kinds of 403/409/413 are told apart below)
TRANSIENT_STATUSES = {408, 409, 423, 425, 429, 500, 502, 503, 504}
_QUOTA_WORDS = ("quota exceeded", "quotaexceeded", "overquota", "over quota", "quota_exceeded",
                "exceeded quota", "volumelimitexceeded", "limit exceeded", "maximum number of")
_QUOTA_NAME = re.compile(r"(?:quota exceeded for|exceeded quota for|quota for)\s+([A-Za-z_ -]+?)"
                         r"(?:[:,.]|$)|resources?:\s*([A-Za-z_]+)", re.IGNORECASE)
_SECRET_TEXT = re.compile(r"(?i)(password|secret|token|x-auth-token)(['\"]?\s*[:=]\s*)\S+")


def connect(site: Any, options: dict):
    """An ``openstack.connection.Connection`` for the site (no API call is made yet)."""
    import openstack
    from openstack import config as os_config

    credentials = dict(getattr(site, "credentials", None) or {})
    cloud = credentials.get("cloud") or "envvars"
    region = credentials.get("region") or options.get("region")
    files = [os.path.expanduser(str(options["clouds_file"]))] if options.get("clouds_file") \
        else None
    extra = {k: options[k] for k in ("interface", "verify", "cacert") if k in options}
    extra["api_timeout"] = float(options.get("api_timeout", 60))  # no request hangs forever
    try:
        loader = os_config.OpenStackConfig(config_files=files) if files else \
            os_config.OpenStackConfig()
        region_config = loader.get_one(cloud=cloud, region_name=region, **extra)
        return openstack.connection.Connection(config=region_config,
                                               app_name="tosca-orchestrator")
    except Exception as exc:  # config errors of every kind: unknown cloud, auth plugin...
        raise ProviderError(f"site '{site.name}': cannot configure OpenStack cloud '{cloud}'"
                            f" ({_describe(exc)}); check clouds.yaml or the OS_* variables"
                            ) from exc


def _describe(exc: BaseException) -> str:
    """The cloud's own message for an SDK exception, without secrets."""
    details = getattr(exc, "details", None)
    text = str(exc)
    if details and str(details) not in text:
        text = f"{text}: {details}"
    text = " ".join(text.split())
    return _SECRET_TEXT.sub(r"\1\2***", text)[:800] or type(exc).__name__


def quota_name(text: str) -> str:
    """The quota a cloud's quota error names (instances, cores, ram, floatingip...)."""
    found = _QUOTA_NAME.search(text)
    if found:
        return (found.group(1) or found.group(2)).strip().lower().replace(" ", "_")
    return "unknown"


def translate(exc: BaseException, site: str, action: str) -> ProviderError:
    """A ProviderError of the right kind for an SDK exception: quota, not found,
    transient (409, 5xx, timeouts, connection failures) or permanent."""
    import requests
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    if isinstance(exc, ProviderError):
        return exc
    message = _describe(exc)
    lowered = message.lower()
    where = f"site '{site}': {action} failed: {message}"
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    if any(word in lowered for word in _QUOTA_WORDS) or status == 413:
        return QuotaExceededError(f"site '{site}': {action}: quota '{quota_name(message)}' "
                                  f"exceeded ({message})")
    if isinstance(exc, (sdk.NotFoundException, ks.NotFound)) or status == 404:
        return NotFoundError(where)
    if isinstance(exc, ks.Unauthorized) or status == 401:
        return ProviderError(f"site '{site}': {action} failed: the credentials were refused "
                             f"({message})")
    if status is not None:
        return TransientProviderError(where) if int(status) in TRANSIENT_STATUSES or \
            int(status) >= 500 else ProviderError(where)
    if isinstance(exc, (ks.ConnectionError, sdk.ResourceTimeout, TimeoutError, ConnectionError,
                        requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return TransientProviderError(where)
    return ProviderError(where)


class Calls:
    """Run SDK calls, translating their exceptions at this boundary."""

    def __init__(self, site: str):
        self.site = site

    def __call__(self, action: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:  # every SDK/keystoneauth/requests error becomes ours
            raise translate(exc, self.site, action) from exc

    def find(self, action: str, function, name_or_id: str):
        """A ``find_*`` call: the resource, or None when there is none."""
        try:
            return self(action, function, name_or_id, ignore_missing=False)
        except NotFoundError:
            return None

    def listing(self, action: str, function, *args, **kwargs) -> list:
        """A list call, consumed here so that paging errors are translated too."""
        return self(action, lambda: list(function(*args, **kwargs)))
