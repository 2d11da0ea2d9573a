"""The ``orchestrator`` command. Thin: it calls orchestrator.service and renders.

Exit codes: 0 success, 1 failure (an invalid template, a failed operation), 2 usage error.
Heavy modules are imported inside the commands so ``--help`` and ``--version`` stay fast.
"""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from orchestrator import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def import_options(func):
    """--import-map, --allow-remote-imports, --refresh-imports, --allow-local-imports; the
    command receives them as one ``imports`` policy (see ``service.import_options``)."""
    options = [
        click.option("--import-map", "import_maps", multiple=True, metavar="FILE",
                     help="Extra URL -> local file map for remote imports (repeatable)."),
        click.option("--allow-remote-imports", is_flag=True,
                     help="Fetch remote imports that no map covers: https only, public hosts, "
                     "cached in $XDG_CACHE_HOME/orchestrator/imports (off: no network access)."),
        click.option("--refresh-imports", is_flag=True,
                     help="Fetch remote imports again instead of using their cached copies."),
        click.option("--allow-local-imports", is_flag=True,
                     help="Let imports read absolute paths, file:// URLs and files outside the "
                     "template's folder (off: confined to it, the bundled types and the maps)."),
        click.option("--implementation", type=click.Choice(["native", "upstream"]),
                     default="native", show_default=True,
                     help="Operations of INDIGO / INFN-Cloud node types: our playbooks where "
                     "we have them (native), or the types' own playbooks and roles (upstream)."),
    ]

    @functools.wraps(func)
    def wrapper(*args, import_maps, allow_remote_imports, refresh_imports,
                allow_local_imports, implementation, **kwargs):
        from orchestrator import service

        kwargs["imports"] = service.import_options(import_maps, allow_remote_imports,
                                                   allow_local_imports, refresh_imports,
                                                   implementation)
        return func(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _template_options(func):
    options = [
        click.option("-i", "--inputs", "input_files", multiple=True, metavar="FILE",
                     help="YAML file of input values (repeatable; later files win)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Set one input (repeatable; wins over -i). VALUE is read as YAML."),
        import_options,
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True, help="Output format."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="orchestrator")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option("--db", metavar="URL", envvar="ORCHESTRATOR_DB",
              help="State database: sqlite:///PATH or postgresql://... (default: SQLite in "
              "the XDG data dir; env ORCHESTRATOR_DB).")
@click.option("--sites", metavar="FILE", envvar="ORCHESTRATOR_SITES",
              help="Site catalogue (default: $XDG_CONFIG_HOME/orchestrator/sites.yaml; env "
              "ORCHESTRATOR_SITES).")
@click.option("--step-timeout", metavar="SECONDS", type=click.FloatRange(min=1),
              envvar="ORCHESTRATOR_STEP_TIMEOUT", default=1800, show_default=True,
              help="How long one step may wait for its resource to become ready.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, db: str | None, sites: str | None,
        step_timeout: float) -> None:
    """TOSCA orchestrator: validate, inspect, plan and deploy TOSCA templates for research
    infrastructures (GPUs, InfiniBand, CVMFS, ML clusters).

    Exit status: 0 success, 1 failure, 2 usage error."""
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, db=db, sites=sites, step_timeout=step_timeout)


@cli.command()
@click.argument("template")
@_template_options
@click.option("--strict", is_flag=True,
              help="Treat warnings (duplicate keys, missing inputs...) as errors.")
def validate(template, input_files, sets, imports, fmt, strict):
    """Validate TEMPLATE (a file, a CSAR archive or a catalogue name).

    A template is valid without values for its required inputs (each is a warning);
    plan and deploy need them. Exit status 0 when valid, 1 when invalid (or, with
    --strict, when there is any warning), 2 on usage errors."""
    from orchestrator import service
    from orchestrator.cli import render

    report = service.validate(template, input_files, sets, options=imports)
    ok = report.valid and not (strict and render.warning_count(report))
    if fmt == "json":
        click.echo(json.dumps(render.validation_json(report, strict=strict), indent=2))
    else:
        click.echo(render.validation_text(report, strict=strict), err=not ok)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command()
@click.argument("template")
@_template_options
def inspect(template, input_files, sets, imports, fmt):
    """Show the resolved topology of TEMPLATE: nodes, hosting, compute requirements,
    dependency order, inputs and outputs (secrets masked)."""
    from orchestrator import service
    from orchestrator.cli import render

    report = service.validate(template, input_files, sets, options=imports)
    if fmt == "json":
        click.echo(json.dumps(render.validation_json(report, with_topology=True), indent=2))
    elif report.valid:
        warnings = render.diagnostics_text(report.diagnostics)
        if warnings:
            click.echo(warnings, err=True)
        click.echo(render.topology_text(report.topology))
    else:
        click.echo(render.validation_text(report), err=True)
    sys.exit(EXIT_OK if report.valid else EXIT_FAILED)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def catalogue(fmt):
    """List the catalogue templates with their descriptions and inputs."""
    from orchestrator import service
    from orchestrator.cli import render

    entries = service.catalogue()
    if fmt == "json":
        click.echo(json.dumps(render.catalogue_json(entries), indent=2))
    else:
        click.echo(render.catalogue_text(entries))
    sys.exit(EXIT_OK if all(e.valid for e in entries) else EXIT_FAILED)


def _logging(debug: bool) -> None:
    """The CLI speaks through its own messages: log records of libraries (an SDK's warnings)
    and of the engine (an internal error's traceback) reach stderr only with --debug.
    Without a handler, Python would print them through its last-resort handler."""
    import logging

    if debug:
        logging.basicConfig(level=logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
    elif not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one place where errors become messages and exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    _logging(debug)
    try:
        cli.main(args=argv, prog_name="orchestrator", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_FAILED)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence: no traceback unless --debug
        from orchestrator.errors import OrchestratorError

        if debug:
            raise
        if isinstance(exc, OrchestratorError):
            diagnostics = getattr(exc, "diagnostics", None)
            if diagnostics is not None and len(diagnostics):
                click.echo("\n".join(d.render() for d in diagnostics.sorted()), err=True)
            click.echo(f"error: {exc}", err=True)
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the "
                       "traceback, and please report it)", err=True)
        sys.exit(EXIT_FAILED)


from orchestrator.cli import lifecycle  # noqa: E402,F401  (registers the lifecycle commands)
from orchestrator.cli import changes  # noqa: E402,F401  (registers update and scale)
from orchestrator.cli import access  # noqa: E402,F401  (registers ssh and ssh-config)
from orchestrator.cli import serve  # noqa: E402,F401  (registers `orchestrator serve`)
if os.environ.get("ORCHESTRATOR_URL", "").strip():  # remote mode: talk to a server
    from orchestrator.cli import remote

    remote.install(cli)
