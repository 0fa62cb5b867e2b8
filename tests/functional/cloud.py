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
