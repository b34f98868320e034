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
    """One page form. `url` and field values may name the scene's ids ({member}, {applicant}, {org}, {category},
    {exchange}) and {n}, a number fresh for every post (for values that must be unique, such as emails)."""
    name: str
    url: str
    fields: dict[str, str]
    role: str | None = None  # log in with this role first (a user of the scene); None for public forms
    echoed: tuple[str, ...] = ()  # fields whose value the answer shows back
    text: tuple[str, ...] = ()  # free-text fields that are stored
    shown_at: str | None = None  # the page where the stored text fields are shown (as `role`, or as shown_by)
    shown_by: str | None = None
    ok_statuses: tuple[int, ...] = (200, 302, 303, 401, 409, 422)  # anything 4xx is fine, these are expected
    extra: dict = field(default_factory=dict)


CSV = "member,hours\n{member_email},2\n"
FORMS = [
    Form("log in", "/login", {"email": "someone@example.test", "password": "not-the-password"}, echoed=("email",)),
    Form("join", "/join", {"timebank": "badbank", "display_name": "Nia {n}", "email": "nia{n}@example.test",
                           "password": "a-long-password", "note": "I can garden"},
         text=("display_name", "note"), shown_at="/onboarding", shown_by="broker"),
    Form("forgot password", "/password/forgot", {"email": "someone@example.test"}),
    Form("my profile", "/profile", {"display_name": "Pat", "phone": "0191 000", "preferred_contact": "email",
                                    "bio": "I like walking", "ward": "Byker", "postcode_district": "NE6",
                                    "latitude": "54.97", "longitude": "-1.61", "slot": "3", "skill": "{category}",
                                    "demographics_consent": "yes", "age_band": "25-34", "gender": "woman",
                                    "disability": "no"}, role="member",
         text=("display_name", "phone", "bio", "ward", "postcode_district", "gender"), shown_at="/profile"),
    Form("broker adds a member", "/members", {"email": "added{n}@example.test", "display_name": "Added {n}",
                                              "ward": "Heaton"}, role="broker",
         text=("display_name", "ward"), shown_at="/members"),
    Form("onboarding checks", "/applications/{applicant}/checks",
         {"references_received": "2", "safety_check_level": "basic", "safety_check_date": "2026-01-01",
          "safety_check_expires": "2029-01-01", "risk_note": "none", "induction_date": "2026-02-01"},
         role="broker", text=("risk_note",), shown_at="/members/{applicant}"),
    Form("ask for more information", "/applications/{applicant}/request-info", {"message": "Your referee?"},
         role="broker", text=("message",), shown_at="/members/{applicant}"),
    Form("decline", "/applications/{applicant}/decline", {"reason": "Not local"}, role="broker",
         text=("reason",), shown_at="/members/{applicant}"),
    Form("approve", "/applications/{applicant}/approve", {"welcome_hours": "1", "welcome_from": "issuance"},
         role="broker"),
    Form("suspend", "/members/{other}/suspend", {"reason": "Missed meetings"}, role="broker"),
    Form("change role", "/members/{other}/role", {"role": "broker"}, role="admin"),
    Form("new organisation", "/organisations", {"name": "Library {n}", "kind": "council", "area": "Walker"},
         role="broker", text=("name", "area"), shown_at="/organisations"),
    Form("add a representative", "/organisations/{org}", {"email": "{other_email}"}, role="broker"),
    Form("settings", "/admin/settings", {"name": "Bad Input Bank", "max_exchange_hours": "8",
                                         "max_backdate_days": "30", "auto_confirm_days": "7",
                                         "match_radius_km": "5"}, role="admin",
         text=("name",), shown_at="/admin/settings"),
    Form("add a category", "/categories", {"action": "create", "name": "Dogs {n}", "parent_id": ""},
         role="broker", text=("name",), shown_at="/categories"),
    Form("rename a category", "/categories", {"action": "rename", "category_id": "{category}", "name": "Pets {n}"},
         role="broker", text=("name",), shown_at="/categories"),
    Form("log hours", "/exchanges/new", {"other_id": "{other}", "direction": "gave", "hours": "1", "minutes": "30",
                                         "date": "{today}", "description": "Weeding {n}",
                                         "category_id": "{category}"}, role="member",
         text=("description",), shown_at="/exchanges/"),
    Form("donate to the pot", "/exchanges/pot/donate", {"hours": "0", "minutes": "30", "note": "For the pot"},
         role="member"),
    Form("broker records an exchange", "/exchanges/broker",
         {"task": "record", "provider_id": "{member}", "recipient_id": "{other}", "hours": "1", "minutes": "0",
          "date": "{today}", "description": "Lift {n}", "category_id": "{category}"}, role="broker",
         text=("description",)),
    Form("broker grants from the pot", "/exchanges/broker",
         {"task": "grant", "member_id": "{other}", "hours": "0", "minutes": "30", "reason": "Illness"}, role="broker"),
    Form("group activity (pasted CSV)", "/exchanges/broker",
         {"task": "activity", "organisation_id": "{org}", "title": "Litter pick {n}", "date": "{today}",
          "category_id": "{category}", "csv": CSV, "step": "record"}, role="broker", text=("title",)),
    Form("organisation credits a volunteer", "/exchanges/organisations/{org}",
         {"task": "credit", "member_id": "{other}", "hours": "1", "minutes": "0", "date": "{today}",
          "description": "Library help {n}"}, role="member", text=("description",)),
    Form("new offer", "/listings/new/offer", {"title": "Gardening {n}", "category_id": "{category}",
                                              "description": "Weeding", "area": "Byker", "slot3": "on"},
         role="member", text=("title", "description", "area"), shown_at="/listings"),
    Form("new request", "/listings/new/request", {"title": "Help {n}", "category_id": "{category}",
                                                  "description": "Shelves", "area": "Byker", "urgency": "normal",
                                                  "estimated_minutes": "60"}, role="member",
         text=("title", "description", "area")),
    Form("close a reporting period", "/reports/close", {"timebank": "badbank", "from": "2025-01-01",
                                                        "to": "2025-03-31"}, role="admin"),
]


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """These tests log in hundreds of times; they are about input handling, not hash strength."""
    from argon2 import PasswordHasher

    from timebank.community import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def scene(session):
    """A small time bank with one person per role, an applicant, an organisation (the member represents it)."""
    import datetime as dt

    from sqlalchemy import select

    from timebank.community.models import Category
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user

    timebank = create_timebank(session, slug="badbank", name="Bad Input Bank")
    users = {}
    for role in ("member", "other", "broker", "admin"):
        user = create_user(session, email=f"{role}@bad.test", display_name=f"{role.title()} Person",
                           password="pw-123456789")
        membership = add_membership(session, user=user, timebank=timebank,
                                    role="member" if role == "other" else role)
        users[role] = (user, membership)
    applicant = create_user(session, email="applicant@bad.test", display_name="Applicant", password="pw-123456789")
    applicant_m = add_membership(session, user=applicant, timebank=timebank, status="pending")
    organisation = create_organisation(session, timebank=timebank, name="Bad Input Library", kind="council")
    organisation.representatives.append(users["member"][0])
    category = session.scalar(select(Category).where(Category.timebank_id == timebank.id,
                                                     Category.name == "Gardening"))
    from timebank.exchanges.service import donate_to_pot

    donate_to_pot(session, user=users["member"][0], timebank_id=timebank.id, minutes=240)  # so grants can work
    session.commit()
    ids = {"member": users["member"][1].id, "other": users["other"][1].id, "applicant": applicant_m.id,
           "org": organisation.id, "category": category.id, "today": dt.date.today().isoformat(),
           "other_email": "other@bad.test", "member_email": "member@bad.test"}
    return {"users": {role: u for role, (u, _m) in users.items()}, "ids": ids, "n": [0]}


