"""The db layer on a Galera cluster: every [database] option applied, retries
that cannot apply a write twice, and "database unavailable" (1047, 1180,
lost connections) as a clean 503 and one monitor log line.

MySQL errors are simulated on SQLite at the DBAPI level: the dialect's
``do_execute`` / ``do_commit`` raise what the driver would (a lost
connection is SQLite's own disconnect error; 1047 and 1180 are DBAPI errors
carrying the MySQL error number first, as pymysql's do), so each goes
through SQLAlchemy's and oslo.db's real error handling.
"""

import json
import logging
import os
import re
import sqlite3
import time
from unittest import mock

import fixtures
import pymysql
import sqlalchemy as sa
import testtools
import webob
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import engines as oslo_engines
from oslo_db.sqlalchemy import exc_filters

from clouddisco import exceptions
from clouddisco.api import app as api_app
from clouddisco.conf import opts as cd_opts
from clouddisco.db import api as db_api
from clouddisco.db import retry as db_retry
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import monitor
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN = {"X-Project-Id": "p1", "X-Roles": "admin,member"}

WSREP_NOT_READY = (1047, "WSREP has not yet prepared node for application use")
COMMIT_FAILED = (1180, 'Got error 6 "No such device or address" during COMMIT')


class MySQLError(sqlite3.OperationalError):
    """A DBAPI error of the SQLite driver that carries a MySQL error number
    first, as pymysql's errors do: 1047 or 1180 without a Galera cluster."""


def lost_connection():
    # What SQLite's dialect recognises as a disconnect (is_disconnect), so
    # oslo.db raises DBConnectionError as it does for MySQL's 2006 / 2013.
    return sqlite3.ProgrammingError("Cannot operate on a closed database.")


def sample_options(group):
    """Option names of ``[group]`` in etc/clouddisco/clouddisco.conf.sample."""
    names, inside = set(), False
    with open(os.path.join(ROOT, "etc/clouddisco/clouddisco.conf.sample")) as f:
        for line in f:
            if line.startswith("["):
                inside = line.strip() == f"[{group}]"
            elif inside:
                match = re.match(r"^#(\w+) =", line)
                if match:
                    names.add(match.group(1))
    return names


class Faults:
    """Make the engine's DBAPI calls fail on demand.

    ``execute(exc, times)``: the next ``times`` statements (None: all until
    ``clear``) raise ``exc()`` instead of running; ``commit(exc, times,
    applied)``: the next COMMITs raise ``exc()``, after committing when
    ``applied`` (the reply was lost, not the commit).
    """

    def __init__(self, engine):
        self.dialect = engine.dialect
        self.real_execute = self.dialect.do_execute
        self.real_commit = self.dialect.do_commit
        self._execute = None
        self._commit = None
        self.failed = 0

    def install(self, test):
        p1 = mock.patch.object(self.dialect, "do_execute", self.do_execute)
        p2 = mock.patch.object(self.dialect, "do_commit", self.do_commit)
        p1.start()
        p2.start()
        test.addCleanup(p1.stop)
        test.addCleanup(p2.stop)
        return self

    def execute(self, exc, times=None, match=None):
        self._execute = [exc, times, match]

    def commit(self, exc, times=1, applied=True):
        self._commit = [exc, times, applied]

    def clear(self):
        self._execute = self._commit = None

    def do_execute(self, cursor, statement, parameters, context=None):
        fault = self._execute
        if fault is not None and (fault[2] is None or re.search(fault[2], statement)):
            if fault[1] is not None:
                fault[1] -= 1
                if fault[1] <= 0:
                    self._execute = None
            self.failed += 1
            raise fault[0]()
        return self.real_execute(cursor, statement, parameters, context)

    def do_commit(self, dbapi_connection):
        fault = self._commit
        if fault is None:
            return self.real_commit(dbapi_connection)
        fault[1] -= 1
        if fault[1] <= 0:
            self._commit = None
        if fault[2]:
            self.real_commit(dbapi_connection)
        self.failed += 1
        raise fault[0]()


# ---------------------------------------------------------------- options


class RecordingEngines:
    """Every oslo.db create_engine call: (url, keyword arguments)."""

    def __init__(self):
        self.calls = []
        self.real = oslo_engines.create_engine

    def __call__(self, sql_connection, **kwargs):
        self.calls.append((str(sql_connection), dict(kwargs)))
        return self.real(sql_connection, **kwargs)

    def kwargs_for(self, url):
        return next(kw for u, kw in self.calls if u == url)


