"""Tests of the functional-test lab helpers themselves (lab.netlab).

The network and broker tests need root (namespaces, bridges, a private
RabbitMQ node); the pure bookkeeping of Pinger runs anywhere.
"""

import os
import shutil
import subprocess
import time
import unittest

from lab import netlab


class FakeProc:
    """Just enough of Popen for Pinger._read."""

    def __init__(self, lines):
        self.stdout = iter(lines)


class TestPingerBookkeeping(unittest.TestCase):
    """max_gap/gaps/first_reply_after on known reply times (no root)."""

    def _pinger(self, replies):
        p = netlab.Pinger("unused-ns", "10.250.0.1")
        p._replies = list(replies)
        return p

    def test_parses_ping_output(self):
        p = netlab.Pinger("unused-ns", "10.250.0.1")
        p._read(FakeProc([
            "PING 10.250.0.1 (10.250.0.1) 56(84) bytes of data.\n",
            "[1700000000.100000] 64 bytes from 10.250.0.1: icmp_seq=1 ttl=64 time=0.05 ms\n",
            "[1700000000.120000] no answer yet for icmp_seq=2\n",
            "[1700000000.140500] 64 bytes from 10.250.0.1: icmp_seq=3 ttl=64 time=0.04 ms\n",
        ]))
        self.assertEqual([1700000000.1, 1700000000.1405], p.replies())
        self.assertIn("no answer yet", p.output_tail[-1])

    def test_max_gap_whole_run(self):
        p = self._pinger([10.0, 10.02, 10.04, 10.6, 10.62])
        self.assertAlmostEqual(0.56, p.max_gap(), places=6)

    def test_max_gap_counts_outage_straddling_window_start(self):
        # Failure injected at 10.05: the outage began with the last reply
        # before it and must count in full.
        p = self._pinger([10.0, 10.02, 10.04, 10.6, 10.62])
        self.assertAlmostEqual(0.56, p.max_gap(after=10.05), places=6)
        self.assertAlmostEqual(0.02, p.max_gap(after=10.6), places=6)
        self.assertAlmostEqual(0.02, p.max_gap(before=10.03), places=6)

    def test_max_gap_infinite_without_replies_after(self):
        p = self._pinger([10.0, 10.02])
        self.assertEqual(float("inf"), p.max_gap(after=10.5))
        self.assertEqual(float("inf"), self._pinger([]).max_gap())

    def test_max_gap_single_reply(self):
        self.assertEqual(0.0, self._pinger([10.0]).max_gap())

    def test_gaps_and_first_reply_after(self):
        p = self._pinger([10.0, 10.02, 10.5, 10.52, 11.3])
        self.assertEqual([(10.02, 10.5), (10.52, 11.3)], p.gaps(0.3))
        self.assertEqual([(10.52, 11.3)], p.gaps(0.5))
        self.assertEqual(10.5, p.first_reply_after(10.02))
        self.assertIsNone(p.first_reply_after(11.3))


class TestSmallHelpers(unittest.TestCase):

    def test_wait_for_returns_value(self):
        calls = []

        def pred():
            calls.append(1)
            return len(calls) >= 3 and "ready"

        self.assertEqual("ready", netlab.wait_for(pred, 5, interval=0.001))

    def test_wait_for_times_out(self):
        with self.assertRaisesRegex(TimeoutError,
                                    r"timed out after 0.1s waiting for nothing"):
            netlab.wait_for(lambda: None, 0.1, what="nothing")

    def test_free_port_is_bindable(self):
        port = netlab.free_port()
        self.assertGreater(port, 1024)
        self.assertFalse(netlab.port_open(port))

    def test_pid_alive(self):
        self.assertTrue(netlab.pid_alive(os.getpid()))
        proc = subprocess.Popen(["true"])
        proc.wait()
        self.assertFalse(netlab.pid_alive(proc.pid))


