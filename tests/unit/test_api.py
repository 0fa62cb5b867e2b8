"""The API through its real middleware stack, in process, on SQLite."""

import json

import testtools
import webob

from clouddisco.api import app as api_app
from tests.unit import base

ADMIN = {"X-Project-Id": "p1", "X-Roles": "admin,member"}
MEMBER = {"X-Project-Id": "p2", "X-Roles": "member"}


class APITest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.conf = base.make_conf(api__external_cidr="10.250.0.0/29",
                                   api__external_reserved_ips=["10.250.0.1"])
        self.scheduler = base.RecordingSchedulerAPI()
        self.app = api_app.deploy(self.conf, db=self.db, scheduler=self.scheduler)

    def request(self, method, path, body=None, headers=ADMIN, raw=None,
                content_type="application/json"):
        req = webob.Request.blank(path, method=method, headers=headers)
        if body is not None or raw is not None:
            req.body = raw if raw is not None else json.dumps(body).encode()
            req.content_type = content_type
        resp = req.get_response(self.app)
        if resp.status_int != 204:
            self.assertEqual("application/json", resp.content_type)
        return resp

    def assertError(self, resp, status, field=None, contains=""):
        self.assertEqual(status, resp.status_int, resp.text)
        error = resp.json["error"]
        self.assertEqual(status, error["status"])
        self.assertIn(contains, error["message"])
        self.assertTrue(error["request_id"].startswith("req-"))
        if field is not None:
            self.assertEqual(field, error.get("field"))

    # -------------------------------------------------------------- routers

    def test_create_allocates_first_free_address_and_casts(self):
        resp = self.request("POST", "/v1/routers", {"name": "r1"})
        self.assertEqual(201, resp.status_int)
        router = resp.json["router"]
        self.assertEqual("10.250.0.2", router["external_gateway_ip"])  # .1 reserved
        self.assertEqual(29, router["external_gateway_prefixlen"])
        self.assertEqual("PENDING", router["status"])
        self.assertEqual("p1", router["project_id"])
        self.assertRegex(router["external_gateway_mac"], "^fa:16:3e(:[0-9a-f]{2}){3}$")
        self.assertEqual([router["id"]], self.scheduler.scheduled)
        self.assertTrue(resp.location.endswith(f"/v1/routers/{router['id']}"))

    def test_requested_address(self):
        resp = self.request("POST", "/v1/routers",
                            {"name": "r", "external_gateway_ip": "10.250.0.5"})
        self.assertEqual("10.250.0.5", resp.json["router"]["external_gateway_ip"])
        again = self.request("POST", "/v1/routers",
                             {"name": "r", "external_gateway_ip": "10.250.0.5"})
        self.assertError(again, 409, contains="already in use")

    def test_requested_address_outside_cidr_or_reserved(self):
        self.assertError(self.request("POST", "/v1/routers",
                                      {"name": "r", "external_gateway_ip": "10.9.0.5"}),
                         400, field="external_gateway_ip", contains="10.250.0.0/29")
        self.assertError(self.request("POST", "/v1/routers",
                                      {"name": "r", "external_gateway_ip": "10.250.0.7"}),
                         400, field="external_gateway_ip")  # broadcast
        self.assertError(self.request("POST", "/v1/routers",
                                      {"name": "r", "external_gateway_ip": "10.250.0.1"}),
                         409, contains="reserved")

    def test_pool_exhausted_is_409(self):
        for _ in range(5):  # .2 .. .6
            self.assertEqual(201, self.request("POST", "/v1/routers", {"name": "r"}).status_int)
        self.assertError(self.request("POST", "/v1/routers", {"name": "r"}), 409,
                         contains="no free gateway address")

    def test_bad_bodies_name_the_field(self):
        cases = [
            ({}, "name", "missing required field"),
            ({"name": 5}, "name", "invalid name"),
            ({"name": "x" * 256}, "name", "invalid name"),
            ({"name": "r", "colour": "red"}, "colour", "unknown field"),
            ({"name": "r", "ha": "yes"}, "ha", "invalid ha"),
            ({"name": "r", "external_gateway_ip": "10.250.0.300"}, "external_gateway_ip",
             "invalid external_gateway_ip"),
            ([1, 2], None, "invalid body"),
        ]
        for body, field, message in cases:
            self.assertError(self.request("POST", "/v1/routers", body), 400, field, message)
        self.assertError(self.request("POST", "/v1/routers", raw=b"{nope"), 400,
                         contains="not valid JSON")
        self.assertError(self.request("POST", "/v1/routers", raw=b"\xff\xfe"), 400,
                         contains="not valid JSON")
        self.assertError(self.request("POST", "/v1/routers", raw=b"{}",
                                      content_type="text/plain"), 415)
        # Nothing was stored by any of these.
        self.assertEqual([], self.request("GET", "/v1/routers").json["routers"])

    def test_show_list_delete_and_project_scope(self):
        mine = self.request("POST", "/v1/routers", {"name": "m"}, headers=MEMBER).json["router"]
        theirs = self.request("POST", "/v1/routers", {"name": "t"}).json["router"]
        listed = self.request("GET", "/v1/routers", headers=MEMBER).json["routers"]
        self.assertEqual([mine["id"]], [r["id"] for r in listed])
        self.assertEqual(2, len(self.request("GET", "/v1/routers").json["routers"]))
        self.assertError(self.request("GET", f"/v1/routers/{theirs['id']}", headers=MEMBER),
                         404)
        self.assertError(self.request("DELETE", f"/v1/routers/{theirs['id']}",
                                      headers=MEMBER), 404)
        shown = self.request("GET", f"/v1/routers/{mine['id']}/", headers=MEMBER)
        self.assertEqual(mine["id"], shown.json["router"]["id"])
        # Where a router runs is for admins (clouddisco:router:show:infrastructure).
        self.assertNotIn("agent_id", shown.json["router"])
        resp = self.request("DELETE", f"/v1/routers/{mine['id']}", headers=MEMBER)
        self.assertEqual(204, resp.status_int)
        self.assertEqual([mine["id"]], self.scheduler.deleted)
        self.assertEqual("DELETING", self.request(
            "GET", f"/v1/routers/{mine['id']}", headers=MEMBER).json["router"]["status"])

    def test_active_router_on_a_lapsed_node_is_shown_down(self):
        rid = self.request("POST", "/v1/routers", {"name": "r"}).json["router"]["id"]
        agent = self.db.register_agent("h1", "p-")
        self.assertTrue(self.db.bind_router(rid, agent["id"]))
        self.db.apply_router_reports("h1", {rid: ("ACTIVE", None)})

        def shown():
            one = self.request("GET", f"/v1/routers/{rid}").json["router"]
            [listed] = self.request("GET", "/v1/routers").json["routers"]
            # The two reads are moments apart: the silence they quote may differ.
            self.assertEqual(dict(one, status_reason=None), dict(listed, status_reason=None))
            return one["status"], one["status_reason"]

        self.assertEqual(("ACTIVE", None), shown())
        # Silent for longer than lease_time (2 s): the guard may have removed it.
        self.age_heartbeat("h1", 2.4)
        status, reason = shown()
        self.assertEqual("DOWN", status)
        self.assertRegex(reason, r"^agent h1 has not reported for 2\.\d+s \(lease_time 2\.0s\)")
        self.assertIn("removed on the node", reason)
        # Declared dead, then fenced: still DOWN, with why.
        self.db.mark_dead_agents(2.0)
        self.assertIn("declared dead", shown()[1])
        self.db.fence_agent("h1", agent["lease_generation"])
        self.assertIn("fenced its node", shown()[1])
        # What is stored does not change.
        self.assertEqual("ACTIVE", self.db.get_router(rid)["status"])
        # A router still being built is not shown DOWN: only ACTIVE is a claim.
        self.db.register_agent("h1", "p-")
        self.db.apply_router_reports("h1", {rid: ("ERROR", "boom")})
        self.age_heartbeat("h1", 2.4)
        self.assertEqual(("ERROR", "boom"), shown())

    def test_unknown_and_malformed_ids_are_404(self):
        self.assertError(self.request("GET", "/v1/routers/not-a-uuid"), 404)
        self.assertError(self.request(
            "GET", "/v1/routers/5d7a0f3e-0000-4000-8000-000000000000"), 404)
        self.assertError(self.request(
            "PUT", "/v1/agents/5d7a0f3e-0000-4000-8000-000000000000",
            {"admin_state_up": False}), 404)
        self.assertError(self.request("GET", "/v2/routers"), 404)

    def test_wrong_method_is_405_with_allow(self):
        resp = self.request("PATCH", "/v1/routers")
        self.assertError(resp, 405)
        self.assertEqual("GET, POST", resp.headers["Allow"])

    def test_limit_is_checked(self):
        self.assertError(self.request("GET", "/v1/routers?limit=0"), 400, "limit")
        self.assertError(self.request("GET", "/v1/routers?limit=abc"), 400, "limit")
        for _ in range(3):
            self.request("POST", "/v1/routers", {"name": "r"})
        self.assertEqual(2, len(self.request("GET", "/v1/routers?limit=2").json["routers"]))

    # --------------------------------------------------------------- agents

    def test_agents_admin_state(self):
        agent_id = self.db.register_agent("h1", "p-")["id"]
        agents = self.request("GET", "/v1/agents").json["agents"]
        self.assertEqual([("h1", True, True, 0)], [
            (a["host"], a["alive"], a["admin_state_up"], a["router_count"]) for a in agents])
        resp = self.request("PUT", f"/v1/agents/{agent_id}", {"admin_state_up": False})
        self.assertEqual(200, resp.status_int)
        self.assertFalse(resp.json["agent"]["admin_state_up"])
        self.assertError(self.request("PUT", f"/v1/agents/{agent_id}", {"admin_state_up": 1}),
                         400, "admin_state_up")
        self.assertError(self.request("PUT", f"/v1/agents/{agent_id}", {}), 400,
                         "admin_state_up")

    def test_agents_show_the_node_guard_status(self):
        agent_id = self.db.register_agent("h1", "p-")["id"]
        self.assertIsNone(self.request("GET", "/v1/agents").json["agents"][0]["guard_status"])
        self.db.record_heartbeat("h1", guard_status="missing")
        self.assertEqual("missing",
                         self.request("GET", "/v1/agents").json["agents"][0]["guard_status"])
        self.assertEqual("missing", self.request(
            "GET", f"/v1/agents/{agent_id}").json["agent"]["guard_status"])

    def test_admin_only_resources(self):
        for path in ("/v1/agents", "/v1/failover-events"):
            self.assertError(self.request("GET", path, headers=MEMBER), 403)

    def test_failover_events_filter(self):
        self.assertEqual([], self.request("GET", "/v1/failover-events").json["failover_events"])
        self.assertError(self.request("GET", "/v1/failover-events?router_id=x"), 404)

    # ----------------------------------------------------------------- auth

    def test_project_header_required(self):
        self.assertError(self.request("GET", "/v1/routers", headers={}), 401,
                         contains="X-Project-Id")
        self.assertEqual(200, self.request("GET", "/", headers={}).status_int)

    def test_unexpected_error_is_json_500_without_details(self):
        def boom(*a, **kw):
            raise RuntimeError("secret detail")
        self.db.list_routers = boom
        resp = self.request("GET", "/v1/routers")
        self.assertError(resp, 500, contains="request id")
        self.assertNotIn("secret", resp.text)


