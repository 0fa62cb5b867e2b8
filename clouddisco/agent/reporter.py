"""State reports (heartbeats) of an L3 agent, on a thread of their own.

Each acknowledged report renews the node's data-plane lease: it runs
``lease_time`` from when the report was *sent*, on the monotonic clock, and is
written where the node's cleanup service enforces it. The report loop never
waits on router work: a late heartbeat is how healthy agents get declared dead.
"""

import os
import time
from collections.abc import Callable

from oslo_log import log as logging

from clouddisco import lease
from clouddisco import periodic
from clouddisco import rpc

LOG = logging.getLogger(__name__)


class StateReporter:
    def __init__(self, host: str, namespace_prefix: str, scheduler: rpc.SchedulerAPI, *,
                 interval: float, state_dir: str, on_connected: Callable[[], None],
                 state: Callable[[], dict],
                 on_tick: Callable[[], None] = lambda: None) -> None:
        self.host = host
        self.namespace_prefix = namespace_prefix
        self.scheduler = scheduler
        self.interval = interval
        self.state_dir = state_dir
        self.on_connected = on_connected
        self.on_tick = on_tick
        self.state = state
        self.agent_id: str | None = None
        self.generation: int | None = None
        self._connected = False
        # The loop keeps a fixed cadence on the monotonic clock, whatever a
        # report cost.
        self._loop = periodic.Loop("state-reporter", self._step, interval)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> float:
        self.report_once()
        self.on_tick()  # e.g. the systemd watchdog: this thread is alive
        return self.interval

    def fenced(self, generation: int) -> None:
        """The routers of ``generation`` were removed (by the agent's own
        lease enforcement): register again before serving anything."""
        if self.generation == generation:
            self.agent_id = None
            self.generation = None

    def report_once(self) -> bool:
        # A reply must come back before the next report is due; waiting longer
        # would only delay the next heartbeat.
        timeout = max(self.interval, 0.5)
        sent = time.monotonic()
        registered_now = False
        if self.generation is not None and lease.fenced(self.state_dir, self.host,
                                                        self.generation):
            # The node guard removed this lease's routers; they may run
            # elsewhere now. Only a new registration (and resync) may rebuild.
            LOG.warning("lease generation %d of %s was fenced by the node guard; "
                        "registering again", self.generation, self.host)
            self.agent_id = None
            self.generation = None
        try:
            if self.agent_id is None:
                reply = self.scheduler.register(self.host, self.namespace_prefix, timeout)
                generation = reply["lease_generation"]
                # The lease file first: the moment the generation is published,
                # the worker and the enforcer judge the lease by it.
                self._renew(generation, sent, reply.get("lease_time"))
                self.agent_id = reply["agent_id"]
                self.generation = generation
                registered_now = True
                LOG.info("registered as agent %s (lease generation %s)", self.agent_id,
                         self.generation)
            else:
                generation = self.generation
                state = dict(self.state(), lease_generation=generation)
                reply = self.scheduler.report_state(self.host, state, timeout)
                if not reply.get("registered", True):
                    LOG.warning("scheduler refused the report of %s (lease generation "
                                "%s: unknown, declared dead or superseded); registering "
                                "again", self.host, generation)
                    self.agent_id = None
                    self.generation = None
                    return False
                if self.generation != generation:
                    return False  # fenced meanwhile: this ack renews nothing
                self._renew(generation, sent, reply.get("lease_time"))
        except Exception as exc:
            if self._connected:
                LOG.warning("state report failed: %s; retrying every %.1fs", exc,
                            self.interval)
            else:
                LOG.debug("state report failed: %s", exc)
            self._connected = False
            return False
        if registered_now or not self._connected:
            LOG.info("connected to the scheduler; resyncing routers")
            self._connected = True
            # Casts may have been lost while we could not reach the broker.
            self.on_connected()
        return True

    def _renew(self, generation: int, sent: float, lease_time: float | None) -> None:
        if not lease_time:
            return
        try:
            lease.write(self.state_dir, lease.Lease(
                host=self.host, generation=generation, expires=sent + lease_time,
                renewed_at=sent, pid=os.getpid()), lease.AGENT)
        except OSError as exc:
            LOG.error("could not record the lease in %s: %s", self.state_dir, exc)
