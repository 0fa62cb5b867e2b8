"""State reports over UDP: the batched write, the lease receiver on a real
loopback socket, the agent's UDP reporter and its place among the hedges.
SQLite, in process."""

import socket
import threading
import time

import fixtures
import sqlalchemy as sa
import testtools

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco.agent import reporter
from clouddisco.db import models
from clouddisco.scheduler import udp
from tests.unit import base

KEY = "s3cret"


def agent_row(db, host):
    with db.engine.connect() as conn:
        return conn.execute(sa.select(models.Agent).where(models.Agent.host == host)
                            ).mappings().one()


class RecordHeartbeatsTest(base.DBTestCase):
    def test_batch_renews_exactly_the_current_live_generations(self):
        for host in ("a", "b", "c"):
            self.db.register_agent(host, "qr-")
        self.db.register_agent("b", "qr-")  # b is now at generation 2
        for host in ("a", "b", "c"):
            self.age_heartbeat(host, 10)
        self.db.mark_dead_agents(5.0, [agent_row(self.db, "c")["id"]])
        renewed = self.db.record_heartbeats([("a", 1, "ok"), ("b", 1, "ok"), ("c", 1, "ok"),
                                             ("nobody", 1, "ok")])
        self.assertEqual({("a", 1)}, renewed)
        self.assertLess(self._age("a"), 5)
        for host in ("b", "c"):
            self.assertGreater(self._age(host), 5, f"{host}'s heartbeat was stamped")

    def test_guard_status_is_stored_per_report(self):
        for host in ("a", "b"):
            self.db.register_agent(host, "qr-")
        renewed = self.db.record_heartbeats([("a", 1, "ok"), ("b", 1, "stale")])
        self.assertEqual({("a", 1), ("b", 1)}, renewed)
        self.assertEqual("ok", agent_row(self.db, "a")["guard_status"])
        self.assertEqual("stale", agent_row(self.db, "b")["guard_status"])

    def test_empty_batch(self):
        self.assertEqual(set(), self.db.record_heartbeats([]))

    def _age(self, host):
        return (self.db.now() - agent_row(self.db, host)["heartbeat_at"]).total_seconds()


class ReceiverTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.receiver = udp.UdpLeaseReceiver(self.db, KEY, 2.0, "127.0.0.1", 0)
        self.addCleanup(self.receiver.stop)
        host, port = self.receiver.address[:2]
        self.endpoint = f"{host}:{port}"
        self.agent = self.db.register_agent("node-1", "qr-")

    def test_report_is_answered_after_it_is_stored(self):
        self.age_heartbeat("node-1", 10)
        self.receiver.start()
        reply = heartbeat.UdpReporter([self.endpoint], KEY).report(
            "node-1", {"lease_generation": 1, "guard": "ok"}, 2.0)
        self.assertEqual({"registered": True, "lease_generation": 1, "lease_time": 2.0},
                         reply)
        age = self.db.now() - agent_row(self.db, "node-1")["heartbeat_at"]
        self.assertLess(age.total_seconds(), 5)

    def test_superseded_generation_must_register(self):
        self.db.register_agent("node-1", "qr-")  # generation 2
        self.receiver.start()
        reply = heartbeat.UdpReporter([self.endpoint], KEY).report(
            "node-1", {"lease_generation": 1}, 2.0)
        self.assertEqual({"registered": False}, reply)

    def test_wrong_key_gets_no_answer_and_renews_nothing(self):
        self.age_heartbeat("node-1", 10)
        self.receiver.start()
        self.assertRaises(TimeoutError, heartbeat.UdpReporter([self.endpoint], "other").report,
                          "node-1", {"lease_generation": 1}, 0.3)
        self.assertEqual(1, self.receiver.counts["bad"])
        age = self.db.now() - agent_row(self.db, "node-1")["heartbeat_at"]
        self.assertGreater(age.total_seconds(), 5)

    def test_malformed_reports_are_dropped(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        key = KEY.encode()
        for payload in ({"host": "node-1", "state": {"lease_generation": "1"},
                         "nonce": "n", "wait": 1},
                        {"host": "node-1", "state": {"lease_generation": 1}, "nonce": "n",
                         "wait": True},
                        {"host": "", "state": {"lease_generation": 1}, "nonce": "n",
                         "wait": 1}):
            sock.sendto(heartbeat.pack(key, payload), self.receiver.address)
        sock.sendto(b"garbage", self.receiver.address)
        time.sleep(0.05)
        self.assertEqual(0, self.receiver.handle(self.receiver._drain()))
        self.assertEqual(4, self.receiver.counts["bad"])

    def test_reports_that_waited_longer_than_their_sender_are_shed(self):
        """A backlog the receiver fell behind on is dropped, not written: its
        senders gave up, and writing it would starve the fresh reports."""
        self.age_heartbeat("node-1", 10)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        late = {"host": "node-1", "state": {"lease_generation": 1}, "nonce": "old",
                "wait": 0.05}
        sock.sendto(heartbeat.pack(KEY.encode(), late), self.receiver.address)
        time.sleep(0.2)  # the receiver is busy elsewhere
        fresh = dict(late, nonce="new", wait=5.0)
        sock.sendto(heartbeat.pack(KEY.encode(), fresh), self.receiver.address)
        time.sleep(0.05)
        self.assertEqual(1, self.receiver.handle(self.receiver._drain()))
        self.assertEqual(1, self.receiver.counts["expired"])
        sock.settimeout(1)
        answer = heartbeat.unpack(KEY.encode(), sock.recv(heartbeat.UDP_MAX))
        self.assertEqual("new", answer["nonce"])

    def test_a_backlog_is_written_in_one_batch(self):
        hosts = [f"n{i}" for i in range(50)]
        for host in hosts:
            self.db.register_agent(host, "qr-")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        for i, host in enumerate(hosts):
            sock.sendto(heartbeat.pack(KEY.encode(), {
                "host": host, "state": {"lease_generation": 1}, "nonce": str(i),
                "wait": 5}), self.receiver.address)
        time.sleep(0.1)
        calls = []
        real = self.db.record_heartbeats
        self.useFixture(fixtures.MockPatchObject(
            self.db, "record_heartbeats", side_effect=lambda r: calls.append(r) or real(r)))
        self.assertEqual(50, self.receiver.handle(self.receiver._drain()))
        self.assertEqual(1, len(calls))
        self.assertEqual(50, self.receiver.counts["renewed"])

    def test_no_answer_when_the_write_fails(self):
        """A report nobody stored must not renew a lease: no answer at all."""
        self.useFixture(fixtures.MockPatchObject(
            self.db, "record_heartbeats", side_effect=RuntimeError("database gone")))
        self.receiver.start()
        self.assertRaises(TimeoutError, heartbeat.UdpReporter([self.endpoint], KEY).report,
                          "node-1", {"lease_generation": 1}, 0.3)
        self.assertEqual(1, self.receiver.counts["write_failed"])


class StaleAnswerServer:
    """A UDP endpoint that answers each report first with another nonce (a
    late answer to an earlier report), then, if ``honest``, with the right one."""

    def __init__(self, honest=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.honest = honest
        self.seen = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self):
        key = KEY.encode()
        while not self._stop.is_set():
            try:
                data, address = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.seen += 1
            report = heartbeat.unpack(key, data)
            answer = {"registered": True, "lease_generation": 1, "lease_time": 2.0}
            self.sock.sendto(heartbeat.pack(key, dict(answer, nonce="stale")), address)
            if self.honest:
                self.sock.sendto(heartbeat.pack(key, dict(answer, nonce=report["nonce"])),
                                 address)

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


class UdpReporterTest(testtools.TestCase):
    def test_an_answer_to_another_report_is_not_taken(self):
        server = StaleAnswerServer(honest=False)
        self.addCleanup(server.close)
        self.assertRaises(TimeoutError, heartbeat.UdpReporter([server.endpoint], KEY).report,
                          "h", {"lease_generation": 1}, 0.3)

    def test_the_matching_answer_is_taken(self):
        server = StaleAnswerServer()
        self.addCleanup(server.close)
        reply = heartbeat.UdpReporter([server.endpoint], KEY).report(
            "h", {"lease_generation": 1}, 1.0)
        self.assertEqual({"registered": True, "lease_generation": 1, "lease_time": 2.0},
                         reply)

    def test_silent_replica_is_hedged_to_the_next(self):
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))  # takes datagrams, never answers
        self.addCleanup(dead.close)
        alive = StaleAnswerServer()
        self.addCleanup(alive.close)
        endpoints = [f"127.0.0.1:{dead.getsockname()[1]}", alive.endpoint]
        # A host whose name hashes to the silent replica first.
        host = next(h for h in (f"h{i}" for i in range(100))
                    if heartbeat.UdpReporter(endpoints, KEY)._addresses(h)[0][1]
                    == dead.getsockname())
        reply = heartbeat.UdpReporter(endpoints, KEY).report(
            host, {"lease_generation": 1}, 1.0)
        self.assertTrue(reply["registered"])

    def test_hosts_are_spread_over_the_replicas(self):
        reporter_ = heartbeat.UdpReporter(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], KEY)
        first = {reporter_._addresses(f"node-{i}")[0][1][1] for i in range(30)}
        self.assertEqual({1, 2, 3}, first)


