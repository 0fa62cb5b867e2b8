"""A call whose caller has given up changes nothing (real RabbitMQ and processes).

The scheduler's placement worker is stopped (SIGSTOP: a hung or overloaded
replica) while an agent's ``register`` calls time out. RabbitMQ has already
pushed them to that worker's consumer (no prefetch limit), so per-message
expiry does not drop them: when the worker runs again it finds them in its
own buffers. Before call deadlines, each of them registered the agent again
and bumped its lease generation.
"""

import contextlib
import os
import re
import signal

import oslo_messaging

from clouddisco import rpc
from clouddisco.db import api as db_api
from tests.functional import cloud as cloud_mod
from tests.functional import netlab
from tests.unit import base as unit_base

HOST = "deadline-node"


class StaleCallTest(cloud_mod.CloudTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("functional tests run as root")
        self.cloud = self.make_cloud(agents=(), guards=False)
        conf = unit_base.make_conf(transport_url=self.cloud.transport_url, host="probe")
        transport = rpc.get_transport(conf)
        self.addCleanup(transport.cleanup)
        self.scheduler = rpc.SchedulerAPI(transport, timeout=10)
        self.db = db_api.Database.from_conf(
            unit_base.make_conf(database__connection=self.cloud.db.url))

    def _placement_worker(self) -> int:
        def find():
            return [pid for pid, title in self.cloud.scheduler().children().items()
                    if "placement" in title]
        [pid] = netlab.wait_for(find, 30, 0.1, "the scheduler's placement worker")
        return pid

    def _register_outcomes(self) -> int:
        """register calls of HOST the scheduler has dealt with, either way."""
        log = self.cloud.logs(tail=None)["scheduler-1.log"].decode(errors="replace")
        return len(re.findall(rf"registered from host {HOST} |register from host "
                              rf"{HOST} refused", log))

    def test_register_that_timed_out_bumps_nothing_later(self):
        first = netlab.wait_for(
            lambda: _try(lambda: self.scheduler.register(HOST, "dl-", timeout=5)),
            60, 0.5, "a first registration")
        self.assertEqual(1, first["lease_generation"])

        worker = self._placement_worker()
        os.kill(worker, signal.SIGSTOP)
        self.addCleanup(_cont, worker)
        # Short enough that RabbitMQ's heartbeat keeps the stopped worker's
        # connection (and the messages pushed to it).
        for _ in range(3):
            self.assertRaises((oslo_messaging.MessagingTimeout, TimeoutError),
                              self.scheduler.register, HOST, "dl-", timeout=0.5)
        os.kill(worker, signal.SIGCONT)

        second = self.scheduler.register(HOST, "dl-", timeout=10)
        # Wait until the worker has dealt with all five, so that a stale one
        # processed after ``second`` would show.
        netlab.wait_for(lambda: self._register_outcomes() >= 5, 30, 0.1,
                        "the scheduler to process the stale register calls")
        [agent] = [a for a in self.db.agent_health() if a["host"] == HOST]
        # One bump per registration whose caller got the answer.
        self.assertEqual(2, second["lease_generation"])
        self.assertEqual(2, agent["lease_generation"])


def _try(fn):
    try:
        return fn()
    except (oslo_messaging.MessagingException, TimeoutError, rpc.BrokerBusy):
        return None


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
