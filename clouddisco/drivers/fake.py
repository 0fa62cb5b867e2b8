"""In-memory router driver for unit tests.

It keeps the netns driver's contract (idempotent ensure/remove, each driver
sees only its own prefix) so code tested against it behaves the same on real
namespaces. Several fakes may share one ``FakeHost`` to model agents that
share a machine.
"""

import dataclasses
import threading
from collections.abc import Sequence

from clouddisco.drivers import base

INJECTED_ERROR = "injected failure"


@dataclasses.dataclass
class FakeRouter:
    prefix: str
    spec: base.RouterSpec
    active: bool = True  # gateway address present and up


class FakeHost:
    """What one machine holds: routers by namespace name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.namespaces: dict[str, FakeRouter] = {}


class FakeRouterDriver(base.RouterDriver):
    """Routers are dict entries; set ``fail_ids`` to make calls fail for some ids.

    ``events`` records every visible change as ``(action, router_id)``, with
    action one of create, update, activate, deactivate, delete, garp, so tests
    can check that a call changed nothing.
    """

    def __init__(self, namespace_prefix: str, external_bridge: str,
                 host: FakeHost | None = None) -> None:
        super().__init__(namespace_prefix, external_bridge)
        self.host = host or FakeHost()
        self.fail_ids: set[str] = set()
        self.events: list[tuple[str, str]] = []

    def _failed(self, router_id: str) -> bool:
        return router_id in self.fail_ids

    def _mine(self, router_id: str) -> FakeRouter | None:
        router = self.host.namespaces.get(self.namespace_name(router_id))
        # A longer prefix of another driver may produce the same name; it is not ours.
        return router if router is not None and router.prefix == self.namespace_prefix else None

    def _ensure_locked(self, spec: base.RouterSpec) -> str | None:
        error = base.spec_error(spec)
        if error or self._failed(spec.id):
            return error or INJECTED_ERROR
        name = self.namespace_name(spec.id)
        existing = self.host.namespaces.get(name)
        if existing is not None and existing.prefix != self.namespace_prefix:
            return f"namespace {name} belongs to prefix {existing.prefix!r}"
        if existing is None:
            self.host.namespaces[name] = FakeRouter(self.namespace_prefix, spec)
            self.events.append(("create", spec.id))
            return None
        if existing.spec != spec:
            existing.spec = spec
            self.events.append(("update", spec.id))
        if not existing.active:
            existing.active = True
            self.events.append(("activate", spec.id))
        return None

    def ensure(self, routers: Sequence[base.RouterSpec]) -> base.Results:
        with self.host.lock:
            return {spec.id: self._ensure_locked(spec) for spec in routers}

    def remove(self, router_ids: Sequence[str]) -> base.Results:
        with self.host.lock:
            # Same order as the real driver: silence the gateway, then delete.
            results = self._demote_locked(router_ids)
            for router_id, error in results.items():
                if error is None and self._mine(router_id) is not None:
                    del self.host.namespaces[self.namespace_name(router_id)]
                    self.events.append(("delete", router_id))
        return results

    def list_routers(self) -> set[str]:
        with self.host.lock:
            start = len(self.namespace_prefix)
            return {name[start:] for name, router in self.host.namespaces.items()
                    if router.prefix == self.namespace_prefix}

    def demote(self, router_ids: Sequence[str]) -> base.Results:
        with self.host.lock:
            return self._demote_locked(router_ids)

    def _demote_locked(self, router_ids: Sequence[str]) -> base.Results:
        results: base.Results = {}
        for router_id in router_ids:
            if self._failed(router_id):
                results[router_id] = INJECTED_ERROR
                continue
            router = self._mine(router_id)
            if router is not None and router.active:
                router.active = False
                self.events.append(("deactivate", router_id))
            results[router_id] = None
        return results

    def promote(self, routers: Sequence[base.RouterSpec]) -> base.Results:
        results: base.Results = {}
        with self.host.lock:
            for spec in routers:
                results[spec.id] = error = self._ensure_locked(spec)
                if error is None:
                    self.events.append(("garp", spec.id))
        return results

    def router_is_active(self, router_id: str) -> bool:
        with self.host.lock:
            router = self._mine(router_id)
            return router is not None and router.active
