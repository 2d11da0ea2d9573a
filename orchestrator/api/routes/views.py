"""JSON views shared by the routes (and a dashboard): what a client sees of a deployment,
a work item, a resource; and the template file a submission is validated from."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from starlette.responses import JSONResponse

from orchestrator import service

TERMINAL = ("deployed", "failed", "deleted")


def deployment(record) -> dict:
    """A deployment without its bulky plan and template text, secrets masked."""
    data = record.to_dict()
    for key in ("plan", "template_text", "template_path", "lock_holder", "lock_heartbeat",
                "lock_acquired_at", "sites"):
        data.pop(key, None)
    return service.masked(data)


def summary_response(summary) -> JSONResponse:
    """The answer to ``GET /v1/deployments/{id}``: the status columns, secrets masked (the
    route and its fast path, ``orchestrator.api.polling``, both answer with it)."""
    return JSONResponse(service.masked(summary.to_dict()))


def work(item) -> dict:
    data = item.to_dict()
    data.pop("sealed", None)
    data.pop("payload", None)
    return data


def resource(record) -> dict:
    return service.masked(record.to_dict())


def template_file(source: dict, folder) -> str:
    """The path of the template a work item or submission names: a catalogue template, or
    its text written into ``folder``."""
    if "catalogue" in source:
        path = service.catalogue_template(source["catalogue"])
        if path is None:
            raise FileNotFoundError(f"no catalogue template named {source['catalogue']!r}")
        return path
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "template.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source["text"])
    return path


@contextlib.contextmanager
def scratch_dir():
    folder = tempfile.mkdtemp(prefix="orchestrator-api-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
