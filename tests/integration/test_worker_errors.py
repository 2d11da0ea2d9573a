"""A worker catches only what it means: an internal error of one work item (an IndexError
or a KeyError from deep inside a plan) marks the deployment failed with the error's
message, the traceback goes to the server log only; only a deployment that is really gone
ends its work quietly. In process, with a real SQLite store."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from orchestrator.api import workers
from orchestrator.state.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def _pool(store) -> workers.WorkerPool:
    settings = SimpleNamespace(heartbeat_s=30, callback_hosts=(), work_stale_s=60, poll_s=1,
                               workers=0, workers_process=False)
    return workers.WorkerPool(SimpleNamespace(settings=settings, store=store),
                              worker_id="test-worker")


def _claimed(store, name: str = "web"):
    record = store.create_deployment(name)
    store.enqueue_work(record.id, "deploy", {"template": "t.yaml"})
    item = store.claim_work("test-worker")
    assert item is not None and item.deployment_id == record.id
    return record, item


@pytest.mark.parametrize("error", [IndexError("pop from empty list"), KeyError("vm"),
                                   ZeroDivisionError("division by zero")])
def test_an_internal_error_fails_the_deployment_with_its_message(store, monkeypatch, caplog,
                                                                  error):
    record, item = _claimed(store)

    def broken(ctx, work):
        raise error

    monkeypatch.setattr(workers, "run_work", broken)
    with caplog.at_level(logging.ERROR, logger="orchestrator.api.workers"):
        _pool(store)._run(item)
    after = store.get_deployment(record.id)
    assert after.status == "failed"
    assert after.status_reason.startswith(f"internal error: {type(error).__name__}: ")
    assert str(error.args[0]) in after.status_reason
    [work] = store.work_items(record.id)
    assert work.status == "failed" and work.error == after.status_reason
    assert "Traceback" not in after.status_reason
    assert any(r.exc_info for r in caplog.records), "the traceback is in the server log"


def test_a_deployment_deleted_meanwhile_ends_its_work_quietly(store, monkeypatch):
    record, item = _claimed(store)

    def deleted_meanwhile(ctx, work):
        store.delete_deployment(record.id)
        raise LookupError(f"no deployment with id {record.id!r}")

    monkeypatch.setattr(workers, "run_work", deleted_meanwhile)
    _pool(store)._run(item)
    assert store.get_deployment(record.id) is None
    assert [w.status for w in store.work_items(record.id)] in ([], ["done"])
