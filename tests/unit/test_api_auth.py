"""Authentication, policy and the middleware pipeline of the API, in process.

Keystone's answers are faked here with keystonemiddleware's AuthTokenFixture
(tokens validated by a patched fetch_token); tests/functional/
test_keystone_auth.py does the same against a real Keystone.
"""

import datetime
import json
import os
import subprocess
import sys
import uuid

import fixtures
import testtools
import webob
import webob.exc
from keystonemiddleware import auth_token
from keystonemiddleware import fixture as ksm_fixture

from clouddisco.api import app as api_app
from clouddisco.policies import routers as router_rules
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ADMIN = {"X-Project-Id": "p-admin", "X-Roles": "admin"}
DEMO = {"X-Project-Id": "p-demo", "X-Roles": "member"}
ALT = {"X-Project-Id": "p-alt", "X-Roles": "member"}
READER = {"X-Project-Id": "p-demo", "X-Roles": "reader"}


class _APICase(base.DBTestCase):
    strategy = "noauth"

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def deploy(self, **overrides):
        overrides.setdefault("api__auth_strategy", self.strategy)
        overrides.setdefault("api__external_cidr", "10.250.0.0/24")
        self.conf = base.make_conf(**overrides)
        self.scheduler = base.RecordingSchedulerAPI()
        self.app = api_app.deploy(self.conf, db=self.db, scheduler=self.scheduler)
        return self.app

    def request(self, method, path, headers, body=None, raw=None, **kw):
        req = webob.Request.blank(path, method=method, headers=headers, **kw)
        if body is not None or raw is not None:
            req.body = raw if raw is not None else json.dumps(body).encode()
            req.content_type = "application/json"
        return req.get_response(self.app)

    def assertError(self, resp, status, contains=""):
        self.assertEqual(status, resp.status_int, resp.text)
        self.assertEqual("application/json", resp.content_type)
        error = resp.json["error"]
        self.assertEqual(status, error["status"])
        self.assertIn(contains, error["message"])
        self.assertEqual(resp.headers["x-openstack-request-id"], error["request_id"])
        return error["message"]

    def create(self, headers, name="r"):
        resp = self.request("POST", "/v1/routers", headers, {"name": name})
        self.assertEqual(201, resp.status_int, resp.text)
        return resp.json["router"]


