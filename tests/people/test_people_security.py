"""What a public-sector buyer checks: CSRF, login rate limits, no account enumeration, reset links."""
from __future__ import annotations

import logging

import pytest

from timebank import create_app


@pytest.fixture
def strict_app(app):
    """A second app on the same database with CSRF and rate limiting switched on."""
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                       "WTF_CSRF_ENABLED": True, "RATELIMIT_ENABLED": True, "LOGIN_RATE_LIMIT": "3 per minute",
                       "RATELIMIT_STORAGE_URI": "memory://"})


def test_form_post_without_csrf_token_is_refused_with_plain_words(strict_app):
    client = strict_app.test_client()
    response = client.post("/login", data={"email": "a@example.test", "password": "whatever-123"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "Something in that request was not right" in text and "Traceback" not in text
    join = client.post("/join", data={"email": "b@example.test"})
    assert join.status_code == 400


def test_form_post_with_csrf_token_is_accepted(strict_app):
    client = strict_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"email": "nobody@example.test", "password": "x" * 12,
                                           "csrf_token": token})
    assert response.status_code == 401  # reached the view: wrong password, not a CSRF refusal


def test_login_is_rate_limited_per_account(strict_app):
    strict_app.config["WTF_CSRF_ENABLED"] = False
    client = strict_app.test_client()
    statuses = []
    for i in range(4):
        # Different addresses, same account: the account limit applies.
        statuses.append(client.post("/login", data={"email": "victim@example.test", "password": f"guess-{i}"},
                                    environ_base={"REMOTE_ADDR": f"10.0.0.{i}"}).status_code)
    assert statuses == [401, 401, 401, 429]
    assert "Too many attempts" in client.post("/login", data={"email": "victim@example.test", "password": "x"},
                                              environ_base={"REMOTE_ADDR": "10.0.0.9"}).get_data(as_text=True)


def test_login_is_rate_limited_per_address(strict_app):
    strict_app.config["WTF_CSRF_ENABLED"] = False
    client = strict_app.test_client()
    statuses = [client.post("/login", data={"email": f"user{i}@example.test", "password": "guess-123"},
                            environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    # The API token endpoint counts too.
    response = client.post("/api/v1/tokens", auth=("user0@example.test", "guess"),
                           environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert response.status_code == 429 and response.mimetype == "application/problem+json"


def test_login_and_token_answers_do_not_reveal_which_emails_exist(client, world):
    known = client.post("/login", data={"email": world.member.email, "password": "wrong-password"})
    unknown = client.post("/login", data={"email": "ghost@example.test", "password": "wrong-password"})
    assert known.status_code == unknown.status_code == 401
    assert _main(known) == _main(unknown).replace("ghost@example.test", world.member.email)
    t_known = client.post("/api/v1/tokens", auth=(world.member.email, "wrong")).get_json()
    t_unknown = client.post("/api/v1/tokens", auth=("ghost@example.test", "wrong")).get_json()
    assert t_known == t_unknown


def _main(response):
    import re

    text = response.get_data(as_text=True)
    return re.sub(r'name="csrf_token" value="[^"]*"', "", text.split('<main')[1].split('</main>')[0])


def test_join_answers_the_same_for_a_known_email(client, world, caplog):
    with caplog.at_level(logging.INFO, logger="timebank.mail"):
        known = client.post("/join", data={"timebank": "testbank", "display_name": "X", "email": world.member.email,
                                           "password": "a-long-password"})
    unknown = client.post("/join", data={"timebank": "testbank", "display_name": "X", "email": "fresh@example.test",
                                         "password": "a-long-password"})
    assert known.status_code == unknown.status_code == 200
    assert _main(known) == _main(unknown)
    # The real owner gets a note (a reset link), the page says nothing.
    assert "password link for user %d" % world.member.id in caplog.text


def test_forgot_password_answers_the_same_and_the_link_resets_once(client, world, caplog):
    with caplog.at_level(logging.INFO, logger="timebank.mail"):
        known = client.post("/password/forgot", data={"email": world.member.email})
    unknown = client.post("/password/forgot", data={"email": "ghost@example.test"})
    assert _main(known) == _main(unknown)
    link = caplog.text.split("http://localhost")[1].split()[0]
    mismatch = client.post(link, data={"password": "new-password-1", "password_again": "new-password-2"})
    assert mismatch.status_code == 422 and "not the same" in mismatch.get_data(as_text=True)
    done = client.post(link, data={"password": "new-password-1", "password_again": "new-password-1"})
    assert done.status_code == 302
    assert client.post("/api/v1/tokens", auth=(world.member.email, "new-password-1")).status_code == 201
    # The same link cannot be used twice: the password it was made for has changed.
    again = client.post(link, data={"password": "other-password-1", "password_again": "other-password-1"})
    assert again.status_code == 400 and "not valid any more" in again.get_data(as_text=True)


def test_reset_link_expires_and_a_forged_one_fails(client, world, app, monkeypatch):
    from timebank.community import passwords

    token = passwords.make_token(app, world.member)
    monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_AGE", -1)
    expired = client.get(f"/password/reset/{token}")
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)
    forged = client.get(f"/password/reset/{token[:-3]}abc")
    assert forged.status_code == 400


def test_session_cookie_flags(client, world):
    response = client.post("/login", data={"email": world.member.email, "password": "pw-123456789"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
