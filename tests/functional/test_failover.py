"""The walking skeleton end to end: real processes, MariaDB, RabbitMQ, namespaces."""

import subprocess
import time

from lab import netlab
from tests.functional import cloud as cloud_mod


@netlab.skip_unless_root
class RouterLifecycleTest(cloud_mod.CloudTestCase):
    """Each test builds its own cloud of two agents ("a" and "b")."""

    def make_cloud(self, **kwargs):
        self.cloud = super().make_cloud(agents=("a", "b"), **kwargs)
        return self.cloud

    def disable(self, agent):
        agent_id = self.cloud.agents()[self.cloud.host(agent)]["id"]
        resp = self.cloud.api("PUT", f"/v1/agents/{agent_id}",
                              json={"admin_state_up": False}, expect=200)
        self.assertFalse(resp.json()["agent"]["admin_state_up"])

    def test_create_ping_delete(self):
        self.make_cloud()
        router = self.cloud.create_router("web")
        self.assertEqual("PENDING", router["status"])
        router = self.cloud.wait_router(router["id"])
        agent = self.cloud.agent_of(router)
        ns = self.cloud.namespace(agent, router["id"])
        self.assertIn(ns, self.cloud.router_namespaces(agent))
        self.assertEqual([ns], netlab.gateway_up_namespaces(
            self.cloud.token + "-", router["external_gateway_ip"]))
        self.assertTrue(netlab.wait_for(
            lambda: self.cloud.probe.ping_once(router["external_gateway_ip"]), 5,
            what="the gateway to answer ping"))
        agents = self.cloud.agents()
        self.assertEqual(1, agents[router["agent_host"]]["router_count"])

        self.cloud.api("DELETE", f"/v1/routers/{router['id']}", expect=204)
        self.cloud.wait_router_gone(router["id"])
        netlab.wait_for(lambda: ns not in self.cloud.router_namespaces(agent), 10,
                        what="the namespace to be removed")
        self.assertFalse(self.cloud.probe.ping_once(router["external_gateway_ip"], 0.3))

    def test_node_loss_moves_router(self):
        self.make_cloud()
        router = self.cloud.wait_router(self.cloud.create_router("r1")["id"])
        old = self.cloud.agent_of(router)
        new = "b" if old == "a" else "a"
        ip = router["external_gateway_ip"]
        with netlab.Pinger(self.cloud.probe, ip) as pinger:
            netlab.wait_for(lambda: pinger.replies(), 5, what="first ping reply")
            lost_at = self.cloud.lose_node(old)
            moved = self.cloud.wait_router(router["id"], agent_host=self.cloud.host(new),
                                           timeout=30)
            # Pings answer again from the new copy (the old namespace is gone).
            back = pinger.wait_reply_after(time.time(), timeout=15)
            gap = pinger.max_gap(after=lost_at - 0.05, before=back)
        self.assertGreater(gap, 0.2, "the node loss must have interrupted the pings")
        self.assertEqual([], self.cloud.router_namespaces(old))
        self.assertEqual([self.cloud.namespace(new, router["id"])],
                         netlab.gateway_up_namespaces(self.cloud.token + "-", ip))
        self.assertEqual(ip, moved["external_gateway_ip"])
        events = self.cloud.events(router["id"])
        self.assertEqual(1, len(events))
        event = events[0]
        agents = self.cloud.agents()
        self.assertEqual(agents[self.cloud.host(old)]["id"], event["old_agent_id"])
        self.assertEqual(agents[self.cloud.host(new)]["id"], event["new_agent_id"])
        self.assertEqual("agent_dead", event["cause"])
        for phase in ("last_heartbeat_at", "detected_at", "rescheduled_at", "active_at"):
            self.assertIsNotNone(event[phase], phase)
        self.assertLess(event["last_heartbeat_at"], event["detected_at"])
        self.assertLessEqual(event["detected_at"], event["rescheduled_at"])
        self.assertLessEqual(event["rescheduled_at"], event["active_at"])
        self.assertFalse(agents[self.cloud.host(old)]["alive"])
        self.assertEqual(0, agents[self.cloud.host(old)]["router_count"])

    def test_restarted_agent_adopts_and_resyncs(self):
        # A restart must fit in agent_down_time for the router to stay put
        # (restart_grace and leases make this robust in a later issue); give
        # a slow CI machine room.
        self.make_cloud(agent_down_time=15)
        self.disable("b")
        r1 = self.cloud.wait_router(self.cloud.create_router("keep")["id"])
        r2 = self.cloud.wait_router(self.cloud.create_router("drop")["id"])
        agent = "a"
        ns1 = self.cloud.namespace(agent, r1["id"])
        with netlab.Pinger(self.cloud.probe, r1["external_gateway_ip"]) as pinger:
            netlab.wait_for(lambda: pinger.replies(), 5, what="first ping reply")
            self.cloud.agent(agent).kill()
            killed_at = time.time()
            # While the agent is down, a router is deleted: the restarted agent
            # must find out from the resync and remove it.
            self.cloud.api("DELETE", f"/v1/routers/{r2['id']}", expect=204)
            self.cloud.start_agent(agent)
            netlab.wait_for(lambda: self.cloud.host(agent) in self.cloud.alive_hosts(), 30,
                            what="the restarted agent to report")
            self.cloud.wait_router_gone(r2["id"], timeout=30)
            time.sleep(1.0)
            gap = pinger.max_gap(after=killed_at - 1)
            self.assertTrue(self.cloud.probe.ping_once(r1["external_gateway_ip"]))
        # Adopted in place: same namespace, still ACTIVE on the same agent, no move.
        self.assertIn(ns1, self.cloud.router_namespaces(agent))
        self.assertEqual(self.cloud.host(agent), self.cloud.router(r1["id"])["agent_host"])
        self.assertEqual([], self.cloud.events(r1["id"]))
        self.assertLess(gap, 1.0, "pings to an adopted router must not stop")
        netlab.wait_for(lambda: self.cloud.namespace(agent, r2["id"]) not in
                        self.cloud.router_namespaces(agent), 10,
                        what="the deleted router's namespace to go")

    def test_disabled_agent_gets_no_new_routers(self):
        self.make_cloud()
        self.disable("b")
        routers = [self.cloud.create_router(f"r{i}") for i in range(4)]
        for r in routers:
            r = self.cloud.wait_router(r["id"])
            self.assertEqual(self.cloud.host("a"), r["agent_host"])
        self.assertEqual([], self.cloud.router_namespaces("b"))

    def test_cleanup_removes_only_stale_namespaces(self):
        # The agent's own resync (anti-entropy) removes leftovers too, so it is
        # stopped first; its node guard holds the lease meanwhile.
        self.make_cloud(restart_grace=60.0)
        router = self.cloud.wait_router(self.cloud.create_router("live")["id"])
        agent = self.cloud.agent_of(router)
        self.cloud.agent(agent).stop()
        # A leftover of a router this host no longer owns.
        stale = self.cloud.namespace(agent, "5d7a0f3e-0000-4000-8000-000000000000")
        subprocess.run(["ip", "netns", "add", stale], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", stale], capture_output=True)
        cleanup = [f"{cloud_mod.BIN}/clouddisco-cleanup", "--config-file",
                   self.cloud.config_path(f"agent-{agent}")]
        dry = subprocess.run(cleanup + ["--dry-run"], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(0, dry.returncode, dry.stderr)
        self.assertEqual([stale], dry.stdout.split())
        done = subprocess.run(cleanup, capture_output=True, text=True, timeout=60)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual([self.cloud.namespace(agent, router["id"])],
                         self.cloud.router_namespaces(agent))
        # Without a server, plain cleanup refuses to guess and removes nothing;
        # --all needs no server and removes everything of this prefix.
        offline = self.cloud.config_path("offline")
        with open(self.cloud.config_path(f"agent-{agent}")) as f:
            text = f.read().replace(self.cloud.transport_url,
                                    f"rabbit://guest:guest@127.0.0.1:{netlab.free_port()}/")
        with open(offline, "w") as f:
            f.write(text)
        offline_cleanup = cleanup[:2] + [offline]
        refused = subprocess.run(offline_cleanup, capture_output=True, text=True, timeout=60)
        self.assertEqual(3, refused.returncode, refused.stderr)
        self.assertIn("cannot reach the message broker", refused.stderr)
        self.assertEqual(1, len(self.cloud.router_namespaces(agent)))
        done = subprocess.run(offline_cleanup + ["--all"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn("removed 1 router(s), 0 failed", done.stdout)
        self.assertEqual([], self.cloud.router_namespaces(agent))


@netlab.skip_unless_root
class BrokerOutageTest(cloud_mod.CloudTestCase):
    """A private RabbitMQ is really stopped, then started again."""

    def start(self, **options):
        rabbit = netlab.PrivateRabbit()
        self.addCleanup(rabbit.destroy)
        rabbit.start()
        return rabbit, self.make_cloud(agents=("a",), transport_url=rabbit.transport_url,
                                       **options)

    def test_broker_outage_fences_nothing(self):
        """Reports go to the API meanwhile: the router keeps serving, and
        RPC work resumes when the broker is back."""
        rabbit, cloud = self.start()
        before = cloud.wait_router(cloud.create_router("before")["id"])
        rabbit.stop()
        time.sleep(cloud.agent_down_time + 2)
        self.assertEqual([cloud.namespace("a", before["id"])], cloud.router_namespaces("a"))
        self.assertTrue(cloud.probe.ping_once(before["external_gateway_ip"]))
        self.assertEqual("ACTIVE", cloud.router(before["id"])["status"])
        self.assertNotIn("fencing", open(cloud.guard("a").log_path).read())
        rabbit.start_again()
        after = cloud.wait_router(cloud.create_router("after")["id"], timeout=60)
        self.assertTrue(netlab.wait_for(
            lambda: cloud.probe.ping_once(after["external_gateway_ip"]), 10,
            what="the new router to answer"))
        self.assertEqual(cloud.host("a"), cloud.router(before["id"])["agent_host"])
        self.assertEqual([], cloud.events(before["id"]))

    def test_rpc_only_agent_fences_then_recovers_after_broker_returns(self):
        """Without HTTP reports the lease needs the broker: the node fences,
        the agent keeps retrying, and everything comes back after."""
        rabbit, cloud = self.start(http_reports=False)
        before = cloud.wait_router(cloud.create_router("before")["id"])
        rabbit.stop()
        time.sleep(cloud.lease_time + 1)
        self.assertTrue(cloud.agent("a").alive(), "the agent must not exit without a broker")
        # No broker, no lease: the node guard has fenced the node on its own.
        netlab.wait_for(lambda: not cloud.router_namespaces("a"), 10,
                        what="the node guard to fence the node")
        self.assertIn("lease expired without renewal", open(cloud.guard("a").log_path).read())
        rabbit.start_again()
        netlab.wait_for(lambda: cloud.host("a") in cloud.alive_hosts(), 60, 0.5,
                        "the agent to report again after the broker returned")
        # The router comes back (placed again on the re-registered agent) ...
        back = cloud.wait_router(before["id"], timeout=60)
        self.assertTrue(netlab.wait_for(
            lambda: cloud.probe.ping_once(back["external_gateway_ip"]), 10,
            what="the old router to answer again"))
        # ... and new routers work.
        after = cloud.wait_router(cloud.create_router("after")["id"], timeout=60)
        self.assertTrue(netlab.wait_for(
            lambda: cloud.probe.ping_once(after["external_gateway_ip"]), 10,
            what="the new router to answer"))
        log = open(cloud.agent("a").log_path).read()
        self.assertIn("state report failed", log)
        self.assertIn("connected to the scheduler; resyncing routers", log)
