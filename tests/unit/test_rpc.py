"""RPC wiring over oslo.messaging's in-process fake:// transport."""

import logging
import time

import fixtures
import jsonschema
import oslo_messaging
import testtools

from clouddisco import rpc
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import endpoints
from clouddisco.scheduler import monitor
from tests.unit import base


class SchedulerRPCTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        conf = base.make_conf(transport_url="fake:///", host="sched-1")
        self.transport = rpc.get_transport(conf)
        self.addCleanup(self.transport.cleanup)
        self.agents_api = base.RecordingAgentAPI()
        dispatcher = dispatch.RouterDispatcher(self.db, self.agents_api, 3.0)
        self.monitor = monitor.HealthMonitor(self.db, dispatcher, host="sched-1",
                                             agent_down_time=3.0, check_interval=0.1,
                                             pending_retry_time=10)
        servers = [
            rpc.get_server(self.transport, rpc.SCHEDULER_TOPIC,
                           [endpoints.SchedulerEndpoint(self.db, dispatcher, self.monitor,
                                                        2.0)], "sched-1"),
            rpc.get_server(self.transport, rpc.REPORTS_TOPIC,
                           [endpoints.ReportEndpoint(self.db, 2.0)], "sched-1"),
        ]
        for server in servers:
            server.start()
            self.addCleanup(server.wait)
            self.addCleanup(server.stop)
        self.client = rpc.SchedulerAPI(self.transport, timeout=5)

    def test_state_report_stores_the_node_guard_status(self):
        self.client.register("node-1", "qr1-")

        def guard():
            return self.db.agent_health()[0]["guard_status"]

        self.assertIsNone(guard())
        for reported, stored in (("ok", "ok"), ("missing", "missing"),
                                 ("stale", "stale"), ("mismatch", "mismatch"),
                                 ("weird" * 9, "weird" * 3 + "w"), (None, None)):
            state = {"lease_generation": 1}
            if reported is not None:
                state["guard"] = reported
            self.client.report_state("node-1", state, timeout=5)
            self.assertEqual(stored, guard())
        # A lease renewal (from the guard itself) says nothing of the guard.
        self.client.report_state("node-1", {"lease_generation": 1, "guard": "stale"},
                                 timeout=5)
        self.assertTrue(self.client.renew_lease("node-1", 1, timeout=5)["granted"])
        self.assertEqual("stale", guard())

    def test_register_report_sync_status(self):
        reply = self.client.register("node-1", "qr1-")
        self.assertEqual(1, reply["lease_generation"])
        self.assertEqual(2.0, reply["lease_time"])
        report = self.client.report_state("node-1", {"routers": 0, "lease_generation": 1},
                                          timeout=5)
        self.assertEqual({"registered": True, "lease_generation": 1, "lease_time": 2.0},
                         report)
        # A superseded process (older generation) must register again.
        self.assertEqual({"registered": False}, self.client.report_state(
            "node-1", {"lease_generation": 0}, timeout=5))
        router = self.make_router()
        self.client.schedule_router(router["id"])
        synced = _wait(lambda: self.client.sync_routers("node-1"))
        self.assertEqual([router["id"]], [r["id"] for r in synced])
        self.assertEqual({"id", "status", "gateway_ip", "gateway_prefixlen", "gateway_mac"},
                         set(synced[0]))
        self.client.update_router_status("node-1", {router["id"]: {"status": "ACTIVE"}})
        self.assertEqual("ACTIVE", self.db.get_router(router["id"])["status"])

    def test_lease_renewal_and_fence_fast_path(self):
        gen = self.client.register("node-1", "qr1-")["lease_generation"]
        self.client.register("node-2", "qr2-")
        self.assertEqual({"granted": True, "lease_time": 2.0},
                         self.client.renew_lease("node-1", gen, timeout=5))
        self.assertEqual({"granted": False},
                         self.client.renew_lease("node-1", gen + 7, timeout=5))
        router = self.make_router()
        self.client.schedule_router(router["id"])
        _wait(lambda: self.db.get_router(router["id"])["agent_host"])
        host = self.db.get_router(router["id"])["agent_host"]
        gen = next(a["lease_generation"] for a in self.db.agent_health()
                   if a["host"] == host)
        reply = self.client.host_fenced(host, gen, "agent down past restart_grace",
                                        timeout=5)
        self.assertEqual({"acknowledged": True, "moved": 1}, reply)
        moved = self.db.get_router(router["id"])
        self.assertNotEqual(host, moved["agent_host"])
        event = self.db.list_failover_events(router["id"])[0]
        self.assertEqual("agent_fenced", event["cause"])
        self.assertIsNotNone(event["fenced_at"])
        # The fenced agent's reports renew nothing until it registers again.
        self.assertEqual({"registered": False}, self.client.report_state(
            host, {"lease_generation": gen}, timeout=5))
        # A stale fence report (older generation) moves nothing.
        self.assertEqual({"acknowledged": True, "moved": 0},
                         self.client.host_fenced(host, gen, "late", timeout=5))

    def test_unknown_host_is_told_to_register(self):
        self.assertEqual({"registered": False},
                         self.client.report_state("stranger", {}, timeout=5))

    def test_bad_payloads_are_refused_and_change_nothing(self):
        self.client.register("node-1", "qr1-")
        bad = [
            ("register", {"host": "", "namespace_prefix": "p-"}, "host"),
            ("register", {"host": "h", "namespace_prefix": "bad prefix/"}, "namespace_prefix"),
            ("sync_routers", {"host": "h", "extra": 1}, "extra"),
            ("update_router_status", {"host": "node-1", "reports": {"not-a-uuid": {
                "status": "ACTIVE"}}}, "reports"),
            ("update_router_status", {"host": "node-1", "reports": {
                "5d7a0f3e-0000-4000-8000-000000000000": {"status": "GREAT"}}}, "status"),
        ]
        for method, kwargs, fragment in bad:
            client = self.client._client.prepare(timeout=5)
            exc = self.assertRaises(rpc.InvalidPayload, client.call, {}, method, **kwargs)
            self.assertIn(fragment, str(exc))
        self.assertEqual(["node-1"], [a["host"] for a in self.db.list_agents(3.0)])


