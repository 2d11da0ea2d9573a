"""Deployments' SSH key pairs, sealed, shared by the service's replicas.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment_keys",
        sa.Column("deployment_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_deployment_keys_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_deployment_keys"),
    )


def downgrade() -> None:
    op.drop_table("deployment_keys")
