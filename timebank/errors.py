"""Domain errors with stable codes, shared by every capability.

Capability packages raise these; the API answers them as
application/problem+json (RFC 9457) and pages show `message` in plain words.
"""
from __future__ import annotations


class DomainError(Exception):
    """A refusal the user can understand. `code` is stable; `status` is the HTTP status."""

    code = "domain_error"
    status = 422
    title = "The request could not be carried out"

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None, **extra):
        super().__init__(message or self.title)
        self.message = message or self.title
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "You are not allowed to do that"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422
    title = "Some fields are not valid"

    def __init__(self, message: str | None = None, *, errors: dict | None = None, **kw):
        super().__init__(message, **kw)
        self.errors = errors or {}
