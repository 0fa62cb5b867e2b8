"""Health monitor decisions, against SQLite and a recording agent client."""

import collections
import datetime

import fixtures
import sqlalchemy as sa

from clouddisco.db import api as db_api
from clouddisco.db import models
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import monitor
from tests.unit import base

DOWN = 3.0


class MonitorTestBase(base.DBTestCase):
    """Set-up and helpers shared by the monitor tests."""

    def setUp(self):
        super().setUp()
        self.agents_api = base.RecordingAgentAPI()
        self.dispatcher = dispatch.RouterDispatcher(self.db, self.agents_api, DOWN)
        self.monitor = self.make_monitor("sched-1")

    def age_heartbeat(self, host, seconds):
        """Silence ``host``; every agent not silenced by the test reports now, so
        that a slow test on a loaded machine does not age the healthy ones too."""
        self._silent = getattr(self, "_silent", set()) | {host}
        for agent in self.db.agent_health():
            if agent["host"] not in self._silent:
                self.db.record_heartbeat(agent["host"])
        super().age_heartbeat(host, seconds)

    def make_monitor(self, host):
        return monitor.HealthMonitor(self.db, self.dispatcher, host=host,
                                     agent_down_time=DOWN, check_interval=0.1,
                                     pending_retry_time=10)

    def register(self, *hosts):
        return {h: self.db.register_agent(h, f"{h}-")["id"] for h in hosts}

    def place(self, n):
        ids = [self.make_router(name=f"r{i}")["id"] for i in range(n)]
        # Creating routers can take seconds on a loaded machine: report for
        # every live agent first, so that none ages out of eligibility.
        for agent in self.db.agent_health():
            self.db.record_heartbeat(agent["host"])
        self.dispatcher.place(ids)
        return ids

    def hosts_of(self, router_ids):
        return {r["id"]: r["agent_host"] for r in self.db.routers_by_id(router_ids)}


