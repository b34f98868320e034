"""Writes under concurrency and when the database refuses them: never a 500, never half-written.

Runs on the real committed database (committed_db) with the probe app from conftest.py, whose
`POST /api/v1/probe-notes` writes two rows per note under @idempotent.
"""
from __future__ import annotations

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.reliability.conftest import count_idempotency_records, probe_note_rows
from timebank.extensions import db


@pytest.fixture
def member(committed_db, make_person, api_headers):
    user, _ = make_person("member")
    headers, user_id = api_headers(user), user.id
    committed_db.session.commit()
    committed_db.session.close()  # hold no transaction (SQLite: no lock) while the probe app works
    return user_id, headers


def post_note(probe_app, headers, key, text, results, name):
    client = probe_app.test_client()
    results[name] = client.post("/api/v1/probe-notes", json={"text": text}, headers={**headers, "Idempotency-Key": key})


def wait_until_blocked(probe_app, timeout=3.0):
    """PostgreSQL: wait until some backend waits on a lock (the second request queued behind the first).
    SQLite has no such view; the second writer waits on the database lock, so give it a moment."""
    with probe_app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            time.sleep(0.5)
            return
        deadline = time.monotonic() + timeout
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar()
                conn.rollback()
                if waiting:
                    return
                time.sleep(0.02)
        raise AssertionError("request B did not queue behind A on the idempotency key (it should wait for A to end)")


def race(probe_app, probe_hold, headers, first, second):
    """Start request A, hold it half-way through its write, start B with the same key, then let A finish."""
    results = {}
    a = threading.Thread(target=post_note, args=(probe_app, headers, first[0], first[1], results, "a"))
    b = threading.Thread(target=post_note, args=(probe_app, headers, second[0], second[1], results, "b"))
    a.start()
    assert probe_hold.entered.wait(10), "request A never started writing"
    b.start()
    wait_until_blocked(probe_app)
    probe_hold.release()
    a.join(20)
    b.join(20)
    assert not a.is_alive() and not b.is_alive()
    return results["a"], results["b"]


def test_same_key_at_the_same_time_writes_once_and_both_get_the_answer(committed_db, probe_app, probe_hold, member):
    user_id, headers = member
    a, b = race(probe_app, probe_hold, headers, ("key-1", "fix the gate"), ("key-1", "fix the gate"))
    assert (a.status_code, b.status_code) == (201, 201), (a.get_data(as_text=True), b.get_data(as_text=True))
    assert a.get_json() == b.get_json()
    assert b.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in a.headers
    with probe_app.app_context():
        assert probe_note_rows() == [{"text": "fix the gate", "part": 1}, {"text": "fix the gate", "part": 2}]
        assert count_idempotency_records(user_id) == 1


def test_same_key_other_body_at_the_same_time_is_refused_not_500(committed_db, probe_app, probe_hold, member):
    _user, headers = member
    a, b = race(probe_app, probe_hold, headers, ("key-2", "first words"), ("key-2", "other words"))
    assert a.status_code == 201
    assert b.status_code == 409 and b.mimetype == "application/problem+json"
    assert b.get_json()["code"] == "idempotency_key_reused"
    with probe_app.app_context():
        assert [row["text"] for row in probe_note_rows()] == ["first words", "first words"]


def test_a_failed_write_leaves_its_key_free_for_the_retry(committed_db, probe_app, member):
    user_id, headers = member
    client = probe_app.test_client()
    bad = client.post("/api/v1/probe-notes", json={"text": ""}, headers={**headers, "Idempotency-Key": "k3"})
    assert bad.status_code == 422 and bad.get_json()["code"] == "validation_error"
    good = client.post("/api/v1/probe-notes", json={"text": "ok"}, headers={**headers, "Idempotency-Key": "k3"})
    assert good.status_code == 201
    again = client.post("/api/v1/probe-notes", json={"text": "ok"}, headers={**headers, "Idempotency-Key": "k3"})
    assert again.status_code == 201 and again.get_json() == good.get_json()
    with probe_app.app_context():
        assert len(probe_note_rows()) == 2 and count_idempotency_records(user_id) == 1


def test_many_clients_retrying_the_same_keys_write_each_once(committed_db, probe_app, member):
    """Eight threads send the same five keyed writes in different orders: five notes, no 5xx."""
    _user, headers = member
    statuses = []
    lock = threading.Lock()

    def client_run(offset):
        client = probe_app.test_client()
        for i in range(5):
            n = (i + offset) % 5
            response = client.post("/api/v1/probe-notes", json={"text": f"note {n}"},
                                   headers={**headers, "Idempotency-Key": f"many-{n}"})
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=client_run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert all(s == 201 or s == 409 for s in statuses) and statuses.count(201) >= 5, statuses
    with probe_app.app_context():
        texts = sorted(row["text"] for row in probe_note_rows() if row["part"] == 1)
    assert texts == [f"note {n}" for n in range(5)]


