"""Gratuitous ARP from the netns driver: the frame, and how the announcer
paces, retries and counts (with the kernel faked: no root needed)."""

import collections
import errno
import logging
import os
import socket
import struct
import threading
import types
import uuid

import fixtures
import testtools

from clouddisco.drivers import base
from clouddisco.drivers import netns
from clouddisco.drivers import netns_inside


class GarpFrameTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.frame = netns_inside.garp_frame("fa:16:3e:12:34:56", "10.250.0.5")

    def test_ethernet_header_is_broadcast_arp_from_the_gateway_mac(self):
        dst, src, ethertype = struct.unpack("!6s6sH", self.frame[:14])
        self.assertEqual(b"\xff" * 6, dst)
        self.assertEqual(bytes.fromhex("fa163e123456"), src)
        self.assertEqual(0x0806, ethertype)

    def test_arp_request_announces_its_own_address(self):
        htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", self.frame[14:22])
        self.assertEqual((1, 0x0800, 6, 4, 1), (htype, ptype, hlen, plen, oper))
        sha, spa, tha, tpa = struct.unpack("!6s4s6s4s", self.frame[22:42])
        self.assertEqual(bytes.fromhex("fa163e123456"), sha)
        # Sender and target address equal: that is what makes it gratuitous.
        self.assertEqual(socket.inet_aton("10.250.0.5"), spa)
        self.assertEqual(spa, tpa)
        self.assertEqual(b"\xff" * 6, tha)
        self.assertEqual(42, len(self.frame))