class DatabaseOptionsTest(testtools.TestCase):
    """Every option the sample lists in [database] reaches the engine, the
    facade or clouddisco's retry from the service's own ConfigOpts; the few
    that cannot are documented and, when set, warned about."""

    # Options with no effect in clouddisco: set, they log a warning at
    # start-up; each is named in the db layer's documentation.
    NOT_APPLICABLE = {"asyncio_connection", "asyncio_slave_connection", "use_db_reconnect",
                      "db_retry_interval", "db_inc_retry_interval",
                      "db_max_retry_interval", "db_max_retries"}

    # Pool options, checked on a MySQL engine's pool (SQLite has none; and
    # oslo.db refuses pool_timeout with SQLite's NullPool). Nothing connects.
    POOL = {"max_pool_size": lambda pool: pool.size(),
            "max_overflow": lambda pool: pool._max_overflow,
            "pool_timeout": lambda pool: pool._timeout,
            "connection_recycle_time": lambda pool: pool._recycle}

    def pool_option_reaches_the_pool(self, name, value):
        db = self.build(connection="mysql+pymysql://nobody@127.0.0.1:1/none",
                        max_retries=0, **{name: value})
        return self.POOL[name](db.engine.pool) == value

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.writer = f"sqlite:///{self.tmp}/writer.sqlite"
        self.reader = f"sqlite:///{self.tmp}/reader.sqlite"
        self.engines = RecordingEngines()
        self.useFixture(fixtures.MonkeyPatch(
            "oslo_db.sqlalchemy.engines.create_engine", self.engines))
        # connection_debug sets the level of SQLAlchemy's engine logger.
        engine_log = logging.getLogger("sqlalchemy.engine")
        self.addCleanup(engine_log.setLevel, engine_log.level)

    def values(self):
        """A value other than the default for every option."""
        return {
            "connection": self.writer,
            "slave_connection": self.reader,
            "asyncio_connection": "sqlite+aiosqlite:///" + self.tmp + "/a.sqlite",
            "asyncio_slave_connection": "sqlite+aiosqlite:///" + self.tmp + "/b.sqlite",
            "backend": "sqlalchemy",  # the only backend; anything else is refused
            "sqlite_synchronous": False,
            "synchronous_reader": False,
            "mysql_sql_mode": "ANSI",
            "mysql_wsrep_sync_wait": 3,
            "connection_recycle_time": 77,
            "max_pool_size": 7,
            "max_retries": 2,
            "retry_interval": 3,
            "max_overflow": 9,
            "connection_debug": 50,
            "connection_trace": True,
            "pool_timeout": 11,
            "use_db_reconnect": True,
            "db_retry_interval": 2,
            "db_inc_retry_interval": False,
            "db_max_retry_interval": 4,
            "db_max_retries": 5,
            "connection_parameters": "timeout=7",
            "reconnect_retry_time": 1.25,
        }

    def build(self, **database):
        database.setdefault("connection", self.writer)
        conf = base.make_conf(**{f"database__{k}": v for k, v in database.items()})
        db = db_api.Database.from_conf(conf)
        self.addCleanup(db.engine.dispose)  # starts the facade: builds the engines
        return db

    def test_the_walk_covers_the_sample(self):
        conf = base.make_conf()
        self.assertEqual(sample_options("database"), set(conf.database))
        self.assertEqual(set(), set(conf.database) - set(self.values()),
                         "give the new option a value in values()")

    def test_every_option_reaches_the_engine(self):
        values = self.values()
        missed = []
        documented = (db_api.__doc__ or "") + (db_retry.__doc__ or "") + "".join(
            o.help for o in cd_opts.DATABASE_OPTS)
        for name in sorted(base.make_conf().database):
            self.engines.calls.clear()
            value = values[name]
            logger = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
            if name in self.POOL:
                if not self.pool_option_reaches_the_pool(name, value):
                    missed.append(f"{name} = {value!r}: not in the engine's pool")
                continue
            try:
                db = self.build(**{name: value})
            except Exception as exc:  # noqa: BLE001 - listed below
                missed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            writer = self.engines.kwargs_for(self.writer) if any(
                u == self.writer for u, _ in self.engines.calls) else {}
            if name == "connection":
                ok = [u for u, _ in self.engines.calls] == [value]
            elif name == "slave_connection":
                ok = value in [u for u, _ in self.engines.calls]
            elif name == "synchronous_reader":
                ok = getattr(db, "reads_from_reader", None) is False  # no slave here
            elif name == "backend":
                ok = True  # see test_backend_other_than_sqlalchemy_is_refused
            elif name == "reconnect_retry_time":
                ok = getattr(db, "reconnect_retry_time", None) == value
            elif name in self.NOT_APPLICABLE:
                ok = name in logger.output and name in documented
            else:
                ok = writer.get(name, "<not passed>") == value
            if not ok:
                missed.append(f"{name} = {value!r}: engine got "
                              f"{writer.get(name, '<not passed>')!r}")
        self.assertEqual([], missed, "[database] options that do not reach the engine")

    def test_reads_go_to_slave_connection_only_without_synchronous_reader(self):
        setup = db_api.Database(self.reader)
        self.addCleanup(setup.engine.dispose)
        setup.create_schema()
        import ipaddress
        rid = setup.create_router(project_id="p", name="only-on-reader", ha=False,
                                  external_cidr=ipaddress.IPv4Network("10.0.0.0/24"))["id"]
        for synchronous, seen in ((True, []), (False, [rid])):
            db = self.build(slave_connection=self.reader, synchronous_reader=synchronous)
            db.create_schema()
            self.assertEqual(seen, [r["id"] for r in db.list_routers()])
            # Writes and the reads that decide them always use the writer.
            self.assertRaises(exceptions.NotFound, db.router_placement, rid)

    def test_wsrep_sync_wait_defaults_to_1_when_reads_may_go_elsewhere(self):
        self.build()
        self.assertIsNone(self.engines.kwargs_for(self.writer)["mysql_wsrep_sync_wait"])
        self.engines.calls.clear()
        self.build(slave_connection=self.reader, synchronous_reader=False)
        self.assertEqual(1, self.engines.kwargs_for(self.writer)["mysql_wsrep_sync_wait"])
        self.assertEqual(1, self.engines.kwargs_for(self.reader)["mysql_wsrep_sync_wait"])
        self.engines.calls.clear()
        self.build(slave_connection=self.reader, synchronous_reader=False,
                   mysql_wsrep_sync_wait=0)  # the operator's value wins
        self.assertEqual(0, self.engines.kwargs_for(self.reader)["mysql_wsrep_sync_wait"])

    def test_options_take_effect_on_sqlite(self):
        db = self.build(sqlite_synchronous=False)
        with db.engine.connect() as conn:
            self.assertEqual(0, conn.exec_driver_sql("PRAGMA synchronous").scalar())
        db = self.build()
        with db.engine.connect() as conn:
            self.assertEqual(2, conn.exec_driver_sql("PRAGMA synchronous").scalar())

    def test_the_global_config_is_not_read(self):
        from oslo_config import cfg
        from oslo_db import options as oslo_options
        cfg.CONF.register_opts(oslo_options.database_opts, "database")
        cfg.CONF.set_override("mysql_sql_mode", "FROM_THE_GLOBAL_CONF", "database")
        self.addCleanup(cfg.CONF.clear_override, "mysql_sql_mode", "database")
        self.build()
        self.assertEqual("TRADITIONAL", self.engines.kwargs_for(self.writer)["mysql_sql_mode"])

    def test_backend_other_than_sqlalchemy_is_refused(self):
        err = self.assertRaises(ValueError, self.build, backend="nosql")
        self.assertIn("backend", str(err))


