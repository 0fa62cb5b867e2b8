"""State reports over HTTP: the API endpoint, the agent's hedged fallback to
it, and the node guard's renewals through it. SQLite, in process; the HTTP
client talks to the real WSGI stack through a stub transport."""

import json
import threading
import time

import fixtures
import testtools
import webob

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco.agent import reporter
from clouddisco.api import app as api_app
from clouddisco.cleanup import guard as guard_mod
from clouddisco.drivers import fake
from tests.unit import base

KEY = "s3cret"
HOST = "node-1"


class AgentReportsAPITest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.conf = base.make_conf(health__report_key=KEY)
        self.app = api_app.deploy(self.conf, db=self.db,
                                  scheduler=base.RecordingSchedulerAPI())
        self.agent = self.db.register_agent(HOST, "qr-")

    def post(self, report, key=KEY, raw=None):
        body = raw if raw is not None else json.dumps(report).encode()
        req = webob.Request.blank(heartbeat.HTTP_PATH, method="POST")
        req.body = body
        req.content_type = "application/json"
        if key:
            req.headers[heartbeat.SIGNATURE_HEADER] = heartbeat.sign(key, body)
        return req.get_response(self.app)

    def report(self, generation=1, guard="ok"):
        return {"host": HOST, "state": {"lease_generation": generation, "guard": guard}}

    def test_signed_report_renews_like_an_rpc_report(self):
        before = self.db.agent_health()[0]["heartbeat_at"]
        time.sleep(0.01)
        resp = self.post(self.report())
        self.assertEqual(200, resp.status_int, resp.text)
        self.assertEqual({"registered": True, "lease_generation": 1,
                          "lease_time": self.conf.health.lease_time}, resp.json)
        agent = self.db.agent_health()[0]
        self.assertGreater(agent["heartbeat_at"], before)
        self.assertEqual("ok", self.db.get_agent(self.agent["id"], 3.0)["guard_status"])

    def test_superseded_generation_renews_nothing(self):
        resp = self.post(self.report(generation=7))
        self.assertEqual({"registered": False}, resp.json)

    def test_unsigned_or_wrongly_signed_report_is_refused(self):
        self.assertEqual(401, self.post(self.report(), key=None).status_int)
        self.assertEqual(401, self.post(self.report(), key="guess").status_int)

    def test_disabled_without_a_key(self):
        self.conf.set_override("report_key", None, "health")
        resp = self.post(self.report())
        self.assertEqual(404, resp.status_int)
        self.assertIn("report_key", resp.json["error"]["message"])

    def test_bad_body_is_a_400_naming_the_field(self):
        resp = self.post({"host": HOST, "state": {"lease_generation": "one"}})
        self.assertEqual(400, resp.status_int)
        self.assertEqual("state.lease_generation", resp.json["error"]["field"])
        self.assertEqual(400, self.post(None, raw=b"{not json").status_int)


class WsgiHttpReporter(heartbeat.HttpReporter):
    """HttpReporter whose requests reach a WSGI app in process (or fail)."""

    def __init__(self, app):
        super().__init__(["http://api"], KEY)
        self.app = app
        self.down = False
        self.calls = 0

    def _post(self, path, payload, timeout):
        self.calls += 1
        if self.down:
            raise ConnectionError("no API replica took the report")
        body = json.dumps(payload).encode()
        req = webob.Request.blank(path, method="POST")
        req.body = body
        req.content_type = "application/json"
        req.headers[heartbeat.SIGNATURE_HEADER] = heartbeat.sign(KEY, body)
        return req.get_response(self.app).json


