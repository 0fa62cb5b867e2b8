"""The long-running node guard service (``clouddisco-cleanup --daemon``)."""

from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import periodic
from clouddisco import rpc
from clouddisco import systemd
from clouddisco.cleanup import guard
from clouddisco.drivers import base
from clouddisco.drivers import lifetimes

LOG = logging.getLogger(__name__)


class GuardService:
    def __init__(self, conf: cfg.ConfigOpts, driver: base.RouterDriver, transport) -> None:
        self.interval = conf.cleanup.check_interval
        scheduler = rpc.SchedulerAPI(transport, timeout=conf.cleanup.server_timeout)
        self.guard = guard.NodeGuard(
            conf.host, driver, scheduler, state_dir=conf.agent.state_dir,
            restart_grace=conf.cleanup.restart_grace,
            renew_interval=conf.agent.report_interval,
            # A renewal or fence report must not stall the checks for long.
            rpc_timeout=min(conf.cleanup.server_timeout, 2 * conf.agent.report_interval),
            **heartbeat.node_report_paths(conf))
        self._loop = periodic.Loop("node-guard", self._step, self.interval)
        # The guard renews the addresses' kernel lifetimes too, so that they
        # outlive an agent restart (clouddisco.drivers.lifetimes).
        self.lifetimes = (lifetimes.AddressLifetimeKeeper(
            driver, conf.agent.state_dir, conf.host, conf.health.agent_down_time)
            if conf.agent.kernel_lease else None)

    def start(self) -> None:
        self._loop.start()
        if self.lifetimes is not None:
            self.lifetimes.start()
        systemd.notify("READY=1")
        LOG.info("node guard for %s started (restart_grace %.1fs)", self.guard.host,
                 self.guard.restart_grace)

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self._loop.stop()
        if self.lifetimes is not None:
            self.lifetimes.stop()
        self.guard.close()

    def _step(self) -> float:
        self.guard.tick()
        systemd.notify("WATCHDOG=1")
        return self.interval
