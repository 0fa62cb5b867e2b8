"""The routes the CLI needs beyond create/list/show/delete: PUT of a
router's name (``openstack clouddisco router set``) and GET of one failover
event (``openstack clouddisco failover event show``)."""

from clouddisco.api import app as api_app
from tests.unit import base
from tests.unit import test_api

ADMIN = test_api.ADMIN
MEMBER = test_api.MEMBER
UNKNOWN = "5d7a0f3e-0000-4000-8000-000000000000"


class ClientRoutesTest(base.DBTestCase):
    # The API in process, as in test_api (not a subclass: its tests would
    # run twice).
    def setUp(self):
        super().setUp()
        self.conf = base.make_conf(api__external_cidr="10.250.0.0/29",
                                   api__external_reserved_ips=["10.250.0.1"])
        self.scheduler = base.RecordingSchedulerAPI()
        self.app = api_app.deploy(self.conf, db=self.db, scheduler=self.scheduler)

    request = test_api.APITest.request
    assertError = test_api.APITest.assertError

    def test_rename_router(self):
        mine = self.request("POST", "/v1/routers", {"name": "old"},
                            headers=MEMBER).json["router"]
        resp = self.request("PUT", f"/v1/routers/{mine['id']}", {"name": "new"},
                            headers=MEMBER)
        self.assertEqual(200, resp.status_int, resp.text)
        self.assertEqual("new", resp.json["router"]["name"])
        self.assertEqual(mine["external_gateway_ip"],
                         resp.json["router"]["external_gateway_ip"])
        self.assertEqual(mine["generation"], resp.json["router"]["generation"])
        self.assertEqual("new", self.request("GET", f"/v1/routers/{mine['id']}",
                                             headers=MEMBER).json["router"]["name"])
        # The admin may rename any project's router.
        resp = self.request("PUT", f"/v1/routers/{mine['id']}", {"name": "adm"})
        self.assertEqual("adm", resp.json["router"]["name"])

    def test_rename_checks_body_scope_and_state(self):
        theirs = self.request("POST", "/v1/routers", {"name": "t"}).json["router"]
        path = f"/v1/routers/{theirs['id']}"
        self.assertError(self.request("PUT", path, {"name": "x"}, headers=MEMBER), 404)
        self.assertError(self.request("PUT", path, {}), 400, "name", "missing required")
        self.assertError(self.request("PUT", path, {"name": "x", "ha": True}), 400, "ha",
                         "unknown field")
        self.assertError(self.request("PUT", path, {"name": "x" * 256}), 400, "name")
        self.assertError(self.request("PUT", f"/v1/routers/{UNKNOWN}", {"name": "x"}), 404)
        self.assertError(self.request("PUT", "/v1/routers/nope", {"name": "x"}), 404)
        self.assertEqual(204, self.request("DELETE", path).status_int)
        self.assertError(self.request("PUT", path, {"name": "x"}), 409,
                         contains="being deleted")
        self.assertEqual("t", self.db.get_router(theirs["id"])["name"])

    def test_allowed_methods_on_a_router(self):
        resp = self.request("PATCH", f"/v1/routers/{UNKNOWN}")
        self.assertError(resp, 405)
        self.assertEqual("DELETE, GET, PUT", resp.headers["Allow"])

    def test_show_failover_event(self):
        self.db.record_event(cause="circuit_breaker", detected_by="sched-1",
                             detail="too many agents down")
        [event] = self.request("GET", "/v1/failover-events").json["failover_events"]
        resp = self.request("GET", f"/v1/failover-events/{event['id']}")
        self.assertEqual(200, resp.status_int, resp.text)
        self.assertEqual(event, resp.json["failover_event"])
        self.assertError(self.request("GET", f"/v1/failover-events/{event['id']}",
                                      headers=MEMBER), 403)
        for missing in (event["id"] + 1, "abc", "9" * 40, UNKNOWN):
            self.assertError(self.request("GET", f"/v1/failover-events/{missing}"), 404,
                             contains="not found")