# ------------------------------------------------------------ error mapping


class ErrorClassificationTest(testtools.TestCase):
    """What oslo.db makes of pymysql's errors, and what clouddisco adds."""

    def classify(self, errno, message):
        orig = pymysql.err.OperationalError(errno, message)
        wrapped = sa.exc.OperationalError("SELECT 1", {}, orig)
        ctx = mock.Mock(original_exception=orig, sqlalchemy_exception=wrapped,
                        chained_exception=None, is_disconnect=False, is_pre_ping=False,
                        connection=None)
        ctx.dialect.name = "mysql"
        try:
            db_retry.translate_unavailable(ctx)
            result = exc_filters.handler(ctx)
        except Exception as exc:  # noqa: BLE001 - what a handler raises ends the chain
            result = exc
        return result, ctx.is_disconnect

    def test_oslo_db_alone(self):
        # 1047 is already a connection error; 1180 comes through raw (a 500).
        orig = pymysql.err.OperationalError(*COMMIT_FAILED)
        ctx = mock.Mock(original_exception=orig, sqlalchemy_exception=sa.exc.OperationalError(
            "COMMIT", {}, orig), is_disconnect=False, is_pre_ping=False, connection=None)
        ctx.dialect.name = "mysql"
        self.assertRaises(sa.exc.OperationalError, exc_filters.handler, ctx)

    def test_galera_not_ready_and_failed_commit_are_unavailable(self):
        for errno, message in (WSREP_NOT_READY, COMMIT_FAILED):
            result, disconnect = self.classify(errno, message)
            self.assertIsInstance(result, db_retry.NodeUnavailable)
            self.assertIsInstance(result, db_exc.DBConnectionError)
            self.assertIn(str(errno), str(result))
            self.assertTrue(disconnect, "the pool must drop connections to that node")

    def test_other_errors_are_left_to_oslo_db(self):
        result, _ = self.classify(1213, "Deadlock found when trying to get lock")
        self.assertIsInstance(result, db_exc.DBDeadlock)
        result, _ = self.classify(2013, "Lost connection to MySQL server during query")
        self.assertIsInstance(result, db_exc.DBConnectionError)
        self.assertNotIsInstance(result, db_retry.NodeUnavailable)


