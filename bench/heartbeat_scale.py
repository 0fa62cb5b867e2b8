"""Heartbeat capacity of one scheduler replica: N simulated agents at 1 s.

Each simulated agent is the project's own ``StateReporter`` (what
``clouddisco-l3-agent`` runs), with a state_dir of its own and the state an
agent sends (``"guard": "ok"`` included), over its own oslo.messaging
transport to a real ``clouddisco-scheduler``. The agents run in one or two
generator processes (so the generator does not starve on one GIL) and are
added at a fixed rate up to each step's N; each step is then held and
measured:

* ack latency of ``report_once`` (p50/p90/p99/max, in the generator);
* lease lapses: an agent whose time between two acknowledged sends exceeded
  ``lease_time`` ("gap"), and, stricter, whose lease ran out before the
  renewing ack came back ("expired", what the node guard would act on);
* agents declared dead (the scheduler's "declared dead" log lines, and the
  ``agents`` table polled every 0.5 s), the longest silence the database saw;
* reports handled (acks), scheduler CPU per report (utime+stime of the
  master and its workers from /proc, over the step), generator CPU, load.

``--restart`` then drops every registration at once (new StateReporter
objects) and times until all N are registered again. ``--http`` also starts
a clouddisco-api with ``[health] report_key`` and gives the agents an
HttpReporter, so hedged HTTP reports are measured too. ``--udp`` gives the
scheduler its UDP lease receiver and the agents a UdpReporter: reports go
there first, RPC is the hedge (the path ``[agent] report_udp_endpoints``
configures).

    sudo PYTHONPATH=$PWD .venv/bin/python -m bench.heartbeat_scale \\
        --agents 50,100,200,300 --hold 15 --restart

Everything it makes (a ``clouddisco_hbs*`` database, a RabbitMQ vhost, a
temp dir, the processes) is removed at the end, also on failure or Ctrl-C.
It never imports ``tests``. Writes bench/results/heartbeat_scale.json and
.png. No pass/fail: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
WORKTREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAMESPACE_PREFIX = "qrouter-"


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ------------------------------------------------------------------ /proc


def proc_cpu(pid: int) -> float | None:
    """utime+stime of one process in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # "pid (comm) state ppid ...": comm may hold spaces and ")".
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (the scheduler's cotyledon workers)."""
    parents = _ppids()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pids_named(*names: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(entry))
    return out


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of every process of ``root``'s tree, with its title.

    The scheduler's workers retitle themselves ("clouddisco-scheduler: state
    reports"), which tells report workers from the placement worker.
    """
    out = {}
    for pid in process_tree(root):
        cpu = proc_cpu(pid)
        if cpu is not None:
            out[pid] = (cmdline(pid), cpu)
    return out


def cpu_delta(before: dict[int, tuple[str, float]],
              after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two ``tree_cpu`` snapshots, by role."""
    roles: dict[str, float] = {"total": 0.0, "report_workers": 0.0, "udp_receiver": 0.0,
                               "placement_worker": 0.0, "master": 0.0}
    for pid, (title, cpu) in after.items():
        spent = cpu - before.get(pid, (title, 0.0))[1]
        roles["total"] += spent
        if "over UDP" in title:
            roles["udp_receiver"] += spent
        elif "state reports" in title:
            roles["report_workers"] += spent
        elif "placement" in title:
            roles["placement_worker"] += spent
        else:
            roles["master"] += spent
    return roles


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ------------------------------------------------------- generator process


class _Sim:
    """One generator process's simulated agents; runs in that process only."""

    def __init__(self, gen_id: int, config_path: str, tmp: str, settings: dict) -> None:
        import clouddisco.cmd  # noqa: F401 - silences oslo's eventlet warning
        from clouddisco import conf as cd_conf
        from clouddisco import heartbeat
        from clouddisco import rpc
        from clouddisco.agent import reporter

        self.rpc = rpc
        self.reporter_mod = reporter
        self.heartbeat = heartbeat
        self.gen_id = gen_id
        self.tmp = tmp
        self.settings = settings
        self.conf = cd_conf.build(["--config-file", config_path], prog="heartbeat-scale",
                                  default_config_files=[])
        self.lease_time = settings["lease_time"]
        self.interval = settings["report_interval"]
        self.lock = threading.Lock()
        self.agents: list[dict] = []
        self.shared_transport = None
        self._reset()

        sim = self

        class TimedReporter(reporter.StateReporter):
            """The agent's StateReporter, unchanged, with report_once timed:
            what is sent and how the lease is renewed stay the project's."""

            def report_once(self) -> bool:
                was_registered = self.agent_id is not None
                sent = time.monotonic()
                ok = super().report_once()
                sim.record(self, was_registered, ok, sent, time.monotonic())
                return ok

        self.reporter_cls = TimedReporter

    def _reset(self) -> None:
        self.stats: dict[str, Any] = {
            "ack_ms": [], "register_ms": [], "acks": 0, "acks_http": 0, "acks_udp": 0,
            "report_failures": 0, "register_failures": 0, "refused": 0,
            "lapses_gap": 0, "lapses_expired": 0, "worst_gap_s": 0.0,
            "registered_at": [], "resyncs": 0, "resync_failures": 0}

    def _transport(self) -> Any:
        if self.settings["shared_transport"]:
            if self.shared_transport is None:
                self.shared_transport = self.rpc.get_transport(self.conf)
            return self.shared_transport
        # A real node has a broker connection (and reply queue) of its own.
        return self.rpc.get_transport(self.conf)

    def record(self, rep: Any, was_registered: bool, ok: bool, sent: float,
               done: float) -> None:
        with self.lock:
            s = self.stats
            if not ok:
                if was_registered and rep.agent_id is None:
                    # The scheduler answered registered=False: declared dead,
                    # or superseded. The agent registers again.
                    s["refused"] += 1
                elif was_registered:
                    s["report_failures"] += 1
                else:
                    s["register_failures"] += 1
                return
            if was_registered:
                s["ack_ms"].append((done - sent) * 1000)
                s["acks"] += 1
                if rep.answered_by in ("http", "udp"):
                    s[f"acks_{rep.answered_by}"] += 1
            else:
                s["register_ms"].append((done - sent) * 1000)
                s["registered_at"].append(time.time())
            prev = getattr(rep, "bench_last_ack_sent", None)
            if prev is not None:
                gap = sent - prev
                s["worst_gap_s"] = max(s["worst_gap_s"], gap)
                if gap > self.lease_time:
                    s["lapses_gap"] += 1
                if done > prev + self.lease_time:
                    s["lapses_expired"] += 1
            rep.bench_last_ack_sent = sent

    def _resync(self, scheduler: Any, host: str) -> None:
        # What the agent's router worker does once the reporter (re)connects:
        # one sync_routers call, on a thread of its own.
        try:
            scheduler.sync_routers(host)
            ok = True
        except Exception:
            ok = False
        with self.lock:
            self.stats["resyncs"] += 1
            if not ok:
                self.stats["resync_failures"] += 1

    def _new_reporter(self, agent: dict) -> Any:
        scheduler = self.rpc.SchedulerAPI(agent["transport"], timeout=10.0)
        host = agent["host"]
        http = None
        if self.settings["api_url"]:
            http = self.heartbeat.HttpReporter([self.settings["api_url"]],
                                                  self.settings["report_key"])
        udp = None
        if self.settings["udp_endpoint"]:
            udp = self.heartbeat.UdpReporter([self.settings["udp_endpoint"]],
                                                         self.settings["report_key"])
        return self.reporter_cls(
            host, NAMESPACE_PREFIX, scheduler, interval=self.interval,
            state_dir=agent["state_dir"],
            on_connected=lambda: threading.Thread(
                target=self._resync, args=(scheduler, host), daemon=True).start(),
            # As clouddisco/agent/service.py builds it, for a node with no
            # routers yet and a working node guard.
            state=lambda: {"routers": 0, "namespace_prefix": NAMESPACE_PREFIX,
                           "driver": "netns", "guard": "ok"},
            http=http, udp=udp)

    # ------------------------------------------------------------ commands

    def grow(self, hosts: list[str], rate: float) -> int:
        """Start agents for ``hosts`` at ``rate`` per second."""
        for host in hosts:
            started = time.monotonic()
            state_dir = os.path.join(self.tmp, "state", host)
            os.makedirs(state_dir, exist_ok=True)
            agent = {"host": host, "state_dir": state_dir, "transport": self._transport()}
            agent["reporter"] = self._new_reporter(agent)
            agent["reporter"].start()
            self.agents.append(agent)
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        return len(self.agents)

    def registered(self) -> int:
        return sum(1 for a in self.agents if a["reporter"].agent_id is not None)

    def collect(self) -> dict:
        """Stats since the last collect; agents whose lease is running out
        right now without an ack count as open lapses."""
        now = time.monotonic()
        with self.lock:
            stats, self.stats = self.stats, None
            self._reset()
        stats["lapses_open"] = sum(
            1 for a in self.agents
            if getattr(a["reporter"], "bench_last_ack_sent", None) is not None
            and now - a["reporter"].bench_last_ack_sent > self.lease_time)
        return stats

    def _stop_all(self) -> None:
        # In parallel: each stop() may wait out one report in flight.
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda a: a["reporter"].stop(), self.agents))

    def restart(self) -> float:
        """Every agent drops its registration at once: the old reporters
        stop, new ones (agent_id None) start together. Returns when they were
        started (wall clock)."""
        self._stop_all()
        for agent in self.agents:
            agent["reporter"] = self._new_reporter(agent)
        started = time.time()
        for agent in self.agents:
            agent["reporter"].start()
        return started

    def stop(self) -> None:
        self._stop_all()
        transports = {id(a["transport"]): a["transport"] for a in self.agents}
        for transport in transports.values():
            with contextlib.suppress(Exception):
                transport.cleanup()


