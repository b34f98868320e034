"""Blocked pairs: a member's "don't match me with X" and a broker's safeguarding block, on pages and the API.
A blocked pair never appears in suggestions, in "requests you could help with", or in a batch plan."""
import uuid

from sqlalchemy import select

from timebank.matching import queries, service
from timebank.matching.models import BlockedPair


def key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def _garden_request(session, timebank, who, category, title="Tidy my garden"):
    user, membership = who
    return service.create_request(session, user=user, timebank=timebank, membership=membership, title=title,
                                  category_id=category("Gardening").id)


def test_blocked_pairs_never_appear_in_suggestions_or_plans(session, timebank, volunteer, requester, category,
                                                           make_person):
    broker, _ = make_person("broker")
    asker = requester()
    _, kept = volunteer(skills=["Gardening"])
    blocked_user, blocked = volunteer(skills=["Gardening"])
    req = _garden_request(session, timebank, asker, category)
    assert {s.member_id for s in queries.suggestions(session, req, limit=50)} == {kept.id, blocked.id}
    service.block_pair(session, timebank_id=timebank.id, a=blocked.id, b=asker[1].id, reason="asked",
                       by_user_id=blocked_user.id)
    assert {s.member_id for s in queries.suggestions(session, req, limit=50)} == {kept.id}
    assert all(r.id != req.id for r, _ in queries.requests_member_could_help(session, blocked))
    # A plan with room for everyone still leaves the blocked volunteer out.
    other_req = _garden_request(session, timebank, asker, category, title="Mow the lawn")
    plan = service.create_plan(session, timebank=timebank, request_ids=[req.id, other_req.id], by_user_id=broker.id)
    assert {p.membership_id for p in plan.proposals} == {kept.id}
    assert blocked.id not in {int(k) for k in plan.capacity["used"]}


def test_a_block_withdraws_open_proposals_between_the_pair(session, timebank, volunteer, requester, category,
                                                            make_person):
    broker, _ = make_person("broker")
    asker = requester()
    _, helper = volunteer(skills=["Gardening"])
    req = _garden_request(session, timebank, asker, category)
    match = service.propose(session, req, helper.id, by_user_id=broker.id)
    service.block_pair(session, timebank_id=timebank.id, a=asker[1].id, b=helper.id, reason="safeguarding",
                       by_user_id=broker.id, by_broker=True)
    assert match.status == "withdrawn"


def test_member_blocks_on_the_page_and_cannot_lift_a_brokers_block(client, session, timebank, volunteer, login,
                                                                   make_person):
    me_user, me = volunteer(skills=[])
    _, other = volunteer(skills=[])
    _, third = volunteer(skills=[])
    broker, _ = make_person("broker")
    login(me_user)
    page = client.get("/listings/blocks").get_data(as_text=True)
    assert "Don&#39;t match me with them" in page or "Don't match me with them" in page
    r = client.post("/listings/blocks", data={"member_id": str(other.id), "reason": "we fell out"})
    assert r.status_code == 303
    row = session.scalar(select(BlockedPair).where(BlockedPair.timebank_id == timebank.id))
    assert sorted((row.low_membership_id, row.high_membership_id)) == sorted((me.id, other.id))
    assert not row.by_broker
    # A broker's safeguarding block on me and the third member: I do not see it and cannot lift it.
    broker_block = service.block_pair(session, timebank_id=timebank.id, a=me.id, b=third.id, reason="safeguarding",
                                      by_user_id=broker.id, by_broker=True)
    session.commit()
    mine = client.get("/listings/blocks").get_data(as_text=True)
    assert "we fell out" in mine and "safeguarding" not in mine
    client.post(f"/blocks/{broker_block.id}/lift")
    assert session.get(BlockedPair, broker_block.id) is not None
    client.post(f"/blocks/{row.id}/lift")
    session.expire_all()
    assert session.get(BlockedPair, row.id) is None


def test_broker_blocks_a_pair_on_the_page_with_a_reason(client, session, timebank, volunteer, login, make_person):
    broker, _ = make_person("broker")
    _, a = volunteer(skills=[])
    _, b = volunteer(skills=[])
    session.commit()
    login(broker)
    assert client.get("/matching/blocks").status_code == 200
    client.post("/matching/blocks", data={"member_id": str(a.id), "other_member_id": str(b.id), "reason": ""})
    assert session.scalar(select(BlockedPair)) is None  # a broker must say why
    client.post("/matching/blocks", data={"member_id": str(a.id), "other_member_id": str(b.id),
                                          "reason": "Safeguarding concern"})
    row = session.scalar(select(BlockedPair))
    assert row.by_broker and row.reason == "Safeguarding concern"
    assert "Safeguarding concern" in client.get("/matching/blocks").get_data(as_text=True)


def test_members_cannot_open_the_brokers_block_page(client, volunteer, login):
    user, _ = volunteer(skills=[])
    login(user)
    assert client.get("/matching/blocks").status_code == 403


def test_blocked_pairs_api(client, session, timebank, volunteer, make_person, api_headers):
    member_user, member = volunteer(skills=[])
    _, other = volunteer(skills=[])
    _, third = volunteer(skills=[])
    broker, _ = make_person("broker")
    session.commit()
    r = client.post("/api/v1/blocked-pairs", json={"member_id": other.id}, headers=api_headers(member_user, **key()))
    assert r.status_code == 201, r.json
    assert sorted(r.json["member_ids"]) == sorted([member.id, other.id]) and r.json["by_broker"] is False
    refused = client.post("/api/v1/blocked-pairs", json={"member_id": other.id, "other_member_id": third.id},
                          headers=api_headers(member_user, **key()))
    assert refused.status_code == 403
    b = client.post("/api/v1/blocked-pairs", json={"member_id": other.id, "other_member_id": third.id,
                                                   "reason": "safeguarding"}, headers=api_headers(broker, **key()))
    assert b.status_code == 201 and b.json["by_broker"] is True
    assert [x["id"] for x in client.get("/api/v1/blocked-pairs", headers=api_headers(member_user)).json] == \
        [r.json["id"]]
    assert {x["id"] for x in client.get("/api/v1/blocked-pairs", headers=api_headers(broker)).json} == \
        {r.json["id"], b.json["id"]}
    assert client.delete(f"/api/v1/blocked-pairs/{b.json['id']}",
                         headers=api_headers(member_user, **key())).status_code in (403, 404)
    gone = client.delete(f"/api/v1/blocked-pairs/{r.json['id']}", headers=api_headers(member_user, **key()))
    assert gone.status_code == 204
    assert client.get("/api/v1/blocked-pairs", headers=api_headers(member_user)).json == []
    self_block = client.post("/api/v1/blocked-pairs", json={"member_id": member.id},
                             headers=api_headers(member_user, **key()))
    assert self_block.status_code == 422
