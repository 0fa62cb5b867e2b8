"""A throw-away systemd (PID 1 of its own PID namespace) for functional tests.

This machine has no systemd PID 1, yet clouddisco's agents are meant to run
as ``Type=notify`` units with ``Restart=`` and ``WatchdogSec=``. SystemdHost
boots the real /lib/systemd/systemd in fresh PID, mount, cgroup and UTS
namespaces, with its own unit directory, so tests can start, kill and watch
units the way an operator's systemd would. The network stack is shared (no
network namespace) and so is ``/run/netns``: router namespaces that units
create are visible to the test, and vice versa.

Usage, in a testtools test or a plain script::

    host = self.useFixture(systemd.SystemdHost({"a.service": text}))
    with systemd.SystemdHost({"a.service": text}) as host:
        host.start("a.service")
        pid = host.main_pid("a.service")        # a pid of *this* machine
        os.kill(pid, signal.SIGKILL)
        host.wait_main_pid_change("a.service", pid, timeout=5)

What the namespace gets, and why (each of these was a real problem):

* a private tmpfs on ``/tmp`` (systemd-tmpfiles would empty the machine's),
  so units must use ``host.state_dir`` (under /var/tmp) for anything the
  test must see;
* a private tmpfs on ``/run`` (systemd keeps its sockets and state there;
  the machine's /run/systemd must not be touched, and two SystemdHosts must
  not share /run/systemd/private), with the machine's ``/run/netns``
  mounted back in as a *shared* peer so that ``ip netns add`` inside
  reaches the machine (extra /run subdirectories: ``share_run``);
* a private ``/etc/systemd/system`` (the given units only) and a curated
  ``/usr/lib/systemd/system`` holding only targets, slices, journald and the
  shutdown services, and no generators. With the stock directories the
  machine's MariaDB and RabbitMQ units (and their sysv-generator twins)
  could start a second time, and sysinit.target's units change the
  *machine*: systemd-sysctl flipped fs.protected_* sysctls, the
  journald dev-log socket put a /dev/log symlink and dev-*.mount units put
  directories into the shared devtmpfs, systemd-update-utmp wrote
  /var/log/wtmp;
* ``container=clouddisco-test`` in PID 1's environment: systemd's container
  mode, in which PID 1 skips set-up that a real init does for the whole
  machine (kernel modules, console, machine-wide limits);
* a cgroup namespace rooted at ``/sys/fs/cgroup[/unified]/clouddisco-test-<hex>``
  with a private cgroup2 mount (this machine is cgroup-v1 "hybrid"):
  otherwise every instance would create system.slice at the machine's
  cgroup root, and two instances would share it;
* /dev/console bound to a pseudo-terminal read into ``console.log`` (PID 1
  would otherwise write to the machine's console), a volatile journal (the
  machine has /var/log/journal), DefaultLimitCORE=0 (core_pattern here is
  "core": a SIGABRT from the watchdog would drop a core file into /),
  DefaultTimeoutStopSec=10s so a wedged unit cannot stretch poweroff to 90s,
  and DefaultTimeoutStartSec=30s so a Type=notify unit that never sends
  READY=1 fails a blocking ``start()`` well within its 60 s timeout.

Before poweroff the namespace's copy of ``/run/netns`` is made private: at
shutdown systemd unmounts every mount it knows, and through the shared peer
group that would have unmounted the *machine's* network namespaces.

journald runs inside (``journal=True``, the default): ``journal(unit)`` is
``journalctl -u`` in there and includes systemd's own messages about the
unit (exit status, watchdog timeout, scheduled restart). With
``journal=False`` units must log to files, e.g.
``StandardOutput=append:{host.log_path(unit)}``, which ``journal()`` then reads.

Measured on the 2-core Debian 12 machine (systemd 252, 2026-11), see the
``measurements`` detail of tests/functional/test_systemd.py:

* boot until ``is-system-running`` says running: 0.10-0.35 s (usually
  0.10-0.15 s); ``systemctl poweroff`` until every process is gone:
  0.11-0.13 s;
* one ``systemctl`` call through nsenter: 5-20 ms (usually about 10 ms);
* ``Restart=always`` + ``RestartSec=0.2``, kill -9 of the main pid until
  the new process is active (Type=notify, READY=1 at once from a Python
  service): 0.26-0.29 s (systemd sees the death at once; 0.2 s is
  RestartSec, the rest is the Python start-up);
* ``WatchdogSec=1`` + ``RestartSec=0.2``: last WATCHDOG=1 until the
  restarted process is active: 1.28-1.41 s (timeout exactly 1 s after the
  last ping, SIGABRT kills at once, then RestartSec and start-up);
* ``StartLimitBurst=3``, a service that fails at once: kill -9 until
  ``failed``: 0.75-0.79 s.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import secrets
import shutil
import signal as signal_mod
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import fixtures

from lab import netlab

SYSTEMD = "/lib/systemd/systemd"
ROOT_REASON = "needs root to boot systemd in a PID namespace"
DEFAULT_TARGET = "clouddisco-test.target"

# Where per-instance state lives: outside /tmp (private inside) and outside
# /run (private inside), on a filesystem both sides see at the same path.
STATE_PARENT = "/var/tmp"

# Unit files taken from the distribution's unit directory; everything else
# is invisible inside. Targets and slices carry no processes; journald gives
# journal(); the shutdown services are what poweroff.target requires.
_KEPT_UNITS = frozenset({
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-poweroff.service",
    "systemd-halt.service",
    "systemd-reboot.service",
    "systemd-exit.service",
    "systemd-kexec.service",
})
_KEPT_SUFFIXES = (".target", ".slice")

# Manager and journald settings written to the namespace's private
# /run/systemd/*.conf.d (see the module docstring for the reasons).
_SYSTEM_CONF = """\
[Manager]
LogColor=no
ShowStatus=no
DefaultLimitCORE=0
DefaultTimeoutStartSec=30s
DefaultTimeoutStopSec=10s
"""
_JOURNALD_CONF = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
"""

