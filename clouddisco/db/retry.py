"""Retries of the db layer, and what "the database is unavailable" means.

clouddisco writes to one Galera node at a time, the writer HAProxy sends it
to. What can go wrong, by MariaDB error number, and what a call does then:

**Rolled back.** 1213 (a deadlock; on Galera also a certification conflict,
at any statement or at COMMIT) and 1205 (lock wait timeout), both
``DBDeadlock`` in oslo.db; 1020 (record changed since last read,
``DBConsistencyError``); a ``RetryRequest`` raised by the call itself. The
transaction certainly did not commit, so every call is retried: 8 times,
20 ms doubling to 0.5 s, jittered.

**Unavailable.** 2002/2003 (cannot connect), 2006/2013 (connection lost:
the writer node killed mid-session, HAProxy moving to another node), 1047
("WSREP has not yet prepared node for application use": the node is outside
the Primary Component), 1180 (a commit failed in flight, e.g. as the node
left it). oslo.db raises ``DBConnectionError`` for all of them but 1180,
which it lets through as a bare ``OperationalError``: the API answered 500
and the health monitor logged a traceback every pass. ``translate_unavailable``
(an engine ``handle_error`` listener, ahead of oslo.db's) turns 1047 and 1180
into ``NodeUnavailable``, a ``DBConnectionError``, and counts them as a lost
connection: the pool drops its connections, and the next attempt connects
again, through HAProxy, to whichever node now has the writer role.

An error *before* COMMIT was sent means the transaction committed nowhere:
the call is retried for up to ``[database] reconnect_retry_time`` (2.5 s by
default: a writer failover behind HAProxy takes 1-2 s), waiting 50 ms
doubling to 0.5 s, and then raises ``DatabaseUnavailable``. The API answers
that with 503 and Retry-After within 5 s (the option is at most 4 s), the
health monitor with one log line, moving nothing. Once a call has given up,
the outage is longer than a failover: until a call succeeds again, each call
makes one attempt and fails at once, so that a long outage does not hold
every API thread for the whole budget (and a queue of requests past 5 s). A
connection that stalls instead of failing is bounded by the driver's
timeouts, which clouddisco cannot know: set ``connection_parameters =
connect_timeout=5&read_timeout=5&write_timeout=5`` (see the README).

**Outcome unknown.** The same errors while COMMIT was in flight. The server
may have committed before the connection dropped, or, on Galera, the rest of
the cluster may have certified the writeset the lost node had sent. Only a
call that is *replay-safe* is retried then; any other raises
``DatabaseOutcomeUnknown`` (the API: 503 saying the change may or may not
have been applied).

A call is replay-safe when running it again after it committed finds its own
effect and applies nothing more. The writes of ``clouddisco.db.api`` say so
at their ``@retry``; the reasons:

* reads: nothing to apply twice.
* ``create_router``: the router id is drawn once per call, before the first
  attempt (an insert with a client-side UUID); an attempt that finds a router
  with its id returns it as done.
* ``bind_router``: a replay after a lost commit first looks for a binding of
  the router to the same agent and reads it as its own. (Another replica
  binding the router to the same agent looks the same: both then send it to
  that agent, which builds it once.)
* ``begin_router_delete``, ``fence_agent``, ``delete_unserved_router``,
  ``record_unguarded``: conditional on the state they leave behind (a
  compare-and-swap on the status, the lease generation, the binding, or a
  once-per-death event), so a replay changes nothing; it may say so, e.g.
  ``delete_unserved_router`` answers False and its caller looks again.
* ``register_agent`` with a registration id: the retry of the registration
  that set the current generation returns that generation (the rule that
  already makes a retried RPC or UDP registration safe). Without an id it
  would take a second generation: not replay-safe.
* ``heartbeat_service``, ``touch_routers``, and the state reports
  ``record_heartbeat(s)`` (which do not ride through outages, below): a
  replay stamps a later database time. A heartbeat stored later than it
  arrived is the safe direction of the lease argument: the node counts its
  lease from when it *sent* the report, the server may only count from later.
* ``set_agent_admin_state``: writes the value asked for; a replay lands
  within the call, which is when the call may take effect.

Not replay-safe, so retried only when the error came before COMMIT:
``set_router_error`` and ``apply_router_reports`` (a replay could overwrite a
status the agent reported in between; the agent or the monitor sends again),
and ``record_event`` (it would record the event twice).

Some calls do not ride through a lost connection at all (only rolled-back
errors are retried for them):

* the health monitor's decisions, ``mark_dead_agents`` and
  ``move_bindings``: declaring an agent dead re-reads heartbeats that the
  outage itself made stale, while nodes may have renewed their leases on the
  lease receiver's outage notices. Such a decision is for the next pass,
  after the monitor has checked its outage clock (design.rst, "Riding
  through a database outage"). A move whose COMMIT lost its connection may
  have applied without the new agent being told: the agent's resync or the
  monitor's retry of unfinished routers sends it within 10 s.
* state reports, ``record_heartbeat(s)``: a report is worth its answer only
  within its sender's deadline (it hedges after a third of
  ``report_interval``), and the next report is its retry. Failing at once
  is what makes the UDP receiver answer with outage notices, and keeps the
  RPC and API threads free rather than held through an outage by a flood of
  reports nobody waits for.

oslo.db's own retry options (``use_db_reconnect``, ``db_retry_interval``,
``db_inc_retry_interval``, ``db_max_retry_interval``, ``db_max_retries``)
configure its ``DBAPI`` wrapper, which clouddisco does not use. They cannot
serve here: whole seconds cannot express the 20 ms a Galera conflict wants,
their defaults (1 s doubling to 10 s, 20 times) would hold a request for
minutes, and they make no difference between a write that may be replayed
and one that may not. clouddisco does not read them and warns at start-up
when one is set; ``reconnect_retry_time`` is the knob.
"""

