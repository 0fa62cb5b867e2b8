"""State reports (heartbeats), whichever way they arrive.

An agent reports over RPC (the ``clouddisco-reports`` topic, taken by the
scheduler's report workers) and, when that path does not answer in time, over
HTTP to the API replicas (``POST /v1/agent-reports``), signed with a shared
key. The second path needs neither RabbitMQ nor a scheduler, so the data
plane rides through the loss of either: Octavia's amphorae report to their
health managers the same way, around the message bus.

Both paths end in the same database write (``Database.record_heartbeat``,
stamped with the database's clock) and the same answer, so the lease rule is
unchanged: the node counts its lease from when it *sent* the report, the
server counts ``agent_down_time`` from when it *received* it. A report that
arrives late, by either path, only makes the server wait longer.

A third path, for scale, is UDP (``[agent] report_udp_endpoints``, served by
each scheduler replica's lease receiver, ``clouddisco.scheduler.udp``): one
signed datagram each way and no broker, and the receiver writes every report
that arrived while it was busy in one statement. It is the agent's first path
when configured; RPC and HTTP then become the hedges.

This module imports no service: the scheduler, the API and the agent share it.
"""

import hashlib
import hmac
import json
import os
import select
import socket
import time
import urllib.request
import zlib
from collections.abc import Sequence
from typing import Any

import jsonschema
from oslo_log import log as logging

from clouddisco.conf.types import parse_endpoint

LOG = logging.getLogger(__name__)

# What an agent says of its node guard in every report ("guard"); only GUARD_OK
# lets the control plane move a silent agent's routers (see the health monitor).
GUARD_OK = "ok"
GUARD_STATUSES = (GUARD_OK, "missing", "stale", "mismatch")
# Stored after a not-ok guard status when the report also says the kernel
# enforces the lease on the gateway addresses ("kernel_lease": true, see
# clouddisco.drivers.lifetimes): then the copy stops answering when the lease
# runs out even with no process alive, and the routers may move.
KERNEL_SUFFIX = "+kernel"


# Seconds kept back from agent_down_time - lease_time when accepting an
# outage answer (see outage_accept): message delay from the answering replica,
# and the monitor's pass granularity.
OUTAGE_SLACK = 0.25


def outage_accept(agent_down_time: float, lease_time: float) -> float:
    """How long after sending a report an outage answer (every scheduler
    replica says the database is unavailable) may still renew a lease that
    was valid when the report was sent: the control plane cannot have
    declared the node dead before ``lease_time`` + this has passed since its
    last stored renewal (clouddisco.agent.reporter explains why). The agent
    and the node guard apply the same rule."""
    return max(0.0, agent_down_time - lease_time - OUTAGE_SLACK)


def node_report_paths(conf: Any) -> dict:
    """The HTTP and UDP reporters and the outage rule of a network node, from
    its ``[agent]`` and ``[health]`` options: the agent and its node guard
    report the same ways (keyword arguments of StateReporter and NodeGuard)."""
    key = conf.health.report_key
    return {
        "http": (HttpReporter(conf.agent.report_endpoints, key)
                 if conf.agent.report_endpoints else None),
        "udp": (UdpReporter(conf.agent.report_udp_endpoints, key)
                if conf.agent.report_udp_endpoints else None),
        "outage_accept": outage_accept(conf.health.agent_down_time,
                                       conf.health.lease_time),
    }


def lease_enforced(status: str | None) -> bool:
    """Whether something on the node is sure to silence a silent agent's
    routers when its lease runs out (None: an older agent that does not say)."""
    return status in (None, GUARD_OK) or (status or "").endswith(KERNEL_SUFFIX)

SIGNATURE_HEADER = "X-Clouddisco-Signature"
HTTP_PATH = "/v1/agent-reports"
# A node guard's fence report, when RPC cannot carry it (a broker outage):
# the API records the fence, and the monitors move the routers at their next
# pass rather than after the lease would have lapsed.
HTTP_FENCE_PATH = "/v1/agent-fences"

REPORT_SCHEMA = {
    "type": "object",
    "required": ["host", "state"],
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255},
        "state": {"type": "object",
                  "required": ["lease_generation"],
                  "properties": {"lease_generation": {"type": "integer", "minimum": 1}}},
    },
    "additionalProperties": False,
}
# Compiled once: this is the hot path of every node's heartbeat.
REPORT_VALIDATOR = jsonschema.validators.validator_for(REPORT_SCHEMA)(REPORT_SCHEMA)
FENCE_SCHEMA = {
    "type": "object",
    "required": ["host", "generation", "reason"],
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255},
        "generation": {"type": "integer", "minimum": 1},
        "reason": {"type": "string", "maxLength": 255},
    },
    "additionalProperties": False,
}


