"""Operation implementations checked at validate, so a playbook that does not exist is
found before anything is deployed.

A relative path without ``..`` must name a file where the configurator will look for it
(``contextualize.configurator.Configurator.resolve_implementation``): next to the
template, then in the project (the parent of ``playbooks/``), then in ``playbooks/``
(``playbooks/x.yml`` also as ``x.yml`` there). An absolute path or one that climbs out
with ``..`` is refused, as imports are, unless a local user allows it
(``--allow-local-imports``): a template posted to the service cannot make its workers run
a playbook elsewhere on the server. It is not looked up either way (validate does not
tell which files exist outside those folders). A URL is not fetched: written in the
template itself it is a warning; the remote playbooks of another catalogue's types are
the implementation choice's concern (``tosca.native``), not a warning on every node of
such a template.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from orchestrator import resources


def search_dirs(template_file: str | None) -> list[Path]:
    """The folders a relative implementation is looked up in, in the configurator's
    order: the template's folder, the project, ``playbooks/``."""
    playbooks = resources.playbooks_dir()
    bases = [Path(template_file).resolve().parent] if template_file else []
    return bases + [playbooks.parent, playbooks]


def find_implementation(implementation: str, dirs: list[Path]) -> Path | None:
    """The file a relative implementation names, or None when none of ``dirs`` has it."""
    parts = PurePosixPath(implementation).parts
    candidates = [base / implementation for base in dirs]
    if parts and parts[0] == "playbooks" and dirs:
        candidates.append(dirs[-1].joinpath(*parts[1:]))
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name too long, or with a NUL byte
            continue
    return None


def _checked(implementation) -> bool:
    """A relative, confined path: the kind validate looks up."""
    if not isinstance(implementation, str) or not implementation.strip() or \
            "://" in implementation or "\0" in implementation:
        return False
    path = PurePosixPath(implementation.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and \
        not os.path.isabs(implementation)


def _operations(template):
    """(node, operation label, operation dict) of every node and relationship operation."""
    for node in template.nodes.values():
        for iface, ops in node.interfaces.items():
            for name, op in ops.items():
                yield node, f"{iface}.{name}", op
        for requirement in node.requirements:
            for iface, ops in requirement.interfaces.items():
                for name, op in ops.items():
                    yield node, f"requirement '{requirement.name}' {iface}.{name}", op


def check_implementations(template) -> None:
    diags = template.diagnostics
    origin = template.docs[0].origin if template.docs else None
    local = origin if origin and "://" not in origin else None
    dirs = search_dirs(local)
    found: dict[str, bool] = {}
    for node, label, op in _operations(template):
        implementation = op.get("implementation")
        loc = op.get("implementation_loc") or op.get("loc") or node.loc
        if isinstance(implementation, str) and "://" in implementation:
            if loc.file == template.file:
                diags.warning("remote-implementation", f"operation {label} is the remote "
                              f"playbook {implementation}: validate does not fetch or check "
                              "it, and deploy does not run it", loc, node=node.name,
                              hint="give the operation a playbook next to the template")
            continue
        if implementation in node.artifacts:
            continue
        if not _checked(implementation):
            if isinstance(implementation, str) and implementation.strip() and \
                    not getattr(template, "allow_local", False):
                diags.error("implementation-not-found", f"operation {label}: implementation "
                            f"'{implementation}' is outside the template's folder and the "
                            "orchestrator's playbooks/", loc, node=node.name,
                            hint="a local user allows it with --allow-local-imports")
            continue
        if implementation not in found:
            found[implementation] = find_implementation(implementation, dirs) is not None
        if not found[implementation]:
            diags.error("implementation-not-found", f"operation {label}: implementation "
                        f"'{implementation}' is neither next to the template nor in the "
                        "orchestrator's playbooks/", loc, node=node.name)
