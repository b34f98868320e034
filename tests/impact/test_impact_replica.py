"""Reports read from the replica when REPORTS_DATABASE_URL is set (two real databases)."""
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
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
