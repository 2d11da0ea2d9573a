"""Day-two commands: update and scale. Each plans a change of an existing deployment
(keeping what it was made with: its template, its inputs, its scaled counts), shows it,
asks, and applies it with the same engine as deploy."""
from __future__ import annotations

import click

from orchestrator.cli.lifecycle import _inputs, _json_fmt, _orchestrator, ask_secrets, \
    show_and_apply
from orchestrator.cli.main import cli, import_options

_yes = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
_keep_failed = click.option("--keep-failed", is_flag=True,
                            help="Do not roll back what a failed run made.")


@cli.command()
@click.argument("name")
@click.argument("template", required=False)
@_inputs
@_yes
@_keep_failed
@import_options
@_json_fmt
@click.pass_context
def update(ctx, name, template, input_files, sets, yes, keep_failed, fmt, imports):
    """Change deployment NAME: to TEMPLATE (default: the one it was made from) with the
    inputs given now (--set, -i) merged over those it keeps, then apply the difference.
    Secret inputs are never kept: those it was made with are asked for again."""
    orch = _orchestrator(ctx, fmt)
    orch.deployment(name)
    sets = ask_secrets(orch, name, input_files, sets)
    result = orch.plan_change(name, template, input_files, sets, import_options=imports)
    show_and_apply(orch, result, input_files, sets, yes, keep_failed, fmt)


@cli.command()
@click.argument("name")
@click.argument("node")
@click.argument("count", type=click.IntRange(min=0))
@click.option("--remove", "remove", multiple=True, type=click.IntRange(min=0),
              metavar="INDEX", help="Remove this instance of NODE (its index, as in "
              "worker[2]) rather than the newest (repeatable).")
@_inputs
@_yes
@_keep_failed
@_json_fmt
@click.pass_context
def scale(ctx, name, node, count, remove, input_files, sets, yes, keep_failed, fmt):
    """Scale the server group NODE of deployment NAME to COUNT instances: a plan, shown
    and confirmed, applied like any other. A count the template takes from an input sets
    that input; a fixed count is kept over the template's until the template's changes."""
    orch = _orchestrator(ctx, fmt)
    orch.deployment(name)
    sets = ask_secrets(orch, name, input_files, sets)
    result = orch.plan_scale(name, node, count, remove, input_files, sets)
    show_and_apply(orch, result, input_files, sets, yes, keep_failed, fmt)
