"""TOSCA orchestrator for research infrastructures."""

__version__ = "0.1.0"