class MonitorTest(MonitorTestBase):
    def test_new_routers_go_to_least_loaded(self):
        self.register("a", "b")
        ids = self.place(10)
        counts = collections.Counter(self.hosts_of(ids).values())
        self.assertEqual({"a": 5, "b": 5}, dict(counts))
        self.assertEqual(10, len(self.agents_api.added_to("a") + self.agents_api.added_to("b")))

    def test_healthy_agents_are_left_alone(self):
        self.register("a", "b")
        ids = self.place(4)
        before = self.hosts_of(ids)
        self.age_heartbeat("a", DOWN - 1)
        self.monitor.run_once()
        self.assertEqual(before, self.hosts_of(ids))
        self.assertEqual([], self.db.list_failover_events())

    def test_silent_agent_routers_move_and_events_record_phases(self):
        agents = self.register("a", "b", "c")
        ids = self.place(9)
        on_a = [rid for rid, h in self.hosts_of(ids).items() if h == "a"]
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        placed = self.hosts_of(ids)
        self.assertNotIn("a", placed.values())
        self.assertEqual(sorted(on_a),
                         sorted(self.agents_api.added_to("b")[3:] +
                                self.agents_api.added_to("c")[3:]))
        events = self.db.list_failover_events()
        self.assertEqual(sorted(on_a), sorted(e["router_id"] for e in events))
        for e in events:
            self.assertEqual(agents["a"], e["old_agent_id"])
            self.assertEqual("agent_dead", e["cause"])
            self.assertEqual("sched-1", e["detected_by"])
            self.assertLess(e["last_heartbeat_at"], e["detected_at"])
            self.assertLessEqual(e["detected_at"], e["rescheduled_at"])
            self.assertIsNone(e["active_at"])
        for rid in on_a:
            self.assertEqual(models.PENDING, self.db.get_router(rid)["status"])
        # The new agent confirms: the event gets its "active" phase.
        new_host = placed[on_a[0]]
        self.db.apply_router_reports(new_host, {on_a[0]: ("ACTIVE", None)})
        event = self.db.list_failover_events(router_id=on_a[0])[0]
        self.assertIsNotNone(event["active_at"])
        self.assertLessEqual(event["rescheduled_at"], event["active_at"])

    def test_failover_spreads_evenly(self):
        agents = self.register("dead", "s1", "s2", "s3", "s4")
        for h in ("s1", "s2", "s3", "s4"):
            self.db.set_agent_admin_state(agents[h], False)
        ids = self.place(40)  # all on "dead": the others are disabled
        self.assertEqual({"dead"}, set(self.hosts_of(ids).values()))
        for a in self.db.list_agents(DOWN):
            self.db.set_agent_admin_state(a["id"], True)
        self.age_heartbeat("dead", DOWN + 1)
        self.monitor.run_once()
        counts = collections.Counter(self.hosts_of(ids).values())
        self.assertEqual({"s1": 10, "s2": 10, "s3": 10, "s4": 10}, dict(counts))

    def test_disabled_agent_gets_no_routers(self):
        agents = self.register("a", "b")
        self.db.set_agent_admin_state(agents["b"], False)
        ids = self.place(5)
        self.assertEqual({"a"}, set(self.hosts_of(ids).values()))
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        # No eligible survivor: unbound, ERROR with the reason, never on "b".
        for r in self.db.routers_by_id(ids):
            self.assertIsNone(r["agent_host"])
            self.assertEqual(models.ERROR, r["status"])
            self.assertEqual(db_api.NO_AGENT_REASON, r["status_reason"])
        # Once "b" is enabled, the next passes place them there.
        self.db.set_agent_admin_state(agents["b"], True)
        self.age_routers(5)
        self.monitor.run_once()
        self.assertEqual({"b"}, set(self.hosts_of(ids).values()))

    def test_racing_monitors_bind_each_router_once(self):
        agents = self.register("a", "b", "c")
        ids = self.place(6)
        self.age_heartbeat("a", DOWN + 1)
        self.db.mark_dead_agents(DOWN)
        bindings = self.db.bindings_on_dead_agents()
        # Both monitors read the same bindings, then each tries its own plan.
        plan_b = [db_api.Move(b["router_id"], b["agent_id"], b["generation"], agents["b"],
                              b["agent_generation"]) for b in bindings]
        plan_c = [db_api.Move(b["router_id"], b["agent_id"], b["generation"], agents["c"],
                              b["agent_generation"]) for b in bindings]
        kw = dict(cause="agent_dead", detected_by="x", last_heartbeat={}, detected_at={})
        won_b = self.db.move_bindings(plan_b, **kw)
        won_c = self.db.move_bindings(plan_c, **kw)
        self.assertEqual(len(bindings), len(won_b))
        self.assertEqual([], won_c)
        self.assertEqual(len(bindings), len(self.db.list_failover_events()))
        moved = {b["router_id"] for b in bindings}
        hosts = self.hosts_of(ids)
        self.assertEqual({"b"}, {hosts[r] for r in moved})
        self.assertEqual(6, len(hosts))

    def test_dead_agent_must_register_again_and_keeps_no_routers(self):
        self.register("a", "b")
        ids = self.place(2)
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertEqual({"b"}, set(self.hosts_of(ids).values()))
        # Its reports renew nothing (no lease) until it registers again.
        self.assertIsNone(self.db.record_heartbeat("a"))
        self.db.register_agent("a", "a-")
        self.assertIsNotNone(self.db.record_heartbeat("a"))
        self.assertEqual([], self.db.routers_bound_to("a"))
        alive = {a["host"]: a["alive"] for a in self.db.list_agents(DOWN)}
        self.assertEqual({"a": True, "b": True}, alive)

    def test_deleting_router_on_dead_agent_is_dropped_not_moved(self):
        self.register("a")
        (rid,) = self.place(1)
        self.register("b")
        self.db.begin_router_delete(rid)
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertRaises(db_api.exceptions.NotFound, self.db.get_router, rid)
        self.assertEqual([], self.agents_api.added_to("b"))

    def test_late_report_from_old_agent_is_ignored(self):
        self.register("a", "b")
        (rid,) = self.place(1)
        old = self.hosts_of([rid])[rid]
        new = "b" if old == "a" else "a"
        self.age_heartbeat(old, DOWN + 1)
        self.monitor.run_once()
        outcome = self.db.apply_router_reports(old, {rid: ("ERROR", "late")})
        self.assertEqual({rid: "ignored"}, outcome)
        self.assertEqual(new, self.hosts_of([rid])[rid])

    def test_stuck_pending_router_is_sent_again(self):
        self.register("a")
        (rid,) = self.place(1)
        self.agents_api.added.clear()
        self.age_routers(60)
        self.monitor.run_once()
        self.assertEqual([rid], self.agents_api.added_to("a"))
        # Sent again once, not on every pass.
        self.monitor.run_once()
        self.assertEqual([rid], self.agents_api.added_to("a"))

    def test_router_in_error_on_a_live_agent_is_retried(self):
        self.register("a")
        (rid,) = self.place(1)
        self.db.apply_router_reports("a", {rid: ("ERROR", "transient")})
        self.agents_api.added.clear()
        self.age_routers(60)
        self.monitor.run_once()
        self.assertEqual([rid], self.agents_api.added_to("a"))

    def test_router_created_without_agents_is_placed_later(self):
        (rid,) = self.place(1)
        self.assertEqual(models.ERROR, self.db.get_router(rid)["status"])
        self.register("a")
        self.age_routers(5)
        self.monitor.run_once()
        self.assertEqual("a", self.hosts_of([rid])[rid])
        self.assertEqual(models.PENDING, self.db.get_router(rid)["status"])

    def test_next_check_is_timed_to_the_first_expiry(self):
        self.assertEqual(0.1, self.monitor.next_check_delay())  # no agents
        self.register("a", "b")
        self.monitor.check_interval = 100
        self.monitor.agent_down_time = 30
        self.age_heartbeat("a", 25)  # 5 s before its expiry
        delay = self.monitor.next_check_delay()
        self.assertGreater(delay, 2.0)  # generous: the machine may be loaded
        self.assertLessEqual(delay, 5.01)
        self.age_heartbeat("a", 40)
        self.assertEqual(0.0, self.monitor.next_check_delay())

    def test_agent_registering_again_wins_over_a_stale_move(self):
        agents = self.register("a", "b")
        ids = self.place(4)
        self.age_heartbeat("a", DOWN + 1)
        self.db.mark_dead_agents(DOWN)
        bindings = self.db.bindings_on_dead_agents()
        # The agent comes back between the monitor's read and its move.
        self.db.register_agent("a", "a-")
        moves = [db_api.Move(b["router_id"], b["agent_id"], b["generation"], agents["b"],
                             b["agent_generation"]) for b in bindings]
        won = self.db.move_bindings(moves, cause="agent_dead", detected_by="x",
                                    last_heartbeat={}, detected_at={})
        self.assertEqual([], won)
        self.assertEqual(len(bindings), len(self.db.routers_bound_to("a")))
        self.assertEqual(4, len(ids))

    def test_monitors_split_agents_over_the_ring(self):
        self.register(*[f"h{i}" for i in range(20)])
        m2 = self.make_monitor("sched-2")
        self.monitor.run_once()
        m2.run_once()
        self.monitor.run_once()
        self.assertEqual(["sched-1", "sched-2"], self.monitor.ring_members)
        agents = self.db.agent_health()
        mine1 = {a["id"] for a in agents if self.monitor.owns(a["id"])}
        mine2 = {a["id"] for a in agents if m2.owns(a["id"])}
        self.assertEqual(set(), mine1 & mine2)
        self.assertEqual({a["id"] for a in agents}, mine1 | mine2)
        self.assertTrue(mine1 and mine2)

    def test_replica_that_stops_passing_loses_its_share(self):
        self.register(*[f"h{i}" for i in range(10)])
        m2 = self.make_monitor("sched-2")
        m2.run_once()
        self.monitor.run_once()
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(models.Service).where(models.Service.host == "sched-2")
                         .values(heartbeat_at=self.db.now() - datetime.timedelta(
                             seconds=5)))
        self.monitor.run_once()
        self.assertEqual(["sched-1"], self.monitor.ring_members)
        self.assertTrue(all(self.monitor.owns(a["id"]) for a in self.db.agent_health()))

    def test_circuit_breaker_moves_nothing_and_records_why(self):
        self.register("a", "b", "c", "d")
        ids = self.place(8)
        before = self.hosts_of(ids)
        for h in ("a", "b", "c"):
            self.age_heartbeat(h, DOWN + 1)
        self.monitor.run_once()
        self.assertTrue(self.monitor.breaker_open)
        self.assertEqual(before, self.hosts_of(ids))
        events = self.db.list_failover_events()
        self.assertEqual(["circuit_breaker"], [e["cause"] for e in events])
        self.assertIn("3 of 4 enabled agents", events[0]["detail"])
        self.assertIn("sched-1", events[0]["detail"])
        self.monitor.run_once()  # still open: no second event
        self.assertEqual(1, len(self.db.list_failover_events()))
        # Reports come back: it closes, and a real single death moves again.
        for h in ("a", "b", "c"):
            self.db.record_heartbeat(h)
        self._silent.clear()
        self.monitor.run_once()
        self.assertFalse(self.monitor.breaker_open)
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertNotIn("a", set(self.hosts_of(ids).values()))

    def run_loop(self, simulated_seconds, max_passes=100):
        """Run the monitor's real loop on a simulated clock: its waits advance
        the clock instead of sleeping. Returns the number of passes."""
        passes = []
        run_once = self.monitor.run_once

        def counted():
            passes.append(1)
            run_once()

        class SimulatedStop:
            t = 0.0

            def is_set(self):
                return self.t >= simulated_seconds or len(passes) >= max_passes

            def wait(self, timeout):
                self.t += timeout

        self.monitor.run_once = counted
        self.monitor._loop._stop = SimulatedStop()
        self.monitor._loop._run()
        return len(passes)

    def test_open_breaker_does_not_spin_the_monitor(self):
        self.register("a", "b", "c", "d")
        self.place(4)
        for h in ("a", "b", "c", "d"):
            self.age_heartbeat(h, DOWN + 1)
        self.monitor.check_interval = 10
        # Every deadline is past and nobody is declared dead (breaker open):
        # a pass every check_interval, not one after another with no wait.
        passes = self.run_loop(simulated_seconds=30)
        self.assertTrue(self.monitor.breaker_open)
        self.assertLessEqual(passes, 4)

    def test_deadline_reached_during_a_pass_gets_one_prompt_pass(self):
        self.register("a", "b", "c")
        self.place(3)
        self.monitor.check_interval = 10
        self.monitor.run_once()
        # a's deadline falls at the start of the pass just run: not judged yet.
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(models.Agent).where(models.Agent.host == "a").values(
                heartbeat_at=self.monitor._pass_started - datetime.timedelta(seconds=DOWN)))
        for h in ("b", "c"):  # however slow the machine, only a is due
            self.db.record_heartbeat(h)
        self.assertEqual(0.0, self.monitor.next_check_delay())
        self.monitor.run_once()
        self.assertNotIn("a", {a["host"] for a in self.db.agent_health()
                               if a["dead_since"] is None})
        self.assertGreater(self.monitor.next_check_delay(), 0.0)

    def test_silent_unguarded_agent_keeps_its_routers_until_it_fences(self):
        agents = self.register("a", "b", "c")
        ids = self.place(6)
        on_a = sorted(rid for rid, h in self.hosts_of(ids).items() if h == "a")
        self.db.record_heartbeat("a", guard_status="missing")
        self.age_heartbeat("a", DOWN + 1)
        self.agents_api.added.clear()
        logger = self.useFixture(fixtures.FakeLogger(level="ERROR"))
        for _ in range(3):
            self.monitor.run_once()
        # Declared dead, but nothing on its node is sure to remove the routers.
        self.assertIsNotNone(next(a for a in self.db.agent_health()
                                  if a["host"] == "a")["dead_since"])
        self.assertEqual(on_a, sorted(self.db_routers_on("a")))
        self.assertEqual([], self.agents_api.added)
        [event] = self.db.list_failover_events()
        self.assertEqual("unguarded", event["cause"])
        self.assertEqual(agents["a"], event["old_agent_id"])
        self.assertIsNone(event["router_id"])
        self.assertIn("'missing'", event["detail"])
        self.assertIn("NOT moved", event["detail"])
        self.assertEqual(1, logger.output.count("failover refused"))
        # The node confirms it fenced itself: now they move.
        gen = next(a["lease_generation"] for a in self.db.agent_health()
                   if a["host"] == "a")
        self.db.fence_agent("a", gen)
        self.monitor.run_once()
        self.assertEqual([], self.db_routers_on("a"))
        moved = [e for e in self.db.list_failover_events() if e["cause"] == "agent_fenced"]
        self.assertEqual(on_a, sorted(e["router_id"] for e in moved))

    def test_guarded_or_old_agents_fail_over_as_before(self):
        self.register("a", "b", "c")
        ids = self.place(6)
        self.db.record_heartbeat("a", guard_status="ok")
        self.db.record_heartbeat("b")  # an old agent: says nothing of a guard
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.age_heartbeat("b", DOWN + 1)
        self.monitor.run_once()
        self.assertEqual({"c"}, set(self.hosts_of(ids).values()))

    def test_dead_guard_with_the_kernel_lease_fails_over(self):
        """The kernel removes the addresses when the lease runs out, so a
        silent agent whose guard is gone may move (clouddisco.drivers.lifetimes)."""
        self.register("a", "b", "c")
        ids = self.place(6)
        self.db.record_heartbeat("a", guard_status="stale+kernel")
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertNotIn("a", set(self.hosts_of(ids).values()))
        self.assertEqual([], [e for e in self.db.list_failover_events()
                              if e["cause"] == "unguarded"])

    def test_held_unguarded_agent_does_not_trip_the_breaker_later(self):
        self.register("a", "b", "c")
        self.place(6)
        on_a = sorted(self.db_routers_on("a"))
        self.db.record_heartbeat("a", guard_status="stale")
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        # Long after, b dies alone: one death among the agents that matter.
        self.age_heartbeat("b", DOWN + 1)
        self.monitor.run_once()
        self.assertFalse(self.monitor.breaker_open)
        self.assertEqual([], self.db_routers_on("b"))
        self.assertEqual(on_a, sorted(self.db_routers_on("a")))

    def db_routers_on(self, host):
        return [r["id"] for r in self.db.routers_bound_to(host)]

    def test_fenced_agent_moves_even_with_breaker_open(self):
        self.register("a", "b", "c")
        ids = self.place(6)
        for h in ("b", "c"):
            self.age_heartbeat(h, DOWN + 1)
        gen = next(a["lease_generation"] for a in self.db.agent_health() if a["host"] == "a")
        self.db.fence_agent("a", gen)
        self.monitor.run_once()
        self.assertTrue(self.monitor.breaker_open)
        # Nothing can take a's routers (b and c look dead): unbound, not lost.
        self.assertEqual(set(), {h for h in self.hosts_of(ids).values()} & {"a"})