# The first stage of the namespace's PID 1: sets up the mounts, then execs
# systemd. Written to the state directory and run by the test's Python, so
# it can parse mountinfo properly and fail with a readable message.
_BOOT_STAGE = r'''
import json
import os
import re
import subprocess
import sys

cfg = json.load(open(sys.argv[1]))


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def unescape(path):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            optional = fields[6:fields.index("-")]
            yield unescape(fields[4]), optional


kept = ["/run/" + d for d in cfg["share_run"]]


def is_kept(path):
    return any(path == k or path.startswith(k + "/") for k in kept)


# Nothing mounted here may reach the machine, except inside the shared /run
# directories, which must stay peers of the machine's.
for path, optional in list(mounts()):
    if any(o.startswith("shared:") for o in optional) and not is_kept(path):
        mount("--make-private", path)
leaks = [p for p, o in mounts() if any(x.startswith("shared:") for x in o) and not is_kept(p)]
if leaks:
    sys.exit(f"cannot make these mounts private (stacked?): {leaks}")

# Paths under /tmp that units must still see (e.g. a CI checkout and its
# venv): parked in the stage directory, moved back onto the private /tmp.
for i, path in enumerate(cfg["keep_tmp"]):
    os.makedirs(os.path.join(cfg["stage"], f"keep{i}"), exist_ok=True)
    mount("--rbind", path, os.path.join(cfg["stage"], f"keep{i}"))
    mount("--make-rprivate", os.path.join(cfg["stage"], f"keep{i}"))
mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", "/tmp")
for i, path in enumerate(cfg["keep_tmp"]):
    os.makedirs(path, exist_ok=True)
    mount("--move", os.path.join(cfg["stage"], f"keep{i}"), path)

# The copy in the stage directory stays a peer of the machine's; the copy
# left under the new /run becomes private. Hidden as it is, systemd would
# still unmount it at shutdown, and as a peer that would unmount the
# machine's namespaces.
stage = cfg["stage"]
for d in cfg["share_run"]:
    mount("--rbind", "/run/" + d, os.path.join(stage, d))
    mount("--make-rprivate", "/run/" + d)
mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", "/run")
for d in cfg["share_run"]:
    os.makedirs("/run/" + d, exist_ok=True)
    mount("--move", os.path.join(stage, d), "/run/" + d)
for name, text in cfg["run_files"].items():
    os.makedirs(os.path.dirname(name), exist_ok=True)
    with open(name, "w") as f:
        f.write(text)

# A cgroup2 mount made inside the cgroup namespace is rooted at the
# namespace's cgroup, so systemd sees only its own subtree.
subprocess.run(["umount", "-R", "-l", "/sys/fs/cgroup"], check=False)
mount("-t", "cgroup2", "cgroup2", "/sys/fs/cgroup")

for target, source in cfg["binds"]:
    mount("--bind", source, target)
for target in cfg["tmpfs"]:
    mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", target)
mount("--bind", cfg["console"], "/dev/console")

sys.stdout.flush()
os.execve(cfg["systemd"], cfg["argv"], cfg["env"])
'''


class SystemdError(RuntimeError):
    """systemd in the namespace did not do what was asked."""


def have_root() -> bool:
    return os.geteuid() == 0


def have_systemd() -> bool:
    return os.access(SYSTEMD, os.X_OK)


def skip_reason() -> str | None:
    """Why SystemdHost cannot work here, or None if it can."""
    if not have_root():
        return ROOT_REASON
    if not have_systemd():
        return f"{SYSTEMD} is missing: systemd is not installed"
    if _cgroup2_mount() is None:
        return "no cgroup2 hierarchy mounted under /sys/fs/cgroup"
    return None