# ----------------------------------------------------------------- retries


class RetryTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.db.reconnect_retry_time = 1.0
        self.faults = Faults(self.db.engine).install(self)

    def agent(self, host="a"):
        return self.db.register_agent(host, f"{host}-")["id"]

    def test_every_method_that_touches_the_database_is_wrapped(self):
        skip = {"engine", "ping", "create_schema", "from_conf"}
        unwrapped = [name for name in dir(db_api.Database)
                     if not name.startswith("_") and name not in skip and
                     callable(getattr(db_api.Database, name)) and
                     not hasattr(getattr(db_api.Database, name), "retry_policy")]
        self.assertEqual([], unwrapped)

    def test_deadlock_is_retried(self):
        # What oslo.db raises for 1213 (a Galera certification conflict too).
        self.faults.execute(db_exc.DBDeadlock, times=2, match="INSERT INTO routers")
        router = self.make_router()
        self.assertEqual([router["id"]], [r["id"] for r in self.db.list_routers()])

    def test_lost_connection_before_commit_is_retried_for_every_write(self):
        rid = self.make_router()["id"]
        self.faults.execute(lost_connection, times=2, match="UPDATE routers")
        self.db.set_router_error(rid, "boom")  # not replay-safe, but nothing committed
        self.assertEqual(2, self.faults.failed)
        router = self.db.get_router(rid)
        self.assertEqual(("ERROR", 1), (router["status"], router["generation"]))

    def test_lost_reply_to_commit_is_not_replayed_where_it_could_apply_twice(self):
        rid = self.make_router()["id"]
        self.faults.commit(lost_connection, applied=True)
        self.assertRaises(exceptions.DatabaseOutcomeUnknown, self.db.set_router_error,
                          rid, "boom")
        self.assertEqual(1, self.db.get_router(rid)["generation"], "applied once")

    def test_create_router_replays_a_lost_commit_without_a_second_router(self):
        for applied in (True, False):
            self.faults.commit(lost_connection, applied=applied)
            router = self.make_router(name=f"r-{applied}")
            self.assertEqual(f"r-{applied}", router["name"])
        names = sorted(r["name"] for r in self.db.list_routers())
        self.assertEqual(["r-False", "r-True"], names)

    def test_bind_router_replay_reads_its_own_binding_as_done(self):
        agent = self.agent()
        rid = self.make_router()["id"]
        self.faults.commit(lost_connection, applied=True)
        self.assertTrue(self.db.bind_router(rid, agent))
        router = self.db.get_router(rid)
        self.assertEqual((agent, 1), (router["agent_id"], router["generation"]))
        # Without a lost commit, a router bound already is still a lost race.
        self.assertFalse(self.db.bind_router(rid, agent))

    def test_replay_safe_writes_apply_once(self):
        agent = self.agent()
        rid = self.make_router()["id"]
        self.assertTrue(self.db.bind_router(rid, agent))
        gen = self.db.agent_generation("a")
        for call in (lambda: self.db.begin_router_delete(rid),
                     lambda: self.db.register_agent("b", "b-", registration_id="reg-1"),
                     lambda: self.db.set_agent_admin_state(agent, True),
                     lambda: self.db.heartbeat_service("s", "h"),
                     lambda: self.db.touch_routers([rid]),
                     lambda: self.db.fence_agent("a", gen)):
            self.faults.commit(lost_connection, applied=True)
            call()
            self.assertEqual(None, self.faults._commit)
        self.assertEqual(2, self.db.get_router(rid)["generation"])  # bind + delete
        self.assertEqual(1, self.db.agent_generation("b"))
        fenced = next(a for a in self.db.agent_health() if a["host"] == "a")
        self.assertEqual(fenced["fenced_at"], fenced["dead_since"])
        # Without a registration id a replay would take a second generation.
        self.faults.commit(lost_connection, applied=True)
        self.assertRaises(exceptions.DatabaseOutcomeUnknown, self.db.register_agent,
                          "c", "c-")
        self.assertEqual(1, self.db.agent_generation("c"))

    def test_state_reports_fail_at_once(self):
        """The next report is a report's retry; failing at once is what makes
        the lease receiver answer with outage notices."""
        self.agent()
        gen = self.db.agent_generation("a")
        for call in (lambda: self.db.record_heartbeat("a", gen),
                     lambda: self.db.record_heartbeats([("a", gen, "ok")])):
            self.faults.execute(lost_connection, times=1)
            self.assertRaises(exceptions.DatabaseUnavailable, call)
            self.assertEqual(1, self.faults.failed)
            self.faults.failed = 0
            call()

    def test_once_given_up_calls_fail_at_once_until_one_succeeds(self):
        self.faults.execute(lambda: MySQLError(*WSREP_NOT_READY))
        self.assertRaises(exceptions.DatabaseUnavailable, self.db.list_routers)
        self.assertIsNotNone(self.db.unavailable_since)
        self.faults.failed = 0
        started = time.monotonic()
        self.assertRaises(exceptions.DatabaseUnavailable, self.db.list_routers)
        self.assertLess(time.monotonic() - started, 0.5)
        self.assertEqual(1, self.faults.failed)
        self.faults.clear()
        self.assertEqual([], self.db.list_routers())
        self.assertIsNone(self.db.unavailable_since)
        # Riding through again for the next failover.
        self.faults.execute(lost_connection, times=2)
        self.assertEqual([], self.db.list_routers())

    def test_galera_errors_are_retried_then_unavailable_within_the_budget(self):
        rid = self.make_router()["id"]
        for errno, message in (WSREP_NOT_READY, COMMIT_FAILED):
            self.faults.execute(lambda e=errno, m=message: MySQLError(e, m), times=3)
            self.assertEqual(rid, self.db.get_router(rid)["id"])
            self.faults.execute(lambda e=errno, m=message: MySQLError(e, m))
            started = time.monotonic()
            err = self.assertRaises(exceptions.DatabaseUnavailable, self.db.get_router, rid)
            took = time.monotonic() - started
            self.assertNotIsInstance(err, exceptions.DatabaseOutcomeUnknown)
            self.assertIn(str(errno), str(err))
            self.assertGreaterEqual(took, 0.9)
            self.assertLess(took, 2.0)
            self.faults.clear()
            self.db.now()  # answers again: the next outage is ridden through again

    def test_failed_commit_1180_is_an_unknown_outcome(self):
        rid = self.make_router()["id"]
        self.faults.commit(lambda: MySQLError(*COMMIT_FAILED), applied=False)
        self.assertRaises(exceptions.DatabaseOutcomeUnknown, self.db.set_router_error,
                          rid, "x")
        self.assertEqual(0, self.db.get_router(rid)["generation"])

    def test_health_monitor_decisions_do_not_ride_through_an_outage(self):
        """A write that declares agents dead by silence re-reads heartbeats
        that an outage made stale; nodes renewed on outage notices meanwhile.
        Only the next pass, after the monitor checked its outage clock, may
        decide: so no retry across a lost connection."""
        self.agent()
        self.age_heartbeat("a", 10)
        self.faults.execute(lost_connection, times=1)
        self.assertRaises(exceptions.DatabaseUnavailable, self.db.mark_dead_agents, 3.0)
        self.assertIsNone(self.db.agent_health()[0]["dead_since"])
        self.faults.execute(lost_connection, times=1)
        self.assertEqual(1, len(self.db.agent_health()))  # a read rides through

    def test_retry_budget_zero_fails_fast(self):
        self.db.reconnect_retry_time = 0
        self.faults.execute(lost_connection, times=1)
        self.assertRaises(exceptions.DatabaseUnavailable, self.db.list_routers)


