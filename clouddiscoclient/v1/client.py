"""The clouddisco API v1 as Python calls.

    from keystoneauth1 import loading, session
    from clouddiscoclient.v1 import client

    auth = loading.get_plugin_loader("password").load_from_options(
        auth_url="http://keystone:5000/v3", username="demo", password="...",
        project_name="demo", user_domain_id="default", project_domain_id="default")
    cd = client.Client(session=session.Session(auth=auth))
    router = cd.routers.create("web")
    cd.routers.list()                  # every router of the project, page after page
    cd.failover_events.list(router_id=router["id"], since="2026-12-04T16:00:00Z")

The endpoint is the catalog's for service type ``l3-ha`` (``interface``,
``region_name``), or ``endpoint_override``. Resources are the API's JSON
objects, as dicts. Every API error raises a
``clouddiscoclient.exceptions.HTTPClientError`` subclass carrying the
status, the API's message and its request id.
"""

from __future__ import annotations

import datetime
import urllib.parse
import uuid

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ks_exc

from clouddiscoclient import exceptions

SERVICE_TYPE = "l3-ha"
API_VERSION = "v1"
USER_AGENT = "python-clouddiscoclient"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _timestamp(value) -> str | None:
    """``since`` as the API takes it: ISO 8601; a datetime without a zone is UTC."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.isoformat()
    raise TypeError(f"since must be an ISO 8601 string or a datetime, not {value!r}")


class Client:
    """A clouddisco API v1 client on a keystoneauth1 session."""

    def __init__(self, session, endpoint_override: str | None = None,
                 interface: str | None = "public", region_name: str | None = None,
                 service_type: str = SERVICE_TYPE, **adapter_options) -> None:
        self.adapter = adapter.Adapter(
            session, service_type=service_type, interface=interface,
            region_name=region_name, endpoint_override=endpoint_override,
            user_agent=USER_AGENT, **adapter_options)
        self._base_url: str | None = None
        self.routers = RouterManager(self)
        self.agents = AgentManager(self)
        self.failover_events = FailoverEventManager(self)

    # ------------------------------------------------------------------ HTTP

    @property
    def base_url(self) -> str:
        """The v1 root, e.g. ``http://controller:9797/v1``. The catalog may
        name the service's root or its v1 root: both are accepted."""
        if self._base_url is None:
            try:
                endpoint = self.adapter.get_endpoint()
            except ks_exc.EndpointNotFound:
                endpoint = None
            if not endpoint:
                raise exceptions.EndpointNotFound(
                    f"no endpoint of service type {self.adapter.service_type!r} "
                    f"(interface {self.adapter.interface or 'public'}, region "
                    f"{self.adapter.region_name or 'any'}) in the service catalog; "
                    "is clouddisco registered in Keystone?")
            base = endpoint.rstrip("/")
            if not base.endswith("/" + API_VERSION):
                base += "/" + API_VERSION
            self._base_url = base
        return self._base_url

    def request(self, method: str, path: str, body: dict | None = None,
                params: dict | None = None) -> dict | None:
        """``method`` on ``path`` (relative to the v1 root); the JSON answer,
        or None for 204. Errors raise (see the module doc)."""
        url = self.base_url + path
        kwargs = {"headers": {"Accept": "application/json"}}
        if body is not None:
            kwargs["json"] = body
        if params:
            kwargs["params"] = params
        try:
            resp = self.adapter.request(url, method, raise_exc=False, **kwargs)
        except ks_exc.EndpointNotFound as exc:
            raise exceptions.EndpointNotFound(str(exc)) from None
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.UnknownConnectionError,
                ks_exc.SSLError) as exc:
            raise exceptions.ConnectionFailed(
                f"cannot reach the clouddisco API at {url}: {exc}",
                method=method, url=url) from None
        if resp.status_code >= 400:
            raise exceptions.from_response(resp, method, url)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise exceptions.ClientException(
                f"{method} {url} answered {resp.status_code} with a body that is not "
                "JSON", http_status=resp.status_code,
                request_id=resp.headers.get("x-openstack-request-id")) from None

    def list_all(self, path: str, key: str, params: dict | None = None,
                 limit: int | None = None) -> list[dict]:
        """Every item of collection ``key`` at ``path``, following the API's
        ``<key>_links`` ``next`` links page after page; at most ``limit``
        items when given (then also asked for as the page size)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        items: list[dict] = []
        seen_markers = set()
        while True:
            if limit is not None:
                query["limit"] = limit - len(items)
            body = self.request("GET", path, params=query) or {}
            page = body.get(key, [])
            items.extend(page)
            if limit is not None and len(items) >= limit:
                return items[:limit]
            href = next((link.get("href") for link in body.get(f"{key}_links") or []
                         if link.get("rel") == "next"), None)
            if not href or not page:
                return items
            # Only the next link's query is used: its host is the one the API
            # saw, which may not be the one this client reaches it at.
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(href).query))
            marker = query.get("marker")
            if marker in seen_markers:
                raise exceptions.ClientException(
                    f"the API's next link repeats marker {marker}: pages do not advance")
            seen_markers.add(marker)


class _Manager:
    def __init__(self, client: Client) -> None:
        self.client = client


class RouterManager(_Manager):
    """``/v1/routers``: a project's routers (every project's for an admin)."""

    def list(self, limit: int | None = None, marker: str | None = None,
             project_id: str | None = None) -> list[dict]:
        """The caller's routers, or an admin's: every project's, or
        ``project_id``'s."""
        return self.client.list_all("/routers", "routers",
                                    {"project_id": project_id, "marker": marker}, limit)

    def get(self, router_id: str) -> dict:
        return self.client.request("GET", f"/routers/{router_id}")["router"]

    def create(self, name: str, external_gateway_ip: str | None = None,
               ha: bool | None = None) -> dict:
        body = {"name": name}
        if external_gateway_ip is not None:
            body["external_gateway_ip"] = external_gateway_ip
        if ha is not None:
            body["ha"] = ha
        return self.client.request("POST", "/routers", body)["router"]

    def update(self, router_id: str, name: str) -> dict:
        return self.client.request("PUT", f"/routers/{router_id}", {"name": name})["router"]

    def delete(self, router_id: str) -> None:
        self.client.request("DELETE", f"/routers/{router_id}")

    def find(self, name_or_id: str) -> dict:
        """The router with this id, else the only one with this name."""
        not_found = None
        if _is_uuid(name_or_id):
            try:
                return self.get(name_or_id)
            except exceptions.NotFound as exc:
                not_found = exc  # unless a router is named like an id
        matches = [r for r in self.list() if r["name"] == name_or_id]
        if len(matches) > 1:
            raise exceptions.NoUniqueMatch(
                f"{len(matches)} routers are named {name_or_id!r}: give the id")
        if not matches:
            # The API's own answer (with its request id) for an id.
            raise not_found or exceptions.NotFound(
                f"no router with name or id {name_or_id!r}", http_status=404)
        return matches[0]