def _cgroup2_mount() -> str | None:
    """Mount point of the machine's cgroup2 hierarchy (pure or hybrid)."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _, where, fstype = line.split()[:3]
            if fstype == "cgroup2":
                found.append(where)
    for candidate in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if candidate in found:
            return candidate
    return found[0] if found else None


def _own_cgroup(root: str) -> str:
    """This process's cgroup2 directory (to move helpers back into)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                path = os.path.normpath(os.path.join(root, line[3:].strip().lstrip("/")))
                if path.startswith(root) and os.path.isdir(path):
                    return path
    return root


def _nspid(pid: int) -> list[int]:
    """The NSpid line of /proc/PID/status: the pid in each nested PID namespace."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return [pid]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


def _mountinfo(path: str = "/proc/self/mountinfo") -> list[tuple[str, list[str]]]:
    """(mount point, optional fields such as ``shared:1``) of a mount namespace."""
    result = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            result.append((point, fields[6:fields.index("-")]))
    return result


def _ensure_shared_netns() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` itself does.

    The namespace's copy of /run/netns propagates new namespaces back to the
    machine only if the machine's /run/netns is a shared mount. Mount points
    are looked up in mountinfo: os.path.ismount() misses a directory bound
    onto itself on the same filesystem, and binding a shared /run/netns onto
    itself again doubles every mount on it through propagation (that once
    piled up 32768 mounts here).
    """
    os.makedirs("/run/netns", exist_ok=True)
    found = [opts for point, opts in _mountinfo() if point == "/run/netns"]
    if not found:
        subprocess.run(["mount", "--bind", "/run/netns", "/run/netns"], check=True)
        found = [[]]
    if not any(o.startswith("shared:") for o in found[-1]):
        subprocess.run(["mount", "--make-shared", "/run/netns"], check=True)


def sweep_stale(min_age: float = 600.0) -> list[str]:
    """Remove state directories and cgroups of instances that died unclean.

    A test process killed with SIGKILL takes its namespace along (parent-death
    signal) but cannot remove its directories. An instance is stale when its
    cgroup holds no process and its state directory is older than
    ``min_age`` seconds (younger ones may be booting in another process).
    Returns the names removed.
    """
    removed = []
    root = _cgroup2_mount()
    prefix = "clouddisco-test-"
    names = set()
    with contextlib.suppress(OSError):
        names.update(n for n in os.listdir(STATE_PARENT) if n.startswith(prefix))
    if root:
        with contextlib.suppress(OSError):
            names.update(n for n in os.listdir(root) if n.startswith(prefix))
    now = time.time()
    for name in sorted(names):
        state = os.path.join(STATE_PARENT, name)
        with contextlib.suppress(OSError):
            if now - os.stat(state).st_mtime < min_age:
                continue
        cgroup = os.path.join(root, name) if root else ""
        if cgroup and os.path.isdir(cgroup):
            procs: list[str] = []
            for dirpath, _, files in os.walk(cgroup):
                if "cgroup.procs" in files:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        procs.extend(f.read().split())
            if procs:
                continue
            with contextlib.suppress(OSError):
                for dirpath, _, _ in list(os.walk(cgroup, topdown=False)):
                    os.rmdir(dirpath)
        shutil.rmtree(state, ignore_errors=True)
        removed.append(name)
    return removed


# Everything still booted when the interpreter exits (an interrupted run
# between setUp and cleanUp) is powered off and removed.
_live: dict[int, Callable[[], None]] = {}
_live_lock = threading.Lock()


@atexit.register
def _cleanup_all() -> None:
    with _live_lock:
        cleanups = list(_live.values())
        _live.clear()
    for cleanup in cleanups:
        with contextlib.suppress(Exception):
            cleanup()