# ---------------------------------------------------------------- the API


class APIUnavailableTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.faults = Faults(self.db.engine).install(self)
        conf = base.make_conf(api__external_cidr="10.250.0.0/24")
        self.app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())

    def request(self, method, path, body=None):
        req = webob.Request.blank(path, method=method, headers=ADMIN)
        if body is not None:
            req.body = json.dumps(body).encode()
            req.content_type = "application/json"
        started = time.monotonic()
        resp = req.get_response(self.app)
        return resp, time.monotonic() - started

    def test_node_outside_primary_component_is_503_within_5s(self):
        for error in (WSREP_NOT_READY, COMMIT_FAILED):
            self.db.unavailable_since = None  # each a fresh outage: the whole budget
            self.faults.execute(lambda e=error: MySQLError(*e))
            for method, body in (("GET", None), ("POST", {"name": "r"})):
                resp, took = self.request(method, "/v1/routers", body)
                self.assertEqual(503, resp.status_int, resp.text)
                self.assertEqual("5", resp.headers["Retry-After"])
                self.assertIn("database is unavailable", resp.json["error"]["message"])
                self.assertLess(took, 5.0)
        self.faults.clear()
        self.assertEqual(200, self.request("GET", "/v1/routers")[0].status_int)

    def test_a_writer_failover_is_ridden_through(self):
        self.faults.execute(lost_connection, times=3)
        resp, _ = self.request("POST", "/v1/routers", {"name": "r"})
        self.assertEqual(201, resp.status_int, resp.text)
        self.assertEqual(1, len(self.db.list_routers()))

    def test_unknown_commit_outcome_says_so(self):
        rid = self.db.create_router(project_id="p1", name="r", ha=False,
                                    external_cidr=__import__("ipaddress").IPv4Network(
                                        "10.250.0.0/24"))["id"]
        with mock.patch.object(self.db, "begin_router_delete", side_effect=(
                exceptions.DatabaseOutcomeUnknown("lost during COMMIT"))):
            resp, _ = self.request("DELETE", f"/v1/routers/{rid}")
        self.assertEqual(503, resp.status_int, resp.text)
        self.assertIn("may or may not have been applied", resp.json["error"]["message"])


