"""The roll-up (impact_fact) gives exactly the figures computed from raw exchange and transfer rows.

The raw computation (source="raw") is the oracle; the report reads the roll-up. The roll-up is kept by a
session hook when services write exchanges and reversals, and rebuilt from raw rows by rebuild_rollups.
"""
import datetime as dt

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from tests.impact.fixed_community import Q1, build, reverse
from timebank.community.service import create_organisation
from timebank.errors import DomainError
from timebank.exchanges import service
from timebank.impact.report import build_report, previous_period
from timebank.impact.rollups import rebuild_rollups, set_previous_days

D = dt.date
PERIODS = [Q1, (D(2024, 10, 1), D(2024, 12, 31)), (D(2024, 1, 1), D(2025, 12, 31)), (D(2025, 1, 20), D(2025, 1, 20)),
           (D(2025, 2, 10), D(2025, 3, 5)), (D(2025, 3, 6), D(2025, 6, 30))]


def both(timebank, start, end):
    rollup = build_report([timebank], start, end, source="rollup")
    raw = build_report([timebank], start, end, source="raw")
    return rollup, raw


def fact_rows(session, timebank_id):
    return sorted(tuple(r) for r in session.execute(text(
        "SELECT exchange_id, on_date, sign, active, side, membership_id, partner_key, organisation_id, minutes, kind, "
        "coproduction_type, outcome_area, collective, substitutive, category_id, pair_prev_on, org_prev_on "
        "FROM impact_fact "
        "WHERE timebank_id = :tb"), {"tb": timebank_id}))


def test_report_from_rollup_equals_report_from_raw_rows(session):
    c = build(session)
    for start, end in PERIODS:
        rollup, raw = both(c["timebank"], start, end)
        assert rollup == raw, (start, end)
    # and the figures are not empty: the comparison means something
    assert build_report([c["timebank"]], *Q1)["headline"]["minutes_delivered"] == 780


def test_report_figures_equal_the_per_figure_queries(session):
    """The report's grouped statements (figures.py) against the one-figure-per-query formulation (queries.py)."""
    from timebank.impact import queries

    c = build(session)
    ids = [c["timebank"].id]
    for start, end in PERIODS:
        for source in ("rollup", "raw"):
            report = build_report([c["timebank"]], start, end, source=source)
            assert report["headline"] == queries.headline(session, ids, start, end, source)
            for name in queries.DIMENSIONS:
                rows = [{k: r[k] for k in ("label", "minutes")} for r in report["breakdowns"][name]["rows"]
                        if r["minutes"] or r["previous_minutes"] == 0]
                expected = [{k: r[k] for k in ("label", "minutes")}
                            for r in queries.breakdown(session, ids, start, end, name, source)]
                assert sorted(rows, key=str) == sorted(expected, key=str), (name, start, end)
            per_query = queries.engagement(session, ids, start, end, *previous_period(start, end),
                                           report["headline"], source)
            assert report["engagement"] == per_query, (start, end)
            trend = queries.trend(session, ids, start, end, "month", source)
            assert report["trend"] == trend


def test_rollup_follows_a_later_reversal_and_a_member_moving_ward(session):
    c = build(session)
    reverse(session, c["ex1"], D(2025, 4, 2))  # January's 120 minutes are corrected in April
    c["a"].ward = "East"  # labels are joined at read time: no stale roll-up
    session.flush()
    for start, end in PERIODS + [(D(2025, 4, 1), D(2025, 4, 30))]:
        rollup, raw = both(c["timebank"], start, end)
        assert rollup == raw, (start, end)
    april = build_report([c["timebank"]], D(2025, 4, 1), D(2025, 4, 30))
    assert april["headline"]["minutes_delivered"] == -120
    wards = {r["label"] for r in build_report([c["timebank"]], *Q1)["breakdowns"]["ward"]["rows"]}
    assert "East" in wards


def daily_rows(session, timebank_id):
    return sorted(tuple(r) for r in session.execute(text(
        "SELECT on_date, dimension, value, minutes, exchanges, events FROM impact_daily WHERE timebank_id = :tb"),
        {"tb": timebank_id}))


def test_rebuild_gives_the_rows_the_hook_wrote(session):
    c = build(session)
    tb_id = c["timebank"].id
    kept, kept_daily = fact_rows(session, tb_id), daily_rows(session, tb_id)
    assert kept and kept_daily  # the hook wrote rows while the community was built
    for table in ("impact_fact", "impact_daily"):
        session.execute(text(f"DELETE FROM {table} WHERE timebank_id = :tb"), {"tb": tb_id})
    assert build_report([c["timebank"]], *Q1)["headline"]["minutes_delivered"] == 0  # the report reads the roll-up
    assert rebuild_rollups(session, tb_id) == len(kept)
    assert fact_rows(session, tb_id) == kept
    assert daily_rows(session, tb_id) == kept_daily


