"""What clouddisco relies on from systemd, proven against a real one.

Each test boots systemd in private namespaces (tests.functional.systemd)
with units running a small Python service generated here, which uses
clouddisco.systemd for READY=1 and WATCHDOG=1 exactly as the agents will.
Measured latencies are attached to each test as the ``measurements`` detail.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import testtools
from testtools import content

import clouddisco
from lab import netlab
from tests.functional import systemd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(clouddisco.__file__)))

# The service: notifies READY=1 (optionally late, from a child, or never),
# pings the watchdog at the period clouddisco.systemd recommends until
# SIGUSR1, records SIGTERM in the state directory, and can be told to fail
# at start while a flag file exists.
DEMO_SERVICE = '''\
import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, {repo!r})
from clouddisco import systemd  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--state-dir", required=True)
parser.add_argument("--ready-delay", type=float, default=0.0)
parser.add_argument("--ready", choices=("main", "child", "never"), default="main")
parser.add_argument("--fail-if", help="exit 1 at once while this file exists")
args = parser.parse_args()

if args.fail_if and os.path.exists(args.fail_if):
    print(f"{{args.fail_if}} exists: failing", flush=True)
    sys.exit(1)

pinging = True


def stop_pinging(signo, frame):
    global pinging
    pinging = False
    print("SIGUSR1: no more watchdog pings", flush=True)


def terminate(signo, frame):
    with open(os.path.join(args.state_dir, f"sigterm-{{os.getpid()}}"), "w") as f:
        f.write("SIGTERM\\n")
    print("SIGTERM: exiting", flush=True)
    sys.exit(0)


signal.signal(signal.SIGUSR1, stop_pinging)
signal.signal(signal.SIGTERM, terminate)
print(f"started as pid {{os.getpid()}}", flush=True)
time.sleep(args.ready_delay)
if args.ready == "main":
    systemd.notify("READY=1")
elif args.ready == "child":
    # With NotifyAccess=main systemd must ignore this.
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                    "from clouddisco import systemd; systemd.notify('READY=1')"
                    % {repo!r}], check=True)
period = systemd.watchdog_interval()
print(f"watchdog period {{period}}", flush=True)
while True:
    if period and pinging:
        systemd.notify("WATCHDOG=1")
    time.sleep(period or 3600)
'''


class SystemdTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        reason = systemd.skip_reason()
        if reason:
            self.skipTest(reason)
        self.measurements = []
        self.addDetail("measurements", content.Content(
            content.UTF8_TEXT, lambda: ["\n".join(self.measurements).encode()]))

    def measure(self, what, seconds):
        self.measurements.append(f"{what}: {seconds:.3f}s")

    def boot(self, units=None, **kwargs):
        host = systemd.use_systemd_host(self, units, **kwargs)
        self.measure("boot", host.boot_seconds)
        self.addCleanup(lambda: self.measure(
            f"systemctl calls ({host.systemctl_calls})",
            host.systemctl_seconds / max(1, host.systemctl_calls)))
        return host

    def demo_script(self, host):
        path = host.path("demo_service.py")
        with open(path, "w") as f:
            f.write(DEMO_SERVICE.format(repo=REPO))
        return path

    def demo_unit(self, host, *, args="", unit="", service=""):
        """A Type=notify unit running the demo service (Restart=always)."""
        script = self.demo_script(host)
        return (
            "[Unit]\n"
            "Description=clouddisco demo service\n"
            f"{unit}"
            "[Service]\n"
            "Type=notify\n"
            "NotifyAccess=main\n"
            f"ExecStart={sys.executable} -u {script} --state-dir {host.state_dir} {args}\n"
            "Restart=always\n"
            "RestartSec=0.2\n"
            f"{service}")


class TestSystemdHost(SystemdTestCase):
    """The fixture itself: boot, pids, units, clean-up."""

    def test_boot_poweroff_leaves_nothing(self):
        units = {"sleeper.service": "[Service]\nExecStart=/bin/sleep 3600\n"}
        with systemd.SystemdHost(units) as host:
            self.measure("boot", host.boot_seconds)
            self.assertTrue(host.is_active("sleeper.service"))
            pid = host.main_pid("sleeper.service")
            # A pid of this machine: its command line is readable here (once
            # exec'd: Type=simple is active already between fork and exec).
            def cmdline():
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    return f.read()
            deadline = time.monotonic() + 5
            while cmdline() != b"/bin/sleep\x003600\x00" and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(b"/bin/sleep\x003600\x00", cmdline())
            self.assertNotEqual(pid, host.ns_main_pid("sleeper.service"))
            pids = host.namespace_pids()
            self.assertIn(host.init_pid, pids)
            self.assertIn(pid, pids)
            state_dir, cgroup_dir = host.state_dir, host.cgroup_dir
            self.assertTrue(os.path.isdir(state_dir))
            started = time.monotonic()
            for _ in range(20):
                host.systemctl("is-active", "sleeper.service")
            self.measure("systemctl call", (time.monotonic() - started) / 20)
            started = time.monotonic()
            host.poweroff()
            self.measure("poweroff", time.monotonic() - started)
            self.assertEqual("systemctl poweroff", host.poweroff_mode)
            with open(host.path("console.log")) as f:
                self.assertIn("Powering off.", f.read())
            host.poweroff()  # idempotent
            self.assertFalse(host.running)
            self.assertEqual([], host.namespace_pids())
        for p in pids:
            self.assertFalse(os.path.exists(f"/proc/{p}"), f"pid {p} survived")
        self.assertFalse(os.path.exists(state_dir))
        self.assertFalse(os.path.exists(cgroup_dir))

    def test_cleanup_after_failing_test_body(self):
        # Clean-up must not depend on the test getting as far as poweroff().
        host = systemd.SystemdHost()
        try:
            with host:
                pid = host.init_pid
                raise RuntimeError("test body failed")
        except RuntimeError:
            pass
        self.assertFalse(os.path.exists(f"/proc/{pid}"))
        self.assertFalse(os.path.exists(host.state_dir))
        self.assertFalse(os.path.exists(host.cgroup_dir))

    def test_host_state_untouched(self):
        # The machine's /tmp and /dev, and its own units, stay as they were.
        marker = f"/tmp/clouddisco-test-marker-{secrets.token_hex(4)}"
        with open(marker, "w") as f:
            f.write("keep me")
        self.addCleanup(os.unlink, marker)
        dev_before = set(os.listdir("/dev"))
        # Other tests on this machine add and remove network namespaces
        # under /run/netns meanwhile; every other mount must stay as it was.
        mounts_before = self.machine_mounts()
        with systemd.SystemdHost({"t.service": "[Service]\nExecStart=/bin/sleep 3600\n"}) as host:
            inside = host.nsenter("ls", "-A", "/tmp").stdout.split()
            self.assertNotIn(os.path.basename(marker), inside)
            units = host.systemctl("list-units", "--all", "--plain", "--no-legend").stdout
            for machine_unit in ("mariadb.service", "rabbitmq-server.service"):
                self.assertNotIn(machine_unit, units)
            self.assertEqual("not-found",
                             host.show("mariadb.service", "LoadState")["LoadState"])
        with open(marker) as f:
            self.assertEqual("keep me", f.read())
        self.assertEqual(dev_before, set(os.listdir("/dev")))
        self.assertEqual(mounts_before, self.machine_mounts())

    @staticmethod
    def machine_mounts():
        return [m for m in systemd._mountinfo() if not m[0].startswith("/run/netns/")]

    def test_add_unit_and_daemon_reload(self):
        host = self.boot()
        host.add_unit("late.service", "[Service]\nExecStart=/bin/sleep 3600\n")
        host.daemon_reload()
        host.start("late.service")
        self.assertTrue(host.is_active("late.service"))
        self.assertTrue(netlab.pid_alive(host.main_pid("late.service")))

    def test_without_journald_units_log_to_files(self):
        host_dir_unit = (
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            "ExecStart=/bin/echo hello from a file\n"
            "StandardOutput=append:{log}\n")
        host = self.boot(journal=False)
        host.add_unit("echo.service", host_dir_unit.format(log=host.log_path("echo.service")))
        host.daemon_reload()
        host.start("echo.service")
        self.assertEqual("hello from a file\n", host.journal("echo.service"))
        self.assertEqual("inactive", host.active_state("systemd-journald.service"))

    def test_network_namespaces_shared_both_ways(self):
        ip = shutil.which("ip") or "/sbin/ip"
        mine = f"cdt-sd-{secrets.token_hex(4)}"
        theirs = f"cdt-sd-{secrets.token_hex(4)}"
        for name in (mine, theirs):
            self.addCleanup(subprocess.run, [ip, "netns", "delete", name],
                            capture_output=True, check=False)
        subprocess.run([ip, "netns", "add", mine], check=True)
        unit = ("[Service]\nType=oneshot\nRemainAfterExit=yes\n"
                f"ExecStart={ip} netns add {theirs}\n")
        with systemd.SystemdHost({"mkns.service": unit}) as host:
            # A namespace made by a unit works here...
            subprocess.run([ip, "netns", "exec", theirs, "true"], check=True)
            # ... and one made here works in there.
            host.nsenter(ip, "netns", "exec", mine, "true")
            host.poweroff()
            self.assertEqual("systemctl poweroff", host.poweroff_mode)
        # systemd unmounts everything at shutdown: that must not have reached
        # the machine's /run/netns.
        subprocess.run([ip, "netns", "exec", mine, "true"], check=True)
        subprocess.run([ip, "netns", "exec", theirs, "true"], check=True)


class TestServiceSupervision(SystemdTestCase):
    """Restart=, Type=notify, WatchdogSec=, stop/restart, StartLimit*."""

    def test_restart_always_after_kill_9(self):
        host = self.boot()
        host.add_unit("demo.service", self.demo_unit(host))
        host.daemon_reload()
        host.start("demo.service")
        for _ in range(3):
            old = host.main_pid("demo.service")
            with host.expect_restart("demo.service") as restart:
                os.kill(old, signal.SIGKILL)
            self.measure("kill -9 to active again (RestartSec=0.2)", restart["seconds"])
            self.assertNotEqual(old, restart["pid"])
            self.assertFalse(netlab.pid_alive(old))
            self.assertGreaterEqual(restart["seconds"], 0.2)
        props = host.show("demo.service", "NRestarts", "ActiveState")
        self.assertEqual({"NRestarts": "3", "ActiveState": "active"}, props)

    def test_notify_ready_gates_start(self):
        host = self.boot()
        host.add_unit("late.service", self.demo_unit(host, args="--ready-delay 1.5"))
        host.daemon_reload()
        host.systemctl("start", "--no-block", "late.service")
        # Forked and running, but not started until READY=1.
        props = host.wait_state("late.service", "activating", timeout=5)
        self.assertEqual("start", props["SubState"])
        self.assertNotEqual("0", props["MainPID"])
        time.sleep(0.5)
        self.assertEqual("activating", host.active_state("late.service"))
        host.wait_active("late.service", timeout=10)
        ts = host.show("late.service", "ExecMainStartTimestampMonotonic",
                       "ActiveEnterTimestampMonotonic")
        waited = (int(ts["ActiveEnterTimestampMonotonic"])
                  - int(ts["ExecMainStartTimestampMonotonic"])) / 1e6
        self.measure("fork to active with READY=1 after 1.5s", waited)
        self.assertGreaterEqual(waited, 1.5)

        # A blocking start returns only once READY=1 has arrived.
        host.stop("late.service")
        started = time.monotonic()
        host.start("late.service")
        self.measure("blocking systemctl start", time.monotonic() - started)
        self.assertGreaterEqual(time.monotonic() - started, 1.5)

    def test_no_ready_or_ready_from_child_times_out(self):
        host = self.boot()
        for name, ready in (("never.service", "never"), ("child.service", "child")):
            host.add_unit(name, self.demo_unit(
                host, args=f"--ready {ready}",
                service="TimeoutStartSec=1.5\nRestart=no\n"))
        host.daemon_reload()
        for name in ("never.service", "child.service"):
            host.systemctl("start", "--no-block", name)
        for name in ("never.service", "child.service"):
            props = host.wait_state(name, "failed", timeout=10)
            self.assertEqual("timeout", props["Result"])
        self.assertIn("reception only permitted for main PID",
                      host.journal("child.service"))

    def test_watchdog_restarts_silent_service(self):
        host = self.boot()
        host.add_unit("dog.service", self.demo_unit(host, service="WatchdogSec=1\n"))
        host.daemon_reload()
        host.start("dog.service")
        pid = host.main_pid("dog.service")
        # Three watchdog periods: pinging every 0.5s keeps it alive.
        time.sleep(3)
        self.assertEqual(pid, host.main_pid("dog.service"))
        self.assertEqual("0", host.show("dog.service", "NRestarts")["NRestarts"])

        with host.expect_restart("dog.service") as restart:
            host.kill("dog.service", signal.SIGUSR1)
            # The handler runs at once, so this is the last ping systemd got.
            time.sleep(0.05)
            last_ping = int(host.show("dog.service", "WatchdogTimestampMonotonic")
                            ["WatchdogTimestampMonotonic"]) / 1e6
        self.measure("SIGUSR1 (pings stop) to active again (WatchdogSec=1, RestartSec=0.2)",
                     restart["seconds"])
        self.measure("last ping to active again", restart["active_at"] - last_ping)
        self.assertNotEqual(pid, restart["pid"])
        self.assertFalse(netlab.pid_alive(pid))
        self.assertGreaterEqual(restart["seconds"], 0.5)
        self.assertEqual("1", host.show("dog.service", "NRestarts")["NRestarts"])
        journal = host.journal("dog.service")
        self.assertIn("Watchdog timeout", journal)
        self.assertIn("Failed with result 'watchdog'", journal)
        self.assertIn("SIGUSR1: no more watchdog pings", journal)

    def test_restart_new_pid_and_stop_sends_sigterm(self):
        host = self.boot()
        host.add_unit("demo.service", self.demo_unit(host))
        host.daemon_reload()
        host.start("demo.service")
        first = host.main_pid("demo.service")
        first_ns = host.ns_main_pid("demo.service")
        host.restart("demo.service")
        second = host.main_pid("demo.service")
        self.assertNotEqual(first, second)
        self.assertFalse(netlab.pid_alive(first))
        # restart stops with SIGTERM too.
        self.assertTrue(os.path.exists(host.path(f"sigterm-{first_ns}")))

        second_ns = host.ns_main_pid("demo.service")
        host.stop("demo.service")
        self.assertTrue(os.path.exists(host.path(f"sigterm-{second_ns}")))
        props = host.show("demo.service", "ActiveState", "Result", "MainPID")
        self.assertEqual({"ActiveState": "inactive", "Result": "success", "MainPID": "0"},
                         props)
        self.assertFalse(netlab.pid_alive(second))
        self.assertEqual(0, host.main_pid("demo.service"))

    def test_start_limit_makes_agent_unable_to_come_back(self):
        host = self.boot()
        flag = host.path("broken")
        host.add_unit("agent.service", self.demo_unit(
            host, args=f"--fail-if {flag}",
            unit="StartLimitIntervalSec=30\nStartLimitBurst=3\n"))
        host.daemon_reload()
        host.start("agent.service")
        pid = host.main_pid("agent.service")

        # From now on every start fails: after the burst it stays failed.
        with open(flag, "w"):
            pass
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        props = host.wait_state("agent.service", "failed", timeout=15)
        self.measure("kill -9 to failed (start limit)", time.monotonic() - started)
        # The automatic restart that hits the limit keeps the last failure's
        # Result (exit-code here); the journal says why it gave up.
        self.assertEqual("exit-code", props["Result"])
        self.assertEqual("3", props["NRestarts"])
        journal = host.journal("agent.service")
        self.assertEqual(1, journal.count("Start request repeated too quickly"))
        self.assertEqual(0, host.main_pid("agent.service"))
        # A plain start is refused while the limit holds: no new process.
        # (systemctl's message blames "the control process", from the
        # stale Result; only the journal tells the start limit.)
        refused = host.systemctl("start", "agent.service", check=False)
        self.assertNotEqual(0, refused.returncode)
        journal = host.journal("agent.service")
        self.assertEqual(2, journal.count("Start request repeated too quickly"))
        self.assertEqual(3, journal.count("Starting agent.service"))
        # ... until reset-failed, and then it works once the cause is gone.
        os.unlink(flag)
        host.reset_failed("agent.service")
        host.start("agent.service")
        self.assertTrue(host.is_active("agent.service"))
