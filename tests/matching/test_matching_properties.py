"""Property: over random communities, no suggestion or plan proposal ever breaks a hard filter."""
import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from timebank.community.models import Category, MemberSkill
from timebank.community.service import add_membership, create_timebank, create_user
from timebank.matching import queries, scoring, service
from timebank.matching.models import BlockedPair

LAT, LON = 53.80, -1.55
LEVELS = scoring.SAFETY_LEVELS

member_st = st.fixed_dictionaries({
    "skill": st.sampled_from(["Gardening", "Home & garden", "Tutoring", "Cleaning"]),
    "dlat": st.floats(-0.15, 0.15), "dlon": st.floats(-0.2, 0.2),
    "availability": st.integers(0, (1 << 21) - 1),
    "status": st.sampled_from(["active", "active", "active", "suspended", "pending"]),
    "level": st.sampled_from(LEVELS),
    "expires_in": st.integers(-30, 60),
    "blocked": st.booleans(),
    # The category fit comes from a profile skill, or only from an offer with these dates (days from today).
    "via_offer": st.booleans(),
    "offer_start": st.one_of(st.none(), st.integers(-20, 40)),
    "offer_end": st.one_of(st.none(), st.integers(-20, 40)),
})
request_st = st.fixed_dictionaries({
    "category": st.sampled_from(["Gardening", "Home & garden", "Cleaning"]),
    "availability": st.integers(0, (1 << 21) - 1),
    "remote": st.booleans(),
    "level": st.sampled_from(LEVELS),
    "start": st.one_of(st.none(), st.integers(0, 20)),
    "end": st.one_of(st.none(), st.integers(0, 30)),
})


def _day(offset):
    return None if offset is None else dt.date.today() + dt.timedelta(days=offset)


def _offer_fits(spec, req):
    """An offer counts while live (not past its end) and when its dates overlap the request's."""
    o_start, o_end = _day(spec["offer_start"]), _day(spec["offer_end"])
    r_start, r_end = _day(req["start"]), _day(req["end"])
    if o_end is not None and o_end < dt.date.today():
        return False
    if r_end is not None and o_start is not None and o_start > r_end:
        return False
    return not (r_start is not None and o_end is not None and o_end < r_start)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(members=st.lists(member_st, min_size=1, max_size=12), req=request_st)
def test_suggestions_never_break_a_hard_filter(session, members, req):
    today = dt.date.today()
    tb = create_timebank(session, slug="p" + uuid.uuid4().hex[:10], name="Random")
    cats = {c.name: c for c in session.scalars(select(Category).where(Category.timebank_id == tb.id))}
    owner_user = create_user(session, email=f"{uuid.uuid4().hex[:8]}@ex.test", display_name="Owner")
    owner = add_membership(session, user=owner_user, timebank=tb, latitude=LAT, longitude=LON, availability=1)
    session.add(MemberSkill(membership_id=owner.id, category_id=cats[req["category"]].id))
    people = {}
    for spec in members:
        user = create_user(session, email=f"{uuid.uuid4().hex[:8]}@ex.test", display_name="M")
        m = add_membership(session, user=user, timebank=tb, status=spec["status"], latitude=LAT + spec["dlat"],
                           longitude=LON + spec["dlon"], availability=spec["availability"],
                           safety_check_level=spec["level"],
                           safety_check_expires=today + dt.timedelta(days=spec["expires_in"]))
        if spec["via_offer"]:
            offer = service.create_offer(session, membership=m, title="Help", category_id=cats[spec["skill"]].id)
            offer.starts_on, offer.ends_on = _day(spec["offer_start"]), _day(spec["offer_end"])
        else:
            session.add(MemberSkill(membership_id=m.id, category_id=cats[spec["skill"]].id))
        if spec["blocked"]:
            service.block_pair(session, timebank_id=tb.id, a=owner.id, b=m.id)
        people[m.id] = (m, spec)
    session.flush()
    if req["start"] is not None and req["end"] is not None and req["end"] < req["start"]:
        req["start"], req["end"] = req["end"], req["start"]
    request = service.create_request(session, user=owner_user, timebank=tb, membership=owner, title="Job",
                                     category_id=cats[req["category"]].id, availability=req["availability"],
                                     remote=req["remote"], safety_check_level=req["level"],
                                     starts_on=_day(req["start"]), ends_on=_day(req["end"]))
    family = {cats[req["category"]].id, cats[req["category"]].parent_id} | {
        c.id for c in cats.values() if c.parent_id == cats[req["category"]].id}
    found = queries.suggestions(session, request, limit=1000)
    blocked = {(b.low_membership_id, b.high_membership_id) for b in session.scalars(select(BlockedPair))}
    for s in found:
        assert s.member_id != owner.id
        m, spec = people[s.member_id]
        assert m.status == "active"
        assert cats[spec["skill"]].id in family
        assert not spec["via_offer"] or _offer_fits(spec, req)
        assert tuple(sorted((owner.id, m.id))) not in blocked
        if req["availability"]:
            assert req["availability"] & spec["availability"]
        if not req["remote"]:
            assert scoring.haversine_km(LAT, LON, m.latitude, m.longitude) <= tb.match_radius_km
        if req["level"] != "none":
            assert LEVELS.index(spec["level"]) >= LEVELS.index(req["level"]) and spec["expires_in"] >= 0
    # And nobody eligible is missing: completeness of the filters.
    expected = set()
    for mid, (m, spec) in people.items():
        ok = (m.status == "active" and cats[spec["skill"]].id in family
              and (not spec["via_offer"] or _offer_fits(spec, req))
              and tuple(sorted((owner.id, mid))) not in blocked
              and (not req["availability"] or req["availability"] & spec["availability"])
              and (req["remote"] or scoring.haversine_km(LAT, LON, m.latitude, m.longitude) <= tb.match_radius_km)
              and (req["level"] == "none" or (LEVELS.index(spec["level"]) >= LEVELS.index(req["level"])
                                              and spec["expires_in"] >= 0)))
        if ok:
            expected.add(mid)
    assert {s.member_id for s in found} == expected
    # A plan over this request only ever proposes suggested members.
    plan = service.create_plan(session, timebank=tb, request_ids=[request.id], by_user_id=owner_user.id)
    assert {p.membership_id for p in plan.proposals} <= expected
    assert len(plan.proposals) == (1 if expected else 0)


words_st = st.frozensets(st.sampled_from(["garden", "dig", "bike", "brakes", "soup", "read", "walk", "dog", "van"]),
                         max_size=6)


@settings(max_examples=300, deadline=None)
@given(request_words=words_st, parts=st.lists(words_st, max_size=4))
def test_text_similarity_of_parts_is_text_similarity_of_their_union(request_words, parts):
    """The shortcut (no union built unless it could change the divisor) gives the same float and the same shared
    words as the overlap coefficient of the whole union."""
    union = frozenset().union(*parts)
    value, shared = scoring.text_similarity_of_parts(request_words, parts)
    assert value == scoring.text_similarity(request_words, union)
    assert shared == request_words & union
