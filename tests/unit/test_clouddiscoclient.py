"""clouddiscoclient.v1.client on a real keystoneauth1 session over a fake
HTTP layer (tests/unit/clouddiscoclient_fakes.py): catalog lookup, paths
and bodies, pagination, errors."""

import datetime
import subprocess
import sys

import requests
import testtools

from clouddiscoclient import exceptions
from tests.unit import clouddiscoclient_fakes as fakes


class EndpointTest(testtools.TestCase):
    def test_catalog_lookup_by_service_type_and_token(self):
        client, http, auth = fakes.make_client(
            {("GET", "/v1/routers"): fakes.response(200, {"routers": []})})
        self.assertEqual([], client.routers.list())
        self.assertEqual([("l3-ha", "public", None)], auth.lookups[-1:])
        [call] = http.calls
        self.assertEqual(fakes.ENDPOINT + "/v1/routers", call.base)
        self.assertEqual(fakes.TOKEN, call.headers["X-Auth-Token"])
        self.assertIn("python-clouddiscoclient", call.headers["User-Agent"])

    def test_interface_and_region(self):
        catalog = {("l3-ha", "internal", "RegionTwo"): "http://internal:9797/"}
        client, http, auth = fakes.make_client(
            {("GET", "/v1/agents"): fakes.response(200, {"agents": []})},
            catalog=catalog, interface="internal", region_name="RegionTwo")
        client.agents.list()
        self.assertEqual("http://internal:9797/v1/agents", http.calls[0].base)
        self.assertEqual(("l3-ha", "internal", "RegionTwo"), auth.lookups[-1])

    def test_a_catalog_url_with_the_version_is_not_doubled(self):
        client, http, _ = fakes.make_client(
            {("GET", "/v1/routers"): fakes.response(200, {"routers": []})},
            catalog={("l3-ha", "public", None): fakes.ENDPOINT + "/v1/"})
        client.routers.list()
        self.assertEqual(fakes.ENDPOINT + "/v1/routers", http.calls[0].base)

    def test_endpoint_override_wins(self):
        client, http, _ = fakes.make_client(
            {("GET", "/v1/routers"): fakes.response(200, {"routers": []})},
            catalog={}, endpoint_override="http://127.0.0.1:1234")
        client.routers.list()
        self.assertEqual("http://127.0.0.1:1234/v1/routers", http.calls[0].base)

    def test_no_endpoint_in_the_catalog(self):
        client, http, _ = fakes.make_client(catalog={})
        exc = self.assertRaises(exceptions.EndpointNotFound, client.routers.list)
        self.assertIn("'l3-ha'", str(exc))
        self.assertEqual([], http.calls)

    def test_connection_refused(self):
        client, _, _ = fakes.make_client(
            {("GET", "/v1/routers"): requests.exceptions.ConnectionError("refused")})
        exc = self.assertRaises(exceptions.ConnectionFailed, client.routers.list)
        self.assertIn(fakes.ENDPOINT, str(exc))
        self.assertIsNone(exc.http_status)


