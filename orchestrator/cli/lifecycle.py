"""Lifecycle commands: plan, apply, deploy, delete, status, list, outputs, logs, sites
(update and scale: cli/changes.py). Each calls orchestrator.service and renders; errors
become exit codes in main."""
from __future__ import annotations

import json
import os
import sys
import time

import click

from orchestrator.cli import plan_view
from orchestrator.cli.main import EXIT_FAILED, EXIT_OK, cli, import_options

_json_fmt = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Output format.")


def _inputs(func):
    for option in reversed([
        click.option("-i", "--inputs", "input_files", multiple=True, metavar="FILE",
                     help="YAML file of input values (repeatable)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Set one input (repeatable; wins over -i)."),
    ]):
        func = option(func)
    return func


def _orchestrator(ctx: click.Context, fmt: str = "text", quiet: bool = False):
    from orchestrator import service

    def progress(event: dict) -> None:
        if not quiet:
            click.echo(plan_view.event_line(event), err=True)

    orch = service.orchestrator(db=ctx.obj.get("db"), sites=ctx.obj.get("sites"),
                                on_event=progress)
    orch.options.step_timeout_s = float(ctx.obj.get("step_timeout") or 1800)
    orch.simulated_dir = str(service.data_dir() / "simulated")  # one cloud across commands
    return orch


def ask_secrets(orch, name: str, input_files, sets) -> list[str]:
    """``sets`` with the secret inputs deployment ``name`` was made with (never stored)
    that are not given again: asked for without echo on a terminal, else an error naming
    them."""
    sets = list(sets)
    missing = orch.secrets_to_ask(name, input_files, sets)
    if missing and not sys.stdin.isatty():
        raise click.UsageError(
            f"deployment '{name}' was made with the secret input(s) {', '.join(missing)}, "
            "which are never stored: give them again with --set NAME=VALUE or -i FILE")
    for key in missing:
        value = click.prompt(f"Secret input '{key}' (never stored)", hide_input=True,
                             err=True)
        sets.append(f"{key}={json.dumps(value)}")
    return sets


def show_and_apply(orch, result, input_files, sets, yes: bool, keep_failed: bool,
                   fmt: str) -> None:
    """Show the plan of a change; settle when it has nothing to do; else ask and apply."""
    if fmt == "text":
        click.echo(plan_view.plan_text(result.plan.to_dict()))
    if not result.plan.has_changes:
        orch.settle(result.plan)
        _emit(fmt, {"deployment": result.plan.deployment, "changes": False}, "Nothing to do.")
        sys.exit(EXIT_OK)
    _confirm("Apply this plan?", yes)
    _finish(orch.apply(result.plan, input_files, sets, keep_failed=keep_failed,
                       report=result.report), fmt)


def _emit(fmt: str, data, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else text)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("refusing to continue without confirmation: pass --yes")
    if not click.confirm(question, default=False):
        raise click.exceptions.Abort()


def _public(record) -> dict:
    """A deployment as shown to users: without the bulky plan and template text."""
    return record.to_dict() | {"plan": None, "template_text": None}


def _finish(result, fmt: str) -> None:
    run = result.run
    record = result.deployment
    data = {"deployment": _public(record),
            "ok": run.ok, "failed": run.failed, "rolled_back": run.rolled_back}
    text = f"Deployment '{record.name}' {record.status}."
    if not run.ok:
        text += "\n" + "\n".join(f"  {k}: {v}" for k, v in run.failed.items())
        if run.rolled_back:
            text += f"\nRolled back: {', '.join(run.rolled_back)}"
    _emit(fmt, data, text)
    sys.exit(EXIT_OK if run.ok else EXIT_FAILED)


@cli.command()
@click.argument("template", required=False)
@_inputs
@click.option("--name", help="Deployment name (default: the template's file name).")
@click.option("-o", "--out", "out", metavar="FILE", help="Write the plan as JSON to FILE.")
@click.option("--no-refresh", is_flag=True, help="Do not ask the providers what exists.")
@import_options
@_json_fmt
@click.pass_context
def plan(ctx, template, input_files, sets, name, out, no_refresh, fmt, imports):
    """Compute, with no side effects, what deploying TEMPLATE would do. Against an existing
    deployment (--name, or the template's file name): the diff, after refreshing what the
    clouds report, with the inputs given now merged over those it keeps (TEMPLATE: the
    one it was made from when not given)."""
    if not template and not name:
        raise click.UsageError("give a TEMPLATE, or --name of an existing deployment")
    orch = _orchestrator(ctx, fmt)
    record = orch.existing(template, name)
    if record is None and not template:
        orch.deployment(name)  # no such deployment: says so
    if record is not None:
        sets = ask_secrets(orch, record.name, input_files, sets)
        result = orch.plan_change(record.name, template, input_files, sets,
                                  refresh=not no_refresh, import_options=imports)
    else:
        result = orch.plan(template, input_files, sets, name=name, refresh=not no_refresh,
                           import_options=imports)
    data = result.plan.to_dict()
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(result.plan.to_json())
    _emit(fmt, data, plan_view.plan_text(data) + (f"\nPlan written to {out}." if out else ""))