class AgentManager(_Manager):
    """``/v1/agents`` (admin only): the L3 agents and their health."""

    def list(self, limit: int | None = None, marker: str | None = None) -> list[dict]:
        return self.client.list_all("/agents", "agents", {"marker": marker}, limit)

    def get(self, agent_id: str) -> dict:
        return self.client.request("GET", f"/agents/{agent_id}")["agent"]

    def update(self, agent_id: str, admin_state_up: bool) -> dict:
        return self.client.request("PUT", f"/agents/{agent_id}",
                                   {"admin_state_up": bool(admin_state_up)})["agent"]

    def enable(self, agent_id: str) -> dict:
        return self.update(agent_id, True)

    def disable(self, agent_id: str) -> dict:
        return self.update(agent_id, False)

    def find(self, host_or_id: str) -> dict:
        """The agent with this id, else the one on this host (hosts are unique)."""
        not_found = None
        if _is_uuid(host_or_id):
            try:
                return self.get(host_or_id)
            except exceptions.NotFound as exc:
                not_found = exc
        for agent in self.list():
            if agent["host"] == host_or_id:
                return agent
        raise not_found or exceptions.NotFound(
            f"no agent with host or id {host_or_id!r}", http_status=404)


class FailoverEventManager(_Manager):
    """``/v1/failover-events`` (admin only): the evidence of every router
    move, newest first."""

    def list(self, router_id: str | None = None, agent_id: str | None = None,
             since: str | datetime.datetime | None = None, limit: int | None = None,
             marker: int | str | None = None) -> list[dict]:
        """Events of one router, or that moved routers off or onto one agent,
        detected at or after ``since`` (ISO 8601, or a datetime; naive: UTC)."""
        params = {"router_id": router_id, "agent_id": agent_id,
                  "since": _timestamp(since), "marker": marker}
        return self.client.list_all("/failover-events", "failover_events", params, limit)

    def get(self, event_id: int | str) -> dict:
        return self.client.request("GET", f"/failover-events/{event_id}")["failover_event"]
