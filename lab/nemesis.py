"""A Jepsen-style randomized fault run against a whole clouddisco.

``run(seed, duration)`` builds a 3-agent cloud (every agent behind proxies, a
node guard each), creates ``INITIAL_ROUTERS`` routers, then for ``duration``
seconds plays a fault schedule drawn from ``seed`` while a workload thread
creates and deletes routers through the API, a raw-ICMP sweep pings every
gateway, an observer samples the API against the namespaces, and the
``InvariantSampler`` looks for double copies. Once every fault is healed it
waits at most ``SETTLE_BOUND`` seconds for the cloud to converge and checks
the history (see ``Checker``). Every violation names the seed and the command
that replays it.

The fault schedule is a pure function of the seed (``Nemesis(seed, duration)
.schedule``); the workload's choices depend on what exists at the time, and
the processes' timing on the machine, so a replay reproduces the faults
exactly and the rest approximately.

Fault kinds (``KINDS``): agent kill -9 then restart, agent SIGSTOP then
SIGCONT, node cut off from the control plane (broker and API; reset or drop)
then reconnected, the broker link of every agent cut then restored, the
scheduler killed (whole process group) then started, a node guard killed then
started; with ``db_faults`` (``--db-faults``) also the database cut off from
every process (connections refused, or stalled) then restored, on a cloud
whose agents report over UDP first (the path that rides through it); with
``clock_faults`` (``--clock-faults``) also the scheduler's wall clock stepped
0.3-1 s forwards or backwards (within ``[DEFAULT] max_clock_skew``) then
back (lab/clockskew). Not covered, because the ``Cloud`` fixture cannot do
them yet: a broker crash (the machine's RabbitMQ is shared), packet delay or
loss short of a cut, disk or memory pressure.

The one combination that check (f) does not count: the scheduler killed
while the database is cut off. Then no path can renew a lease (UDP and RPC
need a scheduler, HTTP and every renewal the database), and a node cannot
tell that from being cut off itself, when the control plane, alive on the
other side, would move its routers after agent_down_time: it must fence.
Such fences are listed in the report as explained, not as violations.

Run one seed by hand (as root)::

    PYTHONPATH=$PWD .venv/bin/python -m lab.nemesis --seed 7 --duration 60
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import requests

from lab import cloud as cloud_mod
from lab import icmp
from lab import invariants
from lab import netlab

AGENTS = ("a", "b", "c")
INITIAL_ROUTERS = 20
# The workload keeps between these many routers alive (the initial ones count).
MIN_ROUTERS, MAX_ROUTERS = 15, 30
RESTART_GRACE = 2.0  # as in the fault tests: an agent down longer than this is fenced

# --- checker bounds (seconds) ---------------------------------------------
# After the last heal: every router must be ACTIVE on exactly one agent,
# serving and answering pings, and every deleted one gone, within this.
SETTLE_BOUND = 30.0
# (e) the API may show a router ACTIVE while its namespace (with the gateway
# up) is absent for at most this long: the API shows DOWN once the agent has
# not reported for lease_time (2 s), and the observer samples once a second.
ACTIVE_ABSENT_BOUND = 3.0
OBSERVE_INTERVAL = 1.0
# (f) a fault on a node explains its fences until this long after the heal: a
# healed node re-registers (a drop-mode cut is noticed only by AMQP heartbeats,
# 6 s) and removes again what reappears under its fenced lease meanwhile.
NODE_FAULT_GRACE = 15.0
PING_INTERVAL = 0.25
# (d) a router counts as serving once it answered within this long.
PING_FRESH = 3.0

NODE_KINDS = ("agent_kill", "agent_stop", "cut_off", "guard_kill")
CONTROL_KINDS = ("broker_cut", "scheduler_kill")
KINDS = NODE_KINDS + CONTROL_KINDS
DB_KINDS = ("db_cut",)  # only with db_faults: the default schedules stay as they were
CLOCK_KINDS = ("clock_skew",)  # only with clock_faults, likewise
# A clock step, either way, of the scheduler (seconds; max_clock_skew is 1 s).
SKEW_RANGE = (0.3, 1.0)
# Window lengths per kind: kills span both a quick restart (< RESTART_GRACE,
# nothing may move) and a node that stays down (fenced and moved).
LENGTHS = {"agent_kill": (0.3, 6.0), "agent_stop": (1.0, 6.0), "cut_off": (1.0, 8.0),
           "guard_kill": (0.5, 6.0), "broker_cut": (2.0, 8.0),
           "scheduler_kill": (2.0, 8.0), "db_cut": (2.0, 10.0), "clock_skew": (2.0, 10.0)}
FIRST_FAULT_AT = 2.0
MAX_CONCURRENT = 2

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def replay_command(seed: int, duration: float, db_faults: bool = False,
                   clock_faults: bool = False) -> str:
    return (f"cd {_REPO} && sudo PYTHONPATH=$PWD {sys.executable} -m lab.nemesis "
            f"--seed {seed} --duration {duration:g}" + (" --db-faults" if db_faults else "")
            + (" --clock-faults" if clock_faults else ""))


# --------------------------------------------------------------------------
# the schedule


@dataclasses.dataclass
class Fault:
    """One fault window: injected ``start`` s into the run, healed ``length`` s later."""

    kind: str
    node: str | None  # agent name; None for control-plane faults
    start: float
    length: float
    mode: str | None = None  # "reset"/"drop" for link cuts
    offset: float | None = None  # seconds, for a clock step
    injected_at: float | None = None  # time.time() of the actual inject/heal
    healed_at: float | None = None

    @property
    def end(self) -> float:
        return self.start + self.length

    def resources(self, agents: tuple[str, ...]) -> set[str]:
        """What the fault holds: two faults holding one thing may not overlap
        (e.g. a broker cut's restore would heal a node cut-off early)."""
        if self.kind in ("agent_kill", "agent_stop"):
            return {f"proc-{self.node}"}
        if self.kind == "cut_off":
            return {f"net-{self.node}"}
        if self.kind == "guard_kill":
            return {f"guard-{self.node}"}
        if self.kind == "broker_cut":
            return {f"net-{a}" for a in agents}
        if self.kind == "db_cut":
            return {"database"}
        if self.kind == "clock_skew":
            return {"clock"}
        return {"scheduler"}

    def label(self) -> str:
        where = f" {self.node}" if self.node else ""
        how = (f" ({self.mode})" if self.mode else
               f" ({self.offset:+.2f}s)" if self.offset is not None else "")
        return f"{self.kind}{where}{how}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Nemesis:
    """The fault schedule of one seed, and how to apply it to a ``Cloud``."""

    def __init__(self, seed: int, duration: float, agents: tuple[str, ...] = AGENTS,
                 db_faults: bool = False, clock_faults: bool = False) -> None:
        self.seed = seed
        self.duration = duration
        self.agents = agents
        extra = (DB_KINDS if db_faults else ()) + (CLOCK_KINDS if clock_faults else ())
        self.kinds = KINDS + extra
        self.control_kinds = CONTROL_KINDS + extra
        self.schedule = self._draw(random.Random(seed))

    # -- drawing

    def _draw(self, rng: random.Random) -> list[Fault]:
        placed: list[Fault] = []
        t = FIRST_FAULT_AT
        while True:
            fault = self._one(rng, t, rng.choice(self.kinds))
            if fault.end > self.duration - 0.5:
                break
            self._place(placed, fault)
            # Sometimes a second fault inside this window: on the same node
            # (kill or hang plus a dead guard, a cut plus a hang), or the
            # control plane together with a node.
            if rng.random() < 0.4:
                at = fault.start + rng.uniform(0.0, 0.7) * fault.length
                if fault.node is not None and rng.random() < 0.5:
                    kind = rng.choice([k for k in NODE_KINDS if k != fault.kind])
                    node = fault.node
                elif fault.node is not None:
                    kind, node = rng.choice(self.control_kinds), None
                else:
                    kind, node = rng.choice(NODE_KINDS), rng.choice(self.agents)
                extra = self._one(rng, at, kind, node)
                if extra.end <= self.duration - 0.5:
                    self._place(placed, extra)
            t += rng.uniform(2.0, 6.0)
        return sorted(placed, key=lambda f: f.start)

    def _one(self, rng: random.Random, at: float, kind: str,
             node: str | None = None) -> Fault:
        lo, hi = LENGTHS[kind]
        if kind in NODE_KINDS and node is None:
            node = rng.choice(self.agents)
        mode = (rng.choice(("reset", "drop")) if kind in ("cut_off", "broker_cut", "db_cut")
                else None)
        length = round(rng.uniform(lo, hi), 2)
        offset = (round(rng.choice((-1, 1)) * rng.uniform(*SKEW_RANGE), 2)
                  if kind == "clock_skew" else None)
        return Fault(kind, node, round(at, 2), length, mode, offset)

    def _place(self, placed: list[Fault], fault: Fault) -> bool:
        # 1 s between two windows on one resource: a heal must take effect
        # before the next inject on the same thing.
        overlapping = [f for f in placed if f.start < fault.end + 1.0
                       and fault.start < f.end + 1.0]
        mine = fault.resources(self.agents)
        if any(f.resources(self.agents) & mine for f in overlapping):
            return False
        # At most MAX_CONCURRENT faults at any moment keeps a 3-agent cloud
        # able to converge; more would mostly test the circuit breaker.
        points = [fault.start] + [f.start for f in overlapping if f.start > fault.start]
        for p in points:
            if 1 + sum(1 for f in overlapping if f.start <= p < f.end + 1.0) > MAX_CONCURRENT:
                return False
        placed.append(fault)
        return True

    # -- applying

    def inject(self, cloud: cloud_mod.Cloud, fault: Fault) -> None:
        if fault.kind == "agent_kill":
            cloud.agent(fault.node).kill()
        elif fault.kind == "agent_stop":
            cloud.agent(fault.node).signal(signal.SIGSTOP)
        elif fault.kind == "cut_off":
            cloud.cut_off(fault.node, fault.mode)
        elif fault.kind == "guard_kill":
            cloud.guard(fault.node).kill()
        elif fault.kind == "broker_cut":
            for a in self.agents:
                cloud.proxy(f"agent-{a}").cut(fault.mode)
        elif fault.kind == "scheduler_kill":
            cloud.scheduler(1).kill_group()
        elif fault.kind == "db_cut":
            cloud.cut_db(fault.mode)
        elif fault.kind == "clock_skew":
            cloud.skew_clock(1, fault.offset)
        fault.injected_at = time.time()

    def heal(self, cloud: cloud_mod.Cloud, fault: Fault) -> None:
        if fault.kind == "agent_kill":
            cloud.start_agent(fault.node)  # goes through its proxy again
        elif fault.kind == "agent_stop":
            cloud.agent(fault.node).signal(signal.SIGCONT)
        elif fault.kind == "cut_off":
            cloud.reconnect(fault.node)
        elif fault.kind == "guard_kill":
            cloud.start_guard(fault.node)
        elif fault.kind == "broker_cut":
            for a in self.agents:
                cloud.proxy(f"agent-{a}").restore()
        elif fault.kind == "scheduler_kill":
            cloud.start_scheduler(1)
        elif fault.kind == "db_cut":
            cloud.restore_db()
        elif fault.kind == "clock_skew":
            cloud.skew_clock(1, 0.0)
        fault.healed_at = time.time()

    def play(self, cloud: cloud_mod.Cloud, t0: float, errors: list[str]) -> None:
        """Inject and heal every fault at its time after ``t0`` (time.time())."""
        steps = sorted([(f.start, 1, i, f) for i, f in enumerate(self.schedule)]
                       + [(f.end, 0, i, f) for i, f in enumerate(self.schedule)],
                       key=lambda s: s[:3])
        for at, inject, _, fault in steps:
            delay = t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                (self.inject if inject else self.heal)(cloud, fault)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                errors.append(f"{'inject' if inject else 'heal'} {fault.label()} "
                              f"at {at:.2f}s failed: {exc!r}")

    def heal_leftovers(self, cloud: cloud_mod.Cloud) -> None:
        """Heal what was injected and not healed (the run failed midway): above
        all SIGCONT, so that clean-up can stop a stopped agent."""
        for fault in self.schedule:
            if fault.injected_at is not None and fault.healed_at is None:
                try:
                    self.heal(cloud, fault)
                except Exception:  # noqa: BLE001,S110 - best effort before tear-down
                    pass


# --------------------------------------------------------------------------
# workload and observers


class Workload(threading.Thread):
    """Creates and deletes routers through the API, one request every
    0.5-1 s, recording each request, its HTTP status and time."""

    def __init__(self, cloud: cloud_mod.Cloud, rng: random.Random, live: dict[str, str],
                 gateways: dict[str, str]) -> None:
        super().__init__(daemon=True, name="nemesis-workload")
        self.cloud = cloud
        self.rng = rng
        self.live = live  # router id -> gateway ip, of routers created and not deleted
        self.gateways = gateways  # every router id ever created -> gateway ip
        self.ops: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self._n = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.rng.uniform(0.5, 1.0)):
            with self.lock:
                count = len(self.live)
            create = count < MIN_ROUTERS or (count < MAX_ROUTERS and self.rng.random() < 0.5)
            if create:
                self._create_router()
            else:
                with self.lock:
                    victim = self.rng.choice(sorted(self.live))
                self._delete_router(victim)

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int | None, Any, str]:
        try:
            resp = requests.request(method, self.cloud.api_url + path, json=body,
                                    headers=cloud_mod.ADMIN_HEADERS, timeout=10)
        except requests.RequestException as exc:
            return None, None, repr(exc)
        try:
            payload = resp.json() if resp.content else None
        except ValueError:
            payload = None
        return resp.status_code, payload, "" if resp.ok else resp.text[:300]

    def _create_router(self) -> None:
        self._n += 1
        started = time.time()
        status, payload, error = self._request("POST", "/v1/routers", {"name": f"w{self._n}"})
        router = (payload or {}).get("router") or {}
        op = {"op": "create", "router": router.get("id"), "status": status,
              "start": started, "end": time.time(), "error": error}
        if status is not None and 200 <= status < 300 and router.get("id"):
            with self.lock:
                self.live[router["id"]] = router["external_gateway_ip"]
                self.gateways[router["id"]] = router["external_gateway_ip"]
        self.ops.append(op)

    def _delete_router(self, router_id: str) -> None:
        started = time.time()
        status, _, error = self._request("DELETE", f"/v1/routers/{router_id}")
        self.ops.append({"op": "delete", "router": router_id, "status": status,
                         "start": started, "end": time.time(), "error": error})
        if status is None or status == 204 or status == 404:
            # Gone or maybe gone: never asked for again; the checker knows
            # from the op which outcomes it may accept.
            with self.lock:
                self.live.pop(router_id, None)


