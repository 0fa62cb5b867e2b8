"""Throw-away lab pieces for functional tests and bench/ scripts.

Everything here creates resources with unique names (``cdt`` prefix) and
removes exactly what it created: the machine is shared with other workers
and with the machine's own MariaDB and RabbitMQ, which must never be
touched. Network pieces use only namespaces and bridges created here and
addresses in 10.250.0.0/16.

Objects that hold OS resources are context managers and are also
registered for an ``atexit`` clean-up, so an aborted test run does not leave
namespaces, bridges or broker processes behind.

Measured on the 2-core Debian 12 machine (2026-11):

* ``PrivateRabbit.start()`` from nothing: 5.7-7 s (AMQP port open after
  5.2-6.5 s, ``rabbitmqctl await_startup`` adds about 0.5 s); a graceful
  ``stop()`` 1-2.5 s; ``start_again()`` 5.8-6.3 s; ``kill()`` 0.06 s.
* ``gateway_up_namespaces()`` over 10 namespaces: about 10 ms (one
  ``ip -n NS -j addr`` per namespace, run in parallel).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

ROOT_REASON = "needs root to create network namespaces"

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
EPMD = shutil.which("epmd") or "/usr/bin/epmd"

_T = TypeVar("_T")

# --------------------------------------------------------------------------
# small helpers


def have_root() -> bool:
    """True when this process may create namespaces, bridges and veths."""
    return os.geteuid() == 0


def skip_unless_root(testcase: Any) -> Any:
    """Skip unless running as root.

    Works three ways: as a decorator on a test class or test method, or
    called with a ``TestCase`` instance (e.g. in ``setUp``) to skip it.
    """
    if isinstance(testcase, unittest.TestCase):
        if not have_root():
            testcase.skipTest(ROOT_REASON)
        return None
    return unittest.skipUnless(have_root(), ROOT_REASON)(testcase)


def _hex(n: int = 4) -> str:
    return secrets.token_hex(n)


def _run(cmd: Sequence[str], *, input: str | None = None, check: bool = True,
         timeout: float = 30.0, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), input=input, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed with {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def _ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    """Run several ``ip`` commands in one process (about 3x faster)."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    _run(cmd, input="\n".join(commands) + "\n")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    # Keep all sockets open until every port is chosen so that the n ports
    # are distinct; the kernel may otherwise hand out the same one twice.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], _T], timeout: float,
             interval: float = 0.05, what: str = "") -> _T:
    """Call ``predicate`` until it returns something truthy and return it.

    Raises ``TimeoutError`` after ``timeout`` seconds. The predicate is
    always tried once more at the deadline, so a slow poll cannot make a
    condition that did become true look like a timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # The state field follows the parenthesised command name, which may
    # itself contain spaces or parentheses.
    return stat[stat.rindex(")") + 2] not in "ZX"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


# Clean-up of everything still alive when the interpreter exits, e.g. when a
# test run is interrupted between setUp and the addCleanup that follows it.
_live: dict[int, Callable[[], None]] = {}
_live_lock = threading.Lock()


def _register(obj: object, cleanup: Callable[[], None]) -> None:
    with _live_lock:
        _live[id(obj)] = cleanup


def _unregister(obj: object) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


@atexit.register
def _cleanup_all() -> None:
    with _live_lock:
        cleanups = list(_live.values())[::-1]
        _live.clear()
    for cleanup in cleanups:
        # Best effort: one failed clean-up must not skip the others.
        with contextlib.suppress(Exception):
            cleanup()


# --------------------------------------------------------------------------
# namespaces


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Named network namespaces whose name starts with ``prefix``, sorted."""
    # ``ip netns add`` creates /run/netns/NAME; listing the directory costs
    # no process at all, which matters when polled every 50 ms.
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def _link_is_up(link: dict[str, Any]) -> bool:
    # Administratively up and carrier present; dummy-like devices report
    # operstate UNKNOWN while working.
    return ("UP" in link.get("flags", ())
            and link.get("operstate") in ("UP", "UNKNOWN"))


def _addr_only(ip: str) -> str:
    return ip.split("/", 1)[0]