def receive(db: Any, host: str, state: dict, lease_time: float) -> dict:
    """Record a received state report; the answer both paths send back.

    ``registered`` False: unknown, declared dead, or a superseded generation:
    the agent must register (and resync) before it may serve again.
    """
    generation = state.get("lease_generation")
    agent = db.record_heartbeat(host, generation if isinstance(generation, int) else None,
                                guard_status=guard_status(host, state.get("guard"),
                                                          state.get("kernel_lease") is True))
    if agent is None:
        return {"registered": False}
    return {"registered": True, "lease_generation": agent["lease_generation"],
            "lease_time": lease_time}


def guard_status(host: str, guard: Any, kernel_lease: bool = False) -> str | None:
    """The node guard's status from a state report: None when the agent does
    not say (older agents). A value outside the contract is kept as "not ok"
    (truncated to fit): an unknown answer is no proof the guard works."""
    if guard in GUARD_STATUSES and guard != GUARD_OK and kernel_lease:
        return guard + KERNEL_SUFFIX
    if guard is None or guard in GUARD_STATUSES:
        return guard
    # Debug: it comes with every report; the agents API shows the value.
    LOG.debug("agent on %s reports an unknown node guard status %r", host, guard)
    return str(guard)[:16]


def sign(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(key: str, body: bytes, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(key, body), signature)


class HttpReporter:
    """Sends one state report to the first API replica that answers."""

    def __init__(self, endpoints: Sequence[str], key: str) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.key = key
        self._first = 0  # start with the replica that answered last

    def report(self, host: str, state: dict, timeout: float) -> dict:
        return self._post(HTTP_PATH, {"host": host, "state": state}, timeout)

    def fence(self, host: str, generation: int, reason: str, timeout: float) -> dict:
        """Report that ``host`` fenced lease ``generation`` (HTTP_FENCE_PATH)."""
        return self._post(HTTP_FENCE_PATH, {"host": host, "generation": generation,
                                            "reason": reason[:255]}, timeout)

    def _post(self, path: str, payload: dict, timeout: float) -> dict:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(self.key, body)}
        deadline = time.monotonic() + timeout
        errors = []
        for i in range(len(self.endpoints)):
            n = (self._first + i) % len(self.endpoints)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            request = urllib.request.Request(self.endpoints[n] + path,
                                             data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=left) as response:
                    reply = json.loads(response.read())
                self._first = n
                return reply
            except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts
                errors.append(f"{self.endpoints[n]}: {exc}")
        raise ConnectionError("no API replica took the report: " + "; ".join(errors))


# ------------------------------------------------------------------ UDP

# A datagram is MAGIC, then HMAC-SHA256(key, body) (32 bytes), then the JSON
# body. The magic carries the format's version.
UDP_MAGIC = b"CDR1"
UDP_MAX = 2048  # bytes: a report or an answer is a few hundred
RESOLVE_EVERY = 60.0  # seconds a replica's resolved address is reused
_MAC_LEN = 32


