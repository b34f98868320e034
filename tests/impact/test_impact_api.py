"""GET /api/v1/reports/impact and POST /api/v1/reports/closed-periods."""
import pytest

from tests.impact.fixed_community import build
from timebank.community.service import add_membership, create_user

Q1 = {"from": "2025-01-01", "to": "2025-03-31"}


@pytest.fixture
def community(session):
    # Committed (to a savepoint of the test transaction) so an error response's rollback keeps it.
    c = build(session)
    session.commit()
    return c


def person(session, community, role, name):
    user = create_user(session, email=f"{name}@example.test", display_name=name, password="pw-123456789")
    add_membership(session, user=user, timebank=community["timebank"], role=role)
    session.commit()
    return user


@pytest.mark.parametrize("role,status", [("commissioner", 200), ("broker", 200), ("admin", 200), ("member", 403)])
def test_who_may_read_the_report(client, session, community, api_headers, role, status):
    user = person(session, community, role, f"{role}-x")
    response = client.get("/api/v1/reports/impact", query_string={"timebank": "fixed", **Q1},
                          headers=api_headers(user))
    assert response.status_code == status, response.get_json()
    if status == 200:
        body = response.get_json()
        assert body["headline"]["minutes_delivered"] == 780
        assert body["headline"]["hours_delivered"] == 13.0
        assert body["breakdowns"]["ward"]["rows"][0]["people_display"] == "fewer than 5"
    else:
        assert response.get_json()["code"] == "reports_forbidden"


def test_commissioner_without_a_bank_named_gets_all_granted(client, session, community, api_headers):
    other = build(session, slug="other")
    user = person(session, community, "commissioner", "comm-all")
    add_membership(session, user=user, timebank=other["timebank"], role="commissioner")
    body = client.get("/api/v1/reports/impact", query_string=Q1, headers=api_headers(user)).get_json()
    assert body["headline"]["minutes_delivered"] == 1560
    assert [tb["slug"] for tb in body["timebanks"]] == ["fixed", "other"]


def test_bad_input_and_unknown_bank(client, session, community, api_headers):
    user = person(session, community, "admin", "adm")
    headers = api_headers(user)
    session.commit()
    assert client.get("/api/v1/reports/impact", query_string={"from": "2025-03-01", "to": "2025-01-01"},
                      headers=headers).status_code == 422
    assert client.get("/api/v1/reports/impact", query_string={"group_by": "week"}, headers=headers).status_code == 422
    assert client.get("/api/v1/reports/impact", query_string={"from": "yesterday"}, headers=headers).status_code == 422
    assert client.get("/api/v1/reports/impact", query_string={"timebank": "nope"}, headers=headers).status_code == 404
    assert client.get("/api/v1/reports/impact").status_code == 401


def test_admin_closes_a_period(client, session, community, api_headers):
    admin = person(session, community, "admin", "adm2")
    broker = person(session, community, "broker", "brk2")
    body = {"timebank": "fixed", **Q1}
    broker_headers = api_headers(broker, **{"Idempotency-Key": "b1"})
    admin_headers = api_headers(admin, **{"Idempotency-Key": "k1"})
    session.commit()
    refused = client.post("/api/v1/reports/closed-periods", json=body,
                          headers=broker_headers)
    assert refused.status_code == 403
    response = client.post("/api/v1/reports/closed-periods", json=body,
                           headers=admin_headers)
    assert response.status_code == 201, response.get_json()
    content_hash = response.get_json()["content_hash"]
    again = client.post("/api/v1/reports/closed-periods", json=body,
                        headers=api_headers(admin, **{"Idempotency-Key": "k2"}))
    assert again.status_code == 409
    report = client.get("/api/v1/reports/impact", query_string={"timebank": "fixed", **Q1},
                        headers=api_headers(admin)).get_json()
    assert report["closed"]["content_hash"] == content_hash


def test_openapi_documents_the_report_endpoints(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/reports/impact" in spec["paths"]
    assert "post" in spec["paths"]["/api/v1/reports/closed-periods"]
