"""Agents: the id of the registration that set the current lease generation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A retried register call carries the same id and bumps nothing.
    op.add_column("agents", sa.Column("registration_id", sa.String(36), nullable=True))