# --- the database refusing writes -------------------------------------------------------------------------------

@contextlib.contextmanager
def writes_refused(probe_app):
    """Make the database refuse writes for the probe app's new connections.

    PostgreSQL: ALTER DATABASE ... SET default_transaction_read_only = on (what a failed-over or
    read-only server does). SQLite: PRAGMA query_only, SQLite's own "refuse every write" switch
    (a read-only file cannot be simulated as root, who may write any file).
    """
    with probe_app.app_context():
        engine = db.engine
        name = engine.url.database
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            engine.dispose()
            try:
                yield
            finally:
                engine.dispose()
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("SET default_transaction_read_only = off")
                    conn.exec_driver_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
                engine.dispose()
        else:
            def query_only(dbapi_connection, _record):
                dbapi_connection.execute("PRAGMA query_only = ON")

            engine.dispose()
            event.listen(engine, "connect", query_only)
            try:
                yield
            finally:
                event.remove(engine, "connect", query_only)
                engine.dispose()


def test_api_write_refused_by_database_is_503_and_nothing_is_written(committed_db, probe_app, member):
    user_id, headers = member
    client = probe_app.test_client()
    with writes_refused(probe_app):
        response = client.post("/api/v1/probe-notes", json={"text": "during outage"},
                               headers={**headers, "Idempotency-Key": "outage-1"})
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["code"] == "service_unavailable" and "Nothing was saved" in body["detail"]
        # Reads still answer while writes are refused.
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    with probe_app.app_context():
        assert probe_note_rows() == [] and count_idempotency_records(user_id) == 0
    # Writes are back: the client's retry with the same key is carried out, once.
    client = probe_app.test_client()
    retry = client.post("/api/v1/probe-notes", json={"text": "during outage"},
                        headers={**headers, "Idempotency-Key": "outage-1"})
    assert retry.status_code == 201
    with probe_app.app_context():
        assert [r["part"] for r in probe_note_rows()] == [1, 2]


def test_token_request_refused_by_database_is_503(committed_db, probe_app, make_person):
    make_person("member", email="outage@example.test")
    committed_db.session.commit()
    committed_db.session.close()
    client = probe_app.test_client()
    with writes_refused(probe_app):
        response = client.post("/api/v1/tokens", auth=("outage@example.test", "pw-123456789"))
        assert response.status_code == 503 and response.get_json()["code"] == "service_unavailable"


def test_page_write_refused_by_database_is_503_page_and_nothing_is_written(committed_db, probe_app, make_person):
    make_person("member", email="page-outage@example.test")
    committed_db.session.commit()
    committed_db.session.close()
    client = probe_app.test_client()
    login = client.post("/login", data={"email": "page-outage@example.test", "password": "pw-123456789"})
    assert login.status_code == 302
    with writes_refused(probe_app):
        response = client.post("/probe-notes", data={"text": "page during outage"})
        assert response.status_code == 503
        page = response.get_data(as_text=True)
        assert response.mimetype == "text/html" and "Nothing was saved" in page and "Traceback" not in page
    assert "page during outage" not in client.get("/probe-notes").get_data(as_text=True)
    saved = client.post("/probe-notes", data={"text": "page after outage"}, follow_redirects=True)
    assert "page after outage" in saved.get_data(as_text=True)
    with probe_app.app_context():
        assert [r["text"] for r in probe_note_rows()] == ["page after outage", "page after outage"]


@contextlib.contextmanager
def commit_refused(probe_app):
    """The database refuses the request's COMMIT itself (disk full, connection lost at the last moment)."""
    from sqlalchemy.orm import Session

    def refuse(_session):
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(Session, "before_commit", refuse)
    try:
        yield
    finally:
        event.remove(Session, "before_commit", refuse)


def test_a_refused_commit_is_503_with_retry_after_on_the_api_and_pages(committed_db, probe_app, make_person,
                                                                       api_headers):
    user, _ = make_person("member", email="commit-outage@example.test")
    headers = api_headers(user)
    committed_db.session.commit()
    committed_db.session.close()
    client = probe_app.test_client()
    assert client.post("/login", data={"email": "commit-outage@example.test",
                                       "password": "pw-123456789"}).status_code == 302
    with commit_refused(probe_app):
        api = client.post("/api/v1/probe-notes", json={"text": "x"}, headers={**headers, "Idempotency-Key": "c-1"})
        page = client.post("/probe-notes", data={"text": "y"})
    for response in (api, page):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert int(response.headers["Retry-After"]) > 0 and "Content-Security-Policy" in response.headers
    assert api.get_json()["code"] == "service_unavailable" and "Nothing was saved" in page.get_data(as_text=True)
    with probe_app.app_context():
        assert probe_note_rows() == []
