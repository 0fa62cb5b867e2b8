"""Build the clouddisco-api WSGI application from a parsed configuration."""

import dataclasses

from oslo_config import cfg
from oslo_log import log as logging
from oslo_middleware import healthcheck
from oslo_middleware import http_proxy_to_wsgi
from oslo_middleware import request_id
from oslo_middleware import sizelimit
from oslo_policy import policy as oslo_policy

from clouddisco import rpc
from clouddisco.api import auth
from clouddisco.api import errors
from clouddisco.api import policy
from clouddisco.api import routes
from clouddisco.db import api as db_api

LOG = logging.getLogger(__name__)

HEALTHCHECK_PATH = "/healthcheck"


@dataclasses.dataclass
class AppState:
    """What handlers may use, passed in rather than read from globals."""

    conf: cfg.ConfigOpts
    db: db_api.Database
    scheduler: rpc.SchedulerAPI
    policy: oslo_policy.Enforcer


class _WithState:
    def __init__(self, app, state: AppState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ, start_response):
        environ["clouddisco.app"] = self.state
        return self.app(environ, start_response)


class _Healthcheck:
    """``/healthcheck`` (for HAProxy and other balancers) answered by
    oslo.middleware's healthcheck app, before authentication and the
    request log; every other path goes on to the API."""

    def __init__(self, app, conf: cfg.ConfigOpts) -> None:
        self.app = app
        self.healthcheck = healthcheck.Healthcheck(None, conf)

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") or "").rstrip("/") == HEALTHCHECK_PATH:
            return self.healthcheck(environ, start_response)
        return self.app(environ, start_response)


def deploy(conf: cfg.ConfigOpts, db: db_api.Database | None = None,
           scheduler: rpc.SchedulerAPI | None = None,
           enforcer: oslo_policy.Enforcer | None = None):
    """The middleware stack, outermost first:

    request id (so every later log line and error carries it) →
    http_proxy_to_wsgi (scheme and host as the client used them, behind a
    TLS balancer: [oslo_middleware] enable_proxy_headers_parsing) →
    /healthcheck → fault wrapper (so even auth failures answer JSON) → body
    size limit ([oslo_middleware] max_request_body_size: 413) → Keystone
    auth_token ([api] auth_strategy = keystone; not on version discovery and
    the agents' signed reports) → request context → app state (database,
    scheduler client, policy enforcer) → router.
    """
    if db is None:
        db = db_api.Database.from_conf(conf)
    if scheduler is None:
        scheduler = rpc.SchedulerAPI(rpc.get_transport(conf))
    if enforcer is None:
        enforcer = policy.make_enforcer(conf)
    keystone = conf.api.auth_strategy == "keystone"
    if not keystone:
        LOG.warning("[api] auth_strategy = noauth: requests are not authenticated; "
                    "anyone who can reach the API acts as the project and roles named "
                    "in its X-Project-Id and X-Roles headers. Use keystone outside "
                    "tests and development.")
    app = routes.Dispatcher(routes.make_mapper())
    app = _WithState(app, AppState(conf=conf, db=db, scheduler=scheduler,
                                   policy=enforcer))
    if keystone:
        app = auth.KeystoneAuthToken(auth.ContextMiddleware(app), conf)
    else:
        app = auth.NoAuthContext(app)
    app = sizelimit.RequestBodySizeLimiter(app, conf)
    app = errors.FaultWrapper(app)
    app = _Healthcheck(app, conf)
    app = http_proxy_to_wsgi.HTTPProxyToWSGI(app, conf)
    return request_id.RequestId(app)
