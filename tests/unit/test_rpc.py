"""RPC wiring over oslo.messaging's in-process fake:// transport."""

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
        self.assertEqual({"registered": True, "agent_id": reply["agent_id"],
                          "lease_generation": 1, "lease_time": 2.0}, report)
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