import contextlib
import functools
import inspect
import random
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import exc_filters
from oslo_log import log as logging

from clouddisco import exceptions

LOG = logging.getLogger(__name__)

RECONNECT_RETRY_TIME = 2.5  # default of [database] reconnect_retry_time
DEADLOCK_RETRIES = 8
_DEADLOCK_WAIT = (0.02, 0.5)  # first, longest
_RECONNECT_WAIT = (0.05, 0.5)

# MariaDB errors that mean "this node cannot serve now" (Galera).
UNAVAILABLE_ERRNOS = {
    1047: "the node is not in the Galera Primary Component",
    1180: "a commit failed in flight",
}

_ROLLED_BACK = (db_exc.DBDeadlock, db_exc.DBConsistencyError, db_exc.RetryRequest)


class NodeUnavailable(db_exc.DBConnectionError):
    """1047 or 1180: the Galera node cannot serve (outside the Primary Component)."""


def _errno(exc: BaseException) -> int | None:
    args = getattr(exc, "args", None) or ()
    return args[0] if args and isinstance(args[0], int) else None


def translate_unavailable(ctx: Any) -> None:
    """``handle_error`` listener, run before oslo.db's: a DBAPI error whose
    MySQL error number is in ``UNAVAILABLE_ERRNOS`` becomes ``NodeUnavailable``
    and counts as a lost connection (SQLAlchemy then drops the pool).

    Raised rather than returned, which ends the chain: oslo.db's handler would
    otherwise replace it (with a bare OperationalError for 1180).
    """
    if _errno(ctx.original_exception) not in UNAVAILABLE_ERRNOS:
        return None
    ctx.is_disconnect = True
    if getattr(ctx, "is_pre_ping", False):
        return None  # the pool reconnects, as after any failed ping
    raise NodeUnavailable(ctx.sqlalchemy_exception or ctx.original_exception)


def install(engine: sa.Engine) -> None:
    """Register ``translate_unavailable`` on an engine, ahead of oslo.db's
    handler (enginefacade's on_engine_create hook: the writer's and the
    reader's). SQLAlchemy ignores ``insert=True`` for dialect events, so
    oslo.db's handler is taken off and put back behind it."""
    oslo = exc_filters.handler
    registered = sa.event.contains(engine, "handle_error", oslo)
    if registered:
        sa.event.remove(engine, "handle_error", oslo)
    sa.event.listen(engine, "handle_error", translate_unavailable)
    if registered:
        sa.event.listen(engine, "handle_error", oslo, retval=True)


