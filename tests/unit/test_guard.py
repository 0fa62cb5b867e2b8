"""The node guard's decisions, with the fake driver, a fake scheduler and a
real state directory. Time is passed in (monotonic seconds)."""

import os
import subprocess
import sys
import time
import uuid

import fixtures
import testtools

from clouddisco import lease
from clouddisco.cleanup import guard
from clouddisco.drivers import base
from clouddisco.drivers import fake

HOST = "node-1"


class FakeScheduler:
    def __init__(self):
        self.renewals = []
        self.fences = []
        self.grant = True
        self.fail = False

    def renew_lease(self, host, generation, timeout):
        if self.fail:
            raise TimeoutError("no scheduler")
        self.renewals.append(generation)
        return {"granted": self.grant, "lease_time": 2.0}

    def host_fenced(self, host, generation, reason, timeout):
        if self.fail:
            raise TimeoutError("no scheduler")
        self.fences.append((generation, reason))
        return {"acknowledged": True, "moved": 1}


def spec(n):
    return base.RouterSpec(id=str(uuid.uuid4()), gateway_ip=f"10.250.0.{n}",
                           gateway_prefixlen=16, gateway_mac=f"fa:16:3e:00:00:{n:02x}")


class NodeGuardTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        # Fence reports are retried every tick here (once a second in service).
        self.useFixture(fixtures.MockPatch(
            "clouddisco.cleanup.guard.FENCE_REPORT_RETRY", 0.0))
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.driver.ensure([spec(2), spec(3)])
        self.scheduler = FakeScheduler()
        self.guard = guard.NodeGuard(HOST, self.driver, self.scheduler,
                                     state_dir=self.state_dir, restart_grace=5.0,
                                     renew_interval=1.0, rpc_timeout=1.0)
        self.addCleanup(self.guard.close)

    def agent_lease(self, generation=1, expires=None, pid=None, now=None):
        now = time.monotonic() if now is None else now
        lease.write(self.state_dir, lease.Lease(
            host=HOST, generation=generation, expires=now + 2.0 if expires is None else expires,
            renewed_at=now, pid=pid or os.getpid()), lease.AGENT)

    def agent_running_as(self, pid):
        lease.write_pid(self.state_dir, HOST, pid)

    def fake_agent(self):
        """A live process whose command line names the agent binary."""
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 guard.AGENT_BINARY])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        lease.write_pid(self.state_dir, HOST, proc.pid)
        deadline = time.monotonic() + 10
        while not guard.agent_process(self.state_dir, HOST).alive:
            self.assertLess(time.monotonic(), deadline, "fake agent did not start")
            time.sleep(0.01)
        return proc

    def test_healthy_agent_nothing_happens(self):
        agent = self.fake_agent()
        now = time.monotonic()
        self.agent_lease(pid=agent.pid, now=now)
        self.agent_running_as(agent.pid)
        self.assertEqual("ok", self.guard.tick(now))
        self.assertEqual(2, len(self.driver.list_routers()))
        self.assertEqual([], self.scheduler.renewals)

    def test_expired_lease_fences_without_a_server(self):
        agent = self.fake_agent()
        now = time.monotonic()
        self.agent_lease(pid=agent.pid, expires=now - 0.01, now=now - 2)
        self.agent_running_as(agent.pid)  # alive but silent: hung or cut off
        self.scheduler.fail = True
        self.assertEqual("fenced", self.guard.tick(now))
        self.assertEqual(set(), self.driver.list_routers())
        # Addresses went first, then the namespaces.
        kinds = [k for k, _ in self.driver.events if k in ("deactivate", "delete")]
        self.assertEqual(["deactivate", "delete"], kinds[:1] + kinds[-1:])
        self.assertTrue(lease.fenced(self.state_dir, HOST, 1))
        # The report goes out again until the scheduler answers.
        self.assertTrue(self.guard.rpc_idle(10))
        self.scheduler.fail = False
        self.guard.tick(now + 0.1)
        self.assertTrue(self.guard.rpc_idle(10))
        self.guard.tick(now + 0.2)
        self.assertEqual([(1, "lease expired without renewal")], self.scheduler.fences)
        self.assertIsNone(self.guard.unreported_fence)

    def tick_and_settle(self, now):
        """A check, then let its message be answered (applied by the next check)."""
        result = self.guard.tick(now)
        self.assertTrue(self.guard.rpc_idle(10))
        return result

    def test_restarting_agent_keeps_the_lease_within_grace(self):
        now = time.monotonic()
        self.agent_lease(pid=999_999, now=now)
        self.agent_running_as(999_999)  # no such process: crashed, restarting
        self.assertEqual("renewal sent", self.tick_and_settle(now + 0.5))
        self.assertEqual([1], self.scheduler.renewals)
        # The answer is applied by the next check, from the renewal's send time.
        self.assertEqual("waiting", self.guard.tick(now + 0.6))  # renew_interval
        node = lease.read(self.state_dir, HOST, lease.NODE)
        self.assertAlmostEqual(now + 2.5, node.expires, places=3)
        for step in range(1, 9):  # renewals keep it alive through 4.5 s
            self.tick_and_settle(now + 0.5 + step * 0.5)
        self.assertEqual(2, len(self.driver.list_routers()))
        self.assertEqual([], self.scheduler.fences)

    def test_agent_down_past_grace_fences_and_reports(self):
        now = time.monotonic()
        self.agent_lease(pid=999_999, now=now)
        self.agent_running_as(999_999)
        t = now
        while self.tick_and_settle(t) != "fenced":
            t += 0.5
            self.assertLess(t, now + 10)
        self.assertGreater(t - now, 5.0)
        self.assertEqual(set(), self.driver.list_routers())
        self.assertTrue(self.guard.rpc_idle(10))
        self.assertEqual(1, len(self.scheduler.fences))
        self.assertIn("restart_grace", self.scheduler.fences[0][1])

    def test_new_agent_process_counts_as_restarting_until_it_renews(self):
        agent = self.fake_agent()
        now = time.monotonic()
        self.agent_lease(pid=999_999, now=now)  # written by the previous process
        self.agent_running_as(agent.pid)
        self.assertEqual("renewal sent", self.tick_and_settle(now + 0.1))
        self.agent_lease(generation=2, pid=agent.pid, now=now + 0.2)  # it registered
        self.assertEqual("ok", self.guard.tick(now + 0.3))
        # The renewal was for generation 1: it must not touch generation 2's lease.
        self.assertEqual(0, lease.read(self.state_dir, HOST, lease.NODE).generation)

    def test_stopped_agent_is_hung_not_restarting(self):
        agent = self.fake_agent()
        now = time.monotonic()
        self.agent_lease(pid=agent.pid, now=now)
        os.kill(agent.pid, 19)  # SIGSTOP
        self.addCleanup(os.kill, agent.pid, 18)
        deadline = time.monotonic() + 5
        while not guard.agent_process(self.state_dir, HOST).stopped:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        # No renewal on its behalf: a restart is not coming.
        self.assertEqual("ok", self.guard.tick(now + 0.1))
        self.assertEqual([], self.scheduler.renewals)
        self.assertEqual("fenced", self.guard.tick(now + 2.1))

    def test_routers_reappearing_under_a_fenced_lease_are_removed(self):
        now = time.monotonic()
        self.agent_lease(pid=999_999, expires=now - 1, now=now - 3)
        self.assertEqual("fenced", self.guard.tick(now))
        self.driver.ensure([spec(4)])  # a revived agent process rebuilds one
        self.assertEqual("fenced", self.guard.tick(now + 0.1))
        self.assertEqual(set(), self.driver.list_routers())

    def test_refused_renewal_lets_the_lease_run_out(self):
        now = time.monotonic()
        self.agent_lease(pid=999_999, now=now)
        self.scheduler.grant = False
        self.assertEqual("renewal sent", self.tick_and_settle(now + 0.5))
        self.assertEqual("waiting", self.guard.tick(now + 0.6))
        self.assertEqual(0, lease.read(self.state_dir, HOST, lease.NODE).generation)
        self.assertEqual("fenced", self.guard.tick(now + 2.1))

    def test_no_lease_ever_removes_unleased_routers(self):
        self.assertEqual("removed unleased", self.guard.tick())
        self.assertEqual(set(), self.driver.list_routers())


