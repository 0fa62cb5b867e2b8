"""Who is asking: token validation (Keystone) or trusted headers (noauth), and
the request context built from either.

With ``[api] auth_strategy = keystone`` keystonemiddleware's auth_token
validates the ``X-Auth-Token`` of every request and sets the identity headers
(``X-Project-Id``, ``X-Roles``, ``X-User-Id``, ...), having first removed any
the client sent. ``noauth`` trusts those same headers as the client sends
them. Either way ``RequestContext.from_environ`` builds the context from
them; what the context may do is for oslo.policy (clouddisco.api.policy).
"""

import webob
from keystonemiddleware import auth_token
from oslo_config import cfg
from oslo_context import context
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco.api.errors import error_response

LOG = logging.getLogger(__name__)

ENV_CONTEXT = "clouddisco.context"
ADMIN_ROLE = "admin"

# Paths anyone may call (version discovery for clients and load balancers),
# and agents' reports, which are signed with [health] report_key instead (see
# clouddisco.api.handlers.agent_reports). /healthcheck is answered before
# any of this (clouddisco.api.app.deploy). Compared without a trailing slash.
PUBLIC = ("/", "/v1", heartbeat.HTTP_PATH, heartbeat.HTTP_FENCE_PATH)

# Keystone's default implied roles (keystone-manage bootstrap): a token
# carries the roles its assigned roles imply. noauth adds them the same way,
# so that the policy defaults (reader, member, admin) mean the same thing
# with either strategy.
IMPLIED_ROLES = {"admin": ("member", "reader"), "member": ("reader",)}


def _public_path(environ) -> bool:
    path = (environ.get("PATH_INFO") or "/").rstrip("/") or "/"
    return path in PUBLIC


class KeystoneAuthToken(auth_token.AuthProtocol):
    """auth_token, except for the public paths, which it lets through untouched
    (as Placement's PlacementAuthProtocol does for its root)."""

    def __init__(self, app, conf: cfg.ConfigOpts) -> None:
        self._clouddisco_app = app
        # The service's own ConfigOpts, not oslo.config's global CONF:
        # auth_token registers [keystone_authtoken] on it and reads it there.
        super().__init__(app, {"oslo_config_config": conf})

    def __call__(self, environ, start_response):
        if _public_path(environ):
            return self._clouddisco_app(environ, start_response)
        return super().__call__(environ, start_response)


class ContextMiddleware:
    """Put a RequestContext built from the identity headers in the environ.

    ``trust_headers`` (noauth): the headers are the client's own, so roles
    are expanded by Keystone's implied roles and a missing project is a 401.
    Otherwise auth_token has set them from a validated token; a token scoped
    to no project is a 403 (every rule is for project-scoped tokens).
    """

    def __init__(self, app, trust_headers: bool = False) -> None:
        self.app = app
        self.trust_headers = trust_headers

    def __call__(self, environ, start_response):
        request_id = environ.get("openstack.request_id")
        if _public_path(environ):
            # No identity, but a context all the same: oslo.log stamps each
            # line with the thread's current context, which would otherwise
            # be the previous request's, and an agent's report would be
            # logged under some tenant's request id.
            context.RequestContext(request_id=request_id)
            return self.app(environ, start_response)
        ctx = context.RequestContext.from_environ(environ, request_id=request_id)
        if self.trust_headers:
            if not (ctx.project_id or "").strip():
                resp = error_response(webob.Request(environ), 401,
                                      "missing X-Project-Id header: every request acts "
                                      "for a project")
                return resp(environ, start_response)
            ctx.roles = expand_roles(ctx.roles)
        elif not ctx.project_id:
            resp = error_response(webob.Request(environ), 403,
                                  "this token is not scoped to a project: clouddisco "
                                  "needs a project-scoped token (e.g. set "
                                  "OS_PROJECT_NAME)")
            return resp(environ, start_response)
        # For code that has no policy enforcer at hand; access decisions
        # are the policy's (clouddisco.api.policy).
        ctx.is_admin = ADMIN_ROLE in ctx.roles
        environ[ENV_CONTEXT] = ctx
        return self.app(environ, start_response)


class NoAuthContext(ContextMiddleware):
    """The context of ``[api] auth_strategy = noauth``: from the client's own
    headers."""

    def __init__(self, app) -> None:
        super().__init__(app, trust_headers=True)


def expand_roles(roles) -> list[str]:
    out = []
    for role in roles:
        for r in (role, *IMPLIED_ROLES.get(role.lower(), ())):
            if r not in out:
                out.append(r)
    return out


def get_context(req: webob.Request) -> context.RequestContext:
    return req.environ[ENV_CONTEXT]

