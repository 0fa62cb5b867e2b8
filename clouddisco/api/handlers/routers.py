"""Handlers of /v1/routers. Order in each: context, access, input, work, response."""

import webob
from oslo_log import log as logging

from clouddisco.api import auth
from clouddisco.api import policy
from clouddisco.api import util
from clouddisco.api.schemas import routers as schema
from clouddisco.policies import routers as rules

LOG = logging.getLogger(__name__)


def _app(req: webob.Request):
    return req.environ["clouddisco.app"]


def list_routers(req: webob.Request) -> webob.Response:
    app = _app(req)
    limit = util.page_size(req, app.conf.api.max_limit)
    # One more than asked for: whether there is a next page.
    routers = app.db.list_routers(policy.list_scope(req), limit=limit + 1,
                                  marker=util.uuid_marker(req),
                                  lease_time=app.conf.health.lease_time)
    return util.paged_response(req, "routers", policy.router_views(req, routers), limit)


def create_router(req: webob.Request) -> webob.Response:
    ctx = auth.get_context(req)
    app = _app(req)
    policy.authorize(req, rules.CREATE, "creating a router")
    body = util.read_json(req, schema.CREATE)
    router = app.db.create_router(
        project_id=ctx.project_id, name=body["name"], ha=body.get("ha", False),
        external_cidr=app.conf.api.external_cidr,
        reserved_ips=app.conf.api.external_reserved_ips,
        gateway_ip=body.get("external_gateway_ip"))
    LOG.info("router %s created for project %s with gateway %s", router["id"],
             ctx.project_id, router["external_gateway_ip"])
    # A cast on a background thread: a lost one is logged there, and the
    # health monitor places routers left unbound.
    app.scheduler.schedule_router(router["id"])
    resp = util.json_response({"router": policy.router_view(req, router)}, status=201)
    resp.location = f"{req.host_url}/v1/routers/{router['id']}"
    return resp


def show_router(req: webob.Request) -> webob.Response:
    router_id = util.check_uuid(req.urlvars["router_id"], "router")
    # lease_time: past it without a report the node may have removed the
    # router, so an ACTIVE one is shown DOWN (policy.get_router passes it).
    router = policy.get_router(req, rules.SHOW, "showing a router", router_id)
    return util.json_response({"router": policy.router_view(req, router)})


def update_router(req: webob.Request) -> webob.Response:
    ctx = auth.get_context(req)
    app = _app(req)
    router_id = util.check_uuid(req.urlvars["router_id"], "router")
    project_id = policy.get_router(req, rules.UPDATE, "renaming a router",
                                   router_id)["project_id"]
    body = util.read_json(req, schema.UPDATE)
    app.db.update_router(router_id, project_id, name=body["name"])
    LOG.info("router %s renamed by project %s", router_id, ctx.project_id)
    router = app.db.get_router(router_id, project_id, lease_time=app.conf.health.lease_time)
    return util.json_response({"router": policy.router_view(req, router)})


def delete_router(req: webob.Request) -> webob.Response:
    app = _app(req)
    router_id = util.check_uuid(req.urlvars["router_id"], "router")
    project_id = policy.get_router(req, rules.DELETE, "deleting a router",
                                   router_id)["project_id"]
    app.db.begin_router_delete(router_id, project_id)
    LOG.info("router %s marked for deletion", router_id)
    # As above: the monitor finishes a delete whose cast was lost.
    app.scheduler.delete_router(router_id)
    return webob.Response(status=204)
