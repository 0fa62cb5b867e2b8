"""clouddisco-api: serve the REST API with a threaded WSGI server (waitress)."""

import waitress

from clouddisco import launch
from clouddisco import systemd
from clouddisco.api import app as api_app
from clouddisco.db import api as db_api

PROG = "clouddisco-api"


def main() -> None:
    conf = launch.prepare(PROG, groups=["DEFAULT", "api", "health", "database"])
    launch.survive_sighup()
    db = db_api.Database.from_conf(conf)
    launch.require(PROG, "the database ([database] connection)", db.ping)
    app = api_app.deploy(conf, db=db)
    # waitress owns the main thread and would die of SIGHUP's default action.
    launch.reload_on_sighup(conf)
    # waitress: a production WSGI server with a thread pool, unlike wsgiref.
    server = waitress.create_server(app, host=conf.api.bind_host, port=conf.api.bind_port,
                                    threads=conf.api.threads, ident=PROG,
                                    max_request_body_size=1024 * 1024)
    # The socket listens (create_server binds): connections from here on
    # queue until run() accepts them, so systemd may call the API started.
    systemd.notify("READY=1")
    server.run()
