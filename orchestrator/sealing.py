"""Sealing values at rest: a Fernet key seals what the state database keeps of secrets
(users' cloud credentials and secret inputs for the service, outputs computed from secrets
for the service and the local CLI alike), and every value sealed or opened in this process
is remembered so that log records mask it.

The key comes from ``ORCHESTRATOR_SECRET_KEY`` (every replica of a service needs the same
one), else from ``<data dir>/server.key``, created on first use readable by its owner only
(mode 0600). ``cryptography`` is imported only when something is sealed or opened."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading

MASK = "******"
KEY_ENV = "ORCHESTRATOR_SECRET_KEY"
KEY_FILE = "server.key"


class SealingError(Exception):
    """A sealed value cannot be opened (another key, or damaged)."""


class Sealer:
    def __init__(self, key: str | bytes):
        from cryptography.fernet import Fernet

        key = key.encode() if isinstance(key, str) else key
        self._fernet = Fernet(key)
        # a key of its own for fingerprints, derived from the sealing key
        self._fingerprint_key = hmac.new(base64.urlsafe_b64decode(key),
                                         b"orchestrator: fingerprints of secrets",
                                         hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, secret_key: str | None, key_file) -> Sealer:
        if secret_key:
            return cls(secret_key)
        return cls(_key_from_file(key_file))

    def seal(self, value) -> str:
        _REDACTOR.remember(value)
        return self._fernet.encrypt(json.dumps(value).encode("utf-8")).decode("ascii")

    def fingerprint(self, value) -> str:
        """A keyed digest (HMAC-SHA256) of a secret: it changes when the secret does, and
        without the key it cannot be checked against guesses (a plan shows it)."""
        text = json.dumps(value, sort_keys=True, default=str)
        return hmac.new(self._fingerprint_key, text.encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def open(self, token: str):
        from cryptography.fernet import InvalidToken

        try:
            value = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise SealingError("a sealed value cannot be opened with this server's key "
                               "(was ORCHESTRATOR_SECRET_KEY changed?)") from exc
        _REDACTOR.remember(value)
        return value


def _key_from_file(path) -> bytes:
    from cryptography.fernet import Fernet

    path = os.fspath(path)
    if os.path.exists(path):
        with open(path, "rb") as handle:
            return handle.read().strip()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = Fernet.generate_key()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: theirs is the key
        with open(path, "rb") as handle:
            return handle.read().strip()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


class Redactor(logging.Filter):
    """Replaces every remembered secret string in log records by the mask."""

    def __init__(self):
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, value) -> None:
        strings = [s for s in _strings(value) if len(s) >= 4]
        if strings:
            with self._lock:
                self._secrets.update(strings)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


_REDACTOR = Redactor()


def redactor() -> Redactor:
    """The process's redacting filter; install it on every log handler."""
    return _REDACTOR


def default_sealer() -> Sealer:
    """The key this user's processes share: ``ORCHESTRATOR_SECRET_KEY``, else the key file in
    the data folder (the one ``orchestrator serve`` uses by default)."""
    from orchestrator import resources

    return Sealer.from_settings(os.environ.get(KEY_ENV) or None,
                                resources.data_dir() / KEY_FILE)
