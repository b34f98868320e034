"""The last funnel step: logging a match's hours as an exchange (pre-filled), on the page and through the API."""
import re
import uuid

import pytest

from timebank.exchanges.models import Exchange
from timebank.matching import service


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_the_log_page_is_prefilled_and_logging_moves_the_match_to_logged(client, session, login, accepted_match):
    helper_user, helper = accepted_match["helper"]
    asker_user, asker = accepted_match["asker"]
    match = accepted_match["match"]
    login(helper_user)
    listings = client.get("/listings").get_data(as_text=True)
    assert f'/matches/{match.id}/log' in listings  # the volunteer is offered the link
    page = client.get(f"/matches/{match.id}/log").get_data(as_text=True)
    assert 'name="hours" type="number" min="0" max="24" inputmode="numeric" value="1"' in page
    assert 'value="30"' in page and "Dig a vegetable bed</textarea>" in page
    assert f"helped {asker_user.display_name}" in page
    r = client.post(f"/matches/{match.id}/log", data={"hours": "2", "minutes": "0", "date": "",
                                                      "description": "Dug the bed"})
    assert r.status_code == 422 and "a real date" in r.get_data(as_text=True)
    session.refresh(match)
    assert match.status == "accepted" and match.exchange_id is None
    today = __import__("datetime").date.today().isoformat()
    r = client.post(f"/matches/{match.id}/log", data={"hours": "2", "minutes": "0", "date": today,
                                                      "description": "Dug the bed",
                                                      "category_id": str(accepted_match["request"].category_id)})
    assert r.status_code == 303
    exchange_id = int(re.search(r"/exchanges/(\d+)", r.headers["Location"]).group(1))
    session.expire_all()
    exchange = session.get(Exchange, exchange_id)
    assert (exchange.provider_membership_id, exchange.recipient_membership_id) == (helper.id, asker.id)
    assert exchange.minutes == 120 and exchange.description == "Dug the bed" and exchange.status == "pending"
    match = service.get_match(session, match.id)
    assert match.status == "logged" and match.exchange_id == exchange_id
    assert match.completed_at is not None and match.logged_at is not None
    # Once logged, it cannot be logged twice.
    again = client.post(f"/matches/{match.id}/log", data={"hours": "1", "minutes": "0", "date": today})
    assert again.status_code == 422 and "already logged" in again.get_data(as_text=True)
    assert session.query(Exchange).count() == 1


def test_strangers_cannot_log_a_match(client, session, login, volunteer, accepted_match):
    stranger, _ = volunteer(skills=[])
    login(stranger)
    assert client.get(f"/matches/{accepted_match['match'].id}/log").status_code == 403


def test_api_logs_the_hours_with_the_match_defaults(client, session, api_headers, accepted_match):
    asker_user, asker = accepted_match["asker"]
    _, helper = accepted_match["helper"]
    match = accepted_match["match"]
    detail = client.get(f"/api/v1/matches/{match.id}", headers=api_headers(asker_user))
    assert detail.status_code == 200, detail.json
    assert detail.json["exchange_draft"] == {"provider_id": helper.id, "recipient_id": asker.id,
                                             "recipient_organisation_id": None, "minutes": 90,
                                             "category_id": accepted_match["request"].category_id,
                                             "description": "Dig a vegetable bed"}
    r = client.post(f"/api/v1/matches/{match.id}/log", json={}, headers=api_headers(asker_user, **key()))
    assert r.status_code == 201, r.json
    assert r.json["match"]["status"] == "logged" and r.json["match"]["exchange_id"] == r.json["exchange_id"]
    exchange = client.get(f"/api/v1/exchanges/{r.json['exchange_id']}", headers=api_headers(asker_user)).json
    assert (exchange["provider_id"], exchange["recipient_id"], exchange["minutes"]) == (helper.id, asker.id, 90)
    assert exchange["status"] == "pending"  # the helper still confirms it, as for any exchange
    session.commit()
    twice = client.post(f"/api/v1/matches/{match.id}/log", json={}, headers=api_headers(asker_user, **key()))
    assert twice.status_code == 409 and twice.json["code"] == "match_already_logged"


def test_a_broker_records_the_hours_for_members_offline(client, session, api_headers, accepted_match):
    r = client.post(f"/api/v1/matches/{accepted_match['match'].id}/log", json={"minutes": 75},
                    headers=api_headers(accepted_match["broker"], **key()))
    assert r.status_code == 201, r.json
    assert r.json["exchange_status"] == "confirmed"  # a broker's record posts at once
    assert session.get(Exchange, r.json["exchange_id"]).minutes == 75


def test_a_proposed_match_cannot_be_logged_and_nothing_is_written(client, session, api_headers, volunteer,
                                                                   requester, timebank, category, make_person):
    broker, _ = make_person("broker")
    asker_user, asker = requester()
    _, helper = volunteer(skills=["Gardening"])
    req = service.create_request(session, user=asker_user, timebank=timebank, membership=asker, title="Weeding",
                                 category_id=category("Gardening").id)
    match = service.propose(session, req, helper.id, by_user_id=broker.id)
    session.commit()
    r = client.post(f"/api/v1/matches/{match.id}/log", json={}, headers=api_headers(asker_user, **key()))
    assert r.status_code == 409 and r.json["code"] == "match_wrong_state"
    assert session.query(Exchange).count() == 0


def test_link_refuses_an_exchange_between_other_people(session, accepted_match, volunteer):
    from timebank.errors import ValidationFailed

    _, other = volunteer(skills=[])
    asker_user, asker = accepted_match["asker"]
    wrong = Exchange(timebank_id=accepted_match["match"].timebank_id, provider_membership_id=other.id,
                     recipient_membership_id=asker.id)
    with pytest.raises(ValidationFailed):
        service.link_exchange(session, accepted_match["match"], wrong)
