"""Test fixtures: the app on a real, migrated database (SQLite or PostgreSQL).

TEST_DB=sqlite (default) or TEST_DB=postgres picks the database. Each test runs
inside a transaction that is rolled back afterwards (the app's own commits
become savepoints). Tests that need real commits (threads, browsers, CLI runs
in other processes) use the `committed_db` fixture, which starts from a freshly
migrated database and leaves one behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import scoped_session, sessionmaker

from timebank import create_app
from timebank.extensions import db

TEST_DB = os.environ.get("TEST_DB", "sqlite")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> sa.URL:
    return sa.make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))


def _create_postgres_database() -> tuple[str, callable]:
    admin_url = _postgres_admin_url()
    name = f"timebank_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {admin_url.render_as_string(hide_password=True)}: {exc.orig}"
        if IN_CI:
            pytest.exit("FAIL (CI=true): " + message, returncode=1)
        pytest.skip("PostgreSQL tests skipped outside CI: " + message, allow_module_level=True)

    def drop():
        db_engine_dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


_APP = None


def db_engine_dispose():
    if _APP is not None:
        with _APP.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    if TEST_DB == "postgres":
        url, drop = _create_postgres_database()
        yield url
        drop()
    else:
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        yield f"sqlite:///{path}"


def migrate_to_head(app):
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    global _APP
    instance = tmp_path_factory.mktemp("instance")
    os.environ.setdefault("TIMEBANK_INSTANCE", str(instance))
    application = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url,
                              "SERVER_NAME": None, "RATELIMIT_ENABLED": False})
    _APP = application
    migrate_to_head(application)
    if TEST_DB == "sqlite":
        # A migrated template, copied back whenever a test needs a clean committed database.
        path = sa.make_url(database_url).database
        with application.app_context():
            db.engine.dispose()
        shutil.copyfile(path, path + ".template")
    yield application
    db_engine_dispose()


def reset_database(app):
    """Put the database back to freshly migrated, empty tables."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            engine.dispose()
            path = engine.url.database
            for suffix in ("-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
            shutil.copyfile(path + ".template", path)
        else:
            tables = [t.name for t in db.metadata.sorted_tables]
            with engine.begin() as conn:
                names = ", ".join(f'"{t}"' for t in tables)
                # TRUNCATE does not fire the ledger's append-only DELETE triggers.
                conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
def committed_db(app, request):
    """A real database where commits are real; emptied before and after the test."""
    request.node._committed_db = True
    reset_database(app)
    with app.app_context():
        yield db
        db.session.remove()
    reset_database(app)


@pytest.fixture(autouse=True)
def _isolated_session(request, app):
    """Run the test in an outer transaction that is rolled back at the end."""
    if "committed_db" in request.fixturenames:
        yield
        return
    ctx = app.app_context()
    ctx.push()
    connection = db.engine.connect()
    outer = connection.begin()
    original = db.session
    db.session = scoped_session(sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                                             expire_on_commit=False))
    try:
        yield
    finally:
        db.session.remove()
        db.session = original
        if outer.is_active:
            outer.rollback()
        connection.close()
        ctx.pop()


@pytest.fixture
def session():
    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- people and logging in ---------------------------------------------------------------------------------------

@pytest.fixture
def timebank(session):
    from timebank.community.service import create_timebank

    return create_timebank(session, slug="testbank", name="Test Time Bank")


@pytest.fixture
def make_person(session, timebank):
    """make_person(role="member", email=None, password="pw-123456789") -> (user, membership)"""
    from timebank.community.service import add_membership, create_user

    counter = {"n": 0}

    def make(role: str = "member", email: str | None = None, password: str = "pw-123456789", tb=None, **profile):
        counter["n"] += 1
        email = email or f"{role}{counter['n']}-{uuid.uuid4().hex[:6]}@example.test"
        user = create_user(session, email=email, display_name=f"{role.title()} {counter['n']}", password=password)
        membership = add_membership(session, user=user, timebank=tb or timebank, role=role, **profile)
        return user, membership

    return make


@pytest.fixture
def login(client):
    def do_login(user, password: str = "pw-123456789"):
        response = client.post("/login", data={"email": user.email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    return do_login


@pytest.fixture
def api_headers(session):
    """api_headers(user) -> {"Authorization": "Bearer ..."} for a fresh token."""
    from timebank.community.auth import issue_token

    def headers(user, **extra):
        token, _ = issue_token(session, user)
        return {"Authorization": f"Bearer {token}", **extra}

    return headers