def generator_main(conn: Any, gen_id: int, config_path: str, tmp: str,
                   settings: dict) -> None:
    """Entry point of a generator process: obeys commands from the pipe."""
    import logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us
    # The reporters' warnings ("state report failed", ...) go to a file, not
    # the table on the terminal.
    logging.basicConfig(filename=os.path.join(tmp, f"generator-{gen_id}.log"),
                        level=logging.WARNING,
                        format="%(asctime)s %(threadName)s %(levelname)s %(name)s %(message)s")
    sim = _Sim(gen_id, config_path, tmp, settings)
    conn.send(("ready", os.getpid()))
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "grow":
                result: Any = sim.grow(*args)
            elif cmd == "registered":
                result = sim.registered()
            elif cmd == "collect":
                result = sim.collect()
            elif cmd == "restart":
                result = sim.restart()
            elif cmd == "stop":
                sim.stop()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {cmd}")
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", repr(exc)))


class Generator:
    """Handle on one generator process, in the main process."""

    def __init__(self, ctx: Any, gen_id: int, config_path: str, tmp: str,
                 settings: dict) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=generator_main, name=f"hb-generator-{gen_id}",
                                   args=(child, gen_id, config_path, tmp, settings),
                                   daemon=True)
        self.process.start()
        self.pid = self._reply(120)

    def _reply(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"generator {self.process.name} did not answer in {timeout}s")
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"generator {self.process.name}: {value}")
        return value

    def send(self, *cmd: Any) -> None:
        self.conn.send(cmd)

    def call(self, *cmd: Any, timeout: float = 120) -> Any:
        self.send(*cmd)
        return self._reply(timeout)

    def cpu(self) -> float:
        return sum(proc_cpu(p) or 0.0 for p in process_tree(self.pid))

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.call("stop", timeout=30)
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# ------------------------------------------------------------ environment


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                   timeout=60)


