"""Work inside network namespaces without forking a process.

A private thread ``setns()``-es into each namespace in turn and uses ioctls,
``/proc/sys`` and raw sockets there: reading a gateway's state, writing
sysctls, configuring a fresh gateway and sending gratuitous ARP. setns()
moves only the calling thread, so no other thread ever changes namespace.
"""

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from collections.abc import Iterable
from typing import TypeVar

from clouddisco.drivers import base

NETNS_DIR = "/run/netns"

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCSIFADDR = 0x8916
_SIOCSIFBRDADDR = 0x891A
_SIOCSIFNETMASK = 0x891C
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SIOCGIFHWADDR = 0x8927
_SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_RUNNING = 0x40
_ETH_P_ARP = 0x0806

_T = TypeVar("_T")
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _enter(name: str) -> None:
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def in_namespaces(names: Iterable[str], fn: Callable[[str], _T]
                  ) -> dict[str, _T | OSError]:
    """Run ``fn(name)`` inside each namespace; OSErrors are returned, not raised.

    setns() moves only the calling thread, so a private thread does the work
    and goes back home before it ends; no other thread ever changes namespace.
    """
    out: dict[str, _T | OSError] = {}
    names = list(names)
    if not names:
        return out

    def work() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for name in names:
                try:
                    _enter(name)
                    out[name] = fn(name)
                except OSError as exc:
                    out[name] = exc
        finally:
            _setns(home)
            os.close(home)

    thread = threading.Thread(target=work, name="netns-inspect")
    thread.start()
    thread.join()
    return out


@dataclasses.dataclass(frozen=True)
class NsState:
    """What a namespace looks like from inside (read with ioctls)."""

    lo_up: bool
    forwarding: bool
    gw_ifindex: int | None = None  # None: no gateway device
    gw_flags: int = 0
    gw_mac: str | None = None
    gw_cidr: str | None = None  # primary IPv4 address, "a.b.c.d/len"

    @property
    def gw_up(self) -> bool:
        # RUNNING means carrier, i.e. the host end is up too.
        return self.gw_flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING


def _ifreq(sock: socket.socket, request: int, dev: str) -> bytes:
    return fcntl.ioctl(sock, request, struct.pack("16s24x", dev.encode()))


