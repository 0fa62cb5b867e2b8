"""A moved router's gratuitous ARP fixes a switch that still points at the old port.

On one Linux bridge a move is invisible: deleting the old port flushes its
MAC entries. Between switches it is not: a switch keeps forwarding the
router's MAC toward the old node until the entry ages out (300 s), unless
a frame from the new location reaches it. Here two bridges stand for two
switches, joined by a veth pair (the inter-switch link):

    probe ---+                          +--- router (netns driver, new copy)
             | bridge 1 ===link=== bridge 2
    old  ----+

Bridge 1 learns the router's MAC on the old copy's port; the old copy then
stays plugged in but silent, so the stale entry is real and does not age
out during the test. The driver creates the router on bridge 2, and its
announcement must move bridge 1's entry to the link.

Everything is created here with unique names and removed in cleanups.
"""

import json
import secrets
import shutil
import subprocess
import uuid

import testtools

from clouddisco.drivers import base
from clouddisco.drivers import netns
from lab import netlab

PROBE_CIDR = "10.250.255.254/16"


def run(*cmd: str) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def fdb_port(bridge: str, mac: str) -> str | None:
    """The port ``bridge`` forwards ``mac`` to, or None if it does not know."""
    entries = json.loads(run("bridge", "-j", "fdb", "show", "br", bridge) or "[]")
    ports = {e.get("ifname") for e in entries if e.get("mac") == mac
             and "permanent" not in e.get("state", "")}  # permanent: the bridge's own
    if len(ports) > 1:
        raise AssertionError(f"{mac} on several ports of {bridge}: {ports}")
    return ports.pop() if ports else None


@netlab.skip_unless_root
class MovedRouterTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        for tool in ("bridge", "ping"):
            if shutil.which(tool) is None:
                self.skipTest(f"{tool} is not installed")
        tag = secrets.token_hex(4)
        self.spec = base.RouterSpec(id=str(uuid.uuid4()), gateway_ip="10.250.3.1",
                                    gateway_prefixlen=16,
                                    gateway_mac=f"fa:16:3e:{tag[0:2]}:{tag[2:4]}:{tag[4:6]}")
        # Cleanups run in reverse: bridges last, once nothing is plugged in.
        self.switch1 = netlab.Bridge()
        self.addCleanup(self.switch1.delete)
        self.switch2 = netlab.Bridge()
        self.addCleanup(self.switch2.delete)

        # The inter-switch link.
        self.link1, link2 = f"cdl{tag}a", f"cdl{tag}b"
        self.addCleanup(subprocess.run, ["ip", "link", "del", self.link1],
                        capture_output=True, check=False)
        run("ip", "link", "add", self.link1, "type", "veth", "peer", "name", link2)
        for port, bridge in ((self.link1, self.switch1), (link2, self.switch2)):
            run("ip", "link", "set", port, "master", bridge.name, "up")

        self.probe = netlab.ProbeNamespace(self.switch1, PROBE_CIDR)
        self.addCleanup(self.probe.delete)
        self.old = self.make_old_copy()

        self.driver = netns.NetnsRouterDriver(f"cdt-{tag}-", self.switch2.name)
        self.addCleanup(self.driver.remove, [self.spec.id])
        self.addCleanup(self.driver.wait_for_announcements, 30)

    def make_old_copy(self) -> netlab.ProbeNamespace:
        """The router where it was before the move: same MAC and address."""
        old = netlab.ProbeNamespace(self.switch1, f"{self.spec.gateway_ip}/16")
        self.addCleanup(old.delete)
        # IPv6 off before the new MAC goes up: its neighbour discovery and
        # MLD would keep re-teaching switch 1 the old port after the move.
        old.exec("sysctl", "-qw", f"net.ipv6.conf.{old.ifname}.disable_ipv6=1")
        run("ip", "-n", old.name, "link", "set", old.ifname, "down")
        run("ip", "-n", old.name, "link", "set", old.ifname, "address", self.spec.gateway_mac)
        run("ip", "-n", old.name, "link", "set", old.ifname, "up")
        run("ip", "-n", old.name, "addr", "replace", f"{self.spec.gateway_ip}/16",
            "dev", old.ifname)
        return old

    def test_announcement_moves_the_stale_entry_on_the_other_switch(self):
        # The old copy talks (its ARP request and ping teach switch 1 its
        # port), then falls silent without leaving the switch: no address,
        # so it answers nothing, and its port keeps its MAC entries.
        netlab.wait_for(lambda: self.old.ping_once(self.probe.ip), 10,
                        what="old copy reaching the probe")
        run("ip", "-n", self.old.name, "addr", "flush", "dev", self.old.ifname)
        # The probe must not ARP again either: its broadcast would reach the
        # new copy, whose reply would fix switch 1 without any announcement.
        run("ip", "-n", self.probe.name, "neigh", "replace", self.spec.gateway_ip, "lladdr",
            self.spec.gateway_mac, "dev", self.probe.ifname, "nud", "permanent")
        self.assertEqual(self.old.host_veth, fdb_port(self.switch1.name, self.spec.gateway_mac))
        self.assertFalse(self.probe.ping_once(self.spec.gateway_ip))  # stale: goes to old

        self.assertEqual({self.spec.id: None}, self.driver.ensure([self.spec]))
        self.assertTrue(self.driver.wait_for_announcements(30))

        self.assertEqual(self.link1, fdb_port(self.switch1.name, self.spec.gateway_mac))
        self.assertEqual(netns.host_veth_name(self.driver.namespace_prefix, self.spec.id),
                         fdb_port(self.switch2.name, self.spec.gateway_mac))
        counts = self.driver.garp_counts()
        self.assertEqual((1, 1, 0), (counts.routers, counts.announced, counts.failed))
        # Only the new copy has the address, so an answer comes from it.
        self.assertTrue(self.probe.ping_once(self.spec.gateway_ip, timeout=2))
