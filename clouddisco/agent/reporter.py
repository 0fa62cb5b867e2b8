"""State reports (heartbeats) of an L3 agent, on a thread of their own.

Each acknowledged report renews the node's data-plane lease: it runs
``lease_time`` from when the report was *sent*, on the monotonic clock, and is
written where the node's cleanup service enforces it. The report loop never
waits on router work: a late heartbeat is how healthy agents get declared dead.

Reports go first over UDP to the scheduler replicas' lease receivers when
``[agent] report_udp_endpoints`` is set (the path that scales), else over RPC.
A report that the first path has not answered within a third of the interval
also goes by every other configured path: RPC, and HTTP to the API replicas
with ``[agent] report_endpoints`` (a hedged request; the first answer wins).
So neither a broker outage nor the loss of every scheduler lets the lease
lapse. See ``clouddisco.heartbeat``.
"""

import concurrent.futures
import os
import random
import time
import uuid
from collections.abc import Callable

from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco import periodic
from clouddisco import rpc

LOG = logging.getLogger(__name__)

# Share of report_interval the RPC report has before the HTTP one goes out too.
HEDGE = 1 / 3
# Least lease a registration's answer must leave for it to be used.
MIN_REGISTRATION_LEASE = 0.5
# Seconds a registration call may wait for its answer.
REGISTER_TIMEOUT = 5.0
# Longest wait between two failed registrations.
REGISTER_BACKOFF_MAX = 10.0


