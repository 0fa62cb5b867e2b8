"""Run the alembic migrations in the top-level ``alembic/`` directory."""

import os
import sys

from alembic import command
from alembic import config as alembic_config
from alembic import migration
from alembic import script
from clouddisco.db import api as db_api


def script_location() -> str:
    """``alembic/`` of a source checkout, else the copy installed as data files."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "..", "alembic"),
                  os.path.join(sys.prefix, "share", "clouddisco", "alembic")]
    for path in candidates:
        if os.path.exists(os.path.join(path, "env.py")):
            return os.path.normpath(path)
    raise RuntimeError("alembic migrations not found in: " + ", ".join(candidates))


def _config() -> alembic_config.Config:
    cfg = alembic_config.Config()
    cfg.set_main_option("script_location", script_location())
    return cfg


def upgrade(db: db_api.Database, revision: str = "head") -> None:
    cfg = _config()
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current(db: db_api.Database) -> str | None:
    with db.engine.connect() as connection:
        return migration.MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    return script.ScriptDirectory.from_config(_config()).get_current_head()
