"""The ``local`` provider: nodes are containers on this machine (podman, else docker).

See provider.py for the behaviour, image.py for the base image and docs/sites.md,
"The local provider", for the site options.
"""
from orchestrator.providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