class Sweep:
    """Pings every live gateway every ``PING_INTERVAL`` from the probe
    namespace, through one raw socket: no process per router, so 30 routers
    cost the 2-core machine next to nothing."""

    def __init__(self, probe_ns: str, live: dict[str, str], lock: threading.Lock,
                 interval: float = PING_INTERVAL) -> None:
        self.sock = icmp.probe_socket(probe_ns)
        self.interval = interval
        self.live = live
        self.lock = lock
        self.ident = os.getpid() & 0xFFFF
        self.replies: dict[str, list[float]] = {}  # ip -> reply times
        # ip -> send times: an address nobody owned for a while (deleted, then
        # given to a new router) was not pinged then, and that is no gap.
        self.sent: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True, name="sweep-send"),
                         threading.Thread(target=self._receive, daemon=True,
                                          name="sweep-recv")]

    def start(self) -> Sweep:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def last_reply(self, ip: str) -> float | None:
        times = self.replies.get(ip)
        return times[-1] if times else None

    def _send(self) -> None:
        seq = 0
        while not self._stop.wait(self.interval):
            with self.lock:
                ips = sorted(set(self.live.values()))
            seq = (seq + 1) & 0xFFFF
            packet = icmp.echo_request(self.ident, seq)
            now = time.time()
            for ip in ips:
                self.sent.setdefault(ip, []).append(now)
                try:
                    self.sock.sendto(packet, (ip, 0))
                except OSError:
                    pass  # no route or buffer full: a missed ping

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, (ip, _) = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if icmp.is_reply(data, self.ident):
                self.replies.setdefault(ip, []).append(time.time())


