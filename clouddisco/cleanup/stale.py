"""Remove this host's router namespaces that the control plane no longer binds here.

Node-side code: it learns what this host owns over RPC and never touches the
database.
"""

from oslo_log import log as logging

from clouddisco import rpc
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)


def stale_routers(host: str, driver: base.RouterDriver, scheduler: rpc.SchedulerAPI
                  ) -> set[str]:
    """Routers present here that the scheduler does not bind (live) to ``host``.

    Raises if the scheduler cannot be asked: without its answer nothing here
    can be called stale.
    """
    bound = {r["id"] for r in scheduler.sync_routers(host) if r.get("status") != "DELETING"}
    return driver.list_routers() - bound


def remove(driver: base.RouterDriver, router_ids: set[str]) -> dict[str, str | None]:
    results = driver.remove(sorted(router_ids))
    for router_id, error in results.items():
        if error:
            LOG.error("could not remove router %s: %s", router_id, error)
        else:
            LOG.info("removed router %s (%s)", router_id, driver.namespace_name(router_id))
    return results
