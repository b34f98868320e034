"""Safe retries for API writes.

A write carries an idempotency key (the `Idempotency-Key` header or an
`idempotency_key` field). The same key with the same body returns the stored
answer; the same key with a different body is refused with 409
`idempotency_key_reused`. The answer is stored in the same transaction as the
write, so a write and its record commit together or not at all.

Concurrent requests with the same key: the key is claimed (its row inserted)
before the write runs. A second transaction inserting the same (user, key)
waits on the unique index until the first one ends; if the first committed, the
second replays the stored answer (or 409s for a different body); if it rolled
back, the second goes ahead. So a key is never acted on twice, and never 500s.

The claim is one INSERT ... ON CONFLICT DO NOTHING RETURNING id (PostgreSQL and
SQLite): a new key, the common case, costs that and the final UPDATE; a used
key is read only when the insert found it.
"""
from __future__ import annotations

import functools
import hashlib
import json

from flask import Response, request
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from werkzeug.exceptions import Unauthorized

from timebank.api.security import current_api_user
from timebank.community.models import IdempotencyRecord
from timebank.database import is_sqlite
from timebank.errors import Conflict, ValidationFailed
from timebank.extensions import db


def request_fingerprint() -> str:
    body = request.get_json(silent=True)
    if body is None:
        raw = request.get_data() or b""
    else:
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "idempotency_key"}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(request.method.encode() + b" " + request.path.encode() + b"\n" + raw).hexdigest()


def idempotency_key_from_request(required: bool = True) -> str | None:
    key = request.headers.get("Idempotency-Key")
    body = request.get_json(silent=True)
    if not key and isinstance(body, dict):
        key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise ValidationFailed("The idempotency key must be 1 to 200 characters.",
                               errors={"idempotency_key": ["Must be 1 to 200 characters."]})
    if required and not key:
        raise ValidationFailed("Every write needs an idempotency key (Idempotency-Key header or idempotency_key).",
                               errors={"idempotency_key": ["Missing data for required field."]})
    return key


def idempotent(view):
    """Replay the stored answer for a repeated key; store the answer of a new one."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user = current_api_user()
        if user is None:
            raise Unauthorized("A valid bearer token is required. Get one from POST /api/v1/tokens.")
        key = idempotency_key_from_request(required=True)
        fingerprint = request_fingerprint()
        record_id = _claim(user.id, key, request.path, fingerprint)
        if record_id is None:  # the key is used: by an earlier request, or a concurrent one that committed first
            existing = _stored(user.id, key)
            if existing is None:  # not visible yet (e.g. a stricter isolation level): let the client retry
                raise Conflict("A request with this idempotency key is still being processed; retry shortly.",
                               code="idempotency_key_in_progress")
            if existing.request_hash != fingerprint:
                raise Conflict("This idempotency key was already used for a different request.",
                               code="idempotency_key_reused")
            return Response(existing.response_body, status=existing.status_code, mimetype="application/json",
                            headers={"Idempotent-Replayed": "true"})
        result = view(*args, **kwargs)
        response = _to_response(result)
        # An error answer rolls the whole transaction back (claim included), so the key stays free for a retry.
        db.session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == record_id)
                           .values(status_code=response.status_code, response_body=response.get_data(as_text=True))
                           .execution_options(synchronize_session=False))
        return response

    # Keep flask-smorest's doc info, and mark the operation so the spec documents the Idempotency-Key header.
    wrapper._apidoc = {**getattr(view, "_apidoc", {}), "idempotent": True}
    return wrapper


def _stored(user_id: int, key: str) -> IdempotencyRecord | None:
    return db.session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key))


def _claim(user_id: int, key: str, endpoint: str, fingerprint: str) -> int | None:
    """Insert the key's row now and answer its id; None when the key is used (a row committed by an earlier
    request, or by a concurrent one this insert waited for). No savepoint: a conflict is not an error here."""
    insert = sqlite_insert if is_sqlite(db.session) else postgresql_insert
    return db.session.scalar(
        insert(IdempotencyRecord).values(user_id=user_id, key=key, endpoint=endpoint, request_hash=fingerprint,
                                         status_code=0, response_body="")
        .on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(IdempotencyRecord.id))


def _to_response(result) -> Response:
    from flask import make_response

    return make_response(result)