class ClockSkewTest(MonitorTestBase):
    """Scheduler replicas whose clocks disagree: liveness must not care."""

    def skewed(self, seconds):
        """This process's clock, as a replica ``seconds`` off would read it."""
        real = db_api.utcnow
        return fixtures.MonkeyPatch(
            "clouddisco.db.api.utcnow",
            lambda: real() + datetime.timedelta(seconds=seconds))

    def test_skewed_replicas_never_declare_a_reporting_agent_dead(self):
        # Replica 2 receives a's reports; its clock is 1.5 s behind. Replica 1
        # runs the monitor; its clock is 1.5 s ahead. Same database.
        replica2 = db_api.Database(str(self.db.engine.url))
        self.addCleanup(replica2.engine.dispose)
        self.register("a", "b", "c")
        ids = self.place(6)
        before = self.hosts_of(ids)
        monitor1 = monitor.HealthMonitor(self.db, self.dispatcher, host="sched-1",
                                         agent_down_time=2.5, check_interval=0.1,
                                         pending_retry_time=10)
        for _ in range(3):
            with self.skewed(-1.5):
                self.assertIsNotNone(replica2.record_heartbeat("a"))
            with self.skewed(+1.5):
                for h in ("b", "c"):
                    self.db.record_heartbeat(h)
                monitor1.run_once()
                # Nor is a's deadline judged in the past by the skewed replica.
                self.assertGreater(monitor1.next_check_delay(), 0.0)
        self.assertEqual(before, self.hosts_of(ids))
        self.assertEqual([], self.db.list_failover_events())
        self.assertEqual({"a": True, "b": True, "c": True},
                         {a["host"]: a["alive"] for a in self.db.list_agents(2.5)})