class FakeNetwork:
    """Stands in for the kernel: records frames per device and refuses sends
    as a congested veth does (ENOBUFS) when told to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: dict[str, list[bytes]] = collections.defaultdict(list)
        self.attempts: collections.Counter = collections.Counter()
        self.fail_first = 0  # the first N sends, whichever device, fail
        self.fail_errno = errno.ENOBUFS
        self.always_fail: dict[str, int] = {}  # device -> errno, every send
        self.gone: set[str] = set()  # namespaces that no longer exist
        self.after_chunk = lambda: None  # called after each pass through namespaces
        self.sends = 0

    def send(self, dev: str, frame: bytes) -> int:
        with self.lock:
            self.sends += 1
            self.attempts[dev] += 1
            if dev in self.always_fail:
                code = self.always_fail[dev]
            elif self.sends <= self.fail_first:
                code = self.fail_errno
            else:
                self.frames[dev].append(frame)
                return len(frame)
        raise OSError(code, os.strerror(code))

    def in_namespaces(self, names, fn):
        # Same contract as netns_inside.in_namespaces, without setns().
        out = {}
        for name in list(names):
            try:
                if name in self.gone:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
                out[name] = fn(name)
            except OSError as exc:
                out[name] = exc
        self.after_chunk()
        return out


def fake_socket_module(network: FakeNetwork) -> types.ModuleType:
    """The socket module as netns_inside sees it, with a packet socket whose
    send goes to ``network``. The sockets are real (UDP, unprivileged), so
    code that checks for or closes socket.socket objects works unchanged."""

    class FakePacketSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
            self.dev = None

        def bind(self, address):
            self.dev = address[0]

        def send(self, data, flags=0):
            return network.send(self.dev, data)

    class Module(types.ModuleType):
        def __getattr__(self, name):
            return getattr(socket, name)

    module = Module("socket")
    module.socket = FakePacketSocket
    return module


class GarpRetryTest(testtools.TestCase):
    """Pacing, retries and counts of the announcer, with the kernel faked."""

    def setUp(self):
        super().setUp()
        self.network = FakeNetwork()
        self.useFixture(fixtures.MonkeyPatch(
            "clouddisco.drivers.netns_inside.in_namespaces", self.network.in_namespaces))
        self.useFixture(fixtures.MonkeyPatch(
            "clouddisco.drivers.netns_inside.socket", fake_socket_module(self.network)))
        # Two frames per router, no waiting between rounds or retries; the
        # attempt count is set here so the expected numbers follow from it.
        for name, value in (("_GARP_REPEATS", 2), ("_GARP_INTERVAL", 0.0),
                            ("_GARP_BACKOFF", 0.0), ("_GARP_ATTEMPTS", 4)):
            self.useFixture(fixtures.MonkeyPatch(f"clouddisco.drivers.netns.{name}", value))
        self.log = self.useFixture(fixtures.FakeLogger(
            name="clouddisco.drivers.netns", level=logging.INFO,
            format="%(levelname)s %(message)s"))
        self.driver = netns.NetnsRouterDriver("cdt-unit-", "cdtunit0")

    def plans(self, n: int) -> list:
        out = []
        for i in range(n):
            spec = base.RouterSpec(id=str(uuid.uuid4()), gateway_ip=f"10.250.0.{i + 1}",
                                   gateway_prefixlen=16, gateway_mac=f"fa:16:3e:00:00:{i:02x}")
            out.append(netns._Plan(spec, self.driver.namespace_name(spec.id),
                                   netns.gateway_device_name(spec.id),
                                   netns.host_veth_name("cdt-unit-", spec.id)))
        return out

    def announce(self, plans) -> None:
        self.driver._announce_later(plans)
        self.assertTrue(self.driver.wait_for_announcements(30))

    def assert_frames(self, plan, count: int) -> None:
        frame = netns_inside.garp_frame(plan.spec.gateway_mac, plan.spec.gateway_ip)
        self.assertEqual([frame] * count, self.network.frames[plan.gw_dev], plan.gw_dev)

    def test_enobufs_on_first_sends_is_retried_until_every_router_is_announced(self):
        plans = self.plans(5)
        self.network.fail_first = 3  # one fewer than the attempts a frame gets
        self.announce(plans)
        for plan in plans:
            self.assert_frames(plan, 2)
        self.assertEqual(netns.GarpCounts(routers=5, announced=5, sent=10, retried=3),
                         self.driver.garp_counts())
        self.assertNotIn("WARNING", self.log.output)
        self.assertIn("10 frame(s) sent to 5 of 5 router(s)", self.log.output)
        self.assertIn("3 retried", self.log.output)

    def test_eagain_is_retried_too(self):
        [plan] = self.plans(1)
        self.network.fail_first, self.network.fail_errno = 3, errno.EAGAIN
        self.announce([plan])
        self.assert_frames(plan, 2)
        self.assertEqual(netns.GarpCounts(routers=1, announced=1, sent=2, retried=3),
                         self.driver.garp_counts())

    def test_gives_up_after_bounded_attempts_and_warns_naming_the_router(self):
        lost, fine = self.plans(2)
        self.network.always_fail[lost.gw_dev] = errno.ENOBUFS
        self.announce([lost, fine])
        self.assertEqual(4 * 2, self.network.attempts[lost.gw_dev])  # attempts x rounds
        self.assert_frames(lost, 0)
        self.assert_frames(fine, 2)
        self.assertEqual(netns.GarpCounts(routers=2, announced=1, failed=1, sent=2,
                                          retried=3 * 2, dropped=2),
                         self.driver.garp_counts())
        [warning] = [line for line in self.log.output.splitlines()
                     if line.startswith("WARNING")]
        self.assertIn("failed for 1 router(s)", warning)
        self.assertIn(lost.spec.id, warning)
        self.assertNotIn(fine.spec.id, warning)
        self.assertIn("No buffer space available", warning)

    def test_other_errors_are_not_retried(self):
        [plan] = self.plans(1)
        self.network.always_fail[plan.gw_dev] = errno.ENETDOWN
        self.announce([plan])
        self.assertEqual(2, self.network.attempts[plan.gw_dev])  # once per round
        self.assertEqual(netns.GarpCounts(routers=1, failed=1, dropped=2),
                         self.driver.garp_counts())

    def test_past_the_deadline_nothing_is_retried_or_repeated(self):
        plans = self.plans(3)
        for plan in plans:
            self.network.always_fail[plan.gw_dev] = errno.ENOBUFS
        self.useFixture(fixtures.MonkeyPatch("clouddisco.drivers.netns._GARP_DEADLINE", 0.0))
        self.announce(plans)
        self.assertEqual({p.gw_dev: 1 for p in plans}, dict(self.network.attempts))
        self.assertEqual(netns.GarpCounts(routers=3, failed=3, dropped=3),
                         self.driver.garp_counts())

    def test_withdrawn_and_removed_routers_get_no_more_frames(self):
        demoted, removed, kept = self.plans(3)
        self.useFixture(fixtures.MonkeyPatch("clouddisco.drivers.netns._GARP_REPEATS", 3))

        def after_first_round():
            # What demote and remove do while a batch is still repeating.
            self.driver._withdraw([demoted.spec.id])
            self.network.gone.add(removed.ns)
            self.network.after_chunk = lambda: None

        self.network.after_chunk = after_first_round
        self.announce([demoted, removed, kept])
        self.assert_frames(demoted, 1)
        self.assert_frames(removed, 1)
        self.assert_frames(kept, 3)
        self.assertEqual(netns.GarpCounts(routers=3, announced=3, sent=5),
                         self.driver.garp_counts())

    def test_counts_add_up_over_batches(self):
        self.announce(self.plans(2))
        self.announce(self.plans(3))
        self.assertEqual(netns.GarpCounts(routers=5, announced=5, sent=10),
                         self.driver.garp_counts())
