"""Real commands refuse a bad start with one line and a non-zero exit."""

import os
import subprocess
import tempfile

import testtools

from lab import netlab
from tests.functional import cloud as cloud_mod


def run(binary, conf_text, *args):
    fd, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(conf_text)
    try:
        return subprocess.run([f"{cloud_mod.BIN}/{binary}", "--config-file", path, *args],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(path)


class StartupErrorTest(testtools.TestCase):
    def assertOneLine(self, proc, code, *fragments):
        self.assertEqual(code, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(1, len(lines), proc.stderr)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])

    def test_unreachable_database(self):
        port = netlab.free_port()
        proc = run("clouddisco-api", "[database]\nconnection = mysql+pymysql://u:p@127.0.0.1:"
               f"{port}/x\nmax_retries = 0\n")
        self.assertOneLine(proc, 3, "clouddisco-api: cannot reach the database",
                           "[database] connection")

    def test_unreachable_broker(self):
        port = netlab.free_port()
        proc = run("clouddisco-l3-agent", "[DEFAULT]\ntransport_url = rabbit://g:g@127.0.0.1:"
                   f"{port}/\n[agent]\nrouter_driver = fake\n")
        self.assertOneLine(proc, 3, "clouddisco-l3-agent: cannot reach the message broker",
                           f"127.0.0.1:{port}")

    def test_bad_values(self):
        cases = [
            ("clouddisco-api", "[api]\nexternal_cidr = 10.0.0.0/33\n", "[api] external_cidr"),
            ("clouddisco-l3-agent", "[agent]\nrouter_driver = ovs\n", "[agent] router_driver"),
            ("clouddisco-l3-agent", "[agent]\nreport_interval = -1\n",
             "[agent] report_interval"),
            ("clouddisco-scheduler", "[health]\nagent_down_time = abc\n",
             "[health] agent_down_time"),
            ("clouddisco-cleanup", "[agent]\nnamespace_prefix = bad/prefix\n",
             "[agent] namespace_prefix"),
        ]
        for binary, text, option in cases:
            self.assertOneLine(run(binary, text), 2, f"{binary}: invalid configuration",
                               option)

    def test_unknown_argument(self):
        proc = run("clouddisco-scheduler", "", "--no-such-flag")
        self.assertEqual(2, proc.returncode)
        self.assertIn("no-such-flag", proc.stderr)
