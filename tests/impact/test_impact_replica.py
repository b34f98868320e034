"""Reports read from the replica when REPORTS_DATABASE_URL is set (two real databases)."""
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from flask_migrate import upgrade
from sqlalchemy.orm import Session

from tests.impact.fixed_community import Q1, build, exchange, timebank_of
from timebank import create_app
from timebank.extensions import db
from timebank.impact.db import reports_configured
from timebank.impact.report import build_report

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "migrations")


@pytest.fixture
def two_databases(tmp_path):
    if os.environ.get("TEST_DB", "sqlite") != "postgres":
        yield f"sqlite:///{tmp_path / 'primary.sqlite3'}", f"sqlite:///{tmp_path / 'replica.sqlite3'}"
        return
    admin_url = sa.make_url(os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    names = [f"timebank_impact_{role}_{uuid.uuid4().hex[:8]}" for role in ("primary", "replica")]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield tuple(admin_url.set(database=n).render_as_string(hide_password=False) for n in names)
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _app(url, reports_url=None):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "REPORTS_DATABASE_URL": reports_url,
                       "SQLALCHEMY_BINDS": {}, "SERVER_NAME": None})


def _populate(url, extra_minutes):
    engine = sa.create_engine(url)
    with Session(engine) as session:
        c = build(session)
        if extra_minutes:
            exchange(session, c["timebank"], c["b"], c["e"], extra_minutes, Q1[0], logger=c["a"].user)
        session.commit()
    engine.dispose()


def test_reports_read_the_replica_when_configured(two_databases):
    primary_url, replica_url = two_databases
    replica_app = _app(replica_url)
    with replica_app.app_context():
        upgrade(directory=MIGRATIONS)
        assert not reports_configured()
    routed_app = _app(primary_url, reports_url=replica_url)
    with routed_app.app_context():
        upgrade(directory=MIGRATIONS)  # migrates the primary only
    # Different data in each: the primary has an extra 600-minute exchange the replica lacks.
    _populate(primary_url, extra_minutes=600)
    _populate(replica_url, extra_minutes=0)

    with routed_app.app_context():
        assert reports_configured()
        with Session(db.engines[None]) as primary:
            tb = timebank_of(primary, "fixed")
            report = build_report([tb], *Q1)
        assert report["headline"]["minutes_delivered"] == 780
        for engine in db.engines.values():
            engine.dispose()

    plain_app = _app(primary_url)
    with plain_app.app_context():
        with Session(db.engine) as primary:
            tb = timebank_of(primary, "fixed")
            # Without a replica the report runs on the caller's session: here the primary.
            from timebank.impact import queries
            assert queries.headline(primary, [tb.id], *Q1)["minutes_delivered"] == 1380
        for engine in db.engines.values():
            engine.dispose()
    with replica_app.app_context():
        db.engine.dispose()


def _routed(two_databases, extra_on_primary=600):
    """An app reading reports from a replica that lags: the primary has an extra 600-minute exchange."""
    primary_url, replica_url = two_databases
    replica_app = _app(replica_url)
    with replica_app.app_context():
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()
    routed_app = _app(primary_url, reports_url=replica_url)
    with routed_app.app_context():
        upgrade(directory=MIGRATIONS)
    _populate(primary_url, extra_minutes=extra_on_primary)
    _populate(replica_url, extra_minutes=0)
    return routed_app


def _dispose(app):
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_close_period_reads_the_primary_not_the_lagging_replica(committed_db, two_databases):
    # committed_db: the suite's per-test session swap would otherwise point db.session at the test database.
    import json

    from timebank.impact.models import ClosedPeriod

    routed_app = _routed(two_databases)
    try:
        with routed_app.app_context():  # the command runs in the app context it finds
            result = routed_app.test_cli_runner().invoke(args=["reports", "close-period", "--from", "2025-01-01",
                                                               "--to", "2025-03-31", "--timebank", "fixed"])
            assert result.exit_code == 0, result.output
            with Session(db.engines[None]) as primary:
                closed = primary.scalar(select(ClosedPeriod))
                frozen = json.loads(closed.report_json)
                # 1380 on the primary (with the extra 600 minutes); the replica would have frozen 780.
                assert frozen["headline"]["minutes_delivered"] == 1380
                tb = timebank_of(primary, "fixed")
            # The dashboard still reads the replica for an open period.
            with Session(db.engines[None]) as primary:
                assert build_report([timebank_of(primary, "fixed")], *Q1)["headline"]["minutes_delivered"] == 780
            assert tb is not None
    finally:
        _dispose(routed_app)


class _RecoveryConflict:
    """What a hot-standby replica raises when it cancels a query to apply WAL (SQLSTATE 40001)."""

    MESSAGE = ("canceling statement due to conflict with recovery\n"
               "DETAIL:  User query might have needed to see row versions that must be removed.")

    @classmethod
    def error(cls, dialect):
        if dialect.name == "postgresql":
            import psycopg

            return psycopg.errors.SerializationFailure(cls.MESSAGE)
        import sqlite3

        error = sqlite3.OperationalError(cls.MESSAGE)
        error.sqlstate = "40001"
        return error


def test_a_query_cancelled_by_the_replica_is_a_503_with_retry_after(committed_db, two_databases, monkeypatch):
    from timebank.community.auth import issue_token
    from timebank.community.service import add_membership, create_user

    routed_app = _routed(two_databases)
    try:
        with routed_app.app_context():
            tb = timebank_of(db.session, "fixed")
            user = create_user(db.session, email="commissioner@example.test", display_name="C",
                               password="pw-123456789")
            add_membership(db.session, user=user, timebank=tb, role="commissioner")
            token, _ = issue_token(db.session, user)
            db.session.commit()
            replica = db.engines["reports"]
            calls = []

            def cancelled_by_recovery(cursor, statement, parameters, context=None):
                calls.append(statement)
                raise _RecoveryConflict.error(replica.dialect)

            # Only the replica's DB-API calls fail; the primary (login, tokens) works.
            monkeypatch.setattr(replica.dialect, "do_execute", cancelled_by_recovery)
        client = routed_app.test_client()
        query = {"timebank": "fixed", "from": "2025-01-01", "to": "2025-03-31"}
        response = client.get("/api/v1/reports/impact", query_string=query,
                              headers={"Authorization": f"Bearer {token}"})
        assert calls, "the report did not reach the replica"
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "reports_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        assert "conflict with recovery" not in response.get_data(as_text=True)  # no database text leaks

        login = client.post("/login", data={"email": "commissioner@example.test", "password": "pw-123456789"})
        assert login.status_code == 302
        page = client.get("/reports/", query_string=query)
        assert page.status_code == 503
        assert int(page.headers["Retry-After"]) > 0
        text = page.get_data(as_text=True)
        assert "try again" in text and "conflict with recovery" not in text and "Traceback" not in text
    finally:
        _dispose(routed_app)
