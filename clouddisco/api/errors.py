"""HTTP errors as JSON, and the fault wrapper that guarantees no HTML or 500 leak."""

import json
import time

import webob
import webob.exc
from oslo_db import exception as db_exc
from oslo_log import log as logging

from clouddisco import exceptions

LOG = logging.getLogger(__name__)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(req: webob.Request, status: int, message: str,
                   field: str | None = None, headers: dict | None = None) -> webob.Response:
    title = webob.exc.status_map[status].title
    body = {"error": {"status": status, "title": title, "message": message,
                      "request_id": req.environ.get("openstack.request_id")}}
    if field is not None:
        body["error"]["field"] = field
    resp = webob.Response(status=status, content_type="application/json", charset="utf-8",
                          body=json.dumps(body).encode())
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


# Domain errors → HTTP status.
_STATUS = {exceptions.NotFound: 404, exceptions.Conflict: 409, exceptions.InvalidInput: 400}


class FaultWrapper:
    """Turn every exception into a JSON error, and log one line per request.

    Unexpected exceptions are logged with their traceback and answered 500 with
    the request id, so an operator can find the log line.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        started = time.monotonic()
        try:
            resp = req.get_response(self.app)
        except HTTPError as exc:
            resp = error_response(req, exc.status, exc.message, exc.field, exc.headers)
        except exceptions.DatabaseUnavailable as exc:
            # Down, unreachable, or its Galera node outside the Primary
            # Component for longer than the db layer's retry
            # (clouddisco.db.retry): the request may succeed later.
            LOG.warning("%s %s: database unavailable: %s", req.method, req.path,
                        str(exc).splitlines()[0][:200])
            if isinstance(exc, exceptions.DatabaseOutcomeUnknown):
                message = ("the database is unavailable: the connection was lost while "
                           "the change was being committed, so it may or may not have "
                           "been applied; look before you try again")
            else:
                message = "the database is unavailable; nothing was changed, try again later"
            resp = error_response(req, 503, message,
                                  headers={"Retry-After": str(exc.retry_after)})
        except db_exc.DBConnectionError as exc:
            # The same, from a path outside the db layer's retry.
            LOG.warning("%s %s: database unavailable: %s", req.method, req.path,
                        str(exc).splitlines()[0][:200])
            resp = error_response(req, 503, "the database is unavailable; nothing was "
                                  "changed, try again later", headers={"Retry-After": "5"})
        except exceptions.ClouddiscoError as exc:
            status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
            resp = error_response(req, status, str(exc), getattr(exc, "field", None))
        except Exception:
            LOG.exception("unexpected error serving %s %s", req.method, req.path)
            resp = error_response(req, 500, "internal error; see the clouddisco-api log "
                                  "for this request id")
        LOG.info("%s %s -> %s (%.1f ms)", req.method, req.path_qs, resp.status_int,
                 (time.monotonic() - started) * 1000)
        return resp(environ, start_response)
