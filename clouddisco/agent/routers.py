"""The agent's router worker: one thread owns the driver, so adds, removes and
resyncs never interleave on the same namespace.

Every change to the data plane happens under the node lock, in batches of at
most ``BUILD_CHUNK`` routers, and each batch first checks that building is
still allowed (``Node.build_refusal``): a lease that ran out or was fenced
mid-way stops the build at the next batch, and the node guard's fence can
never run between a check and the build it allowed.
"""

import queue
import threading
import time
from collections.abc import Sequence

from oslo_log import log as logging

from clouddisco import lease
from clouddisco import rpc
from clouddisco.agent import node as node_mod
from clouddisco.drivers import base

LOG = logging.getLogger(__name__)

DELETING = "DELETING"
# Routers per locked batch: ~0.25 s of netns work, so a fence waits little
# and a batch never outlives the lease it started under.
BUILD_CHUNK = 100
# Lease that must be left before a batch starts.
BUILD_BUDGET = 0.5
# At most one "refusing to build" error per this many seconds.
REFUSAL_LOG_INTERVAL = 10.0
# How long a router removed because the server is deleting it stays refused
# to routers_added: as long as such a cast can still be accepted (CAST_TTL,
# and the clock skew its deadline tolerates). A deleted router's id never
# comes back, so refusing it cannot be wrong; one removed as a stray copy
# (moved elsewhere) and really moved back is sent again by the monitor's
# retry of pending routers.
TOMBSTONE_TTL = rpc.CAST_TTL + 2.0


def to_spec(router: dict) -> base.RouterSpec:
    return base.RouterSpec(id=router["id"], gateway_ip=router["gateway_ip"],
                           gateway_prefixlen=router["gateway_prefixlen"],
                           gateway_mac=router["gateway_mac"])


class BuildRefused(Exception):
    pass


