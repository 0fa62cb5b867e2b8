"""All SQL of clouddisco. Functions are named for what they do to the cloud.

Ownership changes are conditional UPDATEs whose row count says who won: Galera
does not honour SELECT ... FOR UPDATE across writer nodes, and a certification
conflict comes back as a deadlock (1213), which ``_retry`` retries. Which
errors are retried, for how long, and why each write may or may not be
replayed after a COMMIT that lost its connection: ``clouddisco.db.retry``.

Configuration
-------------

``Database.from_conf`` applies every option of the service's own
``[database]`` group (oslo.db's enginefacade would otherwise read the global
``cfg.CONF``, which clouddisco never loads, and silently ignore the service's
file): the whole group goes to ``enginefacade.configure``, which knows the
engine options (``connection``, ``slave_connection``, ``mysql_sql_mode``,
``mysql_wsrep_sync_wait``, ``connection_parameters``, pool sizes and
timeouts, ``connection_debug``, ``connection_trace``, ``sqlite_synchronous``,
``max_retries`` and ``retry_interval`` for the first connection) and
``synchronous_reader``. What it does not apply:

* ``backend``: only ``sqlalchemy`` exists; anything else is refused.
* ``asyncio_connection``, ``asyncio_slave_connection``: clouddisco has no
  asyncio code. Set, they are warned about and ignored.
* ``use_db_reconnect``, ``db_retry_interval``, ``db_inc_retry_interval``,
  ``db_max_retry_interval``, ``db_max_retries``: the retry of oslo.db's
  ``DBAPI`` wrapper, which clouddisco does not use; its own retry is in
  ``clouddisco.db.retry`` (why those options cannot serve it is said there),
  tuned by clouddisco's ``[database] reconnect_retry_time``. Set, they are
  warned about and ignored.

Reads that must see a just-committed write
------------------------------------------

Every write, and every read that a decision is taken on (the health monitor,
placement, resyncs), uses the writer connection: with HAProxy sending all
of them to one Galera node, a read there sees every write committed
through it. The decisions are compare-and-swaps on the rows they change, so
one taken on a row that another node's commit made stale loses at
certification (1213) and is retried on fresh rows.

Only the API's views of routers, agents and failover events use oslo.db's
reader: the writer too unless ``slave_connection`` is set *and*
``synchronous_reader = false``, as oslo.db documents. Then they may go to
another node, where a write just committed elsewhere may not be applied yet
(a router created, then answered 404): unless the operator sets
``mysql_wsrep_sync_wait``, clouddisco then sets it to 1 (causality checks on
reads: a read waits until the node has applied every write committed in the
cluster before it started), which is what oslo.db's help of
``synchronous_reader`` asks for on Galera. Without a reader it stays unset
(the server's value, normally 0): on the one writer node it would only add a
cluster round trip to every read and make reads wait out flow control, and
after a writer failover the new node has applied the old one's writes
within milliseconds, long before HAProxy moves over (1-2 s). Set it to 1
to be sure of that too, or to 0 to keep it off with a reader.
"""

import collections
import contextlib
import dataclasses
import datetime
import ipaddress
import random
import time
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import TypeVar

import sqlalchemy as sa
from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log as logging
from oslo_utils import uuidutils
from sqlalchemy import orm
from sqlalchemy.ext import compiler as sa_compiler

from clouddisco import exceptions
from clouddisco.db import models as m
from clouddisco.db import retry as db_retry

LOG = logging.getLogger(__name__)

_T = TypeVar("_T")
_BULK = 500  # rows per IN list: well under every backend's parameter limit

NO_AGENT_REASON = "no alive, enabled L3 agent to host the router"

# A lost race on Galera is a deadlock error: retried quickly, a few times;
# a lost connection or a node outside the Primary Component for a short
# while, where a replay cannot apply a write twice. See clouddisco.db.retry.
_retry = db_retry.retry

# [database] options with no effect in clouddisco (module docstring): a
# value other than oslo.db's default is warned about at start-up.
NOT_APPLICABLE = {
    "asyncio_connection": "clouddisco has no asyncio code",
    "asyncio_slave_connection": "clouddisco has no asyncio code",
    "use_db_reconnect": "clouddisco always retries lost connections where it is "
                        "safe, for [database] reconnect_retry_time",
    "db_retry_interval": "see [database] reconnect_retry_time",
    "db_inc_retry_interval": "see [database] reconnect_retry_time",
    "db_max_retry_interval": "see [database] reconnect_retry_time",
    "db_max_retries": "see [database] reconnect_retry_time",
}
_NOT_FOR_THE_FACADE = set(NOT_APPLICABLE) | {"backend"}


def utcnow() -> datetime.datetime:
    """This process's UTC clock. Never for liveness: heartbeats, deaths, fences
    and every cutoff compared with them use ``_db_now`` (one clock for all
    replicas; a skew or NTP step between them must not move a serving router)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class db_utcnow(sa.sql.expression.FunctionElement):
    """The database server's "now": naive UTC with microseconds, like the columns."""

    type = sa.DateTime()
    inherit_cache = True


@sa_compiler.compiles(db_utcnow)
def _db_utcnow_default(element, compiler, **kw) -> str:
    return "UTC_TIMESTAMP(6)"  # MySQL / MariaDB


@sa_compiler.compiles(db_utcnow, "sqlite")
def _db_utcnow_sqlite(element, compiler, **kw) -> str:
    # Milliseconds only, but the same clock for every connection of the file.
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _db_now(s: orm.Session) -> datetime.datetime:
    """Read the database clock once per transaction: every stamp and cutoff of
    the transaction uses this one value, so they agree with each other and with
    what every other replica writes."""
    return s.scalar(sa.select(db_utcnow()))


_KEEP = object()  # record_heartbeat: leave guard_status as it is


class _LostRace(Exception):
    """Roll back a transaction that lost a compare-and-swap midway."""


class _AddressTaken(Exception):
    """Roll back a create whose free address another create took first."""


# Rounds a create racing others for the lowest free address looks again
# itself (create_router): each round at least one of the racers wins.
ADDRESS_RACES = 64


@dataclasses.dataclass(frozen=True)
class Move:
    """One router to move off a dead agent, guarded by the binding generation."""

    router_id: str
    old_agent_id: str
    generation: int  # of the binding
    new_agent_id: str | None  # None: no survivor, unbind the router
    agent_generation: int = 0  # lease generation of the dead agent when read


