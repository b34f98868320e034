"""The matching API, end to end: post, suggest, plan, send, accept, complete; and who may do what."""
import uuid

from tests.matching.conftest import LAT, LON


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_request_to_done_through_the_api(client, session, timebank, volunteer, requester, make_person, category,
                                         api_headers):
    broker, _ = make_person("broker")
    asker_user, asker = requester()
    helper_user, helper = volunteer(skills=["Gardening"])
    gardening = category("Gardening").id

    r = client.post("/api/v1/requests", json={"title": "Mow my lawn", "category_id": gardening,
                                              "estimated_minutes": 90},
                    headers=api_headers(asker_user, **key()))
    assert r.status_code == 201, r.json
    request_id = r.json["id"]
    assert r.json["member_id"] == asker.id

    listed = client.get("/api/v1/requests?status=open", headers=api_headers(helper_user)).json
    assert [(x["id"], x["member_id"]) for x in listed] == [(request_id, asker.id)]

    # Members may not see suggestions; brokers may.
    assert client.get(f"/api/v1/requests/{request_id}/suggestions",
                      headers=api_headers(helper_user)).status_code == 403
    s = client.get(f"/api/v1/requests/{request_id}/suggestions?limit=5", headers=api_headers(broker)).json
    assert [i["member_id"] for i in s["items"]] == [helper.id]
    assert "offers Gardening" in s["items"][0]["reasons"] and s["weights"]["category"] > 0

    plan = client.post("/api/v1/match-plans", json={"request_ids": [request_id]},
                       headers=api_headers(broker, **key()))
    assert plan.status_code == 201, plan.json
    assert [(p["request_id"], p["member_id"]) for p in plan.json["proposals"]] == [(request_id, helper.id)]
    assert plan.json["capacity"]["volunteers_used"] == 1
    plan_id = plan.json["id"]
    assert client.get(f"/api/v1/match-plans/{plan_id}", headers=api_headers(broker)).json["status"] == "draft"
    sent = client.post(f"/api/v1/match-plans/{plan_id}/send", json={}, headers=api_headers(broker, **key()))
    assert sent.json["status"] == "sent"
    again = client.post(f"/api/v1/match-plans/{plan_id}/send", json={}, headers=api_headers(broker, **key()))
    assert again.status_code == 409 and again.json["code"] == "plan_already_sent"

    [match] = client.get("/api/v1/matches", headers=api_headers(helper_user)).json
    assert match["status"] == "proposed"
    # Someone else cannot answer for the volunteer.
    other_user, _ = volunteer(skills=[])
    assert client.post(f"/api/v1/matches/{match['id']}/accept", json={},
                       headers=api_headers(other_user, **key())).status_code == 403
    accepted = client.post(f"/api/v1/matches/{match['id']}/accept", json={}, headers=api_headers(helper_user, **key()))
    assert accepted.json["status"] == "accepted"
    assert client.post(f"/api/v1/matches/{match['id']}/decline", json={},
                       headers=api_headers(helper_user, **key())).status_code == 409
    done = client.post(f"/api/v1/matches/{match['id']}/complete", json={}, headers=api_headers(asker_user, **key()))
    assert done.json["status"] == "done" and done.json["completed_at"]


def test_offers_and_opportunities(client, session, timebank, volunteer, make_person, category, api_headers):
    from timebank.community.service import create_organisation

    member_user, member = volunteer(skills=[])
    broker, _ = make_person("broker")
    org = create_organisation(session, timebank=timebank, name="Friends of the Park")
    r = client.post("/api/v1/offers", json={"title": "Hedge trimming", "category_id": category("Gardening").id},
                    headers=api_headers(member_user, **key()))
    assert r.status_code == 201 and r.json["member_id"] == member.id
    found = client.get("/api/v1/offers?q=hedge", headers=api_headers(broker)).json
    assert [o["title"] for o in found] == ["Hedge trimming"]
    body = {"title": "Bulb planting day", "category_id": category("Gardening").id, "organisation_id": org.id,
            "volunteers_needed": 6, "safety_check_level": "basic", "latitude": LAT, "longitude": LON}
    assert client.post("/api/v1/opportunities", json=body,
                       headers=api_headers(member_user, **key())).status_code == 403
    r = client.post("/api/v1/opportunities", json=body, headers=api_headers(broker, **key()))
    assert r.status_code == 201 and r.json["volunteers_needed"] == 6 and r.json["organisation_id"] == org.id
    opps = client.get("/api/v1/opportunities", headers=api_headers(member_user)).json
    assert [o["title"] for o in opps] == ["Bulb planting day"]


def test_errors_are_problems_not_500s(client, session, volunteer, make_person, category, api_headers):
    user, _ = volunteer(skills=[])
    broker, _ = make_person("broker")
    gardening = category("Gardening").id
    session.commit()  # an error answer rolls its request back; keep the people (the test still rolls back)
    assert client.get("/api/v1/requests/999999/suggestions", headers=api_headers(broker)).status_code == 404
    assert client.get("/api/v1/match-plans/999999", headers=api_headers(broker)).status_code == 404
    assert client.post("/api/v1/matches/999999/accept", json={}, headers=api_headers(user, **key())).status_code == 404
    bad = client.post("/api/v1/requests", json={"title": "", "category_id": 999999},
                      headers=api_headers(user, **key()))
    assert bad.status_code == 422 and bad.json["code"] == "validation_error"
    no_key = client.post("/api/v1/offers", json={"title": "x", "category_id": gardening},
                         headers=api_headers(user))
    assert no_key.status_code == 422
    assert client.get("/api/v1/offers").status_code == 401
    plan = client.post("/api/v1/match-plans", json={"request_ids": [999999]}, headers=api_headers(broker, **key()))
    assert plan.status_code == 404
    member_plan = client.post("/api/v1/match-plans", json={"request_ids": [1]}, headers=api_headers(user, **key()))
    assert member_plan.status_code == 403


def test_closing_requests_and_who_may(client, session, timebank, requester, volunteer, category, api_headers):
    asker_user, asker = requester()
    other_user, _ = volunteer(skills=["Gardening"])
    created = client.post("/api/v1/requests", json={"title": "Shopping run", "category_id": category("Shopping & errands").id},
                          headers=api_headers(asker_user, **key())).json
    session.commit()  # the refused close below rolls its own request back
    refused = client.post(f"/api/v1/requests/{created['id']}/close", json={}, headers=api_headers(other_user, **key()))
    assert refused.status_code == 403
    closed = client.post(f"/api/v1/requests/{created['id']}/close", json={}, headers=api_headers(asker_user, **key()))
    assert closed.json["status"] == "closed"
    open_ids = [r["id"] for r in client.get("/api/v1/requests?status=open", headers=api_headers(asker_user)).json]
    assert created["id"] not in open_ids
    closed_ids = [r["id"] for r in client.get("/api/v1/requests?status=closed", headers=api_headers(asker_user)).json]
    assert created["id"] in closed_ids
