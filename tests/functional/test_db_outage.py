"""A database outage must not reach the data plane either.

A 3-agent cloud whose every process reaches MariaDB through a proxy that the
test cuts, agents reporting over UDP first (``[agent] report_udp_endpoints``),
a 20 ms ping and the invariant sampler. While the database is unreachable
no report can be stored; the scheduler's lease receiver then answers with an
outage notice, the agents renew their leases on those (every replica must
say so, and only a lease still valid may be renewed), and the monitors move
nothing by silence until agent_down_time after the last notice.

Without outage notices (RPC and HTTP reports only: the same tests with the
receiver's notices switched off) every node fences itself within lease_time
and every router goes dark for the rest of the outage.
"""

import time

import requests

from clouddisco import lease
from lab import invariants
from lab import netlab
from tests.functional import cloud as cloud_mod

OUTAGE = 10.0  # seconds: the target, far past lease_time and agent_down_time


@netlab.skip_unless_root
class DatabaseOutageTest(cloud_mod.CloudTestCase):

    def build(self):
        cloud = self.make_cloud(agents=("a", "b", "c"), proxied_agents=("a", "b", "c"),
                                udp_reports=True, db_proxy=True)
        sampler = invariants.InvariantSampler(cloud.token + "-").start()
        self.addCleanup(sampler.stop)
        routers = [cloud.wait_router(cloud.create_router(f"r{i}")["id"]) for i in range(3)]
        # The scheduler holds failovers for agent_down_time after it starts.
        time.sleep(cloud.agent_down_time)
        return cloud, sampler, routers

    def api_statuses(self, cloud, seconds):
        """GET /v1/routers through the outage: status codes and durations."""
        seen = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                # 8 s: the API gives a stalled database 5 s ([database]
                # connection_parameters); waiting longer only stretches the
                # outage.
                code = requests.get(cloud.api_url + "/v1/routers",
                                    headers=cloud_mod.ADMIN_HEADERS, timeout=8).status_code
            except requests.RequestException as exc:
                code = type(exc).__name__
            seen.append((code, time.monotonic() - started))
            time.sleep(0.5)
        return seen

    def through_outage(self, cloud, routers, mode):
        with netlab.Pinger(cloud.probe, routers[0]["external_gateway_ip"]) as pinger:
            netlab.wait_for(lambda: len(pinger.replies()) > 5, 10, what="pings")
            started = time.time()
            self.fences_before = self.fences(cloud)
            cloud.cut_db(mode)
            statuses = self.api_statuses(cloud, OUTAGE)
            cloud.restore_db()
            netlab.wait_for(lambda: cloud.alive_hosts() >= {cloud.host(n) for n in
                                                             cloud.agent_names},
                            60, 0.5, "every agent to report again")
            time.sleep(cloud.agent_down_time + 1)  # long enough for any wrong move
            return pinger.max_gap(after=started - 0.05), statuses

    def assert_api_unavailable_not_broken(self, statuses):
        codes = {code for code, _ in statuses}
        self.assertTrue(codes, "no request was made during the outage")
        self.assertFalse(codes & {500, "ConnectionError", "ReadTimeout"},
                         f"the API answered {statuses} during the outage")
        self.assertIn(503, codes, f"the API answered {statuses} during the outage")

    def test_database_unreachable_fences_moves_and_darkens_nothing(self):
        cloud, sampler, routers = self.build()
        gap, statuses = self.through_outage(cloud, routers, "reset")
        self.assert_untouched(cloud, sampler, routers, gap, self.fences_before,
                              "during a database outage")
        self.assert_api_unavailable_not_broken(statuses)
        # The database is back: a router created now is placed and served.
        fresh = cloud.wait_router(cloud.create_router("after")["id"], timeout=60)
        self.assertTrue(netlab.wait_for(
            lambda: cloud.probe.ping_once(fresh["external_gateway_ip"]), 30,
            what="the new router to answer"))

    def test_database_stalled_fences_moves_and_darkens_nothing(self):
        """Connections hang rather than fail: the receiver's write deadline
        turns the stall into outage notices."""
        cloud, sampler, routers = self.build()
        gap, statuses = self.through_outage(cloud, routers, "drop")
        self.assert_untouched(cloud, sampler, routers, gap, self.fences_before,
                              "during a database outage")
        # [database] connection_parameters read_timeout=5: a request the
        # stall holds fails within 5 s, as a 503.
        self.assertIn(503, {code for code, _ in statuses}, statuses)
        self.assertNotIn(500, {code for code, _ in statuses}, statuses)

    def test_agent_restarted_during_a_database_outage_fences_nothing(self):
        """The node guard renews the lease on the replicas' outage answers
        while the agent restarts, and restart_grace counts from the outage's
        end: the new agent registers once the database is back and adopts
        its routers. Before, the guard's renewals (RPC or HTTP, both needing
        the database) failed and the node fenced lease_time after the kill."""
        cloud, sampler, routers = self.build()
        victim = cloud.agent_of(routers[0])
        generation = self.generation(cloud, victim)
        with netlab.Pinger(cloud.probe, routers[0]["external_gateway_ip"]) as pinger:
            netlab.wait_for(lambda: len(pinger.replies()) > 5, 10, what="pings")
            started = time.time()
            self.fences_before = self.fences(cloud)
            cloud.cut_db("reset")
            time.sleep(1.0)
            cloud.agent(victim).kill()
            time.sleep(1.0)
            cloud.start_agent(victim)
            time.sleep(OUTAGE - 2.0)
            cloud.restore_db()
            netlab.wait_for(lambda: self.generation(cloud, victim) > generation, 30, 0.5,
                            "the restarted agent to register again")
            time.sleep(cloud.agent_down_time + 1)  # long enough for any wrong move
            gap = pinger.max_gap(after=started - 0.05)
        self.assert_untouched(cloud, sampler, routers, gap, self.fences_before,
                              "during a database outage")

    @staticmethod
    def generation(cloud, agent):
        """The lease generation the node's agent last wrote."""
        return lease.read(cloud.state_dir(agent), cloud.host(agent), lease.AGENT).generation

    def test_node_cut_off_during_a_database_outage_still_fences_and_moves(self):
        """Outage notices renew only what reaches every replica: a node cut
        off from the control plane fences within lease_time as always, and
        its routers move once the database is back, with no second copy."""
        cloud, sampler, routers = self.build()
        victim = cloud.agent_of(routers[0])
        before = self.fences(cloud)
        cloud.cut_db("reset")
        time.sleep(1.0)
        cloud.cut_off(victim)
        netlab.wait_for(lambda: self.fences(cloud)[victim] > before[victim], 15,
                        what=f"{victim} to fence itself")
        time.sleep(OUTAGE - 1.0)
        self.assertEqual({a: n for a, n in before.items() if a != victim},
                         {a: n for a, n in self.fences(cloud).items() if a != victim},
                         "a node that was not cut off fenced itself")
        cloud.restore_db()
        old_host = cloud.host(victim)

        def moved():
            now = cloud.router(routers[0]["id"])
            return (now and now["status"] == "ACTIVE" and now["agent_host"] != old_host
                    and cloud.probe.ping_once(routers[0]["external_gateway_ip"]))
        netlab.wait_for(moved, 60, 0.5, "the cut-off node's router to serve elsewhere")
        sampler.assert_no_double_active()
        sampler.assert_each_has_one_copy([r["external_gateway_ip"] for r in routers])
        cloud.reconnect(victim)