def read_state(dev: str) -> NsState:
    """Runs inside the namespace (see in_namespaces)."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip() == "1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        lo_flags = struct.unpack_from("H", _ifreq(sock, _SIOCGIFFLAGS, "lo"), 16)[0]
        lo_up = bool(lo_flags & IFF_UP)
        try:
            ifindex = struct.unpack_from("i", _ifreq(sock, _SIOCGIFINDEX, dev), 16)[0]
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
            return NsState(lo_up=lo_up, forwarding=forwarding)
        flags = struct.unpack_from("H", _ifreq(sock, _SIOCGIFFLAGS, dev), 16)[0]
        mac = _ifreq(sock, _SIOCGIFHWADDR, dev)[18:24].hex(":")
        try:
            addr = socket.inet_ntoa(_ifreq(sock, _SIOCGIFADDR, dev)[20:24])
            mask = int.from_bytes(_ifreq(sock, _SIOCGIFNETMASK, dev)[20:24], "big")
            cidr = f"{addr}/{mask.bit_count()}"
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            cidr = None
    return NsState(lo_up, forwarding, ifindex, flags, mac, cidr)


def write_sysctl(path: str, value: str) -> None:
    # /proc/sys/net resolves against the opening thread's network namespace.
    with open(os.path.join("/proc/sys/net", path), "w") as f:
        f.write(value)


def disable_ipv6(dev: str) -> None:
    """Gateways are IPv4 only. Without this every new port runs IPv6 DAD and MLD,
    whose multicast floods all ports of the bridge: bringing 1,000 gateways up
    took ~3x longer."""
    with contextlib.suppress(FileNotFoundError):  # kernel without IPv6
        write_sysctl(f"ipv6/conf/{dev}/disable_ipv6", "1")


def _ifreq_ipv4(dev: str, address: str) -> bytes:
    return struct.pack("16sH2s4s16x", dev.encode(), socket.AF_INET, b"", socket.inet_aton(address))


def _set_up(sock: socket.socket, dev: str) -> None:
    flags = struct.unpack_from("H", _ifreq(sock, _SIOCGIFFLAGS, dev), 16)[0]
    fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", dev.encode(), flags | IFF_UP))


def configure_gateway(dev: str, spec: base.RouterSpec) -> None:
    """Runs inside the namespace: what ``ip -batch`` would do with ``link set
    lo up``, ``addr replace CIDR brd + dev GW`` and ``link set GW up``, for a
    gateway device that has no address yet."""
    net = ipaddress.IPv4Network(f"{spec.gateway_ip}/{spec.gateway_prefixlen}", strict=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, "lo")
        fcntl.ioctl(sock, _SIOCSIFADDR, _ifreq_ipv4(dev, spec.gateway_ip))
        fcntl.ioctl(sock, _SIOCSIFNETMASK, _ifreq_ipv4(dev, str(net.netmask)))
        if net.prefixlen < 31:  # /31 and /32 have no broadcast address
            fcntl.ioctl(sock, _SIOCSIFBRDADDR, _ifreq_ipv4(dev, str(net.broadcast_address)))
        _set_up(sock, dev)


def existing_namespaces() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()  # no namespace was ever created here
    except OSError:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=False).stdout
        # Lines look like "name (id: 3)" or just "name".
        return {line.split()[0] for line in out.splitlines() if line.strip()}


def garp_frame(mac: str, ip: str) -> bytes:
    """A broadcast ARP request for our own address, as ``arping -U`` sends it:
    neighbours update their caches and the bridge learns the port."""
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = socket.inet_aton(ip)
    return (b"\xff" * 6 + hw + struct.pack("!H", _ETH_P_ARP)
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
            + hw + addr + b"\xff" * 6 + addr)


def open_garp_socket(dev: str) -> socket.socket:
    """Runs inside the namespace (see in_namespaces): a raw socket bound to
    ``dev`` to send gratuitous ARP from; the caller sends and closes it.

    Opening is kept apart from sending so that a send refused with ENOBUFS
    can be retried on the same socket: every close of a packet socket costs
    an RCU grace period (~12 ms).
    """
    # Protocol 0: the socket only sends, so nothing queues up on it.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((dev, 0))
    except OSError:
        sock.close()
        raise
    return sock


# ------------------------------------------------- address lifetimes (netlink)

_RTM_NEWADDR = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_REPLACE = 0x100
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_CACHEINFO = 6


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def renew_gateway_lifetime(dev: str, valid_lft: int) -> bool:
    """Runs inside the namespace: give the gateway's IPv4 address a lifetime
    of ``valid_lft`` seconds, after which the kernel itself removes it (and
    with it every ARP and ICMP answer for it), unless renewed again. False
    when the gateway has no address: an address that is gone is never put
    back here (an IPv4 RTM_NEWADDR would create it), only by a build.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            ifindex = struct.unpack_from("i", _ifreq(sock, _SIOCGIFINDEX, dev), 16)[0]
            address = _ifreq(sock, _SIOCGIFADDR, dev)[20:24]
            mask = int.from_bytes(_ifreq(sock, _SIOCGIFNETMASK, dev)[20:24], "big")
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.EADDRNOTAVAIL):
                return False
            raise
    body = (struct.pack("=BBBBI", socket.AF_INET, mask.bit_count(), 0, 0, ifindex)
            + _rtattr(_IFA_LOCAL, address) + _rtattr(_IFA_ADDRESS, address)
            # ifa_prefered, ifa_valid, then two stamps the kernel ignores here.
            + _rtattr(_IFA_CACHEINFO, struct.pack("=IIII", valid_lft, valid_lft, 0, 0)))
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_REPLACE
    message = struct.pack("=LHHLL", 16 + len(body), _RTM_NEWADDR, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.settimeout(1.0)
        nl.send(message)
        reply = nl.recv(4096)
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind == _NLMSG_ERROR:
        error = struct.unpack_from("=i", reply, 16)[0]
        if error:
            raise OSError(-error, f"RTM_NEWADDR {dev}: {os.strerror(-error)}")
    return True
