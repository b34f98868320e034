"""When the exchange that logged a match's hours is cancelled, settled as cancelled, reversed or replaced, the match
follows: back to done (hours no longer logged, can be logged again), or logged with the replacement."""
import datetime as dt
import uuid

from timebank.exchanges import service as exchanges
from timebank.matching import queries, service


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def _log(session, accepted_match, by="helper"):
    user = accepted_match["broker"] if by == "broker" else accepted_match[by][0]
    return service.log_hours(session, accepted_match["match"], user=user)


def _funnel(session, match):
    counts = queries.funnel(session, match.timebank_id)
    return counts["done"], counts["logged"]


def test_cancelling_the_logged_exchange_moves_the_match_back_to_done(session, accepted_match):
    match = accepted_match["match"]
    exchange = _log(session, accepted_match)
    assert match.status == "logged" and _funnel(session, match) == (0, 1)
    exchanges.cancel_exchange(session, exchange.id, user=accepted_match["helper"][0])
    session.refresh(match)
    assert match.status == "done" and match.logged_at is None and match.exchange_id == exchange.id
    assert _funnel(session, match) == (1, 0)
    # The hours can be logged again, and the match follows the new exchange.
    again = _log(session, accepted_match)
    assert again.id != exchange.id and match.status == "logged" and match.exchange_id == again.id


def test_a_dispute_settled_by_cancelling_moves_the_match_back(session, accepted_match):
    match = accepted_match["match"]
    exchange = _log(session, accepted_match)
    exchanges.dispute_exchange(session, exchange.id, user=accepted_match["asker"][0], reason="Never came")
    session.refresh(match)
    assert match.status == "logged"  # disputed, not yet settled
    exchanges.resolve_dispute(session, exchange.id, user=accepted_match["broker"], action="cancel")
    session.refresh(match)
    assert match.status == "done" and _funnel(session, match) == (1, 0)


def test_a_dispute_settled_by_confirming_keeps_the_match_logged(session, accepted_match):
    match = accepted_match["match"]
    exchange = _log(session, accepted_match)
    exchanges.dispute_exchange(session, exchange.id, user=accepted_match["asker"][0], reason="Was it 90?")
    exchanges.resolve_dispute(session, exchange.id, user=accepted_match["broker"], action="confirm")
    session.refresh(match)
    assert match.status == "logged" and match.exchange_id == exchange.id


def test_a_dispute_settled_by_a_replacement_logs_the_match_with_it(session, accepted_match):
    match = accepted_match["match"]
    exchange = _log(session, accepted_match)
    exchanges.dispute_exchange(session, exchange.id, user=accepted_match["asker"][0], reason="It was an hour")
    new = exchanges.resolve_dispute(session, exchange.id, user=accepted_match["broker"], action="replace",
                                    replacement={"minutes": 60})
    session.refresh(match)
    assert new.id != exchange.id and new.status == "confirmed"
    assert match.status == "logged" and match.exchange_id == new.id and _funnel(session, match) == (0, 1)


def test_a_correction_reverses_then_relogs_only_between_the_same_people(session, accepted_match, volunteer):
    match = accepted_match["match"]
    broker = accepted_match["broker"]
    recorded = _log(session, accepted_match, by="broker")
    assert recorded.status == "confirmed"
    old, new = exchanges.correct_exchange(session, recorded.id, user=broker, reason="Wrong minutes",
                                          replacement={"minutes": 45})
    session.refresh(match)
    assert match.status == "logged" and match.exchange_id == new.id
    # A correction to someone else: the match's hours are no longer logged.
    _, other = volunteer(skills=[])
    exchanges.correct_exchange(session, new.id, user=broker, reason="It was another volunteer",
                               replacement={"provider_id": other.id})
    session.refresh(match)
    assert match.status == "done" and match.exchange_id == new.id


def test_a_reversal_without_replacement_moves_the_match_back(session, accepted_match):
    match = accepted_match["match"]
    recorded = _log(session, accepted_match, by="broker")
    exchanges.correct_exchange(session, recorded.id, user=accepted_match["broker"], reason="Did not happen")
    session.refresh(match)
    assert match.status == "done" and _funnel(session, match) == (1, 0)


def test_cancelling_through_the_api_shows_on_the_match_and_its_page(client, session, api_headers, login,
                                                                    accepted_match):
    asker_user, _ = accepted_match["asker"]
    match = accepted_match["match"]
    r = client.post(f"/api/v1/matches/{match.id}/log", json={}, headers=api_headers(asker_user, **key()))
    assert r.status_code == 201, r.json
    exchange_id = r.json["exchange_id"]
    r = client.post(f"/api/v1/exchanges/{exchange_id}/cancel", json={}, headers=api_headers(asker_user, **key()))
    assert r.status_code == 200 and r.json["status"] == "cancelled", r.json
    shown = client.get(f"/api/v1/matches/{match.id}", headers=api_headers(asker_user)).json
    assert shown["status"] == "done" and shown["logged_at"] is None
    login(asker_user)
    page = client.get(f"/matches/{match.id}/log").get_data(as_text=True)
    assert "were cancelled or corrected" in page and "Log the hours</button>" in page
    r = client.post(f"/matches/{match.id}/log", data={"hours": "1", "minutes": "30",
                                                      "date": dt.date.today().isoformat()})
    assert r.status_code == 303
    session.expire_all()
    assert service.get_match(session, match.id).status == "logged"


def test_an_exchange_logged_through_the_exchanges_api_with_match_id_logs_the_match(client, session, api_headers,
                                                                                   accepted_match, volunteer):
    from timebank.exchanges.models import Exchange

    helper_user, helper = accepted_match["helper"]
    _, asker = accepted_match["asker"]
    match = accepted_match["match"]
    _, stranger = volunteer(skills=[])
    session.commit()
    body = {"provider_id": helper.id, "recipient_id": asker.id, "minutes": 90,
            "date": dt.date.today().isoformat(), "match_id": match.id}
    wrong = client.post("/api/v1/exchanges", json={**body, "recipient_id": stranger.id},
                        headers=api_headers(helper_user, **key()))
    assert wrong.status_code == 422, wrong.json  # not between the match's people: nothing is written
    assert session.query(Exchange).count() == 0
    r = client.post("/api/v1/exchanges", json=body, headers=api_headers(helper_user, **key()))
    assert r.status_code == 201, r.json
    session.expire_all()
    shown = service.get_match(session, match.id)
    assert shown.status == "logged" and shown.exchange_id == r.json["id"]
