"""Every message that crosses the wire, declared in one place.

Topics:
  ``clouddisco-scheduler`` (agents, cleanup and API → any scheduler replica) —
      register, sync_routers, update_router_status, schedule_router,
      delete_router, host_fenced.
  ``clouddisco-reports`` (agents and cleanup services → any scheduler replica)
      — report_state and renew_lease: lease renewals have their own queue and
      threads so that no other work can delay a heartbeat into a false failover.
  ``clouddisco-l3-agent`` with server=<host> (scheduler → one agent) —
      routers_added, routers_removed.

APIs are versioned; bump the minor version when adding a method or argument and
make the caller check ``can_send_version`` before using it.

Deadlines: every *call* of ``SchedulerAPI`` carries ``{"deadline": <wall-clock
time at which its caller stops waiting>}`` in its RPC context, and
``validated`` refuses a call that arrives later than that (``CallExpired``)
before its endpoint runs. The context is not part of a method's arguments, so
this needs no version bump: an older server ignores it, and a message without
a deadline (an older caller, any cast) is processed as before.
"""

import concurrent.futures
import functools
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence

import jsonschema
import oslo_messaging
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

SCHEDULER_TOPIC = "clouddisco-scheduler"
REPORTS_TOPIC = "clouddisco-reports"
AGENT_TOPIC = "clouddisco-l3-agent"

# 1.0: register, report_state, sync_routers, update_router_status,
#      schedule_router, delete_router
# 1.1: renew_lease, host_fenced (leases and confirmed fencing)
# 1.2: register on the reports topic too (served by the report workers)
SCHEDULER_API_VERSION = "1.2"
# Agent API 1.1: routers_added and routers_removed carry the lease generation
# they were sent for (optional, so a 1.0 server's messages still pass).
AGENT_API_VERSION = "1.1"


class BrokerBusy(Exception):
    """An earlier message of this courier is still waiting for the broker."""


