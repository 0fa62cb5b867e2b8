"""Interleavings of the db layer's writers on MariaDB, made deterministic by
running the second writer (another replica's connection) between the first
one's read and its write. SQLite cannot interleave: it locks the file."""

import ipaddress

import sqlalchemy as sa
import testtools

from clouddisco.db import api as db_api
from clouddisco.db import migration
from clouddisco.db import models
from tests.functional import netlab


class InterleaveMixin:
    """Needs ``self.db`` and a second replica ``self.other`` on one database."""

    def after_first_read_of(self, table, action):
        """Run ``action`` once, right after this replica's next SELECT from
        ``table`` returns (in its own connection: another replica)."""
        fired = []

        def hook(conn, cursor, statement, parameters, context, executemany):
            if (not fired and statement.lstrip().upper().startswith("SELECT")
                    and f"FROM {table}" in statement):
                fired.append(True)
                action()

        sa.event.listen(self.db.engine, "after_cursor_execute", hook)
        self.addCleanup(sa.event.remove, self.db.engine, "after_cursor_execute", hook)
        return fired

    def test_delete_between_bind_read_and_write_wins(self):
        agent = self.db.register_agent("a", "a-")["id"]
        rid = self.make_router()["id"]
        fired = self.after_first_read_of("routers", lambda: self.other.begin_router_delete(rid))
        bound = self.db.bind_router(rid, agent)
        self.assertEqual([True], fired)
        # The API answered 204 for the delete: the router must not live on.
        self.assertFalse(bound)
        router = self.db.get_router(rid)
        self.assertEqual(models.DELETING, router["status"])
        self.assertIsNone(router["agent_id"])

    def test_bind_between_delete_read_and_write_still_deletes(self):
        agent = self.db.register_agent("a", "a-")["id"]
        rid = self.make_router()["id"]
        fired = self.after_first_read_of("routers",
                                         lambda: self.other.bind_router(rid, agent))
        deleting = self.db.begin_router_delete(rid)
        self.assertEqual([True], fired)
        self.assertEqual(models.DELETING, deleting["status"])
        router = self.db.get_router(rid)
        self.assertEqual(models.DELETING, router["status"])
        # The bind won first: its agent is asked to remove the router.
        self.assertEqual("a", router["agent_host"])

    def test_error_report_between_reads_cannot_undo_a_delete(self):
        agent = self.db.register_agent("a", "a-")["id"]
        rid = self.make_router()["id"]
        self.assertTrue(self.db.bind_router(rid, agent))
        fired = self.after_first_read_of("routers", lambda: self.other.begin_router_delete(rid))
        self.db.apply_router_reports("a", {rid: ("ACTIVE", None)})
        self.assertEqual([True], fired)
        self.assertEqual(models.DELETING, self.db.get_router(rid)["status"])


class MariaDBInterleaveTest(InterleaveMixin, testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tempdb = netlab.TempDatabase()
        self.addCleanup(self.tempdb.drop)
        self.db = db_api.Database(self.tempdb.url)
        self.addCleanup(self.db.engine.dispose)
        migration.upgrade(self.db)
        self.other = db_api.Database(self.tempdb.url)
        self.addCleanup(self.other.engine.dispose)

    def make_router(self):
        return self.db.create_router(project_id="p", name="r", ha=False,
                                     external_cidr=ipaddress.IPv4Network("10.250.0.0/16"))
