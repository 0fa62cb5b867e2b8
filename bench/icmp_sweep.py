"""When does every one of many gateways answer again? A raw ICMP sweep.

One raw socket, made inside the probe namespace, pings every gateway that
has not yet come back, every ``interval`` seconds; a receiver thread stamps
replies. A gateway "comes back" when it replies after having missed
``silence`` consecutive sweeps: its old copy is gone and the new one
answers. A gateway must have answered once before its silence counts, so
the start of the sweep is not taken for one. One socket and unicast echo
requests keep the sweep cheap (no process per ping, no broadcast), so it
disturbs the failover it measures as little as possible.
"""

import os
import threading
import time

from lab import icmp


class GatewaySweep:
    """Ping ``ips`` from namespace ``probe_ns`` until each has come back."""

    def __init__(self, probe_ns: str, ips: list[str], interval: float = 0.1,
                 silence: int = 5) -> None:
        self.ips = list(ips)
        self.interval = interval
        self.silence = silence
        self.sock = icmp.probe_socket(probe_ns)
        self.ident = os.getpid() & 0xFFFF
        self.back_at: dict[str, float] = {}  # ip -> first reply after its silence
        self.last_before: dict[str, float] = {}  # ip -> last reply before it
        self._last: dict[str, float] = {}
        self._missed = dict.fromkeys(self.ips, 0)
        self._seen: set[str] = set()  # answered at least once
        self._replied: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, daemon=True),
                         threading.Thread(target=self._receive_loop, daemon=True)]

    def __enter__(self) -> "GatewaySweep":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def gaps(self) -> dict[str, float]:
        """Per gateway that came back: seconds between its last reply before
        the silence and its first after (to within one ``interval``)."""
        with self._lock:
            return {ip: self.back_at[ip] - self.last_before[ip] for ip in self.back_at}

    def done(self) -> bool:
        with self._lock:
            return len(self.back_at) == len(self.ips)

    def _send_loop(self) -> None:
        seq = 0
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                # A sweep without a reply counts as missed; replies seen
                # since the last sweep reset the count.
                for ip in self.ips:
                    if ip in self.back_at:
                        continue
                    self._missed[ip] = 0 if ip in self._replied else self._missed[ip] + 1
                self._replied.clear()
                todo = [ip for ip in self.ips if ip not in self.back_at]
            seq = (seq + 1) & 0xFFFF
            packet = icmp.echo_request(self.ident, seq)
            for ip in todo:
                try:
                    self.sock.sendto(packet, (ip, 0))
                except OSError:
                    pass  # no route or buffer full: counts as a missed sweep
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, (ip, _) = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time()
            if not icmp.is_reply(data, self.ident):
                continue
            with self._lock:
                if ip not in self._missed or ip in self.back_at:
                    continue
                if ip in self._seen and self._missed[ip] >= self.silence:
                    self.back_at[ip] = now
                    self.last_before[ip] = self._last[ip]
                self._seen.add(ip)
                self._last[ip] = now
                self._replied.add(ip)
