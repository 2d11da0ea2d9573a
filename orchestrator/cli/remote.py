"""Remote mode: with ``ORCHESTRATOR_URL`` and ``ORCHESTRATOR_TOKEN`` set, deploy, list,
status, outputs, logs, update and delete talk to an ``orchestrator serve`` and print what
the local commands print. Errors (problem+json) become the same messages and exit codes."""
from __future__ import annotations

import json
import os
import sys
import time

import click

from orchestrator.cli import plan_view
from orchestrator.cli.main import EXIT_FAILED, EXIT_OK

REMOTE_COMMANDS = ("deploy", "list", "status", "outputs", "logs", "update", "delete")
_json_fmt = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Output format.")


def enabled() -> bool:
    return bool(os.environ.get("ORCHESTRATOR_URL", "").strip())


class Remote:
    def __init__(self):
        import httpx

        url = os.environ["ORCHESTRATOR_URL"].rstrip("/")
        token = os.environ.get("ORCHESTRATOR_TOKEN", "").strip()
        if not token:
            raise click.UsageError("ORCHESTRATOR_URL is set but ORCHESTRATOR_TOKEN is not")
        self.http = httpx.Client(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise click.ClickException(_problem_text(response))
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def find(self, name: str) -> dict:
        for record in self.call("GET", "/v1/deployments"):
            if record["name"] == name or record["id"] == name:
                return record
        raise click.ClickException(f"no deployment named '{name}' (see `orchestrator list`)")

    def follow(self, deployment_id: str, quiet: bool = False) -> dict:
        """Print events (to stderr) until nothing is queued or running; the deployment."""
        last = 0
        while True:
            response = self.http.get(f"/v1/deployments/{deployment_id}")
            if response.status_code == 404:
                return {"id": deployment_id, "status": "deleted"}
            record = response.json()
            events = self.http.get(f"/v1/deployments/{deployment_id}/events",
                                   params={"since": last})
            for event in events.json() if events.status_code == 200 else []:
                last = event["id"]
                if not quiet:
                    click.echo(plan_view.event_line(event), err=True)
            if record.get("pending_work") == 0:
                return record
            time.sleep(0.5)


def _problem_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the server answered {response.status_code}: {response.text[:200]}"
    lines = [_diagnostic_line(d) for d in body.get("diagnostics", [])]
    lines.append(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    return "\n".join(lines)


def _diagnostic_line(d: dict) -> str:
    where = ":".join(str(d[k]) for k in ("file", "line", "column") if d.get(k) is not None)
    node = f" node '{d['node']}':" if d.get("node") else ""
    return f"{where}: {d.get('severity')} [{d.get('code')}]{node} {d.get('message')}"


def _emit(fmt: str, data, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else text)


def _inputs(input_files, sets) -> dict:
    import yaml

    values: dict = {}
    for path in input_files:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        values.update(data.get("inputs", data) if set(data) == {"inputs"} else data)
    for item in sets:
        key, _, raw = item.partition("=")
        values[key] = yaml.safe_load(raw)
    return values


def _source(template: str) -> dict:
    if os.path.isfile(template):
        with open(template, encoding="utf-8") as handle:
            return {"template": handle.read()}
    return {"template_name": template}


def _confirm(yes: bool) -> None:
    if not yes and not sys.stdin.isatty():
        raise click.UsageError("refusing to continue without confirmation: pass --yes")
    if not yes and not click.confirm("Apply this plan?", default=False):
        raise click.exceptions.Abort()


def _finish(remote: Remote, record: dict, fmt: str, plan_shown: bool = True) -> None:
    ok = record["status"] in ("deployed", "deleted")
    if fmt == "text" and plan_shown:
        try:
            click.echo(plan_view.plan_text(remote.call(
                "GET", f"/v1/deployments/{record['id']}/plan")), err=True)
        except click.ClickException:
            pass
    text = f"Deployment '{record['name']}' {record['status']}."
    if not ok and record.get("status_reason"):
        text += "\n  " + record["status_reason"]
    _emit(fmt, {"deployment": record, "ok": ok}, text)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _io_options(func):
    for option in reversed([
        click.option("-i", "--inputs", "input_files", multiple=True, metavar="FILE"),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE"),
        click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation."),
        click.option("--keep-failed", is_flag=True),
        _json_fmt,
    ]):
        func = option(func)
    return func


@click.command()
@click.argument("template")
@click.option("--name")
@click.option("--group", help="Share the deployment with this group.")
@click.option("--no-wait", is_flag=True)
@_io_options
def deploy(template, name, group, no_wait, input_files, sets, yes, keep_failed, fmt):
    """Submit TEMPLATE (a file or a catalogue name) to the server and follow it."""
    _confirm(yes)
    remote = Remote()
    body = {**_source(template), "inputs": _inputs(input_files, sets),
            "keep_failed": keep_failed, "group": group,
            "name": name or os.path.splitext(os.path.basename(template))[0]}
    record = remote.call("POST", "/v1/deployments", json=body)
    if no_wait:
        _emit(fmt, {"deployment": record["name"], "id": record["id"]},
              f"Deploying '{record['name']}' on the server; follow it with: "
              f"orchestrator logs {record['name']} --follow")
        return
    _finish(remote, remote.follow(record["id"], quiet=fmt == "json"), fmt)


@click.command()
@click.argument("name")
@click.argument("template", required=False)
@_io_options
def update(name, template, input_files, sets, yes, keep_failed, fmt):
    """Update deployment NAME on the server: to TEMPLATE (default: the one it was made
    from), the inputs given merged over those it keeps."""
    _confirm(yes)
    remote = Remote()
    record = remote.find(name)
    if template is None:
        remote.call("PATCH", f"/v1/deployments/{record['id']}",
                    json={"inputs": _inputs(input_files, sets)})
    else:
        remote.call("PUT", f"/v1/deployments/{record['id']}", json={
            **_source(template), "inputs": _inputs(input_files, sets),
            "keep_failed": keep_failed})
    _finish(remote, remote.follow(record["id"], quiet=fmt == "json"), fmt)


@click.command()
@click.argument("name")
@click.option("-y", "--yes", is_flag=True)
@click.option("--force", is_flag=True)
@_json_fmt
def delete(name, yes, force, fmt):
    """Delete deployment NAME on the server."""
    remote = Remote()
    record = remote.find(name)
    if not yes:
        _confirm(False)
    remote.call("DELETE", f"/v1/deployments/{record['id']}", params={"force": force})
    final = remote.follow(record["id"], quiet=True)
    ok = final["status"] == "deleted"
    _emit(fmt, {"deployment": name, "deleted": ok},
          f"Deployment '{name}' deleted." if ok else
          f"Delete failed:\n  {final.get('status_reason')}\n(use --force to drop the state "
          "anyway)")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@click.command(name="list")
@_json_fmt
def list_(fmt):
    """List the deployments you may see on the server."""
    records = Remote().call("GET", "/v1/deployments")
    _emit(fmt, records, plan_view.deployments_text(records))


@click.command()
@click.argument("name")
@_json_fmt
def status(name, fmt):
    """Show deployment NAME: status and resources."""
    remote = Remote()
    record = remote.find(name)
    data = {"deployment": record,
            "resources": remote.call("GET", f"/v1/deployments/{record['id']}/resources")}
    _emit(fmt, data, plan_view.status_text(data))


@click.command()
@click.argument("name")
@click.option("--show-secrets", is_flag=True,
              help="Show the outputs computed from secrets (the owner only; recorded as an "
              "event).")
@_json_fmt
def outputs(name, show_secrets, fmt):
    """Show the outputs of deployment NAME."""
    remote = Remote()
    data = remote.call("GET", f"/v1/deployments/{remote.find(name)['id']}/outputs",
                       params={"reveal": "true"} if show_secrets else None)
    _emit(fmt, data, plan_view.outputs_text(data))


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True)
@click.option("--node", metavar="NODE[INDEX]")
@_json_fmt
def logs(name, follow, node, fmt):
    """Show the events of deployment NAME (or a node's contextualisation log)."""
    remote = Remote()
    record = remote.find(name)
    if node:
        click.echo(remote.call("GET", f"/v1/deployments/{record['id']}/logs",
                               params={"node": node}), nl=False)
        return
    if follow:
        remote.follow(record["id"])
        return
    for event in remote.call("GET", f"/v1/deployments/{record['id']}/events"):
        click.echo(json.dumps(event, default=str) if fmt == "json"
                   else plan_view.event_line(event))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def scale(args):
    """Not available against a server yet: scale with `orchestrator update NAME --set
    COUNT_INPUT=N` when the template takes the count from an input."""
    raise click.ClickException("scale is not available against a server (ORCHESTRATOR_URL) "
                               "yet: use `orchestrator update NAME --set COUNT_INPUT=N` where "
                               "the template takes the count from an input")


def _local_only(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True},
                   add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args):
        raise click.ClickException(
            f"`orchestrator {name}` reaches deployments made from this machine (their key "
            "stays in its data folder); with ORCHESTRATOR_URL set, the server keeps the key "
            "of its deployments: unset ORCHESTRATOR_URL for your local ones")
    return command


def install(group: click.Group) -> None:
    """Replace the local lifecycle commands of ``group`` by their remote versions."""
    for command in (deploy, update, delete, list_, status, outputs, logs, scale,
                    _local_only("ssh"), _local_only("ssh-config")):
        group.add_command(command)