class PolicyTest(_APICase):
    """The default rules, through noauth's headers."""

    def setUp(self):
        super().setUp()
        self.deploy()

    def test_another_projects_router_is_404_not_403(self):
        mine = self.create(DEMO)
        for method, body in (("GET", None), ("DELETE", None), ("PUT", {"name": "x"})):
            resp = self.request(method, f"/v1/routers/{mine['id']}", ALT, body)
            self.assertError(resp, 404, f"router {mine['id']} not found")
        # Same answer as for a router that does not exist at all.
        ghost = "1b0f8a54-54a5-4a8f-9a8b-1f2a3c4d5e6f"
        self.assertError(self.request("GET", f"/v1/routers/{ghost}", ALT), 404,
                         f"router {ghost} not found")
        self.assertEqual([], self.request("GET", "/v1/routers", ALT).json["routers"])
        # Untouched by all of that.
        self.assertEqual("PENDING", self.request(
            "GET", f"/v1/routers/{mine['id']}", DEMO).json["router"]["status"])
        self.assertEqual([], self.scheduler.deleted)

    def test_reader_sees_but_does_not_change(self):
        mine = self.create(DEMO)
        self.assertEqual(200, self.request("GET", f"/v1/routers/{mine['id']}",
                                           READER).status_int)
        message = self.assertError(self.request("DELETE", f"/v1/routers/{mine['id']}",
                                                READER), 403)
        self.assertIn("deleting a router is not allowed", message)
        self.assertIn("clouddisco:router:delete", message)
        self.assertError(self.request("POST", "/v1/routers", READER, {"name": "r"}), 403,
                         "creating a router is not allowed")

    def test_agents_and_failover_events_are_admin_only(self):
        agent = self.db.register_agent("h1", "p-")
        for path, what in (("/v1/agents", "listing agents"),
                           (f"/v1/agents/{agent['id']}", "showing an agent"),
                           ("/v1/failover-events", "listing failover events")):
            message = self.assertError(self.request("GET", path, DEMO), 403, what)
            self.assertIn("roles: member, reader", message)
            self.assertEqual(200, self.request("GET", path, ADMIN).status_int)
        self.assertError(self.request("PUT", f"/v1/agents/{agent['id']}", DEMO,
                                      {"admin_state_up": False}), 403,
                         "changing an agent is not allowed")

    def test_admin_sees_every_project_and_filters(self):
        demo = self.create(DEMO, "d")
        alt = self.create(ALT, "a")
        listed = self.request("GET", "/v1/routers", ADMIN).json["routers"]
        self.assertEqual({demo["id"], alt["id"]}, {r["id"] for r in listed})
        only = self.request("GET", "/v1/routers?project_id=p-alt", ADMIN).json["routers"]
        self.assertEqual([alt["id"]], [r["id"] for r in only])
        self.assertEqual(200, self.request("GET", f"/v1/routers/{demo['id']}",
                                           ADMIN).status_int)
        # A member may name its own project, not another.
        own = self.request("GET", "/v1/routers?project_id=p-demo", DEMO).json["routers"]
        self.assertEqual([demo["id"]], [r["id"] for r in own])
        self.assertError(self.request("GET", "/v1/routers?project_id=p-alt", DEMO), 403,
                         "listing the routers of another project is not allowed")

    def test_infrastructure_fields_for_admins_only(self):
        rid = self.create(DEMO)["id"]
        agent = self.db.register_agent("h1", "p-")
        self.assertTrue(self.db.bind_router(rid, agent["id"]))
        for headers, shown in ((ADMIN, True), (DEMO, False)):
            one = self.request("GET", f"/v1/routers/{rid}", headers).json["router"]
            [listed] = self.request("GET", "/v1/routers", headers).json["routers"]
            for router in (one, listed):
                for field in router_rules.INFRASTRUCTURE_FIELDS:
                    self.assertEqual(shown, field in router, (headers, field))
            if shown:
                self.assertEqual(("h1", agent["id"]), (one["agent_host"], one["agent_id"]))
        created = self.request("POST", "/v1/routers", DEMO, {"name": "x"}).json["router"]
        self.assertNotIn("agent_host", created)

    def test_status_reason_names_the_host_to_admins_only(self):
        rid = self.create(DEMO)["id"]
        agent = self.db.register_agent("h1", "p-")
        self.assertTrue(self.db.bind_router(rid, agent["id"]))
        self.db.apply_router_reports("h1", {rid: ("ACTIVE", None)})
        self.assertIsNotNone(self.db.fence_agent("h1", agent["lease_generation"]))
        for headers, shown in ((ADMIN, True), (DEMO, False)):
            one = self.request("GET", f"/v1/routers/{rid}", headers).json["router"]
            [listed] = self.request("GET", "/v1/routers", headers).json["routers"]
            for router in (one, listed):
                self.assertEqual("DOWN", router["status"])
                self.assertIn("fenced its node", router["status_reason"])
                self.assertEqual(shown, "h1" in router["status_reason"],
                                 (headers, router["status_reason"]))

    def test_policy_file_overrides_a_default(self):
        path = os.path.join(self.tmp, "policy.yaml")
        with open(path, "w") as f:
            f.write('"clouddisco:router:show:infrastructure": "role:member"\n'
                    '"clouddisco:agent:list": "role:member"\n')
        self.deploy(oslo_policy__policy_file=path)
        rid = self.create(DEMO)["id"]
        self.assertIn("agent_host", self.request("GET", f"/v1/routers/{rid}",
                                                 DEMO).json["router"])
        self.assertEqual(200, self.request("GET", "/v1/agents", DEMO).status_int)
        self.assertError(self.request("GET", "/v1/failover-events", DEMO), 403)

    def test_noauth_needs_a_project_and_warns(self):
        logger = self.useFixture(fixtures.FakeLogger(level="WARNING"))
        self.deploy()
        self.assertIn("auth_strategy = noauth", logger.output)
        self.assertError(self.request("GET", "/v1/routers", {"X-Roles": "admin"}), 401,
                         "X-Project-Id")


