"""clouddisco-db-manage and the schema on a real MariaDB."""

import os
import subprocess
import tempfile

import testtools

from clouddisco.db import api as db_api
from clouddisco.db import migration
from tests.functional import cloud as cloud_mod
from tests.functional import netlab
from tests.unit import test_migrations


class MariaDBMigrationTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        # No skip without a server: tools/setup-env.sh provides MariaDB.
        self.tempdb = netlab.TempDatabase()
        self.addCleanup(self.tempdb.drop)

    def db_manage(self, *args):
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(f"[database]\nconnection = {self.tempdb.url}\n")
        self.addCleanup(os.unlink, path)
        return subprocess.run([f"{cloud_mod.BIN}/clouddisco-db-manage", "--config-file",
                               path, *args], capture_output=True, text=True, timeout=120)

    def test_upgrade_head_on_empty_database_matches_models(self):
        current = self.db_manage("current")
        self.assertEqual(0, current.returncode, current.stderr)
        self.assertEqual("(empty)", current.stdout.strip().splitlines()[-1])
        done = self.db_manage("upgrade", "head")
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn(f"database at revision {migration.head()}", done.stdout)
        db = db_api.Database(self.tempdb.url)
        self.addCleanup(db.engine.dispose)
        self.assertEqual([], test_migrations.schema_diff(db))
        again = self.db_manage("upgrade", "head")
        self.assertEqual(0, again.returncode, again.stderr)

    def test_datetimes_keep_microseconds(self):
        db = db_api.Database(self.tempdb.url)
        self.addCleanup(db.engine.dispose)
        migration.upgrade(db)
        agent = db.register_agent("h", "p-")
        stored = db.list_agents(3)[0]["heartbeat_at"]
        self.assertEqual(agent["heartbeat_at"].isoformat(timespec="microseconds") + "Z",
                         stored)
