"""What the client raises: one class per API error status, all carrying the
HTTP status, the API's own message and the request id to quote to an
operator (the API answers ``{"error": {"status", "title", "message",
"request_id"}}``)."""

from __future__ import annotations


class ClientException(Exception):
    """An error talking to the clouddisco API.

    ``http_status`` is None when no HTTP answer came (no endpoint, no
    connection); ``request_id`` is the API's ``req-...`` id when it answered.
    """

    http_status: int | None = None

    def __init__(self, message: str, http_status: int | None = None,
                 request_id: str | None = None, title: str | None = None,
                 field: str | None = None, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if http_status is not None:
            self.http_status = http_status
        self.request_id = request_id
        self.title = title
        self.field = field
        self.method = method
        self.url = url

    @property
    def status(self) -> int | None:
        return self.http_status

    def __str__(self) -> str:
        text = self.message
        if self.http_status is not None:
            text += f" (HTTP {self.http_status})"
        if self.request_id:
            text += f" (Request-ID: {self.request_id})"
        return text


class EndpointNotFound(ClientException):
    """The catalog has no endpoint of service type ``l3-ha`` for this
    interface and region, and none was given."""


class ConnectionFailed(ClientException):
    """The endpoint did not answer (refused, unreachable, timed out)."""


class HTTPClientError(ClientException):
    """The API answered with an error status (4xx or 5xx)."""


class BadRequest(HTTPClientError):
    http_status = 400


class Unauthorized(HTTPClientError):
    http_status = 401


class Forbidden(HTTPClientError):
    http_status = 403


class NotFound(HTTPClientError):
    http_status = 404


class MethodNotAllowed(HTTPClientError):
    http_status = 405


class Conflict(HTTPClientError):
    http_status = 409


class UnsupportedMediaType(HTTPClientError):
    http_status = 415


class InternalServerError(HTTPClientError):
    http_status = 500


class ServiceUnavailable(HTTPClientError):
    """The API or its database is down for now; ``retry_after`` is the
    API's ``Retry-After`` in seconds, when it gave one."""

    http_status = 503
    retry_after: int | None = None


class NoUniqueMatch(ClientException):
    """A name given instead of an id names several resources."""


_BY_STATUS = {cls.http_status: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    UnsupportedMediaType, InternalServerError, ServiceUnavailable)}


def from_response(response, method: str | None = None,
                  url: str | None = None) -> HTTPClientError:
    """The exception for an error ``response`` (a requests.Response): the
    API's JSON error when the body is one, else the body's text (a proxy's
    HTML page, shortened) or the reason phrase."""
    status = response.status_code
    error = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
    message = error.get("message")
    if not message:
        text = (response.text or "").strip()
        message = text[:200] if text else (response.reason or f"HTTP {status}")
    request_id = (error.get("request_id")
                  or response.headers.get("x-openstack-request-id")
                  or response.headers.get("x-compute-request-id"))
    cls = _BY_STATUS.get(status, HTTPClientError)
    exc = cls(message, http_status=status, request_id=request_id,
              title=error.get("title") or response.reason, field=error.get("field"),
              method=method, url=url)
    if isinstance(exc, ServiceUnavailable):
        try:
            exc.retry_after = int(response.headers.get("Retry-After", ""))
        except ValueError:
            exc.retry_after = None
    return exc