class ResourceTest(testtools.TestCase):
    def test_routers(self):
        created = fakes.router(status="PENDING")
        client, http, _ = fakes.make_client({
            ("POST", "/v1/routers"): fakes.response(201, {"router": created}),
            ("GET", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(
                200, {"router": fakes.router()}),
            ("PUT", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(
                200, {"router": fakes.router(name="new")}),
            ("DELETE", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(204),
        })
        self.assertEqual(created, client.routers.create("web"))
        self.assertEqual({"name": "web"}, http.calls[-1].json)
        client.routers.create("web", external_gateway_ip="10.250.0.9", ha=True)
        self.assertEqual({"name": "web", "external_gateway_ip": "10.250.0.9", "ha": True},
                         http.calls[-1].json)
        self.assertEqual("ACTIVE", client.routers.get(fakes.ROUTER_ID)["status"])
        self.assertEqual("new", client.routers.update(fakes.ROUTER_ID, name="new")["name"])
        self.assertEqual(("PUT", {"name": "new"}), (http.calls[-1].method,
                                                    http.calls[-1].json))
        self.assertIsNone(client.routers.delete(fakes.ROUTER_ID))
        self.assertEqual("DELETE", http.calls[-1].method)

    def test_agents(self):
        client, http, _ = fakes.make_client({
            ("GET", "/v1/agents"): fakes.response(200, {"agents": [fakes.agent()]}),
            ("GET", f"/v1/agents/{fakes.AGENT_ID}"): fakes.response(
                200, {"agent": fakes.agent()}),
            ("PUT", f"/v1/agents/{fakes.AGENT_ID}"): lambda call: fakes.response(
                200, {"agent": fakes.agent(**call.json)}),
        })
        self.assertEqual(["net-1"], [a["host"] for a in client.agents.list()])
        self.assertEqual(fakes.AGENT_ID, client.agents.get(fakes.AGENT_ID)["id"])
        self.assertFalse(client.agents.disable(fakes.AGENT_ID)["admin_state_up"])
        self.assertEqual({"admin_state_up": False}, http.calls[-1].json)
        self.assertTrue(client.agents.update(fakes.AGENT_ID, True)["admin_state_up"])
        self.assertEqual({"admin_state_up": True}, http.calls[-1].json)
        self.assertEqual(fakes.AGENT_ID, client.agents.find("net-1")["id"])

    def test_failover_events_filters(self):
        client, http, _ = fakes.make_client({
            ("GET", "/v1/failover-events"): lambda call: fakes.response(
                200, {"failover_events": [fakes.event()], "failover_events_links": []}),
            ("GET", "/v1/failover-events/7"): fakes.response(
                200, {"failover_event": fakes.event()}),
        })
        client.failover_events.list()
        self.assertEqual({}, http.calls[-1].params)
        client.failover_events.list(router_id=fakes.ROUTER_ID, agent_id=fakes.AGENT_ID,
                                    since="2026-12-04T16:00:00Z")
        self.assertEqual({"router_id": fakes.ROUTER_ID, "agent_id": fakes.AGENT_ID,
                          "since": "2026-12-04T16:00:00Z"}, http.calls[-1].params)
        client.failover_events.list(since=datetime.datetime(2026, 12, 4, 16, 0, 0))
        self.assertEqual({"since": "2026-12-04T16:00:00+00:00"}, http.calls[-1].params)
        self.assertEqual(7, client.failover_events.get(7)["id"])


class PaginationTest(testtools.TestCase):
    def pages(self, total, page_size=2):
        """A fake /v1/routers that pages like the API: limit, marker and a
        next link (on another host: the client must keep its own)."""
        routers = [fakes.router(f"5d7a0f3e-0000-4000-8000-{i:012d}", f"r{i}")
                   for i in range(total)]

        def answer(call):
            limit = min(int(call.params.get("limit", page_size)), page_size)
            start = 0
            if "marker" in call.params:
                start = [r["id"] for r in routers].index(call.params["marker"]) + 1
            page = routers[start:start + limit]
            links = []
            if start + limit < total:
                links = [{"rel": "next", "href": "http://elsewhere:1/v1/routers?limit="
                          f"{limit}&marker={page[-1]['id']}"}]
            return fakes.response(200, {"routers": page, "routers_links": links})
        return routers, answer

    def test_follows_next_links_to_the_end(self):
        routers, answer = self.pages(5)
        client, http, _ = fakes.make_client({("GET", "/v1/routers"): answer})
        self.assertEqual(routers, client.routers.list())
        self.assertEqual(3, len(http.calls))
        self.assertEqual({fakes.ENDPOINT + "/v1/routers"}, {c.base for c in http.calls})
        self.assertEqual(routers[3]["id"], http.calls[-1].params["marker"])

    def test_limit_and_marker(self):
        routers, answer = self.pages(5)
        client, http, _ = fakes.make_client({("GET", "/v1/routers"): answer})
        self.assertEqual(routers[:3], client.routers.list(limit=3))
        self.assertEqual(["3", "1"], [c.params["limit"] for c in http.calls])
        http.calls.clear()
        self.assertEqual(routers[2:], client.routers.list(marker=routers[1]["id"]))
        self.assertEqual(routers[1]["id"], http.calls[0].params["marker"])

    def test_a_server_without_links_is_one_page(self):
        client, http, _ = fakes.make_client({("GET", "/v1/routers"): fakes.response(
            200, {"routers": [fakes.router()]})})
        self.assertEqual(1, len(client.routers.list()))
        self.assertEqual(1, len(http.calls))

    def test_a_next_link_that_does_not_advance_stops(self):
        page = {"routers": [fakes.router()], "routers_links": [
            {"rel": "next", "href": f"{fakes.ENDPOINT}/v1/routers?marker={fakes.ROUTER_ID}"}]}
        client, _, _ = fakes.make_client({("GET", "/v1/routers"): fakes.response(200, page)})
        exc = self.assertRaises(exceptions.ClientException, client.routers.list)
        self.assertIn("do not advance", str(exc))


class ErrorTest(testtools.TestCase):
    def test_api_error_carries_status_message_and_request_id(self):
        client, _, _ = fakes.make_client({
            ("GET", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.api_error(
                404, f"router {fakes.ROUTER_ID} not found", "req-42", "Not Found")})
        exc = self.assertRaises(exceptions.NotFound, client.routers.get, fakes.ROUTER_ID)
        self.assertEqual(404, exc.http_status)
        self.assertEqual(404, exc.status)
        self.assertEqual(f"router {fakes.ROUTER_ID} not found", exc.message)
        self.assertEqual("req-42", exc.request_id)
        self.assertEqual("Not Found", exc.title)
        self.assertEqual(f"router {fakes.ROUTER_ID} not found (HTTP 404) "
                         "(Request-ID: req-42)", str(exc))

    def test_each_status_has_its_class(self):
        cases = {400: exceptions.BadRequest, 401: exceptions.Unauthorized,
                 403: exceptions.Forbidden, 409: exceptions.Conflict,
                 500: exceptions.InternalServerError, 418: exceptions.HTTPClientError}
        for status, cls in cases.items():
            client, _, _ = fakes.make_client({
                ("POST", "/v1/routers"): fakes.api_error(status, f"no {status}")})
            exc = self.assertRaises(cls, client.routers.create, "r")
            self.assertEqual((status, f"no {status}"), (exc.http_status, exc.message))

    def test_field_of_a_400(self):
        body = {"error": {"status": 400, "title": "Bad Request", "field": "name",
                          "message": "invalid name", "request_id": "req-1"}}
        client, _, _ = fakes.make_client({("POST", "/v1/routers"): fakes.response(400, body)})
        exc = self.assertRaises(exceptions.BadRequest, client.routers.create, "x" * 300)
        self.assertEqual("name", exc.field)

    def test_503_retry_after(self):
        resp = fakes.api_error(503, "the database is unavailable")
        resp.headers["Retry-After"] = "5"
        client, _, _ = fakes.make_client({("GET", "/v1/routers"): resp})
        exc = self.assertRaises(exceptions.ServiceUnavailable, client.routers.list)
        self.assertEqual(5, exc.retry_after)

    def test_an_error_that_is_not_the_apis_json(self):
        client, _, _ = fakes.make_client({("GET", "/v1/routers"): fakes.response(
            502, text="<html>Bad Gateway</html>", reason="Bad Gateway",
            headers={"x-openstack-request-id": "req-9"})})
        exc = self.assertRaises(exceptions.HTTPClientError, client.routers.list)
        self.assertEqual(502, exc.http_status)
        self.assertEqual("<html>Bad Gateway</html>", exc.message)
        self.assertEqual("req-9", exc.request_id)

    def test_find_by_name(self):
        other = "5d7a0f3e-0000-4000-8000-0000000000ff"
        client, _, _ = fakes.make_client({
            ("GET", "/v1/routers"): fakes.response(200, {"routers": [
                fakes.router(fakes.ROUTER_ID, "web"), fakes.router(fakes.ROUTER_ID_2, "db"),
                fakes.router(other, "db"), fakes.router(other, fakes.ROUTER_ID)]}),
            ("GET", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(
                200, {"router": fakes.router()}),
        })
        self.assertEqual(fakes.ROUTER_ID, client.routers.find("web")["id"])
        self.assertEqual(fakes.ROUTER_ID, client.routers.find(fakes.ROUTER_ID)["id"])
        self.assertRaises(exceptions.NoUniqueMatch, client.routers.find, "db")
        exc = self.assertRaises(exceptions.NotFound, client.routers.find, "nope")
        self.assertIn("'nope'", str(exc))
        self.assertRaises(exceptions.NotFound, client.agents.find, "net-9")


class PackageTest(testtools.TestCase):
    def test_the_client_never_imports_the_server(self):
        code = ("import sys, clouddiscoclient.v1.client, clouddiscoclient.osc.plugin, "
                "clouddiscoclient.osc.v1.routers, clouddiscoclient.osc.v1.agents, "
                "clouddiscoclient.osc.v1.failover_events; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'clouddisco'))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        self.assertEqual("[]", out.strip())
