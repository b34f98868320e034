"""Sending a draft plan after some proposals stopped being valid: those are skipped with the reason in words, the
rest are sent (service, page and API)."""
import json
import re
import uuid

import pytest
from sqlalchemy import delete

from timebank.community.models import MemberSkill
from timebank.community.service import suspend_member
from timebank.matching import queries, service
from timebank.matching.models import Match


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.fixture
def draft_plan(session, timebank, volunteer, requester, category, make_person):
    """Two gardening requests, two gardeners who can each take one new match: a plan of two proposals."""
    timebank.settings = {"weekly_match_capacity": 1}
    broker_user, broker = make_person("broker")
    requests = []
    for title in ("Weed the beds", "Prune the roses"):
        asker_user, asker = requester()
        requests.append(service.create_request(session, user=asker_user, timebank=timebank, membership=asker,
                                               title=title, category_id=category("Gardening").id))
    helpers = [volunteer(skills=["Gardening"]) for _ in range(2)]
    plan = service.create_plan(session, timebank=timebank, request_ids=[r.id for r in requests],
                               by_user_id=broker_user.id)
    assert len(plan.proposals) == 2
    return {"plan": plan, "broker": (broker_user, broker), "helpers": dict((m.id, (u, m)) for u, m in helpers),
            "requests": {r.id: r for r in requests}}


def _spoil(session, draft_plan, cause):
    """Make the plan's first proposal invalid; answer the words the skip reason must contain."""
    first = draft_plan["plan"].proposals[0]
    request = draft_plan["requests"][first.request_id]
    broker_user, broker = draft_plan["broker"]
    helper_user, helper = draft_plan["helpers"][first.membership_id]
    if cause == "broker block":
        service.block_pair(session, timebank_id=request.timebank_id, a=request.membership_id, b=helper.id,
                           reason="safeguarding", by_user_id=broker_user.id, by_broker=True)
        return "a broker has blocked this pair"
    if cause == "suspended":
        suspend_member(session, helper, actor=broker_user, reason="complaint")
        return "membership is suspended"
    if cause == "closed":
        service.close_listing(session, request, by_membership=broker)
        return "the request is closed"
    if cause == "already proposed":
        service.propose(session, request, helper.id, by_user_id=broker_user.id)
        return "already proposed for this request (the match is proposed)"
    if cause == "filled":  # a broker gave the request's only place to the other gardener by hand
        other = next(m for mid, (_, m) in draft_plan["helpers"].items() if mid != helper.id)
        service.propose(session, request, other.id, by_user_id=broker_user.id)
        return "every place on this request is already taken"
    if cause == "no longer fits":
        session.execute(delete(MemberSkill).where(MemberSkill.membership_id == helper.id))
        return "no longer meets the request's requirements"
    raise AssertionError(cause)


@pytest.mark.parametrize("cause", ["broker block", "suspended", "closed", "already proposed", "filled",
                                   "no longer fits"])
def test_an_invalid_proposal_is_skipped_and_the_rest_sent(session, draft_plan, cause):
    plan = draft_plan["plan"]
    first, second = plan.proposals
    words = _spoil(session, draft_plan, cause)
    matches = service.send_plan(session, plan, by_user_id=draft_plan["broker"][0].id)
    assert [(m.request_id, m.membership_id, m.status) for m in matches] == [
        (second.request_id, second.membership_id, "proposed")]
    assert plan.status == "sent"
    [skipped] = plan.skipped
    assert (skipped["request_id"], skipped["member_id"]) == (first.request_id, first.membership_id)
    assert words in skipped["reason"]
    assert set(skipped) == {"request_id", "member_id", "reason"}  # no names kept: they are looked up when shown
    [shown] = queries.skipped_of(session, plan)
    assert shown["request_title"] == draft_plan["requests"][first.request_id].title
    assert shown["member_name"] == draft_plan["helpers"][first.membership_id][0].display_name
    sent_by_plan = session.query(Match).filter(Match.plan_id == plan.id).all()
    assert [(m.request_id, m.membership_id) for m in sent_by_plan] == [(second.request_id, second.membership_id)]


def test_the_page_says_which_were_skipped_and_why(client, session, login, draft_plan):
    plan = draft_plan["plan"]
    first = plan.proposals[0]
    _spoil(session, draft_plan, "broker block")
    session.commit()
    login(draft_plan["broker"][0])
    page = client.post(f"/matching/plans/{plan.id}/send", follow_redirects=True).get_data(as_text=True)
    name = draft_plan["helpers"][first.membership_id][0].display_name
    title = draft_plan["requests"][first.request_id].title
    assert "Sent 1 proposal." in page
    assert re.search(rf"Not sent \(1\).*{re.escape(name)} for “{re.escape(title)}”: a broker has blocked this pair",
                     page)
    assert "<h2>Not sent</h2>" in page


def test_the_api_answers_the_skipped_proposals(client, session, api_headers, draft_plan):
    plan = draft_plan["plan"]
    first, second = plan.proposals
    _spoil(session, draft_plan, "suspended")
    session.commit()
    broker_user = draft_plan["broker"][0]
    r = client.post(f"/api/v1/match-plans/{plan.id}/send", json={}, headers=api_headers(broker_user, **key()))
    assert r.status_code == 200, r.json
    assert r.json["status"] == "sent"
    assert [(s["request_id"], s["member_id"]) for s in r.json["skipped"]] == [(first.request_id, first.membership_id)]
    assert "suspended" in r.json["skipped"][0]["reason"]
    again = client.get(f"/api/v1/match-plans/{plan.id}", headers=api_headers(broker_user)).json
    assert again["skipped"] == r.json["skipped"]
    draft = client.post("/api/v1/match-plans", json={"request_ids": [second.request_id]},
                        headers=api_headers(broker_user, **key()))
    assert draft.status_code in (201, 200) and draft.json["skipped"] == []


def test_an_erased_volunteer_is_not_named_by_a_sent_plan(client, session, login, draft_plan):
    """The skipped list stores ids only: once the volunteer is erased, the plan's page and the API show the erased
    name, and no stored row still holds the old one."""
    from timebank.community.service import erase_person

    plan = draft_plan["plan"]
    first = plan.proposals[0]
    _spoil(session, draft_plan, "broker block")
    broker_user = draft_plan["broker"][0]
    service.send_plan(session, plan, by_user_id=broker_user.id)
    user = draft_plan["helpers"][first.membership_id][0]
    old_name = user.display_name
    erase_person(session, user, actor=broker_user)
    session.commit()
    assert old_name not in json.dumps(session.get(type(plan), plan.id).skipped)
    login(broker_user)
    page = client.get(f"/matching/plans/{plan.id}").get_data(as_text=True)
    assert old_name not in page and user.display_name in page
