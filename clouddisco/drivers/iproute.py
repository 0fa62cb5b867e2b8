"""Running iproute2: ``ip -batch`` in the root namespace and inside others."""

import collections
import errno
import os
import re
import subprocess
import time
from collections.abc import Sequence

from oslo_log import log as logging

from clouddisco.drivers import netns_inside

LOG = logging.getLogger(__name__)

_FAILED_RE = re.compile(r"^Command failed -:(\d+)$")
IP_TIMEOUT = 120.0


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_ip(args: Sequence[str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run ip; never raises, so callers turn every failure into per-router errors."""
    LOG.debug("running %s <<EOF\n%sEOF", " ".join(args), stdin)
    try:
        return subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                              check=False, timeout=IP_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return subprocess.CompletedProcess(list(args), 127, "", f"{args[0]}: {exc}")


def batch_errors(stderr: str, lines: int) -> dict[int, str]:
    """Map ``ip -force -batch`` stderr to {1-based line number: message}."""
    errors: dict[int, str] = {}
    pending: list[str] = []
    for raw in stderr.splitlines():
        match = _FAILED_RE.match(raw.strip())
        if match:
            number = int(match.group(1))
            if 1 <= number <= lines:
                errors[number] = one_line("\n".join(pending)) or "failed"
            pending = []
        elif raw.strip():
            pending.append(raw)
    return errors


def spawn_in_namespaces(jobs: dict[str, tuple[list[str], str]], parallel: int,
                        timeout: float) -> dict[str, subprocess.CompletedProcess | OSError]:
    """Run one ``(argv, stdin)`` per namespace, at most ``parallel`` at a time.

    Children are forked from a thread that has setns()-ed into the namespace,
    so they start there. ``ip -n NS`` and ``ip netns exec`` instead copy the
    whole mount table into a new mount namespace, which costs ~7 ms per call
    once 1,000 namespaces (each one a mount) exist.
    """
    out: dict[str, subprocess.CompletedProcess | OSError] = {}
    running: collections.deque[tuple[str, float, subprocess.Popen]] = collections.deque()

    def finish(limit: int) -> None:
        while len(running) > limit:
            ns, started, proc = running.popleft()
            try:
                _, err = proc.communicate(timeout=max(0.0, started + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                err = f"timed out after {timeout:.0f}s; {err}"
            out[ns] = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)

    def launch(ns: str) -> None:
        argv, stdin = jobs[ns]
        # The input is a few short lines: it fits the pipe buffer, so writing it
        # up front cannot block and needs no feeder thread.
        data = stdin.encode()
        if len(data) > 16384:
            raise OSError(errno.E2BIG, "batch too long for the pipe buffer")
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, data)
            os.close(write_end)
            write_end = -1
            proc = subprocess.Popen(argv, stdin=read_end, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        running.append((ns, time.monotonic(), proc))
        finish(parallel)

    for ns, result in netns_inside.in_namespaces(jobs, launch).items():
        if isinstance(result, OSError):
            out[ns] = result
    finish(0)
    return out


