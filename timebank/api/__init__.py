"""The JSON API under /api/v1, described by OpenAPI at /api/v1/openapi.json."""
from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from timebank.api.problems import problem
from timebank.errors import DomainError, ValidationFailed


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def _serialise_naive_datetimes_as_utc() -> None:
    """The database keeps naive UTC datetimes (utcnow()); the spec promises RFC 3339 `date-time`, which needs an
    offset. So every marshmallow DateTime field (except NaiveDateTime) writes a naive value as UTC (+00:00)."""
    import datetime as dt

    from marshmallow import fields

    if getattr(fields.DateTime, "_timebank_utc", False):
        return
    original = fields.DateTime._serialize

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, dt.datetime) and value.tzinfo is None and not isinstance(self, fields.NaiveDateTime):
            value = value.replace(tzinfo=dt.timezone.utc)
        return original(self, value, attr, obj, **kwargs)

    fields.DateTime._serialize = _serialize
    fields.DateTime._timebank_utc = True


class Int64Converter(IntegerConverter):
    """`<int:id>` limited to the database's 64-bit range: a larger id is a 404, never an overflow."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def register_api(app: Flask) -> None:
    from timebank.extensions import api

    _serialise_naive_datetimes_as_utc()

    # flask-smorest renders its own JSON errors; we answer problem+json instead,
    # and document them as such so clients (and the fuzz tests) can rely on the spec.
    api._register_error_handlers = lambda: None  # noqa: SLF001
    api._register_responses = lambda: _register_problem_responses(api)  # noqa: SLF001
    app.url_map.converters["int"] = Int64Converter
    api.init_app(app)
    from flask_smorest.spec.plugins import integerconverter2paramschema

    api.register_converter(Int64Converter, integerconverter2paramschema)
    from timebank.api import auth as auth_api

    for blueprint in [auth_api.blp] + [module.blp for module in _capability_api_modules()]:
        if _document_idempotency_key not in blueprint._prepare_doc_cbks:  # noqa: SLF001
            blueprint._prepare_doc_cbks.append(_document_idempotency_key)  # noqa: SLF001
        api.register_blueprint(blueprint)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("basicAuth", {"type": "http", "scheme": "basic"})


def _register_problem_responses(api) -> None:
    """Error responses in the spec: problem+json with ProblemSchema (flask-smorest says application/json)."""
    import http

    from flask_smorest.utils import prepare_response

    from timebank.api.problems import PROBLEM_CONTENT_TYPE, ProblemSchema

    for status in http.HTTPStatus:
        response = {"description": status.phrase}
        if not (100 <= status < 200) and status not in (204, 304):
            response["schema"] = ProblemSchema
        prepare_response(response, api.spec, PROBLEM_CONTENT_TYPE)
        api.spec.components.response(status.name, response, lazy=True)
    response = {"description": "An error, as application/problem+json (RFC 9457)", "schema": ProblemSchema}
    prepare_response(response, api.spec, PROBLEM_CONTENT_TYPE)
    api.spec.components.response(api.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)


IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header", "name": "Idempotency-Key", "required": True,
    "description": "A key unique to this write (e.g. a UUID). Retrying with the same key and body replays the "
                   "first answer; the same key with another body is refused with 409 idempotency_key_reused.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def _document_idempotency_key(doc, doc_info, **_kwargs):
    """flask-smorest doc callback: writes wrapped by @idempotent document their Idempotency-Key header."""
    if doc_info.get("idempotent"):
        parameters = doc.setdefault("parameters", [])
        if not any(p.get("name") == "Idempotency-Key" for p in parameters if isinstance(p, dict)):
            parameters.append(dict(IDEMPOTENCY_KEY_PARAMETER))
    return doc


def _capability_api_modules():
    """API blueprints of the capabilities, each optional until it lands."""
    import importlib

    modules = []
    for name in ("ledger", "people", "exchanges", "matching", "reports"):
        try:
            modules.append(importlib.import_module(f"timebank.api.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"timebank.api.{name}":
                raise
    return modules


def api_error_response(exc: Exception):
    """Answer an exception raised under /api as problem+json."""
    if isinstance(exc, ValidationFailed):
        return problem(exc.status, exc.code, exc.title, exc.message, errors=exc.errors, **exc.extra)
    if isinstance(exc, DomainError):
        return problem(exc.status, exc.code, exc.title, exc.message, **exc.extra)
    if isinstance(exc, HTTPException):
        if exc.code == 422 and getattr(exc, "data", None):
            # webargs/marshmallow validation: field errors by location.
            messages = exc.data.get("messages", {})
            errors = {}
            for _location, fields in messages.items():
                errors.update(fields)
            return problem(422, "validation_error", "Some fields are not valid",
                           "The request body has fields that are missing or wrong.", errors=errors)
        code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                415: "unsupported_media_type", 429: "too_many_requests"}.get(exc.code, "http_error")
        resp = problem(exc.code, code, exc.name, exc.description)
        if exc.code == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="timebank"'
        return resp
    return problem(500, "internal_error", "Internal server error",
                   "Something went wrong on our side. It has been logged.")
