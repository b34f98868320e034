"""Suggestions: hard filters, scores with reasons, weights a time bank can tune."""
import datetime as dt

from timebank.matching import queries, service
from tests.matching.conftest import LAT, LON, SATURDAY_AFTERNOON, TUESDAY_MORNING, in_days


def _request(session, timebank, who, category, **kw):
    user, membership = who
    kw.setdefault("title", "Help tidying my front garden")
    return service.create_request(session, user=user, timebank=timebank, membership=membership,
                                  category_id=category("Gardening").id, **kw)


def test_suggestion_explains_itself_in_words(session, timebank, volunteer, requester, category):
    _, gardener = volunteer(skills=["Gardening"])
    req = _request(session, timebank, requester(), category)
    [top] = queries.suggestions(session, req)
    assert top.member_id == gardener.id
    text = ", ".join(top.reasons)
    assert "offers Gardening" in text
    assert "1.1 km away" in text
    assert "free on Tuesday mornings" in text
    assert "has not been asked this week" in text


def test_hard_filters_exclude_the_wrong_people(session, timebank, volunteer, requester, category):
    who = requester(availability=TUESDAY_MORNING)
    _, good = volunteer(skills=["Gardening"])
    _, parent_skill = volunteer(skills=["Home & garden"])           # parent category: fits
    volunteer(skills=["Tutoring"])                                  # wrong category
    volunteer(skills=["Gardening"], availability=SATURDAY_AFTERNOON)  # never free together
    volunteer(skills=["Gardening"], latitude=LAT + 0.5)             # 55 km away
    volunteer(skills=["Gardening"], status="suspended")             # not active
    _, blocked = volunteer(skills=["Gardening"])
    service.block_pair(session, timebank_id=timebank.id, a=who[1].id, b=blocked.id)
    req = _request(session, timebank, who, category)
    ids = {s.member_id for s in queries.suggestions(session, req, limit=50)}
    assert ids == {good.id, parent_skill.id}
    assert who[1].id not in ids


def test_requester_is_never_their_own_helper(session, timebank, volunteer, category):
    who = volunteer(skills=["Gardening"])
    req = _request(session, timebank, who, category)
    assert queries.suggestions(session, req) == []


def test_safety_check_must_be_high_enough_and_current(session, timebank, volunteer, category, make_person):
    from timebank.community.service import create_organisation

    org = create_organisation(session, timebank=timebank, name="Park Friends")
    broker, _ = make_person("broker")
    _, ok = volunteer(skills=["Gardening"], safety_check_level="enhanced", safety_check_expires=in_days(30))
    volunteer(skills=["Gardening"], safety_check_level="enhanced", safety_check_expires=in_days(-1))
    volunteer(skills=["Gardening"], safety_check_level="basic", safety_check_expires=in_days(30))
    volunteer(skills=["Gardening"])
    req = service.create_request(session, user=broker, timebank=timebank, organisation=org, title="Park planting",
                                 category_id=category("Gardening").id, safety_check_level="standard",
                                 volunteers_needed=3, latitude=LAT, longitude=LON)
    assert [s.member_id for s in queries.suggestions(session, req)] == [ok.id]


def test_remote_requests_ignore_distance(session, timebank, volunteer, requester, category):
    _, far = volunteer(skills=["Gardening"], latitude=LAT + 2)
    req = _request(session, timebank, requester(), category, remote=True)
    [top] = queries.suggestions(session, req)
    assert top.member_id == far.id and "can be done remotely" in top.reasons


def test_weights_are_tunable_per_timebank(session, timebank, volunteer, requester, category):
    _, near = volunteer(skills=["Home & garden"], latitude=LAT + 0.001)  # broader fit, next door
    _, exact = volunteer(skills=["Gardening"], latitude=LAT + 0.08)      # exact fit, 9 km away
    req = _request(session, timebank, requester(), category)
    timebank.settings = {"matching_weights": {"category": 10, "distance": 0}}
    assert queries.suggestions(session, req)[0].member_id == exact.id
    timebank.settings = {"matching_weights": {"category": 0, "distance": 10}}
    assert queries.suggestions(session, req)[0].member_id == near.id


def test_open_commitments_lower_the_score(session, timebank, volunteer, requester, category, make_person):
    broker, _ = make_person("broker")
    _, busy = volunteer(skills=["Gardening"])
    _, free = volunteer(skills=["Gardening"])
    for i in range(3):
        other = _request(session, timebank, requester(), category, title=f"Other job {i}")
        service.propose(session, other, busy.id, by_user_id=broker.id)
    req = _request(session, timebank, requester(), category)
    ranked = queries.suggestions(session, req)
    assert [s.member_id for s in ranked] == [free.id, busy.id]
    assert "3 open commitments" in ranked[1].reasons
    assert "asked 3 times this week" in ranked[1].reasons


