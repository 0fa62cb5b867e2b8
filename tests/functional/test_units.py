"""The shipped systemd units, under a real systemd (only paths and PYTHONPATH set).

ShippedUnitsTest: agent "a" and its node guard run from etc/systemd/*.service;
the API, the scheduler and agent "b" run as plain processes of the test's
cloud (routers, failover, ping gaps). AllShippedUnitsTest: all four units
under one systemd, booted in order, killed and restarted one by one."""

import os
import secrets
import signal
import subprocess
import time

import fixtures
import requests
import testtools

from lab import invariants
from lab import netlab
from tests.functional import cloud as cloud_mod
from tests.functional import systemd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_UNIT = "clouddisco-l3-agent.service"
GUARD_UNIT = "clouddisco-cleanup.service"


def shipped_unit(name: str, config: str) -> str:
    with open(os.path.join(REPO, "etc", "systemd", name)) as f:
        text = f.read()
    text = (text.replace("/usr/local/bin/", cloud_mod.BIN + "/")
            .replace("/etc/clouddisco/clouddisco.conf", config))
    # The code under test, as the cloud's plain processes run it (PYTHONPATH),
    # even when the venv's clouddisco is installed from another checkout.
    return text.replace("[Service]\n", f"[Service]\nEnvironment=PYTHONPATH={REPO}\n", 1)


