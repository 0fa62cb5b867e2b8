"""The netns router driver against real namespaces, veths and a private bridge.

Every test owns a bridge ``cdt<8 hex>`` and namespace prefixes starting with
``cdt-<8 hex>-``, uses addresses in 10.250.0.0/16 only, and removes all of it
in cleanups, even when the test fails.
"""

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid

import testtools

from clouddisco.drivers import base
from clouddisco.drivers import iproute
from clouddisco.drivers import netns

ROOT_REASON = "needs root to create network namespaces"
IP = shutil.which("ip")
PROBE_IP = "10.250.255.254"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP or "ip", *args], capture_output=True, text=True, check=check,
                          timeout=60)


def ip_batch(*commands: str, netns: str | None = None) -> None:
    where = ["-n", netns] if netns else []
    proc = subprocess.run([IP or "ip", *where, "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"ip -batch failed: {proc.stderr}")


def ip_json(*args: str) -> list:
    return json.loads(ip("-j", *args).stdout or "[]")


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def namespaces() -> set[str]:
    try:
        return set(os.listdir(netns.NETNS_DIR))
    except FileNotFoundError:
        return set()


def new_spec(n: int = 1) -> base.RouterSpec:
    return base.RouterSpec(id=str(uuid.uuid4()), gateway_ip=f"10.250.{n // 250}.{n % 250 + 1}",
                           gateway_prefixlen=16,
                           gateway_mac=f"fa:16:3e:{secrets.token_hex(1)}:{n // 256 % 256:02x}:"
                                       f"{n % 256:02x}")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class NetnsDriverTestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest(ROOT_REASON)
        if IP is None:
            self.skipTest("iproute2 'ip' is not installed")
        self.tag = secrets.token_hex(4)
        self.bridge = f"cdt{self.tag}"
        self.addCleanup(self._delete_bridge)  # registered first, so it runs last
        self.driver = self.make_driver("")

    def make_driver(self, suffix: str) -> netns.NetnsRouterDriver:
        driver = netns.NetnsRouterDriver(f"cdt-{self.tag}-{suffix}", self.bridge)
        self.addCleanup(self._delete_prefix, driver)
        return driver

    def _delete_prefix(self, driver: netns.NetnsRouterDriver) -> None:
        driver.wait_for_announcements(10)
        prefix = driver.namespace_prefix
        for name in namespaces():
            if not name.startswith(prefix):
                continue
            host = netns.host_veth_name(prefix, name[len(prefix):])
            if link_exists(host):
                ip("link", "del", host, check=False)
            ip("netns", "del", name, check=False)

    def _delete_bridge(self) -> None:
        if link_exists(self.bridge):
            ip("link", "del", self.bridge, check=False)

    def make_probe(self, arp_accept: bool = False) -> str:
        """A namespace with PROBE_IP on the test bridge, to talk to gateways."""
        name = f"cdt-{self.tag}-probe"
        host = f"cdp{self.tag}"
        self.addCleanup(ip, "netns", "del", name, check=False)
        self.addCleanup(ip, "link", "del", host, check=False)
        if not link_exists(self.bridge):  # the driver must cope with an existing bridge
            ip("link", "add", self.bridge, "type", "bridge")
            ip("link", "set", self.bridge, "up")
        ip("netns", "add", name)
        if arp_accept:  # let gratuitous ARP create neighbour entries
            ip("netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1")
        ip_batch(f"link add {host} type veth peer name probe0 netns {name}",
                 f"link set {host} master {self.bridge} up")
        ip_batch("link set lo up", f"addr add {PROBE_IP}/16 dev probe0", "link set probe0 up",
                 netns=name)
        return name

    def ping(self, probe: str, address: str) -> bool:
        proc = subprocess.run(["ip", "netns", "exec", probe, "ping", "-c", "1", "-W", "1",
                               address], capture_output=True, timeout=10)
        return proc.returncode == 0

    def skip_without(self, tool: str) -> None:
        if shutil.which(tool) is None:
            self.skipTest(f"{tool} is not installed")

    # --------------------------------------------------------------- checks

    def gateway(self, spec: base.RouterSpec) -> dict:
        """The gateway device as ``ip -j addr`` shows it inside the namespace."""
        ns = self.driver.namespace_name(spec.id)
        [dev] = ip_json("-n", ns, "addr", "show", "dev", netns.gateway_device_name(spec.id))
        return dev

    def ipv4(self, dev: dict) -> list[str]:
        return [f"{a['local']}/{a['prefixlen']}" for a in dev.get("addr_info", ())
                if a["family"] == "inet"]

    def assert_router_up(self, driver: netns.NetnsRouterDriver, spec: base.RouterSpec) -> None:
        ns = driver.namespace_name(spec.id)
        self.assertIn(ns, namespaces())
        [dev] = ip_json("-n", ns, "addr", "show", "dev", netns.gateway_device_name(spec.id))
        self.assertEqual([f"{spec.gateway_ip}/{spec.gateway_prefixlen}"], self.ipv4(dev))
        net = ipaddress.IPv4Network(f"{spec.gateway_ip}/{spec.gateway_prefixlen}", strict=False)
        [inet] = [a for a in dev["addr_info"] if a["family"] == "inet"]
        self.assertEqual(str(net.broadcast_address), inet.get("broadcast"))
        self.assertEqual("global", inet["scope"])
        self.assertEqual(spec.gateway_mac, dev["address"])
        self.assertEqual("UP", dev["operstate"])
        [lo] = ip_json("-n", ns, "link", "show", "dev", "lo")
        self.assertIn("UP", lo["flags"])
        forwarding = ip("netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout
        self.assertEqual("1", forwarding.strip())
        [host] = ip_json("link", "show", "dev", netns.host_veth_name(driver.namespace_prefix,
                                                                   spec.id))
        self.assertEqual(self.bridge, host["master"])
        self.assertIn("UP", host["flags"])
        self.assertTrue(driver.router_is_active(spec.id))


class EnsureTest(NetnsDriverTestCase):
    def test_creates_namespace_with_gateway(self):
        spec = new_spec()
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        self.assert_router_up(self.driver, spec)
        self.assertEqual({spec.id}, self.driver.list_routers())
        self.assertTrue(link_exists(self.bridge))

    def test_gateway_answers_ping_with_its_mac(self):
        self.skip_without("ping")
        probe = self.make_probe()
        spec = new_spec(7)
        self.driver.ensure([spec])
        self.assertTrue(self.ping(probe, spec.gateway_ip))
        [neigh] = ip_json("-n", probe, "neigh", "show", spec.gateway_ip)
        self.assertEqual(spec.gateway_mac, neigh["lladdr"])

    def test_gratuitous_arp_reaches_the_bridge(self):
        probe = self.make_probe(arp_accept=True)
        spec = new_spec(8)
        self.driver.ensure([spec])
        # The probe never asked: only the gratuitous ARP can teach it the MAC.
        self.assertTrue(wait_for(lambda: ip_json("-n", probe, "neigh", "show", spec.gateway_ip)
                                 and ip_json("-n", probe, "neigh", "show", spec.gateway_ip)[0]
                                 .get("lladdr") == spec.gateway_mac))

    def test_second_ensure_changes_nothing(self):
        spec = new_spec()
        self.driver.ensure([spec])
        ns = self.driver.namespace_name(spec.id)
        host = netns.host_veth_name(self.driver.namespace_prefix, spec.id)
        before = (self.gateway(spec)["ifindex"],
                  ip_json("link", "show", "dev", host)[0]["ifindex"])
        monitor = subprocess.Popen([IP, "-o", "-n", ns, "monitor", "link", "address"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(monitor.wait)
        self.addCleanup(monitor.kill)
        time.sleep(0.3)  # let the monitor subscribe
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        time.sleep(0.2)
        # A demote after it proves the monitor was listening.
        self.driver.demote([spec.id])
        time.sleep(0.3)
        monitor.terminate()
        lines = [line for line in monitor.communicate(timeout=5)[0].splitlines() if line.strip()]
        self.assertTrue(lines, "monitor saw nothing, not even the demote")
        self.assertTrue(all(line.startswith("Deleted") for line in lines), lines)
        after = (self.gateway(spec)["ifindex"],
                 ip_json("link", "show", "dev", host)[0]["ifindex"])
        self.assertEqual(before, after)

    def test_bad_router_does_not_stop_the_others(self):
        good, bad_spec, bad_kernel = new_spec(1), new_spec(2), new_spec(3)
        bad_spec = base.RouterSpec(bad_spec.id, "10.250.0.300", 16, bad_spec.gateway_mac)
        # Passes validation but the kernel refuses an all-zero MAC.
        bad_kernel = base.RouterSpec(bad_kernel.id, bad_kernel.gateway_ip, 16,
                                     "00:00:00:00:00:00")
        results = self.driver.ensure([bad_spec, bad_kernel, good])
        self.assertIsNone(results[good.id])
        self.assertIn("gateway_ip", results[bad_spec.id])
        self.assertIn("00:00:00:00:00:00", results[bad_kernel.id])
        self.assertNotIn("\n", results[bad_kernel.id])
        self.assert_router_up(self.driver, good)
        self.assertFalse(self.driver.router_is_active(bad_kernel.id))

    def test_rejects_ids_that_are_not_uuids(self):
        spec = base.RouterSpec("r1; netns del x", "10.250.0.1", 16, "fa:16:3e:00:00:01")
        self.assertIn("uuid", self.driver.ensure([spec])[spec.id])
        self.assertIn("uuid", self.driver.remove([spec.id])[spec.id])


class RepairTest(NetnsDriverTestCase):
    def setUp(self):
        super().setUp()
        self.spec = new_spec(4)
        self.driver.ensure([self.spec])
        self.ns = self.driver.namespace_name(self.spec.id)
        self.gw = netns.gateway_device_name(self.spec.id)
        self.host = netns.host_veth_name(self.driver.namespace_prefix, self.spec.id)

    def repaired(self) -> None:
        self.assertEqual({self.spec.id: None}, self.driver.ensure([self.spec]))
        self.assert_router_up(self.driver, self.spec)

    def test_missing_address(self):
        ip("-n", self.ns, "addr", "flush", "dev", self.gw)
        self.assertFalse(self.driver.router_is_active(self.spec.id))
        ifindex = self.gateway(self.spec)["ifindex"]
        self.repaired()
        self.assertEqual(ifindex, self.gateway(self.spec)["ifindex"])  # fixed in place

    def test_wrong_address(self):
        ip("-n", self.ns, "addr", "flush", "dev", self.gw)
        ip("-n", self.ns, "addr", "add", "10.250.99.99/24", "dev", self.gw)
        self.repaired()

    def test_gateway_down(self):
        ip("-n", self.ns, "link", "set", self.gw, "down")
        self.assertFalse(self.driver.router_is_active(self.spec.id))
        self.repaired()

    def test_missing_veth(self):
        ip("link", "del", self.host)  # takes the gateway end with it
        self.assertFalse(self.driver.router_is_active(self.spec.id))
        self.repaired()

    def test_host_end_off_the_bridge(self):
        ip("link", "set", self.host, "nomaster")
        ip("link", "set", self.host, "down")
        # The gateway's operstate (IFF_RUNNING) follows the carrier loss
        # asynchronously (linkwatch).
        self.assertTrue(wait_for(lambda: not self.driver.router_is_active(self.spec.id)))
        self.repaired()

    def test_forwarding_off_and_wrong_mac(self):
        ip("netns", "exec", self.ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        ip("-n", self.ns, "link", "set", self.gw, "address", "fa:16:3e:00:00:99")
        self.repaired()

    def test_empty_namespace(self):
        ip("link", "del", self.host)
        ip("-n", self.ns, "link", "set", "lo", "down")
        self.repaired()


class RemoveTest(NetnsDriverTestCase):
    def test_remove_is_idempotent(self):
        spec, other = new_spec(1), new_spec(2)
        self.driver.ensure([spec, other])
        self.assertEqual({spec.id: None}, self.driver.remove([spec.id]))
        self.assertNotIn(self.driver.namespace_name(spec.id), namespaces())
        self.assertEqual({other.id}, self.driver.list_routers())
        self.assertFalse(self.driver.router_is_active(spec.id))
        self.assertEqual({spec.id: None}, self.driver.remove([spec.id]))
        host = netns.host_veth_name(self.driver.namespace_prefix, spec.id)
        self.assertTrue(wait_for(lambda: not link_exists(host)))
        self.assert_router_up(self.driver, other)

    def test_gateway_stops_answering_at_once(self):
        self.skip_without("ping")
        probe = self.make_probe()
        spec = new_spec(5)
        self.driver.ensure([spec])
        self.assertTrue(self.ping(probe, spec.gateway_ip))
        self.driver.remove([spec.id])
        self.assertFalse(self.ping(probe, spec.gateway_ip))

    def test_recreate_right_after_remove(self):
        spec = new_spec()
        self.driver.ensure([spec])
        self.driver.remove([spec.id])
        # The old host veth may still be on its way out in the kernel.
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        self.assert_router_up(self.driver, spec)


class PrefixTest(NetnsDriverTestCase):
    def test_list_sees_only_own_prefix(self):
        # "b-" makes the second prefix a longer version of the first one.
        other = self.make_driver("b-")
        mine, theirs = new_spec(1), new_spec(2)
        self.driver.ensure([mine])
        other.ensure([theirs, mine])
        self.make_probe()  # cdt-<tag>-probe: under our prefix but not a router
        self.assertEqual({mine.id}, self.driver.list_routers())
        self.assertEqual({mine.id, theirs.id}, other.list_routers())
        self.driver.remove([mine.id])
        self.assert_router_up(other, mine)

    def test_same_router_moves_between_prefixes(self):
        other = self.make_driver("b-")
        spec = new_spec(6)
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        self.assertEqual({spec.id: None}, self.driver.remove([spec.id]))
        self.assertEqual({spec.id: None}, other.ensure([spec]))
        self.assert_router_up(other, spec)
        self.assertEqual(set(), self.driver.list_routers())
        if shutil.which("ping"):
            self.assertTrue(self.ping(self.make_probe(), spec.gateway_ip))


class DemotePromoteTest(NetnsDriverTestCase):
    def test_demote_keeps_namespace_and_promote_restores(self):
        spec = new_spec()
        self.driver.ensure([spec])
        absent = str(uuid.uuid4())
        self.assertEqual({spec.id: None, absent: None}, self.driver.demote([spec.id, absent]))
        self.assertFalse(self.driver.router_is_active(spec.id))
        self.assertEqual([], self.ipv4(self.gateway(spec)))
        self.assertEqual({spec.id}, self.driver.list_routers())
        self.assertEqual({spec.id: None}, self.driver.demote([spec.id]))
        self.assertEqual({spec.id: None}, self.driver.promote([spec]))
        self.assert_router_up(self.driver, spec)

    def test_promote_creates_missing_router(self):
        spec = new_spec()
        self.assertEqual({spec.id: None}, self.driver.promote([spec]))
        self.assert_router_up(self.driver, spec)


class ScaleTest(NetnsDriverTestCase):
    def test_200_routers_round_trip(self):
        specs = [new_spec(n) for n in range(200)]
        results = self.driver.ensure(specs)
        self.assertEqual({s.id: None for s in specs}, results)
        self.assertEqual({s.id for s in specs}, self.driver.list_routers())
        for spec in specs[::50]:
            self.assert_router_up(self.driver, spec)
        self.assertEqual({s.id: None for s in specs}, self.driver.ensure(specs))
        self.assertEqual({s.id: None for s in specs}, self.driver.remove([s.id for s in specs]))
        self.assertEqual(set(), self.driver.list_routers())
        prefix = self.driver.namespace_prefix
        self.assertEqual(set(), {n for n in namespaces() if n.startswith(prefix)})


class HelpersTest(testtools.TestCase):
    """Pieces that need neither root nor iproute2."""

    def test_device_names(self):
        rid = "0123abcd-4567-89ef-0123-456789abcdef"
        self.assertEqual("qg-0123abcd456", netns.gateway_device_name(rid))
        a = netns.host_veth_name("cdt-a-", rid)
        b = netns.host_veth_name("cdt-b-", rid)
        self.assertNotEqual(a, b)
        self.assertLessEqual(len(a), 15)
        self.assertRegex(a, r"^cd[0-9a-f]{12}$")
        self.assertEqual(a, netns.host_veth_name("cdt-a-", rid))

    def test_batch_errors_map_to_lines(self):
        stderr = ("RTNETLINK answers: File exists\nCommand failed -:2\n"
                  'Cannot find device "x"\nCommand failed -:5\n')
        self.assertEqual({2: "RTNETLINK answers: File exists",
                          5: 'Cannot find device "x"'}, iproute.batch_errors(stderr, 5))

    def test_rejects_unsafe_names(self):
        self.assertRaises(ValueError, netns.NetnsRouterDriver, "a b-", "br-ex")
        self.assertRaises(ValueError, netns.NetnsRouterDriver, "ok-", "bridge-name-too-long")
        self.assertRaises(ValueError, netns.NetnsRouterDriver, "ok-", "br\nlink del x")

    def test_missing_ip_gives_errors_not_exceptions(self):
        driver = netns.NetnsRouterDriver(f"cdt-{secrets.token_hex(4)}-", "cdtnone0")
        driver._ip = "/nonexistent/ip"
        spec = new_spec()
        results = driver.ensure([spec])
        self.assertIn("/nonexistent/ip", results[spec.id])
        self.assertEqual({spec.id: None}, driver.remove([spec.id]))  # absent anyway


class AddressLifetimeTest(NetnsDriverTestCase):
    """The kernel's share of the lease (clouddisco.drivers.lifetimes)."""

    def gateway_address(self, spec):
        ns = self.driver.namespace_name(spec.id)
        for link in ip_json("-n", ns, "-4", "addr", "show", "dev",
                            netns.gateway_device_name(spec.id)):
            for info in link.get("addr_info", []):
                if info.get("local") == spec.gateway_ip:
                    return info
        return None

    def test_unrenewed_address_is_removed_by_the_kernel_and_never_put_back(self):
        spec = new_spec()
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        probe = self.make_probe()
        self.assertTrue(self.ping(probe, spec.gateway_ip))
        self.assertEqual(1, self.driver.renew_address_lifetimes(1))
        self.assertLessEqual(self.gateway_address(spec)["valid_life_time"], 1)
        self.assertTrue(wait_for(lambda: self.gateway_address(spec) is None, 3),
                        "the kernel did not remove the expired address")
        self.assertFalse(self.ping(probe, spec.gateway_ip))
        self.assertEqual(0, self.driver.renew_address_lifetimes(1),
                         "a renewal must not bring an expired address back")
        self.assertIsNone(self.gateway_address(spec))
        # Only a build does (under a lease the agent checked).
        self.assertEqual({spec.id: None}, self.driver.ensure([spec]))
        self.assertTrue(self.ping(probe, spec.gateway_ip))

    def test_renewed_address_stays(self):
        spec = new_spec()
        self.driver.ensure([spec])
        for _ in range(4):
            self.assertEqual(1, self.driver.renew_address_lifetimes(2))
            time.sleep(0.6)
        info = self.gateway_address(spec)
        self.assertIsNotNone(info)
        self.assertEqual(16, info["prefixlen"])
        self.assertLessEqual(info["valid_life_time"], 2)
