"""Alembic environment for clouddisco (run through ``clouddisco-db-manage``)."""

from alembic import context
from clouddisco.db import models

target_metadata = models.Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with clouddisco-db-manage, which passes "
                           "a connection built from [database] connection")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
