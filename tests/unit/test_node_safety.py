"""The node-side paths to two live copies, each closed: stale casts, a guard
blocked on the network, a fence racing a batch build, a missing or wrong
guard, an agent whose guard is gone, and a re-registration racing the
guard's view of the generation. Real threads, a real state directory and
real flocks; the fake driver."""

import os
import subprocess
import sys
import threading
import time

import fixtures
import oslo_messaging
import testtools

from clouddisco import lease
from clouddisco import rpc
from clouddisco.agent import node as node_mod
from clouddisco.agent import routers
from clouddisco.agent import service as agent_service
from clouddisco.cleanup import guard as guard_mod
from clouddisco.drivers import fake
from tests.unit import test_agent
from tests.unit.test_agent import HOST
from tests.unit.test_agent import FakeScheduler
from tests.unit.test_agent import guard_beat
from tests.unit.test_agent import router
from tests.unit.test_agent import write_lease
from tests.unit.test_guard import FakeScheduler as FakeGuardScheduler


class StaleCastTest(testtools.TestCase):
    """A cast queued for an agent before it was fenced and registered again
    must not rebuild a router that has moved."""

    def setUp(self):
        super().setUp()
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.scheduler = FakeScheduler()
        self.nodefix = self.useFixture(test_agent.NodeFixture())
        self.worker = routers.RouterWorker(HOST, self.driver, self.scheduler,
                                           self.nodefix.node)

    def settle(self):
        """Run the queued work on this thread, in order, as the worker would."""
        while not self.worker._tasks.empty():
            kind, arg = self.worker._tasks.get()
            {"add": self.worker._add, "remove": lambda a: self.worker._remove(*a)}[kind](arg)

    def test_add_sent_for_an_earlier_registration_is_dropped(self):
        # Fenced as generation 1, registered again as generation 2 (and resynced).
        self.nodefix.generation = 2
        write_lease(self.nodefix.state_dir, generation=2)
        moved = router()
        self.worker.add([dict(moved, lease_generation=1)])
        self.settle()
        self.assertEqual(set(), self.driver.list_routers(),
                         "a cast for lease generation 1 rebuilt a moved router")
        self.assertEqual([], self.scheduler.reports)
        current = router()
        self.worker.add([dict(current, lease_generation=2)])
        self.settle()
        self.assertEqual({current["id"]}, self.driver.list_routers())

    def test_removal_sent_for_an_earlier_registration_is_dropped(self):
        r = router()
        self.worker.add([dict(r, lease_generation=1)])
        self.settle()
        self.nodefix.generation = 2
        write_lease(self.nodefix.state_dir, generation=2)
        self.worker.remove([r["id"]], lease_generation=1)
        self.settle()
        self.assertEqual({r["id"]}, self.driver.list_routers())
        self.worker.remove([r["id"]], lease_generation=2)
        self.settle()
        self.assertEqual(set(), self.driver.list_routers())


class LateCastTest(testtools.TestCase):
    """A cast held in RabbitMQ through an outage may describe a router deleted
    since, whose address a new router already uses (nemesis seed 11)."""

    def test_cast_delivered_after_its_ttl_is_refused(self):
        added, removed = [], []

        class Worker:
            def add(self, routers):
                added.extend(routers)

            def remove(self, router_ids, lease_generation=None):
                removed.extend(router_ids)

        endpoint = agent_service.AgentEndpoint(Worker())
        late = rpc.call_context(rpc.CAST_TTL, now=time.time() - rpc.CAST_TTL - 3.5)
        r = router()
        self.assertRaises(oslo_messaging.ExpectedException, endpoint.routers_added, late,
                          routers=[dict(r, lease_generation=1)])
        self.assertRaises(oslo_messaging.ExpectedException, endpoint.routers_removed, late,
                          router_ids=[r["id"]], lease_generation=1)
        self.assertEqual(([], []), (added, removed))
        fresh = rpc.call_context(rpc.CAST_TTL)
        endpoint.routers_added(fresh, routers=[dict(r, lease_generation=1)])
        self.assertEqual([r["id"]], [x["id"] for x in added])

    def test_the_scheduler_gives_every_cast_a_deadline(self):
        sent = []

        class Prepared:
            def cast(self, ctxt, method, **kwargs):
                sent.append((method, ctxt))

        agents = rpc.AgentAPI.__new__(rpc.AgentAPI)
        agents._client = type("Client", (), {"prepare": lambda self, **kw: Prepared()})()
        agents._courier = type("Now", (), {"cast": lambda self, fn, *a, **kw: fn(*a, **kw)})()
        view = {"id": router()["id"], "status": "PENDING", "external_gateway_ip": "10.0.0.2",
                "external_gateway_prefixlen": 24, "external_gateway_mac": "fa:16:3e:00:00:01"}
        agents.routers_added("h", [view], 1)
        agents.routers_removed("h", [view["id"]], 1)
        self.assertEqual(["routers_added", "routers_removed"], [m for m, _ in sent])
        for _, ctxt in sent:
            self.assertLessEqual(rpc.lateness(ctxt), -rpc.CAST_TTL + 1)


class GuardRequiredTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.scheduler = FakeScheduler()
        self.nodefix = self.useFixture(test_agent.NodeFixture())
        self.node = node_mod.Node(HOST, "qr-", self.nodefix.state_dir,
                                  generation=lambda: 1, guard_timeout=1.0)
        self.worker = routers.RouterWorker(HOST, self.driver, self.scheduler, self.node)

    def build(self):
        self.worker._add([router()])
        return self.driver.list_routers()

    def test_fresh_guard_of_this_host_and_prefix_allows_building(self):
        self.assertEqual("ok", self.node.guard_status())
        self.assertEqual(1, len(self.build()))

    def test_missing_guard_refuses_building(self):
        os.unlink(os.path.join(self.nodefix.state_dir, f"{HOST}.guard.json"))
        self.assertEqual("missing", self.node.guard_status())
        self.assertEqual(set(), self.build())
        self.assertTrue(self.worker.refused.is_set())
        # Still this agent's router: the API must say why it does not serve.
        [report] = self.scheduler.reports[-1].values()
        self.assertEqual("ERROR", report["status"])
        self.assertIn("node guard of node-1 is missing", report["reason"])

    def test_a_present_router_whose_gateway_is_down_is_reported_not_built(self):
        # Built while the guard ran; then the gateway address expired (kernel
        # lease: the guard and the agent were both down) and the guard is
        # gone: the namespace alone serves nothing, the API must not say ACTIVE.
        r = router()
        self.worker._add([r])
        self.driver.demote([r["id"]])  # the address gone, the namespace left
        self.scheduler.reports.clear()
        os.unlink(os.path.join(self.nodefix.state_dir, f"{HOST}.guard.json"))
        self.worker._add([r])
        [report] = self.scheduler.reports[-1].values()
        self.assertEqual("ERROR", report["status"])
        self.assertIn("node guard of node-1 is missing", report["reason"])

    def test_guard_of_another_host_counts_as_missing(self):
        os.unlink(os.path.join(self.nodefix.state_dir, f"{HOST}.guard.json"))
        guard_beat(self.nodefix.state_dir, host="node-2")
        self.assertEqual("missing", self.node.guard_status())
        self.assertEqual(set(), self.build())

    def test_guard_with_another_prefix_is_a_mismatch(self):
        guard_beat(self.nodefix.state_dir, prefix="other-")
        self.assertEqual("mismatch", self.node.guard_status())
        self.assertEqual(set(), self.build())

    def test_silent_guard_is_stale(self):
        guard_beat(self.nodefix.state_dir, age=5.0)
        self.assertEqual("stale", self.node.guard_status())
        self.assertEqual(set(), self.build())

    def test_the_guard_writes_the_beat_the_agent_checks(self):
        os.unlink(os.path.join(self.nodefix.state_dir, f"{HOST}.guard.json"))
        node_guard = guard_mod.NodeGuard(HOST, self.driver, FakeGuardScheduler(),
                                         state_dir=self.nodefix.state_dir,
                                         restart_grace=5.0, renew_interval=1.0,
                                         rpc_timeout=1.0)
        self.addCleanup(node_guard.close)
        node_guard.tick()
        self.assertEqual("ok", self.node.guard_status())


class LeaseEnforcerTest(testtools.TestCase):
    """The agent removes what it serves when its own lease runs out, so a dead
    guard alone never leaves a copy behind."""

    def setUp(self):
        super().setUp()
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.nodefix = self.useFixture(test_agent.NodeFixture())
        self.fenced = []
        self.enforcer = node_mod.LeaseEnforcer(self.nodefix.node, self.driver,
                                               self.fenced.append)
        self.driver.ensure([routers.to_spec(router(n=1)), routers.to_spec(router(n=2))])

    def test_live_lease_nothing_happens(self):
        self.assertEqual("ok", self.enforcer.check())
        self.assertEqual(2, len(self.driver.list_routers()))

    def test_lapsed_lease_removes_every_router_and_registers_again(self):
        write_lease(self.nodefix.state_dir, left=-0.01)
        self.assertEqual("fenced", self.enforcer.check())
        self.assertEqual(set(), self.driver.list_routers())
        self.assertEqual([1], self.fenced)

    def test_not_registered_yet_leaves_adoptable_routers_alone(self):
        # A restarted agent has no generation until it registers; the guard
        # holds the lease meanwhile, and the routers must survive.
        self.nodefix.generation = None
        write_lease(self.nodefix.state_dir, left=-0.01)
        self.assertEqual("ok", self.enforcer.check())
        self.assertEqual(2, len(self.driver.list_routers()))


