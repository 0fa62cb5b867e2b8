"""The nemesis's schedule and fence checker, without a cloud (no root)."""

import testtools

from lab import cloud as lab_cloud
from lab import nemesis


class ScheduleTest(testtools.TestCase):

    def test_a_seed_always_draws_the_same_schedule(self):
        # Replaying a violation relies on this.
        self.assertEqual([f.to_dict() for f in nemesis.Nemesis(4, 45).schedule],
                         [f.to_dict() for f in nemesis.Nemesis(4, 45).schedule])
        self.assertNotEqual([f.to_dict() for f in nemesis.Nemesis(4, 45).schedule],
                            [f.to_dict() for f in nemesis.Nemesis(5, 45).schedule])

    def test_windows_fit_the_run_and_never_share_a_resource(self):
        for seed in range(50):
            faults = nemesis.Nemesis(seed, 60).schedule
            for f in faults:
                self.assertGreaterEqual(f.start, 0)
                self.assertLessEqual(f.end, 60)
            for i, f in enumerate(faults):
                for g in faults[i + 1:]:
                    if f.start < g.end + 1.0 and g.start < f.end + 1.0:
                        self.assertFalse(f.resources(nemesis.AGENTS) & g.resources(
                            nemesis.AGENTS), (seed, f, g))

    def test_schedules_overlap_sometimes(self):
        overlaps = sum(1 for seed in range(20) for f in nemesis.Nemesis(seed, 60).schedule
                       for g in nemesis.Nemesis(seed, 60).schedule
                       if f.start < g.start < f.end)
        self.assertGreater(overlaps, 0)


class _Fences:
    """Check (f) on one fence of node a, against the given fault windows."""

    def check(self, faults, fence_at):
        result = nemesis.Result(seed=1, duration=60, started_at=100.0)
        nemesis.Checker(result).fences(
            [{"node": "a", "at": fence_at, "by": "guard-a", "line": "fencing x"}],
            faults, end=160.0)
        return result.violations

    def fault(self, kind, node, injected, healed):
        return nemesis.Fault(kind, node, injected - 100, healed - injected,
                             injected_at=injected, healed_at=healed)


class FenceCheckTest(_Fences, testtools.TestCase):

    def test_a_fault_on_the_node_explains_its_fence(self):
        self.assertEqual([], self.check([self.fault("cut_off", "a", 110, 115)], 113))
        # Also a while after the heal (re-registration, re-fencing).
        self.assertEqual([], self.check([self.fault("cut_off", "a", 110, 115)], 125))

    def test_a_control_plane_fault_does_not(self):
        found = self.check([self.fault("scheduler_kill", None, 110, 115),
                            self.fault("cut_off", "b", 110, 115)], 113)
        self.assertEqual(["f"], [v.check for v in found])
        self.assertIn("only control-plane faults", found[0].what)
        self.assertIn("--seed 1", found[0].replay)

    def test_a_fence_with_no_fault_at_all_is_reported_too(self):
        self.assertEqual(["f"], [v.check for v in self.check([], 130)])


class DatabaseFaultsTest(testtools.TestCase):
    def test_default_schedules_draw_no_database_fault(self):
        for seed in range(20):
            self.assertNotIn("db_cut", {f.kind for f in nemesis.Nemesis(seed, 60).schedule})

    def test_db_faults_draw_both_cut_modes(self):
        cuts = [f for seed in range(20)
                for f in nemesis.Nemesis(seed, 60, db_faults=True).schedule
                if f.kind == "db_cut"]
        self.assertEqual({"reset", "drop"}, {f.mode for f in cuts})
        self.assertTrue(all(f.node is None for f in cuts), "a control-plane fault")