def _connect_db(user: str, password: str, database: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user=user, password=password,
                           database=database, connect_timeout=5, autocommit=True,
                           charset="utf8mb4")


def pick_db_account() -> tuple[str, str]:
    """The ``clouddisco`` account (may create ``clouddisco%`` databases), else
    root with an empty password, as the machine's set-up provides."""
    import pymysql

    try:
        _connect_db("clouddisco", "clouddisco").close()
        return "clouddisco", "clouddisco"
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] != 1045:  # not "access denied": give up
            raise
    _connect_db("root", "").close()
    return "root", ""


class Service:
    """One clouddisco process in a session of its own, so that stopping its
    group also stops the workers it forked."""

    def __init__(self, argv: list[str], log_path: str) -> None:
        env = dict(os.environ, PYTHONPATH=WORKTREE)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=env)
        self.pid = self.popen.pid
        self.log_path = log_path

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                pass
        # Workers left over (or a master that did not stop) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def log_offset(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeathWatch:
    """Polls the agents table every 0.5 s: which bench agents the database
    holds dead, and the longest silence (database clock) of one still alive.
    Catches what the circuit breaker would keep from being declared."""

    def __init__(self, user: str, password: str, database: str, down_time: float) -> None:
        self.conn = _connect_db(user, password, database)
        self.down_time = down_time
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.reset()
        self.thread = threading.Thread(target=self._run, name="death-watch", daemon=True)
        self.thread.start()

    def reset(self) -> dict:
        with self.lock:
            old = getattr(self, "window", None)
            self.window = {"dead_hosts": set(), "max_silence_s": 0.0,
                           "looked_dead_hosts": set(), "polls": 0}
        return old or {}

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT host, dead_since IS NOT NULL, "
                                "TIMESTAMPDIFF(MICROSECOND, heartbeat_at, UTC_TIMESTAMP(6))"
                                " FROM agents")
                    rows = cur.fetchall()
            except Exception:
                continue  # a poll lost is only a poll lost
            with self.lock:
                w = self.window
                w["polls"] += 1
                for host, dead, silence_us in rows:
                    silence = (silence_us or 0) / 1e6
                    if dead:
                        w["dead_hosts"].add(host)
                        continue
                    w["max_silence_s"] = max(w["max_silence_s"], silence)
                    if silence > self.down_time:
                        w["looked_dead_hosts"].add(host)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()


