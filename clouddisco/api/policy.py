"""Access decisions: oslo.policy with clouddisco's defaults in code
(clouddisco.policies), overridable in ``[oslo_policy] policy_file``.

deploy() makes one Enforcer per application and passes it in through
AppState; there is no module-level enforcer.
"""

import webob
from oslo_config import cfg
from oslo_policy import policy

from clouddisco import exceptions
from clouddisco import policies
from clouddisco.api import auth
from clouddisco.api.errors import HTTPError
from clouddisco.policies import routers as router_rules


def make_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An Enforcer reading ``[oslo_policy]`` of ``conf``, with the defaults
    registered. The policy file, if any, is read on the first check and
    again whenever it changes."""
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(policies.list_rules())
    return enforcer


def get_enforcer() -> policy.Enforcer:
    """``oslo.policy.enforcer`` entry point, for the oslopolicy-* tools
    (oslopolicy-policy-generator, oslopolicy-checker, ...): the enforcer of
    the configuration in the default places (/etc/clouddisco/...)."""
    from clouddisco import conf as cd_conf
    return make_enforcer(cd_conf.build([]))


def _enforcer(req: webob.Request) -> policy.Enforcer:
    return req.environ["clouddisco.app"].policy


def allowed(req: webob.Request, rule: str, target: dict | None = None) -> bool:
    """Whether ``rule`` allows this request on ``target`` (default: the
    caller's own project)."""
    ctx = auth.get_context(req)
    if target is None:
        target = {"project_id": ctx.project_id}
    try:
        return bool(_enforcer(req).authorize(rule, target, ctx, do_raise=False))
    except policy.InvalidScope:
        return False


def authorize(req: webob.Request, rule: str, action: str,
              target: dict | None = None) -> None:
    """403 unless ``rule`` allows this request; ``action`` says what was
    refused, in words ("listing agents")."""
    if not allowed(req, rule, target):
        ctx = auth.get_context(req)
        roles = ", ".join(sorted(ctx.roles)) or "none"
        raise HTTPError(403, f"{action} is not allowed: policy rule {rule!r} refuses "
                        f"this token (roles: {roles})")


def authorize_router(req: webob.Request, rule: str, action: str, router: dict) -> None:
    """As ``authorize``, on a router. A router of another project that the
    rule does not allow is answered 404 with the message of a router that
    does not exist: a project learns nothing of other projects' routers."""
    ctx = auth.get_context(req)
    if allowed(req, rule, {"project_id": router["project_id"]}):
        return
    if router["project_id"] != ctx.project_id:
        raise exceptions.NotFound(f"router {router['id']} not found")
    authorize(req, rule, action, {"project_id": router["project_id"]})


def router_view(req: webob.Request, router: dict) -> dict:
    """The router as this request may see it: without the infrastructure
    fields (where it runs) unless ``clouddisco:router:show:infrastructure``
    allows."""
    return router_views(req, [router])[0]


def router_views(req: webob.Request, routers: list[dict]) -> list[dict]:
    verdict: dict[str, bool] = {}
    out = []
    for router in routers:
        project = router["project_id"]
        if project not in verdict:
            verdict[project] = allowed(req, router_rules.SHOW_INFRASTRUCTURE,
                                       {"project_id": project})
        if verdict[project]:
            out.append(router)
        else:
            out.append(_without_infrastructure(router))
    return out


def _without_infrastructure(router: dict) -> dict:
    view = {k: v for k, v in router.items() if k not in router_rules.INFRASTRUCTURE_FIELDS}
    # A DOWN router's reason names the agent's host ("agent net-3 fenced its
    # node ..."): the same fact the removed fields would have told.
    host, reason = router.get("agent_host"), view.get("status_reason")
    if host and reason:
        view["status_reason"] = reason.replace(f"agent {host} ", "its agent ")
    return view


def get_router(req: webob.Request, rule: str, action: str, router_id: str) -> dict:
    """The router, if ``rule`` allows this request on it (``authorize_router``:
    403 on one's own project's router, 404 on another project's)."""
    app = req.environ["clouddisco.app"]
    router = app.db.get_router(router_id, lease_time=app.conf.health.lease_time)
    authorize_router(req, rule, action, router)
    return router


def list_scope(req: webob.Request) -> str | None:
    """The project whose routers a list shows (None: every project), after
    the policy checks: ``clouddisco:router:list`` always, and
    ``clouddisco:router:list:all_projects`` for every project or for
    ``?project_id=`` naming another project than the caller's own."""
    ctx = auth.get_context(req)
    authorize(req, router_rules.LIST, "listing routers")
    wanted = req.GET.get("project_id")
    if wanted is not None:
        wanted = wanted.strip()
        if not wanted or len(wanted) > 64:
            raise HTTPError(400, "invalid project_id: a project id of 1 to 64 characters",
                            field="project_id")
        if wanted == ctx.project_id:
            return wanted
        authorize(req, router_rules.LIST_ALL_PROJECTS,
                  "listing the routers of another project", {"project_id": wanted})
        return wanted
    if allowed(req, router_rules.LIST_ALL_PROJECTS, {}):
        return None
    return ctx.project_id
