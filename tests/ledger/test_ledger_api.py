import datetime as dt

import pytest

from timebank.ledger.service import post_transfer, system_account

D = "2026-11-01"


@pytest.fixture
def people(session, timebank, make_person):
    broker, _ = make_person("broker")
    m1, mem1 = make_person("member")
    m2, mem2 = make_person("member")
    commissioner, _ = make_person("commissioner")
    issuance = system_account(session, timebank.id, "issuance")
    session.commit()  # keep the people when a refused request rolls back
    return dict(broker=broker, m1=m1, m2=m2, a1=mem1.account_id, a2=mem2.account_id, commissioner=commissioner,
                issuance=issuance.id)


@pytest.fixture
def api_headers(api_headers, session):
    def make(user):
        h = api_headers(user)
        session.commit()
        return h
    return make


def body(people, minutes=60, key="t-1", **kw):
    return {"idempotency_key": key, "memo": "Gardening", "effective_date": D, "kind": "exchange",
            "postings": [{"account_id": people["a1"], "minutes": -minutes},
                         {"account_id": people["a2"], "minutes": minutes}], **kw}


def test_broker_posts_reads_and_reverses(client, people, api_headers):
    h = api_headers(people["broker"])
    r = client.post("/api/v1/transfers", json=body(people), headers=h)
    assert r.status_code == 201, r.get_json()
    tid = r.get_json()["id"]
    assert client.get(f"/api/v1/accounts/{people['a2']}", headers=h).get_json()["balance_minutes"] == 60
    replay = client.post("/api/v1/transfers", json=body(people), headers=h)
    assert replay.status_code == 201 and replay.get_json()["id"] == tid
    assert client.get(f"/api/v1/accounts/{people['a2']}", headers=h).get_json()["balance_minutes"] == 60
    reused = client.post("/api/v1/transfers", json=body(people, minutes=61), headers=h)
    assert reused.status_code == 409 and reused.get_json()["code"] == "idempotency_key_reused"
    got = client.get(f"/api/v1/transfers/{tid}", headers=h).get_json()
    assert sorted(p["minutes"] for p in got["postings"]) == [-60, 60]
    rev = client.post(f"/api/v1/transfers/{tid}/reversal", json={"idempotency_key": "r-1", "reason": "typo"},
                      headers=h)
    assert rev.status_code == 201 and rev.get_json()["reverses_transfer_id"] == tid
    again = client.post(f"/api/v1/transfers/{tid}/reversal", json={"idempotency_key": "r-2", "reason": "x"},
                        headers=h)
    assert again.status_code == 409 and again.get_json()["code"] == "already_reversed"
    acc = client.get(f"/api/v1/accounts/{people['a2']}", headers=h).get_json()
    assert acc["balance_minutes"] == 0 and acc["floor_minutes"] == -600 and acc["status"] == "open"
    assert client.get(f"/api/v1/transfers/{tid}", headers=h).get_json()["reversed_by_transfer_id"] == rev.get_json()["id"]


@pytest.mark.parametrize("change, code, status", [
    (dict(minutes=601), "insufficient_balance", 422),
    (dict(postings=[{"account_id": 0, "minutes": 1}, {"account_id": 0, "minutes": 1}]), "account_not_found", 404),
])
def test_refusals_are_problems_and_write_nothing(client, people, api_headers, change, code, status):
    h = api_headers(people["broker"])
    b = body(people, minutes=change.pop("minutes", 60), **change)
    r = client.post("/api/v1/transfers", json=b, headers=h)
    assert r.status_code == status and r.get_json()["code"] == code
    assert r.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/accounts/{people['a1']}", headers=h).get_json()["balance_minutes"] == 0


def test_insufficient_balance_message_names_account(client, people, api_headers):
    r = client.post("/api/v1/transfers", json=body(people, minutes=660), headers=api_headers(people["broker"]))
    assert "below its limit of -10 hours" in r.get_json()["detail"]


def test_unbalanced_and_invalid_fields(client, people, api_headers):
    h = api_headers(people["broker"])
    b = body(people)
    b["postings"][1]["minutes"] = 59
    r = client.post("/api/v1/transfers", json=b, headers=h)
    assert r.status_code == 422 and r.get_json()["code"] == "unbalanced_transfer"
    b = body(people, key="t-2")
    b["postings"][0]["minutes"] = 1.5
    b["effective_date"] = "yesterday"
    r = client.post("/api/v1/transfers", json=b, headers=h)
    assert r.status_code == 422 and r.get_json()["code"] == "validation_error"
    assert "effective_date" in r.get_json()["errors"]


def test_permissions_matrix(client, people, api_headers, session):
    t = post_transfer(session, timebank_id=session.get(__import__("timebank.ledger.models", fromlist=["Account"])
                                                         .Account, people["a1"]).timebank_id,
                      kind="exchange", postings=[(people["a1"], -30), (people["a2"], 30)],
                      effective_date=dt.date(2026, 11, 1))
    session.commit()
    m1 = api_headers(people["m1"])
    assert client.post("/api/v1/transfers", json=body(people), headers=m1).status_code == 403
    assert client.post(f"/api/v1/transfers/{t.id}/reversal", json={"idempotency_key": "x", "reason": "r"},
                       headers=m1).status_code == 403
    assert client.get(f"/api/v1/accounts/{people['a1']}", headers=m1).status_code == 200
    assert client.get(f"/api/v1/accounts/{people['a2']}", headers=m1).status_code == 403
    assert client.get(f"/api/v1/accounts/{people['a1']}/statement", headers=m1).status_code == 200
    assert client.get(f"/api/v1/accounts/{people['a2']}/statement", headers=m1).status_code == 403
    assert client.get(f"/api/v1/transfers/{t.id}", headers=m1).status_code == 200
    com = api_headers(people["commissioner"])
    assert client.get(f"/api/v1/accounts/{people['a1']}", headers=com).status_code == 403
    assert client.get(f"/api/v1/transfers/{t.id}", headers=com).status_code == 403
    assert client.post("/api/v1/transfers", json=body(people)).status_code == 401
    assert client.get("/api/v1/accounts/999999", headers=m1).status_code == 404
    assert client.get("/api/v1/transfers/999999", headers=m1).status_code == 404


def test_statement_json_and_csv(client, people, api_headers):
    h = api_headers(people["broker"])
    client.post("/api/v1/transfers", json=body(people, memo="=cmd"), headers=h)
    r = client.get(f"/api/v1/accounts/{people['a2']}/statement?from=2026-10-01&to=2026-11-30", headers=h)
    st = r.get_json()
    assert (st["opening_minutes"], st["closing_minutes"], st["received_minutes"]) == (0, 60, 60)
    assert st["lines"][0]["counterparty"].startswith("Member")
    csv_r = client.get(f"/api/v1/accounts/{people['a2']}/statement?from=2026-10-01&to=2026-11-30&format=csv",
                       headers=h)
    assert csv_r.mimetype == "text/csv"
    text = csv_r.get_data(as_text=True)
    assert "'=cmd" in text and text.strip().splitlines()[-1].endswith(",60")
    accept = client.get(f"/api/v1/accounts/{people['a2']}/statement?from=2026-10-01&to=2026-11-30",
                        headers={**h, "Accept": "text/csv"})
    assert accept.mimetype == "text/csv"
    bad = client.get(f"/api/v1/accounts/{people['a2']}/statement?from=2026-12-01&to=2026-11-30", headers=h)
    assert bad.status_code == 422
