"""A retried registration bumps nothing: nemesis seed 18 saw a register call
whose first answer came late create a second generation, supersede the one
the agent had taken, and make a healthy node fence its routers."""

import fixtures
import testtools

from clouddisco.agent import reporter
from tests.unit import base

HOST = "node-1"


class RegisterAgentTest(base.DBTestCase):
    def test_retry_of_one_registration_keeps_its_generation(self):
        first = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        again = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        self.assertEqual(first["lease_generation"], again["lease_generation"])
        self.assertIsNotNone(self.db.record_heartbeat(HOST, first["lease_generation"]))

    def test_a_new_registration_bumps(self):
        first = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        second = self.db.register_agent(HOST, "qr-", registration_id="b" * 36)
        self.assertEqual(first["lease_generation"] + 1, second["lease_generation"])
        # Without an id (older agents) every call is a new registration.
        third = self.db.register_agent(HOST, "qr-")
        self.assertEqual(second["lease_generation"] + 1, third["lease_generation"])

    def test_a_dead_or_fenced_agent_never_gets_its_old_generation_back(self):
        first = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        self.age_heartbeat(HOST, 10)
        self.assertEqual(1, len(self.db.mark_dead_agents(3.0)))
        again = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        self.assertEqual(first["lease_generation"] + 1, again["lease_generation"])
        self.db.fence_agent(HOST, again["lease_generation"])
        third = self.db.register_agent(HOST, "qr-", registration_id="a" * 36)
        self.assertEqual(again["lease_generation"] + 1, third["lease_generation"])


class LateScheduler:
    """register() records the id it got; the first attempt's answer is lost."""

    def __init__(self):
        self.ids = []

    def register(self, host, prefix, timeout=None, registration_id=None):
        self.ids.append(registration_id)
        if len(self.ids) == 1:
            raise TimeoutError("no answer within 1.0s")
        return {"agent_id": "agent-1", "lease_generation": 1, "lease_time": 2.0}

    def report_state(self, host, state, timeout):
        return {"registered": False}


class ReporterRegistrationIdTest(testtools.TestCase):
    def test_retries_reuse_the_id_and_a_new_registration_gets_a_new_one(self):
        scheduler = LateScheduler()
        rep = reporter.StateReporter(
            HOST, "qr-", scheduler, interval=0.01,
            state_dir=self.useFixture(fixtures.TempDir()).path,
            on_connected=lambda: None, state=lambda: {})
        self.addCleanup(rep.stop)
        self.assertFalse(rep.report_once())
        rep._next_register = 0.0  # skip the backoff
        self.assertTrue(rep.report_once())
        self.assertEqual(scheduler.ids[0], scheduler.ids[1])
        # Refused (superseded or declared dead): the next registration is new.
        self.assertFalse(rep.report_once())
        self.assertTrue(rep.report_once())
        self.assertNotEqual(scheduler.ids[1], scheduler.ids[2])
        self.assertTrue(all(scheduler.ids))


class RegistrationBackoffTest(testtools.TestCase):
    """Failed registrations back off (a fleet restarted at once must not
    retry in lockstep), except while the node guard holds the node's lease
    for this one: a registration later than restart_grace is worth nothing,
    the node fences (an agent restarted during a database outage)."""

    def failing(self, times, lease_valid):
        import time

        from clouddisco import lease

        class Down:
            def register(self_, host, prefix, timeout=None, registration_id=None):
                raise TimeoutError("the database is unavailable")

        state_dir = self.useFixture(fixtures.TempDir()).path
        rep = reporter.StateReporter(HOST, "qr-", Down(), interval=1.0,
                                     state_dir=state_dir, on_connected=lambda: None,
                                     state=lambda: {})
        self.addCleanup(rep.stop)
        for _ in range(times):
            if lease_valid:  # what the node guard keeps renewing
                lease.write(state_dir, lease.Lease(
                    host=HOST, generation=1, expires=time.monotonic() + 2.0,
                    renewed_at=time.monotonic()), lease.NODE)
            rep._next_register = 0.0
            sent = time.monotonic()
            self.assertFalse(rep.report_once())
        return rep._next_register - sent

    def test_backoff_grows_without_a_lease_to_keep(self):
        self.assertGreaterEqual(self.failing(5, lease_valid=False), 4.9)

    def test_no_backoff_past_the_interval_while_the_guard_holds_the_lease(self):
        self.assertLessEqual(self.failing(5, lease_valid=True), 1.0 + 0.01)


class SlowRegistrationTest(testtools.TestCase):
    """A registration answered when its lease (counted from the call) is all
    but over must not be written: the guard would fence the new generation
    at once and the agent register again (nemesis seed 5)."""

    def test_lease_comes_from_the_next_report(self):
        import time

        from clouddisco import lease

        class Slow:
            def register(self_, host, prefix, timeout=None, registration_id=None):
                time.sleep(1.7)  # of a 2 s lease
                return {"agent_id": "a1", "lease_generation": 1, "lease_time": 2.0}

            def report_state(self_, host, state, timeout):
                return {"registered": True, "lease_generation": 1, "lease_time": 2.0}

        state_dir = self.useFixture(fixtures.TempDir()).path
        resyncs = []

        def resync():
            # What the agent's resync checks first (it is postponed without).
            resyncs.append(lease.read(state_dir, "node-1", lease.AGENT).valid())

        rep = reporter.StateReporter("node-1", "qr-", Slow(), interval=1.0,
                                     state_dir=state_dir, on_connected=resync,
                                     state=lambda: {})
        self.addCleanup(rep.stop)
        rep.report_once()
        self.assertEqual(1, rep.generation)
        self.assertEqual(0, lease.read(state_dir, "node-1", lease.AGENT).generation,
                         "a lease with 0.3 s left was written")
        rep.report_once()  # what _step sends right after a registration
        written = lease.read(state_dir, "node-1", lease.AGENT)
        self.assertEqual(1, written.generation)
        self.assertGreater(written.expires - time.monotonic(), 1.5)
        # One resync, once the lease is there: one asked for before it would
        # be postponed, and nothing else asks until the periodic pass (seen
        # in nemesis seed 4: routers bound here, absent, shown ACTIVE 8 s).
        self.assertEqual([True], resyncs)
