"""RFC 9457 problem+json answers for every API error."""
from __future__ import annotations

import json

from flask import Response

PROBLEM_TYPE_BASE = "https://timebank.example/problems/"


def problem(status: int, code: str, title: str, detail: str | None = None, **extra) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body, default=str), status=status, mimetype="application/problem+json")