@netlab.skip_unless_root
class ShippedUnitsTest(cloud_mod.CloudTestCase):
    def setUp(self):
        super().setUp()
        reason = systemd.skip_reason()
        if reason:  # e.g. /lib/systemd/systemd missing: say so, never pass silently
            self.fail(f"cannot boot systemd for the unit tests: {reason}")
        # The product's default restart_grace: a restarted agent under a loaded
        # CI took up to 3.6 s from kill -9 to registered (2.9 s to start).
        self.cloud = self.make_cloud(agents=("b",), restart_grace=5.0)
        # Units see neither the test's /tmp nor its files: config, state and
        # logs go to the systemd host's state directory.
        self.host = systemd.use_systemd_host(self, {}, wanted=())
        config = os.path.join(self.host.state_dir, "agent-a.conf")
        self.cloud.agent_names.append("a")
        path = self.cloud.write_config("agent-a", host=self.cloud.host("a"),
                                       prefix=self.cloud.prefix("a"),
                                       state_dir=os.path.join(self.host.state_dir, "lease"))
        os.replace(path, config)
        for unit in (AGENT_UNIT, GUARD_UNIT):
            self.host.add_unit(unit, shipped_unit(unit, config))
        self.host.daemon_reload()
        self.host.start(GUARD_UNIT)
        self.host.start(AGENT_UNIT)  # Type=notify: returns once READY=1 was sent
        netlab.wait_for(lambda: self.cloud.host("a") in self.cloud.alive_hosts(), 30,
                        what="the systemd-managed agent to report")
        self.sampler = invariants.InvariantSampler(self.cloud.token + "-")
        self.sampler.start()
        self.addCleanup(self.sampler.stop)
        # Put a router on "a": disable "b" while creating it.
        b_id = self.cloud.agents()[self.cloud.host("b")]["id"]
        self.cloud.api("PUT", f"/v1/agents/{b_id}", json={"admin_state_up": False},
                       expect=200)
        self.router = self.cloud.wait_router(self.cloud.create_router("r")["id"])
        self.cloud.api("PUT", f"/v1/agents/{b_id}", json={"admin_state_up": True},
                       expect=200)
        self.assertEqual(self.cloud.host("a"), self.router["agent_host"])

    def gap_through(self, action, settle: float):
        with netlab.Pinger(self.cloud.probe, self.router["external_gateway_ip"]) as pinger:
            netlab.wait_for(lambda: len(pinger.replies()) > 5, 10, what="pings")
            started = time.time()
            action()
            time.sleep(settle)
            back = pinger.wait_reply_after(time.time(), timeout=15)
            return pinger.max_gap(after=started - 0.05, before=back)

    def assert_not_moved(self):
        self.assertEqual(self.cloud.host("a"),
                         self.cloud.router(self.router["id"])["agent_host"])
        self.assertEqual([], self.cloud.events(self.router["id"]))
        self.sampler.assert_no_double_active()
        self.sampler.assert_each_has_one_copy([self.router["external_gateway_ip"]])

    def test_agent_kill_9_is_restarted_and_adopts(self):
        old = self.host.main_pid(AGENT_UNIT)
        gap = self.gap_through(lambda: os.kill(old, signal.SIGKILL),
                               settle=self.cloud.agent_down_time + 1)
        new = self.host.wait_main_pid_change(AGENT_UNIT, old, timeout=30)
        self.assertNotEqual(old, new)
        self.assertLess(gap, 0.5, "a restarted agent adopts its routers: no gap")
        self.assert_not_moved()

    def test_systemctl_restart_moves_nothing(self):
        old = self.host.main_pid(AGENT_UNIT)
        gap = self.gap_through(lambda: self.host.restart(AGENT_UNIT),
                               settle=self.cloud.agent_down_time + 1)
        self.assertNotEqual(old, self.host.main_pid(AGENT_UNIT))
        self.assertLess(gap, 0.5)
        self.assert_not_moved()

    def test_systemctl_reload_keeps_serving(self):
        """ExecReload sends SIGHUP: the agent and its node guard re-read their
        configuration and keep running; nothing restarts or moves."""
        pids = {unit: self.host.main_pid(unit) for unit in (AGENT_UNIT, GUARD_UNIT)}
        for unit in pids:
            self.host.systemctl("reload", unit)
        time.sleep(self.cloud.agent_down_time)  # past a would-be failover
        for unit, pid in pids.items():
            self.assertTrue(self.host.is_active(unit), unit)
            self.assertEqual(pid, self.host.main_pid(unit), unit)
            self.assertIn("SIGHUP: reloaded the configuration files",
                          self.host.journal(unit), unit)
        self.assertIn(self.cloud.host("a"), self.cloud.alive_hosts())
        self.assert_not_moved()

    def test_killed_node_guard_is_restarted(self):
        old = self.host.main_pid(GUARD_UNIT)
        os.kill(old, signal.SIGKILL)
        new = self.host.wait_main_pid_change(GUARD_UNIT, old, timeout=30)
        self.assertNotEqual(old, new)
        time.sleep(self.cloud.agent_down_time)
        self.assert_not_moved()

    def test_stopped_agent_unit_is_fenced_and_moved(self):
        self.host.stop(AGENT_UNIT)  # and it does not come back
        moved = self.cloud.wait_router(self.router["id"], agent_host=self.cloud.host("b"),
                                       timeout=30)
        self.assertEqual("ACTIVE", moved["status"])
        event = self.cloud.events(self.router["id"])[0]
        self.assertEqual("agent_fenced", event["cause"])
        self.assertEqual([], self.cloud.router_namespaces("a"))
        time.sleep(0.3)
        self.sampler.assert_no_double_active()
        self.sampler.assert_each_has_one_copy([self.router["external_gateway_ip"]])

    def test_hung_agent_is_fenced_then_killed_by_the_watchdog(self):
        """SIGSTOP: the lease runs out and the node fences itself long before the
        watchdog (WatchdogSec=5) fires; then systemd kills and restarts the
        agent, and the new process brings nothing back."""
        old = self.host.main_pid(AGENT_UNIT)
        os.kill(old, signal.SIGSTOP)
        moved = self.cloud.wait_router(self.router["id"], agent_host=self.cloud.host("b"),
                                       timeout=30)
        self.assertEqual("ACTIVE", moved["status"])
        # WatchdogSec, then TimeoutAbortSec for a process that cannot take SIGABRT.
        new = self.host.wait_main_pid_change(AGENT_UNIT, old, timeout=30)
        self.assertFalse(netlab.pid_alive(old))
        self.assertIn("Watchdog timeout", self.host.journal(AGENT_UNIT))
        netlab.wait_for(lambda: self.cloud.host("a") in self.cloud.alive_hosts(), 30,
                        what="the restarted agent to report")
        time.sleep(1)  # one resync and report cycle of the new process
        self.assertNotEqual(old, new)
        self.assertEqual([], self.cloud.router_namespaces("a"))
        self.assertEqual(self.cloud.host("b"), self.cloud.router(self.router["id"])["agent_host"])
        [event] = self.cloud.events(self.router["id"])
        self.assertIsNotNone(event["fenced_at"])
        self.sampler.assert_no_double_active()
        self.sampler.assert_each_has_one_copy([self.router["external_gateway_ip"]])


# ---------------------------------------------------------------------------
# All four shipped units under one systemd, against the machine's MariaDB and
# RabbitMQ (a throw-away database and vhost, as lab.cloud makes them).

API_UNIT = "clouddisco-api.service"
SCHEDULER_UNIT = "clouddisco-scheduler.service"
ALL_UNITS = (API_UNIT, SCHEDULER_UNIT, GUARD_UNIT, AGENT_UNIT)


