"""Where the bundled TOSCA types, catalogue templates and playbooks live.

In a checkout or an editable install they sit beside the package; a regular install
puts them under ``<prefix>/share/orchestrator``. Environment variables override both.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _find(name: str, env: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    for base in (_ROOT, Path(sys.prefix) / "share" / "orchestrator"):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    return _ROOT / name


def types_dir() -> Path:
    """The bundled ``tosca_types/`` directory (ORCHESTRATOR_TYPES_DIR overrides)."""
    return _find("tosca_types", "ORCHESTRATOR_TYPES_DIR")


def templates_dir() -> Path:
    """The catalogue ``templates/`` directory (ORCHESTRATOR_TEMPLATES_DIR overrides)."""
    return _find("templates", "ORCHESTRATOR_TEMPLATES_DIR")


def playbooks_dir() -> Path:
    """The ``playbooks/`` directory (ORCHESTRATOR_PLAYBOOKS_DIR overrides)."""
    return _find("playbooks", "ORCHESTRATOR_PLAYBOOKS_DIR")


def data_dir() -> Path:
    """The user's data directory (XDG_DATA_HOME/orchestrator): state, keys, logs."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orchestrator"


def deployment_dir(deployment_id: str) -> Path:
    """Where a deployment keeps its SSH key, contextualisation runs and per-node logs."""
    return data_dir() / "deployments" / deployment_id


def config_dir() -> Path:
    """The user's configuration directory (XDG_CONFIG_HOME/orchestrator)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orchestrator"


def cache_dir() -> Path:
    """The user's cache directory (XDG_CACHE_HOME/orchestrator): fetched imports."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator"