class Observer(threading.Thread):
    """Every OBSERVE_INTERVAL: the API's routers against the namespaces
    (check (e): ACTIVE in the API but no namespace with its gateway up)."""

    def __init__(self, cloud: cloud_mod.Cloud, sampler: invariants.InvariantSampler) -> None:
        super().__init__(daemon=True, name="nemesis-observer")
        self.cloud = cloud
        self.sampler = sampler
        self.stop_event = threading.Event()
        self.absent_since: dict[str, tuple[float, str]] = {}  # router -> (since, host)
        self.absences: list[dict[str, Any]] = []  # finished or ongoing, > bound
        self.samples = 0
        self.failed_samples = 0

    def run(self) -> None:
        while not self.stop_event.wait(OBSERVE_INTERVAL):
            self.observe()

    def observe(self) -> None:
        routers = self.cloud.list_routers()
        if routers is None:
            # The API showed nothing (a stalled database, 503): no router was
            # shown ACTIVE at this moment, so every open absence ends here.
            # Carrying one across seconds without an answer blamed the API for
            # what it never said (seed 103: 3.05 s, 2 of them with no answer).
            self.failed_samples += 1
            now = time.time()
            for rid in list(self.absent_since):
                self._close(rid, now)
            return
        sample = self.sampler.latest()
        now = time.time()
        self.samples += 1
        hosts = {self.cloud.host(a): a for a in self.cloud.agent_names}
        seen = set()
        for r in routers:
            agent = hosts.get(r.get("agent_host") or "")
            if r["status"] != "ACTIVE" or agent is None:
                continue
            ns = self.cloud.namespace(agent, r["id"])
            up = sample is not None and ns in sample.ips.get(r["external_gateway_ip"], ())
            if up:
                continue
            seen.add(r["id"])
            since, host = self.absent_since.get(r["id"], (now, r["agent_host"]))
            if host != r["agent_host"]:
                since = now
            self.absent_since[r["id"]] = (since, r["agent_host"])
        for rid in list(self.absent_since):
            if rid not in seen:
                self._close(rid, now)

    def _close(self, rid: str, now: float) -> None:
        since, host = self.absent_since.pop(rid)
        if now - since > ACTIVE_ABSENT_BOUND:
            self.absences.append({"router": rid, "host": host, "from": since, "to": now,
                                  "seconds": round(now - since, 2)})

    def finish(self) -> None:
        self.stop_event.set()
        self.join(10)
        now = time.time()
        for rid in list(self.absent_since):
            self._close(rid, now)


