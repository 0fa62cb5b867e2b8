"""The kernel's share of the lease: gateway addresses that expire by themselves.

The node guard and the agent each enforce the node's lease, but both are
processes: if both die (``kill -9`` of the guard, then of the agent before it
noticed), nothing on the node removes the routers, while the control plane
moves them after ``agent_down_time``: two copies for as long as no guard runs
(nemesis seed 4). A watchdog that reboots the node (Pacemaker's SBD) would
close that, at the cost of the node.

Here the kernel does it, and only for the addresses: every gateway address
carries a finite ``valid_lft``, renewed by whichever of the agent and the
guard is alive each time the lease is renewed. When nobody renews, the kernel
removes the address itself, and with it every ARP and ICMP answer for it.

Timing (all on the node's monotonic clock, for the lease in force, renewed
by a report *sent* at ``renewed_at``): the server moves the routers no
earlier than ``renewed_at + agent_down_time``. The kernel removes an address
at most ``KERNEL_LATE`` after its lifetime ends (measured here: 1.02–1.22 s
for ``valid_lft 1``). So each renewal sets ``valid_lft = floor(renewed_at +
agent_down_time - MARGIN - KERNEL_LATE - now)`` whole seconds, and none when
that is under 1: the address is gone at least MARGIN before the routers can
start elsewhere. With the defaults (lease_time 2 s, agent_down_time 3.5 s)
and an acknowledgement within 1.05 s of sending, that is 2 s or more: the
address outlives the lease (the guard fences first, as before) and never
expires between two renewals. With agent_down_time 3 s an acknowledgement
0.55 s late got 1 s, and the address could expire between two renewals
under load (a CI run saw a stalled database darken a router that way).

``agent_down_time`` here is the node's copy of ``[health] agent_down_time``:
it must not exceed the server's (one clouddisco.conf on every machine).
"""

import math
import time

from oslo_log import log as logging

from clouddisco import lease
from clouddisco import periodic
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

KERNEL_LATE = 0.25  # seconds the kernel may remove an expired address late
MARGIN = 0.2  # seconds the address is gone before the routers may move
POLL = 0.05  # seconds between looks at the lease files and the namespaces
LOCK_WAIT = 0.5  # seconds a renewal waits for the node lock (a build batch)


def valid_lft(renewed_at: float, agent_down_time: float, now: float) -> int:
    """Whole seconds of address lifetime a lease renewed (sent) at
    ``renewed_at`` allows at ``now``; 0 when it allows none."""
    return max(0, math.floor(renewed_at + agent_down_time - MARGIN - KERNEL_LATE - now))


class AddressLifetimeKeeper:
    """Renews the gateway addresses' lifetimes whenever the lease in force
    changes or a router appears; never when the lease has run out or was
    fenced."""

    def __init__(self, driver: base.RouterDriver, state_dir: str, host: str,
                 agent_down_time: float) -> None:
        self.driver = driver
        self.state_dir = state_dir
        self.host = host
        self.agent_down_time = agent_down_time
        self._renewed: tuple | None = None  # (lease generation, renewed_at, routers)
        # Whether the last renewal reached every router: only then may the
        # agent tell the control plane that the kernel enforces its lease.
        self.ok = False
        self._loop = periodic.Loop("address-lifetimes", self._step, POLL)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> float:
        self.renew_once()
        return POLL

    def renew_once(self, now: float | None = None) -> int:
        """Renew if due; returns how many addresses were renewed.

        Under the node lock, like builds and fences: a gateway is configured
        in steps (address, then netmask), and a renewal that read it between
        them named a prefix the kernel no longer matched, so the kernel
        added the address a second time (nemesis seed 5, for one lifetime).
        The lock is taken only when a renewal is due (checked again under
        it): most polls find nothing to do, and must neither open the lock
        file 20 times a second nor wait for a build.
        """
        now = time.monotonic() if now is None else now
        if self._due(now) is None:
            return 0
        try:
            with lease.node_lock(self.state_dir, self.host, timeout=LOCK_WAIT):
                due = self._due(now)
                if due is None:
                    return 0
                seconds, key = due
                renewed = self.driver.renew_address_lifetimes(seconds)
        except lease.LockTimeout:
            return 0  # a build holds it: the next poll tries again
        self._renewed = key
        self.ok = renewed == len(key[2])
        return renewed

    def _due(self, now: float) -> tuple[int, tuple] | None:
        """(valid_lft, renewal key) when a renewal is due; None otherwise."""
        current = lease.in_force(self.state_dir, self.host)
        if not current.valid(now) or lease.fenced(self.state_dir, self.host,
                                                   current.generation):
            return None
        seconds = valid_lft(current.renewed_at, self.agent_down_time, now)
        if seconds < 1:
            return None
        key = (current.generation, current.renewed_at,
               frozenset(self.driver.list_routers()))
        if key == self._renewed:
            return None  # a renewal now would only shorten what the last one set
        return seconds, key