@netlab.skip_unless_root
class AllShippedUnitsTest(testtools.TestCase):
    """etc/systemd/*.service booted as an operator enables them: systemd starts
    all four at boot in their order, each says READY=1 once it serves, and a
    kill -9 of any main process brings it back with a new pid, READY again.

    One boot for every check: the services' start-up is what costs (about
    2 s of Python each on two cores)."""

    def setUp(self):
        super().setUp()
        reason = systemd.skip_reason()
        if reason:
            self.fail(f"cannot boot systemd for the unit tests: {reason}")
        token = "cdu" + secrets.token_hex(3)
        # Outside /tmp, which is private inside the namespace.
        self.dir = self.useFixture(fixtures.TempDir(rootdir=systemd.STATE_PARENT)).path
        db = netlab.TempDatabase()
        self.addCleanup(db.drop)
        cloud_mod.rabbitmqctl("add_vhost", token)
        self.addCleanup(cloud_mod.rabbitmqctl, "delete_vhost", token)
        cloud_mod.rabbitmqctl("set_permissions", "-p", token, "guest", ".*", ".*", ".*")
        self.api_url = f"http://127.0.0.1:{netlab.free_port()}"
        self.node = f"{token}-node"
        common = (f"transport_url = rabbit://guest:guest@127.0.0.1:5672/{token}\n"
                  f"[database]\nconnection = {db.url}\n"
                  "[health]\nagent_down_time = 5\n")
        controller = self.write("controller.conf", f"""[DEFAULT]
host = {token}-controller
{common}[api]
auth_strategy = noauth
bind_host = 127.0.0.1
bind_port = {self.api_url.rsplit(':', 1)[1]}
""")
        # The fake driver: routers are the netns tests' business (above);
        # these units need only start, serve, die and come back.
        node = self.write("node.conf", f"""[DEFAULT]
host = {self.node}
{common}[agent]
router_driver = fake
namespace_prefix = {token}-
state_dir = {os.path.join(self.dir, "lease")}
""")
        subprocess.run([f"{cloud_mod.BIN}/clouddisco-db-manage", "--config-file", controller,
                        "upgrade", "head"], check=True, capture_output=True, timeout=120)
        units = {unit: shipped_unit(unit, node if unit in (GUARD_UNIT, AGENT_UNIT)
                                    else controller) for unit in ALL_UNITS}
        # Booting into a target that wants all four is `systemctl enable`
        # plus a reboot: the boot ends once every one of them is active.
        self.host = systemd.use_systemd_host(self, units, boot_timeout=60)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def api_get(self, path):
        return requests.get(self.api_url + path, headers=cloud_mod.ADMIN_HEADERS, timeout=5)

    def agent_alive(self):
        try:
            agents = self.api_get("/v1/agents").json()["agents"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        return any(a["host"] == self.node and a["alive"] for a in agents)

    def monotonic(self, unit, prop):
        return int(self.host.show(unit, prop)[prop]) / 1e6

    def test_boot_order_ready_and_restart_after_kill_9(self):
        for unit in ALL_UNITS:
            props = self.host.show(unit, "ActiveState", "Type", "NRestarts")
            self.assertEqual(("active", "notify", "0"),
                             (props["ActiveState"], props["Type"], props["NRestarts"]), unit)
        # The node guard was ready before the agent was even started.
        self.assertLessEqual(self.monotonic(GUARD_UNIT, "ActiveEnterTimestampMonotonic"),
                             self.monotonic(AGENT_UNIT, "ExecMainStartTimestampMonotonic"))
        # READY=1 means serving: the API answers at once, no retry.
        self.assertEqual(200, self.api_get("/").status_code)
        netlab.wait_for(self.agent_alive, 30, 0.2, "the agent to register and report")

        for unit in ALL_UNITS:
            old = self.host.main_pid(unit)
            old_group = set(self.host.namespace_pids()) if unit == SCHEDULER_UNIT else set()
            started = time.monotonic()
            os.kill(old, signal.SIGKILL)
            # Active again with another main pid: Type=notify, so only once
            # the new process sent READY=1.
            new = self.host.wait_main_pid_change(unit, old, timeout=30)
            props = self.host.show(unit, "NRestarts", "ActiveEnterTimestampMonotonic")
            self.assertNotEqual(old, new, unit)
            self.assertEqual("1", props["NRestarts"], unit)
            self.assertGreater(int(props["ActiveEnterTimestampMonotonic"]) / 1e6, started, unit)
            self.assertFalse(netlab.pid_alive(old), unit)
            if unit == API_UNIT:
                self.assertEqual(200, self.api_get("/").status_code)
            if unit == SCHEDULER_UNIT:
                # No worker of the killed master survives it.
                left = old_group & set(self.host.namespace_pids())
                workers = [p for p in left if _cmdline(p).find("clouddisco-scheduler") >= 0]
                self.assertEqual([], workers)
        # The restarted scheduler and agent work together again.
        netlab.wait_for(self.agent_alive, 30, 0.2, "the agent to report after the restarts")
        for unit in ALL_UNITS:
            self.assertTrue(self.host.is_active(unit), unit)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