class LogContextTest(testtools.TestCase):
    """Every request is logged under its own request id, signed agent reports
    (which carry no identity) included."""

    def test_a_public_path_does_not_inherit_the_previous_request_id(self):
        from oslo_context import context
        from oslo_middleware import request_id

        from clouddisco import heartbeat
        from clouddisco.api import auth

        seen = []

        def app(environ, start_response):
            seen.append((environ["openstack.request_id"], context.get_current().request_id))
            start_response("200 OK", [])
            return [b""]

        stack = request_id.RequestId(auth.NoAuthContext(app))
        for path, headers in (("/v1/routers", ADMIN), (heartbeat.HTTP_PATH, {})):
            webob.Request.blank(path, headers=headers).get_response(stack)
        self.assertEqual(2, len(seen))
        self.assertNotEqual(seen[0][0], seen[1][0])
        for own, logged in seen:
            self.assertEqual(own, logged)


class DatabaseDownTest(testtools.TestCase):
    """Nothing listens where the database should be: 503, not 500."""

    def test_requests_get_503_with_retry_after(self):
        from clouddisco.db import api as db_api
        conf = base.make_conf()
        db = db_api.Database("mysql+pymysql://nobody@127.0.0.1:1/clouddisco",
                             max_retries=0)
        app = api_app.deploy(conf, db=db, scheduler=base.RecordingSchedulerAPI())
        for method, path, body in (("GET", "/v1/routers", None),
                                   ("POST", "/v1/routers", {"name": "r"})):
            req = webob.Request.blank(path, method=method, headers=ADMIN)
            if body is not None:
                req.body = json.dumps(body).encode()
                req.content_type = "application/json"
            resp = req.get_response(app)
            self.assertEqual(503, resp.status_int, resp.text)
            self.assertEqual("5", resp.headers["Retry-After"])
            self.assertIn("database is unavailable", resp.json["error"]["message"])