# ------------------------------------------------------------ the monitor


class MonitorUnavailableTest(base.DBTestCase):
    DOWN = 3.0

    def setUp(self):
        super().setUp()
        self.db.reconnect_retry_time = 0.05
        self.agents_api = base.RecordingAgentAPI()
        self.dispatcher = dispatch.RouterDispatcher(self.db, self.agents_api, self.DOWN)
        self.monitor = monitor.HealthMonitor(self.db, self.dispatcher, host="sched-1",
                                             agent_down_time=self.DOWN, check_interval=0.1,
                                             pending_retry_time=10)
        self.faults = Faults(self.db.engine).install(self)

    def test_moves_nothing_and_logs_one_line_while_unavailable(self):
        for host in ("a", "b", "c"):
            self.db.register_agent(host, f"{host}-")
        ids = [self.make_router(name=f"r{i}")["id"] for i in range(3)]
        self.dispatcher.place(ids)
        before = {r["id"]: r["agent_host"] for r in self.db.routers_by_id(ids)}
        victim = before[ids[0]]
        self.age_heartbeat(victim, 10)
        logger = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        for error in (WSREP_NOT_READY, COMMIT_FAILED, None):
            if error is None:
                self.faults.execute(lost_connection)
            else:
                self.faults.execute(lambda e=error: MySQLError(*e))
            for _ in range(3):
                self.assertEqual(0.1, self.monitor._step())
        during = logger.output
        self.faults.clear()
        self.assertEqual(before, {r["id"]: r["agent_host"] for r in self.db.routers_by_id(ids)})
        self.assertIsNone(next(a for a in self.db.agent_health()
                               if a["host"] == victim)["dead_since"])
        lines = [line for line in during.splitlines() if "database" in line]
        self.assertEqual(1, len(lines), during)
        self.assertIn("moves nothing", lines[0])
        self.assertNotIn("Traceback", during)
        # Back: one line, and the dead agent's routers move.
        for agent in self.db.agent_health():
            if agent["host"] != victim:
                self.db.record_heartbeat(agent["host"])
        self.monitor._step()
        self.assertIn("database is back", logger.output)
        after = {r["id"]: r["agent_host"] for r in self.db.routers_by_id(ids)}
        self.assertNotIn(victim, [h for rid, h in after.items() if before[rid] == victim])
