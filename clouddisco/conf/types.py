"""Option types that oslo.config does not ship."""

import ipaddress

from oslo_config import types


class IPv4Network(types.ConfigType):
    """An IPv4 network in CIDR notation, host bits zero (``172.24.4.0/24``)."""

    def __init__(self, type_name: str = "IPv4 network value") -> None:
        super().__init__(type_name=type_name)

    def __call__(self, value):
        if isinstance(value, ipaddress.IPv4Network):
            return value
        try:
            return ipaddress.IPv4Network(str(value).strip(), strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 CIDR: {exc}") from None

    def __repr__(self) -> str:
        return "IPv4Network"

    def _formatter(self, value) -> str:
        return str(value)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port UDP endpoint: {text!r}")
    return host, int(port)