class SilentScheduler:
    """An RPC path that registers, then stops answering reports (a broker or
    scheduler outage), until ``answering`` is set."""

    def __init__(self, db):
        self.db = db
        self.answering = threading.Event()
        self.answering.set()

    def register(self, host, prefix, timeout=None, registration_id=None):
        agent = self.db.register_agent(host, prefix)
        return {"agent_id": agent["id"], "lease_generation": agent["lease_generation"],
                "lease_time": 2.0}

    def report_state(self, host, state, timeout):
        if not self.answering.is_set():
            # A call sent into the outage never gets an answer, even if the
            # outage ends while it waits.
            time.sleep(timeout)
            raise TimeoutError("no answer")
        return heartbeat.receive(self.db, host, state, 2.0)

    def renew_lease(self, host, generation, timeout):
        if not self.answering.is_set():
            time.sleep(timeout)
            raise TimeoutError("no answer")
        return {"granted": True, "lease_time": 2.0}

    def host_fenced(self, host, generation, reason, timeout):
        if not self.answering.is_set():
            time.sleep(timeout)
            raise TimeoutError("no answer")
        self.db.fence_agent(host, generation)
        return {"acknowledged": True, "moved": 0}


class HedgedReportTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        conf = base.make_conf(health__report_key=KEY)
        app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())
        self.http = WsgiHttpReporter(app)
        self.scheduler = SilentScheduler(self.db)
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.resyncs = []
        self.reporter = reporter.StateReporter(
            HOST, "qr-", self.scheduler, interval=1.0, state_dir=self.state_dir,
            on_connected=lambda: self.resyncs.append(True),
            state=lambda: {"guard": "ok"}, http=self.http)
        self.addCleanup(self.reporter.stop)

    def expires(self):
        return lease.read(self.state_dir, HOST, lease.AGENT).expires

    def test_rpc_outage_renews_the_lease_over_http(self):
        self.assertTrue(self.reporter.report_once())  # registers over RPC
        self.scheduler.answering.clear()
        before = self.expires()
        self.assertTrue(self.reporter.report_once())
        self.assertGreater(self.expires(), before, "the HTTP answer renewed nothing")
        self.assertEqual(1, self.http.calls)
        # RPC back: the agent resyncs (casts may have been lost meanwhile).
        self.scheduler.answering.set()
        self.assertTrue(self.reporter.report_once())
        self.assertEqual([True, True], self.resyncs)

    def test_both_paths_down_renews_nothing(self):
        self.assertTrue(self.reporter.report_once())
        self.scheduler.answering.clear()
        self.http.down = True
        before = self.expires()
        self.assertFalse(self.reporter.report_once())
        self.assertEqual(before, self.expires())

    def test_prompt_rpc_answer_sends_nothing_over_http(self):
        self.reporter.report_once()
        self.reporter.report_once()
        self.assertEqual(0, self.http.calls)


class GuardRenewalOverHttpTest(base.DBTestCase):
    def test_agent_restart_during_an_rpc_outage_keeps_the_lease(self):
        conf = base.make_conf(health__report_key=KEY)
        app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())
        http = WsgiHttpReporter(app)
        scheduler = SilentScheduler(self.db)
        scheduler.answering.clear()
        self.db.register_agent(HOST, "qr-")
        state_dir = self.useFixture(fixtures.TempDir()).path
        driver = fake.FakeRouterDriver("qr-", "br-ex")
        node_guard = guard_mod.NodeGuard(HOST, driver, scheduler, state_dir=state_dir,
                                         restart_grace=5.0, renew_interval=0.3,
                                         rpc_timeout=1.0, http=http)
        self.addCleanup(node_guard.close)
        now = time.monotonic()
        lease.write(state_dir, lease.Lease(host=HOST, generation=1, expires=now + 2,
                                           renewed_at=now, pid=999_999), lease.AGENT)
        lease.write_pid(state_dir, HOST, 999_999)  # the agent is restarting
        self.assertEqual("renewal sent", node_guard.tick(now + 0.5))
        self.assertTrue(node_guard.rpc_idle(10))
        node_guard.tick(now + 0.6)
        self.assertEqual(1, http.calls)
        self.assertAlmostEqual(now + 2.5, lease.read(state_dir, HOST, lease.NODE).expires,
                               places=3)