def _wait(fetch, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


class AgentAPITest(base.DBTestCase):
    def test_router_view_is_what_agents_validate(self):
        import jsonschema
        router = self.make_router()
        jsonschema.validate({"routers": [rpc.agent_router_view(router)]},
                            rpc.SCHEMAS["routers_added"])



class _RecordingEndpoint:
    def __init__(self, max_clock_skew=0.0):
        self.calls = []
        self.max_clock_skew = max_clock_skew

    @rpc.validated("sync_routers")
    def sync_routers(self, ctxt, host):
        self.calls.append(host)
        return "done"


class CallDeadlineTest(testtools.TestCase):
    """rpc.validated refuses a call whose caller has stopped waiting for it."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.useFixture(fixtures.MockPatchObject(rpc, "LATE_CALLS", rpc.LateCallLog()))
        self.endpoint = _RecordingEndpoint()

    def test_a_clock_skew_up_to_max_clock_skew_refuses_nothing(self):
        # This server's clock runs 1.5 s ahead of the caller's: a fresh call
        # with a 1 s timeout looks 0.5 s late. Refusing it would refuse every
        # state report of that caller, and its node would fence.
        endpoint = _RecordingEndpoint(max_clock_skew=1.0)
        sent = time.time() - 1.5
        self.assertEqual("done", endpoint.sync_routers(rpc.call_context(1.0, now=sent),
                                                       host="node-1"))
        # A call later than the tolerance is still refused, and nothing runs.
        exc = self.assertRaises(oslo_messaging.ExpectedException, endpoint.sync_routers,
                                rpc.call_context(1.0, now=sent - 1.0), host="node-2")
        self.assertIs(rpc.CallExpired, exc.exc_info[0])
        self.assertEqual(["node-1"], endpoint.calls)
        # The operator hears of the late but accepted call.
        self.assertIn("sync_routers from host node-1 arrived 0.5", self.log.output)
        self.assertIn("within max_clock_skew 1.0s: processed", self.log.output)

    def test_expired_call_is_refused_and_nothing_runs(self):
        ctxt = rpc.call_context(1.0, now=time.time() - 3.0)
        exc = self.assertRaises(oslo_messaging.ExpectedException,
                                self.endpoint.sync_routers, ctxt, host="node-1")
        # ExpectedException carries the real one back to the caller.
        self.assertIs(rpc.CallExpired, exc.exc_info[0])
        self.assertEqual([], self.endpoint.calls)
        lines = [line for line in self.log.output.splitlines() if "refused" in line]
        self.assertEqual(1, len(lines), self.log.output)
        self.assertIn("sync_routers", lines[0])
        self.assertIn("node-1", lines[0])
        self.assertRegex(lines[0], r"2\.\d{3}s after")

    def test_fresh_call_runs(self):
        self.assertEqual("done", self.endpoint.sync_routers(rpc.call_context(5.0),
                                                            host="node-1"))
        self.assertEqual(["node-1"], self.endpoint.calls)

    def test_call_without_deadline_runs(self):
        # Older callers and casts send no deadline: processed as before.
        for ctxt in ({}, {"deadline": None}, {"deadline": "soon"}, {"deadline": True}):
            self.assertEqual("done", self.endpoint.sync_routers(ctxt, host="node-1"))
        self.assertEqual(["node-1"] * 4, self.endpoint.calls)

    def test_lateness(self):
        self.assertEqual(2.0, rpc.lateness({"deadline": 100.0}, now=102.0))
        self.assertEqual(-1.0, rpc.lateness({"deadline": 100}, now=99.0))
        self.assertIsNone(rpc.lateness({}, now=1.0))
        self.assertIsNone(rpc.lateness(None, now=1.0))


class SchedulerAPIDeadlineTest(base.DBTestCase):
    """Every SchedulerAPI call sends its deadline; the servers check it."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        conf = base.make_conf(transport_url="fake:///", host="sched-1")
        transport = rpc.get_transport(conf)
        self.addCleanup(transport.cleanup)
        dispatcher = dispatch.RouterDispatcher(self.db, base.RecordingAgentAPI(), 3.0)
        mon = monitor.HealthMonitor(self.db, dispatcher, host="sched-1",
                                    agent_down_time=3.0, check_interval=0.1,
                                    pending_retry_time=10)
        for topic, endpoint in (
                (rpc.SCHEDULER_TOPIC,
                 endpoints.SchedulerEndpoint(self.db, dispatcher, mon, 2.0)),
                (rpc.REPORTS_TOPIC, endpoints.ReportEndpoint(self.db, 2.0))):
            server = rpc.get_server(transport, topic, [endpoint], "sched-1")
            server.start()
            self.addCleanup(server.wait)
            self.addCleanup(server.stop)
        self.client = rpc.SchedulerAPI(transport, timeout=5)

    def _calls_arrive_late(self):
        # As if each call had waited 10 s in a queue: its deadline (5 s after
        # it was sent) lies 5 s in the past when the server gets it.
        real = rpc.call_context
        self.useFixture(fixtures.MockPatchObject(
            rpc, "call_context", lambda timeout: real(timeout, now=time.time() - 10)))

    def test_every_call_is_refused_once_its_caller_gave_up(self):
        gen = self.client.register("node-1", "qr1-")["lease_generation"]
        router = self.make_router()
        self._calls_arrive_late()
        calls = [
            lambda: self.client.register("node-1", "qr1-"),
            lambda: self.client.report_state("node-1", {"lease_generation": gen}, 5),
            lambda: self.client.renew_lease("node-1", gen, 5),
            lambda: self.client.host_fenced("node-1", gen, "late", 5),
            lambda: self.client.sync_routers("node-1"),
            lambda: self.client.update_router_status(
                "node-1", {router["id"]: {"status": "ERROR", "reason": "late"}}),
        ]
        for call in calls:
            self.assertRaises(rpc.CallExpired, call)
        [agent] = self.db.agent_health()
        self.assertEqual(gen, agent["lease_generation"])  # no second registration
        self.assertIsNone(agent["fenced_at"])
        self.assertNotEqual("ERROR", self.db.get_router(router["id"])["status"])


class CompiledValidationTest(testtools.TestCase):
    """rpc.validated checks each schema once, not on every message."""

    BAD = [
        ("report_state", {"host": "", "state": {}}),
        ("report_state", {"host": "h", "state": []}),
        ("report_state", {"host": "h"}),
        ("register", {"host": "h", "namespace_prefix": "bad prefix/"}),
        ("renew_lease", {"host": "h", "generation": 0}),
        ("update_router_status", {"host": "h", "reports": {"not-a-uuid": {
            "status": "ACTIVE"}}}),
        ("update_router_status", {"host": "h", "reports": {
            "5d7a0f3e-0000-4000-8000-000000000000": {"status": "GREAT"}}}),
        ("sync_routers", {"host": "h", "extra": 1}),
    ]

    def test_same_messages_as_jsonschema_validate(self):
        for name, payload in self.BAD:
            endpoint = _validating_endpoint(name)
            exc = self.assertRaises(oslo_messaging.ExpectedException, endpoint.handle,
                                    {}, **payload)
            refused = exc.exc_info[1]
            self.assertIsInstance(refused, rpc.InvalidPayload)
            # What the uncompiled check said for the same payload.
            try:
                jsonschema.validate(payload, rpc.SCHEMAS[name])
            except jsonschema.ValidationError as err:
                where = "/".join(str(p) for p in err.absolute_path) or "(message)"
                self.assertEqual(f"handle: {where}: {err.message}", str(refused))
            else:
                self.fail(f"{name} {payload} should be invalid")
            self.assertEqual([], endpoint.calls)

    def test_schema_is_not_rechecked_per_message(self):
        endpoint = _validating_endpoint("report_state")
        check = self.useFixture(fixtures.MockPatchObject(
            jsonschema.validators.validator_for(rpc.SCHEMAS["report_state"]),
            "check_schema")).mock
        for n in range(5):
            endpoint.handle({}, host="node-1", state={"routers": n})
        self.assertRaises(oslo_messaging.ExpectedException, endpoint.handle, {},
                          host="node-1", state="not an object")
        self.assertEqual(5, len(endpoint.calls))
        self.assertEqual(0, check.call_count)


def _validating_endpoint(schema_name):
    class Endpoint:
        max_clock_skew = 0.0

        def __init__(self):
            self.calls = []

        @rpc.validated(schema_name)
        def handle(self, ctxt, **kwargs):
            self.calls.append(kwargs)

    return Endpoint()


class _FakeTimer:
    def __init__(self, started, interval, fn):
        self.started = started
        self.interval = interval
        self.fn = fn
        self.daemon = False

    def start(self):
        self.started.append(self)


class ExpiredReportSheddingTest(testtools.TestCase):
    """Expired state reports are refused without a log line each."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.timers = []
        self.shed = rpc.ExpiredReportLog(
            interval=10.0, timer=lambda interval, fn: _FakeTimer(self.timers, interval, fn))
        self.useFixture(fixtures.MockPatchObject(rpc, "EXPIRED_REPORTS", self.shed))

        class Endpoint:
            calls = []
            max_clock_skew = 0.0

            @rpc.validated("report_state")
            def report_state(self, ctxt, host, state):
                self.calls.append(host)

        self.endpoint = Endpoint()

    def _warnings(self):
        return [line for line in self.log.output.splitlines() if "refused" in line]

    def _expired(self, n, host="node-1"):
        for i in range(n):
            exc = self.assertRaises(
                oslo_messaging.ExpectedException, self.endpoint.report_state,
                rpc.call_context(1.0, now=time.time() - 2.0 - i / 1000), host=host,
                state={})
            self.assertIs(rpc.CallExpired, exc.exc_info[0])

    def test_a_burst_logs_its_first_refusal_then_one_count_per_interval(self):
        self._expired(50)
        self._expired(10, host="node-2")
        self.assertEqual([], self.endpoint.calls)
        self.assertEqual(1, len(self._warnings()), self.log.output)
        self.assertIn("report_state from host node-1 refused", self._warnings()[0])
        self.assertEqual(1, len(self.timers))
        self.timers[0].fn()  # the interval has passed
        self.assertEqual(2, len(self._warnings()))
        self.assertIn("59 more expired state report(s) or lease renewal(s) from 2 host(s)",
                      self._warnings()[1])
        # Still refusing: counted again; a quiet interval ends the burst.
        self._expired(3)
        self.timers[1].fn()
        self.assertIn("3 more expired", self._warnings()[2])
        self.timers[2].fn()
        self.assertEqual(3, len(self._warnings()))
        self.assertEqual(3, len(self.timers))
        # The next burst is reported at once.
        self._expired(1, host="node-3")
        self.assertIn("from host node-3 refused", self._warnings()[3])

    def test_other_methods_log_each_refusal(self):
        endpoint = _RecordingEndpoint()
        for _ in range(3):
            self.assertRaises(oslo_messaging.ExpectedException, endpoint.sync_routers,
                              rpc.call_context(1.0, now=time.time() - 5), host="node-1")
        self.assertEqual(3, len(self._warnings()))
        self.assertEqual([], self.timers)


class BrokerHostsTest(testtools.TestCase):
    """A transport_url naming several brokers, as a cluster's does."""

    def setUp(self):
        super().setUp()
        import socket
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.addCleanup(self.listener.close)
        self.open_port = self.listener.getsockname()[1]
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there now: connections are refused
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))

    def url(self, *ports):
        return "rabbit://" + ",".join(f"g:g@127.0.0.1:{p}" for p in ports) + "/"

    def test_an_unreachable_host_is_named_once_and_the_others_used(self):
        conf = base.make_conf(transport_url=self.url(self.closed_port, self.open_port))
        rpc.check_broker(conf, timeout=1)
        lines = [line for line in self.log.output.splitlines() if "unreachable" in line]
        self.assertEqual(1, len(lines), self.log.output)
        self.assertIn(f"127.0.0.1:{self.closed_port}", lines[0])
        self.assertIn("using the other 1 host(s)", lines[0])

    def test_every_host_unreachable_is_an_error_naming_them(self):
        conf = base.make_conf(transport_url=self.url(self.closed_port, self.closed_port))
        exc = self.assertRaises(rpc.BrokerUnreachable, rpc.check_broker, conf, timeout=1)
        self.assertEqual(2, str(exc).count(f"127.0.0.1:{self.closed_port}"))

    def test_rabbit_options_come_from_the_service_own_configuration(self):
        """[oslo_messaging_rabbit] of the service's file reaches the driver
        (oslo.messaging is given the service's ConfigOpts, never cfg.CONF)."""
        conf = base.make_conf(transport_url=self.url(self.closed_port),
                              oslo_messaging_rabbit__rabbit_quorum_queue=True,
                              oslo_messaging_rabbit__heartbeat_timeout_threshold=6,
                              oslo_messaging_rabbit__rabbit_retry_interval=1)
        transport = rpc.get_transport(conf)
        self.addCleanup(transport.cleanup)
        driver_conf = transport._driver.conf.oslo_messaging_rabbit
        self.assertTrue(driver_conf.rabbit_quorum_queue)
        self.assertEqual(6, driver_conf.heartbeat_timeout_threshold)
        self.assertEqual(1, driver_conf.rabbit_retry_interval)
        self.assertFalse(oslo_messaging_rabbit_global_quorum())

    def test_clouddisco_rabbit_defaults_are_what_was_measured(self):
        """A service's own ConfigOpts carries clouddisco's [oslo_messaging_rabbit]
        defaults (not oslo.messaging's: kombu_reconnect_delay 1 s stalled calls
        7-8 s after a cluster node crashed), and a file still overrides them."""
        conf = base.make_conf()
        rabbit = conf.oslo_messaging_rabbit
        self.assertEqual(0.0, rabbit.kombu_reconnect_delay)
        self.assertEqual(1, rabbit.rabbit_interval_max)
        self.assertEqual("shuffle", rabbit.kombu_failover_strategy)
        conf = base.make_conf(oslo_messaging_rabbit__kombu_reconnect_delay=2.0)
        self.assertEqual(2.0, conf.oslo_messaging_rabbit.kombu_reconnect_delay)


def oslo_messaging_rabbit_global_quorum():
    """The global cfg.CONF's value, if oslo.messaging ever registered it there."""
    from oslo_config import cfg
    try:
        return cfg.CONF.oslo_messaging_rabbit.rabbit_quorum_queue
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        return False
