"""Initial schema: agents, routers, bindings, failover events, services.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, unique=True),
        sa.Column("agent_type", sa.String(32), nullable=False),
        sa.Column("admin_state_up", sa.Boolean, nullable=False),
        sa.Column("namespace_prefix", sa.String(64), nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("dead_since", Timestamp, nullable=True),
        sa.Column("lease_generation", sa.Integer, nullable=False),
        sa.Column("fenced_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "routers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("gateway_ip", sa.String(64), nullable=False, unique=True),
        sa.Column("gateway_prefixlen", sa.Integer, nullable=False),
        sa.Column("gateway_mac", sa.String(17), nullable=False),
        sa.Column("ha", sa.Boolean, nullable=False),
        sa.Column("status", sa.Enum("PENDING", "ACTIVE", "ERROR", "DELETING",
                                    name="router_status"), nullable=False),
        sa.Column("status_reason", sa.String(255), nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "router_bindings",
        sa.Column("router_id", sa.String(36),
                  sa.ForeignKey("routers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.Enum("active", "standby", name="binding_role"),
                  primary_key=True),
        sa.Column("agent_id", sa.String(36),
                  sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("bound_at", Timestamp, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "failover_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("router_id", sa.String(36), nullable=True, index=True),
        sa.Column("old_agent_id", sa.String(36), nullable=True),
        sa.Column("new_agent_id", sa.String(36), nullable=True),
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("detected_by", sa.String(255), nullable=True),
        sa.Column("detail", sa.String(1024), nullable=True),
        sa.Column("last_heartbeat_at", Timestamp, nullable=True),
        sa.Column("detected_at", Timestamp, nullable=False),
        sa.Column("fenced_at", Timestamp, nullable=True),
        sa.Column("rescheduled_at", Timestamp, nullable=True),
        sa.Column("active_at", Timestamp, nullable=True),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("binary", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.UniqueConstraint("binary", "host", name="uniq_services0binary0host"),
        mysql_engine="InnoDB",
    )