class Courier:
    """Sends messages on a background thread, so that no caller ever blocks on
    a broker outage.

    oslo.messaging's connection pool waits for the broker to come back when it
    has no live connection, whatever ``retry`` says. A health monitor, a
    heartbeat loop or a node guard that blocked there would stop doing its
    job exactly when it matters. Messages keep their order (one thread).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: concurrent.futures.Future | None = None

    def cast(self, fn: Callable, *args, **kwargs) -> None:
        """Fire and forget; a failure is logged (callers have a retry path)."""
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._log_failure)

    def call(self, fn: Callable, *args, timeout: float, **kwargs):
        """Wait at most ``timeout`` seconds for ``fn``'s result.

        Raises TimeoutError, or BrokerBusy while an earlier call still hangs
        (rather than queueing calls behind it that would all be stale).
        """
        if self._pending is not None and not self._pending.done():
            raise BrokerBusy(f"{self.name}: an earlier message still waits for the broker")
        self._pending = self._pool.submit(fn, *args, **kwargs)
        try:
            return self._pending.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self.name}: no answer within {timeout:.1f}s") from None

    def _log_failure(self, future: concurrent.futures.Future) -> None:
        exc = future.exception()
        if exc is not None:
            LOG.warning("%s: message not sent: %s", self.name, exc)


class InvalidPayload(Exception):
    """An RPC message that does not match its schema; nothing was changed."""


class CallExpired(Exception):
    """A call that reached its server after its caller had stopped waiting for
    it; it was refused before it could change anything."""


class BrokerUnreachable(Exception):
    pass


# ------------------------------------------------------------- call deadlines

DEADLINE_KEY = "deadline"


def call_context(timeout: float, now: float | None = None) -> dict:
    """The RPC context of a call whose caller waits ``timeout`` seconds.

    The deadline is a wall-clock (``time.time()``) instant, because it is
    compared on another machine; see ``lateness`` for what that assumes.
    """
    return {DEADLINE_KEY: (time.time() if now is None else now) + timeout}


def lateness(ctxt: object, now: float | None = None) -> float | None:
    """Seconds by which the call carrying ``ctxt`` missed its deadline: > 0 if
    its caller has given up on it, <= 0 if not, None if it has no deadline
    (an older caller, or a cast: processed as before).

    This compares the caller's wall clock with ours. If our clock runs
    *behind* the caller's, a late call can slip through: that is only what
    happened before deadlines existed. If it runs *ahead* by more than what is
    left of a call's timeout when it arrives, fresh calls look late: state
    reports (timeout 1 s) that kept being refused would let the node's lease
    lapse, so a clock step on a scheduler host would fence the nodes it
    serves. ``validated`` therefore refuses a call only when it is later than
    ``[DEFAULT] max_clock_skew``; beyond that the refusal lines in the log
    show the skew (every call "late" by about the same amount).
    """
    getter = getattr(ctxt, "get", None)
    deadline = getter(DEADLINE_KEY) if getter is not None else None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        return None
    return (time.time() if now is None else now) - deadline


# ------------------------------------------------------------------ transport

def get_transport(conf: cfg.ConfigOpts) -> oslo_messaging.Transport:
    # The options themselves are registered by clouddisco.conf.register.
    return oslo_messaging.get_rpc_transport(conf, allowed_remote_exmods=[__name__])


def check_broker(conf: cfg.ConfigOpts, timeout: float = 3.0) -> None:
    """Raise BrokerUnreachable unless some broker of transport_url takes TCP.

    Every host is tried, and each unreachable one is logged once, by name:
    on a cluster the service starts on the others (kombu fails over between
    the hosts), and the operator learns which node is missing now rather than
    from a reconnect loop later.
    """
    url = oslo_messaging.TransportURL.parse(conf, conf.transport_url)
    if url.transport.startswith("fake") or not url.hosts:
        return
    errors = []
    for host in url.hosts:
        addr = (host.hostname or "localhost", host.port or 5672)
        try:
            socket.create_connection(addr, timeout=timeout).close()
        except OSError as exc:
            errors.append(f"{addr[0]}:{addr[1]}: {exc.strerror or exc}")
    if len(errors) == len(url.hosts):
        raise BrokerUnreachable("; ".join(errors))
    for error in errors:
        LOG.warning("transport_url: broker %s is unreachable; using the other %d "
                    "host(s)", error, len(url.hosts) - len(errors))


def get_server(transport, topic: str, endpoints: Sequence[object],
               server: str | None = None) -> oslo_messaging.MessageHandlingServer:
    target = oslo_messaging.Target(topic=topic, server=server or socket.gethostname())
    return oslo_messaging.get_rpc_server(transport, target, list(endpoints),
                                         executor="threading")


# ------------------------------------------------------------- payload checks

_UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                      "[0-9a-f]{4}-[0-9a-f]{12}$"}
_HOST = {"type": "string", "minLength": 1, "maxLength": 255}
_PREFIX = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,24}$"}

SCHEMAS = {
    "register": {"type": "object", "required": ["host", "namespace_prefix"],
                 "properties": {"host": _HOST, "namespace_prefix": _PREFIX,
                                "registration_id": _UUID,
                                "agent_type": {"enum": ["l3"]}},
                 "additionalProperties": False},
    "report_state": {"type": "object", "required": ["host", "state"],
                     "properties": {"host": _HOST, "state": {"type": "object"}},
                     "additionalProperties": False},
    "renew_lease": {"type": "object", "required": ["host", "generation"],
                    "properties": {"host": _HOST,
                                   "generation": {"type": "integer", "minimum": 1}},
                    "additionalProperties": False},
    "host_fenced": {"type": "object", "required": ["host", "generation", "reason"],
                    "properties": {"host": _HOST,
                                   "generation": {"type": "integer", "minimum": 1},
                                   "reason": {"type": "string", "maxLength": 255}},
                    "additionalProperties": False},
    "sync_routers": {"type": "object", "required": ["host"],
                     "properties": {"host": _HOST}, "additionalProperties": False},
    "update_router_status": {
        "type": "object", "required": ["host", "reports"],
        "properties": {
            "host": _HOST,
            "reports": {"type": "object",
                        "propertyNames": _UUID,
                        "additionalProperties": {
                            "type": "object", "required": ["status"],
                            "properties": {
                                "status": {"enum": ["ACTIVE", "ERROR", "DELETED"]},
                                "reason": {"type": ["string", "null"], "maxLength": 1024}},
                            "additionalProperties": False}}},
        "additionalProperties": False},
    "router_id": {"type": "object", "required": ["router_id"],
                  "properties": {"router_id": _UUID}, "additionalProperties": False},
}


# Methods that every agent or node guard sends every report_interval, or that
# a whole fleet sends at once after an outage (register). When a
# replica falls behind, they expire by the thousand: a line for each would
# flood the log and cost more than the refusal (measured: 18,444 lines for 300
# agents registering at once, bench/heartbeat_scale.py --restart).
QUIET_EXPIRY = frozenset({"report_state", "renew_lease", "register"})


class ExpiredReportLog:
    """Logs refused expired reports: each at DEBUG; at WARNING the first of a
    burst, then one count per ``interval`` for as long as the burst lasts."""

    def __init__(self, interval: float = 10.0,
                 timer: Callable[[float, Callable[[], None]], threading.Timer]
                 = threading.Timer) -> None:
        self.interval = interval
        self._timer = timer
        self._lock = threading.Lock()
        self._in_burst = False
        self._count = 0
        self._hosts: set[str] = set()
        self._worst = 0.0

    def refused(self, method: str, host: str, late: float) -> None:
        LOG.debug("%s from host %s refused: it arrived %.3fs after its caller's "
                  "deadline", method, host, late)
        with self._lock:
            first = not self._in_burst
            if first:
                self._in_burst = True
            else:
                self._count += 1
                self._hosts.add(host)
                self._worst = max(self._worst, late)
        if first:
            LOG.warning("%s from host %s refused: it arrived %.3fs after its caller's "
                        "deadline; further expired reports are counted every %.0fs",
                        method, host, late, self.interval)
            self._arm()

    def flush(self) -> None:
        """Log the count since the last one; the burst ends when there is none."""
        with self._lock:
            count, hosts, worst = self._count, len(self._hosts), self._worst
            self._count, self._hosts, self._worst = 0, set(), 0.0
            self._in_burst = count > 0
        if count:
            LOG.warning("%d more expired state report(s) or lease renewal(s) from %d "
                        "host(s) refused in the last %.0fs, up to %.3fs late: this "
                        "replica is falling behind", count, hosts, self.interval, worst)
            self._arm()

    def _arm(self) -> None:
        timer = self._timer(self.interval, self.flush)
        timer.daemon = True
        timer.start()


EXPIRED_REPORTS = ExpiredReportLog()


class LateCallLog:
    """Warns, at most once per ``interval``, of calls processed although they
    arrived after their caller's deadline (by no more than max_clock_skew):
    either this host's clock runs ahead of its callers' or calls wait in a
    queue about as long as their timeout. Either needs an operator before it
    grows past max_clock_skew and calls are refused."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0

    def accepted(self, method: str, host: str, late: float, tolerance: float) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.interval
        LOG.warning("%s from host %s arrived %.3fs after its caller's deadline, within "
                    "max_clock_skew %.1fs: processed. If such calls keep coming, this "
                    "host's clock runs ahead of its callers' (check NTP) or calls "
                    "queue for as long as their timeout; past max_clock_skew they "
                    "are refused (logged at most every %.0fs)", method, host, late,
                    tolerance, self.interval)