class Database:
    """The db layer. One instance per process, built from ``[database]``."""

    def __init__(self, connection: str, *,
                 reconnect_retry_time: float = db_retry.RECONNECT_RETRY_TIME,
                 **options) -> None:
        """``options``: [database] options by name (enginefacade's keys);
        oslo.db's defaults for the others, never the global ``cfg.CONF``."""
        settings = {opt.dest: opt.default for opt in db_options.database_opts
                    if opt.dest not in _NOT_FOR_THE_FACADE}
        settings.update(connection=connection, sqlite_fk=True, **options)
        # Reads may go to another node: make them wait for the writes
        # committed before them (module docstring).
        self.reads_from_reader = bool(settings.get("slave_connection") and
                                      not settings.get("synchronous_reader", True))
        if self.reads_from_reader and settings.get("mysql_wsrep_sync_wait") is None:
            settings["mysql_wsrep_sync_wait"] = 1
        self.reconnect_retry_time = reconnect_retry_time
        # Monotonic time since which the database is known to be out (a
        # call gave up after reconnect_retry_time): calls then fail at once
        # until one succeeds (clouddisco.db.retry).
        self.unavailable_since: float | None = None
        self._facade = enginefacade.transaction_context()
        self._facade.configure(**settings)
        self._facade.append_on_engine_create(db_retry.install)
        self._makers: dict[bool, orm.sessionmaker] = {}

    @classmethod
    def from_conf(cls, conf) -> "Database":
        """The db layer of a service, from its own ``[database]`` group: every
        option of it, as the module docstring says."""
        group = conf.database
        options = {name: group[name] for name in group}
        backend = options.pop("backend")
        if backend != "sqlalchemy":
            raise ValueError(f"[database] backend = {backend!r}: clouddisco only has "
                             "the 'sqlalchemy' backend")
        defaults = {opt.dest: opt.default for opt in db_options.database_opts}
        for name, why in sorted(NOT_APPLICABLE.items()):
            if options.pop(name) != defaults.get(name):
                LOG.warning("[database] %s is set but not used by clouddisco: %s",
                            name, why)
        return cls(options.pop("connection"),
                   reconnect_retry_time=options.pop("reconnect_retry_time"), **options)

    @property
    def engine(self) -> sa.Engine:
        return self._facade.writer.get_engine()

    def _maker(self, view: bool) -> orm.sessionmaker:
        """The writer's sessionmaker, or for an API view oslo.db's reader's
        when reads may go to ``slave_connection`` (module docstring)."""
        reader = view and self.reads_from_reader
        maker = self._makers.get(reader)
        if maker is None:
            ctx = self._facade.reader if reader else self._facade.writer
            maker = self._makers[reader] = ctx.get_sessionmaker()
        return maker

    @contextlib.contextmanager
    def _session(self, view: bool = False) -> Iterator[orm.Session]:
        """One transaction. Its COMMIT is told apart from the statements
        before it: a connection lost there leaves the outcome unknown
        (``DatabaseOutcomeUnknown``), before it nothing was committed."""
        with self._maker(view)() as session:
            transaction = session.begin()
            try:
                yield session
                session.flush()
            except BaseException:
                _rollback(transaction)
                raise
            with db_retry.committing():
                transaction.commit()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """``_session`` without the ORM (the heartbeat paths)."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                yield conn
            except BaseException:
                _rollback(transaction)
                raise
            with db_retry.committing():
                transaction.commit()

    def ping(self) -> None:
        """Raise if the database cannot be reached (start-up check)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    @_retry()  # a read
    def now(self) -> datetime.datetime:
        """The database clock (naive UTC): what every liveness stamp uses."""
        with self._session() as s:
            return _db_now(s)

    def create_schema(self) -> None:
        """Create the tables directly (unit tests); deployments use alembic."""
        m.Base.metadata.create_all(self.engine)

    # ----------------------------------------------------------------- routers

    @_retry(replay_safe=True, prepare=lambda kw: kw.setdefault(
        "router_id", uuidutils.generate_uuid()))
    def create_router(self, *, project_id: str, name: str, ha: bool,
                      external_cidr: ipaddress.IPv4Network,
                      reserved_ips: Iterable[str] = (),
                      gateway_ip: str | None = None,
                      router_id: str | None = None) -> dict:
        """Insert a PENDING router with a gateway address from ``external_cidr``.

        A requested address must be free; otherwise the lowest free one is taken.
        Two API replicas racing for one address are settled by the unique index.

        Creates racing for the lowest free address all pick the same one, and
        all but one lose on the unique index: each loser looks again at once,
        in a new transaction that sees the winner's address taken, up to
        ``ADDRESS_RACES`` times, without using up the deadlock retries (which
        a dozen concurrent creates did: the last losers were a 500).

        ``router_id`` is drawn once per call, before the first attempt: an
        attempt that finds the router already there (an earlier attempt's
        COMMIT lost its connection after all) returns it rather than insert a
        second router.
        """
        for race in range(1, ADDRESS_RACES + 1):
            try:
                return self._insert_router(
                    project_id=project_id, name=name, ha=ha, external_cidr=external_cidr,
                    reserved_ips=reserved_ips, gateway_ip=gateway_ip, router_id=router_id)
            except _AddressTaken:
                time.sleep(random.uniform(0, 0.005 * race))
        # Still losing: the retry's backoff spreads the contenders out.
        raise db_exc.RetryRequest(db_exc.DBDeadlock())

    def _insert_router(self, *, project_id: str, name: str, ha: bool,
                       external_cidr: ipaddress.IPv4Network, reserved_ips: Iterable[str],
                       gateway_ip: str | None, router_id: str) -> dict:
        """One attempt of ``create_router``; ``_AddressTaken`` when another
        create took the lowest free address first."""
        with self._session() as s:
            done = s.get(m.Router, router_id)
            if done is not None:
                return _router_dict(done, None)
            used = set(s.scalars(sa.select(m.Router.gateway_ip)))
            if gateway_ip is not None:
                _check_requested_ip(gateway_ip, external_cidr, reserved_ips)
                if gateway_ip in used:
                    raise exceptions.Conflict(
                        f"gateway address {gateway_ip} is already in use")
                ip = gateway_ip
            else:
                ip = _first_free_ip(external_cidr, used | set(reserved_ips))
            now = _db_now(s)
            router = m.Router(id=router_id, project_id=project_id,
                              name=name, ha=ha, gateway_ip=ip,
                              gateway_prefixlen=external_cidr.prefixlen,
                              gateway_mac=_random_mac(), status=m.PENDING,
                              generation=0, created_at=now, updated_at=now)
            s.add(router)
            try:
                s.flush()
            except db_exc.DBDuplicateEntry:
                if gateway_ip is not None:
                    raise exceptions.Conflict(
                        f"gateway address {gateway_ip} is already in use") from None
                # Another create took the same free address: look again.
                raise _AddressTaken() from None
            return _router_dict(router, None)

    @_retry()  # a read
    def list_routers(self, project_id: str | None = None, limit: int = 1000,
                     lease_time: float | None = None, marker: str | None = None
                     ) -> list[dict]:
        """Routers as users see them, oldest first (``created_at``, then
        ``id``: a stable order, so pages neither repeat nor skip a router);
        with ``lease_time``, an ACTIVE router whose node may no longer serve
        it is shown DOWN (see ``_router_view``).

        ``marker``: the id of the last router of the previous page; the list
        starts after it. A marker that names no router the caller may see
        (``project_id``) raises ``InvalidMarker``.
        """
        with self._session(view=True) as s:
            now = _db_now(s)
            q = _routers_with_agent().order_by(m.Router.created_at, m.Router.id).limit(limit)
            if project_id is not None:
                q = q.where(m.Router.project_id == project_id)
            if marker is not None:
                mq = sa.select(m.Router.created_at).where(m.Router.id == marker)
                if project_id is not None:
                    mq = mq.where(m.Router.project_id == project_id)
                after = s.execute(mq).first()
                if after is None:
                    raise exceptions.InvalidMarker(f"marker {marker} names no router")
                q = q.where(sa.or_(m.Router.created_at > after[0],
                                   sa.and_(m.Router.created_at == after[0],
                                           m.Router.id > marker)))
            return [_router_view(r, a, now, lease_time) for r, a in s.execute(q)]

    @_retry()  # a read
    def get_router(self, router_id: str, project_id: str | None = None,
                   lease_time: float | None = None) -> dict:
        """One router; ``lease_time`` as for ``list_routers``."""
        with self._session(view=True) as s:
            now = _db_now(s)
            q = _routers_with_agent().where(m.Router.id == router_id)
            if project_id is not None:
                q = q.where(m.Router.project_id == project_id)
            row = s.execute(q).first()
            if row is None:
                raise exceptions.NotFound(f"router {router_id} not found")
            return _router_view(row[0], row[1], now, lease_time)

    @_retry(replay_safe=True)  # sets the value asked for
    def update_router(self, router_id: str, project_id: str | None = None, *,
                      name: str) -> None:
        """Rename a router. Nothing the data plane uses changes, so neither
        does the generation; a DELETING router is a 409."""
        with self._session() as s:
            router = self._get_router_row(s, router_id, project_id)
            done = s.execute(sa.update(m.Router)
                             .where(m.Router.id == router.id, m.Router.status != m.DELETING)
                             .values(name=name, updated_at=_db_now(s))).rowcount
            if not done:
                raise exceptions.Conflict(f"router {router_id} is being deleted")

    @_retry(replay_safe=True)  # conditional on not DELETING yet
    def begin_router_delete(self, router_id: str, project_id: str | None = None) -> dict:
        """Mark a router DELETING; the scheduler and its agent finish the job.

        One conditional UPDATE (it waits for, then applies on top of, a
        racing bind or report), bumping the generation in SQL so that every
        compare-and-swap read before it loses. DELETING is final: no other
        status write applies to a DELETING router.
        """
        with self._session() as s:
            router = self._get_router_row(s, router_id, project_id)
            s.execute(sa.update(m.Router)
                      .where(m.Router.id == router.id, m.Router.status != m.DELETING)
                      .values(status=m.DELETING, status_reason=None,
                              generation=m.Router.generation + 1,
                              updated_at=_db_now(s)))
            # Re-read what won: this delete, an earlier one, or a scheduler that
            # dropped the row meanwhile (then it is gone: 404, as after it). A
            # locking read: InnoDB's snapshot would still show the row as read.
            router = s.scalars(sa.select(m.Router).where(m.Router.id == router.id)
                               .with_for_update()
                               .execution_options(populate_existing=True)).first()
            if router is None:
                raise exceptions.NotFound(f"router {router_id} not found")
            return _router_dict(router, None)

    @_retry(replay_safe=True)  # compare-and-swap on the binding
    def delete_unserved_router(self, router_id: str, agent_id: str | None) -> bool:
        """Drop a DELETING router that no live agent can be asked to remove,
        if its active binding is still on ``agent_id`` (None: still unbound).

        False, dropping nothing, when it has moved since the caller looked: a
        failover that read the router before the DELETE rebinds it to a live
        agent and sends it there. Dropping the row then would leave that copy
        serving, and free its gateway address for the next router (nemesis
        seed 102: two namespaces with one address on one node for 13 s). The
        caller looks again; the router is now that agent's to remove.
        """
        rb = m.RouterBinding
        with self._session() as s:
            bound = s.execute(sa.select(rb.agent_id).where(
                rb.router_id == router_id, rb.role == m.ROLE_ACTIVE).with_for_update()).first()
            if (bound[0] if bound else None) != agent_id:
                return False
            s.execute(sa.delete(rb).where(rb.router_id == router_id))
            return s.execute(sa.delete(m.Router).where(
                m.Router.id == router_id, m.Router.status == m.DELETING)).rowcount > 0

    @_retry()  # a read
    def agent_generation(self, host: str) -> int | None:
        """The lease generation of ``host``'s agent; None if it never registered."""
        with self._session() as s:
            return s.execute(sa.select(m.Agent.lease_generation)
                             .where(m.Agent.host == host)).scalar()

    @_retry()  # a read
    def router_placement(self, router_id: str) -> tuple[dict, dict | None]:
        """The router and the agent row (or None) of its active binding."""
        with self._session() as s:
            row = s.execute(_routers_with_agent().where(m.Router.id == router_id)).first()
            if row is None:
                raise exceptions.NotFound(f"router {router_id} not found")
            router, agent = row
            return _router_dict(router, agent), (_agent_row(agent) if agent else None)

    @staticmethod
    def _get_router_row(s: orm.Session, router_id: str, project_id: str | None) -> m.Router:
        q = sa.select(m.Router).where(m.Router.id == router_id)
        if project_id is not None:
            q = q.where(m.Router.project_id == project_id)
        router = s.scalars(q).first()
        if router is None:
            raise exceptions.NotFound(f"router {router_id} not found")
        return router

    # ------------------------------------------------------------------ agents

    @_retry(replay_safe=lambda call: call["registration_id"] is not None)
    def register_agent(self, host: str, namespace_prefix: str,
                       agent_type: str = "l3", registration_id: str | None = None) -> dict:
        """Create or refresh an agent row; a (re)start bumps lease_generation.

        A retry of the registration that set the current generation (same
        ``registration_id``, agent neither dead nor fenced since) returns that
        generation again: otherwise a retried call whose first answer came
        late would supersede the generation the agent already took, and its
        node would fence a healthy lease (seen in nemesis seed 18).
        """
        with self._session() as s:
            now = _db_now(s)
            agent = s.scalars(sa.select(m.Agent).where(m.Agent.host == host)
                              .with_for_update()).first()
            if (agent is not None and registration_id is not None and
                    agent.registration_id == registration_id and
                    agent.dead_since is None and agent.fenced_at is None):
                agent.heartbeat_at = now
                return _agent_row(agent)
            if agent is None:
                agent = m.Agent(id=uuidutils.generate_uuid(), host=host,
                                agent_type=agent_type, admin_state_up=True,
                                lease_generation=0, created_at=now)
                s.add(agent)
            agent.namespace_prefix = namespace_prefix
            agent.heartbeat_at = now
            agent.started_at = now
            agent.dead_since = None
            agent.fenced_at = None
            agent.lease_generation = (agent.lease_generation or 0) + 1
            agent.registration_id = registration_id
            try:
                s.flush()
            except db_exc.DBDuplicateEntry:
                raise db_exc.RetryRequest(db_exc.DBDeadlock()) from None
            return _agent_row(agent)

    # A later stamp is the safe direction, but a report is worth its answer
    # only within its sender's deadline: the next report is its retry.
    @_retry(replay_safe=True, ride_outage=False)
    def record_heartbeat(self, host: str, generation: int | None = None,
                         guard_status: "str | None | object" = _KEEP) -> dict | None:
        """Store a received state report; None when the report renews nothing.

        ``guard_status``: what the report says of the node guard (None: it
        does not say); left unchanged when not given (lease renewals by the
        guard itself).

        A report renews the lease only for the agent's current lease generation
        and only while the agent is not declared dead: a dead or superseded
        agent process must register again (and resync) before it serves.

        With ``generation`` given (every current agent and guard) this is one
        conditional UPDATE stamped in SQL: it is the hot path of every node's
        heartbeat, and reading the row and the clock first cost most of a
        report's CPU. The result then holds only what the UPDATE proves.
        """
        if generation is not None:
            values: dict = {"heartbeat_at": db_utcnow()}
            if guard_status is not _KEEP:
                values["guard_status"] = guard_status
            with self._connection() as conn:
                done = conn.execute(sa.update(m.Agent)
                                    .where(m.Agent.host == host,
                                           m.Agent.lease_generation == generation,
                                           m.Agent.dead_since.is_(None))
                                    .values(**values)).rowcount
            return {"host": host, "lease_generation": generation} if done else None
        with self._session() as s:
            now = _db_now(s)
            agent = s.scalars(sa.select(m.Agent).where(m.Agent.host == host)).first()
            if agent is None or agent.dead_since is not None:
                return None
            if generation is not None and generation != agent.lease_generation:
                return None
            values: dict = {"heartbeat_at": now}
            if guard_status is not _KEEP:
                values["guard_status"] = guard_status
            done = s.execute(sa.update(m.Agent)
                             .where(m.Agent.id == agent.id,
                                    m.Agent.lease_generation == agent.lease_generation,
                                    m.Agent.dead_since.is_(None))
                             .values(**values)).rowcount
            if not done:
                return None
            return dict(_agent_row(agent), **values)

    @_retry(replay_safe=True, ride_outage=False)  # as record_heartbeat
    def record_heartbeats(self, reports: Sequence[tuple[str, int, str | None]]
                          ) -> set[tuple[str, int]]:
        """Store a batch of received state reports: ``(host, lease generation,
        guard status)`` each. Returns the ``(host, generation)`` pairs that
        renewed a lease, by the rule of ``record_heartbeat``.

        One transaction and one database-clock reading for the whole batch,
        one UPDATE per guard status (nearly always one): this is what lets one
        replica carry hundreds of agents. A row renewed here carries exactly
        the timestamp read, and the UPDATE holds its lock to the commit, so the
        SELECT that follows tells which reports renewed.
        """
        if not reports:
            return set()
        by_guard: dict = collections.defaultdict(list)
        for host, generation, guard in reports:
            by_guard[guard].append((host, generation))
        with self._connection() as conn:
            now = conn.scalar(sa.select(db_utcnow()))
            for guard, pairs in by_guard.items():
                for chunk in _chunks(pairs, _BULK):
                    # "host IN" first: the unique index then bounds what the
                    # UPDATE reads and locks to these rows (a row-value IN
                    # alone may be planned as a scan that locks every agent).
                    conn.execute(sa.update(m.Agent)
                                 .where(m.Agent.host.in_([h for h, _ in chunk]),
                                        sa.tuple_(m.Agent.host,
                                                  m.Agent.lease_generation).in_(chunk),
                                        m.Agent.dead_since.is_(None))
                                 .values(heartbeat_at=now, guard_status=guard))
            renewed = set()
            hosts = sorted({host for host, _, _ in reports})
            for chunk in _chunks(hosts, _BULK):
                renewed.update((host, generation) for host, generation in conn.execute(
                    sa.select(m.Agent.host, m.Agent.lease_generation)
                    .where(m.Agent.host.in_(chunk), m.Agent.heartbeat_at == now,
                           m.Agent.dead_since.is_(None))))
        return {(host, generation) for host, generation, _ in reports} & renewed

    @_retry(replay_safe=True)  # keeps the first fence and death
    def fence_agent(self, host: str, generation: int) -> dict | None:
        """Record that ``host`` removed the routers of lease ``generation``.

        The agent is dead from now on, so the monitor moves its routers at once.
        None when the report is stale (the agent registered again since).
        """
        with self._session() as s:
            now = _db_now(s)
            agent = s.scalars(sa.select(m.Agent).where(m.Agent.host == host)).first()
            if agent is None or agent.lease_generation != generation:
                return None
            s.execute(sa.update(m.Agent)
                      .where(m.Agent.id == agent.id, m.Agent.lease_generation == generation)
                      .values(fenced_at=agent.fenced_at or now,
                              dead_since=agent.dead_since or now))
            return dict(_agent_row(agent), fenced_at=agent.fenced_at or now,
                        dead_since=agent.dead_since or now)

    @_retry()  # a read
    def list_agents(self, down_time: float, limit: int | None = None,
                    marker: str | None = None) -> list[dict]:
        """Agents by host name (unique: a stable order for pages); ``marker``
        as for ``list_routers``."""
        with self._session(view=True) as s:
            now = _db_now(s)
            q = _agents_with_load().order_by(m.Agent.host)
            if marker is not None:
                after = s.execute(sa.select(m.Agent.host).where(m.Agent.id == marker)).first()
                if after is None:
                    raise exceptions.InvalidMarker(f"marker {marker} names no agent")
                q = q.where(m.Agent.host > after[0])
            if limit is not None:
                q = q.limit(limit)
            return [_agent_dict(a, load, now, down_time) for a, load in s.execute(q)]

    @_retry()  # a read
    def get_agent(self, agent_id: str, down_time: float) -> dict:
        with self._session(view=True) as s:
            row = s.execute(_agents_with_load().where(m.Agent.id == agent_id)).first()
            if row is None:
                raise exceptions.NotFound(f"agent {agent_id} not found")
            return _agent_dict(row[0], row[1], _db_now(s), down_time)

    @_retry(replay_safe=True)  # the value asked for
    def set_agent_admin_state(self, agent_id: str, admin_state_up: bool) -> None:
        with self._session() as s:
            done = s.execute(sa.update(m.Agent).where(m.Agent.id == agent_id)
                             .values(admin_state_up=admin_state_up)).rowcount
            if not done:
                raise exceptions.NotFound(f"agent {agent_id} not found")

    @_retry()  # a read
    def eligible_agents(self, down_time: float) -> list[dict]:
        """Alive, enabled agents with their active router counts (``load``)."""
        with self._session() as s:
            cutoff = _db_now(s) - datetime.timedelta(seconds=down_time)
            q = _agents_with_load().where(m.Agent.admin_state_up.is_(True),
                                          m.Agent.dead_since.is_(None),
                                          m.Agent.heartbeat_at >= cutoff)
            return [dict(_agent_row(a), load=load) for a, load in s.execute(q)]

    # ---------------------------------------------------------------- bindings

    @_retry(replay_safe=True)  # finds its own binding on a replay
    def bind_router(self, router_id: str, agent_id: str) -> bool:
        """Bind an unbound router. False when it is already bound, gone or
        being deleted.

        The status write is a compare-and-swap on the generation read: a
        DELETE (or another replica's bind) committed between this read and
        this write makes the bind lose, where an unconditional write would
        bring a router the API already answered 204 for back to PENDING.
        """
        try:
            with self._session() as s:
                if db_retry.after_lost_commit() and s.scalar(
                        sa.select(m.RouterBinding.agent_id).where(
                            m.RouterBinding.router_id == router_id,
                            m.RouterBinding.role == m.ROLE_ACTIVE)) == agent_id:
                    return True  # the earlier attempt's COMMIT did apply
                now = _db_now(s)
                row = s.execute(sa.select(m.Router.status, m.Router.generation)
                                .where(m.Router.id == router_id)).first()
                if row is None or row.status == m.DELETING:
                    return False
                won = s.execute(sa.update(m.Router).where(
                    m.Router.id == router_id, m.Router.generation == row.generation,
                    m.Router.status != m.DELETING).values(
                        status=m.PENDING, status_reason=None, updated_at=now,
                        generation=m.Router.generation + 1)).rowcount
                if not won:
                    return False
                try:
                    s.execute(sa.insert(m.RouterBinding).values(
                        router_id=router_id, role=m.ROLE_ACTIVE, agent_id=agent_id,
                        generation=0, bound_at=now))
                except db_exc.DBDuplicateEntry:
                    # Already bound: undo the status write with the transaction.
                    raise _LostRace() from None
                return True
        except _LostRace:
            return False

    @_retry(replay_safe=False)  # may overwrite a newer status
    def set_router_error(self, router_id: str, reason: str) -> None:
        # One UPDATE conditional on the status it finds when it writes (a
        # locking read on InnoDB): it cannot undo a delete committed meanwhile.
        with self._session() as s:
            s.execute(sa.update(m.Router)
                      .where(m.Router.id == router_id, m.Router.status != m.DELETING)
                      .values(status=m.ERROR, status_reason=reason[:255],
                              generation=m.Router.generation + 1, updated_at=_db_now(s)))

    @_retry()  # a read
    def routers_bound_to(self, host: str) -> list[dict]:
        """Every router actively bound to ``host`` (what its agent must run)."""
        with self._session() as s:
            q = (sa.select(m.Router, m.Agent)
                 .join(m.RouterBinding, m.RouterBinding.router_id == m.Router.id)
                 .join(m.Agent, m.Agent.id == m.RouterBinding.agent_id)
                 .where(m.Agent.host == host, m.RouterBinding.role == m.ROLE_ACTIVE))
            return [_router_dict(r, a) for r, a in s.execute(q)]

    @_retry(replay_safe=False)  # may overwrite a newer report
    def apply_router_reports(self, host: str, reports: dict[str, tuple[str, str | None]]
                             ) -> dict[str, str]:
        """Apply an agent's router outcomes: ACTIVE, ERROR or DELETED.

        Only reports from the agent the router is bound to count: a late answer
        from a router's previous agent must not overwrite the new placement.
        Returns {router_id: what happened} for logging.
        """
        outcome: dict[str, str] = {}
        ids = list(reports)
        # A few set-based statements per batch, not a few per router: a
        # failover brings hundreds of reports per agent at once.
        with self._session() as s:
            now = _db_now(s)
            agent = s.scalars(sa.select(m.Agent).where(m.Agent.host == host)).first()
            if agent is None:
                return {rid: "unknown host" for rid in reports}
            status_of = dict(s.execute(sa.select(m.Router.id, m.Router.status)
                                       .where(m.Router.id.in_(ids))).tuples().all())
            holders = collections.defaultdict(set)
            for router_id, agent_id in s.execute(
                    sa.select(m.RouterBinding.router_id, m.RouterBinding.agent_id)
                    .where(m.RouterBinding.router_id.in_(ids))):
                holders[router_id].add(agent_id)
            gone: list[str] = []
            updates: dict[tuple[str, str | None], list[str]] = {}
            for router_id, (status, reason) in reports.items():
                current = status_of.get(router_id)
                bound_here = agent.id in holders[router_id]
                if current is None:
                    outcome[router_id] = "gone"
                elif status == "DELETED":
                    if current == m.DELETING and (bound_here or not holders[router_id]):
                        gone.append(router_id)
                        outcome[router_id] = "deleted"
                    else:
                        outcome[router_id] = "ignored"
                elif not bound_here or current == m.DELETING:
                    outcome[router_id] = "ignored"
                else:
                    updates.setdefault((status, reason[:255] if reason else None),
                                       []).append(router_id)
                    outcome[router_id] = status.lower()
            if gone:  # bindings go with them (ON DELETE CASCADE)
                s.execute(sa.delete(m.Router).where(m.Router.id.in_(gone)))
            for (status, reason), ids_ in updates.items():
                s.execute(sa.update(m.Router)
                          .where(m.Router.id.in_(ids_), m.Router.status != m.DELETING)
                          .values(status=status, status_reason=reason, updated_at=now,
                                  generation=m.Router.generation + 1))
            activated = updates.get((m.ACTIVE, None), [])
            if activated:
                s.execute(sa.update(m.FailoverEvent)
                          .where(m.FailoverEvent.router_id.in_(activated),
                                 m.FailoverEvent.new_agent_id == agent.id,
                                 m.FailoverEvent.active_at.is_(None))
                          .values(active_at=now))
        return outcome

    # ---------------------------------------------------------- health monitor

    @_retry(replay_safe=False, ride_outage=False)  # see db.retry
    def mark_dead_agents(self, down_time: float, agent_ids: Sequence[str] | None = None
                         ) -> list[dict]:
        """Declare dead every agent (of ``agent_ids``, default all) silent for
        ``down_time``; return those marked now.

        Conditional on the heartbeat seen, so a report that lands meanwhile wins.
        """
        marked = []
        with self._session() as s:
            now = _db_now(s)
            cutoff = now - datetime.timedelta(seconds=down_time)
            q = sa.select(m.Agent).where(m.Agent.dead_since.is_(None),
                                         m.Agent.heartbeat_at < cutoff)
            if agent_ids is not None:
                q = q.where(m.Agent.id.in_(list(agent_ids)))
            stale = s.scalars(q).all()
            for agent in stale:
                done = s.execute(sa.update(m.Agent)
                                 .where(m.Agent.id == agent.id,
                                        m.Agent.dead_since.is_(None),
                                        m.Agent.heartbeat_at == agent.heartbeat_at)
                                 .values(dead_since=now)).rowcount
                if done:
                    marked.append(dict(_agent_row(agent), dead_since=now))
        return marked

    @_retry()  # a read
    def seconds_to_next_expiry(self, down_time: float,
                               after: datetime.datetime | None = None) -> float | None:
        """Seconds (database clock) until the first agent now alive will have
        been silent for ``down_time``; negative when that is already past.

        ``after``: only expiries at or after this database time count (the
        start of the caller's last pass, which already judged the earlier
        ones). None when no such agent.
        """
        with self._session() as s:
            now = _db_now(s)
            q = sa.select(sa.func.min(m.Agent.heartbeat_at)).where(
                m.Agent.dead_since.is_(None))
            if after is not None:
                # An agent is dead once its silence *exceeds* down_time, so a
                # pass at ``after`` judged the deadlines strictly before it.
                q = q.where(m.Agent.heartbeat_at >=
                            after - datetime.timedelta(seconds=down_time))
            oldest = s.scalar(q)
        if oldest is None:
            return None
        return (oldest + datetime.timedelta(seconds=down_time) - now).total_seconds()

    @_retry()  # a read
    def bindings_on_dead_agents(self, agent_ids: Sequence[str] | None = None) -> list[dict]:
        """Active bindings whose agent is declared dead: the routers to move,
        with what their new agent needs (so a failover reads them once)."""
        rb, a, r = m.RouterBinding, m.Agent, m.Router
        with self._session() as s:
            q = (sa.select(rb.router_id, rb.generation, r.status, r.gateway_ip,
                           r.gateway_prefixlen, r.gateway_mac, a.id, a.host,
                           a.lease_generation, a.heartbeat_at, a.dead_since, a.fenced_at,
                           a.guard_status)
                 .join(a, a.id == rb.agent_id)
                 .join(r, r.id == rb.router_id)
                 .where(a.dead_since.is_not(None), rb.role == m.ROLE_ACTIVE)
                 .order_by(rb.router_id))
            if agent_ids is not None:
                q = q.where(a.id.in_(list(agent_ids)))
            return [{"router_id": rid, "generation": gen, "router_status": status,
                     "external_gateway_ip": ip, "external_gateway_prefixlen": plen,
                     "external_gateway_mac": mac, "agent_id": agent_id, "host": host,
                     "agent_generation": lease_gen, "heartbeat_at": hb,
                     "dead_since": dead, "fenced_at": fenced, "guard_status": guard}
                    for (rid, gen, status, ip, plen, mac, agent_id, host, lease_gen, hb,
                         dead, fenced, guard) in s.execute(q)]

    @_retry(replay_safe=False, ride_outage=False)  # see db.retry
    def move_bindings(self, moves: Sequence[Move], *, cause: str, detected_by: str,
                      last_heartbeat: dict[str, datetime.datetime],
                      detected_at: dict[str, datetime.datetime],
                      fenced_at: dict[str, datetime.datetime | None] | None = None
                      ) -> list[Move]:
        """Apply moves by compare-and-swap; return the ones this caller won.

        Per dead agent, the move first bumps the agent's lease generation, on
        condition that it is still dead at the generation the caller read. So a
        racing monitor, or the agent registering again meanwhile, makes this
        whole agent's share a lost race, and any late report or renewal from
        the old agent process is refused from now on. On Galera the two writers
        of the agent row conflict at certification (1213), which is retried and
        then loses on the guard. Each won move records a failover event.
        """
        won: list[Move] = []
        fenced_at = fenced_at or {}
        by_agent: dict[str, list[Move]] = {}
        for mv in moves:
            by_agent.setdefault(mv.old_agent_id, []).append(mv)
        with self._session() as s:
            now = _db_now(s)
            for agent_id, agent_moves in by_agent.items():
                guard = s.execute(sa.update(m.Agent).where(
                    m.Agent.id == agent_id, m.Agent.dead_since.is_not(None),
                    m.Agent.lease_generation == agent_moves[0].agent_generation)
                    .values(lease_generation=m.Agent.lease_generation + 1)).rowcount
                if not guard:
                    continue
                for chunk in _chunks(agent_moves, _BULK):
                    won += self._move_chunk(
                        s, chunk, now, cause="agent_fenced" if fenced_at.get(agent_id)
                        else cause, detected_by=detected_by,
                        last_heartbeat=last_heartbeat.get(agent_id),
                        detected_at=detected_at.get(agent_id, now),
                        fenced_at=fenced_at.get(agent_id))
        return won

    @staticmethod
    def _move_chunk(s: orm.Session, moves: Sequence[Move], now: datetime.datetime, *,
                    cause: str, detected_by: str, last_heartbeat, detected_at,
                    fenced_at) -> list[Move]:
        """Move one dead agent's bindings with a few set-based statements.

        The bindings still as the caller read them (same agent, same
        generation) are locked first; exactly those move. One statement per
        target agent rather than three per router: 1,000 routers moved
        row by row held the survivors' agent rows (foreign-key locks) for
        seconds.
        """
        old_agent = moves[0].old_agent_id
        rb = m.RouterBinding
        current = set(s.execute(
            sa.select(rb.router_id, rb.generation)
            .where(rb.role == m.ROLE_ACTIVE, rb.agent_id == old_agent,
                   sa.tuple_(rb.router_id, rb.generation).in_(
                       [(mv.router_id, mv.generation) for mv in moves]))
            .with_for_update()).tuples().all())
        won = [mv for mv in moves if (mv.router_id, mv.generation) in current]
        targets: dict[str | None, list[Move]] = {}
        for mv in won:
            targets.setdefault(mv.new_agent_id, []).append(mv)
        for new_agent, group in targets.items():
            ids = [mv.router_id for mv in group]
            mine = (rb.role == m.ROLE_ACTIVE, rb.agent_id == old_agent, rb.router_id.in_(ids))
            if new_agent is None:
                s.execute(sa.delete(rb).where(*mine))
                status, reason = m.ERROR, NO_AGENT_REASON
            else:
                s.execute(sa.update(rb).where(*mine).values(
                    agent_id=new_agent, generation=rb.generation + 1, bound_at=now))
                status, reason = m.PENDING, None
            s.execute(sa.update(m.Router)
                      .where(m.Router.id.in_(ids), m.Router.status != m.DELETING)
                      .values(status=status, status_reason=reason, updated_at=now,
                              generation=m.Router.generation + 1))
        if won:
            s.execute(sa.insert(m.FailoverEvent), [
                {"router_id": mv.router_id, "old_agent_id": old_agent,
                 "new_agent_id": mv.new_agent_id, "cause": cause,
                 "detected_by": detected_by, "last_heartbeat_at": last_heartbeat,
                 "detected_at": detected_at, "fenced_at": fenced_at,
                 "rescheduled_at": now if mv.new_agent_id else None, "detail": None}
                for mv in won])
        return won

    @_retry()  # a read
    def agent_health(self) -> list[dict]:
        """Every agent with what the monitor needs: admin state, heartbeat,
        death, fence, ``load`` (active routers) and ``silence`` (seconds since
        its last report, by the database clock)."""
        with self._session() as s:
            now = _db_now(s)
            return [dict(_agent_row(a), load=int(load),
                         silence=(now - a.heartbeat_at).total_seconds())
                    for a, load in s.execute(_agents_with_load())]

    @_retry()  # a read
    def live_services(self, binary: str, down_time: float) -> list[str]:
        """Hosts of ``binary`` replicas that heartbeated within ``down_time``."""
        with self._session() as s:
            cutoff = _db_now(s) - datetime.timedelta(seconds=down_time)
            return sorted(s.scalars(sa.select(m.Service.host).where(
                m.Service.binary == binary, m.Service.heartbeat_at >= cutoff)))

    @_retry()  # a read
    def routers_to_retry(self, older_than: float, unbound_older_than: float = 1.0
                         ) -> dict[str, list[dict]]:
        """Unfinished routers, by what the monitor should do with them.

        ``unbound``: not DELETING, no binding, unchanged for ``unbound_older_than``
        seconds (younger ones are still in flight to a scheduler): place them;
        ``pending``: PENDING, ERROR or DELETING on a live agent, unchanged for
        ``older_than`` seconds: send them again;
        ``deleting_unbound``: DELETING with no binding: drop them.
        """
        with self._session() as s:
            now = _db_now(s)
            cutoff = now - datetime.timedelta(seconds=older_than)
            unbound_cutoff = now - datetime.timedelta(seconds=unbound_older_than)
            rows = s.execute(_routers_with_agent().where(
                m.Router.status.in_([m.PENDING, m.DELETING, m.ERROR]))).all()
            out: dict[str, list[dict]] = {"unbound": [], "pending": [],
                                          "deleting_unbound": []}
            for router, agent in rows:
                d = _router_dict(router, agent)
                if agent is None:
                    if router.status == m.DELETING:
                        out["deleting_unbound"].append(d)
                    elif router.updated_at < unbound_cutoff:
                        out["unbound"].append(d)
                elif agent.dead_since is None and router.updated_at < cutoff:
                    # ERROR too: an agent's failure (e.g. a transient kernel
                    # error) is retried every older_than seconds. The casts
                    # name the registration they are for.
                    out["pending"].append(dict(d, agent_lease_generation=agent.lease_generation))
            return out

    @_retry()  # a read
    def routers_by_id(self, router_ids: Sequence[str]) -> list[dict]:
        with self._session() as s:
            q = _routers_with_agent().where(m.Router.id.in_(list(router_ids)))
            return [_router_dict(r, a) for r, a in s.execute(q)]

    @_retry(replay_safe=True)
    def touch_routers(self, router_ids: Sequence[str]) -> None:
        with self._session() as s:
            s.execute(sa.update(m.Router).where(m.Router.id.in_(list(router_ids)))
                      .values(updated_at=_db_now(s)))

    # ------------------------------------------------------------------ events

    @_retry()  # a read
    def list_failover_events(self, router_id: str | None = None, limit: int = 1000,
                             *, agent_id: str | None = None,
                             since: datetime.datetime | None = None,
                             marker: int | None = None) -> list[dict]:
        """Events newest first (by ``id``, which only grows: a stable order).

        ``agent_id``: events that moved a router off or onto that agent;
        ``since``: detected at or after that time (naive UTC); ``marker``: the
        id of the last event of the previous page (``InvalidMarker`` when no
        such event exists).
        """
        fe = m.FailoverEvent
        with self._session(view=True) as s:
            q = sa.select(fe).order_by(fe.id.desc()).limit(limit)
            if router_id:
                q = q.where(fe.router_id == router_id)
            if agent_id:
                q = q.where(sa.or_(fe.old_agent_id == agent_id, fe.new_agent_id == agent_id))
            if since is not None:
                q = q.where(fe.detected_at >= since)
            if marker is not None:
                if s.get(fe, marker) is None:
                    raise exceptions.InvalidMarker(f"marker {marker} names no failover event")
                q = q.where(fe.id < marker)
            return [_event_dict(e) for e in s.scalars(q)]

    @_retry()  # a read
    def get_failover_event(self, event_id: int) -> dict:
        with self._session(view=True) as s:
            event = s.get(m.FailoverEvent, event_id)
            if event is None:
                raise exceptions.NotFound(f"failover event {event_id} not found")
            return _event_dict(event)

    @_retry(replay_safe=True)  # once per death
    def record_unguarded(self, *, agent_id: str, dead_since: datetime.datetime,
                         last_heartbeat: datetime.datetime, detected_by: str,
                         detail: str) -> bool:
        """Record, once per death of ``agent_id``, that its routers were not
        moved because its node guard was not ok. True when recorded now."""
        with self._session() as s:
            seen = s.scalar(sa.select(sa.func.count()).select_from(m.FailoverEvent).where(
                m.FailoverEvent.cause == "unguarded",
                m.FailoverEvent.old_agent_id == agent_id,
                m.FailoverEvent.detected_at == dead_since))
            if seen:
                return False
            s.add(m.FailoverEvent(cause="unguarded", detected_by=detected_by,
                                  old_agent_id=agent_id, detail=detail[:1024],
                                  last_heartbeat_at=last_heartbeat,
                                  detected_at=dead_since))
            return True

    @_retry(replay_safe=False)  # a second row
    def record_event(self, *, cause: str, detected_by: str, detail: str) -> None:
        """An event that moved nothing (e.g. a failover refused by a safety check)."""
        with self._session() as s:
            s.add(m.FailoverEvent(cause=cause, detected_by=detected_by,
                                  detail=detail[:1024], detected_at=_db_now(s)))

    # ---------------------------------------------------------------- services

    @_retry(replay_safe=True)  # a later stamp
    def heartbeat_service(self, binary: str, host: str) -> datetime.datetime:
        """Stamp this replica's heartbeat; return the database time it used."""
        with self._session() as s:
            now = _db_now(s)
            done = s.execute(sa.update(m.Service)
                             .where(m.Service.binary == binary, m.Service.host == host)
                             .values(heartbeat_at=now)).rowcount
            if not done:
                s.add(m.Service(binary=binary, host=host, heartbeat_at=now,
                                started_at=now))
                try:
                    s.flush()
                except db_exc.DBDuplicateEntry:
                    raise db_exc.RetryRequest(db_exc.DBDeadlock()) from None
            return now