def pack(key: bytes, payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return UDP_MAGIC + hmac.digest(key, body, hashlib.sha256) + body


def unpack(key: bytes, datagram: bytes) -> dict | None:
    """The payload of a datagram signed with ``key``; None for anything else
    (another format, a bad signature, not a JSON object)."""
    head = len(UDP_MAGIC) + _MAC_LEN
    if len(datagram) <= head or not datagram.startswith(UDP_MAGIC):
        return None
    body = datagram[head:]
    if not hmac.compare_digest(hmac.digest(key, body, hashlib.sha256),
                               datagram[len(UDP_MAGIC):head]):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class UdpReporter:
    """Sends one state report as a signed datagram to the scheduler replicas'
    lease receivers; returns the first valid answer to *this* report.

    Each host starts with the replica its name hashes to, so that replicas
    share the agents; when that one has not answered within ``hedge`` of the
    timeout, the report also goes to the next, and so on. Every call uses a
    socket of its own and a random nonce, so a late answer to an earlier
    report can never be taken for this one's.
    """

    def __init__(self, endpoints: Sequence[str], key: str, hedge: float = 1 / 3) -> None:
        if not endpoints:
            raise ValueError("UdpReporter needs at least one endpoint")
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.key = key.encode()
        self.hedge = hedge
        self._resolved: dict[tuple[str, int], tuple[float, tuple]] = {}

    def _addresses(self, host: str) -> list[tuple]:
        first = zlib.crc32(host.encode()) % len(self.endpoints)
        ordered = self.endpoints[first:] + self.endpoints[:first]
        return [a for a in (self._resolve(e) for e in ordered) if a is not None]

    def _resolve(self, endpoint: tuple[str, int]) -> tuple | None:
        """(family, address) of an endpoint, looked up at most every
        RESOLVE_EVERY seconds: a report goes out every second, and a name
        lookup per report and replica would be the costliest part of it. An
        unresolvable name is tried again at the next report."""
        now = time.monotonic()
        cached = self._resolved.get(endpoint)
        if cached is not None and now - cached[0] < RESOLVE_EVERY:
            return cached[1]
        try:
            family, _, _, _, address = socket.getaddrinfo(
                *endpoint, type=socket.SOCK_DGRAM)[0]
        except OSError:
            return cached[1] if cached is not None else None
        self._resolved[endpoint] = (now, (family, address))
        return family, address

    def report(self, host: str, state: dict, timeout: float) -> dict:
        return self._exchange(host, {"host": host, "state": state}, timeout)

    def register(self, host: str, namespace_prefix: str, timeout: float,
                 registration_id: str) -> dict:
        """A registration (``op`` register): the answer is the RPC
        ``register``'s. ``registration_id`` makes retries, by either path,
        one registration."""
        return self._exchange(host, {"op": "register", "register": {
            "host": host, "namespace_prefix": namespace_prefix, "agent_type": "l3",
            "registration_id": registration_id}}, timeout)

    def _exchange(self, host: str, payload: dict, timeout: float) -> dict:
        """Send to the host's first replica, hedge to the next ones; return
        the first answer to this nonce. An outage notice ("outage": true) is
        no answer on its own: the report then goes to every replica at once,
        and only if *every* replica answers with one is the result an outage
        answer (``{"outage": True, "lease_time": ..., "replicas": [...]}``),
        which the reporter may renew a still valid lease with."""
        nonce = os.urandom(8).hex()
        datagram = pack(self.key, dict(payload, nonce=nonce, wait=round(timeout, 3)))
        addresses = self._addresses(host)
        if not addresses:
            raise ConnectionError("no UDP report endpoint resolves")
        sockets = {}
        outages: dict[Any, dict] = {}  # endpoint address -> its outage notice
        refused = 0
        deadline = time.monotonic() + timeout
        step = max(timeout * self.hedge, 0.01)
        try:
            pending = list(addresses)
            next_send = time.monotonic()
            while True:
                now = time.monotonic()
                while pending and now >= next_send:
                    family, address = pending.pop(0)
                    sock = sockets.get(family)
                    if sock is None:
                        sock = sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
                    try:
                        sock.sendto(datagram, address)
                    except OSError:
                        continue  # unreachable now: the next endpoint goes at once
                    if not outages:
                        next_send = now + step
                left = deadline - now
                if left <= 0:
                    break
                wait = min(left, max(0.0, next_send - now)) if pending else left
                ready, _, _ = select.select(list(sockets.values()), [], [], wait)
                for sock in ready:
                    try:
                        data, source = sock.recvfrom(UDP_MAX)
                    except ConnectionRefusedError:
                        # ICMP port unreachable: a replica not listening (yet).
                        refused += 1
                        if refused >= len(addresses):
                            raise ConnectionRefusedError(
                                "no scheduler replica listens for UDP reports") from None
                        next_send = now  # the next replica at once
                        continue
                    except OSError:
                        continue
                    reply = unpack(self.key, data)
                    if reply is None or reply.get("nonce") != nonce:
                        continue
                    reply.pop("nonce")
                    if reply.get("outage") is not True:
                        return reply
                    if source[:2] in {a[1][:2] for a in addresses}:
                        outages[source[:2]] = reply
                        next_send = now  # ask every other replica at once
                if len(outages) == len(addresses):
                    return {"outage": True,
                            "lease_time": min(float(o.get("lease_time", 0)) for o in
                                              outages.values()),
                            "replicas": sorted(str(o.get("replica")) for o in
                                               outages.values())}
        finally:
            for sock in sockets.values():
                sock.close()
        if outages:
            raise TimeoutError(f"database outage notices from {len(outages)} of "
                               f"{len(addresses)} scheduler replica(s) only")
        raise TimeoutError(f"no UDP answer within {timeout:.2f}s from "
                           f"{len(addresses)} endpoint(s)")
