"""RFC 9457 problem+json answers for every API error."""
from __future__ import annotations

import json

from flask import Response
from marshmallow import INCLUDE, Schema, fields

PROBLEM_TYPE_BASE = "https://timebank.example/problems/"


def problem(status: int, code: str, title: str, detail: str | None = None, **extra) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body, default=str), status=status, mimetype="application/problem+json")


class ProblemSchema(Schema):
    """How every API error looks (RFC 9457); documented as the default error response."""

    class Meta:
        unknown = INCLUDE  # domain errors may add members (e.g. `errors`, `balance_minutes`)

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    code = fields.String(required=True)
    detail = fields.String()
    errors = fields.Dict(metadata={"description": "Field name -> messages, for validation_error"})


PROBLEM_CONTENT_TYPE = "application/problem+json"
