"""The invariant sampler of the fault tests: no gateway address up twice.

``InvariantSampler(prefix)`` looks at every namespace whose name starts with
``prefix`` (for a ``cloud.Cloud``: its token plus "-", which covers all of its
agents) every ``interval`` seconds (50 ms at most) and records which IPv4
addresses are up where. "Up" means configured on a link that is
administratively up *and* running (operstate UP or UNKNOWN, i.e. carrier: a
veth whose host end is down does not count), loopback devices excluded. This
is what ``netlab.gateway_up_namespaces`` checks too.

Why it reads the kernel the way it does: forking ``ip -n NS -j addr`` per
namespace costs milliseconds each (far over 50 ms for 200 namespaces), so a
private thread ``setns()``-es into each namespace and asks with two ioctls
(SIOCGIFCONF lists every IPv4 address with its label, SIOCGIFFLAGS gives the
link's flags), the same idea as clouddisco.drivers.netns. Measured on the
2-core machine (one reading; namespaces with one veth on a bridge and one
address each): 20 namespaces 0.6-1.3 ms, 200 namespaces
4.5-9 ms; one parallel ``ip -n NS -j addr`` per namespace took 18-21 ms and
264-297 ms. Sampling every 50 ms, the largest interval between two samples
was 50.2 ms with 20 and with 200 namespaces. Namespace handles are
opened and closed per sample: keeping them open would keep a deleted
namespace, and its addresses, alive.

One sample is not an atomic snapshot: namespaces are read one after another
(within a few ms). So when one sample sees an address in two namespaces the
sampler re-reads just those namespaces at once in reverse order; the
violation is ``confirmed`` when the address is still up in all of them. A
handover that happened between two reads of one sample then shows up as an
unconfirmed violation; to pass the re-read it would have to move back and
forth within a millisecond. A real overlap shorter than the re-read is
unconfirmed too, so the assertions count every violation, confirmed or not,
unless told otherwise.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
import socket
import struct
import threading
import time
import unittest
from collections.abc import Iterable
from typing import Any

from lab import netlab

NETNS_DIR = "/run/netns"
MAX_INTERVAL = 0.05

_CLONE_NEWNET = 0x40000000
_SIOCGIFCONF = 0x8912
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_RUNNING = 0x40
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: 16-byte name + 24-byte union

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns() only exists from Python 3.12.
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _addr_only(ip: str) -> str:
    return ip.split("/", 1)[0]


class _Reader:
    """Reads up addresses namespace by namespace. Use from one thread only:
    it moves that thread between network namespaces."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(64 * _IFREQ_SIZE)

    def up_addresses(self, namespace: str) -> list[str] | None:
        """IPv4 addresses on up, running, non-loopback links in ``namespace``.

        None when the namespace is gone (or going) meanwhile.
        """
        try:
            fd = os.open(os.path.join(NETNS_DIR, namespace), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            _setns(fd)
        except OSError as exc:
            # EINVAL: the name is still listed but no longer a namespace
            # (``ip netns del`` unmounts before it unlinks).
            if exc.errno == errno.EINVAL:
                return None
            raise
        finally:
            os.close(fd)
        # A socket belongs to the namespace it was created in: one per visit.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return self._read(sock)

    def _read(self, sock: socket.socket) -> list[str]:
        while True:
            size = len(self._buf)
            ifconf = bytearray(struct.pack("iP", size, ctypes.addressof(self._buf)))
            fcntl.ioctl(sock, _SIOCGIFCONF, ifconf)
            used = struct.unpack_from("i", ifconf)[0]
            if used + _IFREQ_SIZE <= size:
                break
            # Possibly truncated (the kernel stops at whole entries): grow.
            self._buf = ctypes.create_string_buffer(size * 4)
        raw = self._buf.raw[:used]
        flags_of: dict[str, int] = {}
        found = []
        for off in range(0, used, _IFREQ_SIZE):
            label = raw[off:off + 16].split(b"\0", 1)[0].decode()
            # Labels look like "eth0" or "eth0:1"; the flags are the device's.
            dev = label.split(":", 1)[0]
            if dev not in flags_of:
                req = struct.pack("16s24x", dev.encode())
                try:
                    flags_of[dev] = struct.unpack_from(
                        "H", fcntl.ioctl(sock, _SIOCGIFFLAGS, req), 16)[0]
                except OSError as exc:
                    if exc.errno != errno.ENODEV:  # deleted meanwhile
                        raise
                    flags_of[dev] = 0
            flags = flags_of[dev]
            if flags & _IFF_LOOPBACK or flags & (_IFF_UP | _IFF_RUNNING) != (
                    _IFF_UP | _IFF_RUNNING):
                continue
            found.append(socket.inet_ntoa(raw[off + 20:off + 24]))
        return found


def _in_private_thread(fn: Any) -> Any:
    """Run ``fn(reader)`` in a throw-away thread: setns() must not move the caller."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            result.append(fn(_Reader()))
        except BaseException as exc:  # handed to the caller
            errors.append(exc)
        finally:
            _setns(home)
            os.close(home)

    thread = threading.Thread(target=work, name="invariants-read")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def up_addresses(prefix: str) -> dict[str, list[str]]:
    """One reading, not recorded: {ip: [namespaces with it up]} over ``prefix*``."""
    def read(reader: _Reader) -> dict[str, list[str]]:
        ips: dict[str, list[str]] = {}
        for ns in netlab.namespaces_with_prefix(prefix):
            for ip in reader.up_addresses(ns) or ():
                ips.setdefault(ip, []).append(ns)
        return ips
    return _in_private_thread(read)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at all namespaces. ``ips`` maps ip -> namespaces having it up
    (sorted); consecutive samples share one dict while nothing changes, so
    do not modify it."""

    timestamp: float  # time.time() when the sample began (compares with Pinger)
    monotonic: float  # time.monotonic() when it began
    duration: float  # seconds it took
    namespaces: int  # how many namespaces were read
    ips: dict[str, tuple[str, ...]]


class InvariantSampler:
    """Samples ``prefix*`` namespaces every ``interval`` s in a background thread.

    Needs root (setns). A failure inside the sampler thread is not swallowed:
    it is raised again by ``stop()`` and by every assertion.
    """

    def __init__(self, prefix: str, interval: float = MAX_INTERVAL) -> None:
        if not 0 < interval <= MAX_INTERVAL:
            raise ValueError(f"interval must be in (0, {MAX_INTERVAL}] s, got {interval}")
        if not prefix:
            raise ValueError("an empty prefix would watch every namespace on the machine")
        self.prefix = prefix
        self.interval = interval
        self._samples: list[Sample] = []
        self._violations: list[dict[str, Any]] = []
        self._max_interval = 0.0
        self._max_duration = 0.0
        self._lock = threading.Lock()
        self._new_sample = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle

    def start(self) -> InvariantSampler:
        """Start sampling; returns once the first sample is recorded."""
        if self._thread is not None:
            raise RuntimeError("InvariantSampler already started")
        begun = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"invariants-{self.prefix}")
        self._thread.start()
        # Callers want to rely on the sampler from the moment start() returns.
        self.wait_for_sample(begun, timeout=5)
        return self

    def stop(self) -> None:
        """Stop the thread; raises if the sampler failed while running."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
        self._raise_if_failed()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> InvariantSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the sampling thread

    def _run(self) -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        reader = _Reader()
        try:
            due = time.monotonic()
            while not self._stop.is_set():
                try:
                    self._take(reader)
                finally:
                    # Back home after each sample: this thread is always in a
                    # known namespace whenever it sleeps or fails.
                    _setns(home)
                due += self.interval
                now = time.monotonic()
                if due < now:
                    due = now  # late (CPU starved): sample now, do not burst
                self._stop.wait(due - now)
        except BaseException as exc:  # raised again by stop() and the asserts
            self._error = exc
            with self._lock:
                self._new_sample.notify_all()
        finally:
            os.close(home)

    def _take(self, reader: _Reader) -> None:
        started = time.monotonic()
        timestamp = time.time()
        names = netlab.namespaces_with_prefix(self.prefix)
        found: dict[str, list[str]] = {}
        for ns in names:
            for ip in reader.up_addresses(ns) or ():
                found.setdefault(ip, []).append(ns)
        duration = time.monotonic() - started
        doubles = {ip: nss for ip, nss in found.items() if len(nss) > 1}
        confirmed = {ip: self._confirm(reader, ip, nss) for ip, nss in doubles.items()}
        ips = {ip: tuple(nss) for ip, nss in found.items()}
        with self._lock:
            prev = self._samples[-1] if self._samples else None
            if prev is not None:
                if ips == prev.ips:
                    ips = prev.ips  # share: memory stays flat over long tests
                self._max_interval = max(self._max_interval, started - prev.monotonic)
            self._max_duration = max(self._max_duration, duration)
            sample = Sample(timestamp, started, duration, len(names), ips)
            self._samples.append(sample)
            for ip, nss in sorted(doubles.items()):
                self._violations.append({
                    "timestamp": timestamp, "ip": ip, "namespaces": list(nss),
                    "confirmed": confirmed[ip], "sample_duration": duration})
            self._new_sample.notify_all()

    @staticmethod
    def _confirm(reader: _Reader, ip: str, namespaces: list[str]) -> bool:
        # Reverse order: for a clean handover to look double-active twice,
        # the address would have to move back within these few reads.
        return all(ip in (reader.up_addresses(ns) or ()) for ns in reversed(namespaces))

    # -- results

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the invariant sampler failed: {self._error!r}") \
                from self._error

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def wait_for_sample(self, after: float | None = None, timeout: float = 2.0) -> Sample:
        """The first sample begun after monotonic time ``after`` (default: now).

        Use it after changing the network, so that what follows looks at the
        new state rather than at a sample taken just before the change.
        """
        after = time.monotonic() if after is None else after
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                self._raise_if_failed()
                samples = self._samples
                i = len(samples)
                while i and samples[i - 1].monotonic > after:
                    i -= 1
                if i < len(samples):
                    return samples[i]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._thread is not None
                                      and not self._thread.is_alive()
                                      and self._error is None):
                    raise TimeoutError(f"no sample of {self.prefix}* within {timeout}s")
                self._new_sample.wait(min(remaining, 0.1))

    def violations(self, confirmed_only: bool = False) -> list[dict[str, Any]]:
        """Every (sample, ip) where the ip was up in two or more namespaces.

        Each: ``timestamp`` (time.time() of the sample), ``ip``,
        ``namespaces``, ``confirmed`` (see the module doc), ``sample_duration``.
        """
        with self._lock:
            found = list(self._violations)
        return [v for v in found if v["confirmed"] or not confirmed_only]

    def assert_no_double_active(self, testcase: unittest.TestCase | None = None,
                                confirmed_only: bool = False) -> None:
        """Fail, listing the first violations, if an ip was ever up twice."""
        self._raise_if_failed()
        found = self.violations(confirmed_only)
        if found:
            first = "\n".join(
                f"  {v['timestamp']:.3f} {v['ip']} up in {', '.join(v['namespaces'])}"
                f"{'' if v['confirmed'] else ' (unconfirmed)'}" for v in found[:10])
            self._fail(testcase, f"{len(found)} double-active observations over "
                                 f"{len(self.samples())} samples of {self.prefix}*, "
                                 f"first:\n{first}")

    def active_copies(self, ip: str) -> list[str]:
        """Namespaces that had ``ip`` up in the latest sample."""
        self._raise_if_failed()
        sample = self.latest()
        return list(sample.ips.get(_addr_only(ip), ())) if sample else []

    def assert_each_has_one_copy(self, ips: Iterable[str],
                                 testcase: unittest.TestCase | None = None) -> None:
        """Exactly one namespace has each ip up, in a sample begun after this call."""
        sample = self.wait_for_sample()
        wrong = {ip: list(sample.ips.get(_addr_only(ip), ())) for ip in ips}
        wrong = {ip: nss for ip, nss in wrong.items() if len(nss) != 1}
        if wrong:
            self._fail(testcase, "not exactly one copy up: " + "; ".join(
                f"{ip} in {nss or 'no namespace'}" for ip, nss in sorted(wrong.items())))

    def max_interval(self) -> float:
        """Largest time between the starts of two consecutive samples, counting
        the time since the latest one while running (a stuck sampler shows)."""
        with self._lock:
            result = self._max_interval
            if self._samples and self.running:
                result = max(result, time.monotonic() - self._samples[-1].monotonic)
        return result

    def max_sample_duration(self) -> float:
        """Longest time one sample took (the cost of reading all namespaces)."""
        with self._lock:
            return self._max_duration

    def stats(self) -> dict[str, float]:
        """Numbers worth reporting from a fault test."""
        samples = self.samples()
        durations = sorted(s.duration for s in samples)
        return {
            "samples": len(samples),
            "max_interval": self.max_interval(),
            "max_sample_duration": self.max_sample_duration(),
            "median_sample_duration": durations[len(durations) // 2] if durations else 0.0,
            "max_namespaces": max((s.namespaces for s in samples), default=0),
            "violations": len(self.violations()),
        }

    @staticmethod
    def _fail(testcase: unittest.TestCase | None, message: str) -> None:
        if testcase is not None:
            testcase.fail(message)
        raise AssertionError(message)

    def __repr__(self) -> str:
        return f"InvariantSampler({self.prefix!r}, every {self.interval * 1000:g} ms)"


__all__ = ["InvariantSampler", "Sample", "up_addresses", "MAX_INTERVAL"]
