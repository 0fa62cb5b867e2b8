"""SQLAlchemy models: the whole persistent state of clouddisco.

Times are naive UTC with microseconds (DATETIME(6) on MariaDB): failover phases
are milliseconds apart and must stay ordered.
"""

import datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql

from clouddisco import heartbeat

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def Identifier(length: int) -> sa.types.TypeEngine:
    """A string that names something (an id, a project): compared byte for
    byte. MariaDB's default utf8mb4_general_ci would make ``TENANT-A``,
    ``tenant-a`` and ``ténant-a`` one project, able to read and delete each
    other's routers; utf8mb4_bin keeps them apart. SQLite compares bytes
    already."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


UUID = Identifier(36)
# The longest project id the API accepts (the column's length).
PROJECT_ID_LENGTH = 64

# Router status values.
PENDING = "PENDING"
ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETING = "DELETING"
ROUTER_STATUSES = (PENDING, ACTIVE, ERROR, DELETING)
# Shown by the API, never stored: ACTIVE, but its node may no longer serve it.
DOWN = "DOWN"

# Node guard statuses an agent reports; only GUARD_OK makes a silent agent's
# routers safe to move.
GUARD_OK = heartbeat.GUARD_OK
lease_enforced = heartbeat.lease_enforced
GUARD_STATUSES = heartbeat.GUARD_STATUSES

# Binding roles. The primary key (router_id, role) lets the database itself refuse
# a second active binding for one router.
ROLE_ACTIVE = "active"
ROLE_STANDBY = "standby"


class Base(orm.DeclarativeBase):
    pass


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Agent(Base):
    __tablename__ = "agents"

    id: orm.Mapped[str] = orm.mapped_column(UUID, primary_key=True)
    host: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False, unique=True)
    agent_type: orm.Mapped[str] = orm.mapped_column(sa.String(32), nullable=False,
                                                    default="l3")
    admin_state_up: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, nullable=False,
                                                         default=True)
    namespace_prefix: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    # When the last state report was *received* (server clock).
    heartbeat_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                    nullable=False)
    started_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                  nullable=False)
    # Set by the health monitor when it declares the agent dead; cleared by the
    # agent's next report.
    dead_since: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)
    # Bumped on every (re)registration; leases carry it so that a stale agent's
    # renewal can be told apart from a new one's.
    lease_generation: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False,
                                                          default=0)
    fenced_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                  nullable=False,
                                                                  default=_utcnow)
    # The node guard (clouddisco-cleanup --daemon) as the agent's last state
    # report saw it: one of GUARD_STATUSES, or None when the agent does not
    # say (older agents). Without a working guard nothing removes a hung
    # agent's routers when its lease lapses, so silence alone moves nothing.
    guard_status: orm.Mapped[str | None] = orm.mapped_column(sa.String(16))
    # The agent's id for the registration that set lease_generation: a retry
    # of that registration (its first reply was late) bumps nothing.
    registration_id: orm.Mapped[str | None] = orm.mapped_column(UUID)


class Router(Base):
    __tablename__ = "routers"

    id: orm.Mapped[str] = orm.mapped_column(UUID, primary_key=True)
    project_id: orm.Mapped[str] = orm.mapped_column(Identifier(PROJECT_ID_LENGTH),
                                                    nullable=False, index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False,
                                              default="")
    gateway_ip: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False,
                                                    unique=True)
    gateway_prefixlen: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    gateway_mac: orm.Mapped[str] = orm.mapped_column(sa.String(17), nullable=False)
    ha: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, nullable=False, default=False)
    status: orm.Mapped[str] = orm.mapped_column(
        sa.Enum(*ROUTER_STATUSES, name="router_status"), nullable=False, default=PENDING)
    status_reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    # Bumped on every change of placement or status: compare-and-swap guard.
    generation: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False,
                                                    default=0)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                  nullable=False,
                                                                  default=_utcnow)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                  nullable=False,
                                                                  default=_utcnow)


class RouterBinding(Base):
    __tablename__ = "router_bindings"

    router_id: orm.Mapped[str] = orm.mapped_column(
        UUID, sa.ForeignKey("routers.id", ondelete="CASCADE"), primary_key=True)
    role: orm.Mapped[str] = orm.mapped_column(
        sa.Enum(ROLE_ACTIVE, ROLE_STANDBY, name="binding_role"), primary_key=True)
    agent_id: orm.Mapped[str] = orm.mapped_column(
        UUID, sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True)
    # Bumped by every move; a move is UPDATE ... WHERE agent_id=:old AND generation=:g.
    generation: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False,
                                                    default=0)
    bound_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                nullable=False,
                                                                default=_utcnow)


class FailoverEvent(Base):
    """Evidence of one router move (or of a refused failover: circuit breaker)."""

    __tablename__ = "failover_events"

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True,
                                            autoincrement=True)
    # No foreign key: the evidence outlives the router.
    router_id: orm.Mapped[str | None] = orm.mapped_column(UUID, index=True)
    old_agent_id: orm.Mapped[str | None] = orm.mapped_column(UUID)
    new_agent_id: orm.Mapped[str | None] = orm.mapped_column(UUID)
    cause: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    detected_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    detail: orm.Mapped[str | None] = orm.mapped_column(sa.String(1024))
    last_heartbeat_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)
    detected_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                   nullable=False)
    fenced_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)
    rescheduled_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)
    active_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(Timestamp)


class Service(Base):
    """A control-plane replica (scheduler, API) and its heartbeat."""

    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("binary", "host", name="uniq_services0binary0host"),)

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True,
                                            autoincrement=True)
    binary: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    host: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    heartbeat_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                    nullable=False)
    started_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp,
                                                                  nullable=False)