# ---------------------------------------------------------------- the bench


def write_config(path: str, *, host: str, transport_url: str, db_url: str, args: Any,
                 api_port: int, report_key: str, udp_port: int = 0) -> None:
    text = f"""[DEFAULT]
host = {host}
transport_url = {transport_url}
debug = false
[database]
connection = {db_url}
[api]
bind_host = 127.0.0.1
bind_port = {api_port}
[agent]
report_interval = {args.report_interval}
[health]
report_key = {report_key}
udp_bind_host = 127.0.0.1
udp_port = {udp_port}
agent_down_time = {args.agent_down_time}
lease_time = {args.lease_time}
[scheduler]
report_workers = {args.report_workers}
"""
    with open(path, "w") as f:
        f.write(text)


def count_log(text: str) -> dict[str, int]:
    """What the scheduler logged about reports in a window of its log."""
    expired = len(re.findall(r"refused: it arrived [0-9.]+s after its caller's deadline;",
                             text))
    expired += sum(int(n) for n in re.findall(
        r"(\d+) more expired state report\(s\) or lease renewal\(s\)", text))
    return {"declared_dead": len(re.findall(r"declared dead: no state report", text)),
            "breaker_opened": len(re.findall(r"circuit breaker open", text)),
            "expired_refused_logged": expired,
            "expired_registers_logged": len(re.findall(r"register from host \S+ refused",
                                                       text)),
            # oslo.messaging waits for a pooled connection to send a reply.
            "conn_pool_waits_logged": len(re.findall(r"Connection pool limit exceeded",
                                                     text))}


