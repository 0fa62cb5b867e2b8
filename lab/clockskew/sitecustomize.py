"""A wall-clock step for one process, as its Python code sees it.

The lab puts this directory first on ``PYTHONPATH`` of a process it means to
skew (``lab.cloud.Cloud(clock_skew=True)``); Python imports it at start-up.
``time.time()`` and ``time.time_ns()`` then return the real wall clock plus
the offset, in seconds, written to ``$CLOUDDISCO_LAB_CLOCK_FILE`` (0 while the
file is absent or empty), read again at most every 50 ms. Writing the file is
an NTP step on that host, forwards or backwards, while the process runs.

What it does not move: the monotonic clock (as a real step does not), the
kernel's wall clock (packet and file timestamps), ``datetime.now()``, and
every other process, the database server's clock in particular. The code
that compares wall clocks across hosts is the RPC call deadline
(``clouddisco.rpc.lateness``), which is what a skew test exercises.
"""

import os
import threading
import time

_PATH = os.environ.get("CLOUDDISCO_LAB_CLOCK_FILE")
_RECHECK = 0.05


def _install(path: str) -> None:
    real_time, real_time_ns, monotonic = time.time, time.time_ns, time.monotonic
    lock = threading.Lock()
    state = {"offset": 0.0, "checked": -1.0}

    def offset() -> float:
        now = monotonic()
        if now - state["checked"] >= _RECHECK:
            with lock:
                state["checked"] = now
                try:
                    with open(path) as f:
                        text = f.read().strip()
                    state["offset"] = float(text) if text else 0.0
                except (OSError, ValueError):
                    state["offset"] = 0.0
        return state["offset"]

    time.time = lambda: real_time() + offset()
    time.time_ns = lambda: real_time_ns() + int(offset() * 1e9)


if _PATH:
    _install(_PATH)
