"""The JSON API under /api/v1, described by OpenAPI at /api/v1/openapi.json."""
from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from timebank.api.problems import problem
from timebank.errors import DomainError, ValidationFailed


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def register_api(app: Flask) -> None:
    from timebank.extensions import api

    # flask-smorest renders its own JSON errors; we answer problem+json instead.
    api._register_error_handlers = lambda: None  # noqa: SLF001
    api.init_app(app)
    from timebank.api import auth as auth_api

    api.register_blueprint(auth_api.blp)
    for module in _capability_api_modules():
        api.register_blueprint(module.blp)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("basicAuth", {"type": "http", "scheme": "basic"})


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
