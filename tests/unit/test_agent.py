"""The agent's router worker and state reporter, with the fake driver."""

import os
import threading
import time
import uuid

import fixtures
import testtools

from clouddisco import lease
from clouddisco.agent import node as node_mod
from clouddisco.agent import reporter
from clouddisco.agent import routers
from clouddisco.drivers import fake

HOST = "node-1"


def router(status="PENDING", n=None):
    rid = str(uuid.uuid4())
    n = n if n is not None else int(rid[:2], 16)
    return {"id": rid, "status": status, "gateway_ip": f"10.250.1.{n % 250 + 2}",
            "gateway_prefixlen": 16, "gateway_mac": "fa:16:3e:00:00:%02x" % (n % 256)}


class FakeScheduler:
    def __init__(self, bound=()):
        self.bound = list(bound)
        self.reports = []
        self.reported = threading.Event()
        self.sync_error = None
        self.registered = []
        self.report_error = None

    def sync_routers(self, host):
        if self.sync_error:
            raise self.sync_error
        return list(self.bound)

    def update_router_status(self, host, reports):
        self.reports.append(dict(reports))
        self.reported.set()

    def register(self, host, prefix, timeout=None, registration_id=None):
        self.registered.append(host)
        return {"agent_id": "agent-1", "lease_generation": len(self.registered),
                "lease_time": 2.0}

    def report_state(self, host, state, timeout):
        if self.report_error:
            raise self.report_error
        return {"registered": True, "lease_time": 2.0}


def write_lease(state_dir, generation=1, left=60.0):
    now = time.monotonic()
    lease.write(state_dir, lease.Lease(host=HOST, generation=generation, expires=now + left,
                                       renewed_at=now, pid=os.getpid()), lease.AGENT)


def guard_beat(state_dir, prefix="qr-", host=HOST, age=0.0):
    lease.write_guard_beat(state_dir, lease.GuardBeat(
        host=host, namespace_prefix=prefix, pid=os.getpid(), at=time.monotonic() - age))


class NodeFixture(fixtures.Fixture):
    """A state directory with a lease of generation 1 and a live guard."""

    def _setUp(self):
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.generation = 1
        write_lease(self.state_dir)
        guard_beat(self.state_dir)
        self.node = node_mod.Node(HOST, "qr-", self.state_dir,
                                  generation=lambda: self.generation, guard_timeout=60.0)


class RouterWorkerTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.scheduler = FakeScheduler()
        self.nodefix = self.useFixture(NodeFixture())
        self.worker = routers.RouterWorker(HOST, self.driver, self.scheduler,
                                           self.nodefix.node, retry_interval=0.05)

    def run_tasks(self):
        """Run queued tasks on this thread (the worker thread is not started)."""
        while not self.worker._tasks.empty():
            kind, arg = self.worker._tasks.get()
            {"add": self.worker._add, "remove": lambda a: self.worker._remove(*a),
             "sync": lambda _: self.worker._resync()}[kind](arg)

    def all_reports(self):
        merged = {}
        for r in self.scheduler.reports:
            merged.update(r)
        return merged

    def test_add_creates_and_reports_active(self):
        r = router()
        self.worker.add([r])
        self.run_tasks()
        self.assertEqual({r["id"]}, self.driver.list_routers())
        self.assertEqual({r["id"]: {"status": "ACTIVE", "reason": None}}, self.all_reports())

    def test_driver_failure_reports_error_with_reason(self):
        good, bad = router(n=1), router(n=2)
        self.driver.fail_ids.add(bad["id"])
        self.worker.add([good, bad])
        self.run_tasks()
        reports = self.all_reports()
        self.assertEqual("ACTIVE", reports[good["id"]]["status"])
        self.assertEqual("ERROR", reports[bad["id"]]["status"])
        self.assertTrue(reports[bad["id"]]["reason"])

    def test_no_lease_no_routers(self):
        write_lease(self.nodefix.state_dir, left=-0.1)
        self.worker.add([router()])
        self.worker.request_resync()
        self.scheduler.bound = [router()]
        self.run_tasks()
        self.assertEqual(set(), self.driver.list_routers())
        self.assertEqual([], self.scheduler.reports)

    def test_deleting_router_in_add_is_removed(self):
        r = router()
        self.worker.add([r])
        self.worker.add([dict(r, status="DELETING")])
        self.run_tasks()
        self.assertEqual(set(), self.driver.list_routers())
        self.assertEqual("DELETED", self.scheduler.reports[-1][r["id"]]["status"])

    def test_resync_adopts_bound_and_removes_stale(self):
        kept, stale, gone = router(status="ACTIVE", n=1), router(n=2), router(n=3)
        self.worker.add([kept, stale])
        self.run_tasks()
        self.scheduler.reports.clear()
        self.driver.events.clear()
        self.scheduler.bound = [kept, dict(gone, status="DELETING")]
        self.worker.request_resync()
        self.run_tasks()
        self.assertEqual({kept["id"]}, self.driver.list_routers())
        # The kept router was not touched (adopted), only the stale one deleted.
        self.assertEqual([], [e for e in self.driver.events if e[1] == kept["id"]])
        self.assertIn(("delete", stale["id"]), self.driver.events)
        # Already ACTIVE and fine: not reported again; the DELETING one is.
        self.assertEqual({gone["id"]: {"status": "DELETED", "reason": None}},
                         self.all_reports())
        self.assertTrue(self.worker.synced.is_set())

    def test_a_delayed_add_of_a_router_removed_as_deleting_builds_nothing(self):
        # Nemesis seed 201: a failover's routers_added was held up by a broker
        # cut; meanwhile the router was deleted (the resync found it DELETING
        # and removed it) and its address went to a new router elsewhere.
        # The late add, still within its TTL, rebuilt it: two copies.
        r = router(status="PENDING")
        self.worker.add([r])
        self.run_tasks()
        self.scheduler.bound = [dict(r, status="DELETING")]
        self.worker.request_resync()
        self.run_tasks()
        self.assertEqual(set(), self.driver.list_routers())
        self.worker.add([dict(r, lease_generation=1)])  # the delayed cast
        self.run_tasks()
        self.assertEqual(set(), self.driver.list_routers())
        # The same after a removal cast.
        other = router(status="PENDING")
        self.worker.add([other])
        self.worker.remove([other["id"]], 1)
        self.worker.add([dict(other, lease_generation=1)])
        self.run_tasks()
        self.assertEqual(set(), self.driver.list_routers())
        # Past the tombstone: a router really bound here again is built.
        self.worker.tombstone_ttl = 0.0
        self.worker.remove([other["id"]], 1)
        self.worker.add([dict(other, lease_generation=1)])
        self.run_tasks()
        self.assertEqual({other["id"]}, self.driver.list_routers())

    def test_resync_failure_is_retried(self):
        self.scheduler.sync_error = TimeoutError("no scheduler")
        self.worker.start()
        self.addCleanup(self.worker.stop)
        self.worker.request_resync()
        self.assertFalse(self.worker.synced.wait(0.2))
        self.scheduler.sync_error = None
        self.assertTrue(self.worker.synced.wait(5))

    def test_worker_thread_processes_rpc_work(self):
        self.worker.start()
        self.addCleanup(self.worker.stop)
        r = router()
        self.worker.add([r])
        self.assertTrue(self.scheduler.reported.wait(5))
        self.assertEqual({r["id"]}, self.driver.list_routers())


class StateReporterTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.scheduler = FakeScheduler()
        self.connected = []
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.reporter = reporter.StateReporter(
            "node-1", "qr-", self.scheduler, interval=0.05, state_dir=self.state_dir,
            on_connected=lambda: self.connected.append(True), state=lambda: {"routers": 0})
        self.node = node_mod.Node(HOST, "qr-", self.state_dir,
                                  generation=lambda: self.reporter.generation,
                                  guard_timeout=1.0)
        self.reporter.lease_valid = lambda: self.node.lease_left() > 0

    def test_acknowledged_report_renews_lease_from_send_time(self):
        self.assertFalse(self.reporter.lease_valid())
        before = time.monotonic()
        self.reporter.report_once()
        after = time.monotonic()
        agent = lease.read(self.state_dir, "node-1", lease.AGENT)
        self.assertEqual(1, agent.generation)
        self.assertEqual(os.getpid(), agent.pid)
        self.assertGreaterEqual(agent.expires, before + 2.0)
        self.assertLessEqual(agent.expires, after + 2.0)
        self.assertTrue(self.reporter.lease_valid())
        # A fence of this generation by the node guard ends it at once.
        lease.write(self.state_dir, lease.Lease(host="node-1", generation=1,
                                                fenced_generation=1), lease.NODE)
        self.assertFalse(self.reporter.lease_valid())

    def test_fenced_lease_makes_the_agent_register_again(self):
        self.reporter.report_once()
        lease.write(self.state_dir, lease.Lease(host="node-1", generation=1,
                                                fenced_generation=1), lease.NODE)
        self.assertTrue(self.reporter.report_once())
        self.assertEqual(2, self.reporter.generation)
        self.assertEqual(["node-1", "node-1"], self.scheduler.registered)
        self.assertTrue(self.reporter.lease_valid())
        self.assertEqual([True, True], self.connected)  # and it resyncs

    def test_failed_report_does_not_renew(self):
        self.reporter.report_once()
        expires = lease.read(self.state_dir, "node-1", lease.AGENT).expires
        self.scheduler.report_error = ConnectionError("broker gone")
        self.reporter.report_once()
        self.assertEqual(expires, lease.read(self.state_dir, "node-1", lease.AGENT).expires)

    def test_registers_then_reports_and_resyncs_once(self):
        self.assertTrue(self.reporter.report_once())
        self.assertEqual("agent-1", self.reporter.agent_id)
        self.assertTrue(self.reporter.report_once())
        self.assertEqual(["node-1"], self.scheduler.registered)
        self.assertEqual([True], self.connected)

    def test_reconnect_triggers_resync(self):
        self.reporter.report_once()
        self.scheduler.report_error = ConnectionError("broker gone")
        self.assertFalse(self.reporter.report_once())
        self.assertFalse(self.reporter.report_once())
        self.scheduler.report_error = None
        self.assertTrue(self.reporter.report_once())
        self.assertEqual([True, True], self.connected)

    def test_unknown_to_scheduler_registers_again(self):
        self.reporter.report_once()
        self.scheduler.report_state = lambda *a: {"registered": False}
        self.assertFalse(self.reporter.report_once())
        self.assertIsNone(self.reporter.agent_id)
        self.reporter.report_once()
        self.assertEqual(["node-1", "node-1"], self.scheduler.registered)

    def test_failed_registrations_back_off(self):
        calls = []

        def refuse(host, prefix, timeout=None, registration_id=None):
            calls.append(time.monotonic())
            raise TimeoutError("no scheduler")

        self.scheduler.register = refuse
        for _ in range(5):
            self.assertFalse(self.reporter.report_once())
        # A fleet that lost its scheduler must not retry in lockstep every
        # interval: the failed attempt is not repeated at once.
        self.assertEqual(1, len(calls))
        deadline = time.monotonic() + 10
        while len(calls) < 2:
            self.assertLess(time.monotonic(), deadline)
            self.reporter.report_once()
            time.sleep(0.01)
        self.assertGreaterEqual(calls[1] - calls[0], self.reporter.interval)

