"""The node's data-plane lease, shared by the L3 agent and the cleanup service.

A lease is renewed by a state report that the server acknowledged, and runs
``lease_time`` from when the report was *sent*, on this node's monotonic clock
(CLOCK_MONOTONIC is one clock for every process of the node, so the agent and
the cleanup service agree without any wall clock).

Two files in ``[agent] state_dir``, each with one writer, so no write can undo
another's: ``<host>.agent.json`` (the agent's renewals and its pid) and
``<host>.node.json`` (the cleanup service's renewals while the agent restarts,
and its fence marker). Writes are atomic renames.
"""

import dataclasses
import json
import os
import time

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
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    target = path(state_dir, lease.host, writer)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(dataclasses.asdict(lease), f)
    os.replace(tmp, target)


def effective_expiry(state_dir: str, host: str) -> float:
    """When the node's lease runs out, whoever renewed it last."""
    agent, node = read(state_dir, host, AGENT), read(state_dir, host, NODE)
    return max(agent.expires if agent.generation >= node.generation else 0.0,
               node.expires if node.generation >= agent.generation else 0.0)


def fenced(state_dir: str, host: str, generation: int) -> bool:
    """Whether the cleanup service has fenced lease ``generation`` of this node."""
    node = read(state_dir, host, NODE)
    return node.fenced_generation is not None and node.fenced_generation >= generation


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
