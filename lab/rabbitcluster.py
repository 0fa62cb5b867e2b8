"""A throw-away RabbitMQ cluster of N private nodes on 127.0.0.1.

Built on ``netlab.PrivateRabbit``: every node has its own name
(``cdt<hex>-<i>@localhost``, i = 1..N), ports, HOME, data and log dirs, and
is started, stopped and killed by pid. What the members share is what Erlang
clustering on one host needs: one epmd (started here, on a port of its own:
nodes find each other through the epmd on ``ERL_EPMD_PORT``) and one Erlang
cookie (written into every node's HOME).

Bring-up: node 1 boots alone, then nodes 2..N boot in parallel and join it
by themselves (``cluster_formation.classic_config`` naming node 1; a blank
node joins the first listed node it reaches), which needs no
``stop_app; join_cluster; start_app`` round of CLI calls. ``start()`` returns
when ``cluster_status`` lists N running nodes.

Queues: oslo.messaging with ``rabbit_quorum_queue = true`` declares its
topic queues with ``x-queue-type: quorum``; RabbitMQ 3.10 then places a
member on every cluster node (the default initial group size is the cluster
size), so nothing has to be set on the broker side for them. The other
queues oslo.messaging declares (reply_<uuid> and <topic>_fanout_<uuid>) are
classic and non-durable unless ``rabbit_transient_quorum_queue = true``; a
classic queue lives on one node and dies with it. ``mirror_classic=True``
sets a policy that mirrors classic queues on every node (``ha-mode: all``,
deprecated in 3.x but still honoured by 3.10); see bench/rabbit_failover.py
for what it is worth.

Measured on the 2-core Debian 12 machine (RabbitMQ 3.10.8, Erlang 25):

* ``start()`` of 3 nodes: 19.7-23.5 s (node 1 alone 6.7-8.5 s, then 2 and 3
  together 11-14 s: booting is CPU-bound on two cores), against about 23 s
  one after the other with ``stop_app; join_cluster; start_app``. All three
  at once took 16.4-18.7 s but now and then a joiner failed to boot
  (``schema_integrity_check_failed``: it copied node 1's tables while node 1
  was still migrating them), so node 1 boots first.
* ``kill(i)``: 0.03-0.07 s. ``start_node(i)`` until the others list it
  running again: 6.2-10.1 s. A ``rabbitmqctl`` call: 0.5-1 s.
* What a crash costs oslo.messaging RPC: ``bench/rabbit_failover.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from lab import netlab

# Classic queues other than the server-named ones (amq.gen-*).
CLASSIC_MIRROR_POLICY = ("cdt-mirror-classic", r"^(?!amq\.).*",
                         {"ha-mode": "all", "ha-sync-mode": "automatic"})


def _parallel(fns: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``fns`` in threads; return their results, or raise the first error."""
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException | None] = [None] * len(fns)

    def run(i: int) -> None:
        try:
            results[i] = fns[i]()
        except BaseException as exc:  # re-raised below, in the caller
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for exc in errors:
        if exc is not None:
            raise exc
    return results


