"""OWASP ASVS 4.0 level 2 claims made in docs/SECURITY.md that had no test: sessions, passwords, headers,
caching, logs without personal data, secrets from the environment, the API refusing cookies."""
from __future__ import annotations

import logging

import pytest

from timebank import create_app

PASSWORD = "pw-123456789"


def _session_cookie(client):
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


# --- V3 session management --------------------------------------------------------------------------------------

def test_secure_cookie_and_hsts_when_configured(app):
    secure = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                         "SESSION_COOKIE_SECURE": True, "RATELIMIT_ENABLED": False})
    client = secure.test_client()
    response = client.post("/login", data={"email": "nobody@example.test", "password": "x" * 12},
                           base_url="https://localhost")
    assert "Strict-Transport-Security" in response.headers
    client.get("/login", base_url="https://localhost")
    flashed = client.post("/logout", base_url="https://localhost")  # sets a flash message: a session cookie
    cookie = flashed.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_session_is_new_after_log_in(client, world):
    client.post("/logout")  # a pre-login session (a flash message in it)
    before = _session_cookie(client)
    assert before
    client.post("/login", data={"email": world.member.email, "password": PASSWORD})
    after = _session_cookie(client)
    assert after and after != before


def test_logout_ends_the_session_even_for_a_copied_cookie(client, world):
    client.post("/login", data={"email": world.member.email, "password": PASSWORD})
    stolen = _session_cookie(client)
    assert client.get("/profile").status_code == 200
    client.post("/logout")
    client.set_cookie("session", stolen)
    response = client.get("/profile")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_new_password_ends_other_sessions(client, world, session, app):
    from timebank.community.passwords import set_password

    client.post("/login", data={"email": world.member.email, "password": PASSWORD})
    assert client.get("/profile").status_code == 200
    set_password(session, world.member, "a-brand-new-password")
    session.commit()
    assert client.get("/profile").status_code == 302


def test_a_session_older_than_the_lifetime_is_refused(client, world, app, monkeypatch):
    import time

    client.post("/login", data={"email": world.member.email, "password": PASSWORD})
    assert client.get("/profile").status_code == 200
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + app.permanent_session_lifetime.total_seconds() + 5)
    assert client.get("/profile").status_code == 302


def test_session_lifetime_comes_from_the_environment(monkeypatch):
    import importlib

    import config

    monkeypatch.setenv("SESSION_LIFETIME_HOURS", "2")
    reloaded = importlib.reload(config)
    try:
        assert reloaded.Config.PERMANENT_SESSION_LIFETIME == 7200
    finally:
        monkeypatch.delenv("SESSION_LIFETIME_HOURS")
        importlib.reload(config)


# --- V2 authentication ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("password,ok", [("x" * 11, False), ("x" * 12, True), ("correct horse battery staple", True),
                                         ("é" * 128, True), ("x" * 129, False)])
def test_password_policy_on_join_reset_and_api(client, world, app, api_headers, password, ok):
    from timebank.community import passwords

    join = client.post("/join", data={"timebank": "testbank", "display_name": "P", "email": "p@example.test",
                                      "password": password})
    assert join.status_code == (200 if ok else 422)
    if not ok:
        assert "12 to 128 characters" in join.get_data(as_text=True)
    link = f"/password/reset/{passwords.make_token(app, world.other)}"
    reset = client.post(link, data={"password": password, "password_again": password})
    assert reset.status_code == (302 if ok else 422)
    created = client.post("/api/v1/members", headers=api_headers(world.broker, **{"Idempotency-Key": password[:20]}),
                          json={"email": "q@example.test", "display_name": "Q", "password": password,
                                "timebank": "testbank"})
    assert created.status_code == (201 if ok else 422)


def test_broker_cannot_set_a_short_password_when_adding_a_member(client, world, login):
    login(world.broker)
    response = client.post("/members", data={"email": "short@example.test", "display_name": "S",
                                             "password": "short"})
    assert response.status_code == 422 and "12 to 128 characters" in response.get_data(as_text=True)


def test_passwords_are_stored_as_argon2_hashes(world):
    assert world.member.password_hash.startswith("$argon2id$") and PASSWORD not in world.member.password_hash


def test_revoked_and_expired_tokens_are_refused(client, world, session):
    import datetime as dt

    from timebank.community.auth import issue_token

    token, row = issue_token(session, world.member)
    headers = {"Authorization": f"Bearer {token}"}
    assert row.token_hash != token and token not in row.token_hash
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/tokens/current", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    token2, row2 = issue_token(session, world.member)
    row2.expires_at = dt.datetime(2000, 1, 1)
    session.commit()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token2}"}).status_code == 401


