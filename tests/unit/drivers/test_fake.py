"""The fake router driver keeps the driver contract, so agent tests can trust it."""

import testtools

from clouddisco import drivers
from clouddisco.drivers import base
from clouddisco.drivers import fake

R1 = "11111111-1111-4111-8111-111111111111"
R2 = "22222222-2222-4222-8222-222222222222"
R3 = "33333333-3333-4333-8333-333333333333"


def spec(router_id: str, ip: str = "10.250.0.5", mac: str = "fa:16:3e:12:34:56"
         ) -> base.RouterSpec:
    return base.RouterSpec(id=router_id, gateway_ip=ip, gateway_prefixlen=16, gateway_mac=mac)


class LoadDriverTest(testtools.TestCase):
    def test_fake_by_name(self):
        driver = drivers.load_driver("fake", "qrouter-", "br-ex")
        self.assertIsInstance(driver, fake.FakeRouterDriver)
        self.assertEqual("qrouter-", driver.namespace_prefix)
        self.assertEqual("br-ex", driver.external_bridge)
        self.assertEqual("qrouter-" + R1, driver.namespace_name(R1))

    def test_unknown_name(self):
        exc = self.assertRaises(ValueError, drivers.load_driver, "x", "qrouter-", "br-ex")
        self.assertEqual("unknown router driver 'x' (choose from: fake, netns)", str(exc))

    def test_registry(self):
        self.assertEqual({"fake", "netns"}, set(drivers.DRIVERS))


class SpecErrorTest(testtools.TestCase):
    def test_valid(self):
        self.assertIsNone(base.spec_error(spec(R1)))
        self.assertIsNone(base.spec_error(spec(R1, mac="FA:16:3E:AB:CD:EF")))

    def test_invalid(self):
        bad = [
            spec(R1, ip="10.250.0"),
            spec(R1, ip="fd00::1"),
            spec(R1, mac="fa:16:3e:12:34"),
            spec(R1, mac="01:16:3e:12:34:56"),  # multicast
            base.RouterSpec(R1, "10.250.0.5", 33, "fa:16:3e:12:34:56"),
            base.RouterSpec(R1, "10.250.0.5", 0, "fa:16:3e:12:34:56"),
            spec(""),
            spec("a b"),
        ]
        for item in bad:
            self.assertIsNotNone(base.spec_error(item), item)


class FakeDriverTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.driver = fake.FakeRouterDriver("qrouter-", "br-ex")

    def test_ensure_creates_active_routers(self):
        self.assertEqual({R1: None, R2: None}, self.driver.ensure([spec(R1), spec(R2)]))
        self.assertEqual({R1, R2}, self.driver.list_routers())
        self.assertTrue(self.driver.router_is_active(R1))
        self.assertFalse(self.driver.router_is_active(R3))
        self.assertEqual([("create", R1), ("create", R2)], self.driver.events)

    def test_ensure_is_idempotent(self):
        self.driver.ensure([spec(R1)])
        events = list(self.driver.events)
        self.assertEqual({R1: None}, self.driver.ensure([spec(R1)]))
        self.assertEqual(events, self.driver.events)
        self.assertEqual({R1}, self.driver.list_routers())

    def test_ensure_applies_a_changed_spec(self):
        self.driver.ensure([spec(R1)])
        self.driver.ensure([spec(R1, ip="10.250.0.9")])
        self.assertEqual(("update", R1), self.driver.events[-1])
        router = self.driver.host.namespaces["qrouter-" + R1]
        self.assertEqual("10.250.0.9", router.spec.gateway_ip)

    def test_invalid_spec_fails_alone(self):
        results = self.driver.ensure([spec(R1, mac="nope"), spec(R2)])
        self.assertIn("gateway_mac", results[R1])
        self.assertIsNone(results[R2])
        self.assertEqual({R2}, self.driver.list_routers())

    def test_injected_failure(self):
        self.driver.fail_ids.add(R1)
        results = self.driver.ensure([spec(R1), spec(R2)])
        self.assertEqual(fake.INJECTED_ERROR, results[R1])
        self.assertIsNone(results[R2])
        self.assertEqual({R2}, self.driver.list_routers())
        self.driver.fail_ids.add(R2)
        self.assertEqual({R2: fake.INJECTED_ERROR}, self.driver.remove([R2]))
        self.assertEqual({R2}, self.driver.list_routers())
        self.assertEqual({R2: fake.INJECTED_ERROR}, self.driver.demote([R2]))
        self.assertTrue(self.driver.router_is_active(R2))
        self.driver.fail_ids.clear()
        self.assertEqual({R1: None}, self.driver.ensure([spec(R1)]))

    def test_remove_is_idempotent(self):
        self.driver.ensure([spec(R1), spec(R2)])
        self.assertEqual({R1: None, R3: None}, self.driver.remove([R1, R3]))
        self.assertEqual({R2}, self.driver.list_routers())
        self.assertEqual({R1: None}, self.driver.remove([R1]))
        self.assertFalse(self.driver.router_is_active(R1))

    def test_remove_silences_gateway_before_deleting(self):
        self.driver.ensure([spec(R1)])
        self.driver.remove([R1])
        self.assertEqual([("deactivate", R1), ("delete", R1)], self.driver.events[-2:])

    def test_demote_and_promote(self):
        self.driver.ensure([spec(R1)])
        self.assertEqual({R1: None, R3: None}, self.driver.demote([R1, R3]))
        self.assertFalse(self.driver.router_is_active(R1))
        self.assertEqual({R1}, self.driver.list_routers())  # namespace kept
        self.assertEqual({R1: None}, self.driver.demote([R1]))
        self.assertEqual({R1: None}, self.driver.promote([spec(R1)]))
        self.assertTrue(self.driver.router_is_active(R1))
        self.assertEqual([("activate", R1), ("garp", R1)], self.driver.events[-2:])

    def test_promote_creates_missing_router(self):
        self.assertEqual({R2: None}, self.driver.promote([spec(R2)]))
        self.assertTrue(self.driver.router_is_active(R2))

    def test_ensure_reactivates_demoted_router(self):
        self.driver.ensure([spec(R1)])
        self.driver.demote([R1])
        self.driver.ensure([spec(R1)])
        self.assertTrue(self.driver.router_is_active(R1))


class SharedHostTest(testtools.TestCase):
    """Two agents on one machine: each sees and touches only its own prefix."""

    def setUp(self):
        super().setUp()
        host = fake.FakeHost()
        self.a = fake.FakeRouterDriver("cd-a-", "br-ex", host=host)
        # Deliberately a longer prefix that starts with the other one.
        self.b = fake.FakeRouterDriver("cd-a-b-", "br-ex", host=host)

    def test_lists_only_own_prefix(self):
        self.a.ensure([spec(R1)])
        self.b.ensure([spec(R1), spec(R2)])
        self.assertEqual({R1}, self.a.list_routers())
        self.assertEqual({R1, R2}, self.b.list_routers())

    def test_remove_and_demote_touch_only_own_prefix(self):
        self.a.ensure([spec(R1)])
        self.b.ensure([spec(R1)])
        self.b.demote([R1])
        self.assertTrue(self.a.router_is_active(R1))
        self.a.remove([R1])
        self.assertEqual({R1}, self.b.list_routers())
        self.assertEqual(set(), self.a.list_routers())

    def test_same_router_moves_between_prefixes(self):
        self.assertEqual({R1: None}, self.a.ensure([spec(R1)]))
        self.assertEqual({R1: None}, self.a.remove([R1]))
        self.assertEqual({R1: None}, self.b.ensure([spec(R1)]))
        self.assertTrue(self.b.router_is_active(R1))
        self.assertFalse(self.a.router_is_active(R1))
