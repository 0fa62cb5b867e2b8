"""The functional tests' view of the lab (``lab.cloud``): a test case that
builds clouds and attaches their process logs when it fails."""

import testtools
from testtools import content

from lab.cloud import ADMIN_HEADERS  # noqa: F401 - re-exported for the tests
from lab.cloud import BIN  # noqa: F401
from lab.cloud import CIDR  # noqa: F401
from lab.cloud import PROBE_CIDR  # noqa: F401
from lab.cloud import Cloud
from lab.cloud import Process  # noqa: F401
from lab.cloud import rabbitmqctl  # noqa: F401


class CloudTestCase(testtools.TestCase):
    """A test that builds clouds; their process logs are attached when it fails."""

    def make_cloud(self, **kwargs) -> Cloud:
        cloud = self.useFixture(Cloud(**kwargs))
        self.addOnException(lambda exc_info: self._attach_logs(cloud))
        return cloud

    def _attach_logs(self, cloud: Cloud) -> None:
        for name, data in cloud.logs().items():
            self.addDetail(f"{cloud.token}-{name}", content.Content(
                content.UTF8_TEXT, lambda data=data: [data]))

    def fences(self, cloud: Cloud) -> dict[str, int]:
        """How many times each node's guard has fenced, by agent name."""
        return {name: open(cloud.guard(name).log_path).read().count("fencing ")
                for name in cloud.agent_names}

    def assert_untouched(self, cloud: Cloud, sampler, routers: list[dict], gap: float,
                         fences_before: dict[str, int], during: str) -> None:
        """Nothing reached the data plane ``during`` a fault: no node fenced,
        every router still ACTIVE where it was and answering, no failover
        event, no ping gap of 0.5 s or more, never two copies."""
        self.assertEqual(fences_before, self.fences(cloud),
                         f"a node fenced itself {during}")
        for r in routers:
            now = cloud.router(r["id"])
            self.assertEqual(r["agent_host"], now["agent_host"], "a router moved")
            self.assertEqual("ACTIVE", now["status"])
            self.assertEqual([], cloud.events(r["id"]))
            self.assertTrue(cloud.probe.ping_once(r["external_gateway_ip"]))
        self.assertLess(gap, 0.5, f"the data plane went dark {during}")
        sampler.assert_no_double_active()
        sampler.assert_each_has_one_copy([r["external_gateway_ip"] for r in routers])
