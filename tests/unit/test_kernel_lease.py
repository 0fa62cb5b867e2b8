"""The kernel's share of the lease: address lifetimes bounded by the lease
in force, renewed only while it holds, and what the control plane makes of
an agent whose guard is gone but whose kernel enforces the lease."""

import fixtures
import testtools

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco.drivers import fake
from clouddisco.drivers import lifetimes

HOST = "node-1"


class ValidLftTest(testtools.TestCase):
    def test_address_is_gone_before_the_routers_may_move(self):
        # Sent at 100, acknowledged 30 ms later; agent_down_time 3 s.
        seconds = lifetimes.valid_lft(100.0, 3.0, 100.03)
        self.assertEqual(2, seconds)
        latest_gone = 100.03 + seconds + lifetimes.KERNEL_LATE
        self.assertLess(latest_gone, 100.0 + 3.0)
        self.assertGreater(100.03 + seconds, 100.0 + 2.0, "gone before a 2 s lease ends")

    def test_late_acknowledgement_gets_less_or_nothing(self):
        self.assertEqual(1, lifetimes.valid_lft(100.0, 3.0, 100.9))
        self.assertEqual(0, lifetimes.valid_lft(100.0, 3.0, 101.6))


class RecordingDriver(fake.FakeRouterDriver):
    def __init__(self):
        super().__init__("qr-", "br-ex")
        self.renewals = []
        self.routers = {"r1", "r2"}

    def list_routers(self):
        return set(self.routers)

    def renew_address_lifetimes(self, valid_lft):
        self.renewals.append(valid_lft)
        return len(self.routers)


class KeeperTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.driver = RecordingDriver()
        self.keeper = lifetimes.AddressLifetimeKeeper(self.driver, self.state_dir, HOST, 3.0)

    def renew(self, generation=1, sent=100.0, writer=lease.AGENT, lease_time=2.0):
        lease.write(self.state_dir, lease.Lease(host=HOST, generation=generation,
                                                expires=sent + lease_time, renewed_at=sent),
                    writer)

    def test_renews_once_per_lease_and_when_a_router_appears(self):
        self.renew(sent=100.0)
        self.assertEqual(2, self.keeper.renew_once(now=100.03))
        self.assertEqual(0, self.keeper.renew_once(now=100.5), "same lease, same routers")
        self.driver.routers.add("r3")
        self.assertEqual(3, self.keeper.renew_once(now=100.6))
        self.renew(sent=101.0)
        self.keeper.renew_once(now=101.03)
        self.assertEqual([2, 1, 2], self.driver.renewals)
        self.assertTrue(self.keeper.ok)

    def test_nothing_once_the_lease_ran_out(self):
        self.renew(sent=100.0)
        self.assertEqual(0, self.keeper.renew_once(now=102.1))
        self.assertEqual([], self.driver.renewals)

    def test_nothing_for_a_fenced_generation(self):
        self.renew(sent=100.0)
        lease.write(self.state_dir, lease.Lease(host=HOST, generation=1, fenced_generation=1,
                                                fenced_at=100.01), lease.NODE)
        self.assertEqual(0, self.keeper.renew_once(now=100.03))

    def test_the_guard_s_renewals_count_while_the_agent_restarts(self):
        self.renew(generation=1, sent=100.0)
        self.renew(generation=1, sent=102.5, writer=lease.NODE)
        self.keeper.renew_once(now=102.53)
        self.assertEqual([2], self.driver.renewals)

    def test_never_while_a_build_or_fence_holds_the_node_lock(self):
        """A gateway is configured in steps; a renewal between them made the
        kernel add the address twice (nemesis seed 5)."""
        self.renew(sent=100.0)
        self.useFixture(fixtures.MockPatch("clouddisco.drivers.lifetimes.LOCK_WAIT", 0.05))
        with lease.node_lock(self.state_dir, HOST):
            self.assertEqual(0, self.keeper.renew_once(now=100.03))
        self.assertEqual([], self.driver.renewals)
        self.assertEqual(2, self.keeper.renew_once(now=100.05))

    def test_not_ok_when_a_router_was_missed(self):
        self.driver.renew_address_lifetimes = lambda valid_lft: 1
        self.renew(sent=100.0)
        self.keeper.renew_once(now=100.03)
        self.assertFalse(self.keeper.ok)


class KernelEnforcedGuardStatusTest(testtools.TestCase):
    def test_a_dead_guard_with_the_kernel_lease_is_still_enforced(self):
        status = heartbeat.guard_status(HOST, "stale", kernel_lease=True)
        self.assertEqual("stale+kernel", status)
        self.assertTrue(heartbeat.lease_enforced(status))

    def test_without_it_nothing_is(self):
        for guard in ("stale", "missing", "mismatch", "bogus"):
            self.assertFalse(heartbeat.lease_enforced(heartbeat.guard_status(HOST, guard)))
        self.assertFalse(heartbeat.lease_enforced(
            heartbeat.guard_status(HOST, "bogus", kernel_lease=True)),
            "an unknown guard status is never upgraded")

    def test_ok_and_unknown_agents(self):
        self.assertTrue(heartbeat.lease_enforced(heartbeat.guard_status(HOST, "ok", True)))
        self.assertTrue(heartbeat.lease_enforced(None))
