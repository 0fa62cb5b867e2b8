"""WSGI entry point for uwsgi, mod_wsgi or gunicorn: ``clouddisco.wsgi.api:application``.

The configuration file comes from ``CLOUDDISCO_CONFIG_FILE`` (default
/etc/clouddisco/clouddisco.conf when it exists).
"""

import os

from clouddisco import conf as cd_conf
from clouddisco import launch
from clouddisco.api import app as api_app


def init_application():
    config_file = os.environ.get("CLOUDDISCO_CONFIG_FILE", cd_conf.DEFAULT_CONFIG_FILE)
    argv = ["--config-file", config_file] if os.path.exists(config_file) else []
    conf = launch.prepare("clouddisco-api", argv=argv, groups=["DEFAULT", "api", "health"])
    return api_app.deploy(conf)


class _LazyApplication:
    """Build the app on the first request, so importing this module (tests,
    config generation) needs no configuration file or database."""

    def __init__(self) -> None:
        self._app = None

    def __call__(self, environ, start_response):
        if self._app is None:
            self._app = init_application()
        return self._app(environ, start_response)


application = _LazyApplication()