def _ns_has_up_ip(addr_json: str, ip: str) -> bool:
    try:
        links = json.loads(addr_json or "[]")
    except ValueError:
        return False
    for link in links:
        if not _link_is_up(link):
            continue
        for info in link.get("addr_info", ()):
            if info.get("local") == ip and not info.get("tentative") \
                    and not info.get("dadfailed"):
                return True
    return False


def gateway_up_namespaces(prefix: str, ip: str) -> list[str]:
    """Namespaces named ``prefix*`` where ``ip`` sits on an UP link.

    One ``ip -n NS -j addr`` per namespace, all started before any is
    awaited: about 10 ms for 10 namespaces, cheap enough to poll every
    50 ms. A namespace that disappears meanwhile is simply not reported.
    """
    ip = _addr_only(ip)
    procs = []
    for ns in namespaces_with_prefix(prefix):
        procs.append((ns, subprocess.Popen(
            ["ip", "-n", ns, "-j", "addr", "show"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
    found = []
    for ns, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode == 0 and _ns_has_up_ip(out, ip):
            found.append(ns)
    return found


def ns_has_up_ip(netns: str, ip: str) -> bool:
    """True if ``ip`` is configured on an UP link inside ``netns``."""
    proc = _run(["ip", "-n", netns, "-j", "addr", "show"], check=False)
    return proc.returncode == 0 and _ns_has_up_ip(proc.stdout, _addr_only(ip))


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


class Bridge:
    """A Linux bridge in the root namespace, up, with a unique name."""

    def __init__(self, name: str | None = None) -> None:
        # "cdt" + 8 hex = 11 characters, within IFNAMSIZ (15).
        self.name = name or f"cdt{_hex()}"
        self._deleted = False
        # STP stays off (the default) so ports forward at once instead of
        # spending forward_delay in listening/learning. Created before the
        # clean-up is registered: a name that already existed is not ours
        # to delete.
        _run(["ip", "link", "add", self.name, "type", "bridge"])
        _register(self, self.delete)
        try:
            _run(["ip", "link", "set", self.name, "up"])
        except Exception:
            self.delete()
            raise

    def delete(self) -> None:
        """Remove the bridge; safe to call more than once."""
        if self._deleted:
            return
        self._deleted = True
        _unregister(self)
        if _link_exists(self.name):
            _run(["ip", "link", "del", self.name], check=False)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"Bridge({self.name!r})"


class ProbeNamespace:
    """A namespace plugged into a bridge by a veth, with one address.

    Inside the namespace the interface is called ``ifname`` (``eth0``); the
    host side is ``cdv<hex>`` and is enslaved to the bridge.
    """

    ifname = "eth0"

    def __init__(self, bridge: Bridge | str, cidr: str,
                 name: str | None = None) -> None:
        token = _hex()
        self.name = name or f"cdt-probe-{token}"
        self.bridge = bridge.name if isinstance(bridge, Bridge) else bridge
        self.cidr = cidr if "/" in cidr else f"{cidr}/16"
        self.ip = _addr_only(cidr)
        self.host_veth = f"cdv{token}"
        self._deleted = False
        # As for Bridge: an existing namespace of that name is not ours.
        _run(["ip", "netns", "add", self.name])
        _register(self, self.delete)
        try:
            # The peer is created directly inside the namespace, so its
            # generic name cannot clash with a root-namespace device.
            _ip_batch([
                (f"link add {self.host_veth} type veth peer name {self.ifname}"
                 f" netns {self.name}"),
                f"link set {self.host_veth} master {self.bridge}",
                f"link set {self.host_veth} up",
            ])
            _ip_batch([
                "link set lo up",
                f"addr add {self.cidr} dev {self.ifname}",
                f"link set {self.ifname} up",
            ], netns=self.name)
        except Exception:
            self.delete()
            raise

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30.0
             ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return _run(["ip", "netns", "exec", self.name, *cmd], check=check,
                    timeout=timeout)

    def add_address(self, cidr: str) -> None:
        _run(["ip", "-n", self.name, "addr", "add", cidr, "dev", self.ifname])

    def del_address(self, cidr: str) -> None:
        _run(["ip", "-n", self.name, "addr", "del", cidr, "dev", self.ifname])

    def ping_once(self, ip: str, timeout: float = 1.0) -> bool:
        """One echo request from the namespace; True if it was answered."""
        proc = self.exec("ping", "-c", "1", "-n", "-q", "-W", f"{timeout:g}",
                         _addr_only(ip), check=False, timeout=timeout + 5)
        return proc.returncode == 0

    def delete(self) -> None:
        """Remove the namespace and the veth; safe to call more than once."""
        if self._deleted:
            return
        self._deleted = True
        _unregister(self)
        # The host end first: that removes the pair at once, whereas after a
        # namespace deletion the host end lingers ~0.1 s.
        if _link_exists(self.host_veth):
            _run(["ip", "link", "del", self.host_veth], check=False)
        if os.path.exists(f"/run/netns/{self.name}"):
            _run(["ip", "netns", "del", self.name], check=False)

    def __enter__(self) -> ProbeNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"ProbeNamespace({self.name!r}, {self.cidr!r})"


# --------------------------------------------------------------------------
# continuous ping

_REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ")


class Pinger:
    """Continuous ping from a namespace, recording reply timestamps.

    The timestamps are those ``ping -D`` prints (wall-clock epoch seconds
    taken when the reply arrived), so they compare with ``time.time()``.
    """

    def __init__(self, probe: ProbeNamespace | str, ip: str,
                 interval: float = 0.02) -> None:
        self.netns = probe.name if isinstance(probe, ProbeNamespace) else probe
        self.ip = _addr_only(ip)
        self.interval = interval
        self._replies: list[float] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.output_tail: list[str] = []

    def start(self) -> Pinger:
        if self._proc is not None:
            raise RuntimeError("Pinger already started")
        # -O reports unanswered requests, -W 1 bounds the wait per request;
        # 'ip netns exec' execs ping, so the pid is ping's own.
        cmd = ["ip", "netns", "exec", self.netns, "ping", "-D", "-n",
               "-i", f"{self.interval:g}", "-W", "1", "-O", self.ip]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, bufsize=1)
        _register(self, self.stop)
        self._thread = threading.Thread(
            target=self._read, args=(self._proc,), daemon=True,
            name=f"pinger-{self.ip}")
        self._thread.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        # ping flushes every line, so replies arrive as they happen.
        for line in proc.stdout:
            m = _REPLY_RE.match(line)
            if m:
                with self._lock:
                    self._replies.append(float(m.group(1)))
            else:
                # Kept for error messages (e.g. "unknown host").
                self.output_tail = (self.output_tail + [line.rstrip()])[-20:]

    def stop(self) -> None:
        """Stop ping (by its pid) and wait for the reader thread."""
        proc, self._proc = self._proc, None
        _unregister(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def replies(self) -> list[float]:
        """Timestamps of all replies so far, in arrival order."""
        with self._lock:
            return list(self._replies)

    def first_reply_after(self, t: float) -> float | None:
        """Timestamp of the first reply strictly after ``t``, or None."""
        for r in self.replies():
            if r > t:
                return r
        return None

    def wait_reply_after(self, t: float, timeout: float) -> float:
        """Block until a reply after ``t`` arrives; return its timestamp."""
        return wait_for(lambda: self.first_reply_after(t), timeout,
                        interval=self.interval,
                        what=f"a ping reply from {self.ip} after {t:.3f}")

    def max_gap(self, after: float | None = None,
                before: float | None = None) -> float:
        """Largest interval between consecutive replies in the window.

        A pair of consecutive replies counts when its interval overlaps
        [after, before], so an outage that began just before ``after`` (the
        usual case: ``after`` is when the failure was injected) counts in
        full. Returns +inf when no reply arrived after ``after`` (an outage
        that has not ended), 0.0 when there is no pair to measure.
        """
        rs = self.replies()
        if not rs or (after is not None and rs[-1] <= after):
            return float("inf")
        return max((b - a for a, b in itertools.pairwise(rs)
                    if (after is None or b > after)
                    and (before is None or a < before)), default=0.0)

    def gaps(self, threshold: float) -> list[tuple[float, float]]:
        """(start, end) of every interval between replies longer than threshold."""
        rs = self.replies()
        return [(a, b) for a, b in itertools.pairwise(rs) if b - a > threshold]

    def __enter__(self) -> Pinger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------
# private RabbitMQ node


class PrivateRabbit:
    """A RabbitMQ node of its own that tests may stop, kill and restart.

    It shares nothing with the machine's broker: own node name
    (``cdt<hex>@localhost``), own AMQP/distribution/epmd ports, own
    ``HOME`` (Erlang cookie), data, log and config files under a temp dir.
    The machine's ``/etc/rabbitmq`` files are bypassed explicitly because an
    empty ``RABBITMQ_CONF_ENV_FILE`` makes the scripts fall back to them.

    The broker runs in the foreground of a ``rabbitmq-server`` shell started
    here (no ``-detached``), so every process is a child of ours and is
    stopped by pid. Start takes 5.7-7 s on the 2-core machine.
    """

    def __init__(self, name: str | None = None, *, epmd_port: int | None = None,
                 cookie: str | None = None, config: Sequence[str] = ()) -> None:
        """``epmd_port``: use the epmd already listening there (a cluster's
        shared one: nodes of one cluster on one host must register with the
        same epmd to find each other) instead of starting and killing one of
        our own. ``cookie``: the Erlang cookie written to the node's HOME
        (the same in every member of a cluster; default: one made up by the
        VM). ``config``: extra ``rabbitmq.conf`` lines."""
        self.nodename = f"{name or 'cdt' + _hex()}@localhost"
        self.port, self.dist_port, own_epmd_port = _free_ports(3)
        self.epmd_port = epmd_port or own_epmd_port
        self._own_epmd = epmd_port is None
        self._cookie = cookie
        self._config = list(config)
        self.tmpdir: str | None = None
        self.last_start_seconds: float | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._beam_pid: int | None = None
        self._destroyed = False
        self._log: Any = None

    # -- paths and environment

    def _path(self, *parts: str) -> str:
        assert self.tmpdir is not None
        return os.path.join(self.tmpdir, *parts)

    @property
    def transport_url(self) -> str:
        """oslo.messaging transport URL of this node."""
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    @property
    def amqp_url(self) -> str:
        """The same for kombu, which names the transport ``amqp``."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def beam_pid(self) -> int | None:
        return self._beam_pid

    @property
    def epmd_pid(self) -> int | None:
        return self._epmd.pid if self._epmd is not None else None

    def pids(self) -> list[int]:
        """Every pid started for this node that may still exist."""
        pids = [p.pid for p in (self._server, self._epmd) if p is not None]
        if self._beam_pid is not None:
            pids.append(self._beam_pid)
        return pids

    def _prepare_dir(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="cdt-rabbit-")
        for d in ("home", "mnesia", "log"):
            os.mkdir(self._path(d))
        with open(self._path("rabbitmq-env.conf"), "w"):
            pass
        with open(self._path("rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
                    "loopback_users.guest = true\n")
            f.writelines(line + "\n" for line in self._config)
        if self._cookie is not None:
            # The VM refuses a cookie file that others may read.
            fd = os.open(self._path("home", ".erlang.cookie"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(self._cookie)
        with open(self._path("enabled_plugins"), "w") as f:
            f.write("[].\n")

    def _env(self) -> dict[str, str]:
        # Start from a clean slate: a RABBITMQ_*/ERL_* variable inherited
        # from the caller could point the node at the machine's broker.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": self._path("home"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": self._path("mnesia"),
            "RABBITMQ_LOG_BASE": self._path("log"),
            "RABBITMQ_PID_FILE": self._path("rabbit.pid"),
            "RABBITMQ_CONF_ENV_FILE": self._path("rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": self._path("rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": self._path("advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": self._path("enabled_plugins"),
            # Keep Erlang distribution on loopback too.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def rabbitmqctl(self, *args: str, timeout: float = 60.0,
                    check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS`` against this node only."""
        env = self._env()
        # The CLI is an Erlang node too; by default it listens on the shared
        # range 35672-35682, which parallel workers would fight over.
        ctl_port = str(free_port())
        env["RABBITMQ_CTL_DIST_PORT_MIN"] = ctl_port
        env["RABBITMQ_CTL_DIST_PORT_MAX"] = ctl_port
        return _run([f"{RABBIT_BIN}/rabbitmqctl", "-n", self.nodename, *args],
                    env=env, timeout=timeout, check=check)

    # -- lifecycle

    @staticmethod
    def spawn_epmd(port: int) -> subprocess.Popen[bytes]:
        """An epmd of our own on 127.0.0.1:``port``, listening on return.

        In the foreground (no -daemon) so that we know its pid; beam finds
        it on ERL_EPMD_PORT and does not spawn another. The caller stops it.
        """
        epmd = subprocess.Popen(
            [EPMD, "-port", str(port), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        try:
            wait_for(lambda: port_open(port, timeout=0.2), 10,
                     what=f"epmd on port {port}")
        except TimeoutError:
            epmd.kill()
            epmd.wait()
            raise
        return epmd

    def _start_epmd(self) -> None:
        if not self._own_epmd:
            if not port_open(self.epmd_port, timeout=0.2):
                raise RuntimeError(f"no epmd listens on port {self.epmd_port}")
            return
        if self._epmd is not None and self._epmd.poll() is None:
            return
        self._epmd = self.spawn_epmd(self.epmd_port)

    def _find_beam_pid(self) -> int | None:
        try:
            with open(self._path("rabbit.pid")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        # Only trust the pid file if that pid is the child of our shell:
        # never signal a process we did not start.
        if pid and self._server is not None and _ppid(pid) == self._server.pid:
            return pid
        return None

    def _log_tail(self) -> str:
        try:
            with open(self._path("server.out"), errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> PrivateRabbit:
        """Start the node and wait until it serves AMQP (60 s max)."""
        if self._destroyed:
            raise RuntimeError("PrivateRabbit was destroyed")
        if self._server is not None and self._server.poll() is None:
            raise RuntimeError(f"{self.nodename} is already running")
        t0 = time.monotonic()
        if self.tmpdir is None:
            self._prepare_dir()
            _register(self, self.destroy)
        self._start_epmd()
        try:
            os.unlink(self._path("rabbit.pid"))
        except FileNotFoundError:
            pass
        self._beam_pid = None
        if self._log is not None:
            self._log.close()
        # Kept open for the broker's whole life (it writes to it), closed
        # in destroy().
        self._log = open(self._path("server.out"), "ab")  # noqa: SIM115
        # Own session: a Ctrl-C meant for the test runner must not stop the
        # broker behind the tests' back; clean-up does it by pid.
        self._server = subprocess.Popen(
            [f"{RABBIT_BIN}/rabbitmq-server"], env=self._env(),
            cwd=self.tmpdir, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + timeout

        def up() -> bool:
            if self._server is None or self._server.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server for {self.nodename} exited early:\n"
                    + self._log_tail())
            if self._beam_pid is None:
                self._beam_pid = self._find_beam_pid()
            return self._beam_pid is not None and port_open(self.port, timeout=0.2)

        try:
            wait_for(up, max(1.0, deadline - time.monotonic()), interval=0.1,
                     what=f"AMQP port {self.port} of {self.nodename}")
            remaining = max(5, int(deadline - time.monotonic()))
            self.rabbitmqctl("await_startup", "--timeout", str(remaining),
                             timeout=remaining + 10)
        except Exception:
            self._kill_server()
            raise
        self.last_start_seconds = time.monotonic() - t0
        return self

    def start_again(self, timeout: float = 60.0) -> PrivateRabbit:
        """Start the node again: same name, ports and data directory."""
        if self.tmpdir is None:
            raise RuntimeError("start_again() before start()")
        return self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        return (self._server is not None and self._server.poll() is None
                and self._beam_pid is not None and pid_alive(self._beam_pid))

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful broker shutdown (SIGTERM to beam); epmd keeps running."""
        server = self._server
        if server is None or server.poll() is not None:
            self._reap()
            return
        # The VM turns SIGTERM into an orderly init:stop (1-2.5 s), the
        # same as 'rabbitmqctl stop' without an extra 0.7 s CLI start.
        if self._beam_pid is not None and pid_alive(self._beam_pid):
            os.kill(self._beam_pid, signal.SIGTERM)
        else:
            server.terminate()
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_server()
        self._reap()

    def _kill_server(self) -> None:
        server = self._server
        if server is None:
            return
        if self._beam_pid is None:
            self._beam_pid = self._find_beam_pid()
        if self._beam_pid is not None and pid_alive(self._beam_pid):
            os.kill(self._beam_pid, signal.SIGKILL)
        # Let the shell reap beam and exit by itself: killing it at the same
        # time would orphan beam to PID 1 before it is reaped.
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        self._reap()

    def _reap(self) -> None:
        # beam is the shell's child and is reaped by it; wait until it is
        # really gone so callers can rely on the port being closed.
        if self._beam_pid is not None:
            try:
                wait_for(lambda: not pid_alive(self._beam_pid or 0), 10,
                         what=f"beam pid {self._beam_pid} to exit")
            except TimeoutError:
                pass

    def kill(self) -> None:
        """kill -9 the node's beam and our epmd, like a host crash (a shared
        epmd, see ``epmd_port``, is not ours to stop)."""
        self._kill_server()
        if self._epmd is not None:
            if self._epmd.poll() is None:
                self._epmd.kill()
            self._epmd.wait(timeout=10)
            self._epmd = None

    def destroy(self) -> None:
        """Stop every process started here and delete the temp dir."""
        if self._destroyed:
            return
        self._destroyed = True
        _unregister(self)
        try:
            self.kill()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> PrivateRabbit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"PrivateRabbit({self.nodename!r}, port={self.port})"


# --------------------------------------------------------------------------
# MariaDB


class TempDatabase:
    """A uniquely named database on the machine's MariaDB, dropped after.

    Uses the ``clouddisco`` account made by tools/setup-env.sh (it may create
    and drop ``clouddisco%`` databases); falls back to root with an empty
    password over TCP on machines where that account does not exist yet.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 3306,
                 prefix: str = "clouddisco_t") -> None:
        self.host = host
        self.port = port
        self.name = f"{prefix}{_hex()}"
        self.user, self.password = self._pick_account()
        self._dropped = False
        self._execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
        _register(self, self.drop)

    def _connect(self, user: str, password: str) -> Any:
        import pymysql  # imported lazily: network-only tests do not need it

        return pymysql.connect(host=self.host, port=self.port, user=user,
                               password=password, connect_timeout=5,
                               autocommit=True, charset="utf8mb4")

    def _pick_account(self) -> tuple[str, str]:
        import pymysql

        try:
            self._connect("clouddisco", "clouddisco").close()
            return "clouddisco", "clouddisco"
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] != 1045:  # not "access denied": give up
                raise
        self._connect("root", "").close()
        return "root", ""

    def _execute(self, sql: str) -> None:
        conn = self._connect(self.user, self.password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    @property
    def url(self) -> str:
        cred = self.user + (f":{self.password}" if self.password else "")
        return (f"mysql+pymysql://{cred}@{self.host}:{self.port}/{self.name}"
                "?charset=utf8mb4")

    def exists(self) -> bool:
        conn = self._connect(self.user, self.password)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA"
                            " WHERE SCHEMA_NAME = %s", (self.name,))
                row = cur.fetchone()
                return bool(row and row[0])
        finally:
            conn.close()

    def drop(self) -> None:
        """Drop the database; safe to call more than once."""
        if self._dropped:
            return
        self._dropped = True
        _unregister(self)
        self._execute(f"DROP DATABASE IF EXISTS `{self.name}`")

    def __enter__(self) -> TempDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()

    def __repr__(self) -> str:
        return f"TempDatabase({self.name!r})"
