"""Tests of lab.tcpproxy (no root needed).

The first class uses a local echo server; the second puts the proxy between
kombu and the machine's RabbitMQ (127.0.0.1:5672, default vhost), using only
a uniquely named auto-delete queue that is deleted again. Like the database
tests they fail rather than skip without the broker: tools/setup-env.sh
provides it.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
import unittest

import amqp
import kombu

from lab import netlab
from lab import tcpproxy

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"


class EchoServer:
    """Echoes every connection on 127.0.0.1 until closed; can drop its clients."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.clients.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        # Errors just end the echo: the tests reset and drop these links.
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close_clients(self) -> None:
        with self._lock:
            clients, self.clients = self.clients, []
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        # shutdown() wakes the blocked accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
        self.close_clients()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        data = sock.recv(n)
        if not data:
            raise EOFError("connection closed early")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def proxy_threads(port: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"tcpproxy-{port}")]


class TestTcpProxyEcho(unittest.TestCase):

    def setUp(self) -> None:
        self.server = EchoServer()
        self.addCleanup(self.server.close)
        self.proxy = tcpproxy.TcpProxy("127.0.0.1", self.server.port).start()
        self.addCleanup(self.proxy.close)

    def connect(self, timeout: float = 2.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=timeout)
        self.addCleanup(sock.close)
        return sock

    def assert_echo(self, sock: socket.socket, payload: bytes = b"ping") -> None:
        sock.sendall(payload)
        self.assertEqual(payload, recv_exactly(sock, len(payload)))

    def assert_silent(self, sock: socket.socket, seconds: float = 0.5) -> None:
        """Nothing arrives, not even EOF or an error, for ``seconds``."""
        sock.settimeout(seconds)
        with self.assertRaises(TimeoutError):
            data = sock.recv(100)
            self.fail(f"received {data!r} through a dropped link")

    def test_forwards_both_ways_and_counts(self) -> None:
        payload = secrets.token_bytes(300_000)
        sock = self.connect()
        self.assert_echo(sock, payload)
        self.assertEqual(1, self.proxy.connections)
        self.assertEqual(1, self.proxy.active_connections)
        # The pump counts after sending: the echo may arrive first.
        netlab.wait_for(lambda: self.proxy.bytes_forwarded == 2 * len(payload), 5,
                        what="the byte count")
        self.assertNotEqual(self.server.port, self.proxy.port)

    def test_half_close_is_forwarded(self) -> None:
        sock = self.connect()
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(b"last words", recv_exactly(sock, 10))
        self.assertEqual(b"", sock.recv(10))
        netlab.wait_for(lambda: self.proxy.active_connections == 0, 5,
                        what="the proxy to close the finished connection")

    def test_reset_kills_live_connections_and_refuses_new(self) -> None:
        sock = self.connect()
        self.assert_echo(sock)
        t0 = time.monotonic()
        self.proxy.cut("reset")
        with self.assertRaises(ConnectionResetError):
            sock.recv(10)
        self.assertLess(time.monotonic() - t0, 1.0)  # ~1 ms when idle
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.proxy.port), timeout=2)
        self.assertEqual("reset", self.proxy.mode)

        self.proxy.restore()
        self.assert_echo(self.connect())
        self.assertEqual(2, self.proxy.connections)

    def test_drop_stalls_live_and_new_connections(self) -> None:
        live = self.connect()
        self.assert_echo(live)
        self.proxy.cut("drop")
        live.sendall(b"lost")
        self.assert_silent(live)
        # The server side going away is not reported either: a partition.
        self.server.close_clients()
        self.assert_silent(live)

        stalled = self.connect()  # accepted...
        stalled.sendall(b"hello?")
        self.assert_silent(stalled)  # ...but never answered
        self.assertEqual(2, self.proxy.connections)

        self.proxy.restore()
        self.assert_echo(self.connect())
        # Stalled links do not resume (their bytes are gone): they are reset.
        for conn in (live, stalled):
            with self.assertRaises(ConnectionResetError):
                conn.recv(10)
        self.assertEqual(3, self.proxy.connections)

    def test_drop_then_reset_resets_stalled_connections(self) -> None:
        live = self.connect()
        self.proxy.cut("drop")
        self.proxy.cut("reset")
        with self.assertRaises(ConnectionResetError):
            live.recv(10)

    def test_unreachable_target_resets_client(self) -> None:
        with tcpproxy.TcpProxy("127.0.0.1", netlab.free_port()) as proxy:
            # The reset may already hit the connect itself on a fast machine.
            with self.assertRaises(ConnectionResetError):
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
                    sock.recv(10)

    def test_fixed_listen_port_and_close_leaves_nothing(self) -> None:
        port = netlab.free_port()
        proxy = tcpproxy.TcpProxy("127.0.0.1", self.server.port, listen_port=port)
        with proxy:
            self.assertEqual(port, proxy.port)
            sock = self.connect_to(port)
            self.assert_echo(sock)
            proxy.cut("drop")
            self.connect_to(port)
        self.assertFalse(netlab.port_open(port))
        netlab.wait_for(lambda: sock.recv(10) == b"", 2, what="EOF after close()")
        self.assertEqual(0, proxy.active_connections)
        with self.assertRaises(RuntimeError):
            proxy.cut()
        proxy.close()  # idempotent
        self.assertEqual([], proxy_threads(port))

    def connect_to(self, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.addCleanup(sock.close)
        return sock

    def test_bad_use(self) -> None:
        with self.assertRaises(ValueError):
            self.proxy.cut("bogus")  # type: ignore[arg-type]
        with self.assertRaises(RuntimeError):
            self.proxy.start()
        with self.assertRaises(RuntimeError):
            tcpproxy.TcpProxy("127.0.0.1", 1).restore()


class TestTcpProxyAmqp(unittest.TestCase):
    """Real AMQP through the proxy to the machine's broker."""

    HEARTBEAT = 2

    def setUp(self) -> None:
        self.queue = f"cdt-proxy-{secrets.token_hex(4)}"
        # The queue is declared and checked over a direct connection, so
        # what the proxy does cannot hide or fake a message.
        self.direct = kombu.Connection(BROKER_URL, connect_timeout=5)
        self.addCleanup(self.direct.release)
        self.direct_channel = self.direct.channel()
        # x-expires: the broker drops the queue by itself a minute after a
        # run that was killed before its clean-up.
        self.direct_channel.queue_declare(self.queue, auto_delete=True,
                                          arguments={"x-expires": 60_000})
        self.addCleanup(self.direct_channel.queue_delete, self.queue)
        self.proxy = tcpproxy.TcpProxy("127.0.0.1", 5672).start()
        self.addCleanup(self.proxy.close)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.proxy.port}//"

    def client(self, **kwargs: object) -> kombu.Connection:
        conn = kombu.Connection(self.url, connect_timeout=2, **kwargs)
        # collect(), not release(): closing channels politely over a dropped
        # link waits for the broker's answer forever.
        self.addCleanup(conn.collect)
        conn.ensure_connection(max_retries=0)
        return conn

    def publish(self, conn: kombu.Connection, body: bytes) -> None:
        kombu.Producer(conn.default_channel).publish(body, routing_key=self.queue)

    def take(self, count: int, timeout: float = 2.0) -> list[bytes]:
        """Up to ``count`` bodies from the queue, read over the direct link;
        returns early once ``count`` arrived."""
        bodies: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(bodies) < count:
            msg = self.direct_channel.basic_get(self.queue, no_ack=True)
            if msg is not None:
                bodies.append(msg.body)
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.05)
        return bodies

    @staticmethod
    def run_client(conn: kombu.Connection, seconds: float) -> None:
        """Behave like an oslo.messaging listener for ``seconds``: read frames
        and check heartbeats. amqp only counts what drain_events() read, so a
        heartbeat check alone would call any idle connection dead."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
            conn.heartbeat_check()

    def test_publish_and_consume_through_proxy(self) -> None:
        conn = self.client()
        self.publish(conn, b"via proxy")
        got: list[bytes] = []

        def on_message(body: object, message: kombu.Message) -> None:
            got.append(message.body)
            message.ack()

        queue = kombu.Queue(self.queue, auto_delete=True, no_declare=True)
        with kombu.Consumer(conn.default_channel, [queue], callbacks=[on_message]):
            conn.drain_events(timeout=5)
        self.assertEqual([b"via proxy"], got)
        self.assertGreaterEqual(self.proxy.connections, 1)
        self.assertGreater(self.proxy.bytes_forwarded, 0)

    def test_reset_errors_quickly_and_restore_reconnects(self) -> None:
        conn = self.client()
        self.publish(conn, b"before")
        self.assertEqual([b"before"], self.take(1))

        # "Quickly": well under a second when idle; the bounds leave room for
        # a loaded machine and are still far below heartbeat detection.
        t0 = time.monotonic()
        self.proxy.cut("reset")
        with self.assertRaises(ConnectionResetError):
            conn.drain_events(timeout=5)
        self.assertLess(time.monotonic() - t0, 2.0)
        t0 = time.monotonic()
        with self.assertRaisesRegex(kombu.exceptions.OperationalError, "refused"):
            self.client()
        self.assertLess(time.monotonic() - t0, 2.0)

        self.proxy.restore()
        self.publish(self.client(), b"after")
        self.assertEqual([b"after"], self.take(1))

    def test_drop_blackholes_heartbeat_connection(self) -> None:
        conn = self.client(heartbeat=self.HEARTBEAT)
        self.publish(conn, b"before")
        self.assertEqual([b"before"], self.take(1))
        # Control: over a healthy link the same client raises no alarm.
        self.run_client(conn, 2 * self.HEARTBEAT + 1)

        t0 = time.monotonic()
        self.proxy.cut("drop")
        self.publish(conn, b"during")  # no error: TCP does not know yet
        # Only the missing heartbeats reveal the partition: amqp gives up
        # after two heartbeat intervals without a byte from the broker.
        with self.assertRaisesRegex(amqp.exceptions.ConnectionForced, "heartbeats missed"):
            self.run_client(conn, 3 * self.HEARTBEAT + 5)
        # Not at once as after a reset (how much earlier than 2 intervals
        # depends on when the broker's last heartbeat came).
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertEqual([], self.take(1, timeout=0.5), "a message crossed the dropped link")

        # A new connection is accepted but the AMQP handshake never answers.
        t1 = time.monotonic()
        with self.assertRaisesRegex(kombu.exceptions.OperationalError, "timed out"):
            self.client()
        self.assertGreaterEqual(time.monotonic() - t1, 1.5)

        self.proxy.restore()
        self.publish(self.client(heartbeat=self.HEARTBEAT), b"after")
        self.assertEqual([b"after"], self.take(1))

if __name__ == "__main__":
    unittest.main()
