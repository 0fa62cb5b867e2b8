"""[database] options and Galera's "unavailable" errors on the machine's MariaDB.

The options must reach the server session from the service's own
configuration (oslo.db would read the global one). The errors a Galera node
outside the Primary Component gives (1047, 1180) are raised by the server
itself with SIGNAL, and a writer killed mid-session by KILL: each goes
through pymysql, SQLAlchemy, oslo.db and clouddisco's mapping as it would
from a cluster behind HAProxy.
"""

import ipaddress
import json
import time

import pymysql
import sqlalchemy as sa
import testtools
import webob

from clouddisco import exceptions
from clouddisco.api import app as api_app
from clouddisco.db import api as db_api
from lab import netlab
from tests.unit import base

ADMIN = {"X-Project-Id": "p1", "X-Roles": "admin,member"}
CIDR = ipaddress.IPv4Network("10.250.0.0/24")


class MariaDBTestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        netlab.skip_unless_root(self)
        self.tempdb = netlab.TempDatabase()
        self.addCleanup(self.tempdb.drop)

    def build(self, **database):
        database.setdefault("connection", self.tempdb.url)
        conf = base.make_conf(**{f"database__{k}": v for k, v in database.items()})
        db = db_api.Database.from_conf(conf)
        self.addCleanup(db.engine.dispose)
        return db


class SessionOptionsTest(MariaDBTestCase):
    QUERY = ("SELECT @@SESSION.wsrep_sync_wait, @@SESSION.sql_mode, "
             "@@SESSION.innodb_lock_wait_timeout")

    def session(self, engine):
        with engine.connect() as conn:
            return tuple(conn.exec_driver_sql(self.QUERY).one())

    def test_options_reach_the_server_session(self):
        db = self.build(mysql_wsrep_sync_wait=3, mysql_sql_mode="ANSI_QUOTES,STRICT_ALL_TABLES",
                        connection_parameters="read_timeout=5&init_command="
                        "SET SESSION innodb_lock_wait_timeout=7",
                        max_pool_size=3, max_overflow=4)
        self.assertEqual((3, "ANSI_QUOTES,STRICT_ALL_TABLES", 7), self.session(db.engine))
        self.assertEqual((3, 4), (db.engine.pool.size(), db.engine.pool._max_overflow))
        # The db layer's own transactions run in such sessions too.
        db.create_schema()
        with db._session() as s:
            self.assertEqual((3, "ANSI_QUOTES,STRICT_ALL_TABLES", 7),
                             tuple(s.execute(sa.text(self.QUERY)).one()))

    def test_defaults(self):
        wsrep, mode, _ = self.session(self.build().engine)
        self.assertEqual(0, wsrep)  # the server's: reads and writes on one node
        self.assertIn("TRADITIONAL", mode.split(","))

    def test_reads_from_another_node_wait_for_causality(self):
        db = self.build(slave_connection=self.tempdb.url, synchronous_reader=False)
        reader = db._facade.reader.get_engine()
        self.assertIsNot(reader, db.engine)
        self.assertEqual(1, self.session(reader)[0])
        self.assertEqual(1, self.session(db.engine)[0])
        db = self.build(slave_connection=self.tempdb.url, synchronous_reader=False,
                        mysql_wsrep_sync_wait=0)
        self.assertEqual(0, self.session(db._facade.reader.get_engine())[0])


class UnavailableTest(MariaDBTestCase):
    """1047 and 1180 as the server raises them; a connection killed mid-session."""

    WSREP_NOT_READY = (1047, "WSREP has not yet prepared node for application use")
    COMMIT_FAILED = (1180, "Got error 6 \"No such device or address\" during COMMIT")

    def setUp(self):
        super().setUp()
        self.db = self.build()
        self.db.create_schema()
        self.faults = []  # [errno, message, statements left or None]
        sa.event.listen(self.db.engine, "before_cursor_execute", self._signal, retval=True)
        self.addCleanup(sa.event.remove, self.db.engine, "before_cursor_execute",
                        self._signal)

    def _signal(self, conn, cursor, statement, parameters, context, executemany):
        if not self.faults:
            return statement, parameters
        fault = self.faults[0]
        if fault[2] is not None:
            fault[2] -= 1
            if fault[2] <= 0:
                self.faults.clear()
        errno, message = fault[0], fault[1].replace("'", "''")
        return (f"SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = {errno}, "
                f"MESSAGE_TEXT = '{message}'"), ()

    def inject(self, error, times=None):
        self.faults[:] = [[*error, times]]

    def test_a_short_spell_outside_the_primary_component_is_ridden_through(self):
        rid = self.db.create_router(project_id="p1", name="r", ha=False,
                                    external_cidr=CIDR)["id"]
        for error in (self.WSREP_NOT_READY, self.COMMIT_FAILED):
            self.inject(error, times=3)
            self.assertEqual(rid, self.db.get_router(rid)["id"])
            self.inject(error, times=2)
            self.db.set_router_error(rid, "x")  # nothing committed: any write retries

    def test_api_answers_503_within_5s(self):
        app = api_app.deploy(base.make_conf(api__external_cidr=str(CIDR)), db=self.db,
                             scheduler=base.RecordingSchedulerAPI())
        for error in (self.WSREP_NOT_READY, self.COMMIT_FAILED):
            self.inject(error)
            for method, body in (("GET", None), ("POST", {"name": "r"})):
                req = webob.Request.blank("/v1/routers", method=method, headers=ADMIN)
                if body is not None:
                    req.body = json.dumps(body).encode()
                    req.content_type = "application/json"
                started = time.monotonic()
                resp = req.get_response(app)
                self.assertLess(time.monotonic() - started, 5.0)
                self.assertEqual(503, resp.status_int, resp.text)
                self.assertEqual("5", resp.headers["Retry-After"])
        self.faults.clear()
        self.assertEqual([], self.db.list_routers())  # nothing was created

    def test_unavailable_for_longer_than_the_budget(self):
        self.db.reconnect_retry_time = 0.5
        self.inject(self.WSREP_NOT_READY)
        err = self.assertRaises(exceptions.DatabaseUnavailable, self.db.list_routers)
        self.assertIn("1047", str(err))

    def test_connection_killed_mid_transaction_is_ridden_through(self):
        """The writer behind HAProxy dies between two statements of a
        transaction (2013): nothing committed, the call runs again."""
        killed = []

        def kill_once(conn, cursor, statement, parameters, context, executemany):
            if not killed and "FROM routers" in statement:
                killed.append(cursor.connection.thread_id())
                other = pymysql.connect(host=self.tempdb.host, port=self.tempdb.port,
                                        user=self.tempdb.user, password=self.tempdb.password)
                try:
                    other.cursor().execute(f"KILL {killed[0]}")
                finally:
                    other.close()

        sa.event.listen(self.db.engine, "before_cursor_execute", kill_once)
        self.addCleanup(sa.event.remove, self.db.engine, "before_cursor_execute", kill_once)
        router = self.db.create_router(project_id="p1", name="r", ha=False,
                                       external_cidr=CIDR)
        self.assertEqual(1, len(killed))
        self.assertEqual([router["id"]], [r["id"] for r in self.db.list_routers()])