class RabbitCluster:
    """N private RabbitMQ nodes clustered on loopback; nodes are numbered 1..N.

    ``cluster = RabbitCluster(3).start()``, then ``cluster.transport_url``
    names every node. ``kill(i)`` is a crash (kill -9 of node i's beam),
    ``stop_node(i)`` a graceful shutdown, ``start_node(i)`` restarts node i
    with its data, and it rejoins. ``destroy()`` stops every process by pid
    and removes every temp dir; it is idempotent and also registered for an
    ``atexit`` clean-up.
    """

    def __init__(self, n: int = 3, name: str | None = None, *,
                 mirror_classic: bool = False,
                 config: Sequence[str] = ()) -> None:
        """``config``: extra ``rabbitmq.conf`` lines for every node."""
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name or f"cdt{netlab._hex()}"
        self.mirror_classic = mirror_classic
        self.epmd_port = netlab.free_port()
        self._cookie = secrets.token_hex(16).upper()
        self._epmd: subprocess.Popen[bytes] | None = None
        self._destroyed = False
        self._registered = False
        self.last_start_seconds: float | None = None
        first = f"{self.name}-1@localhost"
        # Default partition handling is "ignore"; pause_minority is what a
        # cluster of three should run (a node cut off from the others stops
        # serving instead of diverging).
        common = ["cluster_partition_handling = pause_minority", *config]
        # A blank joiner that cannot reach node 1 (not yet, or not at the
        # moment) retries every 250 ms for 60 s before it would give up and
        # boot as a cluster of its own.
        joiner = ["cluster_formation.peer_discovery_backend = classic_config",
                  f"cluster_formation.classic_config.nodes.1 = {first}",
                  "cluster_formation.discovery_retry_limit = 240",
                  "cluster_formation.discovery_retry_interval = 250"]
        self.nodes = [
            netlab.PrivateRabbit(f"{self.name}-{i}", epmd_port=self.epmd_port,
                                 cookie=self._cookie,
                                 config=common + (joiner if i > 1 else []))
            for i in range(1, n + 1)]

    # -- addressing

    def node(self, i: int) -> netlab.PrivateRabbit:
        """Node ``i`` (1..N)."""
        if not 1 <= i <= len(self.nodes):
            raise IndexError(f"no node {i} in a cluster of {len(self.nodes)}")
        return self.nodes[i - 1]

    @property
    def nodenames(self) -> list[str]:
        return [n.nodename for n in self.nodes]

    @property
    def ports(self) -> list[int]:
        """AMQP port of node 1..N."""
        return [n.port for n in self.nodes]

    def index_of(self, nodename_or_port: str | int) -> int:
        """Number (1..N) of the node with this name or AMQP port."""
        for i, n in enumerate(self.nodes, 1):
            if nodename_or_port in (n.nodename, n.port):
                return i
        raise KeyError(f"{nodename_or_port!r} is not a node of {self.name}")

    @property
    def transport_url(self) -> str:
        """oslo.messaging URL naming every node (comma-separated hosts)."""
        return self.transport_url_for(range(1, len(self.nodes) + 1))

    def transport_url_for(self, nodes: Sequence[int], vhost: str = "") -> str:
        """URL naming ``nodes`` (numbers), in that order, and ``vhost``."""
        hosts = ",".join(f"guest:guest@127.0.0.1:{self.node(i).port}" for i in nodes)
        return f"rabbit://{hosts}/{vhost}"

    # -- processes

    def pids(self) -> list[int]:
        """Every pid started for this cluster that may still exist."""
        pids = [pid for n in self.nodes for pid in n.pids()]
        if self._epmd is not None:
            pids.append(self._epmd.pid)
        return pids

    @property
    def epmd_pid(self) -> int | None:
        return self._epmd.pid if self._epmd is not None else None

    def _ensure_epmd(self) -> None:
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = netlab.PrivateRabbit.spawn_epmd(self.epmd_port)

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        """Start every node, cluster them, wait until N nodes run (120 s max)."""
        if self._destroyed:
            raise RuntimeError("RabbitCluster was destroyed")
        t0 = time.monotonic()
        if not self._registered:
            netlab._register(self, self.destroy)
            self._registered = True
        try:
            self._ensure_epmd()
            # Node 1 first, then the joiners together. All three at once
            # failed now and then: a joiner copied node 1's tables while node
            # 1 was still migrating them at boot (BOOT FAILED,
            # schema_integrity_check_failed, table_attributes_mismatch
            # rabbit_user), which took the whole HA cloud's set-up down.
            self.nodes[0].start(timeout=timeout)
            _parallel([lambda n=n: n.start(timeout=timeout) for n in self.nodes[1:]])
            self.wait_running(len(self.nodes),
                              max(10.0, timeout - (time.monotonic() - t0)))
            if self.mirror_classic:
                self.set_policy(*CLASSIC_MIRROR_POLICY)
        except BaseException:
            self.destroy()
            raise
        self.last_start_seconds = time.monotonic() - t0
        return self

    def kill(self, i: int) -> None:
        """kill -9 node i's beam, like a crash; the shared epmd stays."""
        self.node(i).kill()

    def freeze(self, i: int) -> None:
        """SIGSTOP node i's beam: it keeps its sockets open but answers nothing
        (a hung host or a silent partition). ``thaw(i)`` resumes it."""
        pid = self.node(i).beam_pid
        if pid is None or not netlab.pid_alive(pid):
            raise RuntimeError(f"node {i} is not running")
        os.kill(pid, signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        pid = self.node(i).beam_pid
        if pid is not None and netlab.pid_alive(pid):
            os.kill(pid, signal.SIGCONT)

    def stop_node(self, i: int) -> None:
        """Graceful shutdown of node i (SIGTERM to its beam)."""
        self.node(i).stop()

    def start_node(self, i: int, timeout: float = 60.0) -> float:
        """Start node i again with its data; it rejoins the cluster. Returns
        the seconds until the other nodes list it as running."""
        t0 = time.monotonic()
        self._ensure_epmd()
        node = self.node(i)
        node.start(timeout=timeout)
        self.wait_running_node(i, max(5.0, timeout - (time.monotonic() - t0)))
        return time.monotonic() - t0

    def destroy(self) -> None:
        """Stop every process started here and delete every temp dir."""
        if self._destroyed:
            return
        self._destroyed = True
        netlab._unregister(self)
        try:
            for n in self.nodes:
                # One node's failure must not leave the others running.
                with contextlib.suppress(Exception):
                    n.destroy()
        finally:
            epmd, self._epmd = self._epmd, None
            if epmd is not None:
                if epmd.poll() is None:
                    epmd.kill()
                epmd.wait(timeout=10)

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"RabbitCluster({self.name!r}, ports={self.ports})"

    # -- CLI

    def _live_index(self, prefer: int | None = None) -> int:
        order = list(range(1, len(self.nodes) + 1))
        if prefer is not None:
            order.remove(prefer)
            order.insert(0, prefer)
        for i in order:
            if self.node(i).running:
                return i
        raise RuntimeError(f"no node of {self.name} is running")

    def rabbitmqctl(self, *args: str, node: int | None = None,
                    timeout: float = 60.0, check: bool = True
                    ) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl ARGS`` against node ``node``, or any running node."""
        i = node if node is not None else self._live_index()
        return self.node(i).rabbitmqctl(*args, timeout=timeout, check=check)

    def _json(self, *args: str, node: int | None = None) -> Any:
        out = self.rabbitmqctl(*args, "--formatter", "json", node=node).stdout
        return json.loads(out or "null")

    def cluster_status(self, node: int | None = None) -> dict[str, Any]:
        return self._json("cluster_status", node=node)

    def running_nodes(self, node: int | None = None) -> list[int]:
        """Numbers of the nodes that ``node`` (or any running node) sees
        running in the cluster, sorted."""
        names = self.cluster_status(node=node).get("running_nodes", [])
        return sorted(self.index_of(name) for name in names
                      if name in self.nodenames)

    def wait_running(self, count: int, timeout: float = 60.0) -> list[int]:
        """Wait until a running node lists ``count`` running cluster members."""
        return netlab.wait_for(
            lambda: (lambda r: r if len(r) >= count else None)(
                self._running_or_none()),
            timeout, interval=0.2, what=f"{count} running nodes in {self.name}")

    def wait_running_node(self, i: int, timeout: float = 60.0) -> list[int]:
        """Wait until another running node (or i itself, if alone) lists i."""
        others = [j for j in range(1, len(self.nodes) + 1)
                  if j != i and self.node(j).running]
        ask = others[0] if others else i
        return netlab.wait_for(
            lambda: (lambda r: r if i in r else None)(self._running_or_none(ask)),
            timeout, interval=0.2, what=f"node {i} running in {self.name}")

    def _running_or_none(self, node: int | None = None) -> list[int]:
        try:
            return self.running_nodes(node=node)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            return []

    def set_policy(self, name: str, pattern: str, definition: dict[str, Any],
                   apply_to: str = "queues", priority: int = 0) -> None:
        self.rabbitmqctl("set_policy", "--apply-to", apply_to, "--priority",
                         str(priority), name, pattern, json.dumps(definition))

    def clear_policy(self, name: str) -> None:
        self.rabbitmqctl("clear_policy", name)

    def add_vhost(self, vhost: str) -> str:
        """A vhost that guest may use; returns the URL of every node on it.
        ``delete_vhost`` drops it with every queue in it at once."""
        self.rabbitmqctl("add_vhost", vhost)
        self.rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.transport_url_for(range(1, len(self.nodes) + 1), vhost)

    def delete_vhost(self, vhost: str) -> None:
        self.rabbitmqctl("delete_vhost", vhost)

    def queues(self, node: int | None = None, vhost: str = "/") -> list[dict[str, Any]]:
        """Every queue of ``vhost``: name, type, durable, leader (quorum
        queues), members (quorum queues), messages, consumers."""
        return self._json("list_queues", "-p", vhost, "name", "type", "durable",
                          "leader", "members", "messages", "consumers",
                          node=node) or []

    def queue_leader(self, queue: str, node: int | None = None,
                     vhost: str = "/") -> int | None:
        """Number of the node that leads quorum queue ``queue``; None if
        there is no such quorum queue."""
        for q in self.queues(node=node, vhost=vhost):
            if q.get("name") == queue:
                leader = q.get("leader")
                return self.index_of(leader) if leader in self.nodenames else None
        return None

    def connections(self, node: int | None = None) -> list[dict[str, Any]]:
        """Client connections of the whole cluster: name (oslo.messaging puts
        ``<process>:<pid>:<uuid>`` there), node, port (the node's AMQP port),
        peer_port (the client's)."""
        return self._json("list_connections", "name", "node", "port",
                          "peer_port", node=node) or []


# --------------------------------------------------------------------------
# oslo.messaging traffic against a cluster


def _peer_port(impl_conn: Any) -> int | None:
    """Broker port an oslo.messaging rabbit Connection is connected to now.

    Reads the socket's peer address, never kombu's ``connection`` property
    (that would connect). None when it is not connected.
    """
    kconn = getattr(impl_conn, "connection", None)
    amqp_conn = getattr(kconn, "_connection", None)
    sock = getattr(getattr(amqp_conn, "transport", None), "sock", None)
    try:
        return sock.getpeername()[1] if sock is not None else None
    except OSError:
        return None


LOGGERS = ("oslo_messaging", "oslo.messaging")

# The [oslo_messaging_rabbit] options bench/rabbit_failover.py found best
# against this cluster ("fast-shuffle" there; its docstring says why): a
# crashed node costs calls at most 0.8 s and no cast.
FAILOVER_SETTINGS: dict[str, Any] = {
    "rabbit_quorum_queue": True,
    "kombu_reconnect_delay": 0.0,
    "rabbit_retry_interval": 1,
    "rabbit_retry_backoff": 0,
    "rabbit_interval_max": 1,
    "heartbeat_timeout_threshold": 4,
    "heartbeat_rate": 2,
    "kombu_failover_strategy": "shuffle",
}


class RpcTraffic:
    """An oslo.messaging RPC server and a client calling and casting to it.

    Built like clouddisco's services: a private ConfigOpts from
    ``clouddisco.conf.register`` (which registers the tracing and metrics
    groups too), ``rpc.get_server`` (threading executor), calls through an
    ``rpc.Courier`` with ``retry=0`` and a deadline a little past the RPC
    timeout, like ``SchedulerAPI._call``; casts with ``retry=0`` on a
    courier thread of their own. Server and client have separate transports,
    so separate connections, possibly to different nodes.

    Every call and cast carries a sequence number. ``calls`` holds
    (start, end, ok, error class name); ``cast_sent`` maps seq -> time for
    each cast its sender saw succeed (publisher confirms are on, so the
    broker took it), ``cast_failed`` the seqs whose cast raised (the sender
    knew), ``cast_received`` seq -> first arrival, ``duplicates`` counts
    arrivals after the first.
    """

    def __init__(self, transport_url: str, settings: dict[str, Any] | None = None,
                 *, topic: str | None = None, call_interval: float = 0.02,
                 call_timeout: float = 2.0, cast_interval: float = 0.02) -> None:
        self.transport_url = transport_url
        self.settings = dict(settings or {})
        self.topic = topic or f"cdt-rpc-{netlab._hex()}"
        self.call_interval = call_interval
        self.call_timeout = call_timeout
        self.cast_interval = cast_interval
        self.calls: list[tuple[float, float, bool, str]] = []
        self.cast_sent: dict[int, float] = {}
        self.cast_failed: dict[int, str] = {}
        self.cast_received: dict[int, float] = {}
        self.duplicates = 0
        self.log: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._transports: list[Any] = []
        self._client: Any = None
        self._log_handler: Any = None
        self._log_state: dict[str, tuple[int, bool]] = {}

    # -- set-up

    def _conf(self) -> Any:
        from clouddisco import conf as cd_conf

        conf = cd_conf.build([], default_config_files=[])
        conf.set_override("transport_url", self.transport_url)
        for key, value in self.settings.items():
            conf.set_override(key, value, group="oslo_messaging_rabbit")
        return conf

    def start(self, warmup_calls: int = 10, timeout: float = 30.0) -> RpcTraffic:
        import logging

        import oslo_messaging

        from clouddisco import rpc

        traffic = self

        class Endpoint:
            target = oslo_messaging.Target(version="1.0")

            def ping(self, ctxt: Any, seq: int) -> int:
                return seq

            def note(self, ctxt: Any, seq: int) -> None:
                now = time.monotonic()
                with traffic._lock:
                    if seq in traffic.cast_received:
                        traffic.duplicates += 1
                    else:
                        traffic.cast_received[seq] = now

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                traffic.log.append((time.monotonic(), record.levelname,
                                    record.getMessage()))

        self._log_handler = Capture(logging.INFO)
        # oslo_log names its loggers "oslo.messaging.*", the stdlib ones
        # "oslo_messaging.*". Captured, not printed: a fail-over logs a
        # screenful of errors.
        self._log_state = {}
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._log_state[name] = (logger.level, logger.propagate)
            logger.addHandler(self._log_handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False

        server_transport = rpc.get_transport(self._conf())
        self._transports.append(server_transport)
        self._server = rpc.get_server(server_transport, self.topic, [Endpoint()],
                                      server=f"{self.topic}-server")
        self._server.start()
        client_transport = rpc.get_transport(self._conf())
        self._transports.append(client_transport)
        self._client = oslo_messaging.get_rpc_client(
            client_transport, oslo_messaging.Target(topic=self.topic, version="1.0"))
        self._threads = [threading.Thread(target=self._call_loop, daemon=True,
                                          name=f"{self.topic}-calls"),
                         threading.Thread(target=self._cast_loop, daemon=True,
                                          name=f"{self.topic}-casts")]
        for t in self._threads:
            t.start()
        netlab.wait_for(lambda: self.ok_calls() >= warmup_calls, timeout,
                        interval=0.05, what=f"{warmup_calls} RPC calls to succeed")
        return self

    def _call_loop(self) -> None:
        from clouddisco import rpc

        courier = rpc.Courier(f"{self.topic}-call")
        prepared = self._client.prepare(timeout=self.call_timeout, retry=0)
        seq = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            seq += 1
            t0 = time.monotonic()
            try:
                ok = courier.call(prepared.call, rpc.call_context(self.call_timeout),
                                  "ping", timeout=self.call_timeout + 0.5,
                                  seq=seq) == seq
                err = "" if ok else "WrongReply"
            except Exception as exc:  # every failure is a data point here
                ok, err = False, type(exc).__name__
            t1 = time.monotonic()
            with self._lock:
                self.calls.append((t0, t1, ok, err))
            next_at = max(next_at + self.call_interval, t1)
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        courier._pool.shutdown(wait=False)

    def _cast_loop(self) -> None:
        import concurrent.futures

        prepared = self._client.prepare(retry=0)
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cast")
        seq = 0
        while not self._stop.is_set():
            seq += 1

            def cast(seq: int = seq) -> None:
                try:
                    prepared.cast({}, "note", seq=seq)
                except Exception as exc:  # the sender knows: not a lost cast
                    with self._lock:
                        self.cast_failed[seq] = type(exc).__name__
                    return
                with self._lock:
                    self.cast_sent[seq] = time.monotonic()

            # Like clouddisco's Courier.cast: queued on one thread, in order,
            # the caller never blocks.
            pool.submit(cast)
            self._stop.wait(self.cast_interval)
        pool.shutdown(wait=True)

    # -- observation

    def ok_calls(self) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c[2])

    def ok_calls_after(self, t: float) -> int:
        """Calls that succeeded after monotonic time ``t``."""
        with self._lock:
            return sum(1 for c in self.calls if c[2] and c[1] > t)

    def ports(self) -> dict[str, list[int]]:
        """Broker ports each side is connected to right now:
        ``client_reply`` (the reply queue consumer), ``client_send`` (pooled
        publishers), ``server_listen`` (topic queue consumers),
        ``server_send`` (its reply publishers)."""
        out: dict[str, list[int]] = {"client_reply": [], "client_send": [],
                                     "server_listen": [], "server_send": []}
        server_t, client_t = self._transports

        def pooled(transport: Any) -> list[int]:
            items = list(getattr(transport._driver._connection_pool, "_items", ()))
            return sorted({p for _, c in items if (p := _peer_port(c))})

        reply_ctx = getattr(client_t._driver, "_reply_q_conn", None)
        if reply_ctx is not None and (p := _peer_port(reply_ctx.connection)):
            out["client_reply"].append(p)
        out["client_send"] = pooled(client_t)
        listener = getattr(self._server, "listener", None)
        poll = getattr(listener, "_poll_style_listener", None)
        ctx = getattr(poll, "conn", None)
        if ctx is not None and (p := _peer_port(getattr(ctx, "connection", None))):
            out["server_listen"].append(p)
        out["server_send"] = pooled(server_t)
        return out

    def stop_traffic(self, drain: float = 5.0) -> None:
        """Stop sending; wait up to ``drain`` s for sent casts to arrive."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.call_timeout + 5)

        def drained() -> bool:
            with self._lock:
                return set(self.cast_sent) <= set(self.cast_received)

        try:
            netlab.wait_for(drained, drain, interval=0.05, what="casts to drain")
        except TimeoutError:
            pass

    def stop(self) -> None:
        """Stop everything; safe to call more than once."""
        import logging

        if not self._stop.is_set():
            self.stop_traffic(drain=0)
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
                server.wait()
        for t in self._transports:
            with contextlib.suppress(Exception):
                t.cleanup()
        self._transports = []
        if self._log_handler is not None:
            for name, (level, propagate) in self._log_state.items():
                logger = logging.getLogger(name)
                logger.removeHandler(self._log_handler)
                logger.setLevel(level)
                logger.propagate = propagate
            self._log_handler = None

    def __enter__(self) -> RpcTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results

    def summary(self, since: float, until: float | None = None) -> dict[str, Any]:
        """What happened from ``since`` (the fault, a monotonic time) on."""
        with self._lock:
            calls = list(self.calls)
            sent = dict(self.cast_sent)
            failed = dict(self.cast_failed)
            received = dict(self.cast_received)
            dups = self.duplicates
        until = until if until is not None else time.monotonic()
        window = [c for c in calls if c[1] > since and c[0] < until]
        ends = sorted(c[1] for c in calls if c[2])
        before = [t for t in ends if t <= since]
        after = [t for t in ends if t > since]
        # The longest wait for a successful call: from the last success
        # before the fault (or the fault) through every gap that follows, up
        # to ``until`` (a stall still open then counts as far as it went).
        # inf: no call succeeded after the fault at all.
        pts = ([before[-1]] if before else [since]) + [t for t in after if t <= until]
        stall = max(b - a for a, b in zip(pts, [*pts[1:], until], strict=True))
        if not after:
            stall = float("inf")
        errors: dict[str, int] = {}
        for c in window:
            if not c[2]:
                errors[c[3]] = errors.get(c[3], 0) + 1
        arrivals = sorted(received.values())
        a_before = [t for t in arrivals if t <= since]
        a_after = [t for t in arrivals if t > since]
        apts = ([a_before[-1]] if a_before else [since]) + [t for t in a_after if t <= until]
        cast_gap = (max(b - a for a, b in zip(apts, [*apts[1:], until], strict=True))
                    if a_after else float("inf"))
        lost = sorted(s for s in sent if s not in received)
        first_ok_after = after[0] - since if after else None
        reconnects = [t - since for t, _, msg in self.log
                      if t > since and "Reconnected to AMQP server" in msg]
        return {
            "calls": len(window),
            "calls_failed": sum(1 for c in window if not c[2]),
            "call_errors": errors,
            "call_stall_s": round(stall, 3),
            "first_call_ok_after_s": (round(first_ok_after, 3)
                                      if first_ok_after is not None else None),
            "casts_sent": len(sent),
            "casts_failed": len(failed),
            "casts_lost": len(lost),
            "lost_seqs": lost[:20],
            "cast_duplicates": dups,
            "cast_gap_s": round(cast_gap, 3),
            "reconnects": len(reconnects),
            "last_reconnect_s": round(max(reconnects), 3) if reconnects else None,
        }
