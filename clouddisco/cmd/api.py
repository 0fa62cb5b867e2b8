"""clouddisco-api: serve the REST API with a threaded WSGI server (waitress)."""

import resource

import waitress
from oslo_log import log as logging

from clouddisco import launch
from clouddisco import systemd
from clouddisco.api import app as api_app
from clouddisco.db import api as db_api

PROG = "clouddisco-api"
LOG = logging.getLogger(__name__)
# File descriptors beyond the connections: the database pool, the broker,
# log files, the listening socket.
_SPARE_FDS = 128


def server_options(conf) -> dict:
    """waitress's adjustments from ``[api]``. What waitress answers itself,
    in plain text, without calling the API (doc/source/api-ref.rst): 413 past
    max_request_body_size, 431 past max_request_header_size, 400 for a
    request line or header it cannot parse (a lowercase method such as
    ``get``, a bad Content-Length), 501 for an unknown Transfer-Encoding."""
    api = conf.api
    return {"host": api.bind_host, "port": api.bind_port, "threads": api.threads,
            "connection_limit": api.connection_limit,
            "channel_timeout": api.channel_timeout, "backlog": api.backlog,
            # waitress looks for idle connections this often (its default:
            # every 30 s, whatever channel_timeout says).
            "cleanup_interval": max(1, min(30, api.channel_timeout // 2)),
            "max_request_body_size": api.max_request_body_size,
            "max_request_header_size": api.max_request_header_size,
            # poll(2), not select(2): select cannot watch descriptors past
            # 1024, which connection_limit may well need.
            "asyncore_use_poll": True, "ident": PROG}


def raise_fd_limit(connections: int) -> None:
    """Lift the soft RLIMIT_NOFILE to hold ``connections`` and the rest,
    up to the hard limit; warn when even that is too low."""
    want = connections + _SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            LOG.warning("[api] connection_limit = %d needs about %d file descriptors; "
                        "the hard limit is %d (raise LimitNOFILE=)", connections, want,
                        hard)


def main() -> None:
    conf = launch.prepare(PROG, groups=["DEFAULT", "api", "health", "database"])
    launch.survive_sighup()
    db = db_api.Database.from_conf(conf)
    launch.require(PROG, "the database ([database] connection)", db.ping)
    app = api_app.deploy(conf, db=db)
    # waitress owns the main thread and would die of SIGHUP's default action.
    launch.reload_on_sighup(conf)
    # waitress: a production WSGI server with a thread pool, unlike wsgiref.
    raise_fd_limit(conf.api.connection_limit)
    body_limit = conf.oslo_middleware.max_request_body_size
    if conf.api.max_request_body_size < body_limit:
        LOG.warning("[api] max_request_body_size (%d) is below [oslo_middleware] "
                    "max_request_body_size (%d): bodies between the two get waitress's "
                    "plain-text 413, not the API's JSON one",
                    conf.api.max_request_body_size, body_limit)
    server = waitress.create_server(app, **server_options(conf))
    # The socket listens (create_server binds): connections from here on
    # queue until run() accepts them, so systemd may call the API started.
    systemd.notify("READY=1")
    server.run()
