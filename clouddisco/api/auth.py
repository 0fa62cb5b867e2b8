"""Who is asking: the request context, and the access rules.

``noauth`` trusts the ``X-Project-Id`` and ``X-Roles`` headers. These are the
same headers keystonemiddleware sets after validating a token, so the Keystone
strategy only has to put that middleware in front of this one.
"""

import webob
from oslo_context import context

from clouddisco import heartbeat
from clouddisco.api.errors import HTTPError
from clouddisco.api.errors import error_response

ADMIN_ROLE = "admin"
ENV_CONTEXT = "clouddisco.context"


class NoAuthContext:
    """Build a RequestContext from the identity headers; 401 without a project."""

    # Paths anyone may read (version discovery for clients and load balancers),
    # and agents' reports, which are signed with a key instead (see
    # clouddisco.api.handlers.agent_reports).
    PUBLIC = ("/", "/v1", "/v1/", heartbeat.HTTP_PATH, heartbeat.HTTP_FENCE_PATH)

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        if req.path in self.PUBLIC:
            # No identity, but a context all the same: oslo.log stamps each
            # line with the thread's current context, which would otherwise
            # be the previous request's, and an agent's report would be
            # logged under some tenant's request id.
            context.RequestContext(request_id=environ.get("openstack.request_id"))
        else:
            project_id = (req.headers.get("X-Project-Id") or "").strip()
            if not project_id:
                resp = error_response(req, 401, "missing X-Project-Id header: every "
                                      "request acts for a project")
                return resp(environ, start_response)
            roles = [r.strip() for r in req.headers.get("X-Roles", "").split(",")
                     if r.strip()]
            environ[ENV_CONTEXT] = context.RequestContext(
                project_id=project_id, user_id=req.headers.get("X-User-Id"),
                roles=roles, is_admin=ADMIN_ROLE in roles,
                request_id=environ.get("openstack.request_id"))
        return self.app(environ, start_response)


def get_context(req: webob.Request) -> context.RequestContext:
    return req.environ[ENV_CONTEXT]


def require_admin(ctx: context.RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise HTTPError(403, f"{action} requires the {ADMIN_ROLE!r} role")


def project_scope(ctx: context.RequestContext) -> str | None:
    """The project a request may see: its own, or every project for an admin."""
    return None if ctx.is_admin else ctx.project_id
