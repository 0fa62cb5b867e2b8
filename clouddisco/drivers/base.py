"""The router data-plane driver interface.

A driver realises routers on one node. Every bulk call takes many routers at
once (so real drivers can batch) and returns ``{router_id: None or error}``:
one broken router never stops the others, and the caller reports each
outcome separately.
"""

import abc
import dataclasses
import ipaddress
import re
from collections.abc import Sequence

Results = dict[str, str | None]


@dataclasses.dataclass(frozen=True)
class RouterSpec:
    id: str  # router uuid string (36 chars)
    gateway_ip: str  # e.g. "10.250.0.5"
    gateway_prefixlen: int  # e.g. 16
    # Fixed per router so the MAC is the same on every agent: peers need no
    # ARP re-learning after a failover.
    gateway_mac: str  # e.g. "fa:16:3e:12:34:56"


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", re.IGNORECASE)


def spec_error(spec: RouterSpec) -> str | None:
    """Why ``spec``'s gateway cannot be configured, or None when it can."""
    if not spec.id or any(c.isspace() for c in spec.id):
        return f"invalid router id {spec.id!r}"
    try:
        ipaddress.IPv4Address(spec.gateway_ip)
    except ValueError:
        return f"invalid gateway_ip {spec.gateway_ip!r} (IPv4 expected)"
    if isinstance(spec.gateway_prefixlen, bool) or not isinstance(spec.gateway_prefixlen, int) \
            or not 1 <= spec.gateway_prefixlen <= 32:
        return f"invalid gateway_prefixlen {spec.gateway_prefixlen!r} (1-32 expected)"
    if not _MAC_RE.match(spec.gateway_mac) or int(spec.gateway_mac[:2], 16) & 1:
        return f"invalid gateway_mac {spec.gateway_mac!r} (unicast aa:bb:cc:dd:ee:ff expected)"
    return None


class RouterDriver(abc.ABC):
    """Creates, removes and fences routers living under ``namespace_prefix``."""

    def __init__(self, namespace_prefix: str, external_bridge: str) -> None:
        self.namespace_prefix = namespace_prefix
        self.external_bridge = external_bridge

    def namespace_name(self, router_id: str) -> str:
        return self.namespace_prefix + router_id

    @abc.abstractmethod
    def ensure(self, routers: Sequence[RouterSpec]) -> Results:
        """Make each router exist with its gateway address up and forwarding on.

        Idempotent: a router that is already correct is left untouched (no
        flap), a broken one is repaired.
        """

    @abc.abstractmethod
    def remove(self, router_ids: Sequence[str]) -> Results:
        """Delete routers; an absent router counts as removed.

        Gateways are silenced first (address removed or link down), so a
        router stops answering at once, then the routers are deleted.
        """

    @abc.abstractmethod
    def list_routers(self) -> set[str]:
        """Ids of the routers under this driver's prefix (never another's)."""

    @abc.abstractmethod
    def demote(self, router_ids: Sequence[str]) -> Results:
        """Remove the gateway address but keep the router (fencing, standby).

        An absent router is already silent, so it counts as success.
        """

    @abc.abstractmethod
    def promote(self, routers: Sequence[RouterSpec]) -> Results:
        """(Re)add the gateway address, bring it up and announce it (ARP).

        Creates the router if it does not exist.
        """

    @abc.abstractmethod
    def router_is_active(self, router_id: str) -> bool:
        """True when the router's gateway address is present and its link is up."""

    def renew_address_lifetimes(self, valid_lft: int) -> int:
        """Give every gateway address of this prefix a kernel lifetime of
        ``valid_lft`` whole seconds (see clouddisco.drivers.lifetimes);
        returns how many were renewed. Drivers without addresses: nothing."""
        return 0