@cli.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@_inputs
@click.option("--keep-failed", is_flag=True, help="Do not roll back what a failed run made.")
@_json_fmt
@click.pass_context
def apply(ctx, plan_file, input_files, sets, keep_failed, fmt):
    """Execute a saved plan; refused when the deployment moved on since it was made."""
    from orchestrator import service

    plan_obj = service.load_plan(plan_file)
    orch = _orchestrator(ctx, fmt)
    _finish(orch.apply(plan_obj, input_files, sets, keep_failed=keep_failed), fmt)


@cli.command()
@click.argument("template", required=False)
@_inputs
@click.option("--name", help="Deployment name (default: the template's file name).")
@click.option("--resume", "resume", metavar="NAME",
              help="Finish an interrupted deployment NAME from its stored template.")
@click.option("--update", "update", is_flag=True,
              help="Change the deployment if it exists (as `orchestrator update`); without "
              "it, deploying onto an existing name is refused.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Start the deployment in the background and "
              "return; follow it with `orchestrator logs NAME --follow`.")
@click.option("--keep-failed", is_flag=True, help="Do not roll back what a failed run made.")
@import_options
@_json_fmt
@click.pass_context
def deploy(ctx, template, input_files, sets, name, resume, update, yes, no_wait, keep_failed,
           fmt, imports):
    """Plan and apply TEMPLATE: shows the plan, asks, then deploys with live progress."""
    if not template and not resume:
        raise click.UsageError("give a TEMPLATE, or --resume NAME")
    orch = _orchestrator(ctx, fmt)
    record = orch.existing(resume or template, resume or name)
    if record is not None and not (resume or update):
        raise click.ClickException(
            f"deployment '{record.name}' exists already: change it with `orchestrator update "
            f"{record.name} [TEMPLATE] --set KEY=VALUE` (or deploy --update), or delete it "
            f"first with `orchestrator delete {record.name}`")
    if record is not None:
        sets = ask_secrets(orch, record.name, input_files, sets)
    if resume:
        result = orch.resume_plan(resume, input_files, sets)
    elif record is not None:
        result = orch.plan_change(record.name, template, input_files, sets,
                                  import_options=imports)
    else:
        result = orch.plan(template, input_files, sets, name=name, import_options=imports)
    if fmt == "text":
        click.echo(plan_view.plan_text(result.plan.to_dict()))
    if not result.plan.has_changes and result.deployment is not None:
        orch.settle(result.plan)
        _emit(fmt, {"deployment": result.plan.deployment, "changes": False},
              "Nothing to do.")
        sys.exit(EXIT_OK)
    _confirm("Apply this plan?", yes)
    if no_wait:
        _start_background(ctx, result.plan, input_files, sets, keep_failed, fmt)
        return
    _finish(orch.apply(result.plan, input_files, sets, keep_failed=keep_failed,
                       report=result.report), fmt)


