"""clouddisco.systemd against real AF_UNIX datagram sockets (no systemd needed)."""

import os
import secrets
import socket

import fixtures
import testtools

from clouddisco import systemd


class NotifyTest(testtools.TestCase):
    """notify() sends exactly the state bytes to whatever $NOTIFY_SOCKET names."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET"))

    def listen(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        # Never hang the test run if nothing arrives.
        sock.settimeout(5)
        return sock

    def path_socket(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "notify")
        return path, self.listen(path)

    def test_unset_is_not_under_systemd(self):
        self.assertFalse(systemd.notify("READY=1"))

    def test_empty_is_not_under_systemd(self):
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", ""))
        self.assertFalse(systemd.notify("READY=1"))

    def test_path_socket_receives_state(self):
        path, sock = self.path_socket()
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", path))
        self.assertTrue(systemd.notify("READY=1"))
        self.assertEqual(b"READY=1", sock.recv(4096))

    def test_given_socket_without_environment(self):
        """A cotyledon worker: $NOTIFY_SOCKET taken from the environment
        before the fork (clouddisco.scheduler.service.serve), passed on."""
        path, sock = self.path_socket()
        self.assertTrue(systemd.notify("READY=1", path))
        self.assertEqual(b"READY=1", sock.recv(4096))
        self.assertNotIn("NOTIFY_SOCKET", os.environ)

    def test_multiple_assignments_in_one_datagram(self):
        path, sock = self.path_socket()
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", path))
        self.assertTrue(systemd.notify("READY=1\nSTATUS=serving 3 routers"))
        self.assertEqual(b"READY=1\nSTATUS=serving 3 routers", sock.recv(4096))

    def test_each_call_is_one_datagram(self):
        # Datagram boundaries matter: systemd parses one message per datagram.
        path, sock = self.path_socket()
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", path))
        systemd.notify("WATCHDOG=1")
        systemd.notify("STATUS=ok")
        self.assertEqual(b"WATCHDOG=1", sock.recv(4096))
        self.assertEqual(b"STATUS=ok", sock.recv(4096))

    def test_non_ascii_status_is_utf8(self):
        path, sock = self.path_socket()
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", path))
        systemd.notify("STATUS=r\u00e9seau pr\u00eat")
        self.assertEqual("STATUS=r\u00e9seau pr\u00eat".encode(), sock.recv(4096))

    def test_abstract_namespace_socket(self):
        name = f"clouddisco-test-{secrets.token_hex(8)}"
        sock = self.listen("\0" + name)
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", "@" + name))
        self.assertTrue(systemd.notify("READY=1"))
        self.assertEqual(b"READY=1", sock.recv(4096))

    def test_missing_socket_returns_false(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "gone")
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", path))
        logger = self.useFixture(fixtures.FakeLogger(name="clouddisco.systemd"))
        self.assertFalse(systemd.notify("WATCHDOG=1"))
        self.assertIn("Could not notify systemd", logger.output)

    def test_unsupported_address_form_returns_false(self):
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", "vsock:2:1234"))
        self.useFixture(fixtures.FakeLogger(name="clouddisco.systemd"))
        self.assertFalse(systemd.notify("READY=1"))

    def test_bare_at_sign_returns_false(self):
        self.useFixture(fixtures.EnvironmentVariable("NOTIFY_SOCKET", "@"))
        self.useFixture(fixtures.FakeLogger(name="clouddisco.systemd"))
        self.assertFalse(systemd.notify("READY=1"))


class WatchdogIntervalTest(testtools.TestCase):
    """watchdog_interval() follows sd_watchdog_enabled(3) and halves the period."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.EnvironmentVariable("WATCHDOG_USEC"))
        self.useFixture(fixtures.EnvironmentVariable("WATCHDOG_PID"))
        self.useFixture(fixtures.FakeLogger(name="clouddisco.systemd"))

    def env(self, usec=None, pid=None):
        self.useFixture(fixtures.EnvironmentVariable("WATCHDOG_USEC", usec))
        self.useFixture(fixtures.EnvironmentVariable("WATCHDOG_PID", pid))

    def test_not_configured(self):
        self.assertIsNone(systemd.watchdog_interval())

    def test_half_of_watchdog_sec(self):
        self.env(usec="1000000")
        self.assertEqual(0.5, systemd.watchdog_interval())

    def test_for_this_pid(self):
        self.env(usec="3000000", pid=str(os.getpid()))
        self.assertEqual(1.5, systemd.watchdog_interval())

    def test_for_another_pid(self):
        # E.g. a helper child that inherited the agent's environment.
        self.env(usec="3000000", pid=str(os.getpid() + 1))
        self.assertIsNone(systemd.watchdog_interval())

    def test_zero_is_disabled(self):
        self.env(usec="0")
        self.assertIsNone(systemd.watchdog_interval())

    def test_malformed_usec(self):
        self.env(usec="1s")
        self.assertIsNone(systemd.watchdog_interval())

    def test_malformed_pid(self):
        self.env(usec="1000000", pid="main")
        self.assertIsNone(systemd.watchdog_interval())
