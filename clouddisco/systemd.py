"""Talk to systemd from a service: readiness and watchdog notifications.

A dependency-free stand-in for ``sd_notify(3)`` and ``sd_watchdog_enabled(3)``
so the agents can run as ``Type=notify`` units with ``WatchdogSec=`` without
linking libsystemd. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
cheap no-op, so the same code runs under the functional tests' plain
processes.

Typical use in a service::

    systemd.notify("READY=1")              # once the service is usable
    period = systemd.watchdog_interval()   # None: no watchdog configured
    ...
    systemd.notify("WATCHDOG=1")           # every ``period`` seconds
    systemd.notify("STOPPING=1")           # when a graceful stop begins
"""

from __future__ import annotations

# Plain stdlib logging on purpose: the functional tests' demo service imports
# this module, and pulling oslo.log into a 15-line helper would only slow
# that start-up down. oslo.log configures the root logger, so messages from
# here still reach the service's log.
import logging
import os
import socket

LOG = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    """The address to connect to for a ``$NOTIFY_SOCKET`` value.

    systemd hands out a filesystem path, or, e.g. for services in containers
    or user managers, an abstract-namespace name written with a leading
    ``@`` that must become a NUL byte on the wire. Other forms (``vsock:``,
    used only between VMs and their hosts) are not ours to handle.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def notify(state: str, notify_socket: str | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``) to systemd.

    Several assignments may be joined with newlines, as with sd_notify(3).
    ``notify_socket`` is a ``$NOTIFY_SOCKET`` value to use instead of the
    environment's (for a process whose environment lost it, such as a
    cotyledon worker: see clouddisco.scheduler.service.serve).
    Returns True when the datagram was sent; False when not running under
    systemd (``$NOTIFY_SOCKET`` unset or in a form not handled here) or when
    sending failed. A failure is logged, never raised: a missed notification
    must not take down the service it is meant to keep alive.
    """
    value = notify_socket or os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _socket_address(value)
    if address is None:
        LOG.warning("Unsupported NOTIFY_SOCKET %r; not notifying %r", value, state)
        return False
    try:
        # A fresh socket per message, like libsystemd: notifications are
        # rare (one per watchdog period) and this keeps no state across
        # fork() or across a systemd daemon-reexec.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        LOG.warning("Could not notify systemd of %r via %s: %s", state, value, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None if no watchdog applies.

    Follows sd_watchdog_enabled(3): the watchdog is on when ``$WATCHDOG_USEC``
    is a positive integer and ``$WATCHDOG_PID`` is unset or this process's
    pid (a child that inherited the environment must not ping on the main
    process's behalf). The value returned is half of ``WatchdogSec=``, the
    period sd_watchdog_enabled(3) recommends, so one late ping is not fatal.
    """
    raw_usec = os.environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        LOG.warning("Ignoring malformed WATCHDOG_USEC=%r", raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = os.environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            LOG.warning("Ignoring malformed WATCHDOG_PID=%r", raw_pid)
            return None
        if pid != os.getpid():
            return None
    return usec / 2 / 1_000_000
