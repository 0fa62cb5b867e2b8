"""This node's lease, lock and guard, as the L3 agent sees them.

The agent may change the data plane only under three conditions, checked
under the node lock just before each batch of work:

* it holds a live lease of its current registration (generation) that the
  node has not fenced, with enough of it left for the batch;
* the node guard (``clouddisco-cleanup --daemon``) of this very host and
  namespace prefix checked the node recently: without it nobody would fence
  the node if this agent hung, and the control plane would move its routers
  while they still serve;
* nobody else holds the node lock (the guard fencing).

And it enforces its own lease: when the lease runs out it removes what it
serves (``LeaseEnforcer``), so that a dead or missing guard alone never
leaves a second copy.
"""

import contextlib
import time
from collections.abc import Callable
from collections.abc import Iterator

from oslo_log import log as logging

from clouddisco import lease
from clouddisco import periodic
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

# The agent waits this long for the node lock before giving up a batch (the
# guard holds it for a few milliseconds per check; longer means it is stuck).
LOCK_TIMEOUT = 2.0


class Node:
    def __init__(self, host: str, namespace_prefix: str, state_dir: str, *,
                 generation: Callable[[], int | None], guard_timeout: float,
                 require_guard: bool = True) -> None:
        self.host = host
        self.namespace_prefix = namespace_prefix
        self.state_dir = state_dir
        self.generation = generation
        self.guard_timeout = guard_timeout
        self.require_guard = require_guard

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with lease.node_lock(self.state_dir, self.host, timeout=LOCK_TIMEOUT):
            yield

    def lease_left(self, now: float | None = None) -> float:
        """Seconds of lease left for the current registration; 0 or less when
        there is none, it has run out, or the node fenced it."""
        generation = self.generation()
        if generation is None or lease.fenced(self.state_dir, self.host, generation):
            return 0.0
        now = time.monotonic() if now is None else now
        return lease.effective_expiry(self.state_dir, self.host) - now

    def guard_status(self) -> str:
        if not self.require_guard:
            return "not required"
        return lease.guard_status(self.state_dir, self.host, self.namespace_prefix,
                                  self.guard_timeout)

    def build_refusal(self, budget: float) -> str | None:
        """Why the agent must not build now, or None. Call with the lock held."""
        left = self.lease_left()
        if left < budget:
            return (f"lease of {self.host} not valid for another {budget:.1f}s "
                    f"({max(left, 0.0):.2f}s left)")
        guard = self.guard_status()
        if guard not in ("ok", "not required"):
            return (f"node guard of {self.host} is {guard} (clouddisco-cleanup --daemon "
                    f"with the same host, state_dir {self.state_dir} and namespace "
                    f"prefix {self.namespace_prefix!r} must run)")
        return None


class LeaseEnforcer:
    """The agent's own enforcement of its lease: defence in depth behind the
    node guard. When the lease of the current registration runs out, remove
    every router this agent serves, then have the reporter register again
    (a new registration resyncs what is still bound here)."""

    def __init__(self, node: Node, driver: base.RouterDriver,
                 on_fenced: Callable[[int], None], interval: float = 0.1) -> None:
        self.node = node
        self.driver = driver
        self.on_fenced = on_fenced
        self.interval = interval
        self._loop = periodic.Loop("lease-enforcer", self._step, interval)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> float:
        self.check()
        return self.interval

    def check(self) -> str:
        generation = self.node.generation()
        if generation is None or self.node.lease_left() > 0:
            return "ok"
        try:
            with self.node.lock():
                # Again under the lock: the reporter may have renewed, or the
                # guard fenced, meanwhile.
                if self.node.generation() != generation:
                    return "ok"
                if (self.node.lease_left() > 0 and
                        not lease.fenced(self.node.state_dir, self.node.host, generation)):
                    return "ok"
                routers = sorted(self.driver.list_routers())
                failed = {r: e for r, e in self.driver.remove(routers).items() if e}
        except lease.LockTimeout:
            LOG.error("lease of %s ran out but the node lock is busy; retrying",
                      self.node.host)
            return "busy"
        if failed:
            LOG.error("lease of %s ran out; %d router(s) could not be removed: %s",
                      self.node.host, len(failed), failed)
            return "incomplete"
        if routers:
            LOG.warning("lease of %s (generation %d) ran out: the agent removed its %d "
                        "router(s) itself", self.node.host, generation, len(routers))
        self.on_fenced(generation)
        return "fenced"
