"""A scheduler replica: two RPC servers, the health monitor and its own heartbeat."""

from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import rpc
from clouddisco.db import api as db_api
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import endpoints
from clouddisco.scheduler import monitor

LOG = logging.getLogger(__name__)


class SchedulerService:
    def __init__(self, conf: cfg.ConfigOpts, db: db_api.Database, transport) -> None:
        self.conf = conf
        self.db = db
        self.host = conf.host
        self.dispatcher = dispatch.RouterDispatcher(db, rpc.AgentAPI(transport),
                                                    conf.health.agent_down_time)
        self.monitor = monitor.HealthMonitor(
            db, self.dispatcher, host=self.host,
            agent_down_time=conf.health.agent_down_time,
            check_interval=conf.health.check_interval,
            pending_retry_time=conf.health.pending_retry_time,
            replica_down_time=conf.scheduler.replica_down_time,
            max_dead_fraction=conf.health.max_dead_fraction)
        lease_time = conf.health.lease_time
        self.rpc_server = rpc.get_server(
            transport, rpc.SCHEDULER_TOPIC,
            [endpoints.SchedulerEndpoint(db, self.dispatcher, self.monitor, lease_time)],
            server=self.host)
        self.report_server = rpc.get_server(
            transport, rpc.REPORTS_TOPIC, [endpoints.ReportEndpoint(db, lease_time)],
            server=self.host)

    def start(self) -> None:
        self.report_server.start()
        self.rpc_server.start()
        self.monitor.start()
        h = self.conf.health
        LOG.info("scheduler %s started: agent_down_time %.1fs, lease_time %.1fs, "
                 "check_interval %.2fs", self.host, h.agent_down_time, h.lease_time,
                 h.check_interval)

    def stop(self) -> None:
        self.monitor.stop()
        for server in (self.rpc_server, self.report_server):
            server.stop()
        for server in (self.rpc_server, self.report_server):
            server.wait()
        LOG.info("scheduler %s stopped", self.host)
