"""A fake HTTP layer under a real keystoneauth1 session, for the client and
CLI unit tests: no network, no Keystone, no server.

``FakeHTTP`` stands in for the ``requests.Session`` that keystoneauth1
sends through, so the real Session and Adapter (catalog lookup by service
type, token header) run; ``FakeAuth`` is an auth plugin whose catalog is a
dict.
"""

import json as jsonlib
import urllib.parse

import requests
from keystoneauth1 import plugin
from keystoneauth1 import session as ks_session

from clouddiscoclient.v1 import client as cd_client

TOKEN = "tok-123"
ENDPOINT = "http://cd.example:9797"
ROUTER_ID = "5d7a0f3e-0000-4000-8000-00000000000a"
ROUTER_ID_2 = "5d7a0f3e-0000-4000-8000-00000000000b"
AGENT_ID = "5d7a0f3e-0000-4000-8000-0000000000a1"


def response(status=200, body=None, headers=None, text=None, reason=None):
    resp = requests.Response()
    resp.status_code = status
    resp.reason = reason or requests.status_codes._codes.get(status, ("",))[0].upper()
    if body is not None:
        resp._content = jsonlib.dumps(body).encode()
        resp.headers["Content-Type"] = "application/json"
    else:
        resp._content = (text or "").encode()
    resp.headers.update(headers or {})
    return resp


def api_error(status, message, request_id="req-0000-abcd", title="Error"):
    return response(status, {"error": {"status": status, "title": title,
                                       "message": message, "request_id": request_id}},
                    headers={"x-openstack-request-id": request_id})


class Call:
    def __init__(self, method, url, kwargs):
        self.method = method
        split = urllib.parse.urlsplit(url)
        self.url = url
        self.base = urllib.parse.urlunsplit(split._replace(query=""))
        self.path = split.path
        self.params = {k: str(v) for k, v in (kwargs.get("params") or {}).items()}
        self.params.update(urllib.parse.parse_qsl(split.query))
        self.headers = kwargs.get("headers") or {}
        data = kwargs.get("data")
        self.json = jsonlib.loads(data) if data else None

    def __repr__(self):
        return f"<{self.method} {self.url} {self.params} {self.json}>"


class FakeHTTP:
    """``requests.Session`` look-alike: answers from ``routes``, a dict of
    (method, path) → response, or a callable(call) → response, or a list of
    those (consumed in order)."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.calls: list[Call] = []
        self.adapters = {}

    def request(self, method, url, **kwargs):
        call = Call(method, url, kwargs)
        self.calls.append(call)
        answer = self.routes.get((method, call.path))
        if answer is None:
            answer = response(404, {"error": {"status": 404, "title": "Not Found",
                                              "message": f"no such resource: {call.path}",
                                              "request_id": "req-fake-404"}})
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        resp = answer(call) if callable(answer) else answer
        resp.request = requests.Request(method, url).prepare()
        resp.url = url
        return resp


class FakeAuth(plugin.BaseAuthPlugin):
    """A token and a catalog: {(service_type, interface, region): url}."""

    def __init__(self, catalog=None):
        super().__init__()
        self.catalog = catalog if catalog is not None else {("l3-ha", "public", None): ENDPOINT}
        self.lookups = []

    def get_token(self, session, **kwargs):
        return TOKEN

    def get_endpoint(self, session, service_type=None, interface=None, region_name=None,
                     **kwargs):
        self.lookups.append((service_type, interface, region_name))
        return self.catalog.get((service_type, interface, region_name))


def make_client(routes=None, catalog=None, **kwargs):
    """(Client, FakeHTTP, FakeAuth) on a real keystoneauth1 Session."""
    http = FakeHTTP(routes)
    auth = FakeAuth(catalog)
    sess = ks_session.Session(auth=auth, session=http)
    return cd_client.Client(session=sess, **kwargs), http, auth


def router(router_id=ROUTER_ID, name="web", **fields):
    return {"id": router_id, "project_id": "p1", "name": name, "status": "ACTIVE",
            "status_reason": None, "ha": False, "external_gateway_ip": "10.250.0.2",
            "external_gateway_prefixlen": 16, "external_gateway_mac": "fa:16:3e:00:00:01",
            "agent_id": AGENT_ID, "agent_host": "net-1", "generation": 3,
            "created_at": "2026-12-04T16:00:00.000000Z",
            "updated_at": "2026-12-04T16:00:01.000000Z", **fields}


def agent(agent_id=AGENT_ID, host="net-1", **fields):
    return {"id": agent_id, "host": host, "agent_type": "L3 agent", "admin_state_up": True,
            "alive": True, "router_count": 1, "namespace_prefix": "qrouter-",
            "heartbeat_at": "2026-12-04T16:00:00.000000Z",
            "started_at": "2026-12-04T15:00:00.000000Z", "dead_since": None,
            "fenced_at": None, "guard_status": "ok", **fields}


def event(event_id=7, router_id=ROUTER_ID, **fields):
    return {"id": event_id, "router_id": router_id, "old_agent_id": AGENT_ID,
            "new_agent_id": "5d7a0f3e-0000-4000-8000-0000000000a2", "cause": "agent_dead",
            "detected_by": "sched-1", "detail": "agent net-1 dead",
            "last_heartbeat_at": "2026-12-04T16:00:00.000000Z",
            "detected_at": "2026-12-04T16:00:03.000000Z", "fenced_at": None,
            "rescheduled_at": "2026-12-04T16:00:03.100000Z",
            "active_at": "2026-12-04T16:00:04.000000Z", **fields}
