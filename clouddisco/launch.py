"""Start-up and shutdown shared by the ``clouddisco-*`` commands.

A bad start must end in one line on stderr that names the problem and a
non-zero exit, never a traceback: that line is what an operator sees in
``systemctl status``.
"""

import faulthandler
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


def require(prog: str, what: str, check: Callable[[], None]) -> None:
    """Run a start-up reachability check; exit with one line if it fails."""
    try:
        check()
    except Exception as exc:
        fail(prog, f"cannot reach {what}: {_one_line(exc)}", EXIT_UNREACHABLE)


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT; return the signal number."""
    got = threading.Event()
    received = []

    def handler(signum, frame):
        received.append(signum)
        got.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not got.wait(3600):
        pass
    LOG.info("received %s, stopping", signal.Signals(received[0]).name)
    return received[0]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
