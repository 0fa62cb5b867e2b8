"""Configuration: sample freshness, bad values, and the start-up error line."""

import io
import os
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr

import fixtures
import testtools

from clouddisco import conf as cd_conf
from clouddisco import launch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def conf_file(text):
    fd, path = tempfile.mkstemp(suffix=".conf", prefix="clouddisco-unit-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class SampleConfigTest(testtools.TestCase):
    def test_sample_is_current(self):
        """etc/clouddisco/clouddisco.conf.sample must match the code's options."""
        out = os.path.join(self.useFixture(fixtures.TempDir()).path, "sample.conf")
        gen = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
        subprocess.run([gen, "--config-file",
                        os.path.join(ROOT, "etc/oslo-config-generator/clouddisco.conf"),
                        "--output-file", out], check=True, cwd=ROOT,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            fresh = f.read()
        with open(os.path.join(ROOT, "etc/clouddisco/clouddisco.conf.sample")) as f:
            shipped = f.read()
        self.assertEqual(fresh, shipped, "the sample config is stale: run "
                         "'tox -e genconfig' and commit the result")


class CheckTest(testtools.TestCase):
    def check_file(self, text, groups=None):
        path = conf_file(text)
        self.addCleanup(os.unlink, path)
        conf = cd_conf.build(["--config-file", path], default_config_files=[])
        cd_conf.check(conf, groups)
        return conf

    def assertBad(self, text, *fragments):
        err = self.assertRaises(cd_conf.ConfigError, self.check_file, text)
        for fragment in fragments:
            self.assertIn(fragment, str(err))
        self.assertNotIn("\n", str(err))

    def test_defaults_are_valid(self):
        conf = self.check_file("")
        self.assertEqual(3.5, conf.health.agent_down_time)
        self.assertEqual(1.0, conf.agent.report_interval)

    def test_kernel_lease_warns_when_down_time_leaves_under_a_second(self):
        import fixtures
        logger = self.useFixture(fixtures.FakeLogger(level="WARNING"))
        self.check_file("[health]\nagent_down_time = 3.0\n")
        self.assertIn("kernel_lease", logger.output)
        logger = self.useFixture(fixtures.FakeLogger(level="WARNING"))
        self.check_file("")
        self.assertNotIn("kernel_lease", logger.output)

    def test_malformed_cidr(self):
        self.assertBad("[api]\nexternal_cidr = 10.0.0.300/24\n",
                       "[api] external_cidr", "not an IPv4 CIDR")
        self.assertBad("[api]\nexternal_cidr = 10.0.0.1/24\n",
                       "[api] external_cidr", "host bits set")

    def test_unknown_driver(self):
        self.assertBad("[agent]\nrouter_driver = ovs\n", "[agent] router_driver", "ovs")

    def test_reserved_ip_outside_cidr(self):
        self.assertBad("[api]\nexternal_cidr = 10.250.0.0/24\n"
                       "external_reserved_ips = 10.9.9.9\n",
                       "[api] external_reserved_ips", "outside")

    def test_down_time_must_exceed_report_interval(self):
        self.assertBad("[agent]\nreport_interval = 5\n[health]\nagent_down_time = 3\n",
                       "[health] agent_down_time", "report_interval")

    def test_bad_number(self):
        self.assertBad("[health]\nagent_down_time = soon\n", "[health] agent_down_time")

    def test_prepare_exits_2_with_one_line(self):
        path = conf_file("[agent]\nrouter_driver = bogus\n")
        self.addCleanup(os.unlink, path)
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            exc = self.assertRaises(SystemExit, launch.prepare, "clouddisco-l3-agent",
                                    argv=["--config-file", path], groups=["agent"])
        self.assertEqual(2, exc.code)
        lines = stderr.getvalue().splitlines()
        self.assertEqual(1, len(lines), lines)
        self.assertTrue(lines[0].startswith("clouddisco-l3-agent: invalid configuration: "
                                            "[agent] router_driver"), lines[0])

    def test_missing_config_file_is_one_line(self):
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            exc = self.assertRaises(SystemExit, launch.prepare, "clouddisco-api",
                                    argv=["--config-file", "/nonexistent/x.conf"])
        self.assertEqual(2, exc.code)
        self.assertIn("/nonexistent/x.conf", stderr.getvalue())

    def test_unreachable_database_exits_3(self):
        stderr = io.StringIO()

        def ping():
            raise OSError("(2003, \"Can't connect to MySQL server\")")
        with redirect_stderr(stderr):
            exc = self.assertRaises(SystemExit, launch.require, "clouddisco-api",
                                    "the database ([database] connection)", ping)
        self.assertEqual(3, exc.code)
        self.assertIn("cannot reach the database ([database] connection): (2003",
                      stderr.getvalue())