def measure_window(gens: list[Generator], sched: Service, api: Service | None,
                   watch: DeathWatch, hold: float, extra: dict, log_at: int) -> dict:
    """Hold for ``hold`` seconds and return what was measured over it.

    Deaths (log and database) count from ``log_at`` and the watch's last
    reset, i.e. from the start of the step's ramp: an agent declared dead
    while the step's agents were being added is that step's.
    """
    for g in gens:
        g.call("collect")  # latencies and lapses: the held window only
    sched_cpu0 = tree_cpu(sched.pid)
    api_cpu0 = tree_cpu(api.pid) if api else {}
    gen_cpu0 = sum(g.cpu() for g in gens)
    shared0 = {n: named_cpu(names) for n, names in SHARED.items()}
    t0 = time.monotonic()
    time.sleep(hold)
    stats = [g.call("collect") for g in gens]
    elapsed = time.monotonic() - t0
    sched_cpu = cpu_delta(sched_cpu0, tree_cpu(sched.pid))
    api_cpu = cpu_delta(api_cpu0, tree_cpu(api.pid))["total"] if api else None
    gen_cpu = sum(g.cpu() for g in gens) - gen_cpu0
    shared = {n: sum(cpu - shared0[n].get(pid, cpu)
                     for pid, cpu in named_cpu(names).items())
              for n, names in SHARED.items()}
    window = watch.reset()
    logged = count_log(sched.log_since(log_at))
    acks_ms = [x for s in stats for x in s["ack_ms"]]
    acks = sum(s["acks"] for s in stats)
    acks_udp = sum(s["acks_udp"] for s in stats)
    acks_rpc = acks - sum(s["acks_http"] for s in stats) - acks_udp
    # Reports the scheduler answered, by either of its paths.
    acks_sched = acks_rpc + acks_udp

    def total(key: str) -> int:
        return sum(s[key] for s in stats)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return dict(extra, **{
        "seconds": round(elapsed, 2),
        "acks": acks, "acks_over_http": acks - acks_sched, "acks_over_udp": acks_udp,
        "reports_per_s": round(acks / elapsed, 1),
        "ack_p50_ms": ms(percentile(acks_ms, 50)), "ack_p90_ms": ms(percentile(acks_ms, 90)),
        "ack_p99_ms": ms(percentile(acks_ms, 99)),
        "ack_max_ms": ms(max(acks_ms) if acks_ms else None),
        "report_failures": total("report_failures"),
        "refused_must_register": total("refused"),
        "registrations": len([x for s in stats for x in s["register_ms"]]),
        "register_failures": total("register_failures"),
        "lapses_gap": total("lapses_gap"), "lapses_expired": total("lapses_expired"),
        "lapses_open_at_end": total("lapses_open"),
        "worst_ack_gap_s": round(max(s["worst_gap_s"] for s in stats), 3),
        "declared_dead_logged": logged["declared_dead"],
        "dead_in_db": len(window.get("dead_hosts", ())),
        "silent_past_down_time": len(window.get("looked_dead_hosts", ())),
        "max_silence_db_s": round(window.get("max_silence_s", 0.0), 3),
        "breaker_opened": logged["breaker_opened"],
        "expired_refused_logged": logged["expired_refused_logged"],
        "conn_pool_waits_logged": logged["conn_pool_waits_logged"],
        "scheduler_cpu_s": {k: round(v, 3) for k, v in sched_cpu.items()},
        # Reports answered over RPC are the scheduler's; HTTP ones the API's.
        "scheduler_cpu_ms_per_report": (round(sched_cpu["total"] * 1000 / acks_sched, 3)
                                        if acks_sched else None),
        "udp_receiver_cpu_ms_per_report": (
            round(sched_cpu["udp_receiver"] * 1000 / acks_udp, 3) if acks_udp else None),
        "report_worker_cpu_ms_per_report": (
            round(sched_cpu["report_workers"] * 1000 / acks_rpc, 3)
            if acks_rpc else None),
        "scheduler_cores": round(sched_cpu["total"] / elapsed, 3),
        "scheduler_cpu_ms_per_report_sent": per_report_sent(
            sched_cpu["total"], acks_sched + total("report_failures") + total("refused")),
        "api_cpu_s": None if api_cpu is None else round(api_cpu, 3),
        "generator_cpu_s": round(gen_cpu, 3),
        "generator_cores": round(gen_cpu / elapsed, 3),
        # Machine-wide daemons, shared with whatever else runs here.
        "mariadb_cores": round(shared["mariadb"] / elapsed, 3),
        "rabbitmq_cores": round(shared["rabbitmq"] / elapsed, 3),
        "loadavg_end": loadavg(),
        "resyncs": total("resyncs"), "resync_failures": total("resync_failures"),
    })


# Every such process on the machine (another engineer's private RabbitMQ too).
SHARED = {"mariadb": ("mariadbd", "mysqld"), "rabbitmq": ("beam.smp",)}


def named_cpu(names: tuple[str, ...]) -> dict[int, float]:
    """CPU seconds by pid; a delta counts only pids alive at both ends, so a
    broker someone else starts or stops meanwhile adds nothing negative."""
    return {p: c for p in pids_named(*names) if (c := proc_cpu(p)) is not None}


def _f(value: float | None, width: int, digits: int = 1, scale: float = 1.0) -> str:
    # A step in which nothing was acknowledged has no latency: print "-".
    return f"{'-':>{width}}" if value is None else f"{value * scale:{width}.{digits}f}"


def print_row(step: dict) -> None:
    print(f"{step['agents']:5d} {_f(step['ack_p50_ms'], 7)} {_f(step['ack_p90_ms'], 7)} "
          f"{_f(step['ack_p99_ms'], 7)} {_f(step['ack_max_ms'], 7)} "
          f"{step['report_failures']:5d} {step['lapses_gap']:5d} "
          f"{step['declared_dead_logged']:4d} {step['silent_past_down_time']:6d} "
          f"{step['reports_per_s']:6.0f} {_f(step['scheduler_cpu_ms_per_report'], 9, 3)} "
          f"{_f(step['scheduler_cores'], 6, 0, 100)} {_f(step['generator_cores'], 5, 0, 100)} "
          f"{_f(step['mariadb_cores'], 4, 0, 100)} {_f(step['rabbitmq_cores'], 4, 0, 100)} "
          f"{step['loadavg_end'][0]:5.2f}", flush=True)


