"""clouddisco-cleanup: remove this host's stale router namespaces.

``--daemon`` runs the node guard (systemd: clouddisco-cleanup.service): it
enforces the node's lease and fences the node when its agent stays down.
Once: without ``--all`` it asks the scheduler which routers this host still
owns and removes the others; with ``--all`` it removes every router namespace
of this agent's prefix and needs no server.
"""

import sys

from oslo_config import cfg

from clouddisco import drivers
from clouddisco import launch
from clouddisco import rpc
from clouddisco.cleanup import service
from clouddisco.cleanup import stale

PROG = "clouddisco-cleanup"

CLI_OPTS = [
    cfg.BoolOpt("all", default=False,
                help="Remove every router namespace of this agent's prefix, without "
                     "asking the server."),
    cfg.BoolOpt("dry-run", default=False, help="Print what would be removed."),
    cfg.BoolOpt("daemon", default=False,
                help="Run as the node guard: enforce the lease and fence this node "
                     "when its agent cannot come back (long-running; for systemd)."),
]


def main() -> None:
    conf = launch.prepare(PROG, groups=["DEFAULT", "agent", "cleanup"], cli_opts=CLI_OPTS)
    if conf.daemon:
        launch.survive_sighup()
    driver = drivers.load_driver(conf.agent.router_driver, conf.agent.namespace_prefix,
                                 conf.agent.external_bridge)
    if conf.daemon:
        # No broker check: a node must fence itself exactly when none answers.
        node_guard = service.GuardService(conf, driver, rpc.get_transport(conf))
        node_guard.start()
        launch.wait_for_signal(conf)
        node_guard.stop()
        return
    if conf.all:
        targets = driver.list_routers()
    else:
        launch.require(PROG, "the message broker ([DEFAULT] transport_url)",
                       lambda: rpc.check_broker(conf))
        scheduler = rpc.SchedulerAPI(rpc.get_transport(conf),
                                     timeout=conf.cleanup.server_timeout)
        try:
            targets = stale.stale_routers(conf.host, driver, scheduler)
        except Exception as exc:
            launch.fail(PROG, f"cannot ask a scheduler which routers {conf.host} owns "
                        f"({exc}); nothing removed. Use --all to remove every router "
                        f"namespace with prefix {conf.agent.namespace_prefix!r}.",
                        launch.EXIT_UNREACHABLE)
    if conf.dry_run:
        for router_id in sorted(targets):
            print(driver.namespace_name(router_id))
        return
    results = stale.remove(driver, targets)
    failed = [r for r, err in results.items() if err]
    print(f"{PROG}: removed {len(results) - len(failed)} router(s), "
          f"{len(failed)} failed")
    sys.exit(1 if failed else 0)

