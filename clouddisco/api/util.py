"""Request parsing and response shaping shared by the handlers."""

import datetime
import json
import urllib.parse
import uuid

import jsonschema
import webob

from clouddisco.api.errors import HTTPError


def json_response(body, status: int = 200) -> webob.Response:
    return webob.Response(status=status, content_type="application/json", charset="utf-8",
                          body=json.dumps(body).encode())


JSON = "application/json"


def check_json_type(req: webob.Request) -> None:
    """415 unless the body is declared JSON. Media types are case-insensitive
    (RFC 9110 8.3.1): ``Application/JSON`` is JSON too."""
    if (req.content_type or "").strip().lower() != JSON:
        raise HTTPError(415, "request body must be JSON (Content-Type: application/json)")


def parse_json(raw: bytes):
    """A request body as JSON, or a 400: not UTF-8, not JSON, nested too deep
    for the parser (RecursionError), or holding a string that cannot be
    stored (a lone surrogate such as ``"\\ud800"``, which is valid JSON but
    no Unicode text)."""
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise HTTPError(400, "request body is not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, "request body holds a string that is not valid Unicode "
                        "(a lone surrogate escape such as \\ud800)") from None
    except RecursionError:
        raise HTTPError(400, "request body is not valid JSON: nested too deeply") from None
    return body


def read_json(req: webob.Request, schema: dict) -> dict:
    """The request body, parsed and validated; a 400 names the offending field."""
    check_json_type(req)
    body = parse_json(req.body)
    validate(body, schema)
    return body


def validate(data, schema: dict) -> None:
    try:
        jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as exc:
        raise HTTPError(400, _message(exc)[:500], field=_field(exc)) from None
    except RecursionError:
        raise HTTPError(400, "request body is nested too deeply") from None


def _field(exc: jsonschema.ValidationError) -> str | None:
    path = [str(p) for p in exc.absolute_path]
    if exc.validator == "required":
        missing = exc.message.split("'")[1] if "'" in exc.message else None
        path.append(missing)
    elif exc.validator == "additionalProperties":
        extra = exc.message.split("'")[1] if "'" in exc.message else None
        path.append(extra)
    path = [p for p in path if p]
    return ".".join(path) if path else None


def _message(exc: jsonschema.ValidationError) -> str:
    field = _field(exc)
    if exc.validator == "additionalProperties":
        return f"unknown field {field!r}"
    if exc.validator == "required":
        return f"missing required field {field!r}"
    return f"invalid {field or 'body'}: {exc.message}"


def query_int(req: webob.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = req.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"query parameter {name!r} must be an integer",
                        field=name) from None
    if not minimum <= value <= maximum:
        raise HTTPError(400, f"query parameter {name!r} must be between {minimum} and "
                        f"{maximum}", field=name)
    return value


def check_uuid(value: str, what: str) -> str:
    """A malformed id can name nothing: answer 404 without asking the DB."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise HTTPError(404, f"{what} {value} not found") from None
    return value


def query_datetime(req: webob.Request, name: str) -> datetime.datetime | None:
    """An ISO 8601 timestamp query parameter as naive UTC (the database's
    times); one without a zone is taken as UTC. Absent: None."""
    raw = req.GET.get(name)
    if raw is None:
        return None
    try:
        value = datetime.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise HTTPError(400, f"query parameter {name!r} must be an ISO 8601 timestamp, "
                        "e.g. 2026-12-04T16:00:00Z", field=name) from None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def page_size(req: webob.Request, max_limit: int) -> int:
    """``?limit=``: at least 1; above ``[api] max_limit`` it is clamped to
    it, as Neutron and Placement do, rather than refused."""
    raw = req.GET.get("limit")
    if raw is None:
        return max_limit
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, "query parameter 'limit' must be an integer",
                        field="limit") from None
    if value < 1:
        raise HTTPError(400, "query parameter 'limit' must be at least 1", field="limit")
    return min(value, max_limit)


def uuid_marker(req: webob.Request) -> str | None:
    """``?marker=`` naming an item by its UUID; a malformed one names nothing: 400."""
    marker = req.GET.get("marker")
    if marker is None:
        return None
    try:
        uuid.UUID(marker)
    except ValueError:
        raise HTTPError(400, f"marker {marker[:64]!r} names nothing: it must be the id "
                        "of the last item of the previous page", field="marker") from None
    return marker


def int_marker(req: webob.Request) -> int | None:
    """``?marker=`` naming an item by its integer id."""
    marker = req.GET.get("marker")
    if marker is None:
        return None
    if not marker.isascii() or not marker.isdigit() or len(marker) > 18:
        raise HTTPError(400, f"marker {marker[:64]!r} names nothing: it must be the id "
                        "of the last item of the previous page", field="marker")
    return int(marker)


def paged_response(req: webob.Request, key: str, items: list, limit: int) -> webob.Response:
    """``{key: items[:limit], key_links: [...]}``. ``items`` was fetched with
    ``limit + 1``: when that extra item is there, a ``next`` link carries the
    request's own query with ``marker`` set to the last item's id."""
    body = {key: items[:limit]}
    if len(items) > limit:
        params = [(k, v) for k, v in req.GET.items() if k != "marker"]
        params.append(("marker", str(items[limit - 1]["id"])))
        query = urllib.parse.urlencode(params)
        body[f"{key}_links"] = [{"rel": "next",
                                 "href": f"{req.host_url}{req.script_name}"
                                         f"{req.path_info}?{query}"}]
    else:
        body[f"{key}_links"] = []
    return json_response(body)
