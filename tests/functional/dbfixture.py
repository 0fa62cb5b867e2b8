"""A throw-away, migrated clouddisco database on the machine's MariaDB."""

import fixtures

from clouddisco.db import api as db_api
from clouddisco.db import migration
from lab import netlab


class MigratedDatabase(fixtures.Fixture):
    """``tempdb`` (dropped after) at alembic head; ``connect()`` gives another
    ``Database`` on it, as another replica would have."""

    def _setUp(self) -> None:
        self.tempdb = netlab.TempDatabase()
        self.addCleanup(self.tempdb.drop)
        self.db = self.connect()
        migration.upgrade(self.db)

    def connect(self) -> db_api.Database:
        db = db_api.Database(self.tempdb.url)
        self.addCleanup(db.engine.dispose)
        return db
