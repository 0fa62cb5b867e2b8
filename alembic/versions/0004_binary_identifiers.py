"""Ids and project ids compare byte for byte (utf8mb4_bin) on MariaDB.

With the database's default utf8mb4_general_ci, ``TENANT-A``, ``tenant-a``
and ``ténant-a`` were one project: each could list, show and delete the
others' routers. SQLite compares bytes already: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, length, nullable); foreign keys with the keys they name,
# whose collations must match.
COLUMNS = [
    ("agents", "id", 36, False),
    ("agents", "registration_id", 36, True),
    ("routers", "id", 36, False),
    ("routers", "project_id", 64, False),
    ("router_bindings", "router_id", 36, False),
    ("router_bindings", "agent_id", 36, False),
    ("failover_events", "router_id", 36, True),
    ("failover_events", "old_agent_id", 36, True),
    ("failover_events", "new_agent_id", 36, True),
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    # MariaDB will not change the collation of a key a foreign key names, nor
    # of the foreign key column, even with foreign_key_checks off (1833): drop
    # the foreign keys, change both sides, and create them again as they were.
    foreign_keys = [(table, fk) for table in ("router_bindings",)
                    for fk in sa.inspect(bind).get_foreign_keys(table)]
    for table, fk in foreign_keys:
        op.drop_constraint(fk["name"], table, type_="foreignkey")
    for table, column, length, nullable in COLUMNS:
        op.execute(f"ALTER TABLE `{table}` MODIFY `{column}` VARCHAR({length}) "
                   "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin "
                   f"{'NULL' if nullable else 'NOT NULL'}")
    for table, fk in foreign_keys:
        op.create_foreign_key(fk["name"], table, fk["referred_table"],
                              fk["constrained_columns"], fk["referred_columns"],
                              ondelete=(fk.get("options") or {}).get("ondelete"))