@netlab.skip_unless_root
class TestNetwork(unittest.TestCase):

    def setUp(self):
        self.bridge = netlab.Bridge()
        self.addCleanup(self.bridge.delete)
        self.a = netlab.ProbeNamespace(self.bridge, "10.250.255.1/16")
        self.addCleanup(self.a.delete)
        self.b = netlab.ProbeNamespace(self.bridge, "10.250.255.2/16")
        self.addCleanup(self.b.delete)

    def test_probes_ping_each_other(self):
        self.assertTrue(self.a.ping_once(self.b.ip))
        self.assertTrue(self.b.ping_once(self.a.ip))
        # Nobody owns .3 on this private bridge.
        self.assertFalse(self.a.ping_once("10.250.255.3", timeout=0.3))

    def test_pinger_sees_outage_and_recovery(self):
        with netlab.Pinger(self.a, self.b.ip) as pinger:
            pinger.wait_reply_after(time.time(), timeout=5)
            time.sleep(0.3)
            t_remove = time.time()
            self.b.del_address(self.b.cidr)
            time.sleep(0.5)
            t_add = time.time()
            self.b.add_address(self.b.cidr)
            pinger.wait_reply_after(t_add, timeout=5)
            time.sleep(0.2)
        self.assertFalse(pinger.running)
        gap = pinger.max_gap(after=t_remove)
        self.assertGreaterEqual(gap, 0.4)
        self.assertLess(gap, 5.0)
        # Before the failure the replies were dense; the outage is visible
        # as a gap that grew.
        self.assertLess(pinger.max_gap(before=t_remove - 0.1), gap)
        self.assertTrue(any(s <= t_add and e >= t_add for s, e in pinger.gaps(0.3)))
        self.assertIsNotNone(pinger.first_reply_after(t_add))

    def test_gateway_up_namespaces(self):
        prefix = "cdt-probe-"
        self.assertIn(self.a.name, netlab.namespaces_with_prefix(prefix))
        self.assertEqual([self.b.name],
                         netlab.gateway_up_namespaces(prefix, self.b.ip))
        self.b.exec("ip", "link", "set", self.b.ifname, "down")
        self.assertEqual([], netlab.gateway_up_namespaces(prefix, self.b.ip))
        self.assertFalse(netlab.ns_has_up_ip(self.b.name, self.b.ip))

    def test_delete_is_complete_and_idempotent(self):
        br = netlab.Bridge()
        self.addCleanup(br.delete)
        probe = netlab.ProbeNamespace(br, "10.250.254.1/16")
        self.addCleanup(probe.delete)
        probe.delete()
        probe.delete()
        br.delete()
        br.delete()
        self.assertNotIn(probe.name, netlab.namespaces_with_prefix("cdt-"))
        self.assertFalse(os.path.exists(f"/sys/class/net/{probe.host_veth}"))
        self.assertFalse(os.path.exists(f"/sys/class/net/{br.name}"))


def _amqp_works(url):
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
            with conn.SimpleQueue("cdt-netlab-check") as queue:
                queue.put({"hello": "world"})
                msg = queue.get(timeout=5)
                msg.ack()
                return msg.payload == {"hello": "world"}
    except Exception:  # any failure means "broker unusable"
        return False


@netlab.skip_unless_root
@unittest.skipUnless(os.path.exists(f"{netlab.RABBIT_BIN}/rabbitmq-server"),
                     "rabbitmq-server is not installed")
class TestPrivateRabbit(unittest.TestCase):

    def test_lifecycle(self):
        machine_broker_up = netlab.port_open(5672)
        rabbit = netlab.PrivateRabbit()
        self.addCleanup(rabbit.destroy)
        self.assertNotEqual(5672, rabbit.port)

        rabbit.start()
        self.assertLess(rabbit.last_start_seconds, 60)
        self.assertTrue(rabbit.running)
        self.assertTrue(rabbit.transport_url.startswith("rabbit://guest:guest@127.0.0.1:"))
        self.assertTrue(_amqp_works(rabbit.amqp_url))

        rabbit.stop()
        self.assertFalse(rabbit.running)
        self.assertFalse(_amqp_works(rabbit.amqp_url))

        rabbit.start_again()
        self.assertTrue(_amqp_works(rabbit.amqp_url))

        rabbit.kill()
        self.assertFalse(rabbit.running)
        self.assertFalse(netlab.port_open(rabbit.port))
        rabbit.start_again()
        self.assertTrue(_amqp_works(rabbit.amqp_url))

        pids = rabbit.pids()
        self.assertGreaterEqual(len(pids), 3)  # shell, beam, epmd
        tmpdir = rabbit.tmpdir
        rabbit.destroy()
        for pid in pids:
            self.assertFalse(netlab.pid_alive(pid), f"pid {pid} survived destroy()")
        self.assertFalse(os.path.exists(tmpdir))
        # The machine's own broker was not touched.
        self.assertEqual(machine_broker_up, netlab.port_open(5672))


def _mariadb_up():
    return netlab.port_open(3306)


@unittest.skipUnless(_mariadb_up(), "MariaDB is not listening on 127.0.0.1:3306")
class TestTempDatabase(unittest.TestCase):

    def test_create_use_drop(self):
        import sqlalchemy as sa

        db = netlab.TempDatabase()
        self.addCleanup(db.drop)
        self.assertTrue(db.name.startswith("clouddisco_t"))
        self.assertTrue(db.url.startswith("mysql+pymysql://"))
        self.assertTrue(db.url.endswith(f"/{db.name}?charset=utf8mb4"))
        self.assertTrue(db.exists())

        engine = sa.create_engine(db.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE t (id INT PRIMARY KEY)"))
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            with engine.connect() as conn:
                self.assertEqual(1, conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar())
        finally:
            engine.dispose()

        db.drop()
        db.drop()
        self.assertFalse(db.exists())

    def test_context_manager(self):
        with netlab.TempDatabase() as db:
            self.assertTrue(db.exists())
        self.assertFalse(db.exists())


@unittest.skipUnless(shutil.which("ip"), "iproute2 is not installed")
class TestNamespaceListing(unittest.TestCase):

    def test_unknown_prefix_is_empty(self):
        self.assertEqual([], netlab.namespaces_with_prefix("cdt-no-such-prefix-"))
        self.assertEqual([], netlab.gateway_up_namespaces("cdt-no-such-prefix-", "10.250.0.1"))
