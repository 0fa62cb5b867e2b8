"""RPC endpoints of a scheduler replica. Every replica serves every topic."""

import oslo_messaging
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import rpc
from clouddisco.db import api as db_api
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import monitor as monitor_mod

LOG = logging.getLogger(__name__)


def register(db: db_api.Database, lease_time: float, host: str, namespace_prefix: str,
             agent_type: str, registration_id: str | None) -> dict:
    agent = db.register_agent(host, namespace_prefix, agent_type,
                              registration_id=registration_id)
    LOG.info("agent %s registered from host %s (namespace prefix %r, lease "
             "generation %d)", agent["id"], host, namespace_prefix,
             agent["lease_generation"])
    return {"agent_id": agent["id"], "lease_generation": agent["lease_generation"],
            "lease_time": lease_time}


class SchedulerEndpoint:
    """``clouddisco-scheduler`` topic: registration, sync, placement, status."""

    target = oslo_messaging.Target(version=rpc.SCHEDULER_API_VERSION)

    def __init__(self, db: db_api.Database, dispatcher: dispatch.RouterDispatcher,
                 monitor: "monitor_mod.HealthMonitor", lease_time: float,
                 max_clock_skew: float = 0.0) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.monitor = monitor
        self.lease_time = lease_time
        self.max_clock_skew = max_clock_skew  # read by rpc.validated

    @rpc.validated("register")
    def register(self, ctxt, host, namespace_prefix, agent_type="l3", registration_id=None):
        # Agents before 1.2 register on this topic; newer ones on the reports
        # topic (ReportEndpoint), away from placement.
        return register(self.db, self.lease_time, host, namespace_prefix, agent_type,
                        registration_id)

    @rpc.validated("host_fenced")
    def host_fenced(self, ctxt, host, generation, reason):
        """Fast path: the node removed its routers, so they can move now rather
        than after agent_down_time. Any replica acts; moves are compare-and-swap."""
        agent = self.db.fence_agent(host, generation)
        if agent is None:
            LOG.info("fence report from %s for lease generation %d ignored: the agent "
                     "registered again since", host, generation)
            return {"acknowledged": True, "moved": 0}
        LOG.warning("host %s fenced itself (%s): moving the routers of agent %s now",
                    host, reason, agent["id"])
        moved = self.monitor.fail_over_dead_agents([agent["id"]])
        return {"acknowledged": True, "moved": len(moved)}

    @rpc.validated("sync_routers")
    def sync_routers(self, ctxt, host):
        routers = self.db.routers_bound_to(host)
        LOG.info("agent on %s resyncs: %d router(s) bound to it", host, len(routers))
        return [rpc.agent_router_view(r) for r in routers]

    @rpc.validated("update_router_status")
    def update_router_status(self, ctxt, host, reports):
        outcome = self.db.apply_router_reports(
            host, {rid: (r["status"], r.get("reason")) for rid, r in reports.items()})
        for router_id, what in outcome.items():
            level = LOG.info if what in ("active", "deleted") else LOG.warning
            reason = reports[router_id].get("reason")
            level("router %s reported %s by %s: %s%s", router_id,
                  reports[router_id]["status"], host, what,
                  f" ({reason})" if reason else "")
        # A copy the server does not bind here (deleted, or moved elsewhere)
        # must not keep serving until the agent's next resync: ask for its
        # removal now, for the agent's current registration only.
        stray = sorted(rid for rid, what in outcome.items()
                       if what in ("gone", "ignored") and reports[rid]["status"] == "ACTIVE")
        if stray:
            self.dispatcher.remove_strays(host, stray)
        return None

    @rpc.validated("router_id")
    def schedule_router(self, ctxt, router_id):
        self.dispatcher.place([router_id])

    @rpc.validated("router_id")
    def delete_router(self, ctxt, router_id):
        self.dispatcher.delete(router_id)


class ReportEndpoint:
    """``clouddisco-reports`` topic: registrations, state reports and lease
    renewals, on their own threads."""

    target = oslo_messaging.Target(version=rpc.SCHEDULER_API_VERSION)

    def __init__(self, db: db_api.Database, lease_time: float,
                 max_clock_skew: float = 0.0) -> None:
        self.db = db
        self.lease_time = lease_time
        self.max_clock_skew = max_clock_skew  # read by rpc.validated

    @rpc.validated("report_state")
    def report_state(self, ctxt, host, state):
        reply = heartbeat.receive(self.db, host, state, self.lease_time)
        if not reply["registered"]:
            # Unknown, declared dead, or a superseded process: it must register
            # (and resync) before it may serve again.
            LOG.info("report from %s (lease generation %s) renews nothing: the agent "
                     "must register again", host, state.get("lease_generation"))
        return reply

    @rpc.validated("register")
    def register(self, ctxt, host, namespace_prefix, agent_type="l3", registration_id=None):
        """Registrations come here (API 1.2): after a mass restart a whole
        fleet registers at once, and on the placement worker they queued
        behind placement and resyncs until their callers gave up."""
        return register(self.db, self.lease_time, host, namespace_prefix, agent_type,
                        registration_id)

    @rpc.validated("renew_lease")
    def renew_lease(self, ctxt, host, generation):
        """The cleanup service keeps the node's lease while its agent restarts."""
        agent = self.db.record_heartbeat(host, generation)
        if agent is None:
            return {"granted": False}
        return {"granted": True, "lease_time": self.lease_time}

