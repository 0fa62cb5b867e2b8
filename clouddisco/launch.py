"""Start-up and shutdown shared by the ``clouddisco-*`` commands.

A bad start must end in one line on stderr that names the problem and a
non-zero exit, never a traceback: that line is what an operator sees in
``systemctl status``.
"""

import faulthandler
import queue
import signal
import sys
import threading
from collections.abc import Callable
from collections.abc import Sequence
from typing import NoReturn

from oslo_config import cfg
from oslo_log import log as logging

from clouddisco import conf as cd_conf

LOG = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


def fail(prog: str, message: str, code: int = EXIT_CONFIG) -> NoReturn:
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(code)


def prepare(prog: str, argv: Sequence[str] | None = None,
            groups: Sequence[str] | None = None,
            cli_opts: Sequence[cfg.Opt] = ()) -> cfg.ConfigOpts:
    """Parse and check the configuration, then set up logging."""
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(list(cli_opts))
    try:
        cd_conf.build(sys.argv[1:] if argv is None else argv, prog=prog, conf=conf)
        cd_conf.check(conf, groups)
    except cd_conf.ConfigError as exc:
        fail(prog, f"invalid configuration: {exc}")
    logging.setup(conf, prog)
    # systemd's watchdog kills a hung service with SIGABRT: the stack of every
    # thread then lands in the journal and shows where it hung.
    faulthandler.enable()
    return conf


def survive_sighup() -> None:
    """For a long-running service, right after ``prepare``: SIGHUP's default
    action would end it before it installs its reload handler (a one-off
    command keeps the default, so a closed terminal still stops it).

    A handler, not SIG_IGN: an ignored signal would stay ignored in every
    command the service runs (ip, ...).
    """
    signal.signal(signal.SIGHUP, _ignore)


def require(prog: str, what: str, check: Callable[[], None]) -> None:
    """Run a start-up reachability check; exit with one line if it fails."""
    try:
        check()
    except Exception as exc:
        fail(prog, f"cannot reach {what}: {_one_line(exc)}", EXIT_UNREACHABLE)


def reload_config(conf: cfg.ConfigOpts) -> dict:
    """SIGHUP: re-read the configuration files and apply what oslo.config may
    change at run time (options marked mutable: ``debug``, log levels). The
    service keeps serving either way; one line says what happened.

    Returns the changed options, as ``ConfigOpts.mutate_config_files`` does.
    """
    try:
        changed = conf.mutate_config_files()
    except Exception as exc:
        LOG.error("SIGHUP: configuration files not reloaded (%s); still serving with "
                  "the previous configuration", _one_line(exc))
        return {}
    names = ", ".join(f"[{group or 'DEFAULT'}] {name}" for group, name in sorted(
        changed, key=lambda key: (key[0] or "", key[1])))
    LOG.info("SIGHUP: reloaded the configuration files; mutable options changed: %s; "
             "still serving (other options apply at the next restart)", names or "none")
    return changed


def reload_on_sighup(conf: cfg.ConfigOpts) -> None:
    """For a service whose main thread is not ours (waitress, cotyledon's
    master): on SIGHUP, ``reload_config`` on a thread of its own.

    The handler only queues the signal: a handler runs between two bytecodes
    of the main thread, which may hold a lock the reload needs (logging's).
    SimpleQueue.put is reentrant, so it is safe there.
    """
    signals: queue.SimpleQueue = queue.SimpleQueue()

    def reloader() -> None:
        while True:
            signals.get()
            reload_config(conf)

    threading.Thread(target=reloader, name="sighup-reload", daemon=True).start()
    signal.signal(signal.SIGHUP, lambda signum, frame: signals.put(signum))


# How late wait_for_signal may notice a signal taken by another thread.
SIGNAL_POLL_INTERVAL = 0.2


def wait_for_signal(conf: cfg.ConfigOpts | None = None) -> int:
    """Block until SIGTERM or SIGINT; return the signal number.

    SIGHUP reloads ``conf``'s mutable options (``reload_config``), or is
    ignored without ``conf``; either way the service keeps serving.
    """
    # A reentrant queue, not an Event: the handler may interrupt the main
    # thread inside the very lock it would take.
    received: queue.SimpleQueue = queue.SimpleQueue()

    def handler(signum, frame):
        received.put(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)
    while True:
        try:
            # Wake up now and then: a signal that the kernel handed to
            # another thread only marks its Python handler pending, and
            # the main thread runs it when it next executes bytecode, never
            # while asleep in get(). Without the timeout systemd's SIGTERM
            # could wait for SIGKILL.
            signum = received.get(timeout=SIGNAL_POLL_INTERVAL)
        except queue.Empty:
            continue
        if signum != signal.SIGHUP:
            break
        if conf is not None:
            reload_config(conf)
        else:
            LOG.info("SIGHUP ignored: nothing to reload; still serving")
    LOG.info("received %s, stopping", signal.Signals(signum).name)
    return signum


def _ignore(signum, frame) -> None:
    pass


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
