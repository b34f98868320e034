"""The authorisation matrix enforced on the API and on the pages: every refusal is 403 or 404, never 500."""
from __future__ import annotations

import pytest

ROLES = ["member", "org_rep", "broker", "commissioner", "admin", "outsider"]
BROKERS = {"broker": 200, "admin": 200}


def expect(allowed: dict[str, int]) -> dict[str, int]:
    """Allowed roles get their status; people of another time bank get 404; everyone else 403."""
    return {role: allowed.get(role, 404 if role == "outsider" else 403) for role in ROLES}


API_CASES = [
    ("GET", "/api/v1/members?timebank=testbank", None, expect(BROKERS)),
    ("GET", "/api/v1/members/{other}", None,
     expect({"member": 200, "org_rep": 200, "broker": 200, "admin": 200})),
    ("GET", "/api/v1/applications?timebank=testbank", None, expect(BROKERS)),
    ("GET", "/api/v1/organisations/{org}", None,
     expect({"member": 200, "org_rep": 200, "broker": 200, "admin": 200})),
    ("POST", "/api/v1/members/{other}/suspend", {"reason": "test"}, expect(BROKERS)),
    ("PUT", "/api/v1/members/{other}/role", {"role": "broker"}, expect({"admin": 200})),
    ("POST", "/api/v1/members/{other}/erase", {}, expect({"admin": 200})),
    ("POST", "/api/v1/members", {"email": "new@example.test", "display_name": "New", "timebank": "testbank"},
     expect({"broker": 201, "admin": 201})),
    ("POST", "/api/v1/organisations", {"name": "New Org", "timebank": "testbank"}, expect({"broker": 201, "admin": 201})),
    ("GET", "/api/v1/categories?timebank=testbank", None,
     expect({"member": 200, "org_rep": 200, "broker": 200, "commissioner": 200, "admin": 200})),
    ("POST", "/api/v1/categories", {"name": "Dog walking", "timebank": "testbank"},
     expect({"broker": 201, "admin": 201})),
    ("PATCH", "/api/v1/categories/{category}", {"retired": True}, expect(BROKERS)),
]

PAGE_CASES = [
    ("/members/{other}", expect({"member": 200, "org_rep": 200, "broker": 200, "admin": 200})),
    ("/onboarding?timebank=testbank", expect(BROKERS)),
    ("/members?timebank=testbank", expect(BROKERS)),
    ("/admin/settings?timebank=testbank", expect({"admin": 200})),
    ("/admin/audit?timebank=testbank", expect({"admin": 200})),
    ("/categories?timebank=testbank", expect(BROKERS)),
    ("/organisations/{org}", expect({"member": 200, "org_rep": 200, "broker": 200, "admin": 200})),
    ("/profile", {role: 200 for role in ROLES}),
]


def _url(template, world):
    from sqlalchemy import select

    from timebank.community.models import Category
    from timebank.extensions import db

    category = db.session.scalar(select(Category).where(Category.timebank_id == world.timebank.id)
                                 .order_by(Category.id))
    return template.format(other=world.other_m.id, org=world.organisation.id, category=category.id)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,url,body,expected", API_CASES,
                         ids=[f"{m} {u}" for m, u, _, _ in API_CASES])
def test_api_matrix(client, world, api_headers, role, method, url, body, expected):
    headers = api_headers(world.users[role], **({"Idempotency-Key": f"k-{role}"} if method != "GET" else {}))
    response = client.open(_url(url, world), method=method, headers=headers, json=body)
    assert response.status_code == expected[role], response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url,expected", PAGE_CASES, ids=[u for u, _ in PAGE_CASES])
def test_page_matrix(client, world, login, role, url, expected):
    login(world.users[role])
    response = client.get(_url(url, world))
    assert response.status_code == expected[role]


@pytest.mark.parametrize("role", ROLES)
def test_page_writes_follow_the_same_rules(client, world, login, session, role):
    login(world.users[role])
    response = client.post(f"/members/{world.other_m.id}/suspend", data={"reason": "x"})
    expected = {"broker": 302, "admin": 302}.get(role, 404 if role == "outsider" else 403)
    assert response.status_code == expected
    session.refresh(world.other_m)
    assert world.other_m.status == ("suspended" if expected == 302 else "active")


def test_members_see_a_public_profile_without_contact_details(client, world, api_headers):
    body = client.get(f"/api/v1/members/{world.other_m.id}", headers=api_headers(world.member)).get_json()
    assert body["display_name"] == world.other.display_name
    assert "email" not in body and "risk_note" not in body
    full = client.get(f"/api/v1/members/{world.other_m.id}", headers=api_headers(world.broker)).get_json()
    assert full["email"] == world.other.email


def test_anonymous_pages_redirect_to_login(client, world):
    for url in ("/profile", "/onboarding", "/members", "/admin/settings", "/admin/audit", "/categories"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_unknown_member_is_404_not_500(client, world, api_headers, login):
    assert client.get("/api/v1/members/999999", headers=api_headers(world.broker)).status_code == 404
    login(world.broker)
    assert client.get("/members/999999").status_code == 404
