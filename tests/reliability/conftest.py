"""A second app over the same test database with probe endpoints that write, for fault tests.

The foundation has no write endpoint that changes more than one row, so these tests add a
small API write (`POST /api/v1/probe-notes`, @idempotent, two rows per call) and a page form
(`POST /probe-notes`) doing the same, and check how they behave under concurrency and when the
database refuses writes. The probe app gets its own flask-smorest Api object so the session
app's OpenAPI document (fuzzed by test_api_fuzz.py) is left exactly as it was.
"""
from __future__ import annotations

import threading
import types

import pytest
from flask import Blueprint as FlaskBlueprint
from flask import flash, redirect, render_template_string, request
from flask_login import current_user, login_required
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from timebank.api.idempotency import idempotent
from timebank.api.security import current_api_user, token_required
from timebank.community.models import AuditEvent
from timebank.database import read_only_transactions
from timebank.errors import DomainError
from timebank.extensions import db

# Tests set these to hold a write open, so two requests overlap (threading.Event.wait(timeout)).
PROBE = {"hold": None, "entered": None}


class ProbeNoteIn(Schema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ProbeNoteOut(Schema):
    id = fields.Integer(required=True)
    text = fields.String(required=True)


probe_api = ApiBlueprint("probe", __name__, url_prefix="/api/v1", description="Test-only write probe")


def write_note(text: str, actor_id: int) -> AuditEvent:
    """Two rows per note, flushed one after the other: a half-written note would show up as one row."""
    first = AuditEvent(actor_user_id=actor_id, action="probe_note", detail={"text": text, "part": 1})
    db.session.add(first)
    db.session.flush()
    if PROBE["entered"] is not None:
        PROBE["entered"].set()
    if PROBE["hold"] is not None:
        PROBE["hold"].wait(5)
    db.session.add(AuditEvent(actor_user_id=actor_id, action="probe_note", detail={"text": text, "part": 2}))
    db.session.flush()
    return first


@probe_api.route("/probe-notes", methods=["POST"])
@idempotent
@probe_api.arguments(ProbeNoteIn)
@probe_api.response(201, ProbeNoteOut)
@probe_api.doc(security=[{"bearerAuth": []}])
@token_required
def create_probe_note(data):
    note = write_note(data["text"], current_api_user().id)
    return {"id": note.id, "text": data["text"]}


probe_pages = FlaskBlueprint("probe_pages", __name__)

PAGE = """{% extends "base.html" %}{% block content %}<h1>Notes</h1>
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input name="text"><button>Save</button></form>
<ul>{% for note in notes %}<li class="note">{{ note }}</li>{% endfor %}</ul>{% endblock %}"""


@probe_pages.route("/probe-notes", methods=["GET", "POST"])
@login_required
def probe_notes_page():
    if request.method == "POST":
        text = request.form.get("text", "")
        if not 1 <= len(text) <= 200:
            raise DomainError("A note must be 1 to 200 characters.", code="validation_error", status=422)
        write_note(text, current_user.id)
        flash("Note saved.", "success")
        return redirect("/probe-notes")
    notes = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "probe_note")).all()
    return render_template_string(PAGE, notes=[n["text"] for n in notes if n.get("part") == 1])


def _read(statement, many: bool):
    """Read in a short deferred transaction that is closed at once (no SQLite write lock left behind)."""
    with read_only_transactions():
        try:
            return db.session.scalars(statement).all() if many else db.session.scalar(statement)
        finally:
            db.session.close()


def probe_note_rows() -> list[dict]:
    return _read(select(AuditEvent.detail).where(AuditEvent.action == "probe_note").order_by(AuditEvent.id), True)


def count_idempotency_records(user_id: int) -> int:
    from timebank.community.models import IdempotencyRecord

    return _read(select(func.count()).select_from(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id),
                 False)


def _dispose(application) -> None:
    with application.app_context():
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def probe_app(committed_db, probe_app_session):
    """The probe app, on a freshly emptied committed database. Its pooled connections are dropped around
    the test because the SQLite reset copies a fresh file over the database."""
    _dispose(probe_app_session)
    yield probe_app_session
    _dispose(probe_app_session)


@pytest.fixture(scope="session")
def probe_app_session(app, database_url):
    """Another app on the same database, with the probe endpoints registered."""
    import timebank.api as api_package
    import timebank.extensions as extensions
    from timebank import create_app

    saved_api, saved_modules = extensions.api, api_package._capability_api_modules
    extensions.api = Api()
    api_package._capability_api_modules = lambda: saved_modules() + [types.SimpleNamespace(blp=probe_api)]
    try:
        application = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SERVER_NAME": None,
                                  "RATELIMIT_ENABLED": False})
    finally:
        extensions.api, api_package._capability_api_modules = saved_api, saved_modules
    application.register_blueprint(probe_pages)
    yield application
    _dispose(application)


@pytest.fixture
def probe_hold():
    """Hold probe writes half-way until .release(); `entered` is set once a write is in progress."""
    hold, entered = threading.Event(), threading.Event()
    PROBE.update(hold=hold, entered=entered)
    yield types.SimpleNamespace(release=hold.set, entered=entered)
    hold.set()
    PROBE.update(hold=None, entered=None)
