"""The ``openstack clouddisco`` commands and plugin, in process: each command
parses its arguments, calls the real client over the fake HTTP layer
(tests/unit/clouddiscoclient_fakes.py) and formats through cliff."""

import argparse
import importlib.metadata
import io
import json
import logging
import types

import fixtures
import testtools
from osc_lib import exceptions as osc_exc

from clouddiscoclient import exceptions as cd_exc
from clouddiscoclient.osc import plugin
from clouddiscoclient.osc.v1 import agents
from clouddiscoclient.osc.v1 import failover_events
from clouddiscoclient.osc.v1 import routers
from clouddiscoclient.v1 import client as cd_client
from tests.unit import clouddiscoclient_fakes as fakes

AGENT_2 = "5d7a0f3e-0000-4000-8000-0000000000a2"


class FakeApp:
    def __init__(self, client):
        self.client_manager = types.SimpleNamespace(clouddisco=client)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.options = types.SimpleNamespace(debug=False)


class CommandTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.EnvironmentVariable("CLIFF_MAX_TERM_WIDTH", "400"))
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.ERROR))

    def run_cmd(self, cls, argv, routes):
        """(stdout, fake HTTP) of ``cls`` run with ``argv``."""
        client, http, _ = fakes.make_client(routes)
        app = FakeApp(client)
        cmd = cls(app, None)
        parsed = cmd.get_parser("openstack clouddisco test").parse_args(argv)
        self.assertEqual(0, cmd.run(parsed) or 0)
        return app.stdout.getvalue(), http

    # ---------------------------------------------------------------- routers

    def test_router_list_columns(self):
        listing = {("GET", "/v1/routers"): fakes.response(200, {"routers": [
            fakes.router(), fakes.router(fakes.ROUTER_ID_2, "db", status="DOWN",
                                         status_reason="agent net-1 fenced")]})}
        out, _ = self.run_cmd(routers.ListRouter, ["-f", "json"], listing)
        rows = json.loads(out)
        self.assertEqual(["ID", "Name", "Status", "External Gateway IP", "Agent Host"],
                         list(rows[0]))
        self.assertEqual([(fakes.ROUTER_ID, "web", "ACTIVE"), (fakes.ROUTER_ID_2, "db", "DOWN")],
                         [(r["ID"], r["Name"], r["Status"]) for r in rows])
        out, _ = self.run_cmd(routers.ListRouter, ["-f", "json", "--long"], listing)
        self.assertEqual("agent net-1 fenced", json.loads(out)[1]["Status Reason"])
        self.assertIn("Project ID", json.loads(out)[0])
        out, _ = self.run_cmd(routers.ListRouter, ["-f", "value", "-c", "Name"], listing)
        self.assertEqual("web\ndb\n", out)
        out, _ = self.run_cmd(routers.ListRouter, [], listing)
        self.assertIn("| External Gateway IP |", out)

    def test_router_list_paging_options(self):
        _, http = self.run_cmd(routers.ListRouter, ["--limit", "1", "--marker",
                                                    fakes.ROUTER_ID],
                               {("GET", "/v1/routers"): fakes.response(200, {"routers": []})})
        self.assertEqual({"limit": "1", "marker": fakes.ROUTER_ID}, http.calls[0].params)

    def test_router_list_of_a_project(self):
        found = []

        def find_project(identity, name_or_id, domain):
            found.append((identity, name_or_id, domain))
            return types.SimpleNamespace(id="p-42")
        self.useFixture(fixtures.MonkeyPatch(
            "openstackclient.identity.common.find_project", find_project))
        client, http, _ = fakes.make_client(
            {("GET", "/v1/routers"): fakes.response(200, {"routers": []})})
        app = FakeApp(client)
        app.client_manager.identity = "identity-client"
        cmd = routers.ListRouter(app, None)
        cmd.run(cmd.get_parser("x").parse_args(["--project", "demo", "--project-domain",
                                                 "Default"]))
        self.assertEqual([("identity-client", "demo", "Default")], found)
        self.assertEqual({"project_id": "p-42"}, http.calls[0].params)

    def test_router_create(self):
        out, http = self.run_cmd(
            routers.CreateRouter, ["web", "--external-gateway-ip", "10.250.0.9", "--ha",
                                   "-f", "json"],
            {("POST", "/v1/routers"): fakes.response(201, {"router": fakes.router(
                status="PENDING", agent_id=None, agent_host=None)})})
        self.assertEqual({"name": "web", "external_gateway_ip": "10.250.0.9", "ha": True},
                         http.calls[0].json)
        shown = json.loads(out)
        self.assertEqual(("PENDING", fakes.ROUTER_ID), (shown["status"], shown["id"]))
        self.assertEqual("id", list(shown)[0])
        _, http = self.run_cmd(routers.CreateRouter, ["web"], {
            ("POST", "/v1/routers"): fakes.response(201, {"router": fakes.router()})})
        self.assertEqual({"name": "web"}, http.calls[0].json)

    def test_router_show_by_name_and_unknown(self):
        out, _ = self.run_cmd(routers.ShowRouter, ["web", "-f", "json"], {
            ("GET", "/v1/routers"): fakes.response(200, {"routers": [fakes.router()]})})
        self.assertEqual(fakes.ROUTER_ID, json.loads(out)["id"])
        client, _, _ = fakes.make_client({
            ("GET", f"/v1/routers/{fakes.ROUTER_ID_2}"): fakes.api_error(
                404, f"router {fakes.ROUTER_ID_2} not found", "req-77"),
            ("GET", "/v1/routers"): fakes.response(200, {"routers": []})})
        cmd = routers.ShowRouter(FakeApp(client), None)
        exc = self.assertRaises(cd_exc.NotFound, cmd.take_action,
                                cmd.get_parser("x").parse_args([fakes.ROUTER_ID_2]))
        # The API's answer, with its request id (no name matched either).
        self.assertEqual(f"router {fakes.ROUTER_ID_2} not found (HTTP 404) "
                         "(Request-ID: req-77)", str(exc))

    def test_router_set(self):
        routes = {("GET", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(
                      200, {"router": fakes.router()}),
                  ("PUT", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(
                      200, {"router": fakes.router(name="www")})}
        out, http = self.run_cmd(routers.SetRouter, [fakes.ROUTER_ID, "--name", "www"],
                                 routes)
        self.assertEqual("", out)
        self.assertEqual(("PUT", {"name": "www"}), (http.calls[-1].method,
                                                    http.calls[-1].json))
        _, http = self.run_cmd(routers.SetRouter, [fakes.ROUTER_ID], routes)
        self.assertEqual(["GET"], [c.method for c in http.calls])

    def test_router_delete_several_one_failing(self):
        client, http, _ = fakes.make_client({
            ("GET", "/v1/routers"): fakes.response(200, {"routers": [fakes.router()]}),
            ("DELETE", f"/v1/routers/{fakes.ROUTER_ID}"): fakes.response(204)})
        cmd = routers.DeleteRouter(FakeApp(client), None)
        parsed = cmd.get_parser("x").parse_args(["web", "gone"])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action, parsed)
        self.assertEqual("1 of 2 routers failed to delete.", str(exc))
        self.assertIn("failed to delete router gone: no router with name or id 'gone'",
                      self.log.output)
        self.assertEqual(["GET", "DELETE", "GET"], [c.method for c in http.calls])

    # ----------------------------------------------------------------- agents

    def agent_routes(self):
        listing = [fakes.agent(), fakes.agent(AGENT_2, "net-2", alive=False,
                                              admin_state_up=False, router_count=0)]
        return {("GET", "/v1/agents"): fakes.response(200, {"agents": listing}),
                ("PUT", f"/v1/agents/{AGENT_2}"): lambda call: fakes.response(
                    200, {"agent": fakes.agent(AGENT_2, "net-2", **call.json)})}

    def test_agent_list_readable_and_machine_readable(self):
        out, _ = self.run_cmd(agents.ListAgent, [], self.agent_routes())
        self.assertRegex(out, r"\| net-1 +\| alive +\| UP +\| +1 \|")
        self.assertRegex(out, r"\| net-2 +\| DEAD +\| DOWN +\| +0 \|")
        out, _ = self.run_cmd(agents.ListAgent, ["-f", "json"], self.agent_routes())
        rows = json.loads(out)
        self.assertEqual([True, False], [r["Alive"] for r in rows])
        self.assertEqual([True, False], [r["State"] for r in rows])
        out, _ = self.run_cmd(agents.ListAgent, ["-f", "json", "--long"],
                              self.agent_routes())
        self.assertEqual("qrouter-", json.loads(out)[0]["Namespace Prefix"])

    def test_agent_show_by_host(self):
        out, _ = self.run_cmd(agents.ShowAgent, ["net-2", "-f", "json"], self.agent_routes())
        shown = json.loads(out)
        self.assertEqual((AGENT_2, False), (shown["id"], shown["admin_state_up"]))

    def test_agent_set_enable_disable(self):
        _, http = self.run_cmd(agents.SetAgent, ["net-2", "--disable"], self.agent_routes())
        self.assertEqual({"admin_state_up": False}, http.calls[-1].json)
        _, http = self.run_cmd(agents.SetAgent, ["net-2", "--enable"], self.agent_routes())
        self.assertEqual({"admin_state_up": True}, http.calls[-1].json)
        _, http = self.run_cmd(agents.SetAgent, ["net-2"], self.agent_routes())
        self.assertEqual(["GET"], [c.method for c in http.calls])
        parser = agents.SetAgent(FakeApp(None), None).get_parser("x")
        parser.exit = parser.error = lambda *a, **k: (_ for _ in ()).throw(
            argparse.ArgumentError(None, "exclusive"))
        self.assertRaises(argparse.ArgumentError, parser.parse_args,
                          ["net-2", "--enable", "--disable"])

    # --------------------------------------------------------- failover events

    def test_failover_event_list_filters(self):
        routes = dict(self.agent_routes())
        routes[("GET", "/v1/routers")] = fakes.response(200, {"routers": [fakes.router()]})
        routes[("GET", "/v1/failover-events")] = fakes.response(
            200, {"failover_events": [fakes.event()], "failover_events_links": []})
        out, http = self.run_cmd(failover_events.ListFailoverEvent, [
            "--router", "web", "--agent", "net-2", "--since", "2026-12-04T16:00:00Z",
            "-f", "json"], routes)
        self.assertEqual({"router_id": fakes.ROUTER_ID, "agent_id": AGENT_2,
                          "since": "2026-12-04T16:00:00Z"}, http.calls[-1].params)
        [row] = json.loads(out)
        self.assertEqual((7, "agent_dead"), (row["ID"], row["Cause"]))
        self.assertNotIn("Detail", row)
        # Ids are taken as given (a deleted router's events remain).
        _, http = self.run_cmd(failover_events.ListFailoverEvent, [
            "--router", fakes.ROUTER_ID_2, "--long"], routes)
        self.assertEqual([{"router_id": fakes.ROUTER_ID_2}], [c.params for c in http.calls])

    def test_failover_event_show(self):
        out, _ = self.run_cmd(failover_events.ShowFailoverEvent, ["7", "-f", "json"], {
            ("GET", "/v1/failover-events/7"): fakes.response(
                200, {"failover_event": fakes.event()})})
        shown = json.loads(out)
        self.assertEqual(["id", "router_id", "cause"], list(shown)[:3])
        self.assertEqual("2026-12-04T16:00:04.000000Z", shown["active_at"])


class PluginTest(testtools.TestCase):
    def test_make_client(self):
        client, _, _ = fakes.make_client()
        instance = types.SimpleNamespace(
            _api_version={"clouddisco": "1"}, session=client.adapter.session,
            interface="internal", region_name="RegionOne",
            _cli_options=types.SimpleNamespace(config={}))
        made = plugin.make_client(instance)
        self.assertIsInstance(made, cd_client.Client)
        self.assertEqual(("l3-ha", "internal", "RegionOne", None), (
            made.adapter.service_type, made.adapter.interface, made.adapter.region_name,
            made.adapter.endpoint_override))
        instance._cli_options.config["l3_ha_endpoint_override"] = "http://x:1"
        self.assertEqual("http://x:1", plugin.make_client(instance).adapter.endpoint_override)

    def test_build_option_parser(self):
        self.useFixture(fixtures.EnvironmentVariable("OS_CLOUDDISCO_API_VERSION"))
        parser = plugin.build_option_parser(argparse.ArgumentParser())
        self.assertEqual("1", parser.parse_args([]).os_clouddisco_api_version)
        self.assertEqual(plugin.API_VERSION_OPTION,
                         "os_" + "clouddisco_api_version")
        self.assertIn(plugin.DEFAULT_API_VERSION, plugin.API_VERSIONS)

    def test_entry_points(self):
        eps = importlib.metadata.entry_points()
        [ext] = [ep for ep in eps.select(group="openstack.cli.extension")
                 if ep.name == "clouddisco"]
        self.assertIs(plugin, ext.load())
        # OSC's command group for API_NAME and the version: openstack.<name>.v<major>.
        commands = {ep.name: ep.load() for ep in eps.select(group="openstack.clouddisco.v1")}
        self.assertEqual({
            "clouddisco_router_create": routers.CreateRouter,
            "clouddisco_router_list": routers.ListRouter,
            "clouddisco_router_show": routers.ShowRouter,
            "clouddisco_router_set": routers.SetRouter,
            "clouddisco_router_delete": routers.DeleteRouter,
            "clouddisco_agent_list": agents.ListAgent,
            "clouddisco_agent_show": agents.ShowAgent,
            "clouddisco_agent_set": agents.SetAgent,
            "clouddisco_failover_event_list": failover_events.ListFailoverEvent,
            "clouddisco_failover_event_show": failover_events.ShowFailoverEvent,
        }, commands)