def daily_matches_facts(session, timebank_id):
    from timebank.impact.queries import daily_from_facts_sql

    regrouped = sorted(tuple(r) for r in session.execute(text(daily_from_facts_sql(
        "impact_fact", "p.timebank_id = :tb")), {"tb": timebank_id}))
    stored = sorted(tuple(r) for r in session.execute(text(
        "SELECT timebank_id, on_date, dimension, value, minutes, exchanges, events FROM impact_daily "
        "WHERE timebank_id = :tb"), {"tb": timebank_id}))
    return stored, regrouped


def test_a_retagged_exchange_leaves_no_empty_daily_row_behind(session):
    """impact_daily moves by differences; the row an exchange leaves (its old outcome area) must go, not stay at 0."""
    from timebank.exchanges.models import Exchange

    c = build(session)
    tb = c["timebank"]
    row = session.scalar(select(Exchange).where(Exchange.timebank_id == tb.id, Exchange.happened_on == D(2025, 2, 20)))
    old_area = row.outcome_area
    row.outcome_area = "housing"
    session.flush()
    stored, regrouped = daily_matches_facts(session, tb.id)
    assert stored == regrouped
    assert not [r for r in stored if r[2] == "outcome_area" and r[3] == old_area and str(r[1]) == "2025-02-20"]
    assert [r for r in stored if r[2] == "outcome_area" and r[3] == "housing" and str(r[1]) == "2025-02-20"]


def test_rebuild_rollups_command(app, committed_db):
    from timebank.extensions import db

    c = build(db.session)
    db.session.commit()
    db.session.execute(text("DELETE FROM impact_fact"))
    db.session.execute(text("DELETE FROM impact_daily"))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["reports", "rebuild-rollups"])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output
    db.session.expire_all()
    rollup, raw = both(c["timebank"], *Q1)
    assert rollup == raw and rollup["headline"]["minutes_delivered"] == 780


ACTIONS = st.lists(st.tuples(st.sampled_from(["log", "confirm", "record", "correct", "activity", "tag",
                                                               "dispute", "settle", "reassign"]),
                             st.integers(0, 3), st.integers(0, 3), st.integers(1, 300), st.integers(0, 60)),
                   min_size=1, max_size=14)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(actions=ACTIONS)
def test_property_rollup_equals_raw_whatever_the_services_do(session, timebank, make_person, actions):
    savepoint = session.begin_nested()
    try:
        today = dt.date.today()
        people = [make_person(ward=w, demographics_consent=True, age_band="25-34", gender=g, joined_on=today -
                              dt.timedelta(days=90)) for w, g in (("N", "female"), ("S", "male"), ("N", None),
                                                                  ("E", "female"))]
        broker, _ = make_person("broker")
        org = create_organisation(session, timebank=timebank, name=f"Org {len(actions)}", kind="charity")
        from timebank.ledger.service import post_transfer, system_account

        post_transfer(session, timebank_id=timebank.id, kind="adjustment", effective_date=today,
                      postings=[(system_account(session, timebank.id, "issuance").id, -6000),
                                (org.account_id, 6000)])
        logged, confirmed = [], []
        for action, i, j, minutes, days_ago in actions:
            on = today - dt.timedelta(days=days_ago)
            (user_i, m_i), (_user_j, m_j) = people[i], people[j]
            try:
                with session.begin_nested():
                    if action == "log":
                        logged.append(service.log_exchange(session, user=user_i, provider_id=m_i.id,
                                                           recipient_id=m_j.id, minutes=minutes, happened_on=on))
                    elif action == "confirm" and logged:
                        e = logged[minutes % len(logged)]
                        service.confirm_exchange(session, e.id, user=people[j][0])
                        confirmed.append(e)
                    elif action == "record":
                        confirmed.append(service.record_exchange(
                            session, user=broker, provider_id=m_i.id, recipient_id=m_j.id, minutes=minutes,
                            happened_on=on, tags={"coproduction_type": "co_design", "substitutive": minutes % 2 == 0}))
                    elif action == "correct" and confirmed:
                        e = confirmed[minutes % len(confirmed)]
                        service.correct_exchange(session, e.id, user=broker, reason="wrong",
                                                 replacement={"minutes": max(1, e.minutes - 10)} if i % 2 else None)
                    elif action == "activity":
                        service.record_group_activity(
                            session, user=broker, organisation_id=org.id, title="Litter pick", happened_on=on,
                            participants=[(m_i.id, minutes), *([(m_j.id, 60)] if j != i else [])])
                    elif action == "dispute" and logged:  # pending -> disputed: still no fact rows
                        e = logged[minutes % len(logged)]
                        service.dispute_exchange(session, e.id, user=people[j][0], reason="Not what happened")
                    elif action == "settle" and logged:  # disputed -> confirmed by a broker: its first fact rows
                        e = logged[minutes % len(logged)]
                        confirmed.append(service.resolve_dispute(session, e.id, user=broker, action="confirm"))
                    elif action == "reassign" and confirmed:  # the rows move to another member: some must go
                        e = confirmed[minutes % len(confirmed)]
                        if e.provider_membership_id is not None and m_i.id != e.recipient_membership_id:
                            e.provider_membership_id = m_i.id
                            session.flush()
                    elif action == "tag" and logged:
                        e = logged[minutes % len(logged)]
                        e.outcome_area = "housing"
                        session.flush()
            except DomainError:
                pass
        for start, end in [(today - dt.timedelta(days=30), today), (today - dt.timedelta(days=61), today),
                           (today - dt.timedelta(days=10), today - dt.timedelta(days=3))]:
            rollup, raw = both(timebank, start, end)
            assert rollup == raw
        # impact_daily is kept by adding differences: it must equal a full regroup of the facts
        stored, regrouped = daily_matches_facts(session, timebank.id)
        assert stored == regrouped
        # The previous-day columns are kept pair by pair: they must equal a fill of the whole time bank.
        kept = fact_rows(session, timebank.id)
        set_previous_days(session.connection(), timebank_id=timebank.id)
        assert fact_rows(session, timebank.id) == kept
    finally:
        savepoint.rollback()