def _start_background(ctx, plan_obj, input_files, sets, keep_failed, fmt) -> None:
    import subprocess
    import tempfile

    handle, path = tempfile.mkstemp(prefix="orchestrator-plan-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        out.write(plan_obj.to_json())
    args = [sys.executable, "-m", "orchestrator"]
    for key in ("db", "sites", "step_timeout"):
        if ctx.obj.get(key):
            args += [f"--{key.replace('_', '-')}", str(ctx.obj[key])]
    args += ["apply", path, "--format", "json"]
    args += [a for f in input_files for a in ("-i", f)]
    args += [a for s in sets for a in ("--set", s)]
    if keep_failed:
        args.append("--keep-failed")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    _emit(fmt, {"deployment": plan_obj.deployment, "pid": process.pid, "plan": path},
          f"Deploying '{plan_obj.deployment}' in the background (pid {process.pid}); follow "
          f"it with: orchestrator logs {plan_obj.deployment} --follow")


@cli.command()
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Drop the state even if the cloud cannot delete.")
@_json_fmt
@click.pass_context
def delete(ctx, name, yes, force, fmt):
    """Delete deployment NAME and everything it created."""
    orch = _orchestrator(ctx, fmt)
    record = orch.deployment(name)
    count = len(orch.store.resources(record.id))
    _confirm(f"Delete deployment '{name}' and its {count} resources?", yes)
    run = orch.delete(name, force=force)
    ok = run.ok or force
    _emit(fmt, {"deployment": name, "deleted": ok, "failed": run.failed},
          f"Deployment '{name}' deleted." if ok else
          "Delete failed:\n" + "\n".join(f"  {k}: {v}" for k, v in run.failed.items())
          + "\n(use --force to drop the state anyway)")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command(name="list")
@_json_fmt
@click.pass_context
def list_(ctx, fmt):
    """List deployments."""
    records = [_public(r) for r in _orchestrator(ctx, fmt).list()]
    _emit(fmt, records, plan_view.deployments_text(records))


@cli.command()
@click.argument("name")
@_json_fmt
@click.pass_context
def status(ctx, name, fmt):
    """Show deployment NAME: status and resources."""
    data = _orchestrator(ctx, fmt).status(name)
    _emit(fmt, data, plan_view.status_text(data))


@cli.command()
@click.argument("name")
@click.option("--show-secrets", is_flag=True,
              help="Show the outputs computed from secrets (masked otherwise); recorded as an "
              "event, without the values.")
@_json_fmt
@click.pass_context
def outputs(ctx, name, show_secrets, fmt):
    """Show the outputs of deployment NAME, resolved against its live state (those computed
    from secrets masked unless --show-secrets)."""
    data = _orchestrator(ctx, fmt, quiet=True).outputs(name, reveal=show_secrets)
    _emit(fmt, data, plan_view.outputs_text(data))


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--node", metavar="NODE[INDEX]",
              help="Show the contextualisation log of a node (all its instances, or one: "
              "worker[2]) instead of the events.")
@_json_fmt
@click.pass_context
def logs(ctx, name, follow, node, fmt):
    """Show the events of deployment NAME (or a node's contextualisation log)."""
    orch = _orchestrator(ctx, fmt, quiet=True)
    if node:
        _node_logs(orch, name, node, follow)
        return
    last = 0
    while True:
        for event in orch.events(name, since=last):
            last = event.id
            data = event.to_dict()
            click.echo(json.dumps(data, default=str) if fmt == "json"
                       else plan_view.event_line(data))
        if not follow:
            return
        record = orch.deployment(name)
        if record.status not in ("deploying", "deleting", "updating") and follow == "done":
            return
        follow = "done" if record.status not in ("deploying", "deleting", "updating") else True
        time.sleep(1)


def _node_logs(orch, name: str, node: str, follow: bool) -> None:
    files = orch.node_logs(name, node)
    if not files:
        raise click.ClickException(f"no contextualisation log for node '{node}' of '{name}' "
                                   "(yet)")
    offsets = {path: 0 for path in files}
    while True:
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(offsets[path])
                text = handle.read()
                offsets[path] = handle.tell()
            if text:
                prefix = f"[{os.path.basename(path)[:-4]}] " if len(files) > 1 else ""
                for line in text.splitlines():
                    click.echo(prefix + line)
        if not follow or orch.deployment(name).status not in ("deploying", "updating"):
            return
        time.sleep(1)


@cli.group()
def sites():
    """The site catalogue (sites.yaml)."""


@sites.command(name="list")
@_json_fmt
@click.pass_context
def sites_list(ctx, fmt):
    """List the configured sites and what they declare."""
    orch = _orchestrator(ctx, fmt)
    from orchestrator import service

    data = service.sites_data(orch)
    _emit(fmt, data, (f"Sites from {data['source'] or '(built-in default)'}:\n")
          + plan_view.sites_text(data["sites"]))


@sites.command(name="check")
@_json_fmt
@click.pass_context
def sites_check(ctx, fmt):
    """Check every site: reachable? credentials valid? what does it offer?"""
    from orchestrator import service

    results = service.check_data(_orchestrator(ctx, fmt))
    _emit(fmt, results, plan_view.check_text(results))
    sys.exit(EXIT_OK if all(r["reachable"] and r["credentials_valid"] for r in results)
             else EXIT_FAILED)
