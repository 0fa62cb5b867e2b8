"""Authentication and access rules end to end: a real Keystone
(``lab.keystone``), a real clouddisco-api validating its tokens with
keystonemiddleware, real tokens of real users. Nothing about auth is faked.

The class shares one Keystone and one cloud (one agent, so that routers get
an agent_host); every test makes its own routers.
"""

import time

import fixtures
import requests
from testtools import content

from lab import keystone
from lab import netlab
from lab.cloud import Cloud
from tests.functional import cloud as cloud_mod


class _Lab(fixtures.Fixture):
    def _setUp(self):
        self.keystone = self.useFixture(keystone.Keystone())
        self.cloud = self.useFixture(Cloud(agents=("a",), auth="keystone",
                                           keystone=self.keystone))


@netlab.skip_unless_root
class KeystoneAuthTest(cloud_mod.CloudTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lab = _Lab()
        try:
            cls.lab.setUp()
        except Exception:
            cls.lab.cleanUp()
            raise
        cls.keystone = cls.lab.keystone
        cls.cloud = cls.lab.cloud
        cls.tokens = {}

    @classmethod
    def tearDownClass(cls):
        cls.lab.cleanUp()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.addOnException(lambda exc_info: self._attach_logs(self.cloud))
        self.addOnException(lambda exc_info: self.addDetail(
            "keystone.log", content.text_content(self.keystone.log_tail(20000))))

    def call(self, method, path, user=None, token=None, body=None, headers=None,
             expect=None):
        """The API with a token of ``user`` (cached per class), or ``token``,
        or none."""
        headers = dict(headers or {})
        if user is not None:
            if user not in self.tokens:
                self.tokens[user] = self.keystone.token(user)
            token = self.tokens[user]
        if token is not None:
            headers["X-Auth-Token"] = token
        resp = requests.request(method, self.cloud.api_url + path, json=body,
                                headers=headers, timeout=30)
        if expect is not None:
            self.assertEqual(expect, resp.status_code, f"{method} {path}: {resp.text}")
        return resp

    def assertError(self, resp, status, contains=""):
        self.assertEqual(status, resp.status_code, resp.text)
        self.assertEqual("application/json", resp.headers["Content-Type"].split(";")[0])
        error = resp.json()["error"]
        self.assertEqual(status, error["status"])
        self.assertIn(contains, error["message"])
        self.assertEqual(resp.headers["X-OpenStack-Request-ID"], error["request_id"])
        return error["message"]

    def assertUnauthenticated(self, resp):
        self.assertError(resp, 401, "valid Keystone token")
        self.assertEqual(f'Keystone uri="{self.keystone.url}"',
                         resp.headers["WWW-Authenticate"])

    def create(self, user, name="r"):
        return self.call("POST", "/v1/routers", user, body={"name": name},
                         expect=201).json()["router"]

    # --------------------------------------------------------------- tests

    def test_a_project_sees_and_changes_only_its_own_routers(self):
        router = self.create("demo", "demo-only")
        rid = router["id"]
        self.assertEqual(self.keystone.project_ids["demo"], router["project_id"])
        self.assertIn(rid, [r["id"] for r in self.call("GET", "/v1/routers", "demo",
                                                       expect=200).json()["routers"]])
        # To another project it does not exist: 404 as for any unknown id.
        for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
            self.assertError(self.call(method, f"/v1/routers/{rid}", "alt_demo", body=body),
                             404, f"router {rid} not found")
        self.assertNotIn(rid, [r["id"] for r in self.call(
            "GET", "/v1/routers", "alt_demo", expect=200).json()["routers"]])
        # Nor may it list it by naming the project.
        self.assertError(self.call("GET", "/v1/routers?project_id="
                                   + self.keystone.project_ids["demo"], "alt_demo"), 403,
                         "listing the routers of another project is not allowed")
        shown = self.call("GET", f"/v1/routers/{rid}", "demo", expect=200).json()["router"]
        self.assertEqual("demo-only", shown["name"])
        self.call("DELETE", f"/v1/routers/{rid}", "demo", expect=204)

    def test_agents_and_failover_events_are_for_admins(self):
        for path, action in (("/v1/agents", "listing agents"),
                             ("/v1/failover-events", "listing failover events")):
            message = self.assertError(self.call("GET", path, "demo"), 403, action)
            self.assertIn("policy rule", message)
            self.call("GET", path, "admin", expect=200)
        [agent] = self.call("GET", "/v1/agents", "admin").json()["agents"]
        self.assertError(self.call("PUT", f"/v1/agents/{agent['id']}", "demo",
                                   body={"admin_state_up": False}), 403,
                         "changing an agent is not allowed")
        self.assertTrue(self.call("GET", f"/v1/agents/{agent['id']}", "admin",
                                  expect=200).json()["agent"]["admin_state_up"])

    def test_admin_sees_every_project_and_filters_by_project(self):
        demo = self.create("demo", "d")["id"]
        alt = self.create("alt_demo", "a")["id"]
        every = {r["id"] for r in self.call("GET", "/v1/routers", "admin",
                                            expect=200).json()["routers"]}
        self.assertLessEqual({demo, alt}, every)
        alt_project = self.keystone.project_ids["alt_demo"]
        only = self.call("GET", f"/v1/routers?project_id={alt_project}", "admin",
                         expect=200).json()["routers"]
        self.assertIn(alt, [r["id"] for r in only])
        self.assertEqual({alt_project}, {r["project_id"] for r in only})
        self.call("GET", f"/v1/routers/{demo}", "admin", expect=200)

    def test_where_a_router_runs_is_shown_to_admins_only(self):
        rid = self.create("demo", "placed")["id"]

        def active():
            r = self.call("GET", f"/v1/routers/{rid}", "admin").json()["router"]
            return r if r["status"] == "ACTIVE" else None

        router = netlab.wait_for(active, 60, 0.2, f"router {rid} ACTIVE")
        self.assertEqual(self.cloud.host("a"), router["agent_host"])
        self.assertIsNotNone(router["agent_id"])
        listed = [r for r in self.call("GET", "/v1/routers", "admin").json()["routers"]
                  if r["id"] == rid]
        self.assertEqual(self.cloud.host("a"), listed[0]["agent_host"])
        mine = self.call("GET", f"/v1/routers/{rid}", "demo", expect=200).json()["router"]
        [in_list] = [r for r in self.call("GET", "/v1/routers", "demo").json()["routers"]
                     if r["id"] == rid]
        for view in (mine, in_list):
            self.assertEqual("ACTIVE", view["status"])
            self.assertNotIn("agent_host", view)
            self.assertNotIn("agent_id", view)

    def test_forged_identity_headers_are_not_trusted(self):
        """noauth's headers mean nothing: without a token they are a 401,
        next to a token the token's identity counts."""
        forged = {"X-Project-Id": self.keystone.project_ids["demo"], "X-Roles": "admin"}
        self.assertEqual(401, self.call("GET", "/v1/agents", headers=forged).status_code)
        self.assertEqual(401, self.call("POST", "/v1/routers", headers=forged,
                                        body={"name": "x"}).status_code)
        resp = self.call("GET", "/v1/agents", "demo", headers=forged)
        self.assertError(resp, 403, "listing agents is not allowed")

    def test_no_token_invalid_token_or_forged_headers_is_401(self):
        self.assertUnauthenticated(self.call("GET", "/v1/routers"))
        self.assertUnauthenticated(self.call("GET", "/v1/routers", token="not-a-token"))
        self.assertUnauthenticated(self.call("POST", "/v1/routers", body={"name": "x"},
                                             token="gAAAAABnot-a-fernet-token"))
        forged = {"X-Project-Id": self.keystone.project_ids["demo"], "X-Roles": "admin"}
        self.assertUnauthenticated(self.call("GET", "/v1/agents", headers=forged))
        self.assertUnauthenticated(self.call("POST", "/v1/routers", headers=forged,
                                             body={"name": "x"}))
        # ... nor next to a valid token: the token's identity counts.
        resp = self.call("GET", "/v1/agents", "demo", headers=forged)
        self.assertError(resp, 403, "listing agents is not allowed")

    def test_expired_token_is_401(self):
        """A real token that expires 4 s after it is issued (it was issued for
        an application credential that expires then): accepted before, 401
        after, also though auth_token cached it as valid."""
        token, expires_at = self.keystone.short_lived_token("demo", 4)
        self.call("GET", "/v1/routers", token=token, expect=200)
        wait = expires_at.timestamp() - time.time() + 1.0
        time.sleep(max(wait, 0))
        self.assertUnauthenticated(self.call("GET", "/v1/routers", token=token))

    def test_revoked_token_is_401(self):
        token = self.keystone.token("demo")
        self.keystone.revoke(token)
        self.assertUnauthenticated(self.call("GET", "/v1/routers", token=token))

    def test_discovery_and_healthcheck_need_no_token(self):
        for path in ("/", "/v1", "/v1/", "/healthcheck"):
            resp = self.call("GET", path)
            self.assertEqual(200, resp.status_code, f"{path}: {resp.text}")
        self.assertEqual(f"{self.cloud.api_url}/v1/",
                         self.call("GET", "/").json()["versions"][0]["links"][0]["href"])

    def test_the_catalog_names_the_api(self):
        token = self.keystone.token("demo")
        catalog = requests.get(self.keystone.url + "/auth/catalog", timeout=30,
                               headers={"X-Auth-Token": token}).json()["catalog"]
        [entry] = [s for s in catalog if s["type"] == keystone.SERVICE_TYPE]
        self.assertEqual("clouddisco", entry["name"])
        self.assertIn(self.cloud.api_url, [e["url"] for e in entry["endpoints"]
                                           if e["interface"] == "public"])
