"""launch: SIGHUP reloads the mutable options and never ends the wait."""

import logging
import os
import signal
import threading

import fixtures
import testtools

from clouddisco import conf as cd_conf
from clouddisco import launch


class SighupTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.path = os.path.join(self.useFixture(fixtures.TempDir()).path, "c.conf")
        self._write(debug=False)
        self.conf = cd_conf.build(["--config-file", self.path], default_config_files=[])
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, sig, signal.getsignal(sig))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _write(self, debug):
        with open(self.path, "w") as f:
            f.write(f"[DEFAULT]\ndebug = {debug}\n[agent]\nreport_interval = 1\n")

    def test_reload_config_applies_mutable_options_only(self):
        self._write(debug=True)
        with open(self.path, "a") as f:
            f.write("report_interval = 7\n")  # not mutable: next restart
        changed = launch.reload_config(self.conf)
        self.assertEqual({(None, "debug")}, set(changed))
        self.assertTrue(self.conf.debug)
        self.assertEqual(1, self.conf.agent.report_interval)
        self.assertIn("mutable options changed: [DEFAULT] debug; still serving",
                      self.log.output)

    def test_unreadable_file_keeps_the_old_configuration(self):
        with open(self.path, "w") as f:
            f.write("[DEFAULT\nnot ini at all\n")
        self.assertEqual({}, launch.reload_config(self.conf))
        self.assertFalse(self.conf.debug)
        self.assertIn("configuration files not reloaded", self.log.output)

    def test_wait_for_signal_reloads_on_sighup_and_returns_on_sigterm(self):
        self._write(debug=True)
        original = signal.getsignal(signal.SIGHUP)

        def send():
            # Not before wait_for_signal has its handlers in place.
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or \
                    signal.getsignal(signal.SIGHUP) is original:
                threading.Event().wait(0.01)
            os.kill(os.getpid(), signal.SIGHUP)
            # Only once the reload is done: SIGTERM must find it still waiting.
            while "still serving" not in self.log.output:
                threading.Event().wait(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=send, daemon=True).start()
        self.assertEqual(signal.SIGTERM, launch.wait_for_signal(self.conf))
        self.assertTrue(self.conf.debug)

    def test_sigterm_taken_by_another_thread_still_ends_the_wait(self):
        # The kernel gives a process-directed signal to any thread that does
        # not block it. When that is not the main thread, CPython only marks
        # the handler pending; a main thread asleep in a lock (a queue's
        # get()) would never run it, and the service would ignore systemd's
        # SIGTERM until SIGKILL. Blocking the signals in the main thread
        # forces that delivery here.
        main = threading.get_ident()
        rescued = threading.Event()
        returned = threading.Event()
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)

        def send():
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                threading.Event().wait(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
            if not returned.wait(10):
                # Wake the main thread directly (SIGUSR1 is not blocked),
                # so the old code's hang ends the test instead of the run.
                rescued.set()
                signal.pthread_kill(main, signal.SIGUSR1)

        # The sender first: a new thread inherits its creator's signal mask.
        threading.Thread(target=send, daemon=True).start()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
        self.addCleanup(signal.pthread_sigmask, signal.SIG_SETMASK, old_mask)
        self.assertEqual(signal.SIGTERM, launch.wait_for_signal(self.conf))
        returned.set()
        self.assertFalse(rescued.is_set(), "SIGTERM was only seen after the main thread "
                         "was woken by another signal")

    def test_a_service_survives_sighup_during_start_up(self):
        launch.survive_sighup()
        os.kill(os.getpid(), signal.SIGHUP)  # the default action would end us
        self.assertIsNot(signal.SIG_IGN, signal.getsignal(signal.SIGHUP))
