"""The whole API surface, as data: path → {method: handler}."""

import routes
import webob

from clouddisco import heartbeat
from clouddisco.api import auth
from clouddisco.api.errors import HTTPError
from clouddisco.api.handlers import agent_reports
from clouddisco.api.handlers import agents
from clouddisco.api.handlers import failover_events
from clouddisco.api.handlers import root
from clouddisco.api.handlers import routers
from clouddisco.db import models

ROUTES = {
    "/": {"GET": root.versions},
    "/v1": {"GET": root.version},
    "/v1/routers": {"GET": routers.list_routers, "POST": routers.create_router},
    "/v1/routers/{router_id}": {"GET": routers.show_router,
                                "PUT": routers.update_router,
                                "DELETE": routers.delete_router},
    "/v1/agents": {"GET": agents.list_agents},
    "/v1/agents/{agent_id}": {"GET": agents.show_agent, "PUT": agents.update_agent},
    "/v1/failover-events": {"GET": failover_events.list_failover_events},
    "/v1/failover-events/{event_id}": {"GET": failover_events.show_failover_event},
    heartbeat.HTTP_PATH: {"POST": agent_reports.receive_report},
    heartbeat.HTTP_FENCE_PATH: {"POST": agent_reports.receive_fence},
}


def _method_not_allowed(allowed: str):
    def handler(req: webob.Request) -> webob.Response:
        raise HTTPError(405, f"{req.method} is not allowed on {req.path}; allowed: "
                        f"{allowed}", headers={"Allow": allowed})
    return handler


def make_mapper(table: dict = ROUTES) -> routes.Mapper:
    mapper = routes.Mapper()
    for path, methods in table.items():
        for method, handler in methods.items():
            mapper.connect(path, action=handler, conditions={"method": [method]})
        # Anything else on a known path is 405 with an Allow header.
        mapper.connect(path, action=_method_not_allowed(", ".join(sorted(methods))))
    return mapper


class Dispatcher:
    """WSGI app that routes to the handler for path and method."""

    def __init__(self, mapper: routes.Mapper) -> None:
        self.mapper = mapper

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        # Accept a trailing slash on any path. A path that is not UTF-8
        # raises UnicodeDecodeError here: the fault wrapper's 400.
        path = req.path_info.rstrip("/") or "/"
        ctx = environ.get(auth.ENV_CONTEXT)
        project_id = getattr(ctx, "project_id", None)
        if project_id is not None and len(project_id) > models.PROJECT_ID_LENGTH:
            # Whether from X-Project-Id (noauth) or a token: no router can
            # belong to it, and the database would refuse to store it.
            raise HTTPError(400, f"project id longer than {models.PROJECT_ID_LENGTH} "
                            "characters")
        match = self.mapper.match(path, environ)
        if match is None:
            raise HTTPError(404, f"no such resource: {req.path}")
        handler = match.pop("action")
        req.urlvars = match
        return handler(req)(environ, start_response)
