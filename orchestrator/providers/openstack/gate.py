"""Creating a deployment's resources and removing what they share, kept apart.

Any number of creates of one deployment may run at once; removing the deployment's
shared resources (keypair, security groups, default network) waits until none runs and
keeps new ones out meanwhile, so a server is never booted with a keypair being deleted.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class DeploymentGate:
    def __init__(self):
        self._lock = threading.Lock()
        self._conditions: dict[str, threading.Condition] = {}
        self._active: dict[str, int] = {}

    def _condition(self, deployment: str) -> threading.Condition:
        with self._lock:
            return self._conditions.setdefault(deployment, threading.Condition())

    @contextmanager
    def creating(self, deployment: str) -> Iterator[None]:
        condition = self._condition(deployment)
        with condition:
            self._active[deployment] = self._active.get(deployment, 0) + 1
        try:
            yield
        finally:
            with condition:
                self._active[deployment] -= 1
                condition.notify_all()

    @contextmanager
    def removing(self, deployment: str) -> Iterator[None]:
        condition = self._condition(deployment)
        with condition:
            while self._active.get(deployment):
                condition.wait(1.0)
            yield