@pytest.mark.parametrize("pairs", [((0, 1), (2, 3)), ((0, 1), (0, 2))], ids=["other members", "a shared member"])
def test_two_transactions_writing_the_same_day_keep_the_daily_rollup_exact(committed_db, pairs):
    """Two writers refresh the same (time bank, day) at once: the second waits for the first and regroups after it.

    Before the per-day lock, the second writer's regroup inserted the day's rows while the first writer's
    uncommitted ones held the same keys: a unique violation (a 500) under load, found by bench/load.py. With a
    member in both exchanges, the second writer also regroups that member's month, year and first-day rows after
    the first's: the kept rows must equal a rebuild. (Here the ledger's lock on the shared account and the daily
    rows' locks already serialise the two; the advisory locks of rollups._lock_keys are for writes that take
    neither, such as a re-tag.)
    """
    import threading

    from sqlalchemy.orm import Session as OrmSession

    from tests.impact.fixed_community import exchange
    from timebank.community.service import add_membership, create_timebank, create_user

    engine = committed_db.engine
    with OrmSession(engine) as setup:
        tb = create_timebank(setup, slug="race", name="Race")
        people = [add_membership(setup, user=create_user(setup, email=f"r{i}@example.test", display_name=f"R{i}"),
                                 timebank=tb) for i in range(4)]
        setup.commit()
        tb_id, ids = tb.id, [p.id for p in people]
    day = D(2025, 5, 5)

    def write(session, provider_id, recipient_id, minutes):
        from timebank.community.models import Membership, TimeBank

        provider, recipient = session.get(Membership, provider_id), session.get(Membership, recipient_id)
        exchange(session, session.get(TimeBank, tb_id), provider, recipient, minutes, day, logger=provider.user)

    errors = []
    first = OrmSession(engine)
    (a, b), (c, d) = pairs
    write(first, ids[a], ids[b], 30)  # flushed: the day's roll-up rows are written but not committed

    def second():
        try:
            with OrmSession(engine) as s:
                write(s, ids[c], ids[d], 45)
                s.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.7)  # the second writer is now waiting on the first
    first.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive()
    assert errors == []
    with engine.connect() as conn:
        total = conn.execute(text("SELECT minutes, exchanges FROM impact_daily WHERE timebank_id = :tb "
                                  "AND on_date = :d AND dimension = 'total'"), {"tb": tb_id, "d": day}).one()
    assert tuple(total) == (75, 2)
    with engine.connect() as conn:  # the kept person-level rows equal a regroup from the facts
        kept = {table: sorted(tuple(map(str, r)) for r in conn.execute(text(f"SELECT * FROM {table} WHERE timebank_id = :tb"),
                                                                       {"tb": tb_id}))
                for table in ("impact_member_month", "impact_member_year", "impact_member_first")}
    with OrmSession(engine) as check:
        rebuild_rollups(check, tb_id)
        rebuilt = {table: sorted(tuple(map(str, r)) for r in check.execute(
            text(f"SELECT * FROM {table} WHERE timebank_id = :tb"), {"tb": tb_id})) for table in kept}
        check.rollback()
    assert kept == rebuilt
    assert len(kept["impact_member_first"]) == len({a, b, c, d})


def test_a_member_who_no_longer_took_part_loses_their_member_rows(session, timebank, make_person):
    """An exchange corrected in place to another provider: the first provider's month, year and first-day rows go.
    A confirmation only adds fact rows, and its regroup is an upsert; every other change deletes as well."""
    from tests.impact.test_impact_speed import member_first_rows, member_month_rows, member_year_rows

    (_, a), (_, b), (_, c) = make_person(), make_person(), make_person()
    broker, _ = make_person("broker")
    e = service.record_exchange(session, user=broker, provider_id=a.id, recipient_id=b.id, minutes=60,
                                happened_on=dt.date.today())

    def member_rows():
        return (member_month_rows(session, timebank.id), member_year_rows(session, timebank.id),
                member_first_rows(session, timebank.id))

    assert str(a.id) in {row[1] for row in member_rows()[0]}
    e.provider_membership_id = c.id
    session.flush()
    kept = member_rows()
    assert str(a.id) not in {row[1] for row in kept[0]} | {row[1] for row in kept[1]} | {row[0] for row in kept[2]}
    assert str(c.id) in {row[1] for row in kept[0]}
    rebuild_rollups(session, timebank.id)
    assert member_rows() == kept
