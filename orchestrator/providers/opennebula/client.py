"""The connection to one OpenNebula front end: credentials, pyone's XML-RPC client, and
the translation of every failure into ProviderError and its subclasses.

Credentials follow OpenNebula's own conventions: the endpoint from the site's
``credentials.endpoint``, else ``$ONE_XMLRPC``, else ``http://localhost:2633/RPC2``; the
``user:password`` session string from the file ``credentials.auth_file``, else the file
named by ``$ONE_AUTH``, else ``~/.one/one_auth``. The session string is a secret: it is
never put in a message, and any text coming back is scrubbed of it.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any

from orchestrator.providers.base import (
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    TransientProviderError,
)

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"
DEFAULT_AUTH_FILE = "~/.one/one_auth"
#: pauses between attempts of a read that failed transiently
READ_RETRY_DELAYS = (0.2, 1.0)


class CredentialsError(ProviderError):
    """The front end refused the session, or there is no session to offer."""


class Connection:
    """Calls ``one.*`` methods of one front end; thread-safe (a client per thread)."""

    def __init__(self, site: str, credentials: dict | None, timeout: float = 60.0,
                 https_verify: bool = True):
        credentials = dict(credentials or {})
        self.site = site
        self.endpoint = str(credentials.get("endpoint") or os.environ.get("ONE_XMLRPC")
                            or DEFAULT_ENDPOINT)
        self.auth_file = os.path.expanduser(str(credentials.get("auth_file")
                                                or os.environ.get("ONE_AUTH")
                                                or DEFAULT_AUTH_FILE))
        self.timeout = timeout
        self.https_verify = https_verify
        self._session: str | None = None
        self._local = threading.local()

    # --- credentials ---------------------------------------------------------------------
    def _read_session(self) -> str:
        if self._session is None:
            try:
                with open(self.auth_file, encoding="utf-8") as handle:
                    text = handle.read().strip()
            except OSError as exc:
                raise CredentialsError(
                    f"site '{self.site}': cannot read the OpenNebula credentials file "
                    f"{self.auth_file} ({exc.strerror}); it holds one line 'user:password' "
                    "(credentials.auth_file, $ONE_AUTH or ~/.one/one_auth)") from None
            line = text.splitlines()[0].strip() if text else ""
            if ":" not in line:
                raise CredentialsError(f"site '{self.site}': {self.auth_file} does not hold "
                                       "'user:password'")
            self._session = line
        return self._session

    @property
    def user(self) -> str:
        return self._read_session().split(":", 1)[0]

    def scrub(self, text: object) -> str:
        """``text`` without the session string or its password."""
        shown = str(text)
        session = self._session
        if session:
            password = session.split(":", 1)[1]
            shown = shown.replace(session, "***")
            if len(password) >= 3:
                shown = shown.replace(password, "***")
        return shown

    # --- calls ---------------------------------------------------------------------------
    def _server(self):
        server = getattr(self._local, "server", None)
        if server is None:
            server = _make_server(self.endpoint, self._read_session(), self.timeout,
                                  self.https_verify)
            self._local.server = server
        return server

    def call(self, method: str, *args: Any) -> Any:
        """``one.<method>(session, *args)``: the value, or a ProviderError. Reads (``*.info``,
        ``system.version``) are retried on transient errors; changes are retried by the
        engine, which finds a VM it made by its labels."""
        reads = method.endswith(".info") or method == "system.version"
        for delay in READ_RETRY_DELAYS if reads else ():
            try:
                return self._call(method, *args)
            except TransientProviderError:
                time.sleep(delay)
        return self._call(method, *args)

    def _call(self, method: str, *args: Any) -> Any:
        import xmlrpc.client
        from xml.parsers.expat import ExpatError

        import pyone
        import requests

        what = f"site '{self.site}': one.{method}"
        try:
            return functools.reduce(getattr, method.split("."), self._server())(*args)
        except pyone.OneAuthenticationException as exc:
            raise CredentialsError(f"{what}: OpenNebula rejected the credentials of user "
                                   f"'{self.user}' ({self.scrub(exc)})") from None
        except pyone.OneAuthorizationException as exc:
            text = self.scrub(exc)
            kind = QuotaExceededError if "quota" in text.lower() else ProviderError
            raise kind(f"{what}: {text}") from None
        except pyone.OneNoExistsException as exc:
            raise NotFoundError(f"{what}: {self.scrub(exc)}") from None
        except pyone.OneInternalException as exc:
            raise TransientProviderError(f"{what}: internal error: {self.scrub(exc)}") from None
        except pyone.OneException as exc:
            text = self.scrub(exc)
            kind = TransientProviderError if "locked" in text.lower() else ProviderError
            raise kind(f"{what}: {text}") from None
        except xmlrpc.client.ProtocolError as exc:
            kind = TransientProviderError if exc.errcode >= 500 or exc.errcode == 429 \
                else ProviderError
            raise kind(f"{what}: HTTP {exc.errcode} {self.scrub(exc.errmsg)} from "
                       f"{self.endpoint}") from None
        except (requests.ConnectionError, requests.Timeout, OSError) as exc:
            raise TransientProviderError(f"{what}: cannot reach {self.endpoint}: "
                                         f"{type(exc).__name__}") from None
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError,
                IndexError) as exc:
            raise ProviderError(f"{what}: {self.endpoint} did not answer as an OpenNebula "
                                f"XML-RPC front end ({type(exc).__name__}: "
                                f"{self.scrub(exc)})") from None


def _make_server(endpoint: str, session: str, timeout: float, https_verify: bool):
    """pyone's XML-RPC client, with a per-request timeout instead of pyone's process-wide
    socket timeout."""
    import pyone
    from pyone import server_xrpc

    class TimedTransport(server_xrpc.RequestsTransport):
        def request(self, host, handler, request_body, verbose=False):
            import requests

            url = self._build_url(host, handler)
            resp = requests.post(url, data=request_body, headers=self.headers,
                                 verify=self.https_verify, timeout=timeout)
            if resp.status_code >= 400:
                import xmlrpc.client

                raise xmlrpc.client.ProtocolError(url, resp.status_code, resp.reason or "",
                                                  resp.headers)
            return self.parse_response(resp)

    server = pyone.OneServer(endpoint, session=session, https_verify=https_verify)
    transport = TimedTransport()
    transport.set_https(endpoint.startswith("https"))
    transport.set_https_verify(https_verify)
    server._ServerProxy__transport = transport  # the only hook pyone leaves for it
    return server
