"""A call whose caller has given up changes nothing (real RabbitMQ and processes).

The scheduler's report worker, which takes registrations (scheduler API 1.2),
is stopped (SIGSTOP: a hung or overloaded replica) while an agent's
``register`` calls time out. RabbitMQ has already pushed them to that
worker's consumer (up to its prefetch count), so per-message expiry does not
drop them: when the worker runs again it finds them in its
own buffers. Before call deadlines, each of them registered the agent again
and bumped its lease generation.
"""

import contextlib
import os
import re
import signal
import subprocess
import time

import oslo_messaging

from clouddisco import rpc
from clouddisco.db import api as db_api
from lab import netlab
from tests.functional import cloud as cloud_mod
from tests.unit import base as unit_base

HOST = "deadline-node"


class _ControlPlaneOnly(cloud_mod.CloudTestCase):
    """A cloud with no agent, and a transport of the test's own to call it."""

    debug = False

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("functional tests run as root")
        self.cloud = self.make_cloud(agents=(), guards=False, debug=self.debug)
        conf = unit_base.make_conf(transport_url=self.cloud.transport_url, host="probe")
        self.transport = rpc.get_transport(conf)
        self.addCleanup(self.transport.cleanup)


class StaleCallTest(_ControlPlaneOnly):
    # Each refused expired call is logged at DEBUG (only the first of a burst
    # at WARNING), and the test counts them.
    debug = True
    def setUp(self):
        super().setUp()
        transport = self.transport
        self.scheduler = rpc.SchedulerAPI(transport, timeout=10)
        self.db = db_api.Database.from_conf(
            unit_base.make_conf(database__connection=self.cloud.db.url))

    def _registration_worker(self) -> int:
        def find():
            return [pid for pid, title in self.cloud.scheduler().children().items()
                    if "state reports" in title and "UDP" not in title]
        [pid] = netlab.wait_for(find, 30, 0.1, "the scheduler's report worker")
        return pid

    def _register_outcomes(self) -> int:
        """register calls of HOST the scheduler has dealt with, either way."""
        log = self.cloud.logs(tail=None)["scheduler-1.log"].decode(errors="replace")
        # One line per call: the DEBUG line of a refusal, not the WARNING
        # that opens a burst ("deadline; further expired reports ...").
        return len(re.findall(rf"registered from host {HOST} |register from host "
                              rf"{HOST} refused: it arrived [0-9.]+s after its "
                              rf"caller's deadline(?!;)", log))

    def test_register_that_timed_out_bumps_nothing_later(self):
        first = netlab.wait_for(
            lambda: _try(lambda: self.scheduler.register(HOST, "dl-", timeout=5)),
            60, 0.5, "a first registration")
        self.assertEqual(1, first["lease_generation"])

        worker = self._registration_worker()
        os.kill(worker, signal.SIGSTOP)
        self.addCleanup(_cont, worker)
        # Short enough that RabbitMQ's heartbeat keeps the stopped worker's
        # connection (and the messages pushed to it).
        for _ in range(3):
            self.assertRaises((oslo_messaging.MessagingTimeout, TimeoutError),
                              self.scheduler.register, HOST, "dl-", timeout=0.5)
        # Past [DEFAULT] max_clock_skew (1 s), which a call may be late by and
        # still run: the youngest of the three is then as stale as a call a
        # restarted replica finds waiting for it.
        time.sleep(1.5)
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


class ReportBacklogTest(_ControlPlaneOnly):
    """A report worker that falls behind leaves its backlog in RabbitMQ
    (``[scheduler] report_prefetch_count``), not in its own memory, and
    refuses the reports whose senders gave up."""

    BACKLOG = 200

    def _queue(self) -> tuple[int, int]:
        """(ready, unacknowledged) messages of the reports topic queue."""
        out = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", self.cloud.token, "name",
             "messages_ready", "messages_unacknowledged"],
            check=True, capture_output=True, text=True, timeout=60).stdout
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == rpc.REPORTS_TOPIC:
                return int(fields[1]), int(fields[2])
        raise AssertionError(f"no queue {rpc.REPORTS_TOPIC}: {out}")

    def test_backlog_stays_in_rabbitmq_and_expired_reports_are_refused(self):
        scheduler = rpc.SchedulerAPI(self.transport, timeout=5)
        netlab.wait_for(lambda: _try(lambda: scheduler.report_state(HOST, {}, 5)), 60,
                        0.5, "the report worker to answer")
        [worker] = [pid for pid, title in self.cloud.scheduler().children().items()
                    if "state reports" in title]
        os.kill(worker, signal.SIGSTOP)
        self.addCleanup(_cont, worker)
        client = oslo_messaging.get_rpc_client(
            self.transport, oslo_messaging.Target(topic=rpc.REPORTS_TOPIC, version="1.0"))
        # Already past their deadline by more than max_clock_skew (1 s), as a
        # backlog is by the time it is read.
        ctxt = rpc.call_context(1.0, now=time.time() - 4.0)
        for i in range(self.BACKLOG):
            client.prepare(retry=0).cast(ctxt, "report_state", host=f"{HOST}-{i}",
                                         state={})
        ready, unacked = netlab.wait_for(
            lambda: (q := self._queue()) and sum(q) == self.BACKLOG and q, 60, 0.2,
            "RabbitMQ to count the backlog")
        # Only the prefetch window (default 64) went to the stopped worker.
        self.assertLessEqual(unacked, 64)
        self.assertGreaterEqual(ready, self.BACKLOG - 64)
        os.kill(worker, signal.SIGCONT)

        netlab.wait_for(lambda: self._queue() == (0, 0), 30, 0.2,
                        "the worker to drain the backlog")
        log = self.cloud.logs(tail=None)["scheduler-1.log"].decode(errors="replace")
        self.assertIn("report_state from host", log)
        self.assertIn("further expired reports are counted", log)
        # One WARNING for the burst, not one per report.
        self.assertLess(log.count("refused: it arrived"), 5)
        self.assertIn(worker, self.cloud.scheduler().children())


def _try(fn):
    try:
        return fn()
    except (oslo_messaging.MessagingException, TimeoutError, rpc.BrokerBusy):
        return None


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
