"""A wall-clock step on scheduler hosts must not reach the data plane.

Two scheduler replicas, one clock stepped 1 s ahead and the other 1 s behind
(lab/clockskew: ``time.time()`` of their processes), 3 agents reporting over
RPC only, as a node with no ``report_endpoints`` or UDP endpoints does, a
20 ms ping and the invariant sampler.

What compares wall clocks across hosts is the RPC call deadline. Before
``[DEFAULT] max_clock_skew`` the replica whose clock runs ahead took every
state report (timeout 1 s) for one that had arrived after its caller gave
up, and refused it: the reports it got renewed nothing, and nodes whose two
reports in a row went to it fenced themselves. Liveness itself is judged on
the database's clock, so no monitor declares anyone dead either way.
"""

import time

from lab import invariants
from lab import netlab
from tests.functional import cloud as cloud_mod

SKEW = 1.0  # seconds, each way: 2 s between the two replicas
HOLD = 15.0  # seconds of skew: many lease_time (2 s) periods


@netlab.skip_unless_root
class SchedulerClockSkewTest(cloud_mod.CloudTestCase):

    def test_replicas_stepped_both_ways_fence_move_and_darken_nothing(self):
        cloud = self.make_cloud(agents=("a", "b", "c"), schedulers=2, clock_skew=True,
                                http_reports=False)
        sampler = invariants.InvariantSampler(cloud.token + "-").start()
        self.addCleanup(sampler.stop)
        routers = [cloud.wait_router(cloud.create_router(f"r{i}")["id"]) for i in range(6)]
        # The schedulers hold failovers for agent_down_time after they start.
        time.sleep(cloud.agent_down_time)
        fences_before = self.fences(cloud)
        gateways = [r["external_gateway_ip"] for r in routers]
        with netlab.Pinger(cloud.probe, gateways[0]) as pinger:
            netlab.wait_for(lambda: len(pinger.replies()) > 5, 10, what="pings")
            started = time.time()
            cloud.skew_clock(1, +SKEW)
            cloud.skew_clock(2, -SKEW)
            self.addCleanup(cloud.skew_clock, 2, 0.0)
            self.addCleanup(cloud.skew_clock, 1, 0.0)
            dead_seen = set()
            end = time.monotonic() + HOLD
            while time.monotonic() < end:
                dead_seen |= {cloud.host(n) for n in cloud.agent_names} - cloud.alive_hosts()
                time.sleep(0.5)
            gap = pinger.max_gap(after=started - 0.05)
        self.assert_untouched(cloud, sampler, routers, gap, fences_before,
                              "while scheduler clocks were skewed")
        self.assertEqual(set(), dead_seen, "the API showed an agent dead")
        # The skew was there: the replica ahead saw fresh calls arrive after
        # their callers' deadlines, and let them through.
        log = cloud.logs(tail=None)["scheduler-1.log"].decode(errors="replace")
        self.assertIn("within max_clock_skew 1.0s: processed", log)