def describe(exc: BaseException) -> str:
    """One short line for a log or an API message."""
    inner = getattr(exc, "inner_exception", None)
    text = str(inner if inner is not None else exc) or type(exc).__name__
    return text.splitlines()[0][:200]


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """Around a COMMIT: a connection lost there leaves the outcome unknown."""
    try:
        yield
    except db_exc.DBConnectionError as exc:
        raise exceptions.DatabaseOutcomeUnknown(
            f"the database connection was lost during COMMIT: {describe(exc)}") from exc


_state = threading.local()


def after_lost_commit() -> bool:
    """True in an attempt that follows one whose COMMIT lost its connection:
    that attempt's write may be in the database already."""
    return getattr(_state, "after_lost_commit", False)


def retry(*, replay_safe: bool | Callable[[dict], bool] = True, ride_outage: bool = True,
          prepare: Callable[[dict], None] | None = None) -> Callable:
    """Retry a ``Database`` method by the rules of this module.

    ``replay_safe``: may the call run again after a COMMIT whose outcome is
    unknown (a callable gets the call's arguments by name). ``ride_outage``:
    retry lost connections for ``reconnect_retry_time``, or give up at once.
    ``prepare``: runs once per call, before the first attempt, on the
    keyword arguments (e.g. to draw an id every attempt uses).
    """
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(db: Any, *args: Any, **kwargs: Any) -> Any:
            if prepare is not None:
                prepare(kwargs)
            safe = replay_safe
            if callable(replay_safe):
                call = signature.bind(db, *args, **kwargs)
                call.apply_defaults()
                safe = replay_safe(call.arguments)
            budget = db.reconnect_retry_time if ride_outage else 0.0
            if db.unavailable_since is not None:
                budget = 0.0  # known down: one attempt, until one succeeds
            return _attempts(fn, db, args, kwargs, bool(safe), budget)

        wrapper.retry_policy = {"replay_safe": replay_safe, "ride_outage": ride_outage}
        return wrapper
    return decorate


def _attempts(fn: Callable, db: Any, args: tuple, kwargs: dict, replay_safe: bool,
              budget: float) -> Any:
    started = time.monotonic()
    conflicts = 0
    conflict_wait, conflict_max = _DEADLOCK_WAIT
    reconnect_wait, reconnect_max = _RECONNECT_WAIT
    unknown = False  # an earlier attempt's COMMIT may have applied
    failures = 0
    while True:
        _state.after_lost_commit = unknown
        try:
            result = fn(db, *args, **kwargs)
        except _ROLLED_BACK as exc:
            if conflicts >= DEADLOCK_RETRIES:
                LOG.warning("%s: still conflicting after %d retries: %s", fn.__name__,
                            conflicts, describe(exc))
                if isinstance(exc, db_exc.RetryRequest):
                    raise exc.inner_exc from None
                raise
            time.sleep(random.uniform(0, conflict_wait) if conflicts else conflict_wait)
            conflicts += 1
            conflict_wait = min(conflict_wait * 2, conflict_max)
            continue
        except exceptions.DatabaseOutcomeUnknown as exc:
            unknown = True
            if not replay_safe:
                raise
            error: BaseException = exc
        except db_exc.DBConnectionError as exc:
            error = exc
        else:
            if failures:
                LOG.info("%s: the database answered again after %d failed attempt(s) "
                         "in %.2fs", fn.__name__, failures, time.monotonic() - started)
            if db.unavailable_since is not None:
                LOG.info("the database answers again after %.1fs unavailable",
                         time.monotonic() - db.unavailable_since)
                db.unavailable_since = None
            return result
        finally:
            _state.after_lost_commit = False
        failures += 1
        elapsed = time.monotonic() - started
        if elapsed >= budget:
            if budget > 0 and db.unavailable_since is None:
                db.unavailable_since = started  # longer than a failover
            kind = (exceptions.DatabaseOutcomeUnknown if unknown
                    else exceptions.DatabaseUnavailable)
            raise kind(f"{describe(error)} (gave up after {failures} attempt(s) in "
                       f"{elapsed:.1f}s)") from error
        LOG.debug("%s: %s; retrying", fn.__name__, describe(error))
        time.sleep(min(random.uniform(reconnect_wait / 2, reconnect_wait),
                       budget - elapsed))
        reconnect_wait = min(reconnect_wait * 2, reconnect_max)