class SlowDriver(fake.FakeRouterDriver):
    """ensure() of the first batch stops half-way until released."""

    def __init__(self, *args):
        super().__init__(*args)
        self.building = threading.Event()
        self.release = threading.Event()

    def ensure(self, routers):
        if not self.building.is_set():
            self.building.set()
            assert self.release.wait(10)
        return super().ensure(routers)


class FenceDuringBuildTest(testtools.TestCase):
    """The lease runs out while a batch build is under way, and the guard
    fences: no router may be left standing once both are done."""

    def test_fence_racing_a_batch_build_leaves_no_router(self):
        self.useFixture(fixtures.MockPatchObject(routers, "BUILD_CHUNK", 2))
        nodefix = self.useFixture(test_agent.NodeFixture())
        driver = SlowDriver("qr-", "br-ex")
        worker = routers.RouterWorker(HOST, driver, FakeScheduler(), nodefix.node)
        node_guard = guard_mod.NodeGuard(HOST, driver, FakeGuardScheduler(),
                                         state_dir=nodefix.state_dir, restart_grace=5.0,
                                         renew_interval=1.0, rpc_timeout=1.0,
                                         lock_timeout=5.0)
        self.addCleanup(node_guard.close)
        build = threading.Thread(target=worker._add, args=([router(n=i) for i in range(6)],))
        build.start()
        self.addCleanup(build.join, 10)
        self.assertTrue(driver.building.wait(10))
        # Mid-build: the lease runs out and the guard checks the node.
        write_lease(nodefix.state_dir, left=-0.01)
        outcome = []
        fence = threading.Thread(target=lambda: outcome.append(node_guard.tick()))
        fence.start()
        time.sleep(0.2)  # let the guard reach the node lock (or, unlocked, fence)
        driver.release.set()
        build.join(10)
        fence.join(10)
        self.assertEqual(["fenced"], outcome)
        self.assertEqual(set(), driver.list_routers(),
                         "routers built during the fence survived it")


