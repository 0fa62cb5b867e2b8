"""Agents: the node guard's status from the agent's last state report.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: agents that do not report it yet (older ones) are "unknown".
    op.add_column("agents", sa.Column("guard_status", sa.String(16), nullable=True))