class SystemdHost(fixtures.Fixture):
    """systemd booted in private namespaces, with the given unit files.

    ``units`` maps unit file names to their text; they go to the
    namespace's /etc/systemd/system. Unless ``target`` names one of them,
    a ``clouddisco-test.target`` is written that ``Wants=`` every given
    .service, .socket, .timer and .path unit, and systemd boots into it
    (``wanted`` overrides which units the target wants; ``()`` for none).
    ``share_run`` names the machine's /run subdirectories visible inside
    (as shared mounts); ``journal=False`` runs without journald.
    Setting up waits until ``systemctl is-system-running`` answers
    ``running`` or ``degraded``.

    A ``fixtures.Fixture``: use ``testcase.useFixture(SystemdHost(...))``
    or ``with SystemdHost(...) as host:``. Clean-up powers systemd off,
    checks that no process of the namespace is left, and removes the state
    directory and the cgroup; it runs even if the test failed, and at
    interpreter exit for anything left over.
    """

    def __init__(self, units: Mapping[str, str] | None = None, *,
                 target: str | None = None,
                 wanted: Sequence[str] | None = None,
                 journal: bool = True,
                 share_run: Sequence[str] = ("netns",),
                 keep_tmp: Sequence[str] | None = None,
                 boot_timeout: float = 30.0,
                 systemd: str = SYSTEMD) -> None:
        super().__init__()
        self.units = dict(units or {})
        self.target = target or DEFAULT_TARGET
        if target is None:
            self.units.setdefault(DEFAULT_TARGET, self._target_text(wanted))
        elif target not in self.units and not target.endswith(_KEPT_SUFFIXES):
            raise ValueError(f"target {target!r} is neither given nor a stock target")
        for name in self.units:
            self._check_unit_name(name)
        for d in share_run:
            if not d or "/" in d or d.startswith("."):
                raise ValueError(f"share_run entries are /run subdirectory names: {d!r}")
        self.journal_enabled = journal
        self.share_run = tuple(share_run)
        # Units run this checkout's venv: keep it visible even when the
        # checkout lives under /tmp (CI clones), which is private inside.
        if keep_tmp is None:
            keep_tmp = (os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))),)
        self.keep_tmp = tuple(os.path.realpath(p) for p in keep_tmp
                              if os.path.realpath(p).startswith("/tmp/"))
        self.boot_timeout = boot_timeout
        self.systemd = systemd
        self.token = secrets.token_hex(4)
        self.name = f"clouddisco-test-{self.token}"
        self.state_dir = ""
        self.unit_dir = ""
        self.cgroup_dir = ""
        self.init_pid = 0
        self.boot_seconds = 0.0
        self.systemctl_calls = 0
        self.systemctl_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: subprocess.Popen[bytes] | None = None
        self._console_slave: int | None = None
        self._pidns = ""
        self._ns_level = 0
        self._removed = False
        # How the last poweroff() ended the namespace, for tests to check.
        self.poweroff_mode = ""

    # ------------------------------------------------------------------
    # set-up

    def _target_text(self, wanted: Sequence[str] | None) -> str:
        names = list(wanted) if wanted is not None else [
            n for n in self.units if n.endswith((".service", ".socket", ".timer", ".path"))]
        wants = f"Wants={' '.join(names)}\n" if names else ""
        return ("[Unit]\nDescription=clouddisco functional-test target\n" + wants)

    @staticmethod
    def _check_unit_name(name: str) -> None:
        if "/" in name or "." not in name or name.startswith("."):
            raise ValueError(f"not a unit file name: {name!r}")

    def _setUp(self) -> None:
        reason = skip_reason()
        if reason:
            raise SystemdError(reason)
        sweep_stale()
        self.state_dir = os.path.join(STATE_PARENT, self.name)
        os.makedirs(self.state_dir, mode=0o755)
        self.addCleanup(self._remove)
        with _live_lock:
            _live[id(self)] = self._remove
        self._prepare_dirs()
        self._boot()

    def path(self, *parts: str) -> str:
        """A path in the state directory, which units and the test both see."""
        return os.path.join(self.state_dir, *parts)

    def log_path(self, unit: str) -> str:
        """Where a unit should append its output when ``journal=False``."""
        return self.path("logs", f"{unit}.log")

    def _prepare_dirs(self) -> None:
        self.unit_dir = self.path("units")
        for d in ("units", "libunits", "empty", "logs", "stage"):
            os.makedirs(self.path(d), mode=0o755)
        for d in self.share_run:
            os.makedirs(self.path("stage", d))
        for name, text in self.units.items():
            self._write_unit(name, text)
        self._copy_stock_units(self.path("libunits"))

    def _copy_stock_units(self, dest: str) -> None:
        src = os.path.realpath("/lib/systemd/system")
        for name in os.listdir(src):
            kept = name in _KEPT_UNITS or name.endswith(_KEPT_SUFFIXES)
            if name == "systemd-journald.service" or name == "systemd-journald.socket":
                kept = self.journal_enabled
            path = os.path.join(src, name)
            if not kept or os.path.isdir(path) and not os.path.islink(path):
                continue
            if os.path.islink(path):
                os.symlink(os.readlink(path), os.path.join(dest, name))
            else:
                shutil.copy2(path, os.path.join(dest, name))
        if self.journal_enabled:
            # What sysinit.target.wants and sockets.target.wants held for
            # journald, without the rest of those directories.
            for wants, unit in (("sysinit.target.wants", "systemd-journald.service"),
                                ("sockets.target.wants", "systemd-journald.socket")):
                os.makedirs(os.path.join(dest, wants), exist_ok=True)
                os.symlink(f"../{unit}", os.path.join(dest, wants, unit))
            # journald logs about itself to the machine's kmsg ("Received
            # SIGTERM" at every poweroff); keep only real problems there.
            dropin = os.path.join(dest, "systemd-journald.service.d")
            os.makedirs(dropin)
            with open(os.path.join(dropin, "clouddisco-test.conf"), "w") as f:
                f.write("[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=warning\n")

    def _write_unit(self, name: str, text: str) -> None:
        tmp = os.path.join(self.unit_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(self.unit_dir, name))

    def _binds(self) -> list[tuple[str, str]]:
        """(target, source) bind mounts that hide the machine's units."""
        binds = [("/etc/systemd/system", self.unit_dir)]
        seen = {"/etc/systemd/system"}
        for d in ("/lib/systemd/system", "/usr/lib/systemd/system"):
            real = os.path.realpath(d)
            if os.path.isdir(real) and real not in seen:
                seen.add(real)
                binds.append((real, self.path("libunits")))
        empty = [
            "/usr/local/lib/systemd/system", "/etc/systemd/system.attached",
            "/etc/systemd/system.control",
            "/etc/systemd/system-generators", "/usr/local/lib/systemd/system-generators",
            "/lib/systemd/system-generators", "/usr/lib/systemd/system-generators",
            "/etc/systemd/system-environment-generators",
            "/usr/local/lib/systemd/system-environment-generators",
            "/lib/systemd/system-environment-generators",
            "/usr/lib/systemd/system-environment-generators",
        ]
        for d in empty:
            real = os.path.realpath(d)
            if os.path.isdir(real) and real not in seen:
                seen.add(real)
                binds.append((real, self.path("empty")))
        return binds

    def _start_console(self) -> str:
        # PID 1 opens /dev/console for each message it cannot journal; a
        # pty read by ``cat`` into console.log keeps that off the machine's
        # console. The test keeps the slave end open so that ``cat`` never
        # sees EIO (no slave open) between PID 1's writes.
        master, slave = os.openpty()
        tty.setraw(slave)
        self._console_slave = slave
        with open(self.path("console.log"), "wb") as out:
            self._console = subprocess.Popen(
                ["cat"], stdin=master, stdout=out, stderr=subprocess.DEVNULL,
                start_new_session=True)
        os.close(master)
        return os.ttyname(slave)

    def _boot(self) -> None:
        root = _cgroup2_mount()
        assert root is not None
        self.cgroup_dir = os.path.join(root, self.name)
        os.mkdir(self.cgroup_dir)
        if "netns" in self.share_run:
            _ensure_shared_netns()
        console = self._start_console()
        run_files = {"/run/systemd/system.conf.d/clouddisco-test.conf": _SYSTEM_CONF}
        if self.journal_enabled:
            run_files["/run/systemd/journald.conf.d/clouddisco-test.conf"] = _JOURNALD_CONF
        tmpfs = [d for d in ("/var/log/journal", "/var/lib/systemd") if os.path.isdir(d)]
        cfg = {
            "share_run": list(self.share_run),
            "keep_tmp": list(self.keep_tmp),
            "stage": self.path("stage"),
            "run_files": run_files,
            "binds": self._binds(),
            "tmpfs": tmpfs,
            "console": console,
            "systemd": self.systemd,
            "argv": [self.systemd, "--system", f"--unit={self.target}",
                     "--log-target=journal" if self.journal_enabled else "--log-target=console",
                     "--log-color=no", "--show-status=no"],
            "env": {"container": "clouddisco-test",
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8"},
        }
        with open(self.path("boot.json"), "w") as f:
            json.dump(cfg, f)
        with open(self.path("boot.py"), "w") as f:
            f.write(_BOOT_STAGE)
        # The shell joins the new cgroup *before* unshare, so the cgroup
        # namespace is rooted there. setpriv's parent-death signal and
        # unshare --kill-child end the namespace if this test process dies
        # without cleaning up (note: the parent is the creating *thread*).
        procs = os.path.join(self.cgroup_dir, "cgroup.procs")
        inner = [
            "setpriv", "--pdeathsig", "KILL", "--",
            "unshare", "--pid", "--mount", "--cgroup", "--uts", "--fork",
            "--kill-child=SIGKILL", "--propagation", "unchanged", "--mount-proc",
            "--", sys.executable,
            self.path("boot.py"), self.path("boot.json"),
        ]
        cmd = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *inner]
        started = time.monotonic()
        with open(self.path("boot.log"), "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd="/", start_new_session=True)
        self._wait_booted(started)
        self.boot_seconds = time.monotonic() - started

    def _find_init(self, deadline: float) -> int:
        assert self._proc is not None
        systemd_exe = os.path.realpath(self.systemd)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            for child in _children(self._proc.pid):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/exe") == systemd_exe:
                        return child
            time.sleep(0.01)
        raise SystemdError(self._failure("systemd did not start"))

    def _wait_booted(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.boot_timeout
        self.init_pid = self._find_init(deadline)
        self._pidns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        self._ns_level = len(_nspid(self.init_pid)) - 1
        # The helper processes stay outside: the namespace's root cgroup
        # then holds nothing but systemd's own subtree.
        own = _own_cgroup(os.path.dirname(self.cgroup_dir))
        with contextlib.suppress(OSError):
            with open(os.path.join(own, "cgroup.procs"), "w") as f:
                f.write(str(self._proc.pid))
        state = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SystemdError(self._failure(
                    f"systemd exited with {self._proc.returncode} while booting"))
            state = self.systemctl("is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            # "offline" only means "no answer yet" while PID 1 starts up;
            # "maintenance" is rescue/emergency mode, which will not pass.
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.02)
        raise SystemdError(self._failure(
            f"systemd did not finish booting {self.target} within "
            f"{self.boot_timeout}s: is-system-running says {state!r}"))

    def _failure(self, what: str) -> str:
        logs = self.logs()
        return "\n".join([what] + [f"--- {k} ---\n{v}" for k, v in logs.items()])

    # ------------------------------------------------------------------
    # talking to systemd

    @property
    def running(self) -> bool:
        """True while the namespace's PID 1 is alive."""
        return self._proc is not None and self._proc.poll() is None

    def nsenter(self, *cmd: str, check: bool = True, timeout: float = 60.0,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace's mount and PID namespaces."""
        if not self.running:
            raise SystemdError(f"{self.name} is not running")
        env = dict(os.environ, SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0", LANG="C.UTF-8")
        proc = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-m", "-p", "--", *cmd],
            input=input, capture_output=True, text=True, timeout=timeout, env=env,
            check=False)
        if check and proc.returncode != 0:
            raise SystemdError(
                f"{' '.join(cmd)} failed with {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()}")
        return proc

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` in the namespace; raises SystemdError if check and it fails."""
        started = time.monotonic()
        try:
            return self.nsenter("systemctl", "--no-pager", *args, check=check,
                                timeout=timeout)
        finally:
            self.systemctl_calls += 1
            self.systemctl_seconds += time.monotonic() - started

    def start(self, unit: str) -> None:
        """Start ``unit`` and wait for the job (for Type=notify: READY=1)."""
        self.systemctl("start", unit)

    def stop(self, unit: str) -> None:
        self.systemctl("stop", unit)

    def restart(self, unit: str) -> None:
        self.systemctl("restart", unit)

    def reset_failed(self, unit: str) -> None:
        """Forget failures and the start-limit counter, so ``unit`` may start again."""
        self.systemctl("reset-failed", unit)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict (all properties if none named)."""
        args = ["show", unit] + [f"--property={p}" for p in properties]
        out = self.systemctl(*args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def active_state(self, unit: str) -> str:
        """ActiveState: active, activating, deactivating, inactive or failed."""
        return self.show(unit, "ActiveState")["ActiveState"]

    def is_active(self, unit: str) -> bool:
        return self.systemctl("is-active", unit, check=False).returncode == 0

    def host_pid(self, ns_pid: int) -> int:
        """The machine's pid of the process that is ``ns_pid`` in the namespace.

        Looks only at processes in the namespace's cgroup subtree and
        matches the namespace's level of their ``NSpid``. Raises
        LookupError if there is none (the process has gone).
        """
        if ns_pid == 1:
            return self.init_pid
        for pid in self._cgroup_pids():
            with contextlib.suppress(OSError, IndexError):
                nspid = _nspid(pid)
                if nspid[self._ns_level] == ns_pid and \
                        os.readlink(f"/proc/{pid}/ns/pid") == self._pidns:
                    return pid
        raise LookupError(f"no process with pid {ns_pid} in {self.name}")

    def ns_main_pid(self, unit: str) -> int:
        """MainPID as systemd sees it (in the namespace); 0 if none."""
        return int(self.show(unit, "MainPID")["MainPID"])

    def main_pid(self, unit: str) -> int:
        """The unit's main pid as seen from this machine; 0 if it has none.

        Usable with os.kill() and /proc. Raises LookupError if the process
        was there for systemd but has gone before it could be found here.
        """
        for _ in range(3):
            ns_pid = self.ns_main_pid(unit)
            if ns_pid == 0:
                return 0
            with contextlib.suppress(LookupError):
                return self.host_pid(ns_pid)
        return self.host_pid(self.ns_main_pid(unit))

    def wait_state(self, unit: str, states: str | Sequence[str],
                   timeout: float = 10.0, interval: float = 0.02) -> dict[str, str]:
        """Wait until the unit's ActiveState is one of ``states``; returns show()."""
        wanted = (states,) if isinstance(states, str) else tuple(states)
        deadline = time.monotonic() + timeout
        while True:
            props = self.show(unit, "ActiveState", "SubState", "Result", "MainPID",
                              "NRestarts")
            if props["ActiveState"] in wanted:
                return props
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{unit} still {props['ActiveState']}/{props['SubState']} "
                    f"(Result={props['Result']}) after {timeout}s, wanted {wanted}\n"
                    f"{self.journal(unit, lines=40)}")
            time.sleep(interval)

    def wait_active(self, unit: str, timeout: float = 10.0) -> int:
        """Wait until ``unit`` is active; returns its host main pid (0 if none)."""
        self.wait_state(unit, "active", timeout)
        return self.main_pid(unit)

    def wait_main_pid_change(self, unit: str, old_pid: int, timeout: float = 10.0,
                             interval: float = 0.02) -> int:
        """Wait for a main pid other than ``old_pid`` (host pids) on an active unit.

        Returns the new host pid. "Active" matters for Type=notify: a
        restarted service has a main pid as soon as it is forked, but is
        back only once it has sent READY=1.
        """
        deadline = time.monotonic() + timeout
        while True:
            props = self.show(unit, "MainPID", "ActiveState", "SubState")
            ns_pid = int(props["MainPID"])
            if ns_pid and props["ActiveState"] == "active":
                with contextlib.suppress(LookupError):
                    pid = self.host_pid(ns_pid)
                    if pid != old_pid:
                        return pid
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{unit} main pid did not change from {old_pid} within {timeout}s "
                    f"({props['ActiveState']}/{props['SubState']}, MainPID={ns_pid} "
                    f"in the namespace)\n{self.journal(unit, lines=40)}")
            time.sleep(interval)

    def kill(self, unit: str, signal: int | str = signal_mod.SIGTERM) -> None:
        """``systemctl kill --kill-whom=main --signal=SIGNAL UNIT``."""
        if isinstance(signal, int):
            signal = signal_mod.Signals(signal).name
        self.systemctl("kill", "--kill-whom=main", f"--signal={signal}", unit)

    def journal(self, unit: str | None = None, lines: int = 200) -> str:
        """The last ``lines`` journal lines of ``unit`` (of everything if None).

        With ``journal=False`` there is no journald: this returns the tail
        of ``log_path(unit)`` instead (empty if the unit wrote none).
        """
        if not self.journal_enabled:
            if unit is None:
                return _tail(self.path("console.log"), lines)
            path = self.log_path(unit)
            return _tail(path, lines) if os.path.exists(path) else ""
        if not self.running:
            return ""
        args = ["journalctl", "--no-pager", "-o", "short-precise", "-n", str(lines)]
        if unit:
            args += ["-u", unit]
        proc = self.nsenter(*args, check=False)
        return proc.stdout + (proc.stderr if proc.returncode else "")

    def logs(self) -> dict[str, str]:
        """Everything useful to attach to a failing test."""
        out = {
            "boot.log": _tail(self.path("boot.log"), 100),
            "console.log": _tail(self.path("console.log"), 100),
        }
        if self.running:
            with contextlib.suppress(Exception):
                out["journal"] = self.journal(lines=300)
            with contextlib.suppress(Exception):
                out["units"] = self.systemctl("list-units", "--all", check=False).stdout
        return out

    def add_unit(self, name: str, text: str) -> None:
        """Write (or replace) a unit file; call daemon_reload() before using it."""
        self._check_unit_name(name)
        self.units[name] = text
        self._write_unit(name, text)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    # ------------------------------------------------------------------
    # processes and tear-down

    def _cgroup_pids(self) -> list[int]:
        pids: list[int] = []
        if not self.cgroup_dir or not os.path.isdir(self.cgroup_dir):
            return pids
        for dirpath, _, files in os.walk(self.cgroup_dir):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.extend(int(x) for x in f.read().split())
        return pids

    def namespace_pids(self) -> list[int]:
        """Machine pids of every live process in the namespace (or its cgroup)."""
        found = set(p for p in self._cgroup_pids() if netlab.pid_alive(p))
        if self._pidns:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == self._pidns and \
                            netlab.pid_alive(int(entry)):
                        found.add(int(entry))
        return sorted(found)

    def _privatise_shared_mounts(self) -> None:
        # At shutdown systemd unmounts every mount it knows, including the
        # network namespaces bound under /run/netns; as long as that
        # directory is a peer of the machine's, the unmounts would
        # propagate and take the machine's namespaces away.
        for d in self.share_run:
            self.nsenter("mount", "--make-rprivate", f"/run/{d}", timeout=10)
        # systemd made every mount in there shared at boot, but in peer
        # groups of its own; only a peer group of the machine's matters.
        ours = {o for _, opts in _mountinfo() for o in opts if o.startswith("shared:")}
        theirs = _mountinfo(f"/proc/{self.init_pid}/mountinfo")
        still = [point for point, opts in theirs if ours.intersection(opts)]
        if still:
            raise SystemdError(f"mounts still shared with the machine: {still}")

    def poweroff(self, timeout: float = 30.0) -> None:
        """Shut systemd down and make sure every process of the namespace is gone.

        Idempotent. Falls back to SIGKILL of the namespace's PID 1 (the
        kernel then kills every other process in the namespace) and to the
        cgroup's ``cgroup.kill``. Raises SystemdError if any process of the
        namespace survives.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._privatise_shared_mounts()
                graceful = self.init_pid > 1
            except Exception:
                # Killing is safe where shutting down is not: a mount
                # namespace torn down by the kernel propagates no unmounts.
                graceful = False
            self.poweroff_mode = "systemctl poweroff" if graceful else "killed"
            if graceful:
                with contextlib.suppress(Exception):
                    # The manager may go away before systemctl gets its answer.
                    self.systemctl("poweroff", check=False, timeout=10)
            else:
                self._kill_namespace()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.poweroff_mode = "killed after timeout"
                self._kill_namespace()
                proc.wait(10)
        self._proc = None
        deadline = time.monotonic() + 10
        while True:
            left = [p for p in self.namespace_pids() if p != proc.pid]
            if not left:
                break
            if time.monotonic() >= deadline:
                raise SystemdError(f"processes of {self.name} survived poweroff: {left}")
            self._kill_namespace()
            time.sleep(0.05)
        self._stop_console()

    def _kill_namespace(self) -> None:
        # SIGKILL to the namespace's PID 1 makes the kernel kill everything
        # else in there; unshare then reaps it and exits. (Killing unshare
        # first would leave PID 1 a zombie for the machine's init to reap.)
        # Never os.kill(0, ...): that is this process's own group.
        if self.init_pid > 1:
            with contextlib.suppress(OSError):
                os.kill(self.init_pid, signal_mod.SIGKILL)
        elif self._proc is not None and self._proc.poll() is None:
            # Not booted far enough to know PID 1: unshare --kill-child
            # takes its child along.
            self._proc.kill()
        if self.cgroup_dir:
            with contextlib.suppress(OSError):
                with open(os.path.join(self.cgroup_dir, "cgroup.kill"), "w") as f:
                    f.write("1")

    def _stop_console(self) -> None:
        if self._console_slave is not None:
            os.close(self._console_slave)
            self._console_slave = None
        if self._console is not None:
            try:
                self._console.wait(5)
            except subprocess.TimeoutExpired:
                self._console.kill()
                self._console.wait(5)
            self._console = None

    def _remove_cgroup(self) -> None:
        if not self.cgroup_dir or not os.path.isdir(self.cgroup_dir):
            return
        deadline = time.monotonic() + 10
        for dirpath, _, _ in list(os.walk(self.cgroup_dir, topdown=False)):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # A cgroup whose last process is still being reaped is busy.
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)

    def _remove(self) -> None:
        """Power off and delete everything this instance created; idempotent."""
        if self._removed:
            return
        errors: list[BaseException] = []
        for step in (self.poweroff, self._stop_console, self._remove_cgroup,
                     lambda: shutil.rmtree(self.state_dir, ignore_errors=False)):
            try:
                step()
            except FileNotFoundError:
                pass
            except Exception as exc:  # every step runs; the first error is raised
                errors.append(exc)
        self._removed = True
        with _live_lock:
            _live.pop(id(self), None)
        if errors:
            raise errors[0]

    @contextlib.contextmanager
    def expect_restart(self, unit: str, timeout: float = 10.0) -> Iterator[dict[str, float]]:
        """Time a restart: ``with host.expect_restart(u) as t: os.kill(...)``.

        After the block, waits for a new active main pid and fills ``t`` with
        ``pid`` (new host pid), ``active_at`` (systemd's
        ActiveEnterTimestampMonotonic of the new process, in seconds) and
        ``seconds``: from the start of the block to ``active_at``. systemd's
        and this process's CLOCK_MONOTONIC are the same clock (no time
        namespace), so ``active_at`` compares with time.monotonic().
        """
        old = self.main_pid(unit)
        result: dict[str, float] = {}
        started = time.monotonic()
        yield result
        new = self.wait_main_pid_change(unit, old, timeout)
        entered = int(self.show(unit, "ActiveEnterTimestampMonotonic")
                      ["ActiveEnterTimestampMonotonic"]) / 1e6
        result["pid"] = new
        result["active_at"] = entered
        result["seconds"] = entered - started

    def __repr__(self) -> str:
        return f"<SystemdHost {self.name} init={self.init_pid}>"


def use_systemd_host(testcase: Any, units: Mapping[str, str] | None = None,
                     **kwargs: Any) -> SystemdHost:
    """``testcase.useFixture(SystemdHost(...))`` plus logs attached on failure."""
    from testtools import content

    host: SystemdHost = testcase.useFixture(SystemdHost(units, **kwargs))

    def attach(exc_info: object) -> None:
        for name, text in host.logs().items():
            testcase.addDetail(
                f"{host.name}-{name}",
                content.Content(content.UTF8_TEXT, lambda text=text: [text.encode()]))

    testcase.addOnException(attach)
    return host