class OutageHoldTest(MonitorTestBase):
    """While this replica's lease receiver may have told nodes the database
    is unavailable (they then keep serving on that), nothing moves by silence."""

    def test_no_failover_by_silence_while_held_then_as_usual(self):
        import time as time_mod
        until = [time_mod.monotonic() + 60]
        self.monitor = monitor.HealthMonitor(
            self.db, self.dispatcher, host="sched-1", agent_down_time=DOWN,
            check_interval=0.1, pending_retry_time=10, outage_until=lambda: until[0])
        self.register("a", "b", "c")
        ids = self.place(6)
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertIn("a", set(self.hosts_of(ids).values()))
        self.assertIsNone(next(a for a in self.db.agent_health()
                               if a["host"] == "a")["dead_since"],
                          "declared dead while held: its reports would be refused")
        until[0] = 0.0
        self.monitor.run_once()
        self.assertNotIn("a", set(self.hosts_of(ids).values()))

    def test_a_confirmed_fence_still_moves_while_held(self):
        import time as time_mod
        self.monitor = monitor.HealthMonitor(
            self.db, self.dispatcher, host="sched-1", agent_down_time=DOWN,
            check_interval=0.1, pending_retry_time=10,
            outage_until=lambda: time_mod.monotonic() + 60)
        self.register("a", "b", "c")
        ids = self.place(6)
        self.db.fence_agent("a", 1)
        self.monitor.run_once()
        self.assertNotIn("a", set(self.hosts_of(ids).values()))

    def test_a_new_monitor_holds_for_start_hold(self):
        self.monitor = monitor.HealthMonitor(
            self.db, self.dispatcher, host="sched-1", agent_down_time=DOWN,
            check_interval=0.1, pending_retry_time=10, start_hold=60)
        self.register("a", "b", "c")
        ids = self.place(6)
        self.age_heartbeat("a", DOWN + 1)
        self.monitor.run_once()
        self.assertIn("a", set(self.hosts_of(ids).values()))


