"""A throw-away MariaDB Galera cluster on 127.0.0.1 for tests and bench/.

``GaleraCluster`` starts real mariadbd processes (3 by default) that form one
Galera cluster on loopback, for the tests and benchmarks of the HA topology
(clouddisco's database behind HAProxy, see lab.haproxy): kill -9 a node,
restart it, lose quorum and bootstrap, compare the nodes' data. Like
everything in lab/ it shares nothing with the machine's MariaDB (port 3306,
/var/lib/mysql, /etc/mysql), is stopped by pid and removes its temp dir, also
from an ``atexit`` hook when a test run is interrupted.

Why mariadbd runs as ``mysql``: with ``--user=root`` the rsync SST fails
(the joiner's rsync daemon, started as root, switches to "nobody" and may not
write the datadir: "recv_generator: mkdir ... Permission denied"), so as root
the nodes use ``--user=mysql`` and the temp dir is chowned to mysql.

Measured on the 2-core Debian 12 machine (MariaDB 10.11.19, Galera 26.4.23,
HAProxy 2.6.12), 2026-12:

* ``start()`` of 3 nodes: 6.2-8.9 s, typically ~7 s (mariadb-install-db
  0.9 s, node 1 up 1 s, clean stop and copy of its datadir, then two joins
  by IST of ~2 s each). With ``seed_copies=False`` (empty joiners, full rsync
  SST each, serialised on the one donor): 8.8-11.3 s.
* ``kill()``: ~15 ms including the reap. ``start_node()`` after kill -9
  (``--wsrep-recover``, then IST): 2.8-3.8 s; after ``stop_node()`` (clean,
  ~0.1 s): ~3.3 s.
* Write stall of kill -9, longest gap between the commits of a client doing
  one autocommit INSERT every 10 ms (3 runs each, ``python -m lab.galera``):

  - a node nobody writes to (the client writes directly to another node):
    Galera defaults 5.4 / 6.1 / 6.2 s, ``TUNED_EVS`` 1.3 / 1.5 / 1.4 s;
  - the node the client writes to (the client goes through an HAProxy
    writer frontend): defaults 6.1 / 6.1 / 6.4 s, tuned 1.4 / 1.4 / 1.3 s.

  Both cases are the same stall: every commit waits for the cluster to
  evict the dead member before it can be ordered, whichever node it was
  sent to. Through HAProxy the client loses only the one statement in
  flight (error 2013); its reconnect goes to the next node (``option
  redispatch``) and blocks there until the eviction
  (tests/functional/test_galera_lab.py checks that no committed row is
  lost).

Why ``TUNED_EVS``: a dead member stalls all writes for about
``suspect_timeout`` (it is suspected once nothing was heard from it for that
long, checked every ``inactive_check_period``) plus the time to agree on the
new view, which takes JOIN messages resent every ``join_retrans_period``.
With Galera's defaults that is PT5S + up to PT0.5S + PT1S: ~6 s. The tuned
set: ``suspect_timeout`` PT1S (on loopback nothing is lost or delayed, so
four missed keepalives mean a dead process, not a slow network);
``keepalive_period`` PT0.25S so a live but idle node is heard from four
times within it; ``inactive_check_period`` PT0.25S for the detection
granularity; ``join_retrans_period`` PT0.25S, because with its default PT1S
the stall was 2.0-2.1 s instead of 1.3 s in 3 of 4 runs; ``inactive_timeout`` PT1.5S and
``install_timeout`` PT1.5S as the hard limits above those. A tighter
suspect_timeout PT0.8S (keepalive/check/join PT0.2S) gave 1.05 s, at the
price of less margin against a node that is merely starved of CPU on a busy
2-core machine. Galera refuses to start on an inconsistent set, e.g.
"parameter 'evs.keepalive_period' value PT1S is out of range
[PT0.1S,PT0.333333S)" with suspect_timeout PT1S: keepalive_period must stay
below a third of suspect_timeout, inactive_check_period at most half of it,
and install_timeout at most inactive_timeout.

Two of three nodes killed: the survivor is non-Primary 1.5 s later (tuned)
and every read or write of a table fails with ERROR 1047 ("WSREP has not yet
prepared node for application use"; SHOW, SET and ``SELECT 1`` still work);
``bootstrap()`` (``pc.bootstrap=YES``) makes it a Primary component of one,
Synced, in ~0.1 s.

Reproduce the table (as root, ~2.5 min, one cluster per setting):
``.venv/bin/python -m lab.galera --evs default,tuned --repeats 3``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO
from typing import Any

from lab import netlab

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"

# Galera's own failure detector settings (what you get without any evs.*).
DEFAULT_EVS: dict[str, str] = {}

# Tuned so that a kill -9'd node is evicted, and writes resume, in ~1.3 s
# instead of ~6 s (see the module docstring for the numbers and the reasons).
TUNED_EVS: dict[str, str] = {
    "evs.keepalive_period": "PT0.25S",
    "evs.inactive_check_period": "PT0.25S",
    "evs.suspect_timeout": "PT1S",
    "evs.inactive_timeout": "PT1.5S",
    "evs.install_timeout": "PT1.5S",
    "evs.join_retrans_period": "PT0.25S",
}

# Status variables status() reports; the integer ones are converted.
_STATUS_VARS = ("wsrep_cluster_status", "wsrep_local_state_comment",
                "wsrep_cluster_size", "wsrep_ready", "wsrep_connected",
                "wsrep_last_committed", "wsrep_local_index")
_INT_VARS = {"wsrep_cluster_size", "wsrep_last_committed", "wsrep_local_index"}

_RECOVERED_RE = re.compile(r"WSREP: Recovered position:\s*([0-9a-f-]{36}:-?\d+)")


class GaleraError(RuntimeError):
    """A node did not come up, or did not reach the state asked for."""


@dataclass
class _Node:
    index: int
    sql_port: int
    gcomm_port: int
    ist_port: int
    sst_port: int
    dir: str
    popen: subprocess.Popen[bytes] | None = None
    console: IO[bytes] | None = None
    log_offset: int = 0  # size of error.log when the current process started

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def datadir(self) -> str:
        return self.path("data")

    @property
    def socket(self) -> str:
        return self.path("mysqld.sock")

    @property
    def cnf(self) -> str:
        return self.path("my.cnf")

    @property
    def error_log(self) -> str:
        return self.path("error.log")

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class GaleraCluster:
    """``nodes`` mariadbd processes forming one Galera cluster on loopback.

    Nothing is shared with the machine's MariaDB: every node has its own
    ports (SQL, gcomm, IST, SST; all from ``netlab._free_ports``), and its
    own datadir, socket, pid file, error log and ``my.cnf`` under one temp
    dir; mariadbd is started with ``--defaults-file`` so /etc/mysql is not
    read. Each mariadbd runs in the foreground as a child of ours, in its
    own session, and is stopped by pid (the SST helper scripts it spawns
    are in that session too, so ``kill()`` takes them along like a host
    crash would).

    Nodes are numbered from 1. Only node 1's datadir is initialised
    (``mariadb-install-db``); node 1 bootstraps the cluster. With
    ``seed_copies`` (the default) node 1 is then stopped cleanly once and
    its datadir copied to the other nodes, which join by IST of a few
    writesets (6-9 s for the whole bring-up); without it they join empty
    and get a full SST (9-11 s).

    ``evs`` is merged into ``wsrep_provider_options`` (any provider option
    may go there): ``TUNED_EVS`` by default, ``DEFAULT_EVS`` for Galera's
    own settings. ``sst_method`` is ``wsrep_sst_method``; only rsync is
    verified here (mariabackup needs the mariadb-backup package).
    """

    def __init__(self, nodes: int = 3, evs: Mapping[str, str] = TUNED_EVS,
                 sst_method: str = "rsync", user: str = "clouddisco",
                 password: str = "clouddisco", check_user: str = "cdcheck",
                 gcache_size: str = "16M", seed_copies: bool = True) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = nodes
        # Any provider options, merged last; DEFAULT_EVS ({}) keeps Galera's
        # own failure detector settings.
        self.evs = dict(evs)
        self.sst_method = sst_method
        self.user = user
        self.password = password
        # Password-less account with no privileges for HAProxy's health
        # check (lab.haproxy logs in with it and reads the wsrep state).
        self.check_user = check_user
        self.gcache_size = gcache_size
        self.seed_copies = seed_copies
        # As root, mariadbd must drop to an unprivileged user: with
        # --user=root the rsync SST fails, because the joiner's rsync daemon
        # started by root switches to "nobody" and may not write the
        # datadir. Without root, everything simply runs as the caller.
        self._run_user: str | None = "mysql" if os.geteuid() == 0 else None
        self.name = f"cdt-galera-{secrets.token_hex(4)}"
        self.tmpdir: str | None = None
        self.last_start_seconds: float | None = None
        self._destroyed = False
        ports = netlab._free_ports(4 * nodes)
        self._nodes: dict[int, _Node] = {}
        for i in range(1, nodes + 1):
            sql, gcomm, ist, sst = ports[4 * (i - 1):4 * i]
            self._nodes[i] = _Node(i, sql, gcomm, ist, sst, dir="")

    # -- addresses

    def nodes(self) -> list[int]:
        """All node numbers, 1..n."""
        return list(self._nodes)

    def port(self, node: int) -> int:
        """SQL port of ``node`` on 127.0.0.1."""
        return self._node(node).sql_port

    def servers(self) -> dict[str, tuple[str, int]]:
        """``{"node1": ("127.0.0.1", port), ...}``: the SQL endpoints, as
        ``lab.haproxy.HAProxy.add_tcp_writer()`` takes them."""
        return {f"node{i}": ("127.0.0.1", n.sql_port) for i, n in self._nodes.items()}

    def url(self, node: int, database: str = "") -> str:
        """SQLAlchemy URL of ``database`` on ``node`` (TCP, our account)."""
        return self.url_for_port(self.port(node), database)

    def url_for_port(self, port: int, database: str = "") -> str:
        """The same for another port, e.g. an HAProxy frontend."""
        return (f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{port}/"
                f"{database}?charset=utf8mb4")

    def _node(self, node: int) -> _Node:
        try:
            return self._nodes[node]
        except KeyError:
            raise ValueError(f"no node {node}; nodes are {self.nodes()}") from None

    # -- files

    def _prepare(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="cdt-galera-")
        # Registered at once: from here on there is something to clean up.
        netlab._register(self, self.destroy)
        gcomm = ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self._nodes.values())
        for node in self._nodes.values():
            node.dir = os.path.join(self.tmpdir, f"node{node.index}")
            os.mkdir(node.dir)
            os.mkdir(node.datadir)
            with open(node.cnf, "w") as f:
                f.write(self._cnf(node, gcomm))
        if self._run_user is not None:
            # mariadbd drops to this user, and so do its SST scripts: the
            # whole tree must be theirs (mkdtemp made it root's, mode 0700).
            for dirpath, dirnames, filenames in os.walk(self.tmpdir):
                for name in [dirpath, *(os.path.join(dirpath, f)
                                        for f in dirnames + filenames)]:
                    shutil.chown(name, self._run_user, self._run_user)

    def _provider_options(self, node: _Node) -> str:
        opts = {
            "gmcast.listen_addr": f"tcp://127.0.0.1:{node.gcomm_port}",
            "ist.recv_addr": f"127.0.0.1:{node.ist_port}",
            # Preallocated in full per node (the default 128M would be 384M
            # of disk writes per cluster); IST only needs the writesets a
            # restarted node missed, which in a test is a few hundred KB.
            "gcache.size": self.gcache_size,
        }
        opts.update(self.evs)
        return ";".join(f"{k}={v}" for k, v in opts.items())

    def _cnf(self, node: _Node, gcomm: str) -> str:
        # [mysqld] rather than [mariadbd]: the wsrep_sst_* scripts read the
        # same file through my_print_defaults with the mysqld groups.
        return f"""\
