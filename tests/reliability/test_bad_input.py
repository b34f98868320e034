"""Garbage in: oversized, wrongly typed, wrongly encoded, HTML/script and too-large bodies.

Pages and API answer with a clear 4xx (never a 5xx) and show user text escaped. The tables
below are the place to add forms and fields as capabilities land (e.g. profile, log hours,
CSV member import): one row per form or per stored text field.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

SCRIPT = '"><script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED_MARKERS = ("&lt;script&gt;", "&#34;&gt;&lt;script&gt;", "&lt;img")


@dataclass
class Form:
    name: str
    url: str
    fields: dict[str, str]
    role: str | None = None  # log in with this role first; None for public forms
    echoed: tuple[str, ...] = ()  # fields whose value the answer shows back
    ok_statuses: tuple[int, ...] = (200, 302, 303, 401, 409, 422)  # anything 4xx is fine, these are expected
    extra: dict = field(default_factory=dict)


FORMS = [
    Form("log in", "/login", {"email": "someone@example.test", "password": "not-the-password"}, echoed=("email",)),
]


# (what, how to store a value as a given role, page showing it)
def _display_name(session, make_person, login, client, value):
    from timebank.community.models import User

    user, _ = make_person("member")
    user.display_name = value[:120]
    session.flush()
    login(user)
    return client.get("/")  # "Welcome back, <name>" and the signed-in name in the header


STORED_TEXT = [
    ("display name on the home page after logging in", _display_name),
]


def _log_in_if_needed(form, make_person, login):
    if form.role:
        user, _ = make_person(form.role)
        login(user)


def _assert_clear_refusal(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_oversized_fields_are_refused_or_cut_never_500(client, make_person, login, form):
    _log_in_if_needed(form, make_person, login)
    for name in form.fields:
        data = {**form.fields, name: "x" * 200_000}
        _assert_clear_refusal(client.post(form.url, data=data))


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_wrong_types_and_repeated_fields_never_500(client, make_person, login, form):
    _log_in_if_needed(form, make_person, login)
    for name in form.fields:
        for bad in (["a", "b"], "", "-1", "1e309", "NaN", "\x00", "null", "[]", "{}"):
            data = {**form.fields, name: bad}
            _assert_clear_refusal(client.post(form.url, data=data))
    _assert_clear_refusal(client.post(form.url, data={}))  # every field missing
    _assert_clear_refusal(client.post(form.url, json=form.fields))  # JSON where a form is expected


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_wrong_encoding_never_500(client, make_person, login, form):
    _log_in_if_needed(form, make_person, login)
    body = "&".join(f"{k}={v}" for k, v in form.fields.items()).encode() + b"&note=caf\xe9\xff\xfe"
    response = client.post(form.url, data=body, content_type="application/x-www-form-urlencoded; charset=utf-8")
    _assert_clear_refusal(response)
    latin1 = {k: "Zoë café".encode("latin-1") for k in form.fields}
    response = client.post(form.url, data=b"&".join(k.encode() + b"=" + v for k, v in latin1.items()),
                           content_type="application/x-www-form-urlencoded")
    _assert_clear_refusal(response)


@pytest.mark.parametrize("form", [f for f in FORMS if f.echoed], ids=lambda f: f.name)
def test_html_in_echoed_fields_is_shown_escaped(client, make_person, login, form):
    _log_in_if_needed(form, make_person, login)
    for name in form.echoed:
        response = client.post(form.url, data={**form.fields, name: SCRIPT})
        _assert_clear_refusal(response)
        text = response.get_data(as_text=True)
        assert "<script>alert" not in text and "onerror=alert(1)>" not in text
        assert any(marker in text for marker in ESCAPED_MARKERS), "the value should be shown back, escaped"


@pytest.mark.parametrize("what,store_and_show", STORED_TEXT, ids=[s[0] for s in STORED_TEXT])
def test_html_in_stored_text_is_shown_escaped(session, make_person, login, client, what, store_and_show):
    response = store_and_show(session, make_person, login, client, SCRIPT)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "<script>alert" not in text and "onerror=alert(1)>" not in text
    assert any(marker in text for marker in ESCAPED_MARKERS), f"{what}: the stored text should appear, escaped"


# --- bodies too large -------------------------------------------------------------------------------------------

def test_too_large_page_post_is_413_page(app, client):
    big = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/login", data={"email": "a@example.test", "upload": (io.BytesIO(big), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 413
    assert response.mimetype == "text/html" and "That file is too big" in response.get_data(as_text=True)


def test_too_large_api_body_is_413_problem_even_when_the_view_ignores_the_body(app, client, make_person):
    user, _ = make_person("member", email="big@example.test")
    big = b"{" + b" " * (app.config["MAX_CONTENT_LENGTH"] + 1) + b"}"
    response = client.post("/api/v1/tokens", data=big, content_type="application/json",
                           auth=("big@example.test", "pw-123456789"))
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json" and response.get_json()["code"] == "payload_too_large"


# --- every API write, from the spec: malformed bodies -----------------------------------------------------------

def _api_writes(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method in ("post", "put", "patch"):
            if method in item and "{" not in path:
                yield method.upper(), path


MALFORMED_BODIES = [
    ("truncated JSON", b'{"text": "unfinished', "application/json"),
    ("not UTF-8", b'{"text": "caf\xe9\xff"}', "application/json"),
    ("a JSON array", b"[1, 2, 3]", "application/json"),
    ("a JSON string", b'"just a string"', "application/json"),
    ("deeply nested", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("XML", b"<note>hi</note>", "application/xml"),
    ("form data", b"text=hi", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize("what,body,content_type", MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_api_bodies_are_4xx_problem_json(client, make_person, api_headers, what, body, content_type):
    user, _ = make_person("admin")
    writes = list(_api_writes(client))
    assert writes, "the spec lists no API writes"
    for method, path in writes:
        headers = api_headers(user, **{"Idempotency-Key": f"bad-{what}"})
        response = client.open(path, method=method, data=body, content_type=content_type, headers=headers)
        assert response.status_code < 500, (method, path, response.get_data(as_text=True)[:300])
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json", (method, path)
