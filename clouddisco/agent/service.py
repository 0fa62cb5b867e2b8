"""An L3 agent: the RPC endpoint, the state reporter and the router worker."""

import os

import oslo_messaging
from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import lease
from clouddisco import rpc
from clouddisco import systemd
from clouddisco.agent import reporter
from clouddisco.agent import routers
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)


class AgentEndpoint:
    """``clouddisco-l3-agent`` topic, server=<host>: work from the scheduler."""

    target = oslo_messaging.Target(version=rpc.AGENT_API_VERSION)

    def __init__(self, worker: routers.RouterWorker) -> None:
        self.worker = worker

    @rpc.validated("routers_added")
    def routers_added(self, ctxt, routers):
        LOG.info("scheduler sent %d router(s): %s", len(routers),
                 ", ".join(r["id"] for r in routers))
        self.worker.add(routers)

    @rpc.validated("routers_removed")
    def routers_removed(self, ctxt, router_ids):
        LOG.info("scheduler asks to remove %d router(s): %s", len(router_ids),
                 ", ".join(router_ids))
        self.worker.remove(router_ids)


class L3AgentService:
    def __init__(self, conf: cfg.ConfigOpts, driver: base.RouterDriver, transport) -> None:
        self.host = conf.host
        self.driver = driver
        self.state_dir = conf.agent.state_dir
        scheduler = rpc.SchedulerAPI(transport, timeout=conf.agent.rpc_timeout)
        self.reporter = reporter.StateReporter(
            self.host, conf.agent.namespace_prefix, scheduler,
            interval=conf.agent.report_interval, state_dir=self.state_dir,
            on_connected=lambda: self.worker.request_resync(),
            on_tick=lambda: systemd.notify("WATCHDOG=1"),
            state=lambda: {"routers": len(self.driver.list_routers()),
                           "namespace_prefix": conf.agent.namespace_prefix,
                           "driver": conf.agent.router_driver})
        self.worker = routers.RouterWorker(self.host, driver, scheduler,
                                           retry_interval=conf.agent.report_interval,
                                           lease_valid=self.reporter.lease_valid)
        self.server = rpc.get_server(transport, rpc.AGENT_TOPIC,
                                     [AgentEndpoint(self.worker)], server=self.host)

    def start(self) -> None:
        # The node's cleanup service tells a restarting agent (new pid) from a
        # hung one (same pid, silent) by this file.
        lease.write_pid(self.state_dir, self.host, os.getpid())
        self.worker.start()
        self.server.start()
        self.reporter.start()
        systemd.notify("READY=1")
        LOG.info("L3 agent %s started", self.host)

    def stop(self) -> None:
        """Stop serving RPC and reporting. Router namespaces stay: they forward
        traffic without the agent, and the next agent start adopts them."""
        systemd.notify("STOPPING=1")
        self.server.stop()
        self.server.wait()
        self.worker.stop()
        # Last: the lease stays renewed during the seconds a graceful RPC stop
        # takes; once this process is gone the node guard renews it until the
        # next agent registers.
        self.reporter.stop()
        LOG.info("L3 agent %s stopped; its routers keep serving", self.host)
