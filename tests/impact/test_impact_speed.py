"""The fast path (impact_member_month, figures by id) gives exactly the figures of the raw rows.

A random community (members, organisations, tags including an outcome area outside the mask vocabulary,
two sub-categories sharing a name, group activities, reversals in later months) is checked for periods that
are month-aligned, partial at one or both ends, inside one month and across a year boundary:

- the whole report from the roll-up equals the report from raw exchange and transfer rows (the oracle);
- every breakdown's unsuppressed minutes *and people* equal the one-statement-per-figure formulation in
  queries.py (COUNT(DISTINCT) over the period's facts, labels joined), for both sources;
- rebuild_rollups gives the impact_member_month rows the session hook wrote.
"""
import datetime as dt
import random

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.impact.fixed_community import exchange, post, reverse
from timebank.community.models import Category
from timebank.community.service import add_membership, create_organisation, create_user
from timebank.exchanges.models import Exchange
from timebank.impact import figures, queries
from timebank.impact.report import build_report, previous_period
from timebank.impact.rollups import rebuild_rollups

D = dt.date
PERIODS = [(D(2025, 1, 1), D(2025, 3, 31)), (D(2025, 1, 1), D(2025, 1, 31)), (D(2025, 1, 15), D(2025, 3, 10)),
           (D(2025, 2, 3), D(2025, 2, 20)), (D(2024, 12, 20), D(2025, 2, 28)), (D(2025, 2, 1), D(2025, 4, 12)),
           (D(2024, 11, 1), D(2025, 4, 30)),
           # whole years: read from impact_member_year (a calendar year, an April-March year, and a year with
           # months either side)
           (D(2025, 1, 1), D(2025, 12, 31)), (D(2024, 4, 1), D(2025, 3, 31)), (D(2023, 12, 15), D(2025, 2, 28))]
TYPES = ("co_commissioning", "co_design", "co_delivery", "co_assessment")
AREAS = ("community_safety", "public_health", "social_care", "other", "allotments")  # the last one is custom


