import datetime as dt
import uuid

from timebank.exchanges.notifications import unread_count


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def body(provider, recipient, minutes=90, **extra):
    return {"provider_id": provider.id, "recipient_id": recipient.id, "minutes": minutes,
            "date": dt.date.today().isoformat(), "description": "Gardening", **extra}


def test_log_confirm_flow_over_api(client, make_person, api_headers, balance, session):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    headers = api_headers(alice_u, **{"Idempotency-Key": "log-1"})
    created = client.post("/api/v1/exchanges", json=body(alice, bob), headers=headers)
    assert created.status_code == 201, created.get_json()
    data = created.get_json()
    assert data["status"] == "pending" and data["provider_id"] == alice.id and data["transfer_id"] is None
    again = client.post("/api/v1/exchanges", json=body(alice, bob), headers=headers)
    assert again.status_code == 201 and again.get_json()["id"] == data["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"

    mine = client.get("/api/v1/exchanges", headers=api_headers(bob_u)).get_json()
    assert [e["id"] for e in mine] == [data["id"]]
    assert client.get(f"/api/v1/exchanges/{data['id']}", headers=api_headers(bob_u)).status_code == 200
    outsider_u, _ = make_person()
    assert client.get(f"/api/v1/exchanges/{data['id']}", headers=api_headers(outsider_u)).status_code == 403
    assert client.get("/api/v1/exchanges/999999", headers=api_headers(bob_u)).status_code == 404

    own = client.post(f"/api/v1/exchanges/{data['id']}/confirm", json={}, headers=api_headers(alice_u, **key()))
    assert own.status_code == 403 and own.content_type == "application/problem+json"
    confirmed = client.post(f"/api/v1/exchanges/{data['id']}/confirm", json={}, headers=api_headers(bob_u, **key()))
    assert confirmed.status_code == 200 and confirmed.get_json()["status"] == "confirmed"
    assert (balance(alice), balance(bob)) == (90, -90)
    again = client.post(f"/api/v1/exchanges/{data['id']}/confirm", json={}, headers=api_headers(bob_u, **key()))
    assert again.status_code == 409 and again.get_json()["code"] == "exchange_not_pending"
    assert (balance(alice), balance(bob)) == (90, -90)


def test_refusals_are_problems_and_change_nothing(client, make_person, api_headers, balance):
    alice_u, alice = make_person()
    _, bob = make_person()
    h = lambda: api_headers(alice_u, **key())  # noqa: E731
    cases = [
        (body(alice, alice), 422, "self_exchange"),
        (body(alice, bob, minutes=25 * 60), 422, "exchange_too_long"),
        (body(alice, bob, date=(dt.date.today() + dt.timedelta(days=2)).isoformat()), 422, "date_in_future"),
        (body(alice, bob, minutes="lots"), 422, "validation_error"),
        ({"minutes": 60, "date": dt.date.today().isoformat(), "recipient_id": bob.id}, 422, "validation_error"),
        (body(alice, bob, recipient_id=999999), 404, "unknown_member"),
    ]
    for payload, status, code in cases:
        response = client.post("/api/v1/exchanges", json=payload, headers=h())
        assert response.status_code == status, (payload, response.get_json())
        assert response.get_json()["code"] == code
    assert client.post("/api/v1/exchanges", json=body(alice, bob)).status_code == 401
    missing_key = client.post("/api/v1/exchanges", json=body(alice, bob), headers=api_headers(alice_u))
    assert missing_key.status_code == 422
    assert (balance(alice), balance(bob)) == (0, 0)
    assert client.get("/api/v1/exchanges", headers=api_headers(alice_u)).get_json() == []


def test_dispute_and_resolve_over_api(client, make_person, api_headers, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    broker_u, _ = make_person("broker")
    ex = client.post("/api/v1/exchanges", json=body(alice, bob), headers=api_headers(alice_u, **key())).get_json()
    disputed = client.post(f"/api/v1/exchanges/{ex['id']}/dispute", json={"reason": "Only an hour"},
                           headers=api_headers(bob_u, **key()))
    assert disputed.get_json()["status"] == "disputed"
    denied = client.post(f"/api/v1/exchanges/{ex['id']}/resolve", json={"action": "confirm"},
                         headers=api_headers(alice_u, **key()))
    assert denied.status_code == 403
    replaced = client.post(f"/api/v1/exchanges/{ex['id']}/resolve",
                           json={"action": "replace", "reason": "agreed", "replacement": {"minutes": 60}},
                           headers=api_headers(broker_u, **key()))
    assert replaced.status_code == 200, replaced.get_json()
    assert replaced.get_json()["replaces_exchange_id"] == ex["id"]
    assert (balance(alice), balance(bob)) == (60, -60)


def test_cancel_over_api(client, make_person, api_headers, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    ex = client.post("/api/v1/exchanges", json=body(alice, bob), headers=api_headers(alice_u, **key())).get_json()
    assert client.post(f"/api/v1/exchanges/{ex['id']}/cancel", json={},
                       headers=api_headers(bob_u, **key())).status_code == 403
    done = client.post(f"/api/v1/exchanges/{ex['id']}/cancel", json={}, headers=api_headers(alice_u, **key()))
    assert done.get_json()["status"] == "cancelled" and (balance(alice), balance(bob)) == (0, 0)


def test_broker_records_over_api(client, make_person, api_headers, balance):
    _, alice = make_person()
    _, bob = make_person()
    broker_u, _ = make_person("broker")
    r = client.post("/api/v1/exchanges", json=body(alice, bob), headers=api_headers(broker_u, **key()))
    assert r.status_code == 201 and r.get_json()["status"] == "confirmed"
    assert (balance(alice), balance(bob)) == (90, -90)


def test_activity_with_csv_preview(client, make_person, api_headers, balance, organisation, rep):
    rep_u, _ = rep
    a_u, a = make_person()
    b_u, b = make_person()
    bad_csv = f"email,hours\n{a_u.email},3\nghost@example.test,2\n{b_u.email},x\n"
    preview = client.post("/api/v1/activities/preview", json={"organisation_id": organisation.id, "csv": bad_csv},
                          headers=api_headers(rep_u))
    assert preview.status_code == 200
    rows = preview.get_json()["rows"]
    assert preview.get_json()["ok"] is False
    assert [r["error"] is None for r in rows] == [True, False, False]
    refused = client.post("/api/v1/activities", json={"organisation_id": organisation.id, "title": "Litter pick",
                                                      "date": dt.date.today().isoformat(), "csv": bad_csv},
                          headers=api_headers(rep_u, **key()))
    assert refused.status_code == 422 and refused.get_json()["code"] == "csv_invalid"
    assert (balance(a), balance(b), balance(organisation)) == (0, 0, 0)
    ok = client.post("/api/v1/activities", json={
        "organisation_id": organisation.id, "title": "Litter pick", "date": dt.date.today().isoformat(),
        "participants": [{"member_id": a.id, "minutes": 180}, {"member_id": b.id, "minutes": 120}],
        "tags": {"outcome_area": "local_environment"}}, headers=api_headers(rep_u, **key()))
    assert ok.status_code == 201, ok.get_json()
    assert sorted(p["minutes"] for p in ok.get_json()["participants"]) == [120, 180]
    assert (balance(a), balance(b), balance(organisation)) == (180, 120, -300)
    member_try = client.post("/api/v1/activities", json={
        "organisation_id": organisation.id, "title": "Mine", "date": dt.date.today().isoformat(),
        "participants": [{"member_id": a.id, "minutes": 60}]}, headers=api_headers(a_u, **key()))
    assert member_try.status_code == 403 and balance(a) == 180


def test_pot_over_api(client, make_person, api_headers, balance, session):
    giver_u, giver = make_person()
    _, needy = make_person()
    broker_u, _ = make_person("broker")
    d = client.post("/api/v1/pot/donations", json={"minutes": 120}, headers=api_headers(giver_u, **key()))
    assert d.status_code == 201 and d.get_json()["minutes"] == 120
    no_reason = client.post("/api/v1/pot/grants", json={"member_id": needy.id, "minutes": 60},
                            headers=api_headers(broker_u, **key()))
    assert no_reason.status_code == 422
    g = client.post("/api/v1/pot/grants", json={"member_id": needy.id, "minutes": 60, "reason": "Recovering"},
                    headers=api_headers(broker_u, **key()))
    assert g.status_code == 201
    assert client.post("/api/v1/pot/grants", json={"member_id": needy.id, "minutes": 60, "reason": "x"},
                       headers=api_headers(giver_u, **key())).status_code == 403
    pot = client.get("/api/v1/pot", headers=api_headers(broker_u)).get_json()
    assert pot["balance_minutes"] == 60 and [f["kind"] for f in pot["flows"]] == ["grant", "donation"]
    assert (balance(giver), balance(needy)) == (-120, 60)
    assert unread_count(session, needy.user_id) == 1
