"""An L3 agent: the RPC endpoint, the state reporter and the router worker."""

import os
import time

import oslo_messaging
from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import lease
from clouddisco import periodic
from clouddisco import rpc
from clouddisco import systemd
from clouddisco.agent import node as node_mod
from clouddisco.agent import reporter
from clouddisco.agent import routers
from clouddisco.drivers import base
from clouddisco.drivers import lifetimes

LOG = logging.getLogger(__name__)


class AgentEndpoint:
    """``clouddisco-l3-agent`` topic, server=<host>: work from the scheduler."""

    target = oslo_messaging.Target(version=rpc.AGENT_API_VERSION)

    def __init__(self, worker: routers.RouterWorker, max_clock_skew: float = 0.0) -> None:
        self.worker = worker
        self.max_clock_skew = max_clock_skew  # read by rpc.validated

    @rpc.validated("routers_added")
    def routers_added(self, ctxt, routers):
        LOG.info("scheduler sent %d router(s): %s", len(routers),
                 ", ".join(r["id"] for r in routers))
        self.worker.add(routers)

    @rpc.validated("routers_removed")
    def routers_removed(self, ctxt, router_ids, lease_generation=None):
        LOG.info("scheduler asks to remove %d router(s): %s", len(router_ids),
                 ", ".join(router_ids))
        self.worker.remove(router_ids, lease_generation)


class L3AgentService:
    def __init__(self, conf: cfg.ConfigOpts, driver: base.RouterDriver, transport) -> None:
        self.host = conf.host
        self.driver = driver
        self.state_dir = conf.agent.state_dir
        self.resync_interval = conf.agent.resync_interval
        scheduler = rpc.SchedulerAPI(transport, timeout=conf.agent.rpc_timeout)
        self.node = node_mod.Node(
            self.host, conf.agent.namespace_prefix, self.state_dir,
            generation=lambda: self.reporter.generation,
            guard_timeout=conf.agent.guard_timeout,
            require_guard=conf.agent.require_node_guard)
        self.reporter = reporter.StateReporter(
            self.host, conf.agent.namespace_prefix, scheduler,
            interval=conf.agent.report_interval, state_dir=self.state_dir,
            on_connected=lambda: self.worker.request_resync(),
            on_tick=lambda: systemd.notify("WATCHDOG=1"),
            state=lambda: {"routers": len(self.driver.list_routers()),
                           "namespace_prefix": conf.agent.namespace_prefix,
                           "driver": conf.agent.router_driver,
                           "guard": self._guard_status(),
                           "kernel_lease": self.lifetimes is not None and self.lifetimes.ok},
            **heartbeat.node_report_paths(conf))
        self.worker = routers.RouterWorker(self.host, driver, scheduler, self.node,
                                           retry_interval=conf.agent.report_interval)
        self.enforcer = node_mod.LeaseEnforcer(self.node, driver, self.reporter.fenced)
        self.server = rpc.get_server(transport, rpc.AGENT_TOPIC,
                                     [AgentEndpoint(self.worker, conf.max_clock_skew)],
                                     server=self.host)
        # The kernel removes the gateway addresses if neither this agent nor
        # the node guard renews them (clouddisco.drivers.lifetimes).
        self.lifetimes = (lifetimes.AddressLifetimeKeeper(
            driver, self.state_dir, self.host, conf.health.agent_down_time)
            if conf.agent.kernel_lease else None)
        self._last_guard = "ok"
        self._last_resync = time.monotonic()
        self._anti_entropy = periodic.Loop("anti-entropy", self._anti_entropy_step,
                                           min(1.0, self.resync_interval))

    def _guard_status(self) -> str:
        """The guard's state for the state report; a change is logged loudly."""
        status = self.node.guard_status()
        if status != self._last_guard:
            if status in ("ok", "not required"):
                LOG.warning("node guard of %s is back (%s)", self.host, status)
            else:
                LOG.error("node guard of %s is %s: this agent builds no router until "
                          "clouddisco-cleanup --daemon runs with host %s, state_dir %s and "
                          "the same namespace prefix; the control plane will not fail "
                          "over this node's routers on silence meanwhile", self.host,
                          status, self.host, self.state_dir)
            self._last_guard = status
        return status

    def _anti_entropy_step(self) -> float:
        """Resync every resync_interval, and at once when building was refused
        and is allowed again (the guard came back)."""
        now = time.monotonic()
        due = now - self._last_resync >= self.resync_interval
        unblocked = self.worker.refused.is_set() and self.node.build_refusal(0.0) is None
        if self.reporter.generation is not None and (due or unblocked):
            self._last_resync = now
            self.worker.request_resync()
        return min(1.0, self.resync_interval)

    def start(self) -> None:
        # The node's cleanup service tells a restarting agent (new pid) from a
        # hung one (same pid, silent) by this file.
        lease.write_pid(self.state_dir, self.host, os.getpid())
        self.worker.start()
        self.server.start()
        self.reporter.start()
        self.enforcer.start()
        if self.lifetimes is not None:
            self.lifetimes.start()
        self._anti_entropy.start()
        systemd.notify("READY=1")
        LOG.info("L3 agent %s started", self.host)

    def stop(self) -> None:
        """Stop serving RPC and reporting. Router namespaces stay: they forward
        traffic without the agent, and the next agent start adopts them."""
        systemd.notify("STOPPING=1")
        self._anti_entropy.stop()
        self.server.stop()
        self.server.wait()
        self.worker.stop()
        self.enforcer.stop()
        if self.lifetimes is not None:
            # The node guard renews them from now on.
            self.lifetimes.stop()
        # Last: the lease stays renewed during the seconds a graceful RPC stop
        # takes; once this process is gone the node guard renews it until the
        # next agent registers.
        self.reporter.stop()
        LOG.info("L3 agent %s stopped; its routers keep serving", self.host)
