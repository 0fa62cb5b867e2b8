"""The node guard: ``clouddisco-cleanup --daemon``, one per network node.

It enforces locally what the control plane decided, and needs no server to do
it:

* the lease runs out (agent hung, cut off, or the node cut off) → remove this
  node's routers (silence the gateways, then delete the namespaces);
* the agent process is gone (crashed, restarting) → keep the lease alive on its
  behalf for up to ``restart_grace``, so a restart moves nothing; past that,
  remove the routers and report "fenced" so that they move at once;
* a router namespace under a lease this node has fenced is removed again, so a
  revived agent never brings back what may now run elsewhere.
"""

import dataclasses
import time

from oslo_log import log as logging

from clouddisco import lease
from clouddisco import rpc
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

AGENT_BINARY = "clouddisco-l3-agent"


@dataclasses.dataclass
class AgentProcess:
    pid: int | None
    alive: bool  # exists, is the agent, not a zombie
    stopped: bool = False  # SIGSTOPped or traced: hung, not restarting


def agent_process(state_dir: str, host: str) -> AgentProcess:
    pid = lease.read_pid(state_dir, host)
    if pid is None:
        return AgentProcess(None, False)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return AgentProcess(pid, False)
    state = stat[stat.rindex(")") + 2]
    alive = AGENT_BINARY.encode() in cmdline and state not in "ZX"
    return AgentProcess(pid, alive, stopped=alive and state in "tT")


class NodeGuard:
    def __init__(self, host: str, driver: base.RouterDriver, scheduler: rpc.SchedulerAPI, *,
                 state_dir: str, restart_grace: float, renew_interval: float,
                 rpc_timeout: float) -> None:
        self.host = host
        self.driver = driver
        self.scheduler = scheduler
        self.state_dir = state_dir
        self.restart_grace = restart_grace
        self.renew_interval = renew_interval
        self.rpc_timeout = rpc_timeout
        self.agent_down_since: float | None = None
        self.last_renewal_sent = 0.0
        self.unreported_fence: tuple[int, str] | None = None

    def tick(self, now: float | None = None) -> str:
        """One check; returns what it did (for logs and tests)."""
        now = time.monotonic() if now is None else now
        agent = lease.read(self.state_dir, self.host, lease.AGENT)
        node = lease.read(self.state_dir, self.host, lease.NODE)
        generation = max(agent.generation, node.generation)
        self._report_fence(generation)
        if generation == 0:
            # Never leased: nothing may serve here yet.
            return self._remove_unleased()
        if lease.fenced(self.state_dir, self.host, generation):
            return self._keep_fenced(generation)
        expiry = lease.effective_expiry(self.state_dir, self.host)
        if now >= expiry:
            return self.fence(generation, "lease expired without renewal", now)
        proc = agent_process(self.state_dir, self.host)
        # Restarting: no agent process, or a new one that has not renewed yet.
        # The same process silent (or stopped) is hung or cut off: its lease
        # is left to run out.
        restarting = not proc.alive or proc.pid != agent.pid
        if not restarting:
            if self.agent_down_since is not None:
                LOG.info("agent of %s is back (pid %s)", self.host, proc.pid)
            self.agent_down_since = None
            return "ok"
        if self.agent_down_since is None:
            self.agent_down_since = now
            LOG.warning("agent of %s is not running (pid %s); keeping the lease for up "
                        "to restart_grace %.1fs", self.host, proc.pid, self.restart_grace)
        if now - self.agent_down_since > self.restart_grace:
            return self.fence(generation, f"agent down for more than restart_grace "
                              f"{self.restart_grace:.1f}s", now)
        return self._renew(generation, now)

    # ----------------------------------------------------------------- actions

    def _renew(self, generation: int, now: float) -> str:
        if now - self.last_renewal_sent < self.renew_interval:
            return "waiting"
        self.last_renewal_sent = now
        try:
            reply = self.scheduler.renew_lease(self.host, generation, self.rpc_timeout)
        except Exception as exc:
            LOG.warning("could not renew the lease of %s while its agent restarts: %s",
                        self.host, exc)
            return "renewal failed"
        if not reply.get("granted"):
            LOG.warning("lease renewal for %s (generation %d) refused: the control plane "
                        "declared the agent dead", self.host, generation)
            return "renewal refused"
        lease.write(self.state_dir, lease.Lease(
            host=self.host, generation=generation, expires=now + reply["lease_time"],
            renewed_at=now), lease.NODE)
        return "renewed"

    def fence(self, generation: int, reason: str, now: float) -> str:
        """Remove every router of this node, then record and report the fence."""
        routers = sorted(self.driver.list_routers())
        LOG.warning("fencing %s (lease generation %d): %s; removing %d router(s)",
                    self.host, generation, reason, len(routers))
        failed = {r: e for r, e in self.driver.remove(routers).items() if e}
        for router_id, error in failed.items():
            LOG.error("fence: router %s could not be removed: %s", router_id, error)
        if failed:
            return "fence incomplete"  # the next tick tries again
        lease.write(self.state_dir, lease.Lease(
            host=self.host, generation=generation, fenced_generation=generation,
            fenced_at=now), lease.NODE)
        LOG.warning("fenced %s: %d router(s) removed", self.host, len(routers))
        self.unreported_fence = (generation, reason)
        self._report_fence(generation)
        return "fenced"

    def _report_fence(self, generation: int) -> None:
        """Tell the control plane, until it hears it (fast failover) or the agent
        has registered again (the report is moot)."""
        if self.unreported_fence is None:
            return
        fenced_generation, reason = self.unreported_fence
        if generation > fenced_generation:
            self.unreported_fence = None
            return
        try:
            reply = self.scheduler.host_fenced(self.host, fenced_generation, reason,
                                               self.rpc_timeout)
        except Exception as exc:
            LOG.warning("could not report the fence of %s yet: %s", self.host, exc)
            return
        LOG.info("control plane acknowledged the fence of %s (%s router(s) moved)",
                 self.host, reply.get("moved"))
        self.unreported_fence = None

    def _keep_fenced(self, generation: int) -> str:
        present = self.driver.list_routers()
        if present:
            LOG.error("router(s) %s reappeared on %s under fenced lease generation %d; "
                      "removing them", sorted(present), self.host, generation)
            self.driver.remove(sorted(present))
        return "fenced"

    def _remove_unleased(self) -> str:
        present = self.driver.list_routers()
        if present and not agent_process(self.state_dir, self.host).alive:
            LOG.warning("removing %d router(s) of %s that no lease covers",
                        len(present), self.host)
            self.driver.remove(sorted(present))
            return "removed unleased"
        return "idle"
