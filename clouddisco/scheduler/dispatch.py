"""Turn placement decisions into bindings and agent messages.

Shared by the RPC endpoints (new routers, deletes) and the health monitor
(failover, retries), so there is one way to place and one way to tell agents.
"""

import collections
from collections.abc import Iterable
from collections.abc import Sequence

from oslo_log import log as logging

from clouddisco import exceptions
from clouddisco import rpc
from clouddisco.db import api as db_api
from clouddisco.db import models
from clouddisco.scheduler import placement

LOG = logging.getLogger(__name__)


class RouterDispatcher:
    def __init__(self, db: db_api.Database, agents: rpc.AgentAPI, agent_down_time: float):
        self.db = db
        self.agents = agents
        self.agent_down_time = agent_down_time

    def place(self, router_ids: Sequence[str]) -> dict[str, str]:
        """Bind unbound routers to the least-loaded eligible agents and tell them.

        Returns {router_id: host} for the routers this call bound. A router that
        another replica bound first is left alone; with no eligible agent the
        router goes to ERROR with a reason, and the monitor retries it later.
        """
        candidates = self.db.eligible_agents(self.agent_down_time)
        if not candidates:
            for router_id in router_ids:
                self.db.set_router_error(router_id, db_api.NO_AGENT_REASON)
            LOG.warning("cannot place routers %s: %s", list(router_ids),
                        db_api.NO_AGENT_REASON)
            return {}
        placed = {}
        for router_id in router_ids:
            agent = placement.pick_agent(candidates)
            if self.db.bind_router(router_id, agent["id"]):
                agent["load"] += 1
                placed[router_id] = agent["host"]
                LOG.info("router %s bound to agent %s (%s)", router_id, agent["id"],
                         agent["host"])
        self.send_routers(placed.keys())
        return placed

    def send_routers(self, router_ids: Iterable[str]) -> None:
        """Cast every router to the agent it is bound to, one message per host."""
        by_agent = collections.defaultdict(list)
        for router_id in router_ids:
            router, agent = self.db.router_placement(router_id)
            if agent is not None:
                by_agent[(agent["host"], agent["lease_generation"])].append(router)
        for (host, generation), routers in by_agent.items():
            self.cast_routers(host, routers, generation)

    def cast_routers(self, host: str, routers: Sequence[dict], lease_generation: int) -> None:
        """Queue the casts (AgentAPI never blocks); a lost cast is logged by the
        courier and resent by the monitor's retry of unfinished routers.
        ``lease_generation``: the registration of ``host``'s agent the routers
        are bound under; the agent drops a message for an older one."""
        added = [r for r in routers if r["status"] != models.DELETING]
        removed = [r["id"] for r in routers if r["status"] == models.DELETING]
        if added:
            self.agents.routers_added(host, added, lease_generation)
        if removed:
            self.agents.routers_removed(host, removed, lease_generation)

    def remove_strays(self, host: str, router_ids: Sequence[str]) -> None:
        """Ask ``host``'s agent to remove copies it reported ACTIVE that the
        server does not bind there (deleted, or moved elsewhere), rather than
        leave them serving until its next resync. Only for the agent's
        current registration: an older one's routers went with its resync."""
        generation = self.db.agent_generation(host)
        if generation is None or not router_ids:
            return
        LOG.warning("asking %s to remove %d router(s) it reported ACTIVE but does not "
                    "host: %s", host, len(router_ids), ", ".join(router_ids))
        self.agents.routers_removed(host, list(router_ids), generation)

    def delete(self, router_id: str, attempts: int = 3) -> None:
        """Finish a DELETING router: ask its agent, or drop it if nobody hosts it."""
        try:
            router, agent = self.db.router_placement(router_id)
        except exceptions.NotFound:
            return
        if router["status"] != models.DELETING:
            LOG.warning("delete_router %s ignored: status is %s", router_id,
                        router["status"])
            return
        if agent is not None and agent["dead_since"] is not None and \
                agent["fenced_at"] is None and \
                not models.lease_enforced(agent["guard_status"]):
            # Dead by silence on a node without a working guard: its copy may
            # still forward. Dropping the row would free the gateway address
            # for a new router while the old one answers for it; the monitor
            # drops it once the node fences or the agent registers again.
            LOG.warning("router %s stays DELETING: its agent %s (%s) is silent and its "
                        "node guard was %r, so its copy may still serve", router_id,
                        agent["id"], agent["host"], agent["guard_status"])
            return
        if agent is None or agent["dead_since"] is not None:
            # Nobody serves it (or its agent is dead and cleanup fences the node):
            # nothing to tear down that the control plane can reach. Unless a
            # failover moved it to a live agent since we looked: look again.
            if self.db.delete_unserved_router(router_id, agent["id"] if agent else None):
                LOG.info("router %s deleted (no live agent hosted it)", router_id)
            elif attempts > 1:
                LOG.info("router %s moved while being deleted; looking again", router_id)
                self.delete(router_id, attempts - 1)
            else:
                LOG.warning("router %s keeps moving while being deleted; the monitor "
                            "finishes it", router_id)
            return
        LOG.info("router %s: asking agent %s (%s) to remove it", router_id, agent["id"],
                 agent["host"])
        self.cast_routers(agent["host"], [router], agent["lease_generation"])