def test_min_age_needs_a_known_old_enough_band(session, timebank, volunteer, category, make_person):
    from timebank.community.service import create_organisation

    org = create_organisation(session, timebank=timebank, name="Youth Club")
    broker, _ = make_person("broker")
    _, adult = volunteer(skills=["Gardening"], age_band="25-34")
    volunteer(skills=["Gardening"], age_band="16-17")
    volunteer(skills=["Gardening"])
    req = service.create_request(session, user=broker, timebank=timebank, organisation=org, title="Allotment",
                                 category_id=category("Gardening").id, min_age=18, latitude=LAT, longitude=LON)
    assert [s.member_id for s in queries.suggestions(session, req)] == [adult.id]


def test_browse_and_search_listings(session, timebank, volunteer, category):
    who = volunteer(skills=[], ward="Hyde Park")
    service.create_offer(session, membership=who[1], title="Weeding and pruning", category_id=category("Gardening").id)
    service.create_offer(session, membership=who[1], title="Maths tutoring 100%", category_id=category("Tutoring").id)
    closed = service.create_offer(session, membership=who[1], title="Old pruning offer",
                                  category_id=category("Gardening").id)
    service.close_listing(session, closed, by_membership=who[1])
    titles = lambda **kw: [o.title for o in queries.list_offers(session, timebank.id, **kw)]  # noqa: E731
    assert titles(text="PRUNING") == ["Weeding and pruning"]
    assert titles(category_id=category("Home & garden").id) == ["Weeding and pruning"]
    assert titles(text="100%") == ["Maths tutoring 100%"]
    assert titles(area="hyde") == ["Maths tutoring 100%", "Weeding and pruning"]
    assert titles(area="Headingley") == []
    expired_view = queries.list_offers(session, timebank.id, now=dt.datetime.utcnow() + dt.timedelta(days=61))
    assert expired_view == []


def test_funnel_runs_to_logged_and_keeps_timestamps(session, timebank, volunteer, requester, category, make_person):
    import pytest

    from timebank.exchanges.models import Exchange
    from timebank.matching.errors import MatchWrongState

    broker, broker_m = make_person("broker")
    asker_user, asker = requester()
    _, helper = volunteer(skills=["Gardening"])
    req = _request(session, timebank, (asker_user, asker), category, estimated_minutes=90)
    match = service.propose(session, req, helper.id, by_user_id=broker.id)
    with pytest.raises(MatchWrongState):
        service.complete(session, match, by_membership=broker_m)
    service.respond(session, match, accept=True, by_membership=helper)
    service.complete(session, match, by_membership=asker)
    fields = service.prefilled_exchange(session, match)
    assert fields["minutes"] == 90 and fields["provider_membership_id"] == helper.id
    exchange = Exchange(timebank_id=timebank.id, provider_membership_id=helper.id,
                        recipient_membership_id=asker.id, minutes=90, happened_on=dt.date.today(),
                        logged_by_user_id=broker.id)
    session.add(exchange)
    session.flush()
    service.mark_logged(session, match, exchange_id=exchange.id)
    assert match.status == "logged"
    assert match.proposed_at <= match.responded_at <= match.completed_at <= match.logged_at
    assert queries.funnel(session, timebank.id)["logged"] == 1


def test_requests_a_member_could_help_with(session, timebank, volunteer, requester, category):
    _, gardener = volunteer(skills=["Gardening"])
    _, tutor = volunteer(skills=["Tutoring"])
    who = requester()
    req = _request(session, timebank, who, category)
    [(found, why)] = queries.requests_member_could_help(session, gardener)
    assert found.id == req.id and "offers Gardening" in why.reasons
    assert queries.requests_member_could_help(session, tutor) == []
    assert queries.requests_member_could_help(session, who[1]) == []


def test_candidates_are_planned_for_each_request_on_postgresql(session, timebank, volunteer, requester, category):
    """psycopg prepares a statement on its fifth run, and PostgreSQL may then plan it once for any values; the
    candidate statement asks to be planned for its own values every time (timebank/database.py), so it is never
    prepared, while the statements around it still are."""
    import pytest
    from sqlalchemy import text

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("prepared statements are psycopg's and PostgreSQL's")
    volunteer(skills=["Gardening"])
    req = _request(session, timebank, requester(), category)
    for _ in range(8):
        assert queries.suggestions(session, req)
    prepared = session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    assert not [s for s in prepared if "fits AS" in s]
    assert [s for s in prepared if "FROM offer" in s]  # the member texts: prepared as usual
