"""Functional test of the Galera + HAProxy lab (lab.galera, lab.haproxy).

One real 3-node MariaDB Galera cluster and one real HAProxy on 127.0.0.1,
both private to the test: a writer crash is ridden through by HAProxy with
no committed row lost, the crashed node rejoins by IST, and a cluster that
lost two of three nodes is brought back by bootstrapping the survivor.
About 20 s on the 2-core machine, most of it the cluster bring-up.
Root only: the nodes run as the mysql user in a chowned temp dir.

HAProxyHttpBalancerTest checks the HTTP side of lab.haproxy against local
replicas (no root, ~3 s).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pymysql
import requests
import sqlalchemy as sa
import testtools
from testtools import content

from lab import galera
from lab import haproxy
from lab import netlab

DB = "lab"


@netlab.skip_unless_root
class GaleraLabTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.cluster = galera.GaleraCluster()
        self.addCleanup(self.cluster.destroy)
        self.proxy = haproxy.HAProxy()
        self.addCleanup(self.proxy.destroy)
        self.addOnException(self._attach_logs)
        self.cluster.start()
        self.cluster.create_database(DB)
        self.cluster.execute(1, "CREATE TABLE rows_ (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
                                " v VARCHAR(8))", database=DB)
        self.port = self.proxy.add_tcp_writer("db", self.cluster.servers(),
                                              check_user=self.cluster.check_user)
        self.proxy.start()
        for node in self.cluster.nodes():
            self.proxy.wait_server_status("db", f"node{node}", "UP")

    def _attach_logs(self, exc_info: object) -> None:
        for node in self.cluster.nodes():
            self.addDetail(f"node{node}-error.log", content.text_content(
                self.cluster.log_tail(node, 60)))
            self.addDetail(f"node{node}-status", content.text_content(
                repr(self.cluster.status(node))))
        self.addDetail("haproxy.log", content.text_content(self.proxy.log_tail(60)))

    def via_proxy(self) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.cluster.user,
                               password=self.cluster.password, database=DB,
                               autocommit=True, connect_timeout=2, read_timeout=30)

    def writer_node(self) -> int:
        """The node HAProxy sends clients to, as that node names itself."""
        return galera.node_behind(self.via_proxy)

    def ids_on(self, node: int) -> set[int]:
        rows = self.cluster.execute(node, "SELECT id FROM rows_", database=DB)
        return {r[0] for r in rows}

    def test_disagreements_finds_a_divergent_node_under_live_writes(self) -> None:
        """The consistency check of tests/ha: a write that bypassed
        replication on one node (wsrep_on=OFF) is found, while another table
        is written through HAProxy all along and still counts as agreeing."""
        self.cluster.execute(1, "CREATE TABLE other (id INT PRIMARY KEY, v INT)",
                             database=DB)
        # A commit every 0.25 s, about the rate of a small cloud's heartbeats.
        loop = galera.WriteLoop(self.via_proxy, "rows_", interval=0.25).start()
        self.addCleanup(loop.stop)
        netlab.wait_for(lambda: len(loop.commits) >= 4, 20, what="4 commits")
        self.assertEqual({}, self.cluster.disagreements(DB))
        conn = self.cluster.connect(3, DB)
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_on = OFF")
            cur.execute("INSERT INTO other VALUES (1, 1)")
        differ = self.cluster.disagreements(DB)
        self.assertEqual(["other"], sorted(differ))
        self.assertEqual(1, len({differ["other"][1], differ["other"][2]}))
        self.assertNotEqual(differ["other"][1], differ["other"][3])

    def test_writer_crash_ist_rejoin_and_quorum_loss(self) -> None:
        cluster, proxy = self.cluster, self.proxy
        self.assertEqual(1, self.writer_node())

        # -- kill -9 of the writer while a client writes through HAProxy
        loop = galera.WriteLoop(self.via_proxy, "rows_").start()
        self.addCleanup(loop.stop)
        netlab.wait_for(lambda: len(loop.commits) >= 30, 20, what="30 commits")
        t_kill = time.monotonic()
        cluster.kill(1)
        netlab.wait_for(lambda: sum(t > t_kill for t in loop.commits) >= 30, 30,
                        what="30 commits after the writer died")
        loop.stop()
        self.assertEqual([2, 3], cluster.alive_nodes())
        new_writer = self.writer_node()
        self.assertIn(new_writer, (2, 3))
        self.assertEqual(f"node{new_writer}", proxy.writer("db"))
        # The tuned evs timeouts: the client waits ~1.3 s, not ~6 s.
        self.assertLess(loop.max_gap(after=t_kill), 4.0)
        proxy.wait_server_status("db", "node1", "DOWN")
        committed = set(loop.committed_ids)
        for node in (2, 3):
            present = self.ids_on(node)
            self.assertEqual(set(), committed - present, f"rows lost on node{node}")
            # A row may exist whose commit reply was lost with the writer.
            self.assertLessEqual(len(present - committed), len(loop.errors))

        # -- the killed node rejoins by IST, and all three agree
        cluster.start_node(1)
        self.assertEqual("IST", cluster.state_transfer(1))
        proxy.wait_server_status("db", "node1", "UP")
        # No fail-back: clients stay on the node they failed over to.
        self.assertEqual(new_writer, self.writer_node())
        engine = sa.create_engine(cluster.url_for_port(self.port, DB))
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO rows_ (v) VALUES ('after')"))
        sums = cluster.checksum(DB)
        self.assertEqual([1, 2, 3], sorted(sums))
        self.assertEqual(1, len({s["rows_"] for s in sums.values()}), sums)
        self.assertEqual(self.ids_on(1), self.ids_on(new_writer))

        # -- two nodes die: the survivor has no quorum and refuses SQL
        survivor = new_writer
        for node in cluster.nodes():
            if node != survivor:
                cluster.kill(node)
        netlab.wait_for(
            lambda: (cluster.status(survivor) or {}).get("wsrep_cluster_status")
            == "non-Primary", 15, what=f"node{survivor} to lose quorum")
        with self.assertRaises(pymysql.err.MySQLError) as ctx:
            cluster.execute(survivor, "INSERT INTO rows_ (v) VALUES ('noquorum')",
                            database=DB)
        self.assertEqual(1047, ctx.exception.args[0])
        # HAProxy's Galera check sees a node that is not Synced as down.
        proxy.wait_server_status("db", f"node{survivor}", "DOWN")

        # -- an operator bootstraps the survivor: writes work again
        cluster.bootstrap(survivor)
        st = cluster.status(survivor)
        self.assertEqual(("Primary", 1), (st["wsrep_cluster_status"],
                                          st["wsrep_cluster_size"]))
        proxy.wait_server_status("db", f"node{survivor}", "UP")
        engine.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO rows_ (v) VALUES ('boot')"))
            node_name = conn.execute(sa.text("SELECT @@wsrep_node_name")).scalar()
        self.assertEqual(f"node{survivor}", node_name)
        self.assertIn("boot", {r[0] for r in cluster.execute(
            survivor, "SELECT v FROM rows_", database=DB)})


class _CrashyReplica:
    """An HTTP "replica" that answers its health check and drops every
    other request without a response, like a replica dying mid-request;
    counts the requests that reached it, by method."""

    def __init__(self, hits: collections.Counter[str]) -> None:
        self.hits = hits
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                line = conn.recv(65536).split(b"\r\n", 1)[0].decode()
                if line.startswith("GET /health "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                elif line:
                    self.hits[line.split()[0]] += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class HAProxyHttpBalancerTest(testtools.TestCase):
    """add_http_balancer(): a killed replica costs no failed request, and
    only GET/HEAD are replayed after a replica died mid-request. No root."""

    def start_proxy(self, servers: list[tuple[str, int]], check_path: str) -> int:
        proxy = haproxy.HAProxy()
        self.addCleanup(proxy.destroy)
        port = proxy.add_http_balancer("api", servers, check_path=check_path)
        proxy.start()
        for name in proxy.server_state("api"):
            proxy.wait_server_status("api", name, "UP")
        self.proxy = proxy
        return port

    def test_killed_replica_costs_no_request(self) -> None:
        ports = netlab._free_ports(3)
        replicas = []
        for port in ports:
            proc = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            self.addCleanup(lambda p=proc: (p.kill(), p.wait()))
            replicas.append(proc)
        for port in ports:
            netlab.wait_for(lambda p=port: netlab.port_open(p), 10, what="http.server")
        front = self.start_proxy([("127.0.0.1", p) for p in ports], "/")
        session = requests.Session()
        self.addCleanup(session.close)
        url = f"http://127.0.0.1:{front}/"
        statuses: collections.Counter[int] = collections.Counter()
        deadline = time.monotonic() + 2.5
        killed_at = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if replicas[1].poll() is None and time.monotonic() >= killed_at:
                replicas[1].kill()
                replicas[1].wait()
            statuses[session.get(url, timeout=5).status_code] += 1
            # http.server answers 501 to POST: what matters is that the
            # POST reached a live replica rather than failing with a 50x
            # from HAProxy.
            statuses[session.post(url, timeout=5).status_code] += 1
        self.assertEqual({200, 501}, set(statuses), statuses)
        self.proxy.wait_server_status("api", "s2", "DOWN")

    def test_only_get_is_replayed_after_a_mid_request_failure(self) -> None:
        hits: collections.Counter[str] = collections.Counter()
        replicas = [_CrashyReplica(hits) for _ in range(2)]
        for r in replicas:
            self.addCleanup(r.close)
        front = self.start_proxy([("127.0.0.1", r.port) for r in replicas], "/health")
        url = f"http://127.0.0.1:{front}/x"
        self.assertEqual(502, requests.get(url, timeout=10).status_code)
        self.assertEqual(502, requests.post(url, data=b"x", timeout=10).status_code)
        self.assertEqual(502, requests.delete(url, timeout=10).status_code)
        # GET: the first try and 3 retries; the others are never replayed.
        self.assertEqual({"GET": 4, "POST": 1, "DELETE": 1}, dict(hits))
