"""Alembic migrations of the state store; ``Store`` runs them to head when it opens a database."""
