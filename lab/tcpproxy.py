"""A TCP proxy on 127.0.0.1 that a test can cut, to fake network partitions.

Typical use: put it between oslo.messaging (kombu/amqp) and RabbitMQ, i.e.
``rabbit://guest:guest@127.0.0.1:<proxy.port>/vhost``, then ``cut()`` the
link of one agent only and ``restore()`` it later.

Two ways to fail a link:

* ``cut("reset")``: every live connection is closed with an RST
  (``SO_LINGER 0``) towards both ends, and new connections are refused
  (ECONNREFUSED). The clients notice at once; this is a crashed peer or a
  firewall that rejects.
* ``cut("drop")``: every socket stays open but no byte is forwarded any more,
  in either direction; a peer that closes is not reported to the other end;
  new connections are accepted and then stalled (never forwarded). This is a
  partition as a cut-off host experiences it: TCP reports nothing, only
  application heartbeats (AMQP heartbeats here) can find out.

After ``restore()`` new connections work again. Connections stalled by a
"drop" are reset then, as a stateful firewall that lost its state would do:
their bytes were thrown away, so the streams cannot resume.

Threads only: one acceptor plus two pump threads per connection. The
acceptor alone owns the listening socket and takes commands through a pipe,
so no thread ever closes a descriptor another thread is blocked on.

Difference from a real partition worth knowing: dropped bytes are read and
thrown away, so the sender's TCP window never fills; a sender blocks on a
full window only after far more unacknowledged data than heartbeats or a
few RPCs produce.

Clients of a dropped link hang wherever they wait for an answer without a
timeout; e.g. kombu's ``Connection.release()`` closes its channels politely
and waits forever. Clean such a client up with ``Connection.collect()``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Literal

CutMode = Literal["reset", "drop"]

_HOST = "127.0.0.1"
_BUF = 65536
# Pumps wake up this often to notice state changes while a peer is silent or
# a send is stuck on a full buffer; shutdown(SHUT_RD) wakes them sooner.
_POLL = 0.2
_CONNECT_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 10.0


def _rst_on_close(sock: socket.socket) -> None:
    # l_onoff=1, l_linger=0: close() sends RST instead of FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _bound_socket(port: int, listen: bool) -> socket.socket:
    # SO_REUSEPORT lets a bound, non-listening placeholder hold the port while
    # the proxy refuses connections ("reset" mode), so that restore() gets the
    # same port back. Without it, closing the listener would free the port for
    # anyone on this shared machine, and a plain bound socket could not coexist
    # with a listener.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((_HOST, port))
        if listen:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class _Link:
    """One accepted connection and, unless stalled from the start, its upstream."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, state: str) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        # "open" forwards; "dropped" discards; "reset" and "closing" end it.
        self.state = state
        self._lock = threading.Lock()
        self._pumps = 0
        self._closed = False

    # -- called from other threads (under the lock, so a descriptor is never
    #    shut down after it was closed and its number reused)

    def set_state(self, state: str) -> None:
        with self._lock:
            if self._closed or self.state in ("reset", "closing"):
                return
            if state == "dropped" and self.state != "open":
                return
            self.state = state
            if state in ("reset", "closing"):
                for sock in (self.client, self.upstream):
                    if sock is None:
                        continue
                    if state == "reset":
                        _rst_on_close(sock)
                    # SHUT_RD sends nothing to the peer on Linux but makes a
                    # blocked recv() return at once.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RD)

    # -- lifecycle, in the link's own threads

    def run(self) -> None:
        """Connect upstream (unless stalled), then pump client -> upstream."""
        if self.state == "open":
            try:
                upstream = socket.create_connection(
                    (self.proxy.target_host, self.proxy.target_port),
                    timeout=_CONNECT_TIMEOUT)
            except OSError:
                # Target refused or unreachable: tell the client the same way.
                self.set_state("reset")
                self._close()
                return
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.settimeout(_POLL)
            with self._lock:
                self.upstream = upstream
                cut_meanwhile = self.state in ("reset", "closing")
                if self.state == "reset":
                    _rst_on_close(upstream)
                if not cut_meanwhile:
                    self._pumps = 2
            if cut_meanwhile:
                # cut("reset") or close() came while we were connecting.
                self._close()
                return
            self.proxy._spawn(self._pump, (upstream, self.client), "up")
        else:
            with self._lock:
                self._pumps = 1
        self._pump(self.client, self.upstream)

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while True:
                try:
                    data = src.recv(_BUF)
                except TimeoutError:
                    if self.state in ("reset", "closing"):
                        return
                    continue
                if self.state in ("reset", "closing"):
                    return
                if not data:
                    # The peer finished sending. Pass the half-close on only
                    # while the link is healthy: in a partition the other end
                    # learns nothing.
                    if self.state == "open" and dst is not None:
                        with self._lock, contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                    return
                if self.state != "open" or dst is None:
                    continue  # dropped on the floor
                if not self._send_all(dst, data):
                    return
        except OSError:
            # A peer reset its end (or we did). On a healthy link pass the
            # reset on, as if the two ends were connected directly.
            if self.state == "open":
                self.set_state("reset")
        finally:
            with self._lock:
                self._pumps -= 1
                last = self._pumps == 0
            if last:
                self._close()

    def _send_all(self, dst: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self.state != "open":
                return self.state == "dropped"  # keep reading, forward nothing
            try:
                n = dst.send(view)
            except TimeoutError:
                continue
            view = view[n:]
            self.proxy._add_bytes(n)
        return True

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
        self.proxy._forget(self)


class TcpProxy:
    """Forwards TCP connections from 127.0.0.1:``port`` to the target.

    ``listen_port`` None picks a free port at ``start()``. ``connections`` is
    the number of connections accepted so far (stalled ones included),
    ``active_connections`` those still open, ``bytes_forwarded`` the bytes
    delivered to either end.
    """

    def __init__(self, target_host: str, target_port: int,
                 listen_port: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = listen_port or 0
        self.connections = 0
        self.bytes_forwarded = 0
        self.mode: Literal["open", "reset", "drop"] = "open"
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._placeholder: socket.socket | None = None
        self._commands: queue.Queue[tuple[str, threading.Event, list[BaseException]]] = (
            queue.Queue())
        self._wake_r = self._wake_w = -1
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- public API

    def start(self) -> TcpProxy:
        """Bind and start accepting; returns self."""
        if self._acceptor is not None:
            raise RuntimeError("TcpProxy already started")
        if self._closed:
            raise RuntimeError("TcpProxy was closed")
        self._listener = _bound_socket(self.port, listen=True)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"tcpproxy-{self.port}")
        self._acceptor.start()
        return self

    def cut(self, mode: CutMode = "drop") -> None:
        """Kill the link from now on ("reset" or "drop", see the module doc)."""
        if mode not in ("reset", "drop"):
            raise ValueError(f"unknown cut mode {mode!r}")
        self._command(mode)

    def restore(self) -> None:
        """Let new connections through again; cut ones stay dead."""
        self._command("open")

    def close(self) -> None:
        """Stop accepting, close every connection, wait for the threads."""
        if self._closed:
            return
        self._closed = True
        if self._acceptor is None:
            return
        try:
            self._command("close")
        except (RuntimeError, TimeoutError):
            # The acceptor died (or hangs, a bug): close its sockets here
            # rather than leave the port bound.
            for sock in (self._listener, self._placeholder):
                if sock is not None:
                    sock.close()
        self._acceptor.join(timeout=_COMMAND_TIMEOUT)
        for link in self._live_links():
            link.set_state("closing")
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=_POLL * 5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"TcpProxy(127.0.0.1:{self.port} -> {self.target_host}:"
                f"{self.target_port}, {self.mode})")

    # -- internals

    def _add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_forwarded += n

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _live_links(self) -> list[_Link]:
        with self._lock:
            return list(self._links)

    def _spawn(self, target: Callable[..., None], args: tuple[object, ...],
               direction: str) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"tcpproxy-{self.port}-{direction}")
        with self._lock:
            # Forget finished threads so a long test does not accumulate them.
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _command(self, cmd: str) -> None:
        # Commands run in the acceptor thread, which owns the listener; wait
        # for it, so that after cut() returns the new mode is in force.
        if self._acceptor is None or not self._acceptor.is_alive():
            raise RuntimeError("TcpProxy is not running")
        done = threading.Event()
        errors: list[BaseException] = []
        self._commands.put((cmd, done, errors))
        os.write(self._wake_w, b"x")
        if not done.wait(_COMMAND_TIMEOUT):
            raise TimeoutError(f"TcpProxy did not apply {cmd!r}")
        if errors:
            raise errors[0]

    def _apply(self, cmd: str) -> bool:
        """Runs in the acceptor thread. Returns False when it must stop."""
        if cmd == "close":
            for sock in (self._listener, self._placeholder):
                if sock is not None:
                    sock.close()
            self._listener = self._placeholder = None
            return False
        if cmd == "reset":
            if self._listener is not None:
                # Hold the port first, then stop listening: the kernel now
                # refuses new connections, queued ones are reset.
                self._placeholder = _bound_socket(self.port, listen=False)
                self._listener.close()
                self._listener = None
            self.mode = "reset"
            for link in self._live_links():
                link.set_state("reset")
        elif cmd == "drop":
            self._ensure_listening()
            self.mode = "drop"
            for link in self._live_links():
                link.set_state("dropped")
        elif cmd == "open":
            self._ensure_listening()
            self.mode = "open"
            # A stalled byte stream does not resume: like a stateful firewall
            # that lost its state, the healed network resets what it dropped.
            for link in self._live_links():
                if link.state == "dropped":
                    link.set_state("reset")
        return True

    def _ensure_listening(self) -> None:
        if self._listener is None:
            self._listener = _bound_socket(self.port, listen=True)
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None

    def _accept_loop(self) -> None:
        running = True
        while running:
            watch = [self._wake_r] + ([self._listener] if self._listener else [])
            readable, _, _ = select.select(watch, [], [])
            if self._wake_r in readable:
                os.read(self._wake_r, 512)
                while True:
                    try:
                        cmd, done, errors = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        running = self._apply(cmd) and running
                    except BaseException as exc:  # reported to the caller
                        errors.append(exc)
                    done.set()
                continue
            if self._listener is not None and self._listener in readable:
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    continue
                self._start_link(client)

    def _start_link(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(_POLL)
        link = _Link(self, client, "dropped" if self.mode == "drop" else "open")
        with self._lock:
            self.connections += 1
            self._links.add(link)
        self._spawn(link.run, (), "down")


class UdpProxy:
    """A datagram relay a test can cut: a node's UDP state reports to a
    scheduler replica go through it. Each client address gets an upstream
    socket of its own, so answers find their way back. ``cut()`` drops every
    datagram both ways (UDP has no connection to reset) until ``restore()``."""

    def __init__(self, target_host: str, target_port: int,
                 listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((listen_host, 0))
        self.port = self.sock.getsockname()[1]
        self.open = True
        self._upstream: dict[tuple, socket.socket] = {}
        self._clients: dict[socket.socket, tuple] = {}
        self._used: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"udpproxy-{self.port}",
                                        daemon=True)

    def start(self) -> UdpProxy:
        self._thread.start()
        return self

    def cut(self, mode: CutMode = "drop") -> None:
        if mode not in ("reset", "drop"):
            raise ValueError(f"unknown cut mode {mode!r}")
        self.open = False

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [self.sock, *self._upstream.values()]:
            sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock, *self._clients], [], [], 0.2)
            for sock in ready:
                try:
                    data, address = sock.recvfrom(65535)
                except OSError:
                    continue  # e.g. ICMP unreachable from a stopped target
                if not self.open:
                    continue
                if sock is self.sock:
                    self._used[address] = time.monotonic()
                    upstream = self._upstream.get(address)
                    if upstream is None:
                        self._forget_idle()
                        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        self._upstream[address] = upstream
                        self._clients[upstream] = address
                    with contextlib.suppress(OSError):
                        upstream.sendto(data, self.target)
                elif sock in self._clients:
                    with contextlib.suppress(OSError):
                        self.sock.sendto(data, self._clients[sock])

    def _forget_idle(self, idle: float = 10.0) -> None:
        # A reporter uses a new source port per report: without this the
        # relay would keep a socket per report for ever.
        now = time.monotonic()
        for address in [a for a, t in self._used.items() if now - t > idle]:
            upstream = self._upstream.pop(address)
            del self._clients[upstream], self._used[address]
            upstream.close()
