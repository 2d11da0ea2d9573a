"""Coalescing the instances of one node template into one Ansible run.

The engine configures every instance of a software node as its own plan step, in
parallel threads. Starting one ansible-runner per instance costs seconds each (process
start, playbook parsing, SSH set-up) and on a small controller those costs add up. The
``Batcher`` lets the calls for instances of the same node meet: the first to arrive
waits until every instance the plan will configure has arrived (or none has arrived
for ``wait_s`` seconds, so one late server delays nobody for long), then runs the
work once for all of them and hands each caller its own result or its own error.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Batch:
    members: dict[int, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    results: dict[int, Any] = field(default_factory=dict)


@dataclass
class _Group:
    """Everything of one node in one run: which instances are expected, which came."""

    expected: frozenset[int]
    arrived: set[int] = field(default_factory=set)
    last_arrival: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, wait_s: float = 5.0):
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._groups: dict[Hashable, _Group] = {}
        self._open: dict[tuple, _Batch] = {}

    def submit(self, group: Hashable, key: Hashable, index: int, expected, member: Any,
               work: Callable[[dict[int, Any]], dict[int, Any]]) -> Any:
        """Join (or open) the batch ``(group, key)`` with ``member`` for ``index`` and
        return this index's result; an exception as a result is raised here.

        ``expected`` is every index of ``group`` this run will submit; members with other
        keys (other operation inputs) count towards it but run in their own batch.
        ``work(members)`` maps each index to its result (or exception)."""
        with self._cond:
            known = self._groups.get(group)
            if known is None or index in known.arrived:  # a new run of the same node
                known = self._groups[group] = _Group(frozenset(expected) | {index})
            known.arrived.add(index)
            known.last_arrival = time.monotonic()
            batch = self._open.get((group, key))
            leader = batch is None
            if leader:
                batch = self._open[(group, key)] = _Batch()
            batch.members[index] = member
            self._cond.notify_all()
        if leader:
            self._gather(group, key, known)
            try:
                batch.results = work(dict(batch.members))
            except Exception as exc:  # every member fails with its own copy of the error
                batch.results = {i: type(exc)(str(exc)) if _copyable(exc) else exc
                                 for i in batch.members}
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        outcome = batch.results.get(index)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _gather(self, group: Hashable, key: Hashable, known: _Group) -> None:
        """Wait for the group's other members, then close the batch to newcomers."""
        with self._cond:
            while not known.expected <= known.arrived:
                idle = time.monotonic() - known.last_arrival
                if idle >= self.wait_s:
                    break
                self._cond.wait(self.wait_s - idle)
            self._open.pop((group, key), None)
            if known.expected <= known.arrived and self._groups.get(group) is known \
                    and not any(g == group for g, _ in self._open):
                self._groups.pop(group, None)


def _copyable(exc: Exception) -> bool:
    try:
        type(exc)(str(exc))
    except Exception:
        return False
    return True
