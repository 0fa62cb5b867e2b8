"""The health monitor: a periodic check that moves the routers of dead agents.

It shares nothing with the report receiver but the database: reports write
``heartbeat_at``; each pass here declares silent agents dead, moves their
routers by compare-and-swap, and retries work left unfinished.

Every scheduler replica runs one. They split the agents with a consistent hash
ring over the replicas that passed recently (seed 000's balanced failover
lists), so a replica's share moves to the others when it stops. Overlap while
the ring settles is harmless: every move is a conditional UPDATE.
"""

import collections
import datetime
import time
from collections.abc import Callable

from oslo_db import exception as db_exc
from oslo_log import log as logging
from tooz import hashring

from clouddisco import exceptions
from clouddisco import periodic
from clouddisco.db import api as db_api
from clouddisco.db import models
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import placement

LOG = logging.getLogger(__name__)

BINARY = "clouddisco-scheduler"


class HealthMonitor:
    def __init__(self, db: db_api.Database, dispatcher: dispatch.RouterDispatcher, *,
                 host: str, agent_down_time: float, check_interval: float,
                 pending_retry_time: float, replica_down_time: float = 1.0,
                 max_dead_fraction: float = 0.5,
                 outage_until: Callable[[], float] = lambda: 0.0,
                 start_hold: float = 0.0) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.host = host
        self.agent_down_time = agent_down_time
        self.check_interval = check_interval
        self.pending_retry_time = pending_retry_time
        self.replica_down_time = replica_down_time
        self.max_dead_fraction = max_dead_fraction
        self.breaker_open = False
        # No move by silence while this replica's lease receiver may have
        # given outage notices that a node still serves on (monotonic time),
        # nor for start_hold after this process starts: notices given by an
        # earlier run of this replica died with its memory.
        self.outage_until = outage_until
        self._started_hold_until = time.monotonic() + start_hold
        self.holding = False
        self.ring_members: list[str] = [host]
        self._ring = hashring.HashRing(self.ring_members)
        # Database time at the start of the last pass: that pass judged every
        # deadline up to it, so the next one need not run for them again.
        self._pass_started: datetime.datetime | None = None
        # A failed pass (DB blip) is retried after a period; the next pass
        # re-reads everything, so nothing is lost.
        self._loop = periodic.Loop("health-monitor", self._step, check_interval)
        # Monotonic time since which every pass found the database
        # unavailable; None while it answers.
        self._db_down_since: float | None = None

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> float:
        try:
            self.run_once()
            delay = self.next_check_delay()
        except (exceptions.DatabaseUnavailable, db_exc.DBConnectionError) as exc:
            # The pass stopped at its first failed call. Each move is one
            # transaction, so the failed one moved nothing; the next pass
            # decides afresh, after checking the outage clock. One line per
            # outage, not a traceback per pass.
            if self._db_down_since is None:
                self._db_down_since = time.monotonic()
                LOG.error("health monitor of %s: the database is unavailable, so it "
                          "moves nothing and declares no agent dead until it is back: "
                          "%s", self.host, str(exc).splitlines()[0][:200])
            else:
                LOG.debug("health monitor of %s: the database is still unavailable: %s",
                          self.host, exc)
            return self.check_interval
        if self._db_down_since is not None:
            LOG.warning("health monitor of %s: the database is back after %.1fs; "
                        "failovers resume", self.host,
                        time.monotonic() - self._db_down_since)
            self._db_down_since = None
        return delay

    def next_check_delay(self) -> float:
        """Seconds to the next pass: check_interval, or less when an agent's
        silence will reach agent_down_time sooner, so that a death is seen
        within milliseconds of the deadline rather than up to a period late.

        Computed by the database, from its own clock: the heartbeats are
        stamped with it, and this replica's clock may be skewed from it.

        Only deadlines after the last pass started count: one already past
        then was judged by that pass (declared dead, or deliberately not:
        breaker open, another replica's agent), and waiting 0 for it again
        would spin the loop against the database. A deadline that passed
        during the pass still gets an immediate pass, exactly one."""
        until = self.db.seconds_to_next_expiry(self.agent_down_time,
                                               after=self._pass_started)
        if until is None:
            return self.check_interval
        return min(self.check_interval, max(0.0, until + 0.005))

    # ------------------------------------------------------------------ pass

    def run_once(self) -> None:
        # This pass is the replica's heartbeat: a replica whose monitor stops
        # passing loses its share of the ring.
        self._pass_started = self.db.heartbeat_service(BINARY, self.host)
        self._update_ring()
        agents = self.db.agent_health()
        mine = [a["id"] for a in agents if self.owns(a["id"])]
        if self._outage_hold():
            self.fail_over_dead_agents([a["id"] for a in agents
                                        if a["fenced_at"] is not None and a["id"] in mine])
            return
        if self._breaker(agents):
            # Confirmed fences stay safe to act on: those routers are gone.
            self.fail_over_dead_agents([a["id"] for a in agents
                                        if a["fenced_at"] is not None and a["id"] in mine])
            return
        for agent in self.db.mark_dead_agents(self.agent_down_time, mine):
            silent = (agent["dead_since"] - agent["heartbeat_at"]).total_seconds()
            LOG.warning("agent %s (%s) declared dead: no state report for %.2fs "
                        "(agent_down_time %.1fs)", agent["id"], agent["host"], silent,
                        self.agent_down_time)
        self.fail_over_dead_agents(mine)
        self.retry_unfinished()

    def _outage_hold(self) -> bool:
        """True while nothing may be moved, or declared dead, by silence."""
        until = max(self.outage_until(), self._started_hold_until)
        held = time.monotonic() < until
        if held and not self.holding:
            LOG.warning("health monitor of %s holds every failover by silence for "
                        "%.1fs: %s", self.host, until - time.monotonic(),
                        "its lease receiver told nodes the database is unavailable"
                        if self.outage_until() >= self._started_hold_until
                        else "it has just started")
        elif self.holding and not held:
            LOG.warning("health monitor of %s resumes failovers by silence", self.host)
        self.holding = held
        return held

    def _update_ring(self) -> None:
        live = self.db.live_services(BINARY, self.replica_down_time)
        members = sorted(set(live) | {self.host})
        if members != self.ring_members:
            LOG.info("scheduler replicas sharing the agents: %s (was %s)",
                     ", ".join(members), ", ".join(self.ring_members))
            self.ring_members = members
        self._ring = hashring.HashRing(members)

    def owns(self, key: str) -> bool:
        return self.host in self._ring.get_nodes(key.encode())

    def _breaker(self, agents: list[dict]) -> bool:
        """True (open) when too many agents look dead at once to believe it.

        Counted over every enabled agent that still matters (alive, or dead with
        routers); a confirmed fence is evidence, not suspicion, so it does not
        count. Nor does a dead agent whose routers are held because its node
        guard is not ok: that death is judged already, and counting it for as
        long as it stays would open the breaker on the next single death.
        """
        relevant = [a for a in agents if a["admin_state_up"] and
                    (a["dead_since"] is None or a["load"] > 0) and
                    not (a["dead_since"] is not None and _unguarded(a))]
        # Agents that lose their reports together do not reach agent_down_time
        # in the same pass; counting every agent silent for half of it as a
        # suspect lets the breaker see the whole wave before the first death.
        suspect_after = self.agent_down_time / 2
        suspects = [a for a in relevant if a["fenced_at"] is None and
                    (a["dead_since"] is not None or
                     a["silence"] > suspect_after)]
        tripped = (len(relevant) >= 2 and
                   len(suspects) > self.max_dead_fraction * len(relevant))
        if tripped and not self.breaker_open:
            detail = (f"{len(suspects)} of {len(relevant)} enabled agents look dead at "
                      f"once (> {self.max_dead_fraction:.0%}): suspect scheduler "
                      f"{self.host}'s own link to the message broker or the database, "
                      "not the agents; no router is moved until reports come back")
            LOG.error("circuit breaker open: %s", detail)
            self.db.record_event(cause="circuit_breaker", detected_by=self.host,
                                 detail=detail)
        elif self.breaker_open and not tripped:
            LOG.warning("circuit breaker closed: agent reports are back")
        self.breaker_open = tripped
        return tripped

    def fail_over_dead_agents(self, agent_ids: list[str] | None = None
                              ) -> list[db_api.Move]:
        """Move every router bound to a dead agent (of ``agent_ids``); return
        the moves this monitor won."""
        bindings = self.db.bindings_on_dead_agents(agent_ids)
        bindings = self._hold_unguarded(bindings)
        if not bindings:
            return []
        deleting = [b for b in bindings if b["router_status"] == models.DELETING]
        for b in deleting:
            if self.db.delete_unserved_router(b["router_id"], b["agent_id"]):
                LOG.info("router %s deleted: it was being deleted on dead agent %s",
                         b["router_id"], b["agent_id"])
        bindings = [b for b in bindings if b["router_status"] != models.DELETING]
        if not bindings:
            return []
        candidates = self.db.eligible_agents(self.agent_down_time)
        target = placement.spread([b["router_id"] for b in bindings], candidates)
        moves = [db_api.Move(router_id=b["router_id"], old_agent_id=b["agent_id"],
                             generation=b["generation"],
                             new_agent_id=target.get(b["router_id"]),
                             agent_generation=b["agent_generation"])
                 for b in bindings]
        fenced = {b["agent_id"]: b["fenced_at"] for b in bindings}
        won = self.db.move_bindings(
            moves, cause="agent_dead", detected_by=self.host,
            last_heartbeat={b["agent_id"]: b["heartbeat_at"] for b in bindings},
            detected_at={b["agent_id"]: b["dead_since"] for b in bindings},
            fenced_at=fenced)
        if len(won) < len(moves):
            LOG.info("%d of %d router move(s) were won by another monitor or undone by "
                     "the agent registering again", len(moves) - len(won), len(moves))
        hosts = {c["id"]: c["host"] for c in candidates}
        generations = {c["id"]: c["lease_generation"] for c in candidates}
        old_hosts = {b["agent_id"]: b["host"] for b in bindings}
        # Tell the new agents first, from what the binding rows already carry
        # (no second read); log once the routers are on their way.
        router_of = {b["router_id"]: b for b in bindings}
        by_agent = collections.defaultdict(list)
        for mv in won:
            if mv.new_agent_id:
                by_agent[mv.new_agent_id].append(
                    dict(router_of[mv.router_id], id=mv.router_id, status=models.PENDING))
        for agent_id, routers in by_agent.items():
            self.dispatcher.cast_routers(hosts[agent_id], routers, generations[agent_id])
        pairs = collections.defaultdict(list)
        for mv in won:
            pairs[(mv.old_agent_id, mv.new_agent_id)].append(mv.router_id)
            LOG.debug("failover: router %s moved from agent %s to agent %s", mv.router_id,
                      mv.old_agent_id, mv.new_agent_id)
        for (old, new), router_ids in pairs.items():
            why = "agent fenced" if fenced.get(old) else "agent dead"
            if new:
                LOG.info("failover: %d router(s) moved from agent %s (%s) to agent %s (%s): "
                         "%s: %s", len(router_ids), old, old_hosts[old], new, hosts[new], why,
                         ", ".join(router_ids))
            else:
                LOG.error("failover: %d router(s) unbound from dead agent %s (%s): %s: %s",
                          len(router_ids), old, old_hosts[old], db_api.NO_AGENT_REASON,
                          ", ".join(router_ids))
        return won

    def _hold_unguarded(self, bindings: list[dict]) -> list[dict]:
        """The bindings that are safe to move (or drop): all but those of dead
        agents that were declared dead by silence alone while their last
        report said the node guard is not ok.

        Without a working guard nothing removes a hung agent's routers from
        its node when the lease lapses: moving them would leave two live
        copies of each gateway. They stay bound until the node fences itself
        (fenced_at) or the agent registers again. Old agents that do not
        report a guard status (None) keep the old behaviour.
        """
        held: dict[str, list[dict]] = collections.defaultdict(list)
        for b in bindings:
            if _unguarded(b):
                held[b["agent_id"]].append(b)
        for agent_id, group in held.items():
            b = group[0]
            silent = (b["dead_since"] - b["heartbeat_at"]).total_seconds()
            detail = (f"agent {agent_id} on {b['host']} stopped reporting ({silent:.1f}s "
                      f"silent when declared dead) but its last report said its node "
                      f"guard is {b['guard_status']!r}: nothing is sure to remove its "
                      f"{len(group)} router(s) from that node, so they were NOT moved "
                      "(two live copies of a gateway otherwise). They stay bound to it "
                      f"and move once {b['host']} confirms it fenced itself: restore "
                      f"clouddisco-cleanup --daemon there, or restart the agent.")
            if self.db.record_unguarded(agent_id=agent_id, dead_since=b["dead_since"],
                                        last_heartbeat=b["heartbeat_at"],
                                        detected_by=self.host, detail=detail):
                LOG.error("failover refused: %s", detail)
        return [b for b in bindings if b["agent_id"] not in held]

    def retry_unfinished(self) -> None:
        """Self-healing for lost messages and late agents, for this replica's
        share of the routers.

        Unbound routers are placed again; routers stuck PENDING, ERROR or
        DELETING on a live agent are sent to it again; DELETING routers nobody
        hosts are dropped.
        """
        todo = {k: [r for r in v if self.owns(r["id"])]
                for k, v in self.db.routers_to_retry(self.pending_retry_time).items()}
        for router in todo["deleting_unbound"]:
            if self.db.delete_unserved_router(router["id"], None):
                LOG.info("router %s deleted (unbound)", router["id"])
        unbound = [r["id"] for r in todo["unbound"]
                   if r["status"] == models.PENDING or
                   r["status_reason"] == db_api.NO_AGENT_REASON]
        if unbound and self.db.eligible_agents(self.agent_down_time):
            LOG.info("placing %d unbound router(s)", len(unbound))
            self.dispatcher.place(unbound)
        if todo["pending"]:
            LOG.info("re-sending %d unfinished router(s) to their agents",
                     len(todo["pending"]))
            self.db.touch_routers([r["id"] for r in todo["pending"]])
            by_agent = collections.defaultdict(list)
            for r in todo["pending"]:
                by_agent[(r["agent_host"], r["agent_lease_generation"])].append(r)
            for (host, generation), routers in by_agent.items():
                self.dispatcher.cast_routers(host, routers, generation)


def _unguarded(agent: dict) -> bool:
    """Not fenced, and its last report said the node guard is not ok and the
    kernel does not enforce the lease either (None: an older agent that does
    not say)."""
    return agent["fenced_at"] is None and not models.lease_enforced(agent["guard_status"])
