"""The lease receiver: state reports over UDP, written in batches.

Each scheduler replica with ``[health] report_key`` set runs one on
``[health] udp_bind_host``:``udp_port``. An agent with ``[agent]
report_udp_endpoints`` sends its report there first (signed, see
``clouddisco.heartbeat``), and RPC and HTTP become its hedges.

Why a path of its own: over oslo.messaging a report cost the scheduler about
7 ms of CPU (message framing, a reply queue, the ORM), so one replica carried
some 60 agents before acknowledgements came too late and leases lapsed under
load alone. Here a report is one datagram in and one out, and the database
work is shared: the receiver takes everything that arrived within LINGER of
the first report, or while it was writing the previous batch, and writes it
in one transaction (group commit), so the cost per report falls as the load
grows.

The lease rule is the same as on every path: the answer goes out only after
the commit, the node counts ``lease_time`` from when it *sent* the report, and
the server counts ``agent_down_time`` from the database clock at the write. A
datagram that waited in the socket longer than its sender said it would wait
(``wait``) is dropped unread: its sender has given up, and writing it would
only spend the time that fresh reports need (the kernel stamps each datagram's
arrival, ``SO_TIMESTAMPNS``, so no clock of the agent's is involved).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import select
import socket
import struct
import threading
import time
from typing import Any

from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco import rpc
from clouddisco.scheduler import endpoints

LOG = logging.getLogger(__name__)

# Linux; Python's socket module does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
# Most reports written in one transaction; the rest wait for the next.
MAX_BATCH = 1000
# Once a report has arrived, how long the receiver waits for more before it
# writes: a transaction costs about 1 ms of CPU whatever its size (five round
# trips), so at a few hundred reports a second batches of one would spend a
# core on overhead. 20 ms is far inside what an agent waits (a third of
# report_interval before it hedges).
LINGER = 0.02
# Socket receive buffer: room for a few seconds of a large fleet's reports.
RCVBUF = 4 * 1024 * 1024
# How often the counters of dropped datagrams are logged, when there are any.
COUNT_LOG_INTERVAL = 30.0
# Seconds a batch's database write may take before the receiver counts the
# database as unavailable (a stall: Galera flow control, a held lock, a
# dead server behind a silent network) and answers with an outage notice.
WRITE_DEADLINE = 0.15


class OutageClock:
    """Until when (CLOCK_MONOTONIC, system-wide) this replica's health
    monitor must move nothing by silence: the receiver extends it before it
    sends an outage notice, the monitor reads it before every pass. Shared
    memory made by the cotyledon master before it forks the workers."""

    def __init__(self) -> None:
        self._until = multiprocessing.Value("d", 0.0)

    def extend(self, until: float) -> None:
        with self._until.get_lock():
            self._until.value = max(self._until.value, until)

    def until(self) -> float:
        return self._until.value


class UdpLeaseReceiver:
    """Receives, checks, writes and answers state reports sent over UDP."""

    def __init__(self, db: Any, key: str, lease_time: float, bind_host: str,
                 port: int, *, replica: str = "", outage: OutageClock | None = None,
                 agent_down_time: float = 3.0) -> None:
        self.db = db
        self.key = key.encode()
        self.lease_time = lease_time
        # With an OutageClock, a report the database cannot take is answered
        # with an outage notice (see answer_outage); without one, not at all.
        self.replica = replica
        self.outage = outage
        self.agent_down_time = agent_down_time
        # Database calls run here, so that a stalled database delays no
        # answer by more than WRITE_DEADLINE.
        self._writer = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="lease-write")
        # Registrations take a row lock and a commit each: on a thread of
        # their own, answered when done, so that they never hold up reports.
        self._registrar = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="lease-register")
        self.sock = self._bind(bind_host, port)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_seen = False  # the last batch could not be written
        self.counts = {"received": 0, "renewed": 0, "refused": 0, "bad": 0, "registered": 0,
                       "expired": 0, "write_failed": 0, "batches": 0, "outage": 0}
        self._logged_counts = dict(self.counts)
        self._next_count_log = time.monotonic() + COUNT_LOG_INTERVAL

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except OSError:
            pass  # capped by net.core.rmem_max; the default still works
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((host, port))
        sock.setblocking(False)  # serve() waits in select(), so stop() is seen
        return sock

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve, name="udp-lease-receiver",
                                        daemon=True)
        self._thread.start()
        LOG.info("lease receiver listening on UDP %s:%d", *self.address[:2])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()
        self._writer.shutdown(wait=False, cancel_futures=True)
        self._registrar.shutdown(wait=False, cancel_futures=True)

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.5)  # to see stop()
                if ready and not self._outage_seen:
                    # No linger while the database is out: the notices
                    # must come back fast (see clouddisco.drivers.lifetimes).
                    time.sleep(LINGER)
                batch = self._drain() if ready else []
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                LOG.exception("lease receiver: receive failed")
                time.sleep(0.1)
                continue
            if batch:
                try:
                    self.handle(batch)
                except Exception:  # never let one batch end the receiver
                    LOG.exception("lease receiver: a batch of reports failed")
            self._log_counts()

    def _drain(self) -> list[tuple[bytes, Any, float]]:
        """Whatever is waiting in the socket, up to MAX_BATCH datagrams."""
        batch = []
        while len(batch) < MAX_BATCH:
            try:
                data, ancdata, _, address = self.sock.recvmsg(
                    heartbeat.UDP_MAX, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionError:
                continue  # an ICMP error queued for an earlier answer
            batch.append((data, address, _waited(ancdata)))
        return batch

    # ---------------------------------------------------------------- work

    def handle(self, batch: list[tuple[bytes, Any, float]]) -> int:
        """Check, write and answer one batch; returns how many were answered."""
        reports = []
        registrations = []
        for data, address, waited in batch:
            self.counts["received"] += 1
            payload = heartbeat.unpack(self.key, data)
            if payload is not None and payload.get("op") == "register":
                if _well_formed_registration(payload):
                    if waited > payload["wait"]:
                        self.counts["expired"] += 1
                    else:
                        registrations.append((payload, address))
                    continue
                payload = None
            if payload is None or not _well_formed(payload):
                # Unsigned, signed with another key, or not a report: no answer
                # (an answer would help whoever probes the port).
                self.counts["bad"] += 1
                LOG.debug("lease receiver: dropped a datagram from %s that is not "
                          "a signed state report", address)
                continue
            if waited > payload["wait"]:
                self.counts["expired"] += 1
                continue
            reports.append((payload, address))
        for payload, address in registrations:
            self._registrar.submit(self._register, payload, address)
        if not reports:
            return len(registrations)
        try:
            renewed = self._write(self.db.record_heartbeats, [
                (p["host"], p["state"]["lease_generation"],
                 heartbeat.guard_status(p["host"], p["state"].get("guard"),
                                        p["state"].get("kernel_lease") is True))
                for p, _ in reports])
        except Exception as exc:
            # No renewal: nobody stored these reports. The agent's hedges
            # (RPC, HTTP) are already on their way.
            self.counts["write_failed"] += len(reports)
            LOG.warning("lease receiver: could not store %d state report(s): %s",
                        len(reports), exc or type(exc).__name__)
            self._outage_seen = True
            self.answer_outage(reports)
            return len(registrations)
        self._outage_seen = False
        self.counts["batches"] += 1
        for payload, address in reports:
            generation = payload["state"]["lease_generation"]
            if (payload["host"], generation) in renewed:
                self.counts["renewed"] += 1
                answer = {"registered": True, "lease_generation": generation,
                          "lease_time": self.lease_time}
            else:
                self.counts["refused"] += 1
                LOG.info("report from %s (lease generation %s) renews nothing: the "
                         "agent must register again", payload["host"], generation)
                answer = {"registered": False}
            answer["nonce"] = payload["nonce"]
            self._answer(answer, address)
        return len(reports) + len(registrations)

    def _register(self, payload: dict, address: Any) -> None:
        """One registration, in a transaction of its own (it locks the agent's
        row); retried ones carry the same registration id and bump nothing."""
        r = payload["register"]
        try:
            answer = endpoints.register(self.db, self.lease_time, r["host"],
                                        r["namespace_prefix"], r.get("agent_type", "l3"),
                                        r.get("registration_id"))
        except Exception as exc:
            # No answer: the agent retries (same registration id) or falls
            # back to RPC.
            self.counts["write_failed"] += 1
            LOG.warning("lease receiver: could not register %s: %s", r["host"], exc)
            return
        self.counts["registered"] += 1
        self._answer(dict(answer, nonce=payload["nonce"]), address)

    def _write(self, call: Any, *args: Any) -> Any:
        """``call(*args)`` on a writer thread; TimeoutError after WRITE_DEADLINE
        (the call may still finish later: a late heartbeat only makes the
        agent look alive for longer, which is the safe direction)."""
        future = self._writer.submit(call, *args)
        try:
            return future.result(timeout=WRITE_DEADLINE)
        except concurrent.futures.TimeoutError:
            future.cancel()  # not started yet: never run it
            raise TimeoutError(f"database write took longer than {WRITE_DEADLINE}s") \
                from None

    def answer_outage(self, reports: list[tuple[dict, Any]]) -> None:
        """Tell each sender that this replica cannot reach the database.

        An agent that gets such a notice from *every* scheduler replica for
        one report, sent while its lease was valid, may renew its lease with
        it (clouddisco.heartbeat.UdpReporter, clouddisco.agent.reporter): a
        database outage then fences nothing. In exchange this replica's
        health monitor moves nothing by silence until ``agent_down_time``
        after the last notice (OutageClock): by then a node renewed so has
        either reported again or silenced its routers, kernel lifetimes
        included. The clock is extended *before* the notices go out.
        """
        if self.outage is None or not reports:
            return
        self.outage.extend(time.monotonic() + self.agent_down_time)
        self.counts["outage"] += len(reports)
        for payload, address in reports:
            self._answer({"outage": True, "replica": self.replica,
                          "lease_time": self.lease_time, "nonce": payload["nonce"]},
                         address)

    def _answer(self, answer: dict, address: Any) -> None:
        try:
            self.sock.sendto(heartbeat.pack(self.key, answer), address)
        except OSError as exc:
            LOG.debug("lease receiver: could not answer %s: %s", address, exc)

    def _log_counts(self) -> None:
        now = time.monotonic()
        if now < self._next_count_log:
            return
        self._next_count_log = now + COUNT_LOG_INTERVAL
        delta = {k: v - self._logged_counts[k] for k, v in self.counts.items()}
        self._logged_counts = dict(self.counts)
        if delta["bad"] or delta["expired"] or delta["write_failed"]:
            LOG.warning("lease receiver, last %.0fs: %d report(s) renewed in %d "
                        "batch(es); dropped %d unsigned or malformed, %d that waited "
                        "longer than their sender, %d not stored (database)",
                        COUNT_LOG_INTERVAL, delta["renewed"], delta["batches"],
                        delta["bad"], delta["expired"], delta["write_failed"])


def _waited(ancdata: list) -> float:
    """Seconds the datagram waited in the socket: now minus the kernel's
    arrival stamp (both this host's wall clock, read microseconds apart).
    CLOCK_REALTIME read directly, the clock the kernel stamps with: a
    ``time.time()`` replaced by a test's clock skew (lab/clockskew) would
    make every datagram look old or new by the skew."""
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack(value[:_TIMESPEC.size])
            return max(0.0, time.clock_gettime(time.CLOCK_REALTIME) - (sec + nsec / 1e9))
    return 0.0


_REGISTER_VALIDATOR = rpc.compiled_validator("register")


def _well_formed_registration(payload: dict) -> bool:
    """Registrations are rare: the RPC ``register`` schema checks them."""
    return (_wait_and_nonce_ok(payload) and isinstance(payload.get("register"), dict)
            and isinstance(payload["register"].get("registration_id"), str)
            and rpc.first_error(_REGISTER_VALIDATOR, payload["register"]) is None)


def _wait_and_nonce_ok(payload: dict) -> bool:
    wait = payload.get("wait")
    return (isinstance(payload.get("nonce"), str) and len(payload["nonce"]) <= 64
            and isinstance(wait, (int, float)) and not isinstance(wait, bool)
            and 0 < wait <= 60)


def _well_formed(payload: dict) -> bool:
    """The fields the receiver relies on, checked by hand: this is the hot path
    (a compiled jsonschema validator costs more than the rest of a report)."""
    state = payload.get("state")
    host = payload.get("host")
    generation = state.get("lease_generation") if isinstance(state, dict) else None
    return (isinstance(host, str) and 0 < len(host) <= 255 and _wait_and_nonce_ok(payload)
            and isinstance(generation, int) and not isinstance(generation, bool)
            and generation >= 1)