class RouterWorker:
    def __init__(self, host: str, driver: base.RouterDriver, scheduler: rpc.SchedulerAPI,
                 node: node_mod.Node, retry_interval: float = 1.0) -> None:
        self.host = host
        # Nothing is built without a live lease and a live node guard (see
        # clouddisco.agent.node): an agent that was hung or cut off past its
        # lease has been fenced, and its routers may already run elsewhere.
        # It builds again only after registering and resyncing.
        self.node = node
        self.driver = driver
        self.scheduler = scheduler
        self.retry_interval = retry_interval
        self._tasks: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="router-worker", daemon=True)
        self.synced = threading.Event()  # set after the first complete resync
        # Set when a build was refused: the next one that may build resyncs.
        self.refused = threading.Event()
        self._last_refusal_log = 0.0
        # router id -> monotonic time until which an add of it is refused.
        self._tombstones: dict[str, float] = {}
        self.tombstone_ttl = TOMBSTONE_TTL

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._tasks.put(("stop", None))
        self._thread.join(timeout=10)

    # Called from the RPC server threads and the reporter.
    def add(self, routers: Sequence[dict]) -> None:
        self._tasks.put(("add", list(routers)))

    def remove(self, router_ids: Sequence[str], lease_generation: int | None = None) -> None:
        self._tasks.put(("remove", (list(router_ids), lease_generation)))

    def request_resync(self) -> None:
        self._tasks.put(("sync", None))

    def _run(self) -> None:
        while not self._stop.is_set():
            kind, arg = self._tasks.get()
            try:
                if kind == "add":
                    self._add(arg)
                elif kind == "remove":
                    self._remove(*arg)
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

    def _current(self, items: list, what: str) -> list:
        """Drop what was sent for an earlier registration of this agent: it may
        be older than a move of those routers, and the resync that followed
        the new registration already did what still holds."""
        generation = self.node.generation()
        stale = [i for i in items if i.get("lease_generation") not in (None, generation)]
        if stale:
            LOG.info("dropping %d %s sent for lease generation %s (this agent is at "
                     "generation %s): superseded by its resync", len(stale), what,
                     sorted({i["lease_generation"] for i in stale}), generation)
        return [i for i in items if i.get("lease_generation") in (None, generation)]

    def _buried(self, routers: list[dict]) -> list[dict]:
        """Drop adds of routers removed here lately for good: a routers_added
        cast delayed (a broker outage) past the removal of its router would
        rebuild a deleted router whose gateway address may already belong to
        a new one (nemesis seed 201: two copies of 10.250.0.2 for 4 s)."""
        now = time.monotonic()
        self._tombstones = {r: t for r, t in self._tombstones.items() if t > now}
        late = [r["id"] for r in routers if r["id"] in self._tombstones
                and r.get("status") != DELETING]
        if late:
            LOG.warning("ignoring %d router(s) to add that %s removed lately as the server "
                        "asked (a delayed message): %s", len(late), self.host,
                        ", ".join(late))
        return [r for r in routers if r["id"] not in late]

    def _bury(self, router_ids: Sequence[str]) -> None:
        until = time.monotonic() + self.tombstone_ttl
        self._tombstones.update((r, until) for r in router_ids)

    def _add(self, routers: list[dict]) -> None:
        routers = self._buried(self._current(routers, "router(s) to add"))
        wanted = [r for r in routers if r.get("status") != DELETING]
        deleting = [r["id"] for r in routers if r.get("status") == DELETING]
        reports = {}
        if wanted:
            for router_id, error in self._build([to_spec(r) for r in wanted]).items():
                reports[router_id] = _report("ERROR" if error else "ACTIVE", error)
                if not error:
                    LOG.info("router %s is active on %s", router_id, self.host)
                else:
                    LOG.error("router %s failed on %s: %s", router_id, self.host, error)
        if deleting:
            self._bury(deleting)
            reports.update(self._remove_routers(deleting))
        self._send(reports)

    def _remove(self, router_ids: list[str], lease_generation: int | None) -> None:
        if self._current([{"lease_generation": lease_generation}], "removal(s)"):
            self._bury(router_ids)
            self._send(self._remove_routers(router_ids))

    def _build(self, specs: list[base.RouterSpec]) -> base.Results:
        """ensure() in locked batches, each allowed afresh; stops at the first
        refusal, and a resync follows once building is allowed.

        A router not built because the node guard is missing is returned with
        that reason (the agent still owns it, so the API shows ERROR, not a
        router that serves nothing as ACTIVE). One not built because the lease
        ran out is left out: this agent may no longer own it."""
        results: base.Results = {}
        for start in range(0, len(specs), BUILD_CHUNK):
            try:
                with self.node.lock():
                    refusal = self.node.build_refusal(BUILD_BUDGET)
                    if refusal:
                        raise BuildRefused(refusal)
                    results.update(self.driver.ensure(specs[start:start + BUILD_CHUNK]))
            except (BuildRefused, lease.LockTimeout) as exc:
                self._refused(str(exc), len(specs) - start)
                if self.node.lease_left() >= BUILD_BUDGET:
                    # Those whose gateway is up still serve. A namespace alone
                    # does not: its address may have expired (kernel lease)
                    # while nothing renewed it, and the API would show the
                    # router ACTIVE (nemesis seed 104: 3 s, guard and agent
                    # down together, then the new agent refused to build).
                    present = self.driver.list_routers()
                    results.update({s.id: f"not built: {exc}" for s in specs[start:]
                                    if s.id not in present
                                    or not self.driver.router_is_active(s.id)})
                break
        return results

    def _refused(self, why: str, count: int) -> None:
        self.refused.set()
        now = time.monotonic()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log = now
            LOG.error("refusing to build %d router(s) on %s: %s", count, self.host, why)
        else:
            LOG.debug("refusing to build %d router(s) on %s: %s", count, self.host, why)

    def _remove_routers(self, router_ids: list[str]) -> dict:
        reports = {}
        try:
            with self.node.lock():
                results = self.driver.remove(router_ids)
        except lease.LockTimeout as exc:
            LOG.error("could not remove %d router(s) from %s: %s", len(router_ids),
                      self.host, exc)
            return {}  # the scheduler sends the removal again
        for router_id, error in results.items():
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
        flap: ensure leaves a correct namespace alone), remove the rest.

        Also the periodic anti-entropy pass: it finds a router the node lost
        (removed by a fence or by hand) that the server still binds here, and
        a router the node still has that the server moved away."""
        if self.node.lease_left() <= 0:
            # The reporter resyncs once it has registered and holds a lease.
            LOG.warning("lease of %s not valid: resync postponed", self.host)
            return
        generation = self.node.generation()
        try:
            routers = self.scheduler.sync_routers(self.host)
        except Exception as exc:
            LOG.warning("resync failed (%s); retrying in %.1fs", exc, self.retry_interval)
            threading.Timer(self.retry_interval, self.request_resync).start()
            return
        if self.node.generation() != generation:
            return  # registered again meanwhile; that registration resyncs
        self.refused.clear()
        bound = {r["id"] for r in routers if r.get("status") != DELETING}
        present = self.driver.list_routers()
        stale = sorted(present - bound)
        missing = sorted(bound - present)
        log = LOG.info if stale or missing or not self.synced.is_set() else LOG.debug
        log("resync on %s: %d router(s) bound, %d present, %d stale to remove, %d missing "
            "to build", self.host, len(bound), len(present), len(stale), len(missing))
        if stale:
            with self.node.lock():
                removed = self.driver.remove(stale)
            for router_id, error in removed.items():
                if error:
                    LOG.error("stale router %s could not be removed: %s", router_id, error)
                else:
                    LOG.info("stale router %s removed from %s", router_id, self.host)
        # Report only what changes the server's view: routers already ACTIVE that
        # are still fine need no message.
        results = self._build([to_spec(r) for r in routers if r.get("status") != DELETING])
        reports = {rid: _report("ERROR", err) for rid, err in results.items() if err}
        status = {r["id"]: r.get("status") for r in routers}
        reports.update({rid: _report("ACTIVE", None) for rid, err in results.items()
                        if not err and status.get(rid) != "ACTIVE"})
        deleting = [r["id"] for r in routers if r.get("status") == DELETING]
        if deleting:
            self._bury(deleting)
            reports.update(self._remove_routers(deleting))
        self._send(reports)
        if not self.refused.is_set():
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
