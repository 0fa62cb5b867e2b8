"""The alembic migrations build exactly the schema the models describe."""

import os
import tempfile

import testtools

from alembic import autogenerate
from alembic import migration as alembic_migration
from clouddisco.db import api as db_api
from clouddisco.db import migration
from clouddisco.db import models


def schema_diff(db: db_api.Database) -> list:
    with db.engine.connect() as conn:
        ctx = alembic_migration.MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False})
        return autogenerate.compare_metadata(ctx, models.Base.metadata)


class MigrationsSQLiteTest(testtools.TestCase):
    def test_upgrade_head_matches_models(self):
        fd, path = tempfile.mkstemp(suffix=".sqlite")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        db = db_api.Database(f"sqlite:///{path}")
        self.assertIsNone(migration.current(db))
        migration.upgrade(db)
        self.assertEqual(migration.head(), migration.current(db))
        self.assertEqual([], schema_diff(db))
        migration.upgrade(db)  # idempotent
        self.assertEqual(migration.head(), migration.current(db))