def test_login_does_not_redirect_to_another_site(client, world):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client.post("/logout")
        response = client.post(f"/login?next={target}", data={"email": world.member.email, "password": PASSWORD})
        assert response.status_code == 302
        from urllib.parse import urlsplit

        location = response.headers["Location"]
        assert not urlsplit(location).netloc.endswith("evil.example") and "evil.example" not in location, location


# --- V13 API: bearer tokens only, never cookies (so no CSRF through the API) ----------------------------------

def test_api_ignores_the_page_session_cookie(client, world, login):
    login(world.broker)
    response = client.post("/api/v1/members", json={"email": "csrf@example.test", "display_name": "C",
                                                    "timebank": "testbank"}, headers={"Idempotency-Key": "c"})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert "Access-Control-Allow-Origin" not in response.headers


# --- V14.4 headers on every kind of response; V8.2.1 no caching of personal data ---------------------------------

def test_security_headers_on_every_kind_of_response(client, world, login, api_headers):
    login(world.member)
    responses = {
        "page": client.get("/profile"), "redirect": client.get("/login"), "404 page": client.get("/no-such-page"),
        "403 page": client.get("/admin/audit"), "static": client.get("/static/css/app.css"),
        "api": client.get("/api/v1/me", headers=api_headers(world.member)),
        "api problem": client.get("/api/v1/members/999999", headers=api_headers(world.member)),
        "openapi": client.get("/api/v1/openapi.json"), "health": client.get("/health"),
    }
    for what, response in responses.items():
        headers = response.headers
        assert "script-src 'self'" in headers.get("Content-Security-Policy", ""), what
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"], what
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], what
        assert headers.get("X-Content-Type-Options") == "nosniff", what
        assert headers.get("X-Frame-Options") == "DENY", what
        assert headers.get("Referrer-Policy") == "same-origin", what
    for what in ("page", "api", "api problem", "403 page"):
        assert responses[what].headers.get("Cache-Control") == "no-store", what
    assert responses["static"].headers.get("Cache-Control") != "no-store"


def test_pages_carry_no_inline_script(client, world, login):
    login(world.admin)
    for url in ("/", "/profile", "/members", "/onboarding", "/admin/settings", "/admin/audit", "/categories"):
        text = client.get(url).get_data(as_text=True)
        assert "<script>" not in text and " onclick=" not in text, url


# --- V7 logs without personal data ------------------------------------------------------------------------------

def test_logs_carry_no_email_addresses_or_passwords(client, world, caplog, api_headers):
    secret = "a-secret-password-9"
    email = "private.person@example.test"
    with caplog.at_level(logging.DEBUG):
        client.post("/join", data={"timebank": "testbank", "display_name": "Private Person", "email": email,
                                   "password": secret})
        client.post("/login", data={"email": email, "password": "wrong-" + secret})
        client.post("/login", data={"email": world.member.email, "password": PASSWORD})
        client.get(f"/members?q={email}")
        client.post("/password/forgot", data={"email": world.member.email})
        client.post("/api/v1/tokens", auth=(world.member.email, PASSWORD))
        client.post("/api/v1/tokens", auth=(email, secret + "x"))
        client.get(f"/api/v1/members?q={email}", headers=api_headers(world.broker))
    text = caplog.text
    assert caplog.records, "the requests should have been logged"
    for private in (email, world.member.email, secret, PASSWORD, "Private Person"):
        assert private not in text, f"{private!r} appears in the log"


# --- V14.1 / V2.10 secrets from the environment ------------------------------------------------------------------

def test_secret_key_and_database_come_from_the_environment(monkeypatch, tmp_path):
    import config

    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example/tb")
    values = config.Config.resolve()
    assert values["SECRET_KEY"] == "from-the-environment"
    assert values["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example/tb"
    monkeypatch.delenv("SECRET_KEY")
    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    generated = config.Config.resolve()["SECRET_KEY"]
    key_file = tmp_path / "secret_key"
    assert len(generated) >= 40 and key_file.read_text().strip() == generated
    assert key_file.stat().st_mode & 0o077 == 0  # readable by the service's user only
    assert config.Config.resolve()["SECRET_KEY"] == generated  # stable across restarts


def test_production_config_is_not_in_debug_or_testing_mode(monkeypatch, tmp_path):
    import config

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    values = config.Config.resolve()
    assert values["TESTING"] is False and not values.get("DEBUG")
    assert values["SESSION_COOKIE_HTTPONLY"] is True and values["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert values["MAX_CONTENT_LENGTH"] <= 10 * 1024 * 1024
