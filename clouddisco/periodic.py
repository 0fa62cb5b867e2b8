"""A named daemon thread that repeats one step until stopped (no eventlet)."""

import threading
import time
from collections.abc import Callable

from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class Loop:
    """Run ``step`` again and again; ``step`` returns the seconds until its next
    start (measured from when it started, so slow steps do not drift the cadence).

    An exception is logged and the loop goes on after ``retry_delay``: a
    database or broker blip must never end a heartbeat or a health monitor.
    """

    def __init__(self, name: str, step: Callable[[], float], retry_delay: float) -> None:
        self.name = name
        self.step = step
        self.retry_delay = retry_delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                delay = self.step()
            except Exception:
                LOG.exception("%s: step failed; retrying in %.2fs", self.name,
                              self.retry_delay)
                delay = self.retry_delay
            self._stop.wait(max(0.0, delay - (time.monotonic() - started)))
