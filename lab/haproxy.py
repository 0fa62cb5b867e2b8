"""A private HAProxy on 127.0.0.1 in front of lab servers (Galera nodes, API
replicas), built from data, for the HA-topology tests and bench/.

Two kinds of frontend:

* ``add_tcp_writer(name, servers)``: one writer for a Galera cluster. All
  clients write to the same node (the others are ``backup``), so Galera's
  certification conflicts (error 1213 on commit) stay rare. A one-entry
  stick table (``stick on dst``: every client connects to the same address)
  keeps that one node after a failover, also when the old writer comes back,
  so clients are never split between two writers by a fail-back. Health
  checks every 500 ms, down after 2 failures, up after 2 successes;
  ``on-marked-down shutdown-sessions`` closes the sessions of a dead writer
  at once so its clients reconnect (to the new writer) instead of waiting
  for TCP to time out. The default ``check="galera"`` logs in with a
  password-less, privilege-less account and requires ``wsrep_local_state``
  Synced or Donor/Desynced, so a node that is joining, catching up or cut
  off in a non-Primary component gets no clients (see
  ``galera_check_rules``); ``"mysql"`` is HAProxy's ``option mysql-check``
  (login only, no wsrep state); ``"tcp"`` a plain connect.
* ``add_http_balancer(name, servers)``: round robin over API replicas with
  ``option httpchk``. ``retries 3`` + ``option redispatch 1`` + ``retry-on
  all-retryable-errors`` make a killed replica cost no failed request: a
  refused connection is retried on another replica for every method (the
  request was not sent), a replica that dies mid-request (empty response,
  502/503/504) is retried only for GET/HEAD (``http-request
  disable-l7-retry unless METH_GET``), because replaying a POST/PUT/DELETE
  is not known to be safe for our API.

Timeouts: ``connect 1s`` (loopback: a live server answers in microseconds,
a dead one is refused at once; one second only matters for a hung server).
``client``/``server`` are 1 h for the TCP writer: a database connection
in a pool (SQLAlchemy, oslo.db) sits idle between transactions for minutes,
and HAProxy would otherwise cut it, which the application would see as a
"MySQL server has gone away" on its next query; dead peers are found by the
health checks and ``on-marked-down shutdown-sessions`` (plus ``option
clitcpka``/``srvtcpka``), not by idle timeouts. The HTTP balancer uses 60 s
for requests and ``http-keep-alive 10s``.

HAProxy runs in the foreground (``-db``) as our child in its own session,
with a unix stats socket (admin level) in its temp dir; ``server_state()``
reads ``show stat`` through it.

Measured on the 2-core Debian 12 machine, HAProxy 2.6.12: ``start()`` takes
0.12-0.26 s (``haproxy -c`` validation included). With Galera behind the
writer (lab.galera, tuned evs), a client of a killed writer node loses the
one statement in flight and commits again after 1.3-1.4 s, almost all of it
Galera evicting the dead node; a killed API replica costs no request
(tests/functional/test_galera_lab.py).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import IO

from lab import netlab

HAPROXY = shutil.which("haproxy", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/haproxy"

# name -> (host, port); a plain list of (host, port) is named s1, s2, ...
Servers = Mapping[str, tuple[str, int]] | Sequence[tuple[str, int]]

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _mysql_packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def _hex_regex(data: bytes) -> str:
    # rbinary matches a regex against the hex dump of the response; the dump's
    # letter case is not documented, so accept both.
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in data.hex())


def galera_check_rules(user: str) -> list[str]:
    """``tcp-check`` rules that pass only for a Galera node in state Synced
    (4) or Donor/Desynced (2).

    A minimal MySQL client in HAProxy's check language: wait for the
    server's greeting, log in as ``user`` (no password: the handshake
    response is then a constant), ask ``SHOW STATUS LIKE
    'wsrep_local_state'`` (SHOW works on a non-Primary node too, where a
    SELECT fails with 1047) and require the row ``wsrep_local_state | 4``
    or ``| 2``. Without CLIENT_PLUGIN_AUTH the server takes the empty answer
    as a mysql_native_password one, which is right for an account without a
    password. Binary matches are used because string matches stop at the
    first NUL byte, and MySQL packets are full of them.

    Why a donor counts as up: the donor of an IST (a restarted node
    catching up) stays fully usable, and even an rsync SST donor only
    blocks writes for the seconds of the copy; marking the writer down then
    would cut every client's session (``on-marked-down shutdown-sessions``)
    and move the writes to another node for nothing. A joiner, a node that
    is still catching up (Joined) or one in a non-Primary component is down.
    """
    # CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41
    # | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
    caps = 0x1 | 0x4 | 0x200 | 0x2000 | 0x8000
    login = (struct.pack("<IIB", caps, 1 << 24, 0x21) + b"\0" * 23
             + user.encode() + b"\0" + b"\0")
    query = b"\x03SHOW STATUS LIKE 'wsrep_local_state'"
    quit_ = b"\x01"
    # The result row: two length-prefixed strings, the name and one digit.
    name = b"wsrep_local_state"
    row = _hex_regex(bytes([len(name)]) + name + b"\x01")
    return [
        "option tcp-check",
        "tcp-check connect",
        # Greeting: protocol version 10 right after the 4-byte header.
        "tcp-check expect rbinary ^[0-9a-fA-F]{6}000[aA]",
        f"tcp-check send-binary {_mysql_packet(1, login).hex()}",
        # OK packet (header, then 0x00), not an ERR (0xff) for a bad login.
        "tcp-check expect rbinary ^[0-9a-fA-F]{6}0200",
        f"tcp-check send-binary {_mysql_packet(0, query).hex()}",
        # Wait for the row whatever the state, then judge the state at once
        # (min-recv 0) rather than waiting for the check timeout.
        f"tcp-check expect rbinary {row}3[0-9]",
        f"tcp-check expect min-recv 0 rbinary {row}3[24]",
        f"tcp-check send-binary {_mysql_packet(0, quit_).hex()}",
    ]


def _servers(servers: Servers) -> list[tuple[str, str, int]]:
    if isinstance(servers, Mapping):
        items = [(name, host, port) for name, (host, port) in servers.items()]
    else:
        items = [(f"s{i}", host, port) for i, (host, port) in enumerate(servers, 1)]
    if not items:
        raise ValueError("a frontend needs at least one server")
    for name, _host, _port in items:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad server name {name!r}")
    return items


@dataclass
class _Frontend:
    name: str
    port: int
    lines: list[str] = field(default_factory=list)


class HAProxy:
    """One haproxy process with the frontends added before ``start()``."""

    def __init__(self) -> None:
        self._frontends: dict[str, _Frontend] = {}
        self.tmpdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._destroyed = False
        self.last_start_seconds: float | None = None

    # -- building the config

    def _add(self, name: str, lines: list[str]) -> int:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad frontend name {name!r}")
        if name in self._frontends:
            raise ValueError(f"frontend {name!r} exists already")
        if self._proc is not None:
            raise RuntimeError("add frontends before start()")
        port = netlab.free_port()
        self._frontends[name] = _Frontend(name, port, lines)
        return port

    def add_tcp_writer(self, name: str, servers: Servers, check: str = "galera",
                       check_user: str = "cdcheck", failback: bool = False) -> int:
        """A TCP frontend sending every client to one server (the first that
        is up), the others being backups. Returns the frontend's port.

        ``failback=False`` keeps the clients on the server they failed over
        to when the first one comes back (see the module docstring).
        """
        items = _servers(servers)
        lines = [
            "mode tcp",
            "balance first",
            # A connect refused by a writer that died since its last check
            # goes to the next server instead of failing the client.
            "retries 2",
            "option redispatch 1",
            "option clitcpka",
            "option srvtcpka",
            "timeout client 1h",
            "timeout server 1h",
        ]
        if check == "galera":
            lines += galera_check_rules(check_user)
        elif check == "mysql":
            lines.append(f"option mysql-check user {check_user} post-41")
        elif check != "tcp":
            raise ValueError(f"check must be galera, mysql or tcp, not {check!r}")
        if not failback:
            lines += ["stick-table type ip size 1", "stick on dst"]
        lines.append("default-server inter 500 fastinter 250 downinter 500 fall 2 rise 2"
                     " on-marked-down shutdown-sessions")
        for i, (sname, host, port) in enumerate(items):
            lines.append(f"server {sname} {host}:{port} check" + (" backup" if i else ""))
        return self._add(name, lines)

    def add_http_balancer(self, name: str, servers: Servers, check_path: str = "/") -> int:
        """An HTTP frontend balancing round robin over ``servers``, checked
        with ``GET check_path``. Returns the frontend's port."""
        if not check_path.startswith("/") or any(c.isspace() for c in check_path):
            raise ValueError(f"bad check path {check_path!r}")
        items = _servers(servers)
        lines = [
            "mode http",
            "balance roundrobin",
            f"option httpchk GET {check_path}",
            "retries 3",
            "option redispatch 1",
            "retry-on all-retryable-errors",
            "http-request disable-l7-retry unless METH_GET",
            "timeout client 60s",
            "timeout server 60s",
            "timeout http-request 10s",
            "timeout http-keep-alive 10s",
            "default-server inter 500 fastinter 250 downinter 500 fall 2 rise 2",
        ]
        for sname, host, port in items:
            lines.append(f"server {sname} {host}:{port} check")
        return self._add(name, lines)

    def port(self, name: str) -> int:
        """The port of frontend ``name`` on 127.0.0.1."""
        return self._frontends[name].port

    def frontends(self) -> list[str]:
        return list(self._frontends)

    @property
    def stats_socket(self) -> str:
        assert self.tmpdir is not None
        return os.path.join(self.tmpdir, "stats.sock")

    def config(self) -> str:
        """The haproxy.cfg text (needs the temp dir for the stats socket)."""
        if self.tmpdir is None:
            raise RuntimeError("config() before start()")
        out = [
            "global",
            f"    stats socket {self.stats_socket} mode 600 level admin",
            "    maxconn 4000",
            "",
            "defaults",
            "    timeout connect 1s",
            "    timeout check 1s",
            "    timeout client 60s",
            "    timeout server 60s",
            "",
        ]
        for fe in self._frontends.values():
            out.append(f"listen {fe.name}")
            out.append(f"    bind 127.0.0.1:{fe.port}")
            out += [f"    {line}" for line in fe.lines]
            out.append("")
        return "\n".join(out)

    # -- lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.tmpdir is None:
            return ""
        try:
            with open(os.path.join(self.tmpdir, "haproxy.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout: float = 10.0) -> HAProxy:
        """Validate the config (``haproxy -c``), start haproxy and wait until
        every frontend port accepts connections."""
        if self._destroyed:
            raise RuntimeError("HAProxy was destroyed")
        if self._proc is not None:
            raise RuntimeError("HAProxy already started")
        if not self._frontends:
            raise RuntimeError("no frontend: add_tcp_writer()/add_http_balancer() first")
        t0 = time.monotonic()
        self.tmpdir = tempfile.mkdtemp(prefix="cdt-haproxy-")
        netlab._register(self, self.destroy)
        try:
            cfg = os.path.join(self.tmpdir, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(self.config())
            check = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True,
                                   text=True, timeout=30, check=False)
            if check.returncode != 0:
                raise RuntimeError(f"invalid haproxy config {cfg}:\n"
                                   f"{check.stdout}{check.stderr}\n{self.config()}")
            # Open for haproxy's whole life; closed in destroy().
            self._log = open(os.path.join(self.tmpdir, "haproxy.log"), "ab")  # noqa: SIM115
            # -db: foreground, so the pid is haproxy's own; own session so a
            # Ctrl-C of the test runner does not reach it.
            self._proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", cfg], cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

            def up() -> bool:
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError("haproxy exited early:\n" + self.log_tail())
                return all(netlab.port_open(fe.port, timeout=0.2)
                           for fe in self._frontends.values())

            netlab.wait_for(up, timeout, what="haproxy frontends")
        except Exception:
            self.destroy()
            raise
        self.last_start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop haproxy (SIGTERM, then SIGKILL) and reap it."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def destroy(self) -> None:
        """Stop haproxy and remove its temp dir; safe to call twice."""
        if self._destroyed:
            return
        self._destroyed = True
        netlab._unregister(self)
        try:
            self.stop()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        fes = {n: fe.port for n, fe in self._frontends.items()}
        return f"HAProxy({fes})"

    # -- runtime API

    def command(self, cmd: str, timeout: float = 5.0) -> str:
        """One command on the stats socket (e.g. ``show stat``,
        ``disable server db/node1``); returns haproxy's answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.stats_socket)
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def server_state(self, name: str) -> dict[str, dict[str, str]]:
        """``{server: {"status": "UP"|"DOWN"|"MAINT"|..., "check_status": ...,
        "scur": current sessions, "stot": total sessions, "bck": "0"|"1", ...}}``
        of frontend ``name``, from ``show stat``."""
        text = self.command("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        out: dict[str, dict[str, str]] = {}
        for row in rows:
            if row.get("pxname") != name or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            out[row["svname"]] = {k: row.get(k, "") for k in
                                  ("status", "check_status", "check_desc", "scur",
                                   "stot", "bck", "lastchg")}
        return out

    def writer(self, name: str) -> str | None:
        """The server a TCP writer frontend (``failback=False``) sends its
        clients to, from its stick table; None before the first client."""
        m = re.search(r"server_key=(\S+)", self.command(f"show table {name}"))
        return m.group(1) if m else None

    def up_servers(self, name: str) -> list[str]:
        """Servers of frontend ``name`` that HAProxy considers up."""
        return [s for s, st in self.server_state(name).items()
                if st["status"].startswith("UP")]

    def wait_server_status(self, name: str, server: str, status: str,
                           timeout: float = 10.0) -> None:
        """Wait until ``server`` of frontend ``name`` is ``UP`` or ``DOWN``."""
        netlab.wait_for(
            lambda: self.server_state(name).get(server, {}).get(
                "status", "").startswith(status), timeout, interval=0.05,
            what=f"{name}/{server} to be {status}")

