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

Its enforcement never waits on the network: renewals and fence reports go out
on a thread of their own, and their answers are applied on a later check,
under the node lock, only if the lease they were for is still the current
one. Every check runs under the node lock (see ``clouddisco.lease``), so a
fence and an agent's build never interleave; an agent that holds the lock
past its lease (hung mid-build) is killed, since it is about to be fenced
anyway. Every check also writes the guard's heartbeat, without which the
agent builds nothing.
"""

import concurrent.futures
import dataclasses
import os
import signal
import time

from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco import rpc
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

# Seconds between two tries of an unacknowledged fence report.
FENCE_REPORT_RETRY = 1.0

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
                 rpc_timeout: float, lock_timeout: float = 0.25,
                 http: heartbeat.HttpReporter | None = None,
                 udp: heartbeat.UdpReporter | None = None,
                 outage_accept: float = 0.0) -> None:
        self.host = host
        self.driver = driver
        self.scheduler = scheduler
        self.state_dir = state_dir
        self.restart_grace = restart_grace
        self.renew_interval = renew_interval
        self.rpc_timeout = rpc_timeout
        self.lock_timeout = lock_timeout
        # Renewals also go to the API when RPC does not answer in time, so an
        # agent restart during a broker or scheduler outage fences nothing.
        self.http = http
        # Renewals go over UDP first when the node reports so: the scheduler
        # replicas' lease receivers answer even while the database is out,
        # with outage notices, which renew a valid lease within outage_accept
        # of sending (heartbeat.outage_accept), as they do the agent's. An
        # agent restart during a database outage then fences nothing.
        self.udp = udp
        self.outage_accept = outage_accept
        self.agent_down_since: float | None = None
        self.last_renewal_sent = 0.0
        self.unreported_fence: tuple[int, str] | None = None
        # One thread for every message to the control plane: a check never
        # waits on the broker or a scheduler.
        self._rpc = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="guard-rpc")
        self._renewal: concurrent.futures.Future | None = None
        self._fence_report: concurrent.futures.Future | None = None
        self._fence_failures = 0
        self._fence_retry_at = 0.0
        self._in_outage = False  # the last renewal applied was an outage answer

    def close(self) -> None:
        self._rpc.shutdown(wait=False, cancel_futures=True)

    def rpc_idle(self, timeout: float) -> bool:
        """Wait until no message is in flight (tests, shutdown)."""
        pending = [f for f in (self._renewal, self._fence_report) if f is not None]
        done, not_done = concurrent.futures.wait(pending, timeout)
        return not not_done

    def tick(self, now: float | None = None) -> str:
        """One check; returns what it did (for logs and tests)."""
        lease.write_guard_beat(self.state_dir, lease.GuardBeat(
            host=self.host, namespace_prefix=self.driver.namespace_prefix, pid=os.getpid(),
            at=time.monotonic()))
        try:
            with lease.node_lock(self.state_dir, self.host, timeout=self.lock_timeout):
                return self._check(time.monotonic() if now is None else now)
        except lease.LockTimeout:
            return self._lock_held(time.monotonic() if now is None else now)

    def _check(self, now: float) -> str:
        # Read under the lock: what was true before it was taken may not be now.
        agent = lease.read(self.state_dir, self.host, lease.AGENT)
        node = lease.read(self.state_dir, self.host, lease.NODE)
        generation = max(agent.generation, node.generation)
        self._apply_renewal(generation, now)
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

    def _lock_held(self, now: float) -> str:
        """The agent holds the node lock (it is building or removing routers).
        That is normal, unless the lease has run out meanwhile: then the agent
        is hung or slow mid-build and the node must fence now, so it is killed
        (the kernel frees its lock); systemd starts a new one, which builds
        nothing until it has registered again."""
        if now < lease.effective_expiry(self.state_dir, self.host):
            return "busy"
        proc = agent_process(self.state_dir, self.host)
        if proc.alive:
            LOG.error("lease of %s ran out while its agent (pid %d%s) holds the node lock: "
                      "killing it so the node can fence", self.host, proc.pid,
                      ", stopped" if proc.stopped else "")
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError as exc:
                LOG.error("could not kill agent pid %d: %s", proc.pid, exc)
            return "agent killed"
        return "busy"

    # ----------------------------------------------------------------- actions

    def _renew(self, generation: int, now: float) -> str:
        if self._renewal is not None:
            return "renewing"  # the answer is applied by a later check
        if now - self.last_renewal_sent < self.renew_interval:
            return "waiting"
        self.last_renewal_sent = now
        self._renewal = self._rpc.submit(self._renewal_call, generation, now)
        return "renewal sent"

    def _renewal_call(self, generation: int, sent: float) -> tuple[int, float, dict]:
        if self.udp is not None:
            try:
                answer = self.udp.report(self.host, self._guard_report(generation),
                                         self.renew_interval / 3)
                return generation, sent, self._renewal_answer(answer)
            except Exception as exc:
                LOG.debug("renewal over UDP failed (%s); trying RPC", exc)
        if self.http is None:
            return generation, sent, self.scheduler.renew_lease(self.host, generation,
                                                                self.rpc_timeout)
        try:
            # A third of the renewal interval for RPC, the rest for HTTP: the
            # answer must come back well within the lease.
            reply = self.scheduler.renew_lease(self.host, generation,
                                               self.renew_interval / 3)
        except Exception as exc:
            LOG.debug("renewal over RPC failed (%s); trying the API", exc)
            # The guard is alive and checking: its own report says so.
            answer = self.http.report(self.host, self._guard_report(generation),
                                      self.renew_interval / 2)
            reply = self._renewal_answer(answer)
        return generation, sent, reply

    @staticmethod
    def _guard_report(generation: int) -> dict:
        # The guard is alive and checking: its own report says so.
        return {"lease_generation": generation, "guard": heartbeat.GUARD_OK}

    @staticmethod
    def _renewal_answer(answer: dict) -> dict:
        """A state report's answer as renew_lease's."""
        if answer.get("outage"):
            return {"granted": True, "outage": True, "lease_time": answer.get("lease_time"),
                    "replicas": answer.get("replicas", [])}
        return {"granted": answer.get("registered", False),
                "lease_time": answer.get("lease_time")}

    def _apply_renewal(self, generation: int, now: float) -> None:
        """Apply a renewal that has come back, if it is still for this lease."""
        future = self._renewal
        if future is None or not future.done():
            return
        self._renewal = None
        try:
            renewed, sent, reply = future.result()
        except Exception as exc:
            LOG.warning("could not renew the lease of %s while its agent restarts: %s",
                        self.host, exc)
            return
        if not reply.get("granted"):
            LOG.warning("lease renewal for %s (generation %d) refused: the control plane "
                        "declared the agent dead", self.host, renewed)
            return
        if renewed != generation or lease.fenced(self.state_dir, self.host, renewed):
            return  # the agent registered again, or the node fenced meanwhile
        if reply.get("outage"):
            if not self._outage_renewal_allowed(sent, now, reply):
                return
        elif self._in_outage:
            LOG.warning("the control plane renews the lease of %s normally again",
                        self.host)
            self._in_outage = False
        lease.write(self.state_dir, lease.Lease(
            host=self.host, generation=renewed, expires=sent + reply["lease_time"],
            renewed_at=sent), lease.NODE)

    def _outage_renewal_allowed(self, sent: float, now: float, reply: dict) -> bool:
        """The agent's rule (StateReporter._outage_renewal_allowed): only a
        lease still valid when the renewal was sent, only an answer back
        within outage_accept. While it holds, the agent's restart_grace
        counts from the latest such renewal: nothing can move during the
        outage, so fencing then would only darken the node, and the agent
        cannot register again until the database is back."""
        late = now - sent
        if sent >= lease.effective_expiry(self.state_dir, self.host) \
                or late > self.outage_accept:
            LOG.warning("outage answer from %s not used for %s: %s",
                        ", ".join(reply.get("replicas", [])), self.host,
                        f"it came {late:.2f}s after the renewal (at most "
                        f"{self.outage_accept:.2f}s)" if late > self.outage_accept
                        else "the lease had already run out when the renewal was sent")
            return False
        if self.agent_down_since is not None:
            if not self._in_outage:
                LOG.warning("the database is unavailable to every scheduler replica (%s): "
                            "the lease of %s is renewed on their outage answers while its "
                            "agent restarts; restart_grace counts from the outage's end",
                            ", ".join(reply.get("replicas", [])), self.host)
            self.agent_down_since = max(self.agent_down_since, now)
        self._in_outage = True
        return True

    def fence(self, generation: int, reason: str, now: float) -> str:
        """Remove every router of this node, then record and report the fence.
        Called with the node lock held."""
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
        has registered again (the report is moot). Never waits for the answer."""
        future = self._fence_report
        if future is not None:
            if not future.done():
                return
            self._fence_report = None
            try:
                reply = future.result()
            except Exception as exc:
                # Retried once a second; logged once per outage, not per try
                # (a broker that refuses at once made this 20 lines a second).
                self._fence_failures += 1
                self._fence_retry_at = time.monotonic() + FENCE_REPORT_RETRY
                (LOG.warning if self._fence_failures == 1 else LOG.debug)(
                    "could not report the fence of %s yet (try %d, again every %.0fs): %s",
                    self.host, self._fence_failures, FENCE_REPORT_RETRY, exc)
            else:
                self._fence_failures = 0
                moved = reply.get("moved")
                LOG.info("control plane acknowledged the fence of %s (%s)", self.host,
                         f"{moved} router(s) moved" if moved is not None else
                         "over HTTP: the monitors move the routers at their next pass")
                self.unreported_fence = None
                return
        if self.unreported_fence is None:
            return
        fenced_generation, reason = self.unreported_fence
        if generation > fenced_generation:
            self.unreported_fence = None
            return
        if time.monotonic() < self._fence_retry_at:
            return
        self._fence_report = self._rpc.submit(self._fence_call, fenced_generation, reason)

    def _fence_call(self, generation: int, reason: str) -> dict:
        """Report a fence over RPC (the scheduler moves the routers at once),
        else over HTTP to the API (recorded; the monitors move them at their
        next pass): during a broker outage the routers then move, and the API
        stops showing them ACTIVE here, without waiting for the broker."""
        if self.http is None:
            return self.scheduler.host_fenced(self.host, generation, reason,
                                              self.rpc_timeout)
        try:
            return self.scheduler.host_fenced(self.host, generation, reason,
                                              self.renew_interval / 3)
        except Exception as exc:
            LOG.debug("fence report over RPC failed (%s); trying the API", exc)
            return self.http.fence(self.host, generation, reason, self.renew_interval)

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
