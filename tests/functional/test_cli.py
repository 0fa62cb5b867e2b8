"""The real ``openstack`` shell (``.venv/bin/openstack``, the clouddisco
plugin found through its entry points) against a real clouddisco-api that
validates tokens of a real Keystone (``lab.keystone``), which also holds the
catalog entry (type ``l3-ha``) the client finds the API by.

Each ``openstack`` run costs 1-2 s of CPU: the class shares one Keystone and
one cloud, waits through the API directly (a token of its own) rather than
by polling the CLI, and runs the CLI only for what it checks.
"""

import datetime
import json
import os
import subprocess
import uuid

import fixtures
import requests
from testtools import content

from lab import keystone
from lab import netlab
from lab.cloud import Cloud
from tests.functional import cloud as cloud_mod

OPENSTACK = os.path.join(cloud_mod.BIN, "openstack")


class _Lab(fixtures.Fixture):
    """A Keystone, and a cloud of two agents whose API trusts it."""

    def _setUp(self):
        self.keystone = self.useFixture(keystone.Keystone())
        self.cloud = self.useFixture(Cloud(agents=("a", "b"), auth="keystone",
                                           keystone=self.keystone))


@netlab.skip_unless_root
class OpenStackCLITest(cloud_mod.CloudTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lab = _Lab()
        try:
            cls.lab.setUp()
        except Exception:
            # Nothing calls tearDownClass after a failed setUpClass.
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

    # ------------------------------------------------------------- helpers

    def openstack(self, user, *args, expect_rc=0):
        """``openstack <args>`` as ``user`` of its own project; the
        CompletedProcess, after checking its exit status."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(self.keystone.auth_env(user), PYTHONWARNINGS="ignore")
        proc = subprocess.run([OPENSTACK, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(expect_rc, proc.returncode,
                         f"openstack {' '.join(args)} as {user}:\n"
                         f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        if expect_rc == 0:
            self.assertNotIn("Traceback", proc.stderr)
        return proc

    def openstack_json(self, user, *args):
        return json.loads(self.openstack(user, *args, "-f", "json").stdout)

    def api(self, user, method, path, body=None, expect=None):
        """The API itself, with a token of ``user`` (cached: no CLI run)."""
        if user not in self.tokens:
            self.tokens[user] = self.keystone.token(user)
        resp = requests.request(method, self.cloud.api_url + path, json=body, timeout=30,
                                headers={"X-Auth-Token": self.tokens[user]})
        if expect is not None:
            self.assertEqual(expect, resp.status_code, resp.text)
        return resp

    def wait_router(self, router_id, host=None, timeout=30):
        def ready():
            resp = self.api("admin", "GET", f"/v1/routers/{router_id}")
            r = resp.json()["router"] if resp.ok else None
            if r and r["status"] == "ACTIVE" and host in (None, r["agent_host"]):
                return r
            return None
        return netlab.wait_for(ready, timeout, 0.2, f"router {router_id} ACTIVE"
                               + (f" on {host}" if host else ""))

    def agent_ids(self):
        return {a["host"]: a["id"]
                for a in self.api("admin", "GET", "/v1/agents", expect=200).json()["agents"]}

    # --------------------------------------------------------------- tests

    def test_a_project_user_manages_routers_another_project_sees_none(self):
        created = self.openstack_json("demo", "clouddisco", "router", "create", "cli-web")
        self.assertEqual("cli-web", created["name"])
        self.assertEqual(self.keystone.project_ids["demo"], created["project_id"])
        rid = created["id"]
        self.wait_router(rid)

        [row] = [r for r in self.openstack_json("demo", "clouddisco", "router", "list")
                 if r["ID"] == rid]
        self.assertEqual("ACTIVE", row["Status"])
        self.assertEqual(created["external_gateway_ip"], row["External Gateway IP"])

        # Another project neither lists nor shows it.
        self.assertNotIn(rid, [r["ID"] for r in self.openstack_json(
            "alt_demo", "clouddisco", "router", "list")])
        hidden = self.openstack("alt_demo", "clouddisco", "router", "show", rid, expect_rc=1)
        self.assertIn(f"router {rid} not found (HTTP 404)", hidden.stderr)

        self.openstack("demo", "clouddisco", "router", "set", rid, "--name", "cli-www")
        self.assertEqual("cli-www\n", self.openstack(
            "demo", "clouddisco", "router", "show", "cli-www", "-f", "value",
            "-c", "name").stdout)
        self.openstack("demo", "clouddisco", "router", "delete", "cli-www")
        netlab.wait_for(lambda: self.api("admin", "GET", f"/v1/routers/{rid}").status_code
                        == 404, 30, 0.2, "the router to be deleted")

    def test_admin_disables_an_agent_and_reads_the_failover(self):
        rid = self.api("demo", "POST", "/v1/routers", {"name": "cli-moves"},
                       expect=201).json()["router"]["id"]
        router = self.wait_router(rid)
        old = self.cloud.agent_of(router)
        new = "b" if old == "a" else "a"
        ids = self.agent_ids()

        agents = {a["Host"]: a for a in self.openstack_json(
            "admin", "clouddisco", "agent", "list")}
        for name in ("a", "b"):
            self.assertEqual(ids[self.cloud.host(name)], agents[self.cloud.host(name)]["ID"])
        self.assertTrue(agents[self.cloud.host(old)]["Alive"])
        # (At least: another test's router may still be going.)
        self.assertGreaterEqual(agents[self.cloud.host(old)]["Routers"], 1)

        # Disabled, the agent keeps its router but gets no new one; when its
        # node is lost the router moves to the other agent all the same.
        self.openstack("admin", "clouddisco", "agent", "set", self.cloud.host(old),
                       "--disable")
        shown = self.openstack_json("admin", "clouddisco", "agent", "show",
                                    ids[self.cloud.host(old)])
        self.assertFalse(shown["admin_state_up"])

        before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        self.cloud.lose_node(old)
        self.wait_router(rid, host=self.cloud.host(new))

        [event] = self.openstack_json("admin", "clouddisco", "failover", "event", "list",
                                      "--router", rid)
        self.assertEqual((ids[self.cloud.host(old)], ids[self.cloud.host(new)], "agent_dead"),
                         (event["Old Agent ID"], event["New Agent ID"], event["Cause"]))
        by_agent = self.openstack_json(
            "admin", "clouddisco", "failover", "event", "list", "--agent",
            self.cloud.host(old), "--since", before.isoformat(), "--long")
        self.assertIn(event["ID"], [e["ID"] for e in by_agent])
        detail = self.openstack_json("admin", "clouddisco", "failover", "event", "show",
                                     str(event["ID"]))
        self.assertEqual(rid, detail["router_id"])
        for phase in ("last_heartbeat_at", "detected_at", "rescheduled_at", "active_at"):
            self.assertIsNotNone(detail[phase], phase)

    def test_errors_print_the_apis_message_not_a_traceback(self):
        unknown = str(uuid.uuid4())
        proc = self.openstack("demo", "clouddisco", "router", "show", unknown, expect_rc=1)
        self.assertIn(f"router {unknown} not found (HTTP 404) (Request-ID: req-", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual("", proc.stdout)
        # Agents are the admin's: the API's 403, not a crash.
        proc = self.openstack("demo", "clouddisco", "agent", "list", expect_rc=1)
        self.assertIn("(HTTP 403)", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