def run(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> dict:
    token = "hbs" + secrets.token_hex(3)
    tmp = tempfile.mkdtemp(prefix=f"clouddisco-{token}-")
    cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
    if args.keep_logs:
        cleanup.callback(lambda: shutil.copytree(
            tmp, args.output + "-logs", dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("state")))

    user, password = pick_db_account()
    db_name = f"clouddisco_{token}"
    admin = _connect_db(user, password)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4")

    def drop_db() -> None:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db_name}`")
        admin.close()
    cleanup.callback(drop_db)
    cred = user + (f":{password}" if password else "")
    db_url = f"mysql+pymysql://{cred}@127.0.0.1:3306/{db_name}?charset=utf8mb4"

    rabbitmqctl("add_vhost", token)
    cleanup.callback(rabbitmqctl, "delete_vhost", token)
    rabbitmqctl("set_permissions", "-p", token, "guest", ".*", ".*", ".*")
    transport_url = f"rabbit://guest:guest@127.0.0.1:5672/{token}"

    api_port = free_port()
    report_key = secrets.token_hex(16) if args.http or args.udp else ""
    udp_port = free_port() if args.udp else 0
    config = os.path.join(tmp, "clouddisco.conf")
    write_config(config, host=f"{token}-controller", transport_url=transport_url,
                 db_url=db_url, args=args, api_port=api_port, report_key=report_key,
                 udp_port=udp_port)
    subprocess.run([os.path.join(args.bin, "clouddisco-db-manage"), "--config-file", config,
                    "upgrade", "head"], check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, PYTHONPATH=WORKTREE))

    sched = Service([os.path.join(args.bin, "clouddisco-scheduler"), "--config-file", config],
                    os.path.join(tmp, "scheduler.log"))
    cleanup.callback(sched.stop)
    wait_for(lambda: len(re.findall(r"state report worker \d+ started",
                                    sched.log_since(0))) >= args.report_workers
             and "started: agent_down_time" in sched.log_since(0), 60,
             "the scheduler's workers to start")
    if args.udp:
        wait_for(lambda: "lease receiver listening" in sched.log_since(0), 60,
                 "the scheduler's UDP lease receiver")
    api = None
    api_url = ""
    if args.http:
        api = Service([os.path.join(args.bin, "clouddisco-api"), "--config-file", config],
                      os.path.join(tmp, "api.log"))
        cleanup.callback(api.stop)
        api_url = f"http://127.0.0.1:{api_port}"

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(api_url + "/", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(api_up, 60, "clouddisco-api to answer")

    watch = DeathWatch(user, password, db_name, args.agent_down_time)
    cleanup.callback(watch.close)

    settings = {"report_interval": args.report_interval, "lease_time": args.lease_time,
                "api_url": api_url, "report_key": report_key,
                "udp_endpoint": f"127.0.0.1:{udp_port}" if args.udp else "",
                "shared_transport": args.shared_transport}
    # spawn: a clean interpreter, not a fork of one holding a DB connection.
    ctx = multiprocessing.get_context("spawn")
    gens = []
    for i in range(args.generators):
        gens.append(Generator(ctx, i, config, tmp, settings))
        cleanup.callback(gens[-1].close)

    hosts = [f"{token}-node-{i:04d}" for i in range(max(args.agents))]
    steps = []
    started = 0
    print(f"{'N':>5} {'p50ms':>7} {'p90ms':>7} {'p99ms':>7} {'maxms':>7} {'fail':>5} "
          f"{'lapse':>5} {'dead':>4} {'silent':>6} {'rep/s':>6} {'schedms/r':>9} "
          f"{'sched%':>6} {'gen%':>5} {'db%':>4} {'mq%':>4} {'load1':>5}", flush=True)
    for n in args.agents:
        # Ramp at a fixed rate, spread over the generators round-robin.
        log_at = sched.log_offset()
        watch.reset()
        new = hosts[started:n]
        for g_id, g in enumerate(gens):
            g.send("grow", new[g_id::len(gens)], args.rate / len(gens))
        for g in gens:
            g._reply(len(new) / args.rate * len(gens) + 120)
        started = n
        # An overloaded replica may not register them all: measure anyway,
        # that is the point, and say how many were registered.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda n=n: sum(g.call("registered") for g in gens) >= n, 60,
                     f"{n} agents to register", 0.5)
        time.sleep(args.settle)
        registered = sum(g.call("registered") for g in gens)
        step = measure_window(gens, sched, api, watch, args.hold,
                              {"agents": n, "registered_at_start": registered}, log_at)
        steps.append(step)
        print_row(step)
        # Saved after every step: a run cut short keeps what it measured.
        with open(args.output + ".partial.json", "w") as f:
            json.dump({"settings": vars(args), "steps": steps}, f, indent=2)

    restart = None
    if args.restart:
        restart = restart_phase(gens, sched, api, watch, args)
    # Over the whole run, ramps and restart included.
    totals = count_log(sched.log_since(0))
    print(f"whole run, scheduler log: {totals}", flush=True)
    return {"token": token, "steps": steps, "restart": restart, "log_totals": totals,
            "generator_pids": [g.pid for g in gens]}


def restart_phase(gens: list[Generator], sched: Service, api: Service | None,
                  watch: DeathWatch, args: argparse.Namespace) -> dict:
    """Every agent registers again at once; time until all are registered."""
    n = max(args.agents)
    for g in gens:
        g.call("collect")
    watch.reset()
    log_at = sched.log_offset()
    cpu0 = tree_cpu(sched.pid)
    for g in gens:
        g.send("restart")
    starts = [g._reply(60) for g in gens]
    t0 = min(starts)
    with contextlib.suppress(TimeoutError):  # then "registered" says how many did
        wait_for(lambda: sum(g.call("registered") for g in gens) >= n, args.restart_wait,
                 "every agent to register again", 0.05)
    # Registration times from the generators' own stamps (wall clock).
    time.sleep(args.settle)
    stats = [g.call("collect") for g in gens]
    window = watch.reset()
    logged = count_log(sched.log_since(log_at))
    reg_at = sorted(x - t0 for s in stats for x in s["registered_at"])
    reg_ms = [x for s in stats for x in s["register_ms"]]
    cpu = cpu_delta(cpu0, tree_cpu(sched.pid))
    result = {
        "agents": n, "registered": len(reg_at),
        "all_registered_s": round(reg_at[-1], 3) if reg_at else None,
        "registered_p50_s": round(percentile(reg_at, 50), 3) if reg_at else None,
        "register_call_p99_ms": round(percentile(reg_ms, 99), 1) if reg_ms else None,
        "register_failures": sum(s["register_failures"] for s in stats),
        "resyncs": sum(s["resyncs"] for s in stats),
        "resync_failures": sum(s["resync_failures"] for s in stats),
        "lapses_gap": sum(s["lapses_gap"] for s in stats),
        "declared_dead_logged": logged["declared_dead"],
        "dead_in_db": len(window.get("dead_hosts", ())),
        "expired_refused_logged": logged["expired_refused_logged"],
        "expired_registers_logged": logged["expired_registers_logged"],
        "conn_pool_waits_logged": logged["conn_pool_waits_logged"],
        "scheduler_cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "loadavg_end": loadavg(),
    }
    print(f"restart: {result['registered']}/{n} registered again, all within "
          f"{_f(result['all_registered_s'], 0, 2)}s "
          f"(p50 {_f(result['registered_p50_s'], 0, 2)}s), "
          f"{result['register_failures']} registration attempts failed "
          f"({result['expired_registers_logged']} refused as expired by the scheduler), "
          f"{result['declared_dead_logged']} declared dead", flush=True)
    return result


def per_report_sent(cpu_s: float, sent: int) -> float | None:
    """Scheduler CPU per report an agent sent, answered or not: once reports
    expire, per *answered* report divides by next to nothing, while this
    still says what each message costs the replica (a hedged report that HTTP
    answered counts, though RPC may have seen it too)."""
    return round(cpu_s * 1000 / sent, 3) if sent else None


def plot(steps: list[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [s["agents"] for s in steps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (("ack_p50_ms", "p50", "o-"), ("ack_p99_ms", "p99", "s-"),
                              ("ack_max_ms", "max", "^:")):
        ax1.plot(ns, [s[key] for s in steps], style, label=label)
    ax1.axhline(100, color="tab:red", linewidth=0.8, linestyle="--", label="100 ms")
    ax1.set_xlabel("simulated agents (1 report/s each)")
    ax1.set_ylabel("report_once ack latency (ms)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [s["scheduler_cpu_ms_per_report"] for s in steps], "o-",
             label="scheduler, all processes")
    ax2.plot(ns, [s["report_worker_cpu_ms_per_report"] for s in steps], "s--",
             label="RPC report worker(s), per RPC report")
    ax2.plot(ns, [s.get("udp_receiver_cpu_ms_per_report") for s in steps], "D-.",
             label="UDP lease receiver, per UDP report")
    ax2.plot(ns, [s.get("scheduler_cpu_ms_per_report_sent") for s in steps], "^:",
             label="scheduler, per report sent (answered or not)")
    ax2.axhline(0.5, color="tab:red", linewidth=0.8, linestyle="--", label="0.5 ms")
    ax2.set_xlabel("simulated agents (1 report/s each)")
    ax2.set_ylabel("scheduler CPU per acknowledged report (ms)")
    # Log: past saturation the per-ack figure grows by orders of magnitude.
    ax2.set_yscale("log")
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _agents_arg(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values) or values != sorted(values):
        raise argparse.ArgumentTypeError("a rising, comma-separated list of agent counts")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=_agents_arg, default=[50, 100, 200, 300],
                        help="steps of simulated agents, rising (default 50,100,200,300)")
    parser.add_argument("--hold", type=float, default=20.0,
                        help="seconds each step is measured (default 20)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="agents added per second (default 20)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds after the last registration before measuring")
    parser.add_argument("--generators", type=int, default=2, choices=(1, 2, 3, 4),
                        help="generator processes (default 2)")
    parser.add_argument("--report-interval", type=float, default=1.0)
    parser.add_argument("--lease-time", type=float, default=2.0)
    parser.add_argument("--agent-down-time", type=float, default=3.0)
    parser.add_argument("--report-workers", type=int, default=1)
    parser.add_argument("--restart", action="store_true",
                        help="finally re-register every agent at once and time it")
    parser.add_argument("--restart-wait", type=float, default=30.0,
                        help="seconds the restart phase waits for every agent (default 30)")
    parser.add_argument("--http", action="store_true",
                        help="also start clouddisco-api and hedge reports over HTTP")
    parser.add_argument("--udp", action="store_true",
                        help="reports over UDP to the scheduler's lease receiver first, "
                        "RPC as the hedge")
    parser.add_argument("--shared-transport", action="store_true",
                        help="one broker connection per generator process instead of "
                        "one per simulated agent")
    parser.add_argument("--bin", default=os.path.dirname(sys.executable),
                        help="directory of the clouddisco-* commands")
    parser.add_argument("--keep-logs", action="store_true",
                        help="copy the process logs to <output>-logs/")
    parser.add_argument("--output", default=os.path.join(RESULTS, "heartbeat_scale"))
    parser.add_argument("--replot", metavar="JSON",
                        help="only redraw <output>.png from a JSON this bench wrote")
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        for step in saved["steps"]:  # JSON written before the field existed
            step.setdefault("scheduler_cpu_ms_per_report_sent", per_report_sent(
                step["scheduler_cpu_s"]["total"], step["acks"] - step["acks_over_http"]
                + step["report_failures"] + step["refused_must_register"]))
        plot(saved["steps"], args.output + ".png", saved.get("title", args.replot))
        with open(args.replot, "w") as f:
            json.dump(saved, f, indent=2)
        print(f"wrote {args.output}.png")
        return 0
    if os.geteuid() != 0:
        parser.error("run as root (rabbitmqctl, and the machine's MariaDB accounts)")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)

    # SIGTERM unwinds like Ctrl-C, so everything made is removed.
    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)

    began = time.time()
    load_before = loadavg()
    with contextlib.ExitStack() as cleanup:
        result = run(args, cleanup)
    settings = {k: v for k, v in vars(args).items() if k not in ("bin", "output")}
    out = {"settings": settings,
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version(),
                       "loadavg_before": load_before,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
                       "seconds": round(time.time() - began, 1)},
           **result}
    title = (f"one scheduler replica ({args.report_workers} report worker(s)), "
             f"report_interval {args.report_interval}s, lease_time {args.lease_time}s"
             f"{', UDP first' if args.udp else ''}"
             f"{', HTTP hedging' if args.http else ''}; {os.cpu_count()} cores shared with "
             "the generator")
    out["title"] = title
    with open(args.output + ".json", "w") as f:
        json.dump(out, f, indent=2)
    plot(result["steps"], args.output + ".png", title)
    print(f"wrote {args.output}.json and {args.output}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
