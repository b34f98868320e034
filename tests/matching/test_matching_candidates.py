"""The set-based candidate pairs of a batch plan are exactly the per-request suggestions: same members, same scores,
same reasons, on random communities (skills and dated offers, parent and child categories, safety checks, ages,
blocks, earlier matches, remote and located requests, opportunities)."""
import datetime as dt
import random
import uuid

import pytest
from sqlalchemy import select

from timebank.community.models import Category, Membership, MemberSkill, Organisation, TimeBank
from timebank.community.service import add_membership, create_timebank, create_user
from timebank.ledger.service import post_transfer, system_account
from timebank.matching import candidates, queries, scoring, service
from timebank.matching.models import Match, Offer, utcnow

LAT, LON = 53.80, -1.55
WORDS = ["garden", "weeding", "hedge", "ladder", "laptop", "email", "reading", "shopping", "lifts", "walks"]


def _text(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _day(rng, lo, hi):
    return None if rng.random() < 0.5 else dt.date.today() + dt.timedelta(days=rng.randint(lo, hi))


def random_community(session, seed, n_members=60, n_requests=14):
    rng = random.Random(seed)
    tb = create_timebank(session, slug="c" + uuid.uuid4().hex[:10], name="Random")
    all_cats = list(session.scalars(select(Category).where(Category.timebank_id == tb.id)))
    parents = [c for c in all_cats if c.name in ("Home & garden", "Learning")]
    cats = parents + [c for c in all_cats if c.parent_id in {p.id for p in parents}]  # dense enough to match
    org_user = create_user(session, email=f"o{uuid.uuid4().hex[:8]}@ex.test", display_name="Org rep")
    org = Organisation(timebank_id=tb.id, name="Allotment trust", status="active")
    session.add(org)
    session.flush()
    adjustments = system_account(session, tb.id, "adjustments")
    members = []
    for i in range(n_members):
        user = create_user(session, email=f"{uuid.uuid4().hex[:8]}@ex.test", display_name=f"M{i}")
        far = rng.random() < 0.1
        m = add_membership(
            session, user=user, timebank=tb, role=rng.choice(["member", "member", "broker", "commissioner"]),
            status=rng.choice(["active"] * 6 + ["suspended", "pending"]),
            latitude=None if rng.random() < 0.05 else LAT + rng.uniform(-0.12, 0.12) + (1 if far else 0),
            longitude=LON + rng.uniform(-0.18, 0.18), availability=rng.randrange(0, 1 << 21),
            safety_check_level=rng.choice(scoring.SAFETY_LEVELS),
            safety_check_expires=None if rng.random() < 0.1 else dt.date.today() + dt.timedelta(
                days=rng.randint(-20, 40)),
            age_band=rng.choice([None, "under 18", "18-24", "25-34", "65+"]),
            bio=_text(rng, rng.randint(0, 4)) if rng.random() < 0.7 else None)
        if m.account_id is not None and rng.random() < 0.5:  # a balance, through the ledger
            minutes = rng.choice([-1, 1]) * rng.randint(1, 600)
            post_transfer(session, timebank_id=tb.id, kind="adjustment", effective_date=dt.date.today(),
                          postings=[(m.account_id, minutes), (adjustments.id, -minutes)])
        members.append((user, m))
        for cat in rng.sample(cats, rng.randint(0, 3)):
            session.add(MemberSkill(membership_id=m.id, category_id=cat.id))
        if m.status == "active" and m.role != "commissioner" and rng.random() < 0.5:
            start = _day(rng, -10, 20)
            end = _day(rng, 0, 40)
            if start and end and end < start:
                start, end = end, start
            offer = service.create_offer(session, membership=m, title=_text(rng, 2), description=_text(rng, 3),
                                         category_id=rng.choice(cats).id, starts_on=start, ends_on=end)
            if rng.random() < 0.2:
                offer.status = "closed"
    session.flush()
    active = [m for _, m in members if m.status == "active" and m.role != "commissioner"]
    requests = []
    for i in range(n_requests):
        user, owner = rng.choice(members[: n_members // 2])
        start, end = _day(rng, 0, 15), _day(rng, 0, 30)
        if start and end and end < start:
            start, end = end, start
        opportunity = rng.random() < 0.25
        request = service.create_request(
            session, user=org_user if opportunity else user, timebank=tb,
            membership=None if opportunity else owner, organisation=org if opportunity else None,
            title=_text(rng, 2), description=_text(rng, 4), category_id=rng.choice(cats).id,
            availability=rng.choice([0, 1 << rng.randrange(21), rng.randrange(1 << 21) & rng.randrange(1 << 21)]),
            remote=rng.random() < 0.2,
            safety_check_level=rng.choice(("none", "none") + scoring.SAFETY_LEVELS),
            min_age=rng.choice([None, None, 18, 30]),
            urgency=rng.choice(["low", "normal", "high"]), starts_on=start, ends_on=end,
            volunteers_needed=rng.randint(1, 3) if opportunity else 1,
            latitude=LAT + rng.uniform(-0.1, 0.1) if opportunity and rng.random() < 0.7 else None,
            longitude=LON + rng.uniform(-0.1, 0.1) if opportunity else None)
        request.created_at = utcnow() - dt.timedelta(days=rng.uniform(0, 20))
        requests.append(request)
    for _ in range(n_members // 3):
        a, b = rng.sample(active, 2)
        service.block_pair(session, timebank_id=tb.id, a=a.id, b=b.id, by_broker=rng.random() < 0.5)
    now = utcnow()
    seen = set()
    for _ in range(n_members):  # earlier matches: statistics, load, and pairs already proposed
        request, m = rng.choice(requests), rng.choice(active)
        if (request.id, m.id) in seen:
            continue
        seen.add((request.id, m.id))
        status = rng.choice(["suggested", "proposed", "accepted", "declined", "done", "withdrawn"])
        session.add(Match(timebank_id=tb.id, request_id=request.id, membership_id=m.id, status=status,
                          suggested_at=now, proposed_at=None if status == "suggested" else
                          now - dt.timedelta(days=rng.randint(0, 20))))
    if rng.random() < 0.5:
        requests[0].status = "closed"
    session.flush()
    return tb, requests, org_user


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_plan_candidates_equal_per_request_suggestions(session, seed):
    tb, requests, _ = random_community(session, seed)
    weights = scoring.weights_for(tb.settings)
    now = utcnow()
    found = candidates.plan_candidates(session, requests, timebank=tb, weights=weights, now=now)
    by_request = {}
    for i, (rid, mid) in enumerate(zip(found.request_id.tolist(), found.member_id.tolist())):
        by_request.setdefault(rid, {})[mid] = i
    total = 0
    for request in requests:
        expected = queries.suggestions(session, request, limit=100_000, weights=weights, now=now)
        got = by_request.get(request.id, {})
        assert set(got) == {s.member_id for s in expected}, f"request {request.id}"
        for s in expected:
            i = got[s.member_id]
            assert found.base_score[i] == pytest.approx(s.base_score, abs=1e-9)
            assert found.reasons(request.id, s.member_id) == s.reasons
            assert found.stats[s.member_id] == s.extra["stats"]
        total += len(expected)
    assert total == len(found)
    assert total > 10, total  # the community is not trivially empty
    print("pairs", total)


def test_plan_uses_the_set_based_candidates_and_stays_within_suggestions(session):
    tb, requests, broker = random_community(session, 7, n_members=50, n_requests=20)
    open_requests = [r for r in requests if queries.is_open(r)]
    plan = service.create_plan(session, timebank=tb, request_ids=[r.id for r in open_requests], by_user_id=broker.id)
    assert plan.proposals
    for p in plan.proposals:
        request = next(r for r in open_requests if r.id == p.request_id)
        only = queries.suggestions(session, request, limit=1, only_member_id=p.membership_id)
        assert only and only[0].reasons == p.reasons


def scalar_suggestions(session, request, *, limit, weights, now):
    """The suggestions scored member by member with the scalar functions of scoring.py (the way queries.suggestions
    scored before it worked on arrays): the oracle for its top `limit`."""
    if not queries.is_open(request, now):
        return []
    tb = session.get(TimeBank, request.timebank_id)
    radius = float(tb.match_radius_km or 10)
    rows, family, _names = queries.candidate_rows(session, request, radius_km=radius, now=now)
    best = {}
    for row in rows:
        mid, cid = row[0], row[1]
        if mid not in best or (queries.FIT_VALUE[family[cid]], -cid) > (queries.FIT_VALUE[family[best[mid][1]]],
                                                                       -best[mid][1]):
            best[mid] = row
    stats = queries.match_stats(session, list(best), now)
    request_words = scoring.tokens(f"{request.title} {request.description}")
    waiting = scoring.waiting((now - request.created_at).total_seconds() / 86400, request.urgency)
    scored = []
    # The statistics from match_stats, not the ones candidate_rows joins in: the oracle for those too.
    for mid, (_m, cid, lat, lon, slots, age_band, balance, *_joined_stats) in best.items():
        if request.min_age is not None:
            lower = scoring.age_lower_bound(age_band)
            if lower is None or lower < request.min_age:
                continue
        distance = None
        if not request.remote and request.latitude is not None and lat is not None:
            distance = scoring.haversine_km(request.latitude, request.longitude, lat, lon)
            if distance > radius:
                continue
        s = stats.get(mid, {"proposed": 0, "completed": 0, "open": 0, "week": 0})
        # The member's words read here, not by the code under test: their bio and their offers live in the window.
        live = [o for o in session.scalars(select(Offer).where(Offer.membership_id == mid))
                if queries.is_open(o, now) and queries.offer_overlaps(o.starts_on, o.ends_on, o.expires_at,
                                                                      request.starts_on, request.ends_on)]
        words = scoring.tokens(session.get(Membership, mid).bio or "").union(
            *(scoring.tokens(f"{o.title} {o.description}") for o in live))
        features = {"category": queries.FIT_VALUE[family[cid]],
                    "text": scoring.text_similarity(request_words, words),
                    "distance": scoring.distance_feature(distance, radius, request.remote),
                    "availability": scoring.availability_overlap(request.availability, slots or 0),
                    "reliability": scoring.reliability(s["completed"], s["proposed"]),
                    "reciprocity": scoring.reciprocity(int(balance)), "waiting": waiting}
        penalty = scoring.marginal_load(s["open"], weights["load"])
        features["load"] = -penalty / weights["load"] if weights["load"] else 0.0
        base = scoring.base_score(features, weights)
        scored.append((round(base - penalty, 4), mid, base, features, distance, cid, s))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored[:limit]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_top_suggestions_equal_member_by_member_scoring(session, seed):
    """The array scoring's top 3 and top 10 are the scalar scoring's: same members in the same order, the same
    scores, features and distances (haversine on arrays may differ in the last bit, so distances approximately)."""
    tb, requests, _ = random_community(session, seed)
    weights = scoring.weights_for(tb.settings)
    now = utcnow()
    compared = 0
    for request in requests:
        for limit in (3, 10):
            got = queries.suggestions(session, request, limit=limit, weights=weights, now=now)
            expected = scalar_suggestions(session, request, limit=limit, weights=weights, now=now)
            assert [s.member_id for s in got] == [e[1] for e in expected], (request.id, limit)
            for s, (score, _mid, base, features, distance, cid, stats) in zip(got, expected):
                assert (s.score, s.category_id, s.extra["stats"]) == (score, cid, stats)
                assert s.base_score == pytest.approx(base, abs=1e-12)
                assert s.features == pytest.approx(features, abs=1e-12)
                assert (s.distance_km is None) == (distance is None)
                if distance is not None:
                    assert s.distance_km == pytest.approx(distance, abs=1e-9)
            compared += len(got)
    assert compared > 20, compared


@pytest.mark.parametrize("seed", [21, 22])
def test_requests_a_member_could_help_with_equal_suggestions_request_by_request(session, seed):
    """The set-based list for one member equals asking suggestions() of every open request for that member (what
    the page did before): the same requests, in the same order, with the same scores and reasons."""
    from timebank.community.models import Membership

    tb, requests, _ = random_community(session, seed)
    now = utcnow()
    members = list(session.scalars(select(Membership).where(Membership.timebank_id == tb.id,
                                                            Membership.status == "active")))
    listed = 0
    for me in members:
        expected = []
        for request in queries.list_requests(session, tb.id, status="open", limit=200, now=now):
            if request.membership_id == me.id:
                continue
            for s in queries.suggestions(session, request, limit=1, now=now, only_member_id=me.id):
                expected.append((request.id, s.score, s.reasons))
        expected.sort(key=lambda e: -e[1])
        got = [(r.id, s.score, s.reasons) for r, s in queries.requests_member_could_help(session, me, limit=1000)]
        assert [g[0] for g in got] == [e[0] for e in expected], me.id
        for (_r, score, reasons), (_r2, expected_score, expected_reasons) in zip(got, expected):
            assert score == pytest.approx(expected_score, abs=1e-4) and reasons == expected_reasons
        listed += len(got)
    assert listed > 10, listed