[mysqld]
datadir = {node.datadir}
socket = {node.socket}
pid-file = {node.path('mysqld.pid')}
log-error = {node.error_log}
port = {node.sql_port}
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# HAProxy health checks connect every 500 ms per node: never block a host.
max_connect_errors = 1000000
max_connections = 500
performance_schema = OFF
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
# A kill -9 of mariadbd keeps what reached the OS page cache, so 2 loses
# nothing in these tests and spares an fsync per commit on a shared disk.
innodb_flush_log_at_trx_commit = 2
default_storage_engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = {PROVIDER}
wsrep_cluster_name = {self.name}
wsrep_cluster_address = gcomm://{gcomm}
wsrep_node_name = node{node.index}
wsrep_node_address = 127.0.0.1:{node.gcomm_port}
wsrep_node_incoming_address = 127.0.0.1:{node.sql_port}
wsrep_sst_method = {self.sst_method}
wsrep_sst_receive_address = 127.0.0.1:{node.sst_port}
wsrep_provider_options = "{self._provider_options(node)}"
"""

    def _install_db(self, node: _Node) -> None:
        proc = subprocess.run(
            [INSTALL_DB, "--no-defaults", f"--datadir={node.datadir}", *self._user_args(),
             "--auth-root-authentication-method=socket", "--skip-test-db",
             "--innodb-log-file-size=16M"],
            capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise GaleraError(f"mariadb-install-db failed for node{node.index}:\n"
                              f"{proc.stdout}{proc.stderr}")

    def _user_args(self) -> list[str]:
        return [f"--user={self._run_user}"] if self._run_user else []

    def log_tail(self, node: int, lines: int = 30) -> str:
        """The end of a node's error log, for error messages."""
        try:
            with open(self._node(node).error_log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # -- lifecycle

    def start(self, timeout: float = 120.0) -> GaleraCluster:
        """Bootstrap node 1, create our accounts, join the other nodes one by
        one and wait until all are Synced. Cleans up everything if it fails."""
        if self._destroyed:
            raise RuntimeError("GaleraCluster was destroyed")
        if self.tmpdir is not None:
            raise RuntimeError("start() twice; use start_node()")
        t0 = time.monotonic()
        try:
            self._prepare()
            first = self._nodes[1]
            self._install_db(first)
            self._spawn(first, new_cluster=True)
            self.wait_synced([1], timeout=timeout)
            # Before anyone joins, so the accounts arrive with the state
            # transfer rather than as replicated statements.
            self._create_accounts(1)
            if self.seed_copies and self.n > 1:
                # Clean shutdown: grastate.dat then holds the cluster's
                # uuid:seqno, so a copy of this datadir is a member that only
                # lacks the few view changes since (IST), saving ~2.5 s of
                # full SSTs, which queue for the single donor.
                self.stop_node(1)
                for node in list(self._nodes.values())[1:]:
                    self._seed_from(first, node)
                self._spawn(first, new_cluster=True)
                self.wait_synced([1], timeout=timeout)
            for size, node in enumerate(list(self._nodes.values())[1:], start=2):
                self._spawn(node)
                # One gcomm join at a time: a second joiner that arrives
                # while the first is being installed sits in a NON_PRIM
                # view of its own for ~5 s. The state transfers may still
                # overlap (the next joiner queues for the donor).
                netlab.wait_for(lambda size=size: (self.status(1) or {}).get(
                    "wsrep_cluster_size", 0) >= size, 30, interval=0.05,
                    what=f"node{node.index} to join the group")
            self.wait_synced(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except Exception:
            self.destroy()
            raise
        self.last_start_seconds = time.monotonic() - t0
        return self

    def _seed_from(self, source: _Node, node: _Node) -> None:
        shutil.rmtree(node.datadir)
        # Not the gcache (preallocated, and a joiner starts its own) nor the
        # saved group view of node 1.
        shutil.copytree(source.datadir, node.datadir, symlinks=True,
                        ignore=shutil.ignore_patterns("galera.cache", "gvwstate.dat",
                                                      "*.pid", "*.sock"))
        grastate = os.path.join(node.datadir, "grastate.dat")
        with open(grastate) as f:
            text = f.read()
        with open(grastate, "w") as f:
            f.write(re.sub(r"safe_to_bootstrap:\s*1", "safe_to_bootstrap: 0", text))
        if self._run_user is not None:
            for dirpath, _dirnames, filenames in os.walk(node.datadir):
                shutil.chown(dirpath, self._run_user, self._run_user)
                for f in filenames:
                    shutil.chown(os.path.join(dirpath, f), self._run_user, self._run_user)

    def _create_accounts(self, node: int) -> None:
        u, p, c = self.user, self.password, self.check_user
        self.execute(node, f"CREATE USER IF NOT EXISTS '{u}'@'127.0.0.1' "
                           f"IDENTIFIED BY '{p}'")
        self.execute(node, f"GRANT ALL ON *.* TO '{u}'@'127.0.0.1' WITH GRANT OPTION")
        self.execute(node, f"CREATE USER IF NOT EXISTS '{c}'@'127.0.0.1'")

    def _spawn(self, node: _Node, new_cluster: bool = False,
               start_position: str | None = None) -> None:
        if node.running():
            raise RuntimeError(f"node{node.index} is already running")
        if node.console is not None:
            node.console.close()
        # Kept open for the process' life: mariadbd and the SST scripts
        # write their stderr there. Closed on the next start or destroy().
        node.console = open(node.path("console.log"), "ab")  # noqa: SIM115
        try:
            node.log_offset = os.path.getsize(node.error_log)
        except OSError:
            node.log_offset = 0
        argv = [MARIADBD, f"--defaults-file={node.cnf}", *self._user_args()]
        if new_cluster:
            argv.append("--wsrep-new-cluster")
        if start_position:
            argv.append(f"--wsrep-start-position={start_position}")
        # Own session: a Ctrl-C meant for the test runner must not reach
        # the nodes, and killpg() takes the SST helpers along.
        node.popen = subprocess.Popen(
            argv, cwd=node.dir, stdin=subprocess.DEVNULL, stdout=node.console,
            stderr=subprocess.STDOUT, start_new_session=True, env=_clean_env())

    def _recover_position(self, node: _Node) -> str | None:
        """``uuid:seqno`` the datadir holds, from ``mariadbd --wsrep-recover``.

        After a kill -9 grastate.dat says seqno -1, and a plain start then
        asks for a full SST; with the recovered position the node asks for
        IST of just the writesets it missed.
        """
        log = node.path("recover.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
        proc = subprocess.run(
            [MARIADBD, f"--defaults-file={node.cnf}", *self._user_args(), "--wsrep-recover",
             f"--log-error={log}"],
            cwd=node.dir, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
            check=False, env=_clean_env())
        try:
            with open(log, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        found = _RECOVERED_RE.findall(text)
        if proc.returncode != 0 or not found:
            return None
        position = found[-1]
        return None if position.endswith(":-1") else position

    def _grastate_seqno(self, node: _Node) -> int | None:
        try:
            with open(os.path.join(node.datadir, "grastate.dat")) as f:
                for line in f:
                    if line.startswith("seqno:"):
                        return int(line.split(":", 1)[1])
        except (OSError, ValueError):
            pass
        return None

    def start_node(self, node: int, timeout: float = 60.0,
                   new_cluster: bool = False) -> float:
        """Start a stopped or killed node again and wait until it is Synced.

        After a crash (grastate seqno -1) the position is recovered first so
        the node rejoins by IST. ``new_cluster=True`` bootstraps a new
        cluster from this node (when no node is left running); it marks the
        node safe to bootstrap first. Returns the seconds it took.
        """
        n = self._node(node)
        if self.tmpdir is None or self._destroyed:
            raise RuntimeError("start_node() needs a started cluster")
        t0 = time.monotonic()
        position = None
        if os.path.exists(os.path.join(n.datadir, "mysql")) \
                and self._grastate_seqno(n) in (None, -1):
            position = self._recover_position(n)
        if new_cluster:
            self._set_safe_to_bootstrap(n)
        self._spawn(n, new_cluster=new_cluster, start_position=position)
        self.wait_synced([node], timeout=timeout)
        return time.monotonic() - t0

    def _set_safe_to_bootstrap(self, node: _Node) -> None:
        path = os.path.join(node.datadir, "grastate.dat")
        with contextlib.suppress(OSError):
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", text))

    def state_transfer(self, node: int) -> str | None:
        """How the node's current process got its state: ``"IST"`` (only the
        missed writesets), ``"SST"`` (a full copy) or None (none yet, or it
        bootstrapped), from its error log since it was started."""
        n = self._node(node)
        try:
            with open(n.error_log, errors="replace") as f:
                f.seek(n.log_offset)
                text = f.read()
        except OSError:
            return None
        found = re.findall(r"WSREP_SST: \[INFO\] \S+ (IST|SST) completed on joiner", text)
        return found[-1] if found else None

    def kill(self, node: int) -> None:
        """kill -9 the node (and any SST helper it runs), like a host crash;
        reaped before this returns, so its ports are closed."""
        n = self._node(node)
        if n.popen is None:
            return
        if n.popen.poll() is None:
            # The session id is mariadbd's pid and it is alive, so this
            # group is ours.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(n.popen.pid, signal.SIGKILL)
        n.popen.wait(timeout=30)

    def stop_node(self, node: int, timeout: float = 60.0) -> None:
        """Graceful shutdown (SIGTERM): the node leaves the cluster cleanly
        and writes its position to grastate.dat; kill -9 after ``timeout``."""
        n = self._node(node)
        if n.popen is None or n.popen.poll() is not None:
            return
        n.popen.send_signal(signal.SIGTERM)
        try:
            n.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(node)
        else:
            self._kill_leftovers(n)

    def _kill_leftovers(self, node: _Node) -> None:
        # SST helpers of a node that exited by itself would otherwise be
        # orphaned; the group is only signalled while processes remain.
        if node.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.popen.pid, signal.SIGKILL)

    def destroy(self) -> None:
        """Kill every node and remove the temp dir; safe to call twice."""
        if self._destroyed:
            return
        self._destroyed = True
        netlab._unregister(self)
        try:
            for n in self._nodes.values():
                if n.popen is not None:
                    with contextlib.suppress(Exception):
                        self.kill(n.index)
                    self._kill_leftovers(n)
                if n.console is not None:
                    n.console.close()
                    n.console = None
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> GaleraCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"GaleraCluster({self.name!r}, ports={[self.port(i) for i in self.nodes()]})"

    # -- processes

    def alive_nodes(self) -> list[int]:
        """Nodes whose mariadbd process is running (whatever its wsrep state)."""
        return [i for i, n in self._nodes.items() if n.running()]

    def pids(self) -> dict[int, int]:
        """``{node: mariadbd pid}`` of the running nodes."""
        return {i: n.popen.pid for i, n in self._nodes.items()
                if n.running() and n.popen is not None}

    # -- SQL

    def connect(self, node: int, database: str | None = None, admin: bool = True,
                **kwargs: Any) -> Any:
        """A pymysql connection to ``node`` (autocommit).

        ``admin=True``: root over the node's unix socket (root@localhost
        uses unix_socket auth, so this works before any account exists);
        otherwise our TCP account on 127.0.0.1.
        """
        import pymysql  # lazily, like netlab.TempDatabase

        n = self._node(node)
        params: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 30,
                                  "write_timeout": 30, "autocommit": True,
                                  "charset": "utf8mb4"}
        params.update(kwargs)
        if database:
            params["database"] = database
        if admin:
            return pymysql.connect(unix_socket=n.socket, user="root", **params)
        return pymysql.connect(host="127.0.0.1", port=n.sql_port, user=self.user,
                               password=self.password, **params)

    def execute(self, node: int, sql: str, args: Any = None,
                database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as root on ``node``; returns the rows."""
        conn = self.connect(node, database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        """Create ``name`` (utf8mb4) through the first Synced node; DDL is
        replicated to all nodes in total order."""
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"unsafe database name {name!r}")
        for node in self.alive_nodes():
            st = self.status(node)
            if st and st["wsrep_local_state_comment"] == "Synced":
                self.execute(node, f"CREATE DATABASE IF NOT EXISTS `{name}` "
                                   "CHARACTER SET utf8mb4")
                return
        raise GaleraError("no Synced node to create a database on")

    def status(self, node: int) -> dict[str, Any] | None:
        """The node's wsrep status (``wsrep_cluster_status``,
        ``wsrep_local_state_comment``, ``wsrep_cluster_size``, ...), or None
        when it is down or does not answer."""
        if not self._node(node).running():
            return None
        try:
            conn = self.connect(node, connect_timeout=2, read_timeout=5)
        except Exception:
            return None
        try:
            with conn.cursor() as cur:
                # SHOW STATUS works on a non-Primary node, unlike SELECT.
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                raw = dict(cur.fetchall())
        except Exception:
            return None
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        out: dict[str, Any] = {}
        for var in _STATUS_VARS:
            value = raw.get(var)
            if var in _INT_VARS and value is not None:
                value = int(value)
            out[var] = value
        return out

    def wait_synced(self, nodes: Iterable[int] | None = None,
                    timeout: float = 60.0) -> None:
        """Wait until every node in ``nodes`` (default: all) is Synced in a
        Primary component; fails at once if one of them exits."""
        wanted = list(self.nodes() if nodes is None else nodes)

        def synced() -> bool:
            for i in wanted:
                n = self._node(i)
                if n.popen is None or n.popen.poll() is not None:
                    raise GaleraError(f"node{i} is not running (exit code "
                                      f"{n.popen.returncode if n.popen else None}):\n"
                                      + self.log_tail(i))
                st = self.status(i)
                if not st or st["wsrep_local_state_comment"] != "Synced" \
                        or st["wsrep_cluster_status"] != "Primary":
                    return False
            return True

        try:
            netlab.wait_for(synced, timeout, interval=0.2,
                            what=f"nodes {wanted} of {self.name} to be Synced")
        except TimeoutError as e:
            details = "\n".join(f"node{i}: {self.status(i)}\n{self.log_tail(i, 10)}"
                                for i in wanted)
            raise GaleraError(f"{e}\n{details}") from None

    def bootstrap(self, node: int, timeout: float = 30.0) -> None:
        """Make the surviving ``node`` a Primary component on its own
        (``pc.bootstrap=YES``): what an operator does after losing quorum."""
        self.execute(node, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
        self.wait_synced([node], timeout=timeout)

    def checksum(self, database: str) -> dict[int, dict[str, int | None]]:
        """``{node: {table: CHECKSUM TABLE}}`` over the running nodes.

        Each node first waits (``wsrep_sync_wait=1`` on a SELECT) until it
        has applied everything committed cluster-wide when it was asked, so
        a node that is merely behind does not look different. Stop writers
        first: rows committed meanwhile would make the numbers differ.
        """
        nodes = self.alive_nodes()
        # One thread per node: the readings are taken at nearly the same
        # moment, so a table written meanwhile rarely differs between them.
        with concurrent.futures.ThreadPoolExecutor(max(1, len(nodes))) as pool:
            sums = list(pool.map(lambda n: self._checksum_of(n, database), nodes))
        return dict(zip(nodes, sums, strict=True))

    def _checksum_of(self, node: int, database: str) -> dict[str, int | None]:
        conn = self.connect(node, database)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION wsrep_sync_wait = 1")
                cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES "
                            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
                            "ORDER BY TABLE_NAME", (database,))
                tables = [r[0] for r in cur.fetchall()]
                sums: dict[str, int | None] = {}
                if tables:
                    cur.execute("CHECKSUM TABLE " + ", ".join(
                        f"`{database}`.`{t}`" for t in tables))
                    for name, value in cur.fetchall():
                        sums[name.split(".", 1)[1]] = value
                return sums
        finally:
            conn.close()

    def disagreements(self, database: str, attempts: int = 30,
                      pause: float = 0.05) -> dict[str, dict[int, int | None]]:
        """Tables whose checksums differ between the running nodes in every
        one of ``attempts`` readings: ``{table: {node: checksum}}``, empty
        when they agree.

        For a cluster that is being written to: a clouddisco writes
        heartbeats several times a second, so one reading of the nodes, one
        after another, can catch a commit between two of them. A table that
        agrees in any reading is consistent; a real divergence does not heal
        by itself and differs in every one.
        """
        differ: dict[str, dict[int, int | None]] | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(pause)
            sums = self.checksum(database)
            tables = set().union(*(v.keys() for v in sums.values()))
            now = {t: {n: v.get(t) for n, v in sums.items()} for t in sorted(tables)
                   if len({v.get(t) for v in sums.values()}) > 1}
            differ = now if differ is None else {t: now[t] for t in differ if t in now}
            if not differ:
                return {}
        return differ or {}


def node_behind(connect: Any) -> int:
    """The number of the node a new connection from ``connect`` reaches (e.g.
    through HAProxy), as that node names itself (``wsrep_node_name``)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@wsrep_node_name")
            return int(cur.fetchone()[0].removeprefix("node"))
    finally:
        conn.close()


def _clean_env() -> dict[str, str]:
    # MYSQL_*/MARIADB_* variables of the caller (e.g. MYSQL_UNIX_PORT) must
    # not point the nodes or their SST scripts at the machine's server.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MYSQL_", "MARIADB_", "WSREP_"))}


# --------------------------------------------------------------------------
# measuring the write stall of a node crash: python -m lab.galera --help


class WriteLoop:
    """A client doing one autocommit INSERT every ``interval`` seconds, in a
    thread, reconnecting after any error; records when each commit returned.

    ``connect`` makes a new autocommit pymysql connection (to a node, or
    through HAProxy); ``table`` has an AUTO_INCREMENT key and a column ``v``.
    The longest gap between two commits is the stall a client of that
    endpoint saw; ``committed_ids`` are the rows the client was told are
    committed, which must all survive any single-node crash.
    """

    def __init__(self, connect: Any, table: str, interval: float = 0.01) -> None:
        self.connect = connect
        self.table = table
        self.interval = interval
        self.commits: list[float] = []
        self.committed_ids: list[int] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="galera-writer")

    def start(self) -> WriteLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (v) VALUES ('w')")
                    row_id = cur.lastrowid
                self.commits.append(time.monotonic())
                self.committed_ids.append(row_id)
            except Exception as e:  # any failure: note it, reconnect
                self.errors.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
            self._stop.wait(self.interval)
        with contextlib.suppress(Exception):
            if conn is not None:
                conn.close()

    def max_gap(self, after: float = 0.0) -> float:
        """Longest time between two commits, counting the one that straddles
        ``after`` in full; inf if nothing was committed after it."""
        ts = self.commits
        before = [t for t in ts if t <= after]
        later = [t for t in ts if t > after]
        if not later:
            return float("inf")
        points = ([before[-1]] if before else []) + later
        return max((b - a for a, b in zip(points, points[1:], strict=False)),
                   default=0.0)


def measure_stall(cluster: GaleraCluster, victim: int, connect: Any, table: str,
                  before: float = 1.0, after: float = 4.0) -> dict[str, Any]:
    """Run a WriteLoop, kill -9 ``victim`` after ``before`` s, keep writing
    for ``after`` s (longer if commits have not resumed) and return the
    longest gap and the errors the client saw."""
    loop = WriteLoop(connect, table).start()
    try:
        time.sleep(before)
        t_kill = time.monotonic()
        cluster.kill(victim)
        time.sleep(after)
        with contextlib.suppress(TimeoutError):
            netlab.wait_for(lambda: any(t > t_kill for t in loop.commits), 30,
                            what="writes to resume")
    finally:
        loop.stop()
    errors = [f"+{t - t_kill:.2f}s {e[:70]}" for t, e in loop.errors if t >= t_kill]
    return {"max_gap": round(loop.max_gap(after=t_kill), 3),
            "commits": len(loop.commits), "errors": errors}


def _measure(evs_name: str, repeats: int) -> None:
    import pymysql

    from lab import haproxy as haproxy_mod

    evs = {"default": DEFAULT_EVS, "tuned": TUNED_EVS}[evs_name]
    cluster = GaleraCluster(evs=evs)
    proxy = haproxy_mod.HAProxy()
    try:
        cluster.start()
        print(f"[{evs_name}] bring-up {cluster.last_start_seconds:.1f} s "
              f"evs={evs or 'galera defaults'}", flush=True)
        cluster.create_database("stall")
        cluster.execute(1, "CREATE TABLE stall.w (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
                           " v VARCHAR(8), at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
        fe = proxy.add_tcp_writer("db", cluster.servers(), check_user=cluster.check_user)
        proxy.start()

        def direct(node: int) -> Any:
            return lambda: pymysql.connect(
                host="127.0.0.1", port=cluster.port(node), user=cluster.user,
                password=cluster.password, database="stall", autocommit=True,
                connect_timeout=2, read_timeout=60)

        def via_proxy() -> Any:
            return pymysql.connect(host="127.0.0.1", port=fe, user=cluster.user,
                                   password=cluster.password, database="stall",
                                   autocommit=True, connect_timeout=2, read_timeout=60)

        def proxy_writer() -> int:
            return node_behind(via_proxy)

        for r in range(repeats):
            # A node nobody writes to dies; the client writes to another.
            victim = cluster.n
            writer = 1 if victim != 1 else 2
            res = measure_stall(cluster, victim, direct(writer), "w")
            print(f"[{evs_name}] #{r} kill idle node{victim}, client on node{writer}: "
                  f"{res}", flush=True)
            cluster.start_node(victim)
            proxy.wait_server_status("db", f"node{victim}", "UP")
            # The node the client writes to (through HAProxy) dies.
            victim = proxy_writer()
            res = measure_stall(cluster, victim, via_proxy, "w")
            print(f"[{evs_name}] #{r} kill the writer node{victim}, client via HAProxy: "
                  f"{res}", flush=True)
            cluster.start_node(victim)
            proxy.wait_server_status("db", f"node{victim}", "UP")
    finally:
        proxy.destroy()
        cluster.destroy()


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.galera [--evs default,tuned] [--repeats N]``: bring up a
    cluster per evs setting and print the write stalls of kill -9."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--evs", default="default,tuned")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for name in args.evs.split(","):
        _measure(name, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
