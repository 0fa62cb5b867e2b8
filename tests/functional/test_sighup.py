"""SIGHUP never stops serving: every clouddisco service reloads what it can
(mutable options such as ``debug``) or ignores it, and keeps running.

Before, SIGHUP's default action killed the API, the L3 agent and the node
guard, and cotyledon's reload stopped and restarted every scheduler worker,
report workers included.
"""

import os
import re
import signal
import time

from lab import netlab
from tests.functional import cloud as cloud_mod


class SighupTest(cloud_mod.CloudTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("functional tests run as root")
        self.cloud = self.make_cloud(agents=("a", "b"))

    def test_sighup_reloads_and_keeps_every_service_serving(self):
        cloud = self.cloud
        router = cloud.wait_router(cloud.create_router("r1")["id"])
        workers = netlab.wait_for(
            lambda: (w := cloud.scheduler().children()) and len(w) == 2 and w, 30, 0.1,
            "the scheduler's two workers")
        processes = dict(cloud.processes)
        # One service's configuration changes meanwhile: its debug option is
        # mutable, so it must take effect without a restart.
        path = cloud.config_path("agent-a")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"(?m)^debug = .*$", "debug = True", text))
        before = cloud.agents()

        for proc in processes.values():
            proc.signal(signal.SIGHUP)
        for pid in workers:
            os.kill(pid, signal.SIGHUP)

        # Watch over several report intervals (and past agent_down_time):
        # nothing dies, nothing restarts, every agent stays alive.
        deadline = time.monotonic() + cloud.agent_down_time + 2 * cloud.report_interval
        while time.monotonic() < deadline:
            dead = sorted(name for name, proc in processes.items() if not proc.alive())
            self.assertEqual([], dead, "processes ended by SIGHUP")
            self.assertEqual(set(workers), set(cloud.scheduler().children()),
                             "scheduler workers restarted by SIGHUP")
            alive = cloud.alive_hosts()
            self.assertEqual({cloud.host("a"), cloud.host("b")}, alive,
                             "agents stopped reporting")
            time.sleep(0.2)

        after = cloud.agents()
        for host, agent in after.items():
            self.assertGreater(agent["heartbeat_at"], before[host]["heartbeat_at"])
        moved = cloud.router(router["id"])
        self.assertEqual((router["agent_host"], "ACTIVE"),
                         (moved["agent_host"], moved["status"]))
        self.assertEqual([], cloud.events(router["id"]))

        logs = {name: data.decode(errors="replace") for name, data in cloud.logs().items()}
        for name in processes:
            self.assertIn("SIGHUP: reloaded the configuration files", logs[f"{name}.log"],
                          name)
        # The master and both workers each reloaded (the master also passes
        # SIGHUP on to its workers, so they reloaded at least twice).
        self.assertGreaterEqual(logs["scheduler-1.log"].count(
            "SIGHUP: reloaded the configuration files"), 3)
        self.assertIn("mutable options changed: [DEFAULT] debug", logs["agent-a.log"])
        self.assertIn("mutable options changed: none", logs["agent-b.log"])
