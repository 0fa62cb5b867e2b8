"""The agent's router worker: one thread owns the driver, so adds, removes and
resyncs never interleave on the same namespace."""

import queue
import threading
from collections.abc import Callable
from collections.abc import Sequence

from oslo_log import log as logging

from clouddisco import rpc
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

DELETING = "DELETING"


def to_spec(router: dict) -> base.RouterSpec:
    return base.RouterSpec(id=router["id"], gateway_ip=router["gateway_ip"],
                           gateway_prefixlen=router["gateway_prefixlen"],
                           gateway_mac=router["gateway_mac"])


class RouterWorker:
    def __init__(self, host: str, driver: base.RouterDriver, scheduler: rpc.SchedulerAPI,
                 retry_interval: float = 1.0,
                 lease_valid: Callable[[], bool] = lambda: True) -> None:
        self.host = host
        # Nothing is built without a live lease: an agent that was hung or cut
        # off past its lease has been fenced, and its routers may already run
        # elsewhere. It builds again only after registering and resyncing.
        self.lease_valid = lease_valid
        self.driver = driver
        self.scheduler = scheduler
        self.retry_interval = retry_interval
        self._tasks: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="router-worker", daemon=True)
        self.synced = threading.Event()  # set after the first complete resync

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._tasks.put(("stop", None))
        self._thread.join(timeout=10)

    # Called from the RPC server threads and the reporter.
    def add(self, routers: Sequence[dict]) -> None:
        self._tasks.put(("add", list(routers)))

    def remove(self, router_ids: Sequence[str]) -> None:
        self._tasks.put(("remove", list(router_ids)))

    def request_resync(self) -> None:
        self._tasks.put(("sync", None))

    def _run(self) -> None:
        while not self._stop.is_set():
            kind, arg = self._tasks.get()
            try:
                if kind == "add":
                    self._add(arg)
                elif kind == "remove":
                    self._remove(arg)
                elif kind == "sync":
                    self._drain_syncs()
                    self._resync()
            except Exception:
                LOG.exception("router task %s failed", kind)

    def _drain_syncs(self) -> None:
        # Several reconnects may queue several syncs; one full sync covers them.
        kept = []
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task[0] != "sync":
                kept.append(task)
        for task in kept:
            self._tasks.put(task)

    # ------------------------------------------------------------------ work

    def _add(self, routers: list[dict]) -> None:
        if not self.lease_valid():
            LOG.warning("lease of %s not valid: ignoring %d router(s) until the agent "
                        "registers and resyncs", self.host, len(routers))
            return
        wanted = [r for r in routers if r.get("status") != DELETING]
        deleting = [r["id"] for r in routers if r.get("status") == DELETING]
        reports = {}
        if wanted:
            for router_id, error in self.driver.ensure([to_spec(r) for r in wanted]).items():
                reports[router_id] = _report("ERROR" if error else "ACTIVE", error)
                if not error:
                    LOG.info("router %s is active on %s", router_id, self.host)
                else:
                    LOG.error("router %s failed on %s: %s", router_id, self.host, error)
        if deleting:
            reports.update(self._remove_routers(deleting))
        self._send(reports)

    def _remove(self, router_ids: list[str]) -> None:
        self._send(self._remove_routers(router_ids))

    def _remove_routers(self, router_ids: list[str]) -> dict:
        reports = {}
        for router_id, error in self.driver.remove(router_ids).items():
            if error:
                LOG.error("router %s could not be removed from %s: %s", router_id,
                          self.host, error)
                reports[router_id] = _report("ERROR", f"removal failed: {error}")
            else:
                LOG.info("router %s removed from %s", router_id, self.host)
                reports[router_id] = _report("DELETED", None)
        return reports

    def _resync(self) -> None:
        """Make the namespaces match the server: adopt what is bound here (no
        flap: ensure leaves a correct namespace alone), remove the rest."""
        if not self.lease_valid():
            # The reporter resyncs once it has registered and holds a lease.
            LOG.warning("lease of %s not valid: resync postponed", self.host)
            return
        try:
            routers = self.scheduler.sync_routers(self.host)
        except Exception as exc:
            LOG.warning("resync failed (%s); retrying in %.1fs", exc, self.retry_interval)
            threading.Timer(self.retry_interval, self.request_resync).start()
            return
        bound = {r["id"] for r in routers if r.get("status") != DELETING}
        present = self.driver.list_routers()
        stale = sorted(present - bound)
        LOG.info("resync on %s: %d router(s) bound, %d present, %d stale to remove",
                 self.host, len(bound), len(present), len(stale))
        if stale:
            for router_id, error in self.driver.remove(stale).items():
                if error:
                    LOG.error("stale router %s could not be removed: %s", router_id, error)
                else:
                    LOG.info("stale router %s removed from %s", router_id, self.host)
        # Report only what changes the server's view: routers already ACTIVE that
        # are still fine need no message.
        results = self.driver.ensure([to_spec(r) for r in routers
                                      if r.get("status") != DELETING])
        reports = {rid: _report("ERROR", err) for rid, err in results.items() if err}
        status = {r["id"]: r.get("status") for r in routers}
        reports.update({rid: _report("ACTIVE", None) for rid, err in results.items()
                        if not err and status.get(rid) != "ACTIVE"})
        deleting = [r["id"] for r in routers if r.get("status") == DELETING]
        if deleting:
            reports.update(self._remove_routers(deleting))
        self._send(reports)
        self.synced.set()

    def _send(self, reports: dict) -> None:
        if not reports:
            return
        try:
            self.scheduler.update_router_status(self.host, reports)
        except Exception as exc:
            # The scheduler re-sends unfinished routers; their outcome is reported then.
            LOG.warning("could not report %d router status(es): %s", len(reports), exc)


def _report(status: str, reason: str | None) -> dict:
    return {"status": status, "reason": reason}
