"""The orchestrator's run-time error family. SDK exceptions are translated into these at
the provider boundary; front ends map them to messages and exit codes in one place."""
from __future__ import annotations


class OrchestratorError(Exception):
    """Base class of every error the orchestrator reports to users."""


class TemplateError(OrchestratorError):
    """A template is invalid; ``diagnostics`` holds the details."""

    def __init__(self, message: str, diagnostics=None):
        super().__init__(message)
        self.diagnostics = diagnostics


class PlacementError(OrchestratorError):
    """No site can host a node; the message says why for every site."""


class ProviderError(OrchestratorError):
    """A cloud provider call failed."""


class ContextualizationError(OrchestratorError):
    """An Ansible operation failed on a node."""


class StateLockedError(OrchestratorError):
    """Another process holds the deployment's lock."""


class StalePlanError(OrchestratorError):
    """The plan was made against a state that has moved on."""
