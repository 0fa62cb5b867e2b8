"""Request parsing and response shaping shared by the handlers."""

import json
import uuid

import jsonschema
import webob

from clouddisco.api.errors import HTTPError


def json_response(body, status: int = 200) -> webob.Response:
    return webob.Response(status=status, content_type="application/json", charset="utf-8",
                          body=json.dumps(body).encode())


def read_json(req: webob.Request, schema: dict) -> dict:
    """The request body, parsed and validated; a 400 names the offending field."""
    if req.content_type != "application/json":
        raise HTTPError(415, "request body must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
    validate(body, schema)
    return body


def validate(data, schema: dict) -> None:
    try:
        jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as exc:
        raise HTTPError(400, _message(exc), field=_field(exc)) from None


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
