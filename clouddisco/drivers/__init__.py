"""Router data-plane drivers, chosen by name (``[agent] router_driver``)."""

from collections.abc import Callable

from clouddisco.drivers import base


def _fake(namespace_prefix: str, external_bridge: str) -> base.RouterDriver:
    from clouddisco.drivers import fake

    return fake.FakeRouterDriver(namespace_prefix, external_bridge)


def _netns(namespace_prefix: str, external_bridge: str) -> base.RouterDriver:
    # Lazy: the fake must load on machines without iproute2 or root.
    from clouddisco.drivers import netns

    return netns.NetnsRouterDriver(namespace_prefix, external_bridge)


DRIVERS: dict[str, Callable[[str, str], base.RouterDriver]] = {
    "fake": _fake,
    "netns": _netns,
}


def load_driver(name: str, namespace_prefix: str, external_bridge: str) -> base.RouterDriver:
    try:
        factory = DRIVERS[name]
    except KeyError:
        choices = ", ".join(sorted(DRIVERS))
        raise ValueError(f"unknown router driver {name!r} (choose from: {choices})") from None
    return factory(namespace_prefix, external_bridge)
