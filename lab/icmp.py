"""ICMP echo from a raw socket inside a namespace: the probe that the nemesis
sweep and bench/icmp_sweep.py share (one socket, no process per ping)."""

import socket
import struct

from clouddisco.drivers import netns_inside

ECHO_REQUEST = 8
ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header), ident, seq)


def is_reply(data: bytes, ident: int) -> bool:
    """Whether ``data`` (as a raw ICMP socket returns it, IP header first) is
    an echo reply to our ``ident``."""
    header = (data[0] & 0x0F) * 4
    kind, _, _, got, _ = struct.unpack_from("!BBHHH", data, header)
    return kind == ECHO_REPLY and got == ident


def probe_socket(namespace: str, timeout: float = 0.2) -> socket.socket:
    """A raw ICMP socket made inside ``namespace``: a socket belongs to the
    namespace it was made in, whichever thread uses it later."""
    made = netns_inside.in_namespaces(
        [namespace], lambda _: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                             socket.IPPROTO_ICMP))[namespace]
    if isinstance(made, OSError):
        raise made
    made.settimeout(timeout)
    return made
