"""Reaching what was deployed: ``orchestrator ssh NAME [NODE[/INDEX]] [-- COMMAND]`` and
``orchestrator ssh-config NAME`` (an OpenSSH Host block per server, through the jump host
where a server has only a private address)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import click

from orchestrator.cli.lifecycle import _json_fmt, _orchestrator
from orchestrator.cli.main import cli


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("server", required=False, metavar="[NODE[/INDEX]]")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(ctx, name, server, command):
    """Log in to a server of deployment NAME (the only one, or NODE[/INDEX]) with the
    deployment's key, or run COMMAND there (after --). Exit status: the command's."""
    from orchestrator import access

    if server == "--":
        server = None
    command = tuple(c for c in command if c != "--") if command[:1] == ("--",) else command
    target = access.choose(_orchestrator(ctx, quiet=True).ssh_targets(name), server)
    argv = access.ssh_command(target, command)
    if not command and sys.stdin.isatty():
        os.execvp(argv[0], argv)  # an interactive session: ssh takes over the terminal
    sys.exit(subprocess.run(argv, check=False).returncode)


@cli.command("ssh-config")
@click.argument("name")
@_json_fmt
@click.pass_context
def ssh_config(ctx, name, fmt):
    """Print an OpenSSH Host block per server of deployment NAME (append it to
    ~/.ssh/config, or use `ssh -F FILE`), or the connection facts as JSON."""
    from orchestrator import access

    targets = _orchestrator(ctx, fmt, quiet=True).ssh_targets(name)
    if fmt == "json":
        click.echo(json.dumps({"format_version": 1, "servers": [t.to_dict() for t in targets]},
                              indent=2))
    else:
        click.echo(access.ssh_config(targets), nl=False)
