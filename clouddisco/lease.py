"""The node's data-plane lease, shared by the L3 agent and the cleanup service.

A lease is renewed by a state report that the server acknowledged, and runs
``lease_time`` from when the report was *sent*, on this node's monotonic clock
(CLOCK_MONOTONIC is one clock for every process of the node, so the agent and
the cleanup service agree without any wall clock).

Files in ``[agent] state_dir``, each with one writer, so no write can undo
another's: ``<host>.agent.json`` (the agent's renewals and its pid),
``<host>.node.json`` (the cleanup service's renewals while the agent restarts,
and its fence marker) and ``<host>.guard.json`` (the node
guard's heartbeat, by which the agent knows its enforcer is alive and is the
right one). Writes are atomic renames.

``<host>.lock`` serialises every change to the node's data plane: the agent
builds and removes routers, and the guard fences, only while holding it, and
each re-reads the lease after taking it. So a fence can never miss a router
that a build was adding, and a build can never start under a lease that a
fence has just ended.
"""

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator

AGENT = "agent"
NODE = "node"


@dataclasses.dataclass
class Lease:
    """One writer's view of the lease. ``expires`` is a monotonic time."""

    host: str
    generation: int = 0
    expires: float = 0.0
    renewed_at: float = 0.0
    pid: int = 0
    # Node file only: the lease generation this node fenced (routers removed).
    fenced_generation: int | None = None
    fenced_at: float | None = None

    def valid(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.expires


def path(state_dir: str, host: str, writer: str) -> str:
    return os.path.join(state_dir, f"{host}.{writer}.json")


def read(state_dir: str, host: str, writer: str) -> Lease:
    """The lease as ``writer`` last wrote it; an empty lease if there is none."""
    try:
        with open(path(state_dir, host, writer)) as f:
            data = json.load(f)
        return Lease(**{k: v for k, v in data.items()
                        if k in Lease.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return Lease(host=host)


def write(state_dir: str, lease: Lease, writer: str) -> None:
    _write_json(path(state_dir, lease.host, writer), dataclasses.asdict(lease))


def _write_json(target: str, data: dict) -> None:
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    # pid and thread: the agent's reporter and enforcer may write at once.
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, target)


def effective_expiry(state_dir: str, host: str) -> float:
    """When the node's lease runs out, whoever renewed it last."""
    agent, node = read(state_dir, host, AGENT), read(state_dir, host, NODE)
    return max(agent.expires if agent.generation >= node.generation else 0.0,
               node.expires if node.generation >= agent.generation else 0.0)


def in_force(state_dir: str, host: str) -> Lease:
    """The lease that ``effective_expiry`` goes by (agent's or node's file)."""
    agent, node = read(state_dir, host, AGENT), read(state_dir, host, NODE)
    candidates = [x for x, other in ((agent, node), (node, agent))
                  if x.generation >= other.generation]
    return max(candidates, key=lambda x: x.expires)


def fenced(state_dir: str, host: str, generation: int) -> bool:
    """Whether the cleanup service has fenced lease ``generation`` of this node."""
    node = read(state_dir, host, NODE)
    return node.fenced_generation is not None and node.fenced_generation >= generation


# ------------------------------------------------------------- node lock

class LockTimeout(Exception):
    """The node lock was not free within the time asked for."""


@contextlib.contextmanager
def node_lock(state_dir: str, host: str, timeout: float | None = None,
              poll: float = 0.005) -> Iterator[None]:
    """Hold the node's data-plane lock (``flock``; the kernel frees it when
    the holder dies). ``timeout`` None waits for ever; otherwise LockTimeout."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(state_dir, f"{host}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"node lock of {host} held by another process") \
                        from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # also releases the lock


# ---------------------------------------------------------- guard heartbeat

@dataclasses.dataclass
class GuardBeat:
    """What the node guard writes on every check: who it is and when it last
    looked (monotonic, node-wide)."""

    host: str
    namespace_prefix: str
    pid: int
    at: float


def write_guard_beat(state_dir: str, beat: GuardBeat) -> None:
    _write_json(os.path.join(state_dir, f"{beat.host}.guard.json"), dataclasses.asdict(beat))


def read_guard_beat(state_dir: str, host: str) -> GuardBeat | None:
    try:
        with open(os.path.join(state_dir, f"{host}.guard.json")) as f:
            return GuardBeat(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def guard_status(state_dir: str, host: str, namespace_prefix: str, max_age: float,
                 now: float | None = None) -> str:
    """``ok`` when a guard for exactly this host and namespace prefix checked
    the node within ``max_age`` seconds; else ``missing``, ``stale`` or
    ``mismatch``. A guard with another host or state_dir writes another file,
    so it shows as missing."""
    beat = read_guard_beat(state_dir, host)
    if beat is None:
        return "missing"
    if beat.namespace_prefix != namespace_prefix:
        return "mismatch"
    now = time.monotonic() if now is None else now
    return "ok" if now - beat.at <= max_age else "stale"


def write_pid(state_dir: str, host: str, pid: int) -> None:
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    target = os.path.join(state_dir, f"{host}.agent.pid")
    tmp = f"{target}.{pid}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, target)


def read_pid(state_dir: str, host: str) -> int | None:
    try:
        with open(os.path.join(state_dir, f"{host}.agent.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
