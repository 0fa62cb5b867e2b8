"""HTTP errors as JSON, and the fault wrapper that guarantees no HTML or 500 leak."""

import json
import time
import urllib.parse

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


# Headers of a library's error response that say what to do next.
_KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")

# What a library's error responses of these statuses mean here, in words
# that tell the caller what to do (auth_token and oslo.middleware answer in
# their own formats, some in HTML).
_LIBRARY_MESSAGES = {
    401: "authentication required: send a valid Keystone token in X-Auth-Token "
         "(this one is missing, invalid, expired or revoked)",
    413: "request body too large: larger than [oslo_middleware] max_request_body_size",
    503: "the identity service (Keystone) is unavailable, so the token could not be "
         "validated; try again later",
}


def _ours(resp: webob.Response) -> bool:
    if resp.content_type != "application/json":
        return False
    try:
        error = json.loads(resp.body)["error"]
        return "request_id" in error and "status" in error
    except (ValueError, KeyError, TypeError):
        return False


def _kept_headers(headers) -> dict:
    return {k: headers[k] for k in _KEPT_HEADERS if k in headers}


def _webob_message(exc: webob.exc.HTTPException) -> str:
    return (_LIBRARY_MESSAGES.get(exc.code) if exc.code in (401, 503) else None) or \
        str(exc.detail or exc.explanation or exc.title)


def _as_ours(req: webob.Request, resp: webob.Response) -> webob.Response:
    """A library's error response (keystonemiddleware's 401 and 503,
    oslo.middleware's 413) in clouddisco's JSON error format, with its
    request id, keeping the headers that matter (WWW-Authenticate)."""
    status = resp.status_int
    if status not in webob.exc.status_map:
        status = 500 if status >= 500 else 400
    message = _LIBRARY_MESSAGES.get(status) or webob.exc.status_map[status].title
    return error_response(req, status, message, headers=_kept_headers(resp.headers))


# Domain errors → HTTP status.
_STATUS = {exceptions.NotFound: 404, exceptions.Conflict: 409, exceptions.InvalidInput: 400}


def loggable_path(environ) -> str:
    """The request's path and query as received, %-encoded where they are
    not printable ASCII: never raises, unlike webob's ``req.path_qs``, which
    decodes them as UTF-8 (``GET /%ff`` made the error handler itself fail,
    and the server answered a plain-text 500)."""
    raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode(
        "latin-1", "replace")
    path = urllib.parse.quote(raw, safe="/:@!$&'()*+,;=-._~%")
    query = environ.get("QUERY_STRING", "")
    if query:
        path += "?" + urllib.parse.quote(query.encode("latin-1", "replace"),
                                         safe="/:@!$&'()*+,;=-._~%?")
    return path[:1000]


class FaultWrapper:
    """Turn every exception into a JSON error, and log one line per request.

    Unexpected exceptions are logged with their traceback and answered 500 with
    the request id, so an operator can find the log line.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        path = loggable_path(environ)
        started = time.monotonic()
        try:
            resp = req.get_response(self.app)
        except HTTPError as exc:
            resp = error_response(req, exc.status, exc.message, exc.field, exc.headers)
        except webob.exc.HTTPException as exc:
            # A library's error, raised (oslo.middleware's body size limit
            # while the body is read).
            resp = error_response(req, exc.code, _webob_message(exc),
                                  headers=_kept_headers(exc.headers))
        except UnicodeDecodeError:
            # webob decodes the path, query string and form values as UTF-8
            # when a layer first reads them; the client sent other bytes.
            resp = error_response(req, 400, f"the request is not valid UTF-8: {path}")
        except db_exc.DBDataError as exc:
            # A value the column cannot hold (too long, not storable in the
            # column's character set) that no check before caught.
            LOG.warning("%s %s: value refused by the database: %s", req.method, path,
                        str(exc).splitlines()[0][:200])
            resp = error_response(req, 400, "a value of the request is too long or not "
                                  "storable")
        except exceptions.DatabaseUnavailable as exc:
            # Down, unreachable, or its Galera node outside the Primary
            # Component for longer than the db layer's retry
            # (clouddisco.db.retry): the request may succeed later.
            LOG.warning("%s %s: database unavailable: %s", req.method, path,
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
            LOG.warning("%s %s: database unavailable: %s", req.method, path,
                        str(exc).splitlines()[0][:200])
            resp = error_response(req, 503, "the database is unavailable; nothing was "
                                  "changed, try again later", headers={"Retry-After": "5"})
        except (db_exc.DBDeadlock, db_exc.RetryRequest) as exc:
            # Still losing to concurrent writers after the db layer's
            # retries (clouddisco.db.retry.DEADLOCK_RETRIES): rolled back,
            # and likely to succeed a moment later.
            LOG.warning("%s %s: still conflicting with concurrent writes: %s", req.method,
                        path, str(exc).splitlines()[0][:200])
            resp = error_response(req, 503, "too many concurrent changes; nothing was "
                                  "changed, try again", headers={"Retry-After": "1"})
        except exceptions.ClouddiscoError as exc:
            status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
            resp = error_response(req, status, str(exc), getattr(exc, "field", None))
        except Exception:
            LOG.exception("unexpected error serving %s %s", req.method, path)
            resp = error_response(req, 500, "internal error; see the clouddisco-api log "
                                  "for this request id")
        if resp.status_int >= 400 and not _ours(resp):
            resp = _as_ours(req, resp)
        LOG.info("%s %s -> %s (%.1f ms)", req.method, path, resp.status_int,
                 (time.monotonic() - started) * 1000)
        return resp(environ, start_response)
