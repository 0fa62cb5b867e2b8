"""Tests of lab.invariants on hand-built namespaces (root only)."""

from __future__ import annotations

import secrets
import subprocess
import time
import unittest

from lab import invariants
from lab import netlab


class TestSamplerArguments(unittest.TestCase):

    def test_rejects_slow_interval_and_empty_prefix(self) -> None:
        with self.assertRaises(ValueError):
            invariants.InvariantSampler("cdt-x-", interval=0.2)
        with self.assertRaises(ValueError):
            invariants.InvariantSampler("")


@netlab.skip_unless_root
class TestInvariantSampler(unittest.TestCase):

    def setUp(self) -> None:
        # A prefix of our own: other tests' namespaces must not be sampled.
        self.prefix = f"cdt{secrets.token_hex(3)}-inv-"
        self.net = f"10.250.{secrets.randbelow(200) + 20}"
        self.bridge = netlab.Bridge()
        self.addCleanup(self.bridge.delete)
        self.a = self.namespace("a", f"{self.net}.1/16")
        self.b = self.namespace("b", f"{self.net}.2/16")
        self.ip = f"{self.net}.1"
        # The kernel reports a new link's carrier (operstate) asynchronously:
        # start every test from a settled state.
        netlab.wait_for(lambda: len(invariants.up_addresses(self.prefix)) == 2, 5,
                        what="both test addresses to be up")

    def namespace(self, name: str, cidr: str) -> netlab.ProbeNamespace:
        ns = netlab.ProbeNamespace(self.bridge, cidr, name=self.prefix + name)
        self.addCleanup(ns.delete)
        return ns

    def sampler(self) -> invariants.InvariantSampler:
        sampler = invariants.InvariantSampler(self.prefix).start()
        self.addCleanup(sampler.stop)
        return sampler

    def test_sees_one_copy_then_double_then_one(self) -> None:
        sampler = self.sampler()
        self.assertEqual([self.a.name], sampler.active_copies(self.ip))
        self.assertEqual([self.b.name], sampler.active_copies(f"{self.net}.2/16"))
        sampler.assert_each_has_one_copy([self.ip, f"{self.net}.2"])

        t_added = time.time()
        self.b.add_address(f"{self.ip}/16")
        time.sleep(0.2)
        self.b.del_address(f"{self.ip}/16")
        t_removed = time.time()

        after = sampler.wait_for_sample()
        self.assertEqual((self.a.name,), after.ips[self.ip])
        found = sampler.violations()
        # ~200 ms at one sample per 50 ms.
        self.assertGreaterEqual(len(found), 2, found)
        for v in found:
            self.assertEqual(self.ip, v["ip"])
            self.assertEqual(sorted([self.a.name, self.b.name]), v["namespaces"])
            # A sample may begin just before the address was added and read
            # b just after: allow one interval of slack at the start.
            self.assertTrue(t_added - 0.06 <= v["timestamp"] <= t_removed, v)
        self.assertTrue(any(v["confirmed"] for v in found))
        with self.assertRaisesRegex(AssertionError, rf"{self.ip} up in .*{self.b.name}"):
            sampler.assert_no_double_active()
        with self.assertRaises(AssertionError):
            sampler.assert_no_double_active(self)

        # Gone again: later samples add no violation, one copy is left.
        count = len(found)
        sampler.wait_for_sample()
        self.assertEqual(count, len(sampler.violations()))
        sampler.assert_each_has_one_copy([self.ip])
        self.assertEqual([self.a.name], sampler.active_copies(self.ip))

    def test_down_link_and_loopback_do_not_count(self) -> None:
        sampler = self.sampler()
        # Same address in b, but b's link is administratively down.
        self.b.exec("ip", "link", "set", self.b.ifname, "down")
        self.b.add_address(f"{self.ip}/16")
        # And on c's loopback, which is up.
        c = self.namespace("c", f"{self.net}.3/16")
        c.exec("ip", "addr", "add", f"{self.ip}/32", "dev", "lo")
        sampler.wait_for_sample()
        self.assertEqual([self.a.name], sampler.active_copies(self.ip))

        # a's link is up but its veth peer (host end) is down: no carrier,
        # the address serves nobody, so it does not count either.
        subprocess.run(["ip", "link", "set", self.a.host_veth, "down"], check=True)
        netlab.wait_for(lambda: sampler.wait_for_sample().ips.get(self.ip) is None, 2,
                        what=f"{self.ip} to count as down")
        with self.assertRaisesRegex(AssertionError, f"{self.ip} in no namespace"):
            sampler.assert_each_has_one_copy([self.ip])
        sampler.assert_no_double_active()
        self.assertEqual([], sampler.violations())

    def test_secondary_address_and_vanishing_namespace(self) -> None:
        sampler = self.sampler()
        extra = f"{self.net}.9"
        self.a.exec("ip", "addr", "add", f"{extra}/16", "dev", self.a.ifname,
                    "label", f"{self.a.ifname}:1")
        netlab.wait_for(lambda: sampler.wait_for_sample().ips.get(extra), 2,
                        what="the labelled secondary address")
        self.assertEqual([self.a.name], sampler.active_copies(extra))
        # A namespace deleted while sampling is simply no longer reported.
        self.b.delete()
        sampler.wait_for_sample()
        self.assertEqual([], sampler.active_copies(f"{self.net}.2"))
        self.assertTrue(sampler.running)
        sampler.stop()  # raises if the sampler thread failed

    def test_max_interval_with_20_namespaces(self) -> None:
        for i in range(18):
            self.namespace(f"n{i:02d}", f"{self.net}.{100 + i}/16")
        sampler = self.sampler()
        time.sleep(2.0)
        sampler.stop()
        stats = sampler.stats()
        self.assertEqual(20, stats["max_namespaces"])
        self.assertEqual(20, len(sampler.latest().ips))
        # It samples every 50 ms; the bound allows for a busy 2-core CI
        # machine (the same as the fault tests' check), so it checks that the
        # sampler keeps looking, not how fast the machine is.
        self.assertLessEqual(sampler.max_interval(), 0.2, stats)
        self.assertGreaterEqual(stats["samples"], 10, stats)
        sampler.assert_no_double_active()

    def test_up_addresses_one_shot(self) -> None:
        self.assertEqual({self.ip: [self.a.name], f"{self.net}.2": [self.b.name]},
                         invariants.up_addresses(self.prefix))


if __name__ == "__main__":
    unittest.main()
