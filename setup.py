"""Installs the bundled TOSCA types, catalogue templates and playbooks as data files.

Metadata lives in setup.cfg; this file only lists the data directories recursively,
which setup.cfg's declarative ``data_files`` cannot do.
"""
from pathlib import Path

from setuptools import setup


def _tree(top: str) -> list[tuple[str, list[str]]]:
    if not Path(top).is_dir():
        return []
    entries = []
    for folder in sorted(p for p in Path(top).rglob("*") if p.is_dir()) + [Path(top)]:
        files = sorted(str(f) for f in folder.iterdir() if f.is_file())
        if files:
            entries.append((f"share/orchestrator/{folder}", files))
    return entries


setup(data_files=_tree("tosca_types") + _tree("templates") + _tree("playbooks"))