LATE_CALLS = LateCallLog()

_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def compiled_validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A validator of SCHEMAS[schema_name], built (and the schema checked) once.

    ``jsonschema.validate`` checks the schema itself against its metaschema on
    every call: about 2 ms per state report, against under 50 us for a
    prebuilt validator (bench/rpc_validation.py). Like ``jsonschema.validate``
    it asserts no ``format`` keywords: what passed before passes now.
    """
    validator = _VALIDATORS.get(schema_name)
    if validator is None:
        schema = SCHEMAS[schema_name]
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)  # a broken schema fails at import, not per message
        validator = _VALIDATORS[schema_name] = cls(schema)
    return validator


def first_error(validator: jsonschema.protocols.Validator,
                instance: object) -> jsonschema.ValidationError | None:
    """The error ``jsonschema.validate`` would raise for ``instance``, or None:
    the same choice (``best_match``) keeps the messages callers see."""
    return jsonschema.exceptions.best_match(validator.iter_errors(instance))


def validated(schema_name: str) -> Callable:
    """Check an endpoint's call deadline, then its keyword arguments against
    SCHEMAS[schema_name].

    A call whose caller has given up (see ``lateness``) more than the
    endpoint's ``max_clock_skew`` seconds ago is refused with CallExpired,
    and a bad message with InvalidPayload. Either is logged by the server
    without a traceback (sent back to a caller of ``call``, should it still
    listen) and changes nothing: the endpoint does not run.
    """
    validator = compiled_validator(schema_name)

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        @oslo_messaging.expected_exceptions(InvalidPayload, CallExpired)
        def wrapper(self, ctxt, **kwargs):
            late = lateness(ctxt)
            if late is not None and late > self.max_clock_skew:
                # Its caller took it for failed and may have retried already:
                # registering or fencing now would act on a stale picture.
                # Refused before any schema check or database access: a
                # replica that fell behind sheds its backlog cheaply.
                host = kwargs.get("host", "(unknown)")
                if func.__name__ in QUIET_EXPIRY:
                    EXPIRED_REPORTS.refused(func.__name__, host, late)
                else:
                    LOG.warning("%s from host %s refused: it arrived %.3fs after its "
                                "caller's deadline", func.__name__, host, late)
                raise CallExpired(f"{func.__name__}: arrived {late:.3f}s after the "
                                  f"caller's deadline; nothing done")
            if late is not None and late > 0:
                LATE_CALLS.accepted(func.__name__, kwargs.get("host", "(unknown)"), late,
                                    self.max_clock_skew)
            exc = first_error(validator, kwargs)
            if exc is not None:
                where = "/".join(str(p) for p in exc.absolute_path) or "(message)"
                raise InvalidPayload(f"{func.__name__}: {where}: {exc.message}")
            return func(self, ctxt, **kwargs)
        return wrapper
    return decorator


# ----------------------------------------------------------------- clients

class SchedulerAPI:
    """Client of the scheduler replicas, for agents, node guards and the API.

    Every method returns promptly even while the broker is unreachable: calls
    raise TimeoutError (or BrokerBusy) after their timeout, casts are queued on
    a background thread.
    """

    def __init__(self, transport, timeout: float = 10.0) -> None:
        target = oslo_messaging.Target(topic=SCHEDULER_TOPIC, version="1.0")
        self._client = oslo_messaging.get_rpc_client(transport, target, timeout=timeout)
        self._reports = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=REPORTS_TOPIC, version="1.0"),
            timeout=timeout)
        self.timeout = timeout
        # Reports and renewals have a courier of their own, so that a slow
        # sync or status message never delays a heartbeat.
        self._report_courier = Courier("rpc-reports")
        self._courier = Courier("rpc-scheduler")

    def _call(self, client, method: str, timeout: float | None = None,
              version: str | None = None, courier: Courier | None = None, **kwargs):
        timeout = timeout or self.timeout
        prepared = client.prepare(timeout=timeout, retry=0,
                                  **({"version": version} if version else {}))
        # We stop waiting after ``timeout``; the deadline tells the server so,
        # and it refuses the call if it only gets to it later (CallExpired).
        ctxt = call_context(timeout)
        # A little more than the RPC timeout: let oslo.messaging time out first.
        return (courier or self._courier).call(prepared.call, ctxt, method,
                                               timeout=timeout + 0.5, **kwargs)

    # agent → scheduler
    def register(self, host: str, namespace_prefix: str, timeout: float | None = None,
                 registration_id: str | None = None) -> dict:
        """``registration_id``: the same for every retry of one registration,
        so that a retry whose first attempt got through bumps nothing."""
        extra = {"registration_id": registration_id} if registration_id else {}
        return self._call(self._reports, "register", timeout, version="1.2",
                          courier=self._report_courier,
                          host=host, namespace_prefix=namespace_prefix, agent_type="l3",
                          **extra)

    def report_state(self, host: str, state: dict, timeout: float) -> dict:
        # A report that cannot be sent now is worthless later; the next one
        # follows in report_interval.
        return self._call(self._reports, "report_state", timeout,
                          courier=self._report_courier, host=host, state=state)

    def renew_lease(self, host: str, generation: int, timeout: float) -> dict:
        """Node guard → scheduler: keep the node's lease while its agent
        restarts. The reply says whether it was granted and for how long."""
        return self._call(self._reports, "renew_lease", timeout, version="1.1",
                          courier=self._report_courier, host=host, generation=generation)

    def host_fenced(self, host: str, generation: int, reason: str, timeout: float) -> dict:
        """Node guard → scheduler: this node removed its routers; move them now."""
        return self._call(self._client, "host_fenced", timeout, version="1.1", host=host,
                          generation=generation, reason=reason)

    def sync_routers(self, host: str) -> list[dict]:
        return self._call(self._client, "sync_routers", host=host)

    def update_router_status(self, host: str, reports: dict[str, dict]) -> None:
        self._call(self._client, "update_router_status", host=host, reports=reports)

    # API → scheduler: casts, so a request never waits on placement or on a
    # broker outage (the health monitor places what a lost cast left behind).
    def schedule_router(self, router_id: str) -> None:
        self._courier.cast(self._client.prepare(retry=0).cast, {}, "schedule_router",
                           router_id=router_id)

    def delete_router(self, router_id: str) -> None:
        self._courier.cast(self._client.prepare(retry=0).cast, {}, "delete_router",
                           router_id=router_id)


# Seconds a cast to an agent stays worth acting on. One held in RabbitMQ
# through a broker outage can describe a router deleted since, whose gateway
# address a new router may already use: built late, it would be a second live
# copy of that address (nemesis seed 11: an add delivered 8.5 s late). The
# agent refuses it (rpc.validated); the monitor resends what is still
# unfinished after [health] pending_retry_time.
CAST_TTL = 5.0


class AgentAPI:
    """Client of the L3 agents, for the scheduler."""

    def __init__(self, transport) -> None:
        target = oslo_messaging.Target(topic=AGENT_TOPIC, version=AGENT_API_VERSION)
        self._client = oslo_messaging.get_rpc_client(transport, target)
        # The health monitor must keep passing during a broker outage.
        self._courier = Courier("rpc-agents")

    def routers_added(self, host: str, routers: Sequence[dict],
                      lease_generation: int) -> None:
        """Ask ``host`` to realise ``routers`` (router dicts); it answers with
        update_router_status. Lost casts are resent by the monitor.

        ``lease_generation`` is the agent's registration these routers were
        bound under: an agent that has registered again since (it was fenced,
        and its routers may have moved) drops the message, which its resync
        after registering has made moot."""
        self._courier.cast(self._client.prepare(server=host, retry=0).cast,
                           call_context(CAST_TTL), "routers_added",
                           routers=[dict(agent_router_view(r),
                                         lease_generation=lease_generation)
                                    for r in routers])

    def routers_removed(self, host: str, router_ids: Sequence[str],
                        lease_generation: int) -> None:
        self._courier.cast(self._client.prepare(server=host, retry=0).cast,
                           call_context(CAST_TTL), "routers_removed", router_ids=list(router_ids),
                           lease_generation=lease_generation)


def agent_router_view(router: dict) -> dict:
    """The part of a router an agent needs: the wire format of routers_added."""
    return {"id": router["id"], "status": router["status"],
            "gateway_ip": router["external_gateway_ip"],
            "gateway_prefixlen": router["external_gateway_prefixlen"],
            "gateway_mac": router["external_gateway_mac"]}


AGENT_ROUTER_SCHEMA = {
    "type": "object",
    "required": ["id", "gateway_ip", "gateway_prefixlen", "gateway_mac"],
    "properties": {"id": _UUID, "status": {"type": "string"},
                   # Absent from servers older than clouddisco 0.2.
                   "lease_generation": {"type": "integer", "minimum": 1},
                   "gateway_ip": {"type": "string", "format": "ipv4"},
                   "gateway_prefixlen": {"type": "integer", "minimum": 0, "maximum": 32},
                   "gateway_mac": {"type": "string",
                                   "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"}},
    "additionalProperties": False}
SCHEMAS["routers_added"] = {"type": "object", "required": ["routers"],
                            "properties": {"routers": {"type": "array",
                                                       "items": AGENT_ROUTER_SCHEMA}},
                            "additionalProperties": False}
SCHEMAS["routers_removed"] = {"type": "object", "required": ["router_ids"],
                              "properties": {"router_ids": {"type": "array",
                                                            "items": _UUID},
                                             "lease_generation": {"type": "integer",
                                                                  "minimum": 1}},
                              "additionalProperties": False}
