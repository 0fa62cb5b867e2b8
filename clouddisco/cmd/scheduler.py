"""clouddisco-scheduler: placement, state reports and the health monitor."""

from clouddisco import launch
from clouddisco import rpc
from clouddisco.db import api as db_api
from clouddisco.scheduler import service

PROG = "clouddisco-scheduler"


def main() -> None:
    conf = launch.prepare(PROG, groups=["DEFAULT", "scheduler", "health", "database"])
    launch.survive_sighup()
    db = db_api.Database.from_conf(conf)
    launch.require(PROG, "the database ([database] connection)", db.ping)
    # Workers open their own connections after the fork.
    db.engine.dispose()
    launch.require(PROG, "the message broker ([DEFAULT] transport_url)",
                   lambda: rpc.check_broker(conf))
    service.serve(conf)
