"""No false failovers: healthy agents stay alive for 10 minutes at the default
timings while the API is under load and both cores are busy.

Fast failover is worth nothing if it flaps: real Neutron at agent_down_time
1 s showed healthy agents as dead in 57-72 % of samples on this machine.
CLOUDDISCO_SOAK_SECONDS shortens the soak for a quick local run.
CLOUDDISCO_SOAK_BURNERS sets how many busy loops keep the cores busy (default:
one per core), e.g. 0 where other test workers already keep them busy.
"""

import os
import subprocess
import sys
import threading
import time

import requests
from testtools import content

from lab import netlab
from tests.functional import cloud as cloud_mod

SOAK_SECONDS = float(os.environ.get("CLOUDDISCO_SOAK_SECONDS", "600"))
BURNERS = int(os.environ.get("CLOUDDISCO_SOAK_BURNERS", str(os.cpu_count() or 2)))
BUSY_LOOP = "import time\nend = time.monotonic() + %f\nwhile time.monotonic() < end: pass\n"


@netlab.skip_unless_root
class NoFalseFailoverSoakTest(cloud_mod.CloudTestCase):
    def test_healthy_agents_are_never_declared_dead(self):
        cloud = self.make_cloud(agents=("a", "b", "c"))  # default timings
        routers = [cloud.wait_router(cloud.create_router(f"r{i}")["id"]) for i in range(6)]
        placement = {r["id"]: r["agent_host"] for r in routers}
        # Both cores busy for the whole soak (stopped by their own deadline
        # and, to be sure, by pid).
        burners = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP % SOAK_SECONDS])
                   for _ in range(BURNERS)]
        for proc in burners:
            self.addCleanup(proc.wait)
            self.addCleanup(proc.kill)
        stop = threading.Event()
        api_requests = []

        def api_load():
            # Create and delete routers and list everything, without pause.
            session = requests.Session()
            headers = dict(cloud_mod.ADMIN_HEADERS)
            while not stop.is_set():
                r = session.post(cloud.api_url + "/v1/routers", json={"name": "load"},
                                 headers=headers, timeout=30)
                if r.status_code == 201:
                    session.delete(f"{cloud.api_url}/v1/routers/{r.json()['router']['id']}",
                                   headers=headers, timeout=30)
                session.get(cloud.api_url + "/v1/routers", headers=headers, timeout=30)
                api_requests.append(r.status_code)

        loader = threading.Thread(target=api_load, daemon=True)
        loader.start()
        self.addCleanup(loader.join, 60)
        self.addCleanup(stop.set)
        samples, dead_samples = 0, []
        end = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < end:
            agents = cloud.agents()
            samples += 1
            dead = [h for h, a in agents.items() if not a["alive"]]
            if dead:
                dead_samples.append((time.time(), dead))
            time.sleep(0.5)
        stop.set()
        loader.join(60)
        self.addDetail("soak", content.text_content(
            f"{SOAK_SECONDS:.0f}s, {samples} samples, {len(api_requests)} API create/delete/"
            f"list rounds, {len(dead_samples)} samples with a dead agent"))
        self.assertEqual([], dead_samples, "a healthy agent was reported dead")
        self.assertGreater(samples, SOAK_SECONDS)  # sampled at least every second
        self.assertTrue(api_requests, "the API load ran")
        self.assertEqual([], [e for e in cloud.events() if e["router_id"] or
                              e["cause"] == "circuit_breaker"])
        self.assertEqual(placement, {r["id"]: cloud.router(r["id"])["agent_host"]
                                     for r in routers})
        self.assertEqual([], [c for c in api_requests if c >= 500], "the API answered 5xx")
