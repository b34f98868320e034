"""The application shell: health, errors in the right format, request ids, security headers."""
import logging

import pytest
from sqlalchemy.exc import OperationalError


def test_health_reports_ok_when_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_health_reports_503_when_database_fails(client, monkeypatch):
    from timebank.extensions import db

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(db.session, "execute", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and "reason" in body


def test_unknown_api_path_is_problem_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 404 and body["code"] == "not_found" and body["title"]


def test_unknown_page_is_html_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Page not found" in response.get_data(as_text=True)


def test_forced_error_gives_500_page_without_traceback(client, caplog, monkeypatch):
    from timebank.web import views

    def boom():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "render_template", lambda *a, **k: boom())
    with caplog.at_level(logging.ERROR, logger="timebank"):
        response = client.get("/")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Sorry, something went wrong" in text
    assert "secret internals" not in text and "Traceback" not in text
    assert "secret internals" in caplog.text  # the traceback goes to the log


def test_api_without_token_is_problem_401(client):
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_token_flow(client, make_person):
    user, membership = make_person("member", email="tok@example.test")
    response = client.post("/api/v1/tokens", auth=("TOK@example.test", "pw-123456789"))
    assert response.status_code == 201
    token = response.get_json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "tok@example.test"
    assert me.get_json()["memberships"][0]["account_id"] == membership.account_id
    assert client.delete("/api/v1/tokens/current", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_wrong_password_gets_no_token(client, make_person):
    user, _ = make_person("member")
    response = client.post("/api/v1/tokens", auth=(user.email, "wrong"))
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_request_id_header_and_security_headers(client):
    response = client.get("/")
    assert len(response.headers["X-Request-ID"]) >= 16
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_openapi_document_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/tokens" in spec["paths"]


def test_login_page_and_logout(client, make_person):
    user, _ = make_person("member")
    page = client.get("/login")
    assert page.status_code == 200 and "Log in" in page.get_data(as_text=True)
    bad = client.post("/login", data={"email": user.email, "password": "nope"})
    assert bad.status_code == 401 and "do not match" in bad.get_data(as_text=True)
    good = client.post("/login", data={"email": user.email, "password": "pw-123456789"})
    assert good.status_code == 302
    home = client.get("/")
    assert user.display_name in home.get_data(as_text=True)
    client.post("/logout")
    assert user.display_name not in client.get("/").get_data(as_text=True)


def test_pages_use_no_external_assets(client):
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html
