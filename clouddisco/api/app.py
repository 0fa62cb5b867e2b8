"""Build the clouddisco-api WSGI application from a parsed configuration."""

import dataclasses

from oslo_config import cfg
from oslo_middleware import request_id

from clouddisco import rpc
from clouddisco.api import auth
from clouddisco.api import errors
from clouddisco.api import routes
from clouddisco.db import api as db_api


@dataclasses.dataclass
class AppState:
    """What handlers may use, passed in rather than read from globals."""

    conf: cfg.ConfigOpts
    db: db_api.Database
    scheduler: rpc.SchedulerAPI


class _WithState:
    def __init__(self, app, state: AppState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ, start_response):
        environ["clouddisco.app"] = self.state
        return self.app(environ, start_response)


def deploy(conf: cfg.ConfigOpts, db: db_api.Database | None = None,
           scheduler: rpc.SchedulerAPI | None = None):
    """The middleware stack, outermost first:

    request id (so every later log line and error carries it) → fault wrapper
    (so even auth failures answer JSON) → auth/context (noauth now, keystone
    in front of it later) → app state → router.
    """
    if db is None:
        db = db_api.Database.from_conf(conf)
    if scheduler is None:
        scheduler = rpc.SchedulerAPI(rpc.get_transport(conf))
    app = routes.Dispatcher(routes.make_mapper())
    app = _WithState(app, AppState(conf=conf, db=db, scheduler=scheduler))
    app = auth.NoAuthContext(app)
    app = errors.FaultWrapper(app)
    return request_id.RequestId(app)