class UdpFirstHedgeTest(base.DBTestCase):
    """The agent's StateReporter with UDP first and RPC as the hedge."""

    def setUp(self):
        super().setUp()
        self.receiver = udp.UdpLeaseReceiver(self.db, KEY, 2.0, "127.0.0.1", 0)
        self.addCleanup(self.receiver.stop)
        self.endpoint = f"127.0.0.1:{self.receiver.address[1]}"
        self.rpc_reports = []
        db = self.db

        class Scheduler:
            def register(self_, host, prefix, timeout=None, registration_id=None):
                agent = db.register_agent(host, prefix)
                return {"agent_id": agent["id"],
                        "lease_generation": agent["lease_generation"], "lease_time": 2.0}

            def report_state(self_, host, state, timeout):
                self.rpc_reports.append(host)
                return heartbeat.receive(db, host, state, 2.0)

        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.reporter = reporter.StateReporter(
            "node-1", "qr-", Scheduler(), interval=0.6, state_dir=self.state_dir,
            on_connected=lambda: None, state=lambda: {"guard": "ok"},
            udp=heartbeat.UdpReporter([self.endpoint], KEY))
        self.addCleanup(self.reporter.stop)

    def test_udp_answers_and_rpc_stays_idle(self):
        self.receiver.start()
        self.assertTrue(self.reporter.report_once())  # registration, over RPC
        before = lease.read(self.state_dir, "node-1", lease.AGENT).expires
        self.assertTrue(self.reporter.report_once())
        self.assertEqual("udp", self.reporter.answered_by)
        self.assertEqual([], self.rpc_reports)
        self.assertGreater(lease.read(self.state_dir, "node-1", lease.AGENT).expires, before)

    def test_silent_receiver_falls_back_to_rpc(self):
        # Never started: datagrams wait in the socket unanswered.
        self.assertTrue(self.reporter.report_once())
        self.assertTrue(self.reporter.report_once())
        self.assertEqual("rpc", self.reporter.answered_by)
        self.assertEqual(["node-1"], self.rpc_reports)


