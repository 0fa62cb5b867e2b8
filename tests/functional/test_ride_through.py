"""Control-plane outages must not reach the data plane.

A 3-agent cloud of real processes, with node guards, pinging a gateway every
20 ms and sampling every namespace for double copies. The whole scheduler (its
master and every worker) is killed and stays down for several
agent_down_times; then every agent's link to RabbitMQ is cut for as long.
Nothing may fence, move or go dark, and the API keeps showing the routers
ACTIVE, because they are.

With RPC-only reports (``Cloud(http_reports=False)``, the behaviour before
agents could report to the API) the same tests fail: every node fences within
lease_time and every router goes dark for the rest of the outage.
"""

import time

from lab import invariants
from lab import netlab
from tests.functional import cloud as cloud_mod

OUTAGE = 8.0  # seconds: well past lease_time (2 s) and agent_down_time (3 s)


@netlab.skip_unless_root
class RideThroughTest(cloud_mod.CloudTestCase):

    def build(self, **options):
        cloud = self.make_cloud(agents=("a", "b", "c"), proxied_agents=("a", "b", "c"),
                                **options)
        sampler = invariants.InvariantSampler(cloud.token + "-").start()
        self.addCleanup(sampler.stop)
        routers = [cloud.wait_router(cloud.create_router(f"r{i}")["id"]) for i in range(3)]
        return cloud, sampler, routers

    def through(self, cloud, routers, outage, heal):
        """Run ``outage``, wait OUTAGE seconds under a 20 ms ping of the first
        router, ``heal``; return the longest ping gap."""
        with netlab.Pinger(cloud.probe, routers[0]["external_gateway_ip"]) as pinger:
            netlab.wait_for(lambda: len(pinger.replies()) > 5, 10, what="pings")
            started = time.time()
            outage()
            time.sleep(OUTAGE)
            heal()
            netlab.wait_for(lambda: cloud.alive_hosts() >= {cloud.host(n) for n in
                                                             cloud.agent_names},
                            60, 0.5, "every agent to report again")
            time.sleep(cloud.agent_down_time)  # long enough for any wrong move
            return pinger.max_gap(after=started - 0.05)

    def kill_scheduler(self, cloud):
        cloud.scheduler(1).kill_group()

    def test_every_scheduler_killed_moves_and_darkens_nothing(self):
        cloud, sampler, routers = self.build()
        gap = self.through(cloud, routers, lambda: self.kill_scheduler(cloud),
                           lambda: cloud.start_scheduler(1))
        self.assert_untouched(cloud, sampler, routers, gap,
                              {n: 0 for n in cloud.agent_names},
                              "during a control-plane outage")

    def test_broker_unreachable_moves_and_darkens_nothing(self):
        cloud, sampler, routers = self.build()

        def cut_broker():
            for name in cloud.agent_names:
                cloud.proxy(f"agent-{name}").cut("reset")

        def heal():
            for name in cloud.agent_names:
                cloud.proxy(f"agent-{name}").restore()

        gap = self.through(cloud, routers, cut_broker, heal)
        self.assert_untouched(cloud, sampler, routers, gap,
                              {n: 0 for n in cloud.agent_names},
                              "during a control-plane outage")
        # RPC is back: a router created now is placed and served.
        fresh = cloud.wait_router(cloud.create_router("after")["id"], timeout=60)
        self.assertTrue(netlab.wait_for(
            lambda: cloud.probe.ping_once(fresh["external_gateway_ip"]), 30,
            what="the new router to answer"))


@netlab.skip_unless_root
class UdpRideThroughTest(RideThroughTest):
    """The same outages with UDP state reports first ([agent]
    report_udp_endpoints): killing the scheduler takes its lease receiver with
    it, so RPC and HTTP must take over; cutting the broker leaves UDP up."""

    def build(self, **options):
        return super().build(udp_reports=True, **options)


@netlab.skip_unless_root
class FenceDuringBrokerCutTest(cloud_mod.CloudTestCase):
    """A node whose agent dies while its link to RabbitMQ is cut fences
    (restart_grace), and its guard reports the fence over HTTP to the API:
    the monitors move the routers as a fence (cause agent_fenced) while the
    link is still cut. Over RPC only the report waited for the broker, the
    routers moved by silence (agent_dead) seconds later, and meanwhile the
    API showed them ACTIVE on a node that had removed them."""

    def test_fence_reported_over_http_moves_the_routers_during_the_cut(self):
        cloud = self.make_cloud(agents=("a", "b"), proxied_agents=("a",), restart_grace=2.0)
        sampler = invariants.InvariantSampler(cloud.token + "-").start()
        self.addCleanup(sampler.stop)
        routers = [cloud.wait_router(cloud.create_router(f"r{i}")["id"]) for i in range(4)]
        mine = [r for r in routers if r["agent_host"] == cloud.host("a")]
        if not mine:
            self.skipTest("no router was placed on agent a")
        cloud.proxy("agent-a").cut("drop")
        self.addCleanup(cloud.proxy("agent-a").restore)
        time.sleep(1.5)  # reports now go over HTTP
        cloud.agent("a").kill()  # and it does not come back

        def moved():
            now = [cloud.router(r["id"]) for r in mine]
            return all(n["status"] == "ACTIVE" and n["agent_host"] == cloud.host("b")
                       for n in now)
        netlab.wait_for(moved, 30, 0.2, "agent a's routers to serve on b")
        for r in mine:
            causes = [e["cause"] for e in cloud.events(r["id"])]
            self.assertEqual(["agent_fenced"], causes, r["id"])
            self.assertTrue(cloud.probe.ping_once(r["external_gateway_ip"]))
        guard_log = open(cloud.guard("a").log_path).read()
        self.assertIn("over HTTP: the monitors move the routers", guard_log)
        sampler.assert_no_double_active()