class DeleteRacingFailoverTest(MonitorTestBase):
    """A DELETE whose scheduler read the router on its dead agent, while a
    failover that had read it before the DELETE moved it to a live agent and
    sent it there (nemesis seed 102). Dropping the row then left the new copy
    serving and freed its gateway address: the next router got it, on the
    same node, and two namespaces answered for one address for 13 s."""

    def test_delete_asks_the_new_agent_rather_than_dropping_the_row(self):
        self.register("a", "b")
        (rid,) = self.place(1)
        old = self.hosts_of([rid])[rid]
        new = "b" if old == "a" else "a"
        stale = self.db.router_placement(rid)  # what the delete handler read
        self.age_heartbeat(old, DOWN + 1)
        self.monitor.run_once()  # moved, and sent to the new agent
        self.assertEqual(new, self.hosts_of([rid])[rid])
        self.db.begin_router_delete(rid)
        router, agent = stale
        self.db.mark_dead_agents(DOWN)
        dead = dict(agent, dead_since=self.db.agent_health()[0]["heartbeat_at"])
        real = self.db.router_placement
        reads = [(dict(router, status="DELETING"), dead)]
        self.useFixture(fixtures.MockPatchObject(
            self.db, "router_placement",
            side_effect=lambda r: reads.pop() if reads else real(r)))
        self.dispatcher.delete(rid)
        # Still there, and its new agent is asked to remove it.
        self.assertEqual("DELETING", self.db.get_router(rid)["status"])
        self.assertEqual([(new, [rid])], self.agents_api.removed)

    def test_stray_active_report_gets_the_copy_removed(self):
        from clouddisco.scheduler import endpoints
        self.register("a", "b")
        (rid,) = self.place(1)
        host = self.hosts_of([rid])[rid]
        other = "b" if host == "a" else "a"
        endpoint = endpoints.SchedulerEndpoint(self.db, self.dispatcher, self.monitor, 2.0)
        # The server binds it to ``host``: ``other`` has a copy it should not.
        endpoint.update_router_status({}, host=other, reports={rid: {"status": "ACTIVE"}})
        self.assertEqual([(other, [rid])], self.agents_api.removed)
        gen = self.db.agent_generation(other)
        self.assertEqual((other, gen), self.agents_api.generations[-1])
        # A report from where it is bound asks nothing.
        self.agents_api.removed.clear()
        endpoint.update_router_status({}, host=host, reports={rid: {"status": "ACTIVE"}})
        self.assertEqual([], self.agents_api.removed)