class KeystoneStrategyTest(_APICase):
    """auth_token in the pipeline; Keystone's token validation faked."""

    strategy = "keystone"

    def setUp(self):
        super().setUp()
        self.tokens = self.useFixture(ksm_fixture.AuthTokenFixture())
        self.logger = self.useFixture(fixtures.FakeLogger(level="WARNING"))
        self.deploy(keystone_authtoken__www_authenticate_uri="http://keystone.test/v3")

    def token(self, project_id, *roles, **kw):
        token_id = uuid.uuid4().hex
        self.tokens.add_token_data(token_id=token_id, user_id=f"u-{project_id}",
                                   project_id=project_id, role_list=list(roles), **kw)
        return {"X-Auth-Token": token_id}

    def test_is_the_default_and_does_not_warn(self):
        self.assertEqual("keystone", base.cd_conf.build([], default_config_files=[])
                         .api.auth_strategy)
        self.assertNotIn("noauth", self.logger.output)

    def test_no_invalid_or_expired_token_is_401_json(self):
        past = datetime.datetime.utcnow() - datetime.timedelta(minutes=1)
        expired = self.token("p-demo", "member", "reader", expires=past)
        for headers in ({}, {"X-Auth-Token": "not-a-token"}, expired,
                        # Identity headers without a token are not trusted.
                        {"X-Project-Id": "p-demo", "X-Roles": "admin"}):
            resp = self.request("GET", "/v1/routers", headers)
            self.assertError(resp, 401, "valid Keystone token")
            self.assertEqual('Keystone uri="http://keystone.test/v3"',
                             resp.headers["WWW-Authenticate"])

    def test_context_from_the_token_not_from_the_client(self):
        demo = self.token("p-demo", "member", "reader")
        # A client's own identity headers are removed by auth_token.
        spoofed = dict(demo, **{"X-Project-Id": "p-alt", "X-Roles": "admin"})
        router = self.create(spoofed)
        self.assertEqual("p-demo", router["project_id"])
        self.assertError(self.request("GET", "/v1/agents", spoofed), 403)
        admin = self.token("p-admin", "admin", "member", "reader")
        self.assertEqual(200, self.request("GET", "/v1/agents", admin).status_int)
        self.assertIn("agent_host", self.request(
            "GET", f"/v1/routers/{router['id']}", admin).json["router"])

    def test_keystone_unreachable_is_503_json(self):
        def unreachable(*args, **kwargs):
            # What auth_token raises when it cannot reach Keystone.
            raise webob.exc.HTTPServiceUnavailable(
                "The Keystone service is temporarily unavailable.")

        self.useFixture(fixtures.MockPatchObject(auth_token.AuthProtocol, "fetch_token",
                                                 unreachable))
        resp = self.request("GET", "/v1/routers", {"X-Auth-Token": "any"})
        self.assertError(resp, 503, "Keystone) is unavailable")

    def test_unscoped_token_is_403(self):
        resp = self.request("GET", "/v1/routers", self.token(None, "member"))
        self.assertError(resp, 403, "not scoped to a project")

    def test_public_paths_need_no_token(self):
        for path in ("/", "/v1", "/v1/", "/healthcheck"):
            self.assertEqual(200, self.request("GET", path, {}).status_int, path)
        # The agents' reports are signed instead: without [health] report_key
        # they do not exist, which is a 404 and not a 401.
        resp = self.request("POST", "/v1/agent-reports", {}, {"host": "h"})
        self.assertError(resp, 404, "report_key")