class FakeUdp:
    """The lease receivers of every replica, answering a guard's report."""

    def __init__(self):
        self.reports = []
        self.answer = {"outage": True, "lease_time": 2.0, "replicas": ["r1", "r2"]}

    def report(self, host, state, timeout):
        self.reports.append(state)
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


class OutageRenewalTest(testtools.TestCase):
    """A database outage while the agent restarts: the guard renews the
    lease on the replicas' outage answers (the agent's own rule), and the
    agent's restart_grace counts from the outage's end."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            "clouddisco.cleanup.guard.FENCE_REPORT_RETRY", 0.0))
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.driver.ensure([spec(2), spec(3)])
        self.scheduler = FakeScheduler()
        self.scheduler.fail = True  # RPC needs the database too
        self.udp = FakeUdp()
        self.guard = guard.NodeGuard(HOST, self.driver, self.scheduler,
                                     state_dir=self.state_dir, restart_grace=2.0,
                                     renew_interval=1.0, rpc_timeout=1.0, udp=self.udp,
                                     outage_accept=1.25)
        self.addCleanup(self.guard.close)
        self.now = time.monotonic()
        lease.write(self.state_dir, lease.Lease(
            host=HOST, generation=1, expires=self.now + 2.0, renewed_at=self.now,
            pid=999_999), lease.AGENT)
        lease.write_pid(self.state_dir, HOST, 999_999)  # crashed, restarting

    def settle(self, t):
        result = self.guard.tick(t)
        self.assertTrue(self.guard.rpc_idle(10))
        return result

    def test_outage_answers_keep_the_node_serving_past_restart_grace(self):
        results = [self.settle(self.now + 0.5 * i) for i in range(1, 21)]  # 10 s
        self.assertNotIn("fenced", results)
        self.assertEqual(2, len(self.driver.list_routers()))
        node = lease.read(self.state_dir, HOST, lease.NODE)
        self.assertGreater(node.expires, self.now + 10.0)
        self.assertEqual({"lease_generation": 1, "guard": "ok"}, self.udp.reports[0])
        # The database is back, the agent does not register: restart_grace
        # after the last outage renewal, the node fences as ever.
        self.udp.answer = {"registered": True, "lease_time": 2.0}
        t = self.now + 10.0
        while self.settle(t) != "fenced":
            t += 0.5
            self.assertLess(t, self.now + 20)
        self.assertGreater(t, self.now + 10.0 + 2.0)
        self.assertIn("restart_grace", self.guard.unreported_fence[1])

    def test_an_outage_answer_later_than_outage_accept_renews_nothing(self):
        self.guard.outage_accept = 0.0
        results = [self.settle(self.now + 0.5 * i) for i in range(1, 8)]
        self.assertIn("fenced", results)
        self.assertEqual(0, lease.read(self.state_dir, HOST, lease.NODE).expires)