class UdpConfigTest(testtools.TestCase):
    def test_endpoints_need_a_key_and_host_port(self):
        from clouddisco import conf as cd_conf
        conf = base.make_conf(agent__report_udp_endpoints=["sched:9798"])
        self.assertRaises(cd_conf.ConfigError, cd_conf.check, conf, ["agent"])
        for bad in ("sched", "sched:0", "sched:http", ":9798"):
            conf = base.make_conf(agent__report_udp_endpoints=[bad],
                                  health__report_key=KEY)
            self.assertRaises(cd_conf.ConfigError, cd_conf.check, conf, ["agent"])
        conf = base.make_conf(agent__report_udp_endpoints=["sched:9798", "[::1]:9798"],
                              health__report_key=KEY)
        cd_conf.check(conf, ["agent"])


class UdpRegistrationTest(base.DBTestCase):
    def setUp(self):
        super().setUp()
        self.receiver = udp.UdpLeaseReceiver(self.db, KEY, 2.0, "127.0.0.1", 0)
        self.addCleanup(self.receiver.stop)
        self.udp = heartbeat.UdpReporter([f"127.0.0.1:{self.receiver.address[1]}"], KEY)

    def test_register_and_retry_with_the_same_id(self):
        self.receiver.start()
        rid = "8b1a3a5e-2f0e-4d52-9a43-6c1f3f2b0c11"
        first = self.udp.register("node-1", "qr-", 2.0, rid)
        self.assertEqual(1, first["lease_generation"])
        self.assertEqual(2.0, first["lease_time"])
        again = self.udp.register("node-1", "qr-", 2.0, rid)
        self.assertEqual(first, again, "a retried registration bumped the generation")
        other = self.udp.register("node-1", "qr-", 2.0, "5e0d7f9c-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
        self.assertEqual(2, other["lease_generation"])

    def test_bad_registration_is_dropped(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        for register in ({"host": "n", "namespace_prefix": "bad prefix!",
                          "registration_id": "8b1a3a5e-2f0e-4d52-9a43-6c1f3f2b0c11"},
                         {"host": "n", "namespace_prefix": "qr-"}):  # no id: no retry safety
            sock.sendto(heartbeat.pack(KEY.encode(), {"op": "register", "register": register,
                                                      "nonce": "n", "wait": 1}),
                        self.receiver.address)
        time.sleep(0.05)
        self.assertEqual(0, self.receiver.handle(self.receiver._drain()))
        self.assertEqual(2, self.receiver.counts["bad"])

    def test_agent_registers_over_udp_when_rpc_does_not_answer(self):
        self.receiver.start()
        calls = []

        class NoRpc:
            def register(self_, *args):
                calls.append(args)
                raise TimeoutError("no broker")

            def report_state(self_, host, state, timeout):
                raise TimeoutError("no broker")

        state_dir = self.useFixture(fixtures.TempDir()).path
        rep = reporter.StateReporter("node-1", "qr-", NoRpc(), interval=1.0,
                                     state_dir=state_dir, on_connected=lambda: None,
                                     state=lambda: {"guard": "ok"}, udp=self.udp)
        self.addCleanup(rep.stop)
        self.assertTrue(rep.report_once())
        self.assertEqual(1, rep.generation)
        self.assertEqual(1, len(calls), "RPC is tried first")
        self.assertTrue(rep.report_once())
        self.assertEqual("udp", rep.answered_by)


class OutageNoticeTest(base.DBTestCase):
    """The database cannot take the reports: each replica says so, and only
    a notice from every replica renews a lease."""

    def receiver(self, write):
        clock = udp.OutageClock()
        receiver = udp.UdpLeaseReceiver(self.db, KEY, 2.0, "127.0.0.1", 0,
                                        replica=f"r{len(self.receivers)}", outage=clock,
                                        agent_down_time=3.0)
        self.addCleanup(receiver.stop)
        self.useFixture(fixtures.MockPatchObject(receiver, "db")).mock \
            .record_heartbeats.side_effect = write
        receiver.start()
        self.receivers.append(receiver)
        return receiver, clock

    def setUp(self):
        super().setUp()
        self.receivers = []

    def endpoint(self, receiver):
        return f"127.0.0.1:{receiver.address[1]}"

    def test_every_replica_down_gives_an_outage_answer_and_holds_the_monitor(self):
        def fail(reports):
            raise RuntimeError("database gone")
        (one, clock1), (two, clock2) = self.receiver(fail), self.receiver(fail)
        before = time.monotonic()
        reply = heartbeat.UdpReporter([self.endpoint(one), self.endpoint(two)], KEY).report(
            "node-1", {"lease_generation": 1}, 1.0)
        self.assertEqual({"outage": True, "lease_time": 2.0, "replicas": ["r0", "r1"]}, reply)
        for clock in (clock1, clock2):
            self.assertGreaterEqual(clock.until(), before + 3.0,
                                    "the monitor's hold must cover agent_down_time")

    def test_a_stalled_write_is_an_outage(self):
        started = time.monotonic()
        receiver, clock = self.receiver(lambda reports: time.sleep(2))
        reply = heartbeat.UdpReporter([self.endpoint(receiver)], KEY).report(
            "node-1", {"lease_generation": 1}, 1.0)
        self.assertTrue(reply["outage"])
        self.assertLess(time.monotonic() - started, 1.0)

    def test_one_replica_that_can_write_wins(self):
        def fail(reports):
            raise RuntimeError("database gone")
        down, _ = self.receiver(fail)
        up, up_clock = self.receiver(lambda reports: {(h, g) for h, g, _ in reports})
        reply = heartbeat.UdpReporter([self.endpoint(down), self.endpoint(up)], KEY).report(
            "node-1", {"lease_generation": 1}, 1.0)
        self.assertEqual({"registered": True, "lease_generation": 1, "lease_time": 2.0},
                         reply)
        self.assertEqual(0.0, up_clock.until())

    def test_notices_from_some_replicas_only_renew_nothing(self):
        def fail(reports):
            raise RuntimeError("database gone")
        down, _ = self.receiver(fail)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        self.addCleanup(silent.close)
        with testtools.ExpectedException(TimeoutError, ".*outage notices from 1 of 2.*"):
            heartbeat.UdpReporter([self.endpoint(down),
                                   f"127.0.0.1:{silent.getsockname()[1]}"], KEY).report(
                "node-1", {"lease_generation": 1}, 0.5)


class OutageRenewalTest(testtools.TestCase):
    """The agent renews on an outage answer only a lease valid when the
    report was sent, and only if the answer came back in time."""

    def setUp(self):
        super().setUp()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.answer = {"outage": True, "lease_time": 2.0, "replicas": ["r0"]}
        outer = self

        class Outage:
            def register(self_, host, prefix, timeout=None, registration_id=None):
                return {"agent_id": "a1", "lease_generation": 1, "lease_time": 2.0}

            def report_state(self_, host, state, timeout):
                return dict(outer.answer)

        self.rep = reporter.StateReporter("node-1", "qr-", Outage(), interval=1.0,
                                          state_dir=self.state_dir, on_connected=lambda: None,
                                          state=lambda: {}, outage_accept=0.75)
        self.addCleanup(self.rep.stop)
        self.assertTrue(self.rep.report_once())  # registered: lease generation 1

    def expires(self):
        return lease.read(self.state_dir, "node-1", lease.AGENT).expires

    def test_valid_lease_is_renewed(self):
        before = self.expires()
        self.assertTrue(self.rep.report_once())
        self.assertGreater(self.expires(), before)

    def test_expired_lease_is_not(self):
        current = lease.read(self.state_dir, "node-1", lease.AGENT)
        current.expires = time.monotonic() - 0.1
        lease.write(self.state_dir, current, lease.AGENT)
        self.assertFalse(self.rep.report_once())
        self.assertLess(self.expires(), time.monotonic())

    def test_late_answer_is_not(self):
        self.rep.outage_accept = 0.0
        before = self.expires()
        self.assertFalse(self.rep.report_once())
        self.assertEqual(before, self.expires())