class StateReporter:
    def __init__(self, host: str, namespace_prefix: str, scheduler: rpc.SchedulerAPI, *,
                 interval: float, state_dir: str, on_connected: Callable[[], None],
                 state: Callable[[], dict],
                 on_tick: Callable[[], None] = lambda: None,
                 http: heartbeat.HttpReporter | None = None,
                 udp: heartbeat.UdpReporter | None = None,
                 outage_accept: float = 0.0) -> None:
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
        # Registration retries back off (with jitter) while they fail: after
        # an outage a whole fleet registers at once, and retrying every
        # interval in lockstep kept a scheduler from ever catching up.
        self._register_failures = 0
        self._next_register = 0.0
        self._registration_id: str | None = None
        self.http = http
        self.udp = udp
        # Which path answered the last report ("udp", "rpc", "http"), and
        # whether that was a fallback rather than the first path.
        self.answered_by: str | None = None
        self._over_fallback = False
        # How late after sending an outage answer (every scheduler replica
        # says the database is unavailable) may still renew the lease: the
        # control plane cannot have declared this agent dead before
        # lease_time + this has passed since its last renewal (see
        # _outage_renewal_allowed). 0: never renew on outage answers.
        self.outage_accept = outage_accept
        self._in_outage = False
        # RPC and HTTP attempts of one report run side by side (hedging).
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="report")
        # The loop keeps a fixed cadence on the monotonic clock, whatever a
        # report cost.
        self._loop = periodic.Loop("state-reporter", self._step, interval)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _step(self) -> float:
        registered = self.agent_id is not None
        self.report_once()
        if not registered and self.agent_id is not None:
            # The registration's lease runs from when it was *sent*; after a
            # slow registration it may be about to end. Report at once rather
            # than an interval later, or the node guard fences the new
            # generation before it built anything (and the agent registers
            # again, and again, while the control plane is slow).
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
        # A registration may wait longer: there is no lease to keep yet, and
        # after a mass restart calls abandoned after one interval were all
        # the scheduler got to (300 agents: 6,000 attempts, 181 registered
        # in 28 s).
        register_timeout = max(timeout, REGISTER_TIMEOUT)
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
                if sent < self._next_register:
                    return False
                if self._registration_id is None:
                    # One id for every retry of this registration.
                    self._registration_id = str(uuid.uuid4())
                try:
                    reply = self._register(register_timeout)
                except Exception:
                    self._register_failures += 1
                    backoff = min(REGISTER_BACKOFF_MAX,
                                  self.interval * 2 ** min(self._register_failures, 6))
                    if lease.effective_expiry(self.state_dir, self.host) > sent:
                        # The node guard holds the node's lease for this
                        # registration (an agent restart; through a database
                        # outage on outage answers). One later than the
                        # guard's restart_grace is worth nothing: the node
                        # fences. No backoff past the interval meanwhile.
                        backoff = self.interval
                    self._next_register = sent + backoff * random.uniform(0.5, 1.0)
                    raise
                self._register_failures = 0
                generation = reply["lease_generation"]
                # The next registration (after a fence or refusal) is a new one.
                self._registration_id = None
                # The lease file first: the moment the generation is published,
                # the worker and the enforcer judge the lease by it. Not when
                # the answer took so long that the lease (counted from when
                # the call was sent) is all but over: the node guard would
                # fence the new generation at once, and the agent register
                # yet again (seen in nemesis seed 5 after a scheduler outage).
                # The report that _step sends next renews it instead.
                left = sent + (reply.get("lease_time") or 0) - time.monotonic()
                lease_used = left >= MIN_REGISTRATION_LEASE
                if lease_used:
                    self._renew(generation, sent, reply.get("lease_time"))
                else:
                    LOG.warning("registration of %s took %.1fs: its lease is not used; "
                                "reporting at once for a fresh one", self.host,
                                time.monotonic() - sent)
                self.agent_id = reply["agent_id"]
                self.generation = generation
                registered_now = True
                LOG.info("registered as agent %s (lease generation %s)", self.agent_id,
                         self.generation)
                if not lease_used:
                    # Without a lease the resync would only be postponed, and
                    # then wait for the periodic pass (8 s in nemesis seed 4,
                    # with the routers shown ACTIVE meanwhile): resync on the
                    # report that brings the lease.
                    self._connected = False
                    return True
            else:
                generation = self.generation
                state = dict(self.state(), lease_generation=generation)
                reply = self._report(state, timeout)
                if not reply.get("registered", True):
                    LOG.warning("scheduler refused the report of %s (lease generation "
                                "%s: unknown, declared dead or superseded); registering "
                                "again", self.host, generation)
                    self.agent_id = None
                    self.generation = None
                    return False
                if self.generation != generation:
                    return False  # fenced meanwhile: this ack renews nothing
                if reply.get("outage") and not self._outage_renewal_allowed(
                        generation, sent, reply):
                    return False
                if not reply.get("outage") and self._in_outage:
                    LOG.warning("the database takes state reports again; lease of %s "
                                "renewed normally", self.host)
                    self._in_outage = False
                self._renew(generation, sent, reply.get("lease_time"))
                if self._over_fallback:
                    # The lease holds, but casts may be lost while the first
                    # path is down: resync once it answers again.
                    self._connected = False
                    return True
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

    def _outage_renewal_allowed(self, generation: int, sent: float, reply: dict) -> bool:
        """An outage answer renews only a lease that was still valid when the
        report was sent, and only if it came back within outage_accept.

        Why that is safe: the lease valid at ``sent`` was renewed by a report
        the database stored (or by an earlier outage answer, by induction)
        less than lease_time before ``sent``. The control plane declares an
        agent dead only after agent_down_time of silence, so not before
        ``sent + agent_down_time - lease_time``: an answer back by then
        cannot belong to an agent that is dead (its routers moved). And
        every replica that said "outage" holds its failovers by silence for
        agent_down_time after saying it (clouddisco.scheduler.udp).
        """
        current = lease.read(self.state_dir, self.host, lease.AGENT)
        late = time.monotonic() - sent
        if current.generation != generation or not current.valid(sent) \
                or late > self.outage_accept:
            why = (f"it came {late:.2f}s after the report (at most "
                   f"{self.outage_accept:.2f}s)" if late > self.outage_accept
                   else "the lease had already run out when the report was sent")
            LOG.warning("outage answer from %s not used: %s",
                        ", ".join(reply.get("replicas", [])), why)
            return False
        if not self._in_outage:
            LOG.warning("the database is unavailable to every scheduler replica (%s): "
                        "the lease of %s is renewed on their outage answers, and no "
                        "failover by silence happens meanwhile", ", ".join(
                            reply.get("replicas", [])), self.host)
            self._in_outage = True
        return True

    def _paths(self) -> list[tuple[str, Callable[[str, dict, float], dict]]]:
        """The report paths, the first one first."""
        paths = [("rpc", self.scheduler.report_state)]
        if self.udp is not None:
            paths.insert(0, ("udp", self.udp.report))
        if self.http is not None:
            paths.append(("http", self.http.report))
        return paths

    def _report(self, state: dict, timeout: float) -> dict:
        """Send one report; return the first answer, from whichever path."""
        paths = self._paths()
        first_name = paths[0][0]
        name, reply = self._first_answer(
            [(n, lambda t, send=send: send(self.host, state, t)) for n, send in paths],
            timeout, self.interval * HEDGE)
        if name == first_name and self._over_fallback:
            LOG.warning("state reports of %s are answered over %s again", self.host,
                        first_name.upper())
            self._over_fallback = False
        elif name != first_name and not self._over_fallback:
            LOG.warning("state reports of %s go over %s: %s did not answer within %.2fs",
                        self.host, name.upper(), first_name.upper(), self.interval * HEDGE)
            self._over_fallback = True
        self.answered_by = name
        return reply

    def _register(self, timeout: float) -> dict:
        """Register over RPC, and over UDP only once RPC has failed (a broker
        outage while the agent restarts). Both carry the same registration
        id, so both answering registers once.

        Not hedged on slowness: in a mass restart of 300 agents RPC answers
        slowly but surely (all within 10 s), and hedging after one interval
        sent most of them over UDP as well, doubling the work (29 s)."""
        rid = self._registration_id
        paths = [("rpc", lambda t: self.scheduler.register(self.host, self.namespace_prefix,
                                                            t, rid))]
        if self.udp is not None:
            paths.append(("udp", lambda t: self.udp.register(
                self.host, self.namespace_prefix, t, rid)))
        return self._first_answer(paths, timeout, timeout)[1]

    def _first_answer(self, paths: list[tuple[str, Callable[[float], dict]]],
                      timeout: float, hedge_after: float) -> tuple[str, dict]:
        """Call the first path; if it has not answered within ``hedge_after``,
        every other path too. The first answer wins: (path name, answer)."""
        if len(paths) == 1:
            return paths[0][0], paths[0][1](timeout)
        deadline = time.monotonic() + timeout
        first = self._pool.submit(paths[0][1], timeout)
        concurrent.futures.wait([first], hedge_after)
        if first.done() and first.exception() is None:
            return paths[0][0], first.result()
        futures = {first: paths[0][0]}
        for name, call in paths[1:]:
            futures[self._pool.submit(call, max(0.05, deadline - time.monotonic()))] = name
        pending = set(futures)
        errors = []
        while pending:
            done, pending = concurrent.futures.wait(
                pending, max(0.0, deadline - time.monotonic()),
                return_when=concurrent.futures.FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                if future.exception() is None:
                    return futures[future], future.result()
                errors.append(f"{futures[future]}: {future.exception()}")
        raise TimeoutError("unanswered: " + ("; ".join(errors) or
                                            f"no answer within {timeout:.1f}s"))

    def _renew(self, generation: int, sent: float, lease_time: float | None) -> None:
        if not lease_time:
            return
        try:
            lease.write(self.state_dir, lease.Lease(
                host=self.host, generation=generation, expires=sent + lease_time,
                renewed_at=sent, pid=os.getpid()), lease.AGENT)
        except OSError as exc:
            LOG.error("could not record the lease in %s: %s", self.state_dir, exc)