class FenceOverHttpTest(base.DBTestCase):
    """A fence the broker cannot carry is recorded through the API: the
    monitors then move the routers, and the API stops showing them ACTIVE on
    the fenced node, without waiting for the broker."""

    def setUp(self):
        super().setUp()
        self.conf = base.make_conf(health__report_key=KEY)
        self.app = api_app.deploy(self.conf, db=self.db,
                                  scheduler=base.RecordingSchedulerAPI())
        self.agent = self.db.register_agent(HOST, "qr-")

    def post(self, fence, key=KEY):
        body = json.dumps(fence).encode()
        req = webob.Request.blank(heartbeat.HTTP_FENCE_PATH, method="POST")
        req.body = body
        req.content_type = "application/json"
        if key:
            req.headers[heartbeat.SIGNATURE_HEADER] = heartbeat.sign(key, body)
        return req.get_response(self.app)

    def fenced_at(self):
        return self.db.get_agent(self.agent["id"], 3.0)["fenced_at"]

    def test_signed_fence_is_recorded(self):
        resp = self.post({"host": HOST, "generation": 1, "reason": "lease expired"})
        self.assertEqual(200, resp.status_int, resp.text)
        self.assertEqual({"acknowledged": True, "moved": None}, resp.json)
        agent = self.db.get_agent(self.agent["id"], 3.0)
        self.assertIsNotNone(agent["fenced_at"])
        # Dead from now on: the monitors move its routers at their next pass.
        self.assertIsNotNone(agent["dead_since"])
        self.assertFalse(agent["alive"])

    def test_stale_generation_changes_nothing(self):
        resp = self.post({"host": HOST, "generation": 7, "reason": "old"})
        self.assertEqual({"acknowledged": True, "moved": 0}, resp.json)
        self.assertIsNone(self.fenced_at())

    def test_unsigned_or_bad_fence_is_refused(self):
        fence = {"host": HOST, "generation": 1, "reason": "x"}
        self.assertEqual(401, self.post(fence, key=None).status_int)
        resp = self.post({"host": HOST, "generation": "one", "reason": "x"})
        self.assertEqual(400, resp.status_int)
        self.assertEqual("generation", resp.json["error"]["field"])
        self.assertIsNone(self.fenced_at())

    def test_guard_reports_its_fence_over_http_when_rpc_is_down(self):
        scheduler = SilentScheduler(self.db)
        scheduler.answering.clear()
        http = WsgiHttpReporter(self.app)
        state_dir = self.useFixture(fixtures.TempDir()).path
        driver = fake.FakeRouterDriver("qr-", "br-ex")
        node_guard = guard_mod.NodeGuard(HOST, driver, scheduler, state_dir=state_dir,
                                         restart_grace=5.0, renew_interval=0.3,
                                         rpc_timeout=1.0, http=http)
        self.addCleanup(node_guard.close)
        now = time.monotonic()
        lease.write(state_dir, lease.Lease(host=HOST, generation=1, expires=now - 0.1,
                                           renewed_at=now - 2.1, pid=999_999), lease.AGENT)
        self.assertEqual("fenced", node_guard.tick(now))
        self.assertTrue(node_guard.rpc_idle(10))
        node_guard.tick(now + 0.1)
        self.assertIsNone(node_guard.unreported_fence)
        self.assertIsNotNone(self.fenced_at())


class ConfigTest(testtools.TestCase):
    def test_endpoints_need_a_key(self):
        from clouddisco import conf as cd_conf
        conf = base.make_conf(agent__report_endpoints=["http://api:9797"])
        self.assertRaises(cd_conf.ConfigError, cd_conf.check, conf, ["agent"])
        conf = base.make_conf(agent__report_endpoints=["ftp://api"],
                              health__report_key=KEY)
        self.assertRaises(cd_conf.ConfigError, cd_conf.check, conf, ["agent"])
