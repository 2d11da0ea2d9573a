"""A thin wrapper around the podman (or docker) command line.

Every call of the local provider goes through ``Runtime.run``, so tests can count
them, and every failure leaves it as a ``ProviderError`` (``TransientProviderError``
for timeouts, locks and "temporarily" kinds) with the tail of the command's stderr;
``CalledProcessError`` never escapes.

Settings that make podman work on hosts with hybrid cgroups or low open-file limits
are passed on the command line, not through a containers.conf: ``--runtime runc``
(global flag) when ``runc`` is installed, and ``--ulimit`` on ``run``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from orchestrator.providers.base import ProviderError, TransientProviderError

ENGINES = ("podman", "docker")
DEFAULT_ULIMITS = ("nofile=10000:10000", "nproc=10000:10000")
_TRANSIENT_WORDS = ("temporar", "timed out", "timeout", "lock", "try again", "resource busy",
                    "connection refused", "database is locked")


def detect_engine(preferred: str | None = None) -> str | None:
    """The container engine to use: ``preferred`` when given, else podman, else docker."""
    if preferred:
        return preferred if shutil.which(preferred) else None
    return next((e for e in ENGINES if shutil.which(e)), None)


def tail(text: str | bytes | None, lines: int = 8) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


class Runtime:
    """Runs the engine's commands; ``run`` is the one place a subprocess starts."""

    def __init__(self, engine: str | None = None, oci_runtime: str | None = "auto",
                 ulimits: Sequence[str] = DEFAULT_ULIMITS, timeout: float = 300):
        found = detect_engine(engine)
        self.engine = found or (engine or "podman")
        self.available = found is not None
        if oci_runtime == "auto":  # crun fails on hybrid cgroups; runc works everywhere
            oci_runtime = "runc" if self.engine == "podman" and shutil.which("runc") else None
        self.oci_runtime = oci_runtime
        self.ulimits = tuple(ulimits or ())
        self.timeout = timeout
        self.calls = 0

    @property
    def is_podman(self) -> bool:
        return os.path.basename(self.engine).startswith("podman")

    def command(self, args: Sequence[str]) -> list[str]:
        base = [self.engine]
        if self.is_podman and self.oci_runtime:
            base += ["--runtime", self.oci_runtime]
        return base + [str(a) for a in args]

    def run(self, args: Sequence[str], *, input: bytes | str | None = None,
            check: bool = True, timeout: float | None = None,
            stdin: Any = None) -> subprocess.CompletedProcess:
        """Run ``ENGINE ARGS``; a failure (when ``check``) raises ProviderError."""
        cmd = self.command(args)
        self.calls += 1
        if not self.available:
            raise ProviderError(f"no container engine: {self.engine!r} is not installed "
                                "(install podman, or set options.engine)")
        if isinstance(input, str):
            input = input.encode()
        try:
            done = subprocess.run(cmd, input=input, stdin=stdin, capture_output=True,
                                  timeout=timeout or self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TransientProviderError(f"`{_show(cmd)}` timed out after "
                                         f"{exc.timeout:g} s: {tail(exc.stderr)}") from None
        except OSError as exc:
            raise ProviderError(f"`{_show(cmd)}` could not start: {exc}") from None
        if check and done.returncode != 0:
            raise error_for(cmd, done.returncode, done.stderr or done.stdout)
        return done

    def text(self, args: Sequence[str], **kwargs) -> str:
        return self.run(args, **kwargs).stdout.decode("utf-8", "replace")

    def json(self, args: Sequence[str], **kwargs) -> Any:
        """Parse the output: a JSON document, or one JSON value a line (docker)."""
        out = self.text(args, **kwargs).strip()
        if not out:
            return []
        try:
            return json.loads(out)
        except ValueError:
            try:
                return [json.loads(line) for line in out.splitlines() if line.strip()]
            except ValueError as exc:
                raise ProviderError(f"`{_show(self.command(args))}` printed no JSON: "
                                    f"{tail(out, 3)}") from exc

    def records(self, args: Sequence[str], **kwargs) -> list[dict]:
        """A listing (``ps``, ``volume ls``) as a list of dicts, from podman's JSON array
        or docker's one JSON object a line (a single line parses as one object)."""
        data = self.json(args, **kwargs)
        return [data] if isinstance(data, dict) else [d for d in data if isinstance(d, dict)]

    def exists(self, what: str, name: str) -> bool:
        """``podman image/volume/network/container exists NAME`` (docker: inspect)."""
        if self.is_podman:
            return self.run([what, "exists", name], check=False).returncode == 0
        return self.run([what, "inspect", name], check=False).returncode == 0


def error_for(cmd: Sequence[str], code: int, stderr: bytes | str | None) -> ProviderError:
    text = tail(stderr)
    message = f"`{_show(cmd)}` failed (exit {code}): {text or 'no message'}"
    if any(word in text.lower() for word in _TRANSIENT_WORDS):
        return TransientProviderError(message)
    return ProviderError(message)


def _show(cmd: Sequence[str], limit: int = 160) -> str:
    shown = " ".join(str(c) for c in cmd)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."