class ClockFaultsTest(testtools.TestCase):
    def test_default_schedules_draw_no_clock_step(self):
        # Adding a kind must not change what the CI seeds draw.
        for seed in (4, 11, 18):
            kinds = {f.kind for f in nemesis.Nemesis(seed, 45).schedule}
            self.assertNotIn("clock_skew", kinds)

    def test_clock_faults_step_both_ways_within_max_clock_skew(self):
        steps = [f for seed in range(20)
                 for f in nemesis.Nemesis(seed, 60, clock_faults=True).schedule
                 if f.kind == "clock_skew"]
        self.assertTrue(steps)
        self.assertTrue(any(f.offset > 0 for f in steps))
        self.assertTrue(any(f.offset < 0 for f in steps))
        lo, hi = nemesis.SKEW_RANGE
        self.assertTrue(all(lo <= abs(f.offset) <= hi for f in steps))
        self.assertRegex(steps[0].label(), r"^clock_skew \([+-]\d\.\d\ds\)$")
        self.assertIn("--clock-faults", nemesis.replay_command(1, 60, clock_faults=True))


class NoLeasePathTest(_Fences, testtools.TestCase):
    """The scheduler killed while the database is cut off leaves a node no
    way to renew its lease: its fence is explained, not a violation."""

    def test_scheduler_killed_during_a_database_cut_explains_a_fence(self):
        faults = [self.fault("db_cut", None, 110, 118),
                  self.fault("scheduler_kill", None, 112, 116)]
        result = nemesis.Result(seed=1, duration=60, started_at=100.0)
        nemesis.Checker(result).fences(
            [{"node": "a", "at": 114.0, "by": "guard-a", "line": "fencing x"}],
            faults, end=160.0)
        self.assertEqual([], result.violations)
        self.assertEqual(1, len(result.explained_fences))
        self.assertIn("every lease path was down", result.report())

    def test_either_alone_does_not(self):
        for fault in (self.fault("db_cut", None, 110, 118),
                      self.fault("scheduler_kill", None, 110, 118)):
            self.assertEqual(["f"], [v.check for v in self.check([fault], 114)])

    def test_nor_a_fence_before_both_were_in_force_or_long_after(self):
        faults = [self.fault("db_cut", None, 110, 118),
                  self.fault("scheduler_kill", None, 115, 117)]
        self.assertEqual(["f"], [v.check for v in self.check(faults, 113)])
        self.assertEqual(["f"], [v.check for v in self.check(faults, 123)])


class ObserverTest(testtools.TestCase):
    """Check (e)'s observer: how long the API showed a router ACTIVE whose
    namespace (with its gateway up) was absent."""

    class Cloud:
        api_url = "http://api"
        agent_names = ["a"]
        # The real sampling call, so a change in how the lab asks the API
        # is exercised here too; only the HTTP below it is faked.
        list_routers = lab_cloud.Cloud.list_routers

        def admin_headers(self):
            return {}

        def host(self, agent):
            return f"host-{agent}"

        def namespace(self, agent, router_id):
            return f"ns-{router_id}"

    class Sampler:
        def latest(self):
            return None  # no namespace seen anywhere

    def observe(self, observer, answer, at):
        from unittest import mock

        import requests
        resp = mock.Mock(ok=True)
        resp.json.return_value = {"routers": answer}
        with mock.patch.object(requests, "get", side_effect=(
                requests.ConnectionError("stalled") if answer is None else [resp])), \
                mock.patch("time.time", return_value=at):
            observer.observe()

    def test_an_unanswered_sample_ends_an_absence(self):
        observer = nemesis.Observer(self.Cloud(), self.Sampler())
        active = [{"id": "r1", "status": "ACTIVE", "agent_host": "host-a",
                   "external_gateway_ip": "10.0.0.1"}]
        self.observe(observer, active, 100.0)
        self.observe(observer, active, 101.0)
        self.observe(observer, None, 102.0)  # the API does not answer
        self.observe(observer, None, 103.0)
        self.observe(observer, None, 104.0)
        self.observe(observer, active, 105.0)
        self.observe(observer, [], 106.0)
        # Two spans of 2 s and 1 s, not one of 6 s.
        self.assertEqual([], observer.absences)
        self.assertEqual(3, observer.failed_samples)

    def test_an_absence_longer_than_the_bound_is_recorded(self):
        observer = nemesis.Observer(self.Cloud(), self.Sampler())
        active = [{"id": "r1", "status": "ACTIVE", "agent_host": "host-a",
                   "external_gateway_ip": "10.0.0.1"}]
        for t in range(100, 105):
            self.observe(observer, active, float(t))
        self.observe(observer, [], 105.0)
        self.assertEqual([5.0], [a["seconds"] for a in observer.absences])
