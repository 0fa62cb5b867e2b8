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

This module imports no service: the scheduler, the API and the agent share it.
"""

import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import jsonschema
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# What an agent says of its node guard in every report ("guard"); only GUARD_OK
# lets the control plane move a silent agent's routers (see the health monitor).
GUARD_OK = "ok"
GUARD_STATUSES = (GUARD_OK, "missing", "stale", "mismatch")

SIGNATURE_HEADER = "X-Clouddisco-Signature"
HTTP_PATH = "/v1/agent-reports"

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


def receive(db: Any, host: str, state: dict, lease_time: float) -> dict:
    """Record a received state report; the answer both paths send back.

    ``registered`` False: unknown, declared dead, or a superseded generation:
    the agent must register (and resync) before it may serve again.
    """
    generation = state.get("lease_generation")
    agent = db.record_heartbeat(host, generation if isinstance(generation, int) else None,
                                guard_status=guard_status(host, state.get("guard")))
    if agent is None:
        return {"registered": False}
    return {"registered": True, "lease_generation": agent["lease_generation"],
            "lease_time": lease_time}


def guard_status(host: str, guard: Any) -> str | None:
    """The node guard's status from a state report: None when the agent does
    not say (older agents). A value outside the contract is kept as "not ok"
    (truncated to fit): an unknown answer is no proof the guard works."""
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
        body = json.dumps({"host": host, "state": state}).encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(self.key, body)}
        deadline = time.monotonic() + timeout
        errors = []
        for i in range(len(self.endpoints)):
            n = (self._first + i) % len(self.endpoints)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            request = urllib.request.Request(self.endpoints[n] + HTTP_PATH,
                                             data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=left) as response:
                    reply = json.loads(response.read())
                self._first = n
                return reply
            except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts
                errors.append(f"{self.endpoints[n]}: {exc}")
        raise ConnectionError("no API replica took the report: " + "; ".join(errors))