def _fill(value: str, scene) -> str:
    scene["n"][0] += 1
    return value.format(n=scene["n"][0], **scene["ids"]) if isinstance(value, str) else value


def _data(form, scene, **changes):
    """The form's valid values with `changes` put in as they are (garbage is never formatted)."""
    return {**{k: _fill(v, scene) for k, v in form.fields.items()}, **changes}


def _log_in_as(client, scene, role):
    if role:
        client.post("/logout")
        response = client.post("/login", data={"email": scene["users"][role].email, "password": "pw-123456789"})
        assert response.status_code == 302


def _row_counts(session) -> tuple[int, ...]:
    """Every table's row count, in one statement (these tests count before and after thousands of posts)."""
    from sqlalchemy import func, select

    from timebank.extensions import db

    session.expire_all()
    counts = [select(func.count()).select_from(t).scalar_subquery() for t in db.metadata.sorted_tables]
    return tuple(session.execute(select(*counts)).one())


def _assert_clear_refusal(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text


def _post_and_check(client, session, url, data, **kwargs):
    """Post; a refusal (4xx) must leave every table's row count as it was."""
    before = _row_counts(session)
    response = client.post(url, data=data, **kwargs)
    _assert_clear_refusal(response)
    if response.status_code >= 400:
        assert _row_counts(session) == before, (url, response.status_code, "a refused request wrote rows")
    return response


def _url(form, scene):
    return form.url.format(**scene["ids"])


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_the_valid_form_works(client, session, scene, form):
    """The baseline for the garbage tests below: the form as given is accepted (so refusals are about garbage)."""
    _log_in_as(client, scene, form.role)
    response = client.post(_url(form, scene), data=_data(form, scene))
    assert response.status_code in (200, 302, 303, 401), (form.name, response.status_code,
                                                          response.get_data(as_text=True)[:300])
    assert 'class="flash flash-error"' not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_oversized_fields_are_refused_or_cut_never_500(client, session, scene, form):
    _log_in_as(client, scene, form.role)
    for name in form.fields:
        _post_and_check(client, session, _url(form, scene), _data(form, scene, **{name: "x" * 200_000}))


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_wrong_types_and_repeated_fields_never_500(client, session, scene, form):
    _log_in_as(client, scene, form.role)
    url = _url(form, scene)
    for name in form.fields:
        for bad in (["a", "b"], "", "-1", "1e309", "\x00", "{}", "9" * 30, "٣"):
            _post_and_check(client, session, url, _data(form, scene, **{name: bad}))
    _post_and_check(client, session, url, {})  # every field missing
    _post_and_check(client, session, url, _data(form, scene), query_string={"timebank": "elsewhere"})
    _assert_clear_refusal(client.post(url, json=_data(form, scene)))  # JSON where a form is expected


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_wrong_encoding_never_500(client, session, scene, form):
    _log_in_as(client, scene, form.role)
    url = _url(form, scene)
    body = "&".join(f"{k}={v}" for k, v in _data(form, scene).items()).encode() + b"&note=caf\xe9\xff\xfe"
    _post_and_check(client, session, url, body, content_type="application/x-www-form-urlencoded; charset=utf-8")
    latin1 = {k: "Zoë café".encode("latin-1") for k in form.fields}
    _post_and_check(client, session, url, b"&".join(k.encode() + b"=" + v for k, v in latin1.items()),
                    content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("form", [f for f in FORMS if f.echoed], ids=lambda f: f.name)
def test_html_in_echoed_fields_is_shown_escaped(client, session, scene, form):
    _log_in_as(client, scene, form.role)
    for name in form.echoed:
        response = client.post(_url(form, scene), data=_data(form, scene, **{name: SCRIPT}))
        _assert_clear_refusal(response)
        text = response.get_data(as_text=True)
        assert "<script>alert" not in text and "onerror=alert(1)>" not in text
        assert any(marker in text for marker in ESCAPED_MARKERS), "the value should be shown back, escaped"


def _assert_escaped(text, where, *, must_appear):
    assert "<script>alert" not in text and "onerror=alert(1)>" not in text, f"raw HTML on {where}"
    if must_appear:
        # Lower-cased: a field may be stored upper-cased (postcode district) or cut short.
        assert any(marker.lower() in text.lower() for marker in ESCAPED_MARKERS), \
            f"{where}: the stored text should appear, escaped"


@pytest.mark.parametrize("form", [f for f in FORMS if f.text], ids=lambda f: f.name)
def test_html_in_every_text_field_is_stored_and_shown_escaped(client, session, scene, form):
    """HTML and script typed into each free-text field: the answer and the page that shows it escape it."""
    for name in form.text:
        _log_in_as(client, scene, form.role)
        value = _fill(SCRIPT.replace("(", "(").replace("{", "{{").replace("}", "}}") + " {n}", scene)
        response = client.post(_url(form, scene), data=_data(form, scene, **{name: value}), follow_redirects=True)
        _assert_clear_refusal(response)
        _assert_escaped(response.get_data(as_text=True), f"{form.name} answer", must_appear=False)
        if form.shown_at and response.status_code == 200:
            _log_in_as(client, scene, form.shown_by or form.role)
            page = client.get(form.shown_at.format(**scene["ids"]))
            assert page.status_code == 200
            _assert_escaped(page.get_data(as_text=True), f"{form.shown_at} after {form.name}.{name}",
                            must_appear=True)


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
