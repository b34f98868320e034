"""What running several app servers behind a proxy relies on (docs/DEPLOYMENT.md).

- PROXY_FIX_HOPS: the client's address and scheme come from the proxy's X-Forwarded-* headers only when set.
- RATELIMIT_STORAGE_URI=redis://...: two app servers share one count of login attempts.
- The scheduled jobs named in DEPLOYMENT.md exist and are safe to run twice.
"""
from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from flask import jsonify, request
from sqlalchemy import func, select

from timebank import create_app
from timebank.impact.models import ClosedPeriod

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _app(database_url, **overrides):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SERVER_NAME": None,
                       "RATELIMIT_ENABLED": False, **overrides})


def _whoami_app(database_url, hops):
    application = _app(database_url, PROXY_FIX_HOPS=hops)
    application.add_url_rule("/_whoami", "whoami",
                             lambda: jsonify(addr=request.remote_addr, scheme=request.scheme, host=request.host))
    return application


FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "timebank.example"}


def test_behind_one_proxy_the_client_address_and_scheme_come_from_its_headers(app, database_url):
    client = _whoami_app(database_url, hops=1).test_client()
    seen = client.get("/_whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    assert seen == {"addr": "203.0.113.9", "scheme": "https", "host": "timebank.example"}


def test_without_the_flag_forwarded_headers_are_ignored(app, database_url):
    """Reached directly, anyone could send X-Forwarded-For to dodge the per-address login limit."""
    client = _whoami_app(database_url, hops=0).test_client()
    seen = client.get("/_whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    assert seen == {"addr": "10.0.0.2", "scheme": "http", "host": "localhost"}


def test_with_two_proxies_only_the_trusted_hops_are_believed(app, database_url):
    client = _whoami_app(database_url, hops=2).test_client()
    seen = client.get("/_whoami", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.5"},
                      environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    assert seen["addr"] == "203.0.113.9"  # the client as the outer proxy saw it, not what the client claimed


# --- rate limits shared through Redis ----------------------------------------------------------------------------

@pytest.fixture
def redis_url():
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # no client library or no server
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if IN_CI:
            pytest.fail("CI=true: " + message)
        pytest.skip(message + " (skipped outside CI)")
    return REDIS_URL


def _login_servers(database_url, storage_uri):
    """Two app servers, as two hosts behind a load balancer would be, with one login allowance."""
    prefix = f"tb-test-{uuid.uuid4().hex[:8]}"
    settings = dict(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=storage_uri, RATELIMIT_KEY_PREFIX=prefix,
                    LOGIN_RATE_LIMIT="3 per minute")
    return _app(database_url, **settings).test_client(), _app(database_url, **settings).test_client()


def _attempt(client, email):
    return client.post("/api/v1/tokens", auth=(email, "wrong-password")).status_code


def test_login_limits_are_shared_between_app_servers_through_redis(app, database_url, redis_url):
    server_a, server_b = _login_servers(database_url, redis_url)
    email = f"guess-{uuid.uuid4().hex[:6]}@example.test"
    statuses = [_attempt(server_a, email), _attempt(server_a, email), _attempt(server_b, email),
                _attempt(server_b, email)]
    assert statuses == [401, 401, 401, 429]
    assert _attempt(server_a, email) == 429  # and the first server sees the same count


def test_in_memory_limits_are_per_server(app, database_url):
    """The same attempts with the default in-memory store: each server counts alone, so no 429 yet."""
    server_a, server_b = _login_servers(database_url, "memory://")
    email = f"guess-{uuid.uuid4().hex[:6]}@example.test"
    statuses = [_attempt(server_a, email), _attempt(server_a, email), _attempt(server_b, email),
                _attempt(server_b, email)]
    assert statuses == [401, 401, 401, 401]


# --- scheduled jobs -------------------------------------------------------------------------------------------

def test_close_period_for_the_previous_month_is_safe_to_run_twice(runner, session, timebank):
    first = runner.invoke(args=["reports", "close-period", "--previous-month", "--today", "2026-11-15"])
    assert first.exit_code == 0, first.output
    assert "testbank: closed 2026-10-01 to 2026-10-31" in first.output
    again = runner.invoke(args=["reports", "close-period", "--previous-month", "--today", "2026-11-20"])
    assert again.exit_code == 0, again.output
    assert "already closed" in again.output and "Closed 0 periods" in again.output
    periods = session.execute(select(ClosedPeriod.period_start, ClosedPeriod.period_end)
                              .where(ClosedPeriod.timebank_id == timebank.id)).all()
    assert periods == [(dt.date(2026, 10, 1), dt.date(2026, 10, 31))]


def test_close_period_needs_a_period(runner, timebank):
    result = runner.invoke(args=["reports", "close-period"])
    assert result.exit_code != 0 and "--previous-month" in result.output
    result = runner.invoke(args=["reports", "close-period", "--from", "2026-03-31", "--to", "2026-01-01"])
    assert result.exit_code != 0
    assert db_count_closed() == 0


def db_count_closed() -> int:
    from timebank.extensions import db

    return db.session.scalar(select(func.count()).select_from(ClosedPeriod))


def test_auto_confirm_command_exists_for_the_scheduler(runner, timebank):
    result = runner.invoke(args=["exchanges", "auto-confirm", "--today", "2026-11-15"])
    assert result.exit_code == 0, result.output
    assert "Auto-confirmed 0 exchanges." in result.output