# --------------------------------------------------------------------------
# result and checker


@dataclasses.dataclass
class Violation:
    check: str  # "a".."f", or "error" (the harness itself failed)
    what: str
    at: float | None = None  # time.time()
    seed: int = 0
    replay: str = ""

    def __str__(self) -> str:
        when = f" at {self.at:.2f}" if self.at else ""
        return f"[seed {self.seed}] ({self.check}){when} {self.what}\n  replay: {self.replay}"


@dataclasses.dataclass
class Result:
    seed: int
    duration: float
    started_at: float = 0.0  # time.time() of t = 0 of the schedule
    healed_at: float = 0.0
    settled_at: float | None = None  # all checks (b)-(d) passed; None: not within the bound
    faults: list[Fault] = dataclasses.field(default_factory=list)
    ops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    fences: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ping_gaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    violations: list[Violation] = dataclasses.field(default_factory=list)
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_dir: str | None = None
    db_faults: bool = False
    clock_faults: bool = False
    # Fences that check (f) does not count (see the module doc), with why.
    explained_fences: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [f"seed {self.seed}, {self.duration:g}s: {len(self.faults)} faults, "
                 f"{len(self.ops)} API ops, {len(self.fences)} fences, "
                 f"{len(self.violations)} violation(s)"]
        lines.append(f"  t0 {_clock(self.started_at)}, healed {_clock(self.healed_at)}, "
                     f"settled {_clock(self.settled_at)}")
        # Planned offsets, then the wall-clock times the actions really took
        # effect (what to look for in the process logs).
        lines += [f"  fault {f.start:6.2f}s +{f.length:.2f}s {f.label():28s} "
                  f"injected {_clock(f.injected_at)} healed {_clock(f.healed_at)}"
                  for f in self.faults]
        lines += [str(v) for v in self.violations]
        lines += [f"  explained fence of {f['node']} at {_clock(f['at'])}: {f['why']}"
                  for f in self.explained_fences]
        if self.log_dir:
            lines.append(f"  process logs: {self.log_dir}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        return out


def _clock(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _log_time(line: str) -> float | None:
    m = _LOG_TIME.match(line)
    if not m:
        return None
    # oslo.log writes local time; mktime reads it back as such.
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def fences_in_logs(cloud: cloud_mod.Cloud) -> list[dict[str, Any]]:
    """Every fence: a guard's "fencing " line or an agent's "removed its ...
    router(s) itself", with its time and node."""
    found = []
    for name in cloud.agent_names:
        for proc, needle in ((f"guard-{name}", "fencing "),
                             (f"agent-{name}", " router(s) itself")):
            path = os.path.join(cloud.tmp, f"{proc}.log")
            if not os.path.exists(path):
                continue
            with open(path, errors="replace") as f:
                for line in f:
                    if needle in line and (proc.startswith("guard") or "removed its" in line):
                        found.append({"node": name, "at": _log_time(line), "by": proc,
                                      "line": line.strip()[:400]})
    return sorted(found, key=lambda x: x["at"] or 0)


class Checker:
    """Judges a finished run (see the module doc and the bounds above)."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.replay = replay_command(result.seed, result.duration, result.db_faults,
                                     result.clock_faults)

    def add(self, check: str, what: str, at: float | None = None) -> None:
        self.result.violations.append(Violation(check, what, at, self.result.seed, self.replay))

    def double_copies(self, sampler: invariants.InvariantSampler) -> None:
        """(a): any sample with one gateway address up in two namespaces."""
        found = sampler.violations()
        by_ip: dict[str, list[dict[str, Any]]] = {}
        for v in found:
            by_ip.setdefault(v["ip"], []).append(v)
        for ip, vs in by_ip.items():
            confirmed = sum(1 for v in vs if v["confirmed"])
            self.add("a", f"{ip} up in {', '.join(vs[0]['namespaces'])} in {len(vs)} "
                          f"sample(s) ({confirmed} confirmed), first {vs[0]['timestamp']:.2f}, "
                          f"last {vs[-1]['timestamp']:.2f}", vs[0]["timestamp"])

    @staticmethod
    def final_problems(cloud: cloud_mod.Cloud, sampler: invariants.InvariantSampler,
                       sweep: Sweep, ops: list[dict[str, Any]], since: float
                       ) -> list[tuple[str, str]]:
        """(b), (c), (d) as of now: [(check, what)], empty when all is well."""
        created = {o["router"] for o in ops if o["op"] == "create" and o["router"]}
        deleted = {o["router"] for o in ops if o["op"] == "delete" and o["status"] == 204}
        maybe_deleted = {o["router"] for o in ops if o["op"] == "delete"
                         and (o["status"] is None or o["status"] >= 500)}
        try:
            routers = {r["id"]: r for r in cloud.api(
                "GET", "/v1/routers?limit=1000", expect=200).json()["routers"]}
        except (requests.RequestException, AssertionError) as exc:
            return [("d", f"the API does not list routers: {exc!r}")]
        sample = sampler.wait_for_sample(timeout=5)
        by_agent_ns = {}
        for a in cloud.agent_names:
            for ns in cloud.router_namespaces(a):
                by_agent_ns[ns] = (a, ns[len(cloud.prefix(a)):])
        problems = []
        hosts = {cloud.host(a): a for a in cloud.agent_names}
        for rid, r in sorted(routers.items()):
            ip = r["external_gateway_ip"]
            copies = list(sample.ips.get(ip, ()))
            if rid in deleted:
                problems.append(("c", f"router {rid} was deleted (204) but the API still "
                                      f"shows it {r['status']}"))
                continue
            if r["status"] != "ACTIVE":
                problems.append(("b", f"router {rid} is {r['status']} "
                                      f"({r.get('status_reason')}), not ACTIVE"))
                continue
            agent = hosts.get(r.get("agent_host") or "")
            want = cloud.namespace(agent, rid) if agent else None
            if copies != [want]:
                problems.append(("d", f"router {rid} ({ip}) is ACTIVE on "
                                      f"{r.get('agent_host')} but its gateway is up in "
                                      f"{copies or 'no namespace'}"))
                continue
            last = sweep.last_reply(ip)
            if last is None or last < max(since, time.time() - PING_FRESH):
                problems.append(("d", f"router {rid} ({ip}) is ACTIVE with one copy but "
                                      f"does not answer pings (last reply "
                                      f"{'never' if last is None else f'{last:.2f}'})"))
        for rid in sorted(created - routers.keys() - deleted - maybe_deleted):
            problems.append(("b", f"router {rid} was created (2xx) and never deleted, "
                                  f"but the API no longer has it"))
        for ns, (agent, rid) in sorted(by_agent_ns.items()):
            r = routers.get(rid)
            if rid in deleted or rid in maybe_deleted and r is None:
                problems.append(("c", f"router {rid} was deleted but namespace {ns} "
                                      f"survives on {agent}"))
            elif r is None:
                problems.append(("d", f"namespace {ns} on {agent} belongs to no router"))
        return problems

    def fences(self, fences: list[dict[str, Any]], faults: list[Fault], end: float) -> None:
        """(f): a fence that no fault on its node explains. Reported most of
        all when only control-plane faults were active: the lease protocol
        promises that those never reach the data plane."""
        for fence in fences:
            at = fence["at"]
            if at is None or at < self.result.started_at:
                continue

            def active(f: Fault, grace: float, at: float = at) -> bool:
                healed = f.healed_at if f.healed_at is not None else end
                return f.injected_at is not None and f.injected_at <= at <= healed + grace
            if any(f.node == fence["node"] and active(f, NODE_FAULT_GRACE) for f in faults):
                continue
            why = self.no_lease_path(faults, at, end)
            if why:
                self.result.explained_fences.append(dict(fence, why=why))
                continue
            cp = [f.label() for f in faults if f.node is None and active(f, 5.0)]
            others = [f.label() for f in faults if f.node not in (None, fence["node"])
                      and active(f, 0.0)]
            context = (f"while only control-plane faults were active ({', '.join(cp)})"
                       if cp else "with no control-plane fault active")
            if others:
                context += f"; faults elsewhere: {', '.join(others)}"
            self.add("f", f"node {fence['node']} fenced {context}, no fault on that node: "
                          f"{fence['line']}", at)


    @staticmethod
    def no_lease_path(faults: list[Fault], at: float, end: float) -> str | None:
        """Why no lease could be renewed at ``at``, or None: the scheduler was
        killed while the database was cut off (see the module doc). Counted
        from when both were in force until 5 s after the first heal (a
        scheduler takes that long to take reports again)."""
        def window(f: Fault) -> tuple[float, float] | None:
            if f.injected_at is None:
                return None
            return f.injected_at, f.healed_at if f.healed_at is not None else end
        kills = [w for f in faults if f.kind == "scheduler_kill" and (w := window(f))]
        cuts = [w for f in faults if f.kind == "db_cut" and (w := window(f))]
        for k in kills:
            for c in cuts:
                if max(k[0], c[0]) <= at <= min(k[1], c[1]) + 5.0:
                    return ("every lease path was down: the scheduler killed while the "
                            "database was cut off")
        return None


def _ping_gaps(sweep: Sweep, gateways: dict[str, str], threshold: float = 1.0
               ) -> list[dict[str, Any]]:
    out = []
    segments: list[tuple[float, float]] = []
    ip_router: dict[str, list[str]] = {}
    for rid, ip in gateways.items():
        ip_router.setdefault(ip, []).append(rid)
    for ip, times in sweep.replies.items():
        sent = sweep.sent.get(ip, [])
        for a, b in zip(times, times[1:], strict=False):
            if b - a <= threshold:
                continue
            # Split the silence where the address was not pinged at all (it
            # had no live router): only the pinged stretches are gaps.
            lo, hi = bisect.bisect_right(sent, a), bisect.bisect_left(sent, b)
            start = a
            for x, y in zip(sent[lo:hi], sent[lo + 1:hi], strict=False):
                if y - x > threshold:
                    segments.append((start, x))
                    start = y
            segments.append((start, b))
        for a, b in segments:
            if b - a > threshold:
                out.append({"ip": ip, "routers": ip_router.get(ip, []), "from": a, "to": b,
                            "seconds": round(b - a, 2)})
        segments.clear()
    return out


# --------------------------------------------------------------------------
# the entry point


def run(seed: int, duration: float = 60.0, log_dir: str | None = None,
        progress: bool = False, db_faults: bool = False,
        clock_faults: bool = False) -> Result:
    """Play seed ``seed`` for ``duration`` seconds against a fresh cloud and
    check the history. Process logs are copied to ``log_dir`` (default: a new
    /tmp/nemesis-<seed>-* directory when there are violations)."""
    nemesis = Nemesis(seed, duration, db_faults=db_faults, clock_faults=clock_faults)
    result = Result(seed=seed, duration=duration, faults=nemesis.schedule,
                    db_faults=db_faults, clock_faults=clock_faults)
    checker = Checker(result)

    def say(msg: str) -> None:
        if progress:
            print(f"[seed {seed} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    with cloud_mod.Cloud(agents=AGENTS, proxied_agents=AGENTS,
                         restart_grace=RESTART_GRACE, udp_reports=db_faults,
                         db_proxy=db_faults, clock_skew=clock_faults) as cloud:
        sampler = invariants.InvariantSampler(cloud.token + "-").start()
        live: dict[str, str] = {}
        gateways: dict[str, str] = {}
        workload = Workload(cloud, random.Random(f"workload-{seed}"), live, gateways)
        sweep = observer = None
        try:
            initial = [cloud.create_router(f"init{i}") for i in range(INITIAL_ROUTERS)]
            for r in initial:
                cloud.wait_router(r["id"], timeout=60)
                live[r["id"]] = gateways[r["id"]] = r["external_gateway_ip"]
            workload.ops.extend({"op": "create", "router": r["id"], "status": 201,
                                 "start": 0.0, "end": 0.0, "error": ""} for r in initial)
            sweep = Sweep(cloud.probe.name, live, workload.lock).start()
            observer = Observer(cloud, sampler)
            observer.start()
            say(f"{len(nemesis.schedule)} faults over {duration:g}s")
            result.started_at = time.time()
            workload.start()
            errors: list[str] = []
            try:
                nemesis.play(cloud, result.started_at, errors)
                time.sleep(max(0.0, result.started_at + duration - time.time()))
            finally:
                nemesis.heal_leftovers(cloud)
                workload.stop_event.set()
                workload.join(15)
            result.healed_at = time.time()
            for e in errors:
                checker.add("error", e)
            say("healed; waiting for the cloud to settle")
            problems: list[tuple[str, str]] = []
            deadline = result.healed_at + SETTLE_BOUND
            while True:
                problems = Checker.final_problems(cloud, sampler, sweep, workload.ops,
                                                  result.healed_at)
                if not problems:
                    result.settled_at = time.time()
                    break
                if time.time() >= deadline:
                    break
                time.sleep(1.0)
            for check, what in problems:
                checker.add(check, f"{SETTLE_BOUND:g}s after healing: {what}")
            observer.finish()
            for absence in observer.absences:
                checker.add("e", f"router {absence['router']} ACTIVE on {absence['host']} "
                                 f"in the API while its namespace was absent or its "
                                 f"gateway down for {absence['seconds']}s "
                                 f"(bound {ACTIVE_ABSENT_BOUND:g}s)", absence["from"])
            sampler.stop()
            checker.double_copies(sampler)
            result.fences = fences_in_logs(cloud)
            checker.fences(result.fences, nemesis.schedule, result.healed_at)
            result.ops = workload.ops
            result.ping_gaps = _ping_gaps(sweep, gateways)
            result.stats = {
                "sampler": sampler.stats(), "observer_samples": observer.samples,
                "observer_failed_samples": observer.failed_samples,
                "ops_by_status": _count(f"{o['op']} {o['status']}" for o in workload.ops),
                "settle_seconds": (round(result.settled_at - result.healed_at, 2)
                                   if result.settled_at else None),
                "routers_created": len(gateways)}
        except Exception as exc:
            checker.add("error", f"the run itself failed: {exc!r}")
            raise
        finally:
            nemesis.heal_leftovers(cloud)
            workload.stop_event.set()
            if observer is not None:
                observer.stop_event.set()
            if sweep is not None:
                sweep.stop()
            if sampler.running:
                sampler._stop.set()  # stop() would raise the sampler's own failure again
            if log_dir or result.violations:
                result.log_dir = log_dir or tempfile.mkdtemp(prefix=f"nemesis-{seed}-")
                _copy_logs(cloud, result.log_dir, result)
    say(f"done: {len(result.violations)} violation(s)")
    return result


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _copy_logs(cloud: cloud_mod.Cloud, dest: str, result: Result) -> None:
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "result.json"), "w") as f:
        json.dump(result.to_dict(), f, indent=1, default=str)
    with open(os.path.join(dest, "report.txt"), "w") as f:
        f.write(result.report() + "\n")
    for name in os.listdir(cloud.tmp):
        if name.endswith(".log"):
            shutil.copy(os.path.join(cloud.tmp, name), os.path.join(dest, name))
    with open(os.path.join(dest, "token"), "w") as f:
        f.write(cloud.token + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one nemesis seed.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--db-faults", action="store_true",
                        help="also cut the database off (UDP reports, outage notices)")
    parser.add_argument("--clock-faults", action="store_true",
                        help="also step the scheduler's wall clock (lab/clockskew)")
    args = parser.parse_args(argv)
    if not netlab.have_root():
        parser.error(netlab.ROOT_REASON)
    result = run(args.seed, args.duration, args.log_dir, progress=True,
                 db_faults=args.db_faults, clock_faults=args.clock_faults)
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
