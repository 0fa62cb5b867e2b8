"""A scheduler replica: worker processes under one cotyledon master.

* ``ReportWorker`` (``[scheduler] report_workers`` processes) receives state
  reports and lease renewals, and nothing else.
* ``SchedulerWorker`` (one process) serves placement, status and fence RPCs
  and runs the health monitor.
* ``UdpLeaseWorker`` (one process, with ``[health] report_key`` set and
  ``udp_port`` not 0) receives state reports over UDP and writes them in
  batches (``clouddisco.scheduler.udp``).

Why processes: a thread pool busy with placement or a 1,000-router move holds
the GIL in turns with every other thread, so a heartbeat handler in the same
process waited seconds for its turn and healthy agents were fenced (measured
with bench/faults.py). Neutron splits its state-report workers for the same
reason. Each worker builds its own database engine and transport after the
fork; the master only supervises, restarts workers that die, and takes them
down with it (cotyledon).

SIGHUP reloads the mutable options (``debug``, log levels) in the master and
in every worker, and restarts nothing. cotyledon's default would stop and
restart every worker: report workers included, which lets every node's lease
lapse while they come back.
"""

import os

import cotyledon
from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import launch
from clouddisco import rpc
from clouddisco import systemd
from clouddisco.db import api as db_api
from clouddisco.scheduler import dispatch
from clouddisco.scheduler import endpoints
from clouddisco.scheduler import monitor
from clouddisco.scheduler import udp

LOG = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_TIMEOUT = 15  # seconds for workers to stop on SIGTERM


class SchedulerWorker(cotyledon.Service):
    name = "clouddisco-scheduler: placement and health monitor"

    def __init__(self, worker_id: int, conf: cfg.ConfigOpts,
                 outage: udp.OutageClock | None = None,
                 notify_socket: str | None = None) -> None:
        super().__init__(worker_id)
        self.conf = conf
        self.host = conf.host
        self.notify_socket = notify_socket
        self.db = db_api.Database.from_conf(conf)
        transport = rpc.get_transport(conf)
        self.dispatcher = dispatch.RouterDispatcher(self.db, rpc.AgentAPI(transport),
                                                    conf.health.agent_down_time)
        self.monitor = monitor.HealthMonitor(
            self.db, self.dispatcher, host=self.host,
            agent_down_time=conf.health.agent_down_time,
            check_interval=conf.health.check_interval,
            pending_retry_time=conf.health.pending_retry_time,
            replica_down_time=conf.scheduler.replica_down_time,
            max_dead_fraction=conf.health.max_dead_fraction,
            outage_until=outage.until if outage is not None else lambda: 0.0,
            start_hold=conf.health.agent_down_time if outage is not None else 0.0)
        self.server = rpc.get_server(
            transport, rpc.SCHEDULER_TOPIC,
            [endpoints.SchedulerEndpoint(self.db, self.dispatcher, self.monitor,
                                         conf.health.lease_time, conf.max_clock_skew)],
            server=self.host)

    def run(self) -> None:
        self.server.start()
        self.monitor.start()
        h = self.conf.health
        LOG.info("scheduler %s started: agent_down_time %.1fs, lease_time %.1fs, "
                 "check_interval %.2fs", self.host, h.agent_down_time, h.lease_time,
                 h.check_interval)
        # Serving placement and fence RPCs and monitoring: the replica is
        # usable. From this worker, not cotyledon's master (the unit's main
        # pid), hence NotifyAccess=all in clouddisco-scheduler.service; a
        # respawned worker says it again, which systemd ignores.
        systemd.notify("READY=1", self.notify_socket)

    def reload(self) -> None:
        # cotyledon sends SIGHUP to every worker (the master's killpg, or an
        # operator's kill); its default here is to exit and be restarted.
        launch.reload_config(self.conf)

    def terminate(self) -> None:
        self.monitor.stop()
        self.server.stop()
        self.server.wait()
        LOG.info("scheduler %s stopped", self.host)


class ReportWorker(cotyledon.Service):
    name = "clouddisco-scheduler: state reports"

    def __init__(self, worker_id: int, conf: cfg.ConfigOpts) -> None:
        super().__init__(worker_id)
        self.conf = conf
        prefetch = conf.scheduler.report_prefetch_count
        if prefetch:
            # Unlimited by default, RabbitMQ pushes a whole backlog into this
            # process, where it outlives its senders' deadlines (and per-message
            # expiry no longer applies). cotyledon builds this service after
            # the fork, so the override stays in this worker's copy of the
            # configuration and its one transport.
            conf.set_override("rabbit_qos_prefetch_count", prefetch,
                              group="oslo_messaging_rabbit")
        self.db = db_api.Database.from_conf(conf)
        self.server = rpc.get_server(
            rpc.get_transport(conf), rpc.REPORTS_TOPIC,
            [endpoints.ReportEndpoint(self.db, conf.health.lease_time, conf.max_clock_skew)],
            server=conf.host)

    def run(self) -> None:
        self.server.start()
        LOG.info("state report worker %d started", self.worker_id)

    def reload(self) -> None:
        # Never restart on SIGHUP: a report worker that is away for a few
        # seconds lets leases lapse and nodes fence themselves.
        launch.reload_config(self.conf)

    def terminate(self) -> None:
        self.server.stop()
        self.server.wait()


class UdpLeaseWorker(cotyledon.Service):
    name = "clouddisco-scheduler: state reports over UDP"

    def __init__(self, worker_id: int, conf: cfg.ConfigOpts,
                 outage: udp.OutageClock) -> None:
        super().__init__(worker_id)
        self.conf = conf
        h = conf.health
        self.receiver = udp.UdpLeaseReceiver(db_api.Database.from_conf(conf), h.report_key,
                                             h.lease_time, h.udp_bind_host, h.udp_port,
                                             replica=conf.host, outage=outage,
                                             agent_down_time=h.agent_down_time)

    def run(self) -> None:
        self.receiver.start()

    def reload(self) -> None:
        # As the RPC report workers: never away on SIGHUP.
        launch.reload_config(self.conf)

    def terminate(self) -> None:
        self.receiver.stop()


def serve(conf: cfg.ConfigOpts) -> None:
    """Run the workers until SIGTERM or SIGINT; returns when they have stopped."""
    manager = cotyledon.ServiceManager(graceful_shutdown_timeout=GRACEFUL_SHUTDOWN_TIMEOUT)
    # On SIGHUP cotyledon's master runs this hook, then passes SIGHUP on to
    # its process group; each worker's reload() reloads rather than exits.
    manager.register_hooks(on_reload=lambda: launch.reload_config(conf))
    manager.add(ReportWorker, workers=conf.scheduler.report_workers, args=(conf,))
    udp_receiver = bool(conf.health.report_key and conf.health.udp_port)
    # Shared by the lease receiver and the health monitor (forked workers).
    outage = udp.OutageClock() if udp_receiver else None
    # cotyledon's master sends READY=1 itself as soon as run() starts, before
    # any worker serves, and then drops $NOTIFY_SOCKET from the environment
    # its workers inherit. Take the socket first: the placement worker says
    # READY=1 once it serves.
    notify_socket = os.environ.pop("NOTIFY_SOCKET", None)
    manager.add(SchedulerWorker, workers=1, args=(conf, outage, notify_socket))
    if udp_receiver:
        manager.add(UdpLeaseWorker, workers=1, args=(conf, outage))
    manager.run()