class MiddlewareTest(_APICase):
    """oslo.middleware in the pipeline: healthcheck, http_proxy_to_wsgi,
    request_id, sizelimit."""

    def test_healthcheck_without_identity(self):
        self.deploy()
        resp = self.request("GET", "/healthcheck", {})
        self.assertEqual(200, resp.status_int)
        self.assertIn(self.request("HEAD", "/healthcheck", {}).status_int, (200, 204))

    def test_healthcheck_disabled_by_file_for_draining(self):
        from oslo_middleware.healthcheck import opts as hc_opts
        path = os.path.join(self.tmp, "disabled")
        conf = base.make_conf(healthcheck__backends=["disable_by_file"])
        conf.register_opts(hc_opts.DISABLE_BY_FILE_OPTS, group="healthcheck")
        conf.set_override("disable_by_file_path", path, "healthcheck")
        self.app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())
        self.assertEqual(200, self.request("GET", "/healthcheck", {}).status_int)
        open(path, "w").close()
        self.assertEqual(503, self.request("GET", "/healthcheck", {}).status_int)

    def test_proxy_headers_make_links_https(self):
        forwarded = dict(DEMO, **{"X-Forwarded-Proto": "https",
                                  "X-Forwarded-Host": "api.example.com"})
        self.deploy()
        resp = self.request("POST", "/v1/routers", forwarded, {"name": "r"})
        self.assertTrue(resp.location.startswith("http://localhost/"), resp.location)
        self.deploy(oslo_middleware__enable_proxy_headers_parsing=True)
        resp = self.request("POST", "/v1/routers", forwarded, {"name": "r"})
        self.assertTrue(resp.location.startswith("https://api.example.com/v1/routers/"),
                        resp.location)
        root = self.request("GET", "/", forwarded).json
        self.assertEqual("https://api.example.com/v1/",
                         root["versions"][0]["links"][0]["href"])

    def test_request_id_on_every_answer(self):
        self.deploy()
        for path, headers in (("/", {}), ("/v1/routers", DEMO), ("/v1/nope", DEMO),
                              ("/healthcheck", {})):
            resp = self.request("GET", path, headers)
            self.assertTrue(resp.headers["x-openstack-request-id"].startswith("req-"))

    def test_oversized_body_is_413_json(self):
        self.deploy(oslo_middleware__max_request_body_size=200)
        big = json.dumps({"name": "x" * 300}).encode()
        self.assertError(self.request("POST", "/v1/routers", DEMO, raw=big), 413,
                         "too large")
        # Without a Content-Length (chunked): caught while the body is read.
        req = webob.Request.blank("/v1/routers", method="POST", headers=DEMO)
        req.content_type = "application/json"
        req.body_file = _Chunks(big)
        req.environ.pop("CONTENT_LENGTH", None)
        req.headers["Transfer-Encoding"] = "chunked"
        self.assertError(req.get_response(self.app), 413, "too large")
        self.assertEqual(201, self.request("POST", "/v1/routers", DEMO,
                                           {"name": "ok"}).status_int)
        self.assertEqual([], [r for r in self.scheduler.scheduled][1:])


class _Chunks:
    def __init__(self, data):
        self.data = data

    def read(self, n=-1):
        if n is None or n < 0:
            n = len(self.data)
        out, self.data = self.data[:n], self.data[n:]
        return out

    def __iter__(self):
        while self.data:
            yield self.read(64)


class SamplePolicyTest(testtools.TestCase):
    def test_sample_is_current(self):
        """etc/clouddisco/policy.yaml.sample must match the rules in code."""
        out = os.path.join(self.useFixture(fixtures.TempDir()).path, "policy.yaml")
        gen = os.path.join(os.path.dirname(sys.executable), "oslopolicy-sample-generator")
        subprocess.run([gen, "--config-file",
                        os.path.join(ROOT, "etc/oslo-policy-generator/clouddisco.conf"),
                        "--output-file", out], check=True, cwd=ROOT,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            fresh = f.read()
        with open(os.path.join(ROOT, "etc/clouddisco/policy.yaml.sample")) as f:
            shipped = f.read()
        self.assertEqual(fresh, shipped, "the sample policy is stale: run "
                         "'tox -e genpolicy' and commit the result")