class GuardNeverWaitsTest(testtools.TestCase):
    """A renewal or fence report stuck on the network must not stop the guard
    from enforcing the lease."""

    def setUp(self):
        super().setUp()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.driver = fake.FakeRouterDriver("qr-", "br-ex")
        self.driver.ensure([routers.to_spec(router(n=1))])
        # Fence reports are retried every tick here (once a second in service).
        self.useFixture(fixtures.MockPatch(
            "clouddisco.cleanup.guard.FENCE_REPORT_RETRY", 0.0))

        self.scheduler = BlockingScheduler()
        self.addCleanup(self.scheduler.unblock.set)
        self.guard = guard_mod.NodeGuard(HOST, self.driver, self.scheduler,
                                         state_dir=self.state_dir, restart_grace=5.0,
                                         renew_interval=1.0, rpc_timeout=30.0)
        self.addCleanup(self.guard.close)

    def tick_within(self, now, seconds=5.0):
        result = []
        thread = threading.Thread(target=lambda: result.append(self.guard.tick(now)),
                                  daemon=True)
        thread.start()
        thread.join(seconds)
        self.assertFalse(thread.is_alive(), "the guard's check waited on the network")
        return result[0]

    def test_renewal_in_flight_does_not_delay_the_fence(self):
        now = time.monotonic()
        lease.write(self.state_dir, lease.Lease(host=HOST, generation=1, expires=now + 2,
                                                renewed_at=now, pid=999_999), lease.AGENT)
        lease.write_pid(self.state_dir, HOST, 999_999)  # agent gone: restarting
        self.tick_within(now + 0.5)  # sends a renewal, which hangs
        self.assertTrue(self.scheduler.renewing.wait(10))
        self.assertEqual("fenced", self.tick_within(now + 2.1))
        self.assertEqual(set(), self.driver.list_routers())
        # The renewal's late answer must not revive the fenced lease.
        self.scheduler.unblock.set()
        self.assertTrue(self.guard.rpc_idle(10))
        self.assertEqual("fenced", self.tick_within(now + 2.2))
        self.assertTrue(lease.fenced(self.state_dir, HOST, 1))

    def test_new_registration_racing_a_fence_report_keeps_its_routers(self):
        """The routers lost after a scheduler outage: the guard read the fenced
        generation, blocked on its fence report while the agent registered
        again and rebuilt, then removed the new routers as 'reappeared'."""
        now = time.monotonic()
        lease.write(self.state_dir, lease.Lease(host=HOST, generation=1, expires=now - 0.1,
                                                renewed_at=now - 2.1, pid=os.getpid()),
                    lease.AGENT)
        agent = self._fake_agent()
        # The node fences during a control-plane outage: the report fails.
        self.scheduler.fail_fences = True
        self.assertEqual("fenced", self.guard.tick(now))
        self.assertTrue(self.guard.rpc_idle(10))
        # The control plane comes back; the next report of the fence hangs.
        self.scheduler.fail_fences = False
        self.scheduler.block_fences = True
        self.scheduler.fencing.clear()
        fence = threading.Thread(target=self.guard.tick, args=(now + 0.1,), daemon=True)
        fence.start()
        self.assertTrue(self.scheduler.fencing.wait(10))
        # Meanwhile the agent registers as generation 2 and rebuilds, under
        # the node lock, as the agent does.
        with lease.node_lock(self.state_dir, HOST, timeout=10):
            t = time.monotonic()
            lease.write(self.state_dir, lease.Lease(host=HOST, generation=2, expires=t + 2,
                                                    renewed_at=t, pid=agent.pid),
                        lease.AGENT)
            rebuilt = router(n=7)
            self.driver.ensure([routers.to_spec(rebuilt)])
        self.scheduler.unblock.set()
        fence.join(10)
        self.assertTrue(self.guard.rpc_idle(10))
        self.guard.tick(time.monotonic())
        self.assertEqual({rebuilt["id"]}, self.driver.list_routers(),
                         "the guard removed routers of the new registration")

    def _fake_agent(self):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 guard_mod.AGENT_BINARY])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        lease.write_pid(self.state_dir, HOST, proc.pid)
        return proc


class BlockingScheduler:
    def __init__(self):
        self.unblock = threading.Event()
        self.renewing = threading.Event()
        self.fencing = threading.Event()
        self.block_fences = False
        self.fail_fences = False

    def renew_lease(self, host, generation, timeout):
        self.renewing.set()
        self.unblock.wait(30)
        return {"granted": True, "lease_time": 2.0}

    def host_fenced(self, host, generation, reason, timeout):
        self.fencing.set()
        if self.fail_fences:
            raise TimeoutError("no scheduler")
        if self.block_fences:
            self.unblock.wait(30)
        return {"acknowledged": True, "moved": 0}


class HungBuilderTest(testtools.TestCase):
    """An agent stopped while it holds the node lock cannot stop the fence."""

    def test_agent_holding_the_lock_past_its_lease_is_killed(self):
        state_dir = self.useFixture(fixtures.TempDir()).path
        driver = fake.FakeRouterDriver("qr-", "br-ex")
        driver.ensure([routers.to_spec(router(n=1))])
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             f"fd = os.open({os.path.join(state_dir, HOST + '.lock')!r}, "
             "os.O_RDWR | os.O_CREAT)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)",
             guard_mod.AGENT_BINARY], stdout=subprocess.PIPE)
        self.addCleanup(holder.wait)
        self.addCleanup(lambda: holder.poll() is None and holder.kill())
        self.assertEqual(b"locked\n", holder.stdout.readline())
        now = time.monotonic()
        lease.write(state_dir, lease.Lease(host=HOST, generation=1, expires=now - 0.1,
                                           renewed_at=now - 2.1, pid=holder.pid),
                    lease.AGENT)
        lease.write_pid(state_dir, HOST, holder.pid)
        node_guard = guard_mod.NodeGuard(HOST, driver, FakeGuardScheduler(),
                                         state_dir=state_dir, restart_grace=5.0,
                                         renew_interval=1.0, rpc_timeout=1.0,
                                         lock_timeout=0.2)
        self.addCleanup(node_guard.close)
        self.assertEqual("agent killed", node_guard.tick(now))
        self.assertEqual(-9, holder.wait(10))
        self.assertEqual("fenced", node_guard.tick(time.monotonic()))
        self.assertEqual(set(), driver.list_routers())
