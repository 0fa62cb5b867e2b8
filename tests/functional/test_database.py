"""clouddisco-db-manage and the schema on a real MariaDB."""

import datetime
import ipaddress
import os
import subprocess
import tempfile
import threading

import sqlalchemy as sa
import testtools

from clouddisco.db import api as db_api
from clouddisco.db import migration
from clouddisco.db import models
from lab import netlab
from tests.functional import cloud as cloud_mod
from tests.functional import dbfixture
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


class MariaDBDeadlockTest(testtools.TestCase):
    """A real lock cycle on MariaDB. Galera reports a lost certification with
    the same error (1213), so this exercises the path racing monitors take on
    a cluster: the loser retries, then wins or counts a lost race, never errs."""

    def setUp(self):
        super().setUp()
        database = self.useFixture(dbfixture.MigratedDatabase())
        self.tempdb, self.db = database.tempdb, database.db
        net = ipaddress.IPv4Network("10.250.0.0/16")
        dead = self.db.register_agent("dead", "d-")["id"]
        self.survivor = self.db.register_agent("alive", "a-")["id"]
        self.db.set_agent_admin_state(self.survivor, False)
        self.router = self.db.create_router(project_id="p", name="r", ha=False,
                                            external_cidr=net)["id"]
        self.assertTrue(self.db.bind_router(self.router, dead))
        # Ballast: the other transaction changes many rows, so InnoDB picks
        # the monitor's (lighter) transaction as the deadlock victim.
        for i in range(200):
            self.db.create_router(project_id="p", name=f"ballast{i}", ha=False,
                                  external_cidr=net)
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(models.Agent).where(models.Agent.id == dead)
                         .values(heartbeat_at=self.db.now() - datetime.timedelta(seconds=60)))
        # The ballast can take longer than agent_down_time on a loaded machine.
        self.assertIsNotNone(self.db.record_heartbeat("alive"))
        self.assertEqual(1, len(self.db.mark_dead_agents(3)))
        [self.binding] = self.db.bindings_on_dead_agents()

    def deadlocks(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")).one()[1])

    def move_through_a_deadlock(self, other_monitor_moves: bool) -> list:
        b = self.binding
        move = db_api.Move(b["router_id"], b["agent_id"], b["generation"], self.survivor,
                           b["agent_generation"])
        before = self.deadlocks()
        outcome: dict = {}
        with self.db.engine.connect() as other:
            other.begin()
            other.execute(sa.update(models.Router).where(models.Router.id != self.router)
                          .values(name=models.Router.name + "x"))
            # Hold the binding row the monitor is about to move.
            other.execute(sa.update(models.RouterBinding)
                          .where(models.RouterBinding.router_id == self.router)
                          .values(bound_at=db_api.utcnow()))

            def monitor():
                try:
                    outcome["won"] = self.db.move_bindings(
                        [move], cause="agent_dead", detected_by="m1",
                        last_heartbeat={}, detected_at={})
                except Exception as exc:  # the assertion below reports it
                    outcome["error"] = exc

            thread = threading.Thread(target=monitor)
            thread.start()
            # The monitor has bumped the agent row and now waits to lock the binding.
            netlab.wait_for(lambda: self.lock_waits() > 0, 30, 0.02, "the monitor to block")
            # Close the cycle: this needs the agent row the monitor holds.
            bump = 1 if other_monitor_moves else 0
            other.execute(sa.update(models.Agent).where(models.Agent.id == b["agent_id"])
                          .values(lease_generation=models.Agent.lease_generation + bump,
                                  fenced_at=db_api.utcnow()))
            other.commit()
            thread.join(30)
        self.assertFalse(thread.is_alive())
        self.assertNotIn("error", outcome)
        self.assertGreater(self.deadlocks(), before, "no deadlock happened")
        return outcome["won"]

    def lock_waits(self) -> int:
        """Statements of this database blocked on a router binding (the
        process list shows one's own threads without the PROCESS privilege)."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID() "
                "AND info LIKE '%router_bindings%'")).scalar())

    def test_deadlock_victim_retries_and_wins(self):
        won = self.move_through_a_deadlock(other_monitor_moves=False)
        self.assertEqual([self.router], [mv.router_id for mv in won])
        [router] = self.db.routers_by_id([self.router])
        self.assertEqual("alive", router["agent_host"])
        self.assertEqual(1, len(self.db.list_failover_events(self.router)))

    def test_deadlock_victim_counts_a_lost_race(self):
        # The other transaction stands for a racing monitor: it took the agent's
        # lease generation first, so the retry finds the guard gone.
        won = self.move_through_a_deadlock(other_monitor_moves=True)
        self.assertEqual([], won)
        [router] = self.db.routers_by_id([self.router])
        self.assertEqual("dead", router["agent_host"])
        self.assertEqual([], self.db.list_failover_events(self.router))