def random_community(session, timebank, seed: int) -> None:
    rng = random.Random(seed)
    tb = timebank
    tb.settings = {"outcome_areas": ["allotments"]}
    parents = [Category(timebank_id=tb.id, name=f"Parent {seed} {i}") for i in range(2)]
    session.add_all(parents)
    session.flush()
    twins = [Category(timebank_id=tb.id, name="Shopping", parent_id=p.id) for p in parents]  # same name twice
    session.add_all(twins)
    session.flush()
    categories = [None, parents[0].id, twins[0].id, twins[1].id]
    people = []
    for i in range(rng.randint(3, 7)):
        user = create_user(session, email=f"p{i}-{seed}@example.test", display_name=f"P{i}")
        people.append(add_membership(session, user=user, timebank=tb, joined_on=D(2024, 10, 1) + dt.timedelta(
            days=rng.randrange(200)), ward=rng.choice(["North", "South", None]),
                                     demographics_consent=rng.random() < 0.7, age_band=rng.choice(["25-34", "65+"]),
                                     gender=rng.choice(["female", "male", None])))
    orgs = [create_organisation(session, timebank=tb, name=f"Org {seed} {j}", kind="charity") for j in range(2)]
    from timebank.ledger.service import system_account

    issuance = system_account(session, tb.id, "issuance").id
    for account_id in [org.account_id for org in orgs] + [person.account_id for person in people]:
        post(session, tb.id, "adjustment", [(issuance, -10_000), (account_id, 10_000)], D(2024, 10, 1))
    logger = people[0].user
    done = []
    for _ in range(rng.randint(5, 30)):
        on = D(2024, 11, 1) + dt.timedelta(days=rng.randrange(180))
        tags = {"coproduction_type": rng.choice(TYPES), "outcome_area": rng.choice(AREAS),
                "collective": rng.random() < 0.3, "substitutive": rng.random() < 0.5,
                "category_id": rng.choice(categories)}
        roll = rng.random()
        if roll < 0.7:
            a, b = rng.sample(people, 2)
            done.append(exchange(session, tb, a, b, rng.choice((15, 60, 90)), on, logger=logger, **tags))
        else:  # a member helps an organisation (person-to-agency), or the organisation helps a member
            member, org = rng.choice(people), rng.choice(orgs)
            minutes = rng.choice((30, 120))
            if roll < 0.85:
                legs, sides = [(org.account_id, -minutes), (member.account_id, minutes)], {
                    "provider_membership_id": member.id, "recipient_organisation_id": org.id}
            else:
                legs, sides = [(member.account_id, -minutes), (org.account_id, minutes)], {
                    "provider_organisation_id": org.id, "recipient_membership_id": member.id}
            transfer = post(session, tb.id, "group_activity", legs, on)
            row = Exchange(timebank_id=tb.id, kind="p2a", minutes=minutes, happened_on=on, status="confirmed",
                           transfer_id=transfer.id, logged_by_user_id=logger.id, extra={}, **sides, **tags)
            session.add(row)
            session.flush()
            done.append(row)
    for row in rng.sample(done, len(done) // 5):
        reverse(session, row, min(D(2025, 4, 30), row.happened_on + dt.timedelta(days=rng.randrange(0, 70))))


def member_month_rows(session, timebank_id):
    return sorted(tuple(str(v) for v in r) for r in session.execute(text(
        "SELECT month, membership_id, active, gave, received, given_minutes, first_on, tag_mask "
        "FROM impact_member_month WHERE timebank_id = :tb"), {"tb": timebank_id}))


def member_year_rows(session, timebank_id):
    return sorted(tuple(str(v) for v in r) for r in session.execute(text(
        "SELECT starts_on, membership_id, active, gave, received, given_minutes, first_on, tag_mask, category_mask, "
        "month_mask "
        "FROM impact_member_year WHERE timebank_id = :tb"), {"tb": timebank_id}))


def member_first_rows(session, timebank_id):
    return sorted(tuple(str(v) for v in r) for r in session.execute(text(
        "SELECT membership_id, first_on FROM impact_member_first WHERE timebank_id = :tb"), {"tb": timebank_id}))


def check(session, timebank):
    ids = [timebank.id]
    for start, end in PERIODS:
        rollup = build_report([timebank], start, end, source="rollup")
        assert rollup == build_report([timebank], start, end, source="raw"), (start, end)
        # By year: an April-March year's trend has two calendar-year buckets (read from month_mask bits).
        by_year = build_report([timebank], start, end, source="rollup", group_by="year")["trend"]
        assert by_year == build_report([timebank], start, end, source="raw", group_by="year")["trend"], (start, end)
        for source in ("rollup", "raw"):
            now = figures.period_figures(session, ids, start, end, source=source, previous=previous_period(start, end))
            for name in queries.DIMENSIONS:
                expected = queries.breakdown(session, ids, start, end, name, source)
                assert sorted(now["breakdowns"][name], key=str) == sorted(expected, key=str), (name, start, end)
            head = queries.headline(session, ids, start, end, source)
            assert (now["members_active"], now["members_gave_and_received"], now["organisations_taking_part"]) == (
                head["members_active"], head["members_gave_and_received"], head["organisations_taking_part"])
    return rollup


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(seed=st.integers(0, 2**31))
def test_property_fast_path_equals_raw_rows_on_a_random_community(session, timebank, seed):
    savepoint = session.begin_nested()
    try:
        random_community(session, timebank, seed)
        check(session, timebank)
        kept = (member_month_rows(session, timebank.id), member_year_rows(session, timebank.id),
                member_first_rows(session, timebank.id))
        assert kept[1] and kept[2], "the random community has year rows and first days"
        rebuild_rollups(session, timebank.id)
        assert (member_month_rows(session, timebank.id), member_year_rows(session, timebank.id),
                member_first_rows(session, timebank.id)) == kept
    finally:
        savepoint.rollback()


def test_same_named_categories_count_a_person_once_and_custom_areas_count(session, timebank, make_person):
    random_community(session, timebank, 7)
    _user, a = make_person(joined_on=D(2024, 1, 1))
    _user, b = make_person(joined_on=D(2024, 1, 1))
    twins = session.query(Category).filter_by(timebank_id=timebank.id, name="Shopping").all()
    assert len(twins) == 2
    for twin, on in zip(twins, (D(2025, 6, 3), D(2025, 6, 20))):
        exchange(session, timebank, a, b, 60, on, logger=a.user, category_id=twin.id, outcome_area="allotments",
                 coproduction_type="co_design")
    june = figures.period_figures(session, [timebank.id], D(2025, 6, 1), D(2025, 6, 30))
    assert {r["label"]: r["people"] for r in june["breakdowns"]["category"]} == {"Shopping": 2}
    assert {r["label"]: r["people"] for r in june["breakdowns"]["outcome_area"]} == {"allotments": 2}
    assert {r["label"]: r["minutes"] for r in june["breakdowns"]["category"]} == {"Shopping": 120}
    check(session, timebank)


def test_month_split():
    assert figures.month_split(D(2025, 1, 1), D(2025, 12, 31)) == ((D(2025, 1, 1), D(2025, 12, 1)), [])
    assert figures.month_split(D(2024, 1, 2), D(2024, 12, 31)) == ((D(2024, 2, 1), D(2024, 12, 1)),
                                                                   [(D(2024, 1, 2), D(2024, 1, 31))])
    assert figures.month_split(D(2025, 1, 15), D(2025, 3, 10)) == ((D(2025, 2, 1), D(2025, 2, 1)),
                                                                   [(D(2025, 1, 15), D(2025, 1, 31)),
                                                                    (D(2025, 3, 1), D(2025, 3, 10))])
    assert figures.month_split(D(2025, 2, 3), D(2025, 3, 20)) == (None, [(D(2025, 2, 3), D(2025, 3, 20))])
    assert figures.month_split(D(2024, 2, 1), D(2024, 2, 29)) == ((D(2024, 2, 1), D(2024, 2, 1)), [])


def test_categories_sharing_a_mask_bit_are_counted_from_the_facts(session, timebank, make_person):
    created = [Category(timebank_id=timebank.id, name=f"Many {i}") for i in range(queries.CATEGORY_BITS + 1)]
    session.add_all(created)
    session.flush()
    by_bit = {}
    for category in created:  # 63 ids, 62 bits: at least two share one
        by_bit.setdefault(queries.category_bit(category.id), []).append(category)
    first, second = next(pair for pair in by_bit.values() if len(pair) > 1)[:2]
    people = [make_person(joined_on=D(2024, 1, 1))[1] for _ in range(3)]
    exchange(session, timebank, people[0], people[1], 60, D(2025, 5, 2), logger=people[0].user, category_id=first.id)
    exchange(session, timebank, people[2], people[1], 30, D(2025, 5, 9), logger=people[0].user, category_id=second.id)
    may = figures.period_figures(session, [timebank.id], D(2025, 5, 1), D(2025, 5, 31))
    assert {r["label"]: (r["minutes"], r["people"]) for r in may["breakdowns"]["category"]} == {
        first.name: (60, 2), second.name: (30, 2)}
    for source in ("rollup", "raw"):
        assert figures.period_figures(session, [timebank.id], D(2025, 5, 1), D(2025, 5, 31), source=source)[
            "breakdowns"]["category"] == queries.breakdown(session, [timebank.id], D(2025, 5, 1), D(2025, 5, 31),
                                                           "category", source)
