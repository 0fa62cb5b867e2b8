"""Interleavings of the db layer's writers on MariaDB, made deterministic by
running the second writer (another replica's connection) between the first
one's read and its write. SQLite cannot interleave: it locks the file."""

import datetime
import ipaddress
import threading

import sqlalchemy as sa
import testtools

from clouddisco.db import api as db_api
from clouddisco.db import models
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import monitor
from tests.functional import dbfixture
from tests.unit import base


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

    def test_delete_of_a_router_dropped_meanwhile_is_not_found(self):
        rid = self.make_router()["id"]
        self.after_first_read_of("routers", lambda: (
            self.other.begin_router_delete(rid),
            self.other.delete_unserved_router(rid, None)))
        self.assertRaises(db_api.exceptions.NotFound, self.db.begin_router_delete, rid)

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
        database = self.useFixture(dbfixture.MigratedDatabase())
        self.db = database.db
        self.other = database.connect()

    def make_router(self):
        return self.db.create_router(project_id="p", name="r", ha=False,
                                     external_cidr=ipaddress.IPv4Network("10.250.0.0/16"))


class MariaDBRacingMonitorsTest(testtools.TestCase):
    """Two scheduler replicas that both believe they own one dead agent
    (each ring holds only itself) fail it over at the same moment."""

    DOWN = 3.0
    ROUTERS = 40

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(dbfixture.MigratedDatabase())
        self.tempdb = self.database.tempdb
        setup = self.database.db
        self.setup_db = setup
        agents = {h: setup.register_agent(h, f"{h}-")["id"] for h in ("dead", "s1", "s2")}
        self.agents = agents
        net = ipaddress.IPv4Network("10.250.0.0/16")
        self.routers = [setup.create_router(project_id="p", name=f"r{i}", ha=False,
                                            external_cidr=net)["id"]
                        for i in range(self.ROUTERS)]
        for rid in self.routers:
            self.assertTrue(setup.bind_router(rid, agents["dead"]))
        with setup.engine.begin() as conn:
            conn.execute(sa.update(models.Agent).where(models.Agent.host == "dead").values(
                heartbeat_at=setup.now() - datetime.timedelta(seconds=self.DOWN + 1)))

    def make_monitor(self, host, entered, barrier):
        db = self.database.connect()
        agents_api = base.RecordingAgentAPI()
        dispatcher = dispatch.RouterDispatcher(db, agents_api, self.DOWN)
        mon = monitor.HealthMonitor(db, dispatcher, host=host, agent_down_time=self.DOWN,
                                    check_interval=0.1, pending_retry_time=60)
        # Each ring holds only itself: both own the dead agent.
        mon._update_ring = lambda: None
        move = db.move_bindings

        def racing_move(moves, **kw):
            # Both passes have read the same bindings before either moves.
            entered.append(host)
            barrier.wait(30)
            return move(moves, **kw)

        db.move_bindings = racing_move
        return mon, agents_api

    def test_each_router_is_moved_exactly_once(self):
        entered: list[str] = []
        in_move = threading.Barrier(2)
        start = threading.Barrier(2)
        monitors = [self.make_monitor(h, entered, in_move) for h in ("sched-1", "sched-2")]
        for mon, _ in monitors:
            self.assertTrue(mon.owns(self.agents["dead"]))
        errors: list[BaseException] = []

        def run(mon):
            try:
                start.wait(30)
                mon.run_once()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(mon,)) for mon, _ in monitors]
        # The survivors report just before: on a loaded machine the set-up can
        # outlast agent_down_time, and then the breaker (every agent silent)
        # rightly moves nothing.
        for host in ("s1", "s2"):
            self.assertIsNotNone(self.setup_db.record_heartbeat(host))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertEqual([], errors)
        # It really raced: both passes reached the move with the same plan.
        self.assertEqual(["sched-1", "sched-2"], sorted(entered))
        events = [e for e in self.setup_db.list_failover_events()
                  if e["cause"] == "agent_dead"]
        self.assertEqual(sorted(self.routers), sorted(e["router_id"] for e in events))
        placed = {r["id"]: r["agent_host"] for r in self.setup_db.routers_by_id(self.routers)}
        self.assertEqual({"s1", "s2"}, set(placed.values()))
        with self.setup_db.engine.connect() as conn:
            bindings = conn.execute(sa.select(models.RouterBinding.router_id)).scalars().all()
        self.assertEqual(sorted(self.routers), sorted(bindings))
        # One monitor won the agent's whole share; only it told the new agents.
        winners = [mon.host for mon, api in monitors if api.added]
        self.assertEqual(1, len(winners))
        casts = [rid for _, api in monitors for h in ("s1", "s2") for rid in api.added_to(h)]
        self.assertEqual(sorted(self.routers), sorted(casts))
        self.assertEqual({winners[0]}, {e["detected_by"] for e in events})
