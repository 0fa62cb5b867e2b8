"""One control-plane server lost under traffic: the harness that
``tests/ha`` and ``bench/service_failover.py`` share.

``Traffic(cloud)`` runs on an ``ha`` cloud (``lab.cloud.Cloud(topology=
"ha")``) what an operator's cloud would see while a server dies:

- ``STEADY_ROUTERS`` routers, created first and never deleted, whose gateways
  are pinged every 20 ms from the probe namespace (one raw socket);
- a workload creating and deleting other routers through HAProxy, one
  request every 0.5-1 s (``lab.nemesis.Workload``);
- the invariant sampler (no gateway address up twice, every 50 ms);
- a watcher that lists the routers every 0.5 s and records when each one was
  first seen ACTIVE (how long creates stay PENDING across a fault).

``single_server_faults(cloud)`` lists the faults of the issue: one Galera
node, one RabbitMQ node, one API replica, one scheduler replica, each killed
with ``kill -9`` and started again. ``Traffic.run(fault)`` plays one and
``Traffic.problems(window)`` judges it; the judgement is the same in the
tests (which assert it is empty) and in the bench (which prints it).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from lab import cloud as cloud_mod
from lab import invariants
from lab import nemesis
from lab import netlab

STEADY_ROUTERS = 4
PING_INTERVAL = 0.02
# A ping gap under this is jitter, not a dark gateway: 20 ms pings from a
# Python sender on a loaded 2-core machine.
GAP_BOUND = 0.5
# Every router created (2xx) while a server is lost is ACTIVE within this
# many seconds of its create; the restart of the server is not waited for.
PENDING_BOUND = 15.0
# After the restart, everything must have settled within this.
SETTLE_BOUND = 30.0
WATCH_INTERVAL = 0.5


@dataclasses.dataclass
class Fault:
    """One server lost: ``kill`` (kill -9) then, ``down`` seconds later, ``restart``."""

    name: str
    kill: Callable[[], None]
    restart: Callable[[], None]
    down: float = 5.0


@dataclasses.dataclass
class Window:
    """When a fault ran: wall-clock times."""

    fault: str
    killed_at: float
    restarted_at: float
    healed_at: float  # the restarted server is serving again

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def single_server_faults(cloud: cloud_mod.Cloud, down: float = 5.0) -> list[Fault]:
    """The four single-server losses, each of the server most clients use:
    the Galera node HAProxy writes to at the time, the RabbitMQ node listed first in
    ``transport_url`` (every client connects there first), API replica 1 and
    scheduler replica 1."""
    if cloud.galera is None or cloud.rabbit is None:
        raise ValueError("single_server_faults needs a Cloud(topology='ha')")
    broker = 1
    victim: dict[str, int] = {}

    def kill_writer() -> None:
        victim["galera"] = cloud.galera_writer()
        cloud.galera.kill(victim["galera"])

    return [
        Fault("galera", kill_writer, lambda: cloud.galera.start_node(victim["galera"]),
              down),
        Fault("rabbitmq", lambda: cloud.rabbit.kill(broker),
              lambda: cloud.rabbit.start_node(broker), down),
        Fault("api", lambda: cloud.api_replica(1).kill(), lambda: _restart_api(cloud), down),
        Fault("scheduler", lambda: cloud.scheduler(1).kill_group(),
              lambda: cloud.start_scheduler(1), down),
    ]


def _restart_api(cloud: cloud_mod.Cloud) -> None:
    cloud.start_api(1)
    cloud.wait_api_replica(1)


class ActiveWatch(threading.Thread):
    """Lists the routers every WATCH_INTERVAL; records when each was first
    seen ACTIVE."""

    def __init__(self, cloud: cloud_mod.Cloud) -> None:
        super().__init__(daemon=True, name="serverloss-watch")
        self.cloud = cloud
        self.first_active: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.passes = 0  # listings that answered
        self._passed = threading.Condition()

    def run(self) -> None:
        while not self.stop_event.wait(WATCH_INTERVAL):
            routers = self.cloud.list_routers()
            if routers is None:
                continue
            now = time.time()
            for r in routers:
                if r["status"] == "ACTIVE":
                    self.first_active.setdefault(r["id"], now)
            with self._passed:
                self.passes += 1
                self._passed.notify_all()

    def wait_pass(self, timeout: float = 30.0) -> None:
        """Until a listing that started after this call has been recorded
        (what the API shows now is in ``first_active``)."""
        with self._passed:
            target = self.passes + 2  # the one under way may predate the call
            self._passed.wait_for(lambda: self.passes >= target, timeout)


class Traffic:
    """Steady routers pinged every 20 ms, a create/delete workload, the
    invariant sampler and the ACTIVE watcher, on one ``ha`` cloud."""

    def __init__(self, cloud: cloud_mod.Cloud, seed: int = 0, workload: bool = True,
                 steady: int = STEADY_ROUTERS) -> None:
        self.cloud = cloud
        self.steady_count = steady
        self.with_workload = workload
        self.steady: dict[str, str] = {}  # router id -> gateway ip
        self.placement: dict[str, str] = {}  # steady router id -> agent host
        self.lock = threading.Lock()
        self.live: dict[str, str] = {}
        self.gateways: dict[str, str] = {}
        self.workload = nemesis.Workload(cloud, random.Random(f"serverloss-{seed}"),
                                         self.live, self.gateways)
        self.sampler = invariants.InvariantSampler(cloud.token + "-")
        self.watch = ActiveWatch(cloud)
        self.sweep: nemesis.Sweep | None = None
        self.windows: list[Window] = []

    def start(self) -> Traffic:
        for i in range(self.steady_count):
            router = self.cloud.create_router(f"steady{i}")
            router = self.cloud.wait_router(router["id"], timeout=60)
            self.steady[router["id"]] = router["external_gateway_ip"]
            self.placement[router["id"]] = router["agent_host"]
        self.sampler.start()
        self.sweep = nemesis.Sweep(self.cloud.probe.name, self.steady, self.lock,
                                   interval=PING_INTERVAL).start()
        netlab.wait_for(lambda: all(self.sweep.last_reply(ip) for ip in self.steady.values()),
                        10, what="every steady gateway to answer pings")
        self.watch.start()
        if self.with_workload:
            self.workload.start()
        return self

    def stop(self) -> None:
        self.workload.stop_event.set()
        self.watch.stop_event.set()
        if self.workload.is_alive():
            self.workload.join(15)
        if self.sweep is not None:
            self.sweep.stop()
        if self.sampler.running:
            self.sampler._stop.set()  # stop() would raise the sampler's own failure again

    # ---------------------------------------------------------------- faults

    def run(self, fault: Fault, wait_healed: Callable[[], None] | None = None) -> Window:
        """kill, ``fault.down`` seconds, restart; the window ends when
        ``wait_healed`` returns (the restarted server is serving)."""
        killed_at = time.time()
        fault.kill()
        time.sleep(fault.down)
        restarted_at = time.time()
        fault.restart()
        if wait_healed is not None:
            wait_healed()
        window = Window(fault.name, killed_at, restarted_at, time.time())
        self.windows.append(window)
        return window

    # --------------------------------------------------------------- judging

    def ping_gap(self, since: float, until: float | None = None) -> float:
        """The longest silence of any steady gateway within [since, until]."""
        until = until or time.time()
        worst = 0.0
        assert self.sweep is not None
        for ip in self.steady.values():
            times = [since] + [t for t in list(self.sweep.replies.get(ip, ()))
                               if since < t < until] + [until]
            worst = max(worst, max(b - a for a, b in zip(times, times[1:], strict=False)))
        return worst

    def lost_pings(self, since: float, until: float) -> int:
        """Echo requests to steady gateways sent within [since, until - 1 s]
        with no reply within 1 s."""
        assert self.sweep is not None
        lost = 0
        for ip in self.steady.values():
            replies = sorted(self.sweep.replies.get(ip, ()))
            j = 0
            for sent in self.sweep.sent.get(ip, ()):
                if not since <= sent <= until - 1.0:
                    continue
                while j < len(replies) and replies[j] < sent:
                    j += 1
                if j >= len(replies) or replies[j] > sent + 1.0:
                    lost += 1
        return lost

    def fences(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [f for f in nemesis.fences_in_logs(self.cloud)
                if f["at"] is None or f["at"] >= since - 1.0]

    def moved(self) -> list[str]:
        """Steady routers that are not where they were placed."""
        out = []
        for rid, host in self.placement.items():
            router = self.cloud.router(rid)
            if router is None or router["agent_host"] != host:
                out.append(f"{rid}: {host} -> {router and router['agent_host']}")
        return out

    def pending_seconds(self, since: float) -> dict[str, float | None]:
        """Creates (2xx) that started at or after ``since``: seconds from the
        create's answer until first seen ACTIVE (None: not yet)."""
        out: dict[str, float | None] = {}
        ops = list(self.workload.ops)
        deleted_at = {o["router"]: o["start"] for o in ops if o["op"] == "delete"}
        for op in ops:
            if op["op"] != "create" or op["start"] < since or not op["router"]:
                continue
            if op["status"] is None or not 200 <= op["status"] < 300:
                continue
            seen = self.watch.first_active.get(op["router"])
            if seen is None and op["router"] in deleted_at:
                # Deleted before the watcher's next look: not judged here
                # (settle() still checks that it is gone).
                continue
            out[op["router"]] = None if seen is None else round(max(0.0, seen - op["end"]), 2)
        return out

    def galera_disagreements(self) -> dict[str, dict[int, Any]]:
        """Tables on which the Galera nodes disagree (``GaleraCluster.
        disagreements``, which allows for the heartbeats written meanwhile)."""
        assert self.cloud.galera is not None
        return self.cloud.galera.disagreements(self.cloud.db_name)

    def settle(self, since: float) -> list[str]:
        """Wait (SETTLE_BOUND at most) until every router the workload created
        and did not delete is ACTIVE with exactly one copy, serving, and every
        deleted one gone (``nemesis.Checker.final_problems``)."""
        assert self.sweep is not None
        deadline = time.time() + SETTLE_BOUND
        while True:
            with self.workload.lock:
                pinged = dict(self.steady)
            problems = nemesis.Checker.final_problems(
                self.cloud, self.sampler, _AllPinged(self.sweep, pinged), self.workload.ops,
                since)
            if not problems or time.time() >= deadline:
                return [f"({check}) {what}" for check, what in problems]
            time.sleep(1.0)

    def problems(self, window: Window) -> list[str]:
        """Everything wrong about one fault window, as sentences (empty: all
        well): the issue's checks."""
        out = []
        gap = self.ping_gap(window.killed_at - 0.05, window.healed_at)
        if gap >= GAP_BOUND:
            out.append(f"a steady gateway was silent for {gap:.2f} s")
        lost = self.lost_pings(window.killed_at, window.healed_at)
        if lost:
            out.append(f"{lost} ping(s) to steady gateways lost")
        fences = self.fences(window.killed_at)
        if fences:
            out.append(f"{len(fences)} node fence(s): {fences}")
        moved = self.moved()
        if moved:
            out.append(f"steady routers moved: {moved}")
        events = [e for e in self.cloud.api("GET", "/v1/failover-events", expect=200)
                  .json()["failover_events"] if e["router_id"] in self.steady]
        if events:
            out.append(f"{len(events)} failover event(s) of steady routers")
        out += self.settle(window.healed_at)
        self.watch.wait_pass()  # a router settle() saw ACTIVE is recorded as such
        slow = {rid: s for rid, s in self.pending_seconds(window.killed_at).items()
                if s is None or s > PENDING_BOUND}
        if slow:
            out.append(f"created routers PENDING over {PENDING_BOUND:g} s: {slow}")
        doubles = [v for v in self.sampler.violations() if v["timestamp"] >= window.killed_at]
        if doubles:
            out.append(f"{len(doubles)} sample(s) with a gateway up twice: {doubles[:3]}")
        if self.cloud.galera is not None:
            differ = self.galera_disagreements()
            if differ:
                out.append(f"the Galera nodes disagree on {differ}")
        return out

    def summary(self, window: Window) -> dict[str, Any]:
        """Numbers of one window, for the bench."""
        pending = [s for s in self.pending_seconds(window.killed_at).values() if s is not None]
        ops = [o for o in self.workload.ops if window.killed_at <= o["start"] <= window.healed_at]
        return {
            **window.to_dict(),
            "ping_gap_s": round(self.ping_gap(window.killed_at - 0.05, window.healed_at), 3),
            "lost_pings": self.lost_pings(window.killed_at, window.healed_at),
            "fences": len(self.fences(window.killed_at)),
            "moved": len(self.moved()),
            "pending_max_s": max(pending, default=None),
            "ops": nemesis._count(f"{o['op']} {o['status']}" for o in ops),
        }


class _AllPinged:
    """The sweep as ``Checker.final_problems`` sees it: workload routers are
    not pinged here (only the steady ones are), so they count as answering;
    their gateways' single copy is still checked against the namespaces."""

    def __init__(self, sweep: nemesis.Sweep, steady: dict[str, str]) -> None:
        self.sweep = sweep
        self.steady_ips = set(steady.values())

    def last_reply(self, ip: str) -> float | None:
        if ip in self.steady_ips:
            return self.sweep.last_reply(ip)
        return time.time()