# --------------------------------------------------------------------- helpers

def _rollback(transaction) -> None:
    """Roll back after an error without hiding it: on a lost connection the
    rollback may fail too, and the first error is the one to report."""
    try:
        transaction.rollback()
    except Exception:  # noqa: BLE001
        LOG.debug("rollback after an error failed", exc_info=True)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _routers_with_agent() -> sa.Select:
    return (sa.select(m.Router, m.Agent)
            .outerjoin(m.RouterBinding, sa.and_(m.RouterBinding.router_id == m.Router.id,
                                                m.RouterBinding.role == m.ROLE_ACTIVE))
            .outerjoin(m.Agent, m.Agent.id == m.RouterBinding.agent_id))


def _agents_with_load() -> sa.Select:
    load = (sa.select(m.RouterBinding.agent_id, sa.func.count().label("n"))
            .where(m.RouterBinding.role == m.ROLE_ACTIVE)
            .group_by(m.RouterBinding.agent_id).subquery())
    return (sa.select(m.Agent, sa.func.coalesce(load.c.n, 0))
            .outerjoin(load, load.c.agent_id == m.Agent.id))


def _first_free_ip(net: ipaddress.IPv4Network, taken: set[str]) -> str:
    for ip in net.hosts():
        if str(ip) not in taken:
            return str(ip)
    raise exceptions.NoAddressAvailable(f"no free gateway address left in {net}")


