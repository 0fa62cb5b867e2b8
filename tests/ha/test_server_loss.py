"""The HA topology loses one server at a time, then Galera's quorum, under
traffic, and the data plane does not notice.

Each test builds ``Cloud(topology="ha")``: a 3-node Galera cluster written
through HAProxy, a 3-node RabbitMQ cluster with quorum queues, two API
replicas behind HAProxy, two scheduler replicas, three agents with their
node guards. ``lab.serverloss.Traffic`` pings steady routers every 20 ms,
creates and deletes other routers through HAProxy, and samples every
namespace for a gateway up twice, throughout.
"""

import time

import requests

from lab import netlab
from lab import serverloss
from tests.functional import cloud as cloud_mod

# The lease design keeps routers forwarding through a database without
# quorum (outage notices, doc/source/design.rst); hold the outage well past
# agent_down_time (3.5 s) so that any wrong move or fence would happen.
QUORUM_LOST_FOR = 10.0


@netlab.skip_unless_root
class ServerLossTest(cloud_mod.CloudTestCase):

    def build(self, workload: bool = True):
        cloud = self.make_cloud(topology="ha")
        traffic = serverloss.Traffic(cloud, workload=workload).start()
        self.addCleanup(traffic.stop)
        return cloud, traffic

    def test_each_server_killed_in_turn(self):
        """kill -9 of one Galera node (HAProxy's writer), one RabbitMQ node
        (the first in transport_url), one API replica and one scheduler
        replica, each restarted after 5 s: no fence, no move, no lost ping,
        no double copy, every 2xx create ACTIVE, the Galera nodes agree."""
        cloud, traffic = self.build()
        report = {}
        for fault in serverloss.single_server_faults(cloud):
            window = traffic.run(fault)
            report[fault.name] = traffic.problems(window)
        self.assertEqual({name: [] for name in report}, report)
        creates = [o for o in traffic.workload.ops if o["op"] == "create"]
        self.assertTrue(any(o["status"] == 201 for o in creates), "the workload ran")

    def test_galera_quorum_lost_then_bootstrapped(self):
        """Two of three Galera nodes killed: the API answers 503 (not 500,
        not a hang), the monitors move nothing, routers keep forwarding; after
        pc.bootstrap on the survivor and the others' restart, everything
        works again with no manual database edit."""
        cloud, traffic = self.build(workload=False)
        nodes = cloud.galera.nodes()
        survivor, lost = nodes[-1], nodes[:-1]
        lost_at = time.time()
        for node in lost:
            cloud.galera.kill(node)
        netlab.wait_for(lambda: (cloud.galera.status(survivor) or {}).get(
            "wsrep_cluster_status") not in (None, "Primary"), 30, 0.2,
            "the survivor to lose the Primary Component")
        answers = {}
        for method, path, body in (("GET", "/v1/routers", None),
                                   ("POST", "/v1/routers", {"name": "no-quorum"}),
                                   ("GET", "/v1/agents", None)):
            # Not a hang: 503 long before this timeout (bench/service_failover
            # measures how long).
            resp = requests.request(method, cloud.api_url + path, json=body,
                                    headers=cloud_mod.ADMIN_HEADERS, timeout=15)
            answers[f"{method} {path}"] = (resp.status_code, "Retry-After" in resp.headers)
        self.assertEqual({k: (503, True) for k in answers}, answers)
        time.sleep(max(0.0, lost_at + QUORUM_LOST_FOR - time.time()))
        self.assertEqual([], traffic.fences(lost_at), "a node fenced without quorum")
        gap = traffic.ping_gap(lost_at - 0.05)
        self.assertLess(gap, serverloss.GAP_BOUND, "routers stopped forwarding")

        cloud.galera.bootstrap(survivor)
        for node in lost:
            cloud.galera.start_node(node)
        healed_at = time.time()
        self.assertEqual([], traffic.moved(), "the monitors moved routers")
        self.assertEqual([], [e for e in cloud.events() if e["router_id"] in traffic.steady])
        fresh = cloud.wait_router(cloud.create_router("after-bootstrap")["id"], timeout=60)
        netlab.wait_for(lambda: cloud.probe.ping_once(fresh["external_gateway_ip"]), 30,
                        what="the router created after bootstrap to answer")
        self.assertEqual([], traffic.settle(healed_at))
        self.assertEqual({}, traffic.galera_disagreements())
        self.assertEqual([], traffic.fences(lost_at))
        self.assertEqual([], [v for v in traffic.sampler.violations()])
