"""A real 3-node RabbitMQ cluster with quorum queues: RPC rides through the
crash of a node (lab.rabbitcluster; bench/rabbit_failover.py measures it).

30-40 s on the 2-core machine: bring-up 20-24 s, the crash and its
observation 2-4 s, the rejoin 6-8 s.
"""

import os
import time
import unittest

from lab import netlab
from lab import rabbitcluster


@netlab.skip_unless_root
@unittest.skipUnless(os.path.exists(f"{netlab.RABBIT_BIN}/rabbitmq-server"),
                     "rabbitmq-server is not installed")
class TestRabbitCluster(unittest.TestCase):

    def test_rpc_rides_through_a_node_crash(self):
        machine_broker_up = netlab.port_open(5672)
        cluster = rabbitcluster.RabbitCluster(3)
        self.addCleanup(cluster.destroy)
        cluster.start()
        self.assertEqual([1, 2, 3], cluster.running_nodes())
        self.assertEqual(len(set(cluster.ports)), 3)
        self.assertNotIn(5672, cluster.ports)
        self.assertEqual(
            "rabbit://" + ",".join(f"guest:guest@127.0.0.1:{p}" for p in cluster.ports)
            + "/", cluster.transport_url)

        traffic = rabbitcluster.RpcTraffic(cluster.transport_url,
                                           rabbitcluster.FAILOVER_SETTINGS)
        self.addCleanup(traffic.stop)
        traffic.start()
        # The topic queues are quorum queues with a member on every node.
        queues = {q["name"]: q for q in cluster.queues()}
        topic_queue = queues[traffic.topic]
        self.assertEqual("quorum", topic_queue["type"])
        self.assertEqual(sorted(cluster.nodenames), sorted(topic_queue["members"]))

        # Crash the node the client waits for its replies on.
        ports = traffic.ports()
        self.assertTrue(ports["client_reply"], ports)
        victim = cluster.index_of(ports["client_reply"][0])
        crashed_at = time.monotonic()
        cluster.kill(victim)
        netlab.wait_for(lambda: traffic.ok_calls_after(crashed_at) >= 50, 15,
                        what="50 calls to succeed after the crash")
        self.assertNotIn(cluster.node(victim).port, traffic.ports()["client_reply"])
        traffic.stop_traffic(drain=5.0)
        result = traffic.summary(crashed_at)
        self.assertLess(result["call_stall_s"], 5.0, result)
        self.assertEqual(0, result["casts_lost"], result)
        self.assertGreater(result["casts_sent"], 100, result)
        traffic.stop()
        self.assertEqual(sorted({1, 2, 3} - {victim}), cluster.running_nodes())

        # Restarted with its data, it rejoins by itself.
        cluster.start_node(victim)
        self.assertEqual([1, 2, 3], cluster.running_nodes())

        pids = cluster.pids()
        self.assertGreaterEqual(len(pids), 7)  # 3 x (shell, beam) + epmd
        tmpdirs = [n.tmpdir for n in cluster.nodes]
        cluster.destroy()
        cluster.destroy()  # idempotent
        for pid in pids:
            self.assertFalse(netlab.pid_alive(pid), f"pid {pid} survived destroy()")
        for d in tmpdirs:
            self.assertFalse(os.path.exists(d))
        self.assertEqual(machine_broker_up, netlab.port_open(5672))