def _check_requested_ip(ip: str, net: ipaddress.IPv4Network, reserved: Iterable[str]) -> None:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise exceptions.InvalidInput(f"{ip!r} is not an IPv4 address",
                                      field="external_gateway_ip") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise exceptions.InvalidInput(
            f"{ip} is not a usable host address of the external network {net}",
            field="external_gateway_ip")
    if ip in set(reserved):
        raise exceptions.Conflict(f"gateway address {ip} is reserved")


def _random_mac() -> str:
    # OpenStack's fa:16:3e prefix; fixed per router so every agent uses the same
    # MAC and neighbours need not re-learn it after a failover.
    return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def _iso(t: datetime.datetime | None) -> str | None:
    return t.isoformat(timespec="microseconds") + "Z" if t else None


def _router_dict(r: m.Router, agent: m.Agent | None) -> dict:
    return {"id": r.id, "project_id": r.project_id, "name": r.name,
            "status": r.status, "status_reason": r.status_reason, "ha": r.ha,
            "external_gateway_ip": r.gateway_ip,
            "external_gateway_prefixlen": r.gateway_prefixlen,
            "external_gateway_mac": r.gateway_mac,
            "agent_id": agent.id if agent else None,
            "agent_host": agent.host if agent else None,
            "generation": r.generation,
            "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}


def _router_view(r: m.Router, agent: m.Agent | None, now: datetime.datetime,
                 lease_time: float | None) -> dict:
    """The router as the API shows it: ACTIVE only while its node may still
    serve it. Once the agent fenced, was declared dead, or has not reported
    for longer than ``lease_time`` (database clock), the node's guard may
    have removed the router, so it is shown DOWN with the reason; the stored
    status is unchanged (the monitor moves it or the agent comes back)."""
    view = _router_dict(r, agent)
    if lease_time is None or r.status != m.ACTIVE or agent is None:
        return view
    silence = (now - agent.heartbeat_at).total_seconds()
    if agent.fenced_at is not None:
        reason = (f"agent {agent.host} fenced its node at {_iso(agent.fenced_at)}: "
                  "the routers there were removed")
    elif agent.dead_since is not None:
        silent = (agent.dead_since - agent.heartbeat_at).total_seconds()
        reason = (f"agent {agent.host} was declared dead at {_iso(agent.dead_since)} "
                  f"after {silent:.1f}s without a report; routers may have been "
                  "removed on the node")
    elif silence > lease_time:
        reason = (f"agent {agent.host} has not reported for {silence:.1f}s "
                  f"(lease_time {lease_time:.1f}s); routers may have been removed "
                  "on the node")
    else:
        return view
    return dict(view, status=m.DOWN, status_reason=reason[:255])


def _agent_row(a: m.Agent) -> dict:
    return {"id": a.id, "host": a.host, "agent_type": a.agent_type,
            "admin_state_up": a.admin_state_up, "namespace_prefix": a.namespace_prefix,
            "heartbeat_at": a.heartbeat_at, "started_at": a.started_at,
            "dead_since": a.dead_since, "fenced_at": a.fenced_at,
            "lease_generation": a.lease_generation, "guard_status": a.guard_status}


def _agent_dict(a: m.Agent, load: int, now: datetime.datetime, down_time: float) -> dict:
    alive = (a.dead_since is None and
             (now - a.heartbeat_at).total_seconds() < down_time)
    return {"id": a.id, "host": a.host, "agent_type": a.agent_type,
            "admin_state_up": a.admin_state_up, "alive": alive,
            "router_count": int(load), "namespace_prefix": a.namespace_prefix,
            "heartbeat_at": _iso(a.heartbeat_at), "started_at": _iso(a.started_at),
            "dead_since": _iso(a.dead_since), "fenced_at": _iso(a.fenced_at),
            "guard_status": a.guard_status}


def _event_dict(e: m.FailoverEvent) -> dict:
    return {"id": e.id, "router_id": e.router_id, "old_agent_id": e.old_agent_id,
            "new_agent_id": e.new_agent_id, "cause": e.cause,
            "detected_by": e.detected_by, "detail": e.detail,
            "last_heartbeat_at": _iso(e.last_heartbeat_at),
            "detected_at": _iso(e.detected_at), "fenced_at": _iso(e.fenced_at),
            "rescheduled_at": _iso(e.rescheduled_at), "active_at": _iso(e.active_at)}
