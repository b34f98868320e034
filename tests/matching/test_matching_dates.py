"""Listing dates: an offer counts only while it is live and its dates overlap the request's; a request past its
needed-by date (or expiry) is not suggested, planned or proposed; pages show when listings close."""
import datetime as dt

import pytest

from timebank.errors import ValidationFailed
from timebank.matching import queries, service
from timebank.matching.errors import ListingClosed
from tests.matching.conftest import in_days


def _offer_only(volunteer, session, category, **dates):
    """A member with no profile skill whose only fit is one gardening offer with these dates."""
    _, member = volunteer(skills=[])
    offer = service.create_offer(session, membership=member, title="Garden help", category_id=category("Gardening").id)
    for name, value in dates.items():
        setattr(offer, name, value)
    session.flush()
    return member, offer


def _request(session, timebank, requester, category, **kw):
    user, membership = requester()
    return service.create_request(session, user=user, timebank=timebank, membership=membership, title="Weed my beds",
                                  category_id=category("Gardening").id, **kw)


def test_offers_outside_their_dates_are_not_suggested(session, timebank, volunteer, requester, category):
    live, _ = _offer_only(volunteer, session, category, ends_on=in_days(30))
    ended, _ = _offer_only(volunteer, session, category, ends_on=in_days(-1))
    expired, expired_offer = _offer_only(volunteer, session, category)
    expired_offer.expires_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=1)
    later, _ = _offer_only(volunteer, session, category, starts_on=in_days(20))      # only from day 20
    early, _ = _offer_only(volunteer, session, category, ends_on=in_days(3))         # only until day 3
    session.flush()
    req = _request(session, timebank, requester, category, starts_on=in_days(5), ends_on=in_days(10))
    assert {s.member_id for s in queries.suggestions(session, req, limit=50)} == {live.id}
    open_request = _request(session, timebank, requester, category)  # no dates: any live offer counts
    assert {s.member_id for s in queries.suggestions(session, open_request, limit=50)} == {
        live.id, later.id, early.id}


def test_a_request_past_its_needed_by_date_is_not_suggested_planned_or_proposed(session, timebank, volunteer,
                                                                               requester, category, make_person):
    broker, _ = make_person("broker")
    _, helper = volunteer(skills=["Gardening"])
    req = _request(session, timebank, requester, category, ends_on=in_days(2))
    assert [s.member_id for s in queries.suggestions(session, req)] == [helper.id]
    req.ends_on = in_days(-1)  # the needed-by date has passed
    session.flush()
    assert not queries.is_open(req)
    assert queries.suggestions(session, req) == []
    assert req.id not in [r.id for r in queries.list_requests(session, timebank.id, status="open")]
    assert req.id in [r.id for r in queries.list_requests(session, timebank.id, status="closed")]
    assert all(r.id != req.id for r, _ in queries.requests_member_could_help(session, helper))
    with pytest.raises(ListingClosed):
        service.create_plan(session, timebank=timebank, request_ids=[req.id], by_user_id=broker.id)
    with pytest.raises(ListingClosed):
        service.propose(session, req, helper.id, by_user_id=broker.id)


def test_dates_are_checked_when_posting(session, timebank, volunteer, category):
    _, member = volunteer(skills=[])
    with pytest.raises(ValidationFailed) as past:
        service.create_offer(session, membership=member, title="x", category_id=category("Gardening").id,
                             ends_on=in_days(-1))
    assert "ends_on" in past.value.errors
    with pytest.raises(ValidationFailed):
        service.create_offer(session, membership=member, title="x", category_id=category("Gardening").id,
                             starts_on=in_days(5), ends_on=in_days(4))


def test_listing_pages_show_when_listings_close(client, session, timebank, volunteer, login, category):
    user, member = volunteer(skills=[])
    login(user)
    needed_by = in_days(9)
    r = client.post("/listings/new/request", data={"title": "Lift to the clinic",
                                                   "category_id": category("Gardening").id,
                                                   "ends_on": needed_by.isoformat()})
    assert r.status_code == 302
    page = client.get("/listings").get_data(as_text=True)
    assert f"needed by {needed_by:%d %b %Y}" in page
    bad = client.post("/listings/new/offer", data={"title": "Old offer", "category_id": category("Gardening").id,
                                                   "ends_on": in_days(-3).isoformat()})
    assert bad.status_code == 422 and "already passed" in bad.get_data(as_text=True)


def test_api_shows_dates(client, session, volunteer, category, api_headers):
    import uuid

    user, _ = volunteer(skills=[])
    r = client.post("/api/v1/offers", json={"title": "Hedges", "category_id": category("Gardening").id,
                                            "starts_on": in_days(1).isoformat(), "ends_on": in_days(20).isoformat()},
                    headers=api_headers(user, **{"Idempotency-Key": uuid.uuid4().hex}))
    assert r.status_code == 201, r.json
    assert (r.json["starts_on"], r.json["ends_on"], r.json["closes_on"]) == (
        in_days(1).isoformat(), in_days(20).isoformat(), in_days(20).isoformat())
