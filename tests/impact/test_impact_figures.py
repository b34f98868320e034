"""Report figures against values computed by hand on the fixed community (see fixed_community.py)."""
import datetime as dt

import pytest

from tests.impact.fixed_community import Q1, build
from timebank.impact import queries
from timebank.impact.report import build_report, previous_period

D = dt.date


@pytest.fixture
def community(session):
    return build(session)


def ids(c):
    return [c["timebank"].id]


def test_headline_matches_hand_computed(session, community):
    head = queries.headline(session, ids(community), *Q1)
    # 120 + 60 + 90 + 3 x 180 (park clean-up) - 30 (December exchange reversed on 20 January)
    assert head == {"minutes_delivered": 780, "hours_delivered": 13.0, "exchanges": 5, "members_total": 5,
                    "members_active": 4, "members_new": 2, "organisations_taking_part": 1,
                    "members_gave_and_received": 3}


def test_hours_reconcile_with_ledger(session, community):
    for period in (Q1, (D(2024, 10, 1), D(2024, 12, 31)), (D(2024, 1, 1), D(2025, 12, 31))):
        head = queries.headline(session, ids(community), *period)
        assert head["minutes_delivered"] == queries.ledger_minutes_delivered(session, ids(community), *period)
    assert queries.ledger_minutes_delivered(session, ids(community), D(2024, 10, 1), D(2024, 12, 31)) == 75


def test_previous_period_and_change(session, community):
    report = build_report([community["timebank"]], *Q1)
    assert report["previous_period"] == {"from": "2024-10-01", "to": "2024-12-31"}  # the quarter before
    assert report["previous"]["minutes_delivered"] == 75
    assert report["previous"]["members_active"] == 2  # the reversed December exchange does not count
    assert report["change"]["minutes_delivered"] == 705


@pytest.mark.parametrize("period, previous", [
    ((D(2025, 1, 1), D(2025, 3, 31)), (D(2024, 10, 1), D(2024, 12, 31))),  # a quarter: the quarter before
    ((D(2025, 4, 1), D(2026, 3, 31)), (D(2024, 4, 1), D(2025, 3, 31))),  # a financial year: the year before
    ((D(2024, 3, 1), D(2024, 3, 31)), (D(2024, 2, 1), D(2024, 2, 29))),  # a month: the month before (leap year)
    ((D(2025, 1, 1), D(2025, 12, 31)), (D(2024, 1, 1), D(2024, 12, 31))),  # not 2024-01-02: whole months
    ((D(2025, 1, 10), D(2025, 1, 19)), (D(2024, 12, 31), D(2025, 1, 9))),  # other periods: as many days
    ((D(2025, 2, 1), D(2025, 2, 20)), (D(2025, 1, 12), D(2025, 1, 31))),
])
def test_previous_period_is_as_many_whole_months_or_days(period, previous):
    assert previous_period(*period) == previous


def test_trend_by_month(session, community):
    rows = queries.trend(session, ids(community), *Q1)
    assert [(r["period"], r["minutes"], r["exchanges"], r["members_active"], r["members_new"]) for r in rows] == [
        ("2025-01", 90, 0, 2, 1), ("2025-02", 150, 2, 4, 1), ("2025-03", 540, 3, 3, 0)]


@pytest.mark.parametrize("dimension,expected", [
    ("coproduction_type", {"co_delivery": (690, 4), "co_design": (90, 2)}),
    ("outcome_area", {"social_care": (90, 2), "public_health": (60, 2), "other": (90, 2),
                      "local_environment": (540, 3)}),
    ("collective", {"collective": (540, 3), "individual": (240, 4)}),
    ("substitutive", {"substitutive": (90, 2), "additive": (690, 4)}),
    ("kind", {"p2p": (240, 4), "p2a": (540, 3)}),
    ("ward", {"North": (330, 2), "South": (450, 2)}),
    ("age_band", {"25-34": (450, 2), "65+": (60, 1), "not stated": (270, 1)}),
    ("gender", {"female": (450, 2), "male": (60, 1), "not stated": (270, 1)}),
    ("category", {"Befriending": (90, 2), "not stated": (690, 4)}),
    ("organisation", {"Council Parks": (540, 3), "no organisation": (240, 4)}),
])
def test_breakdowns(session, community, dimension, expected):
    rows = queries.breakdown(session, ids(community), *Q1, dimension)
    assert {r["label"]: (r["minutes"], r["people"]) for r in rows} == expected


def test_consent_withheld_demographics_are_not_stated(session, community):
    # C recorded an age band and gender but did not consent: they appear only as "not stated".
    rows = queries.breakdown(session, ids(community), *Q1, "age_band")
    assert "35-44" not in {r["label"] for r in rows}


def test_engagement(session, community):
    report = build_report([community["timebank"]], *Q1)
    e = report["engagement"]
    assert e["share_active"] == 0.8
    assert (e["members_active_previous_period"], e["members_retained"], e["retention"]) == (2, 2, 1.0)
    assert e["exchanges_per_active_member"] == 1.25
    assert e["distinct_partners_per_member"] == 1.75
    assert e["members_no_trade_yet"] == 1
    assert e["days_joining_to_first_exchange_avg"] == 30.0  # C: 41 days, D: 19 days
    assert (e["pot_donations"], e["pot_donations_minutes"], e["pot_grants"], e["pot_grants_minutes"]) == (1, 60, 1, 30)


def test_value_range_and_value_per_funding(session, community):
    value = build_report([community["timebank"]], *Q1)["value"]
    assert [(v["level"], v["value"], v["rate_per_hour"], v["source"], v["year"]) for v in value["levels"]] == [
        ("low", "130.00", "10.00", "Minimum wage", 2025), ("central", "163.80", "12.60", "Real living wage", 2025),
        ("high", "260.00", "20.00", "Average wage", 2025)]
    assert value["funding"] == "900.00"  # 3650 a year, 90 of 365 days
    assert value["levels"][1]["value_per_unit_of_funding"] == "0.18"


def test_people_breakdowns_are_suppressed_and_unnamed(session, community):
    report = build_report([community["timebank"]], *Q1)
    wards = {r["label"]: r for r in report["breakdowns"]["ward"]["rows"]}
    assert wards["North"]["people"] is None and wards["North"]["people_display"] == "fewer than 5"
    assert wards["North"]["hours"] == 5.5
    text = str(report)
    for name in ("Person a", "Person b", "a-fixed@example.test"):
        assert name not in text


def test_no_rates_configured_says_so(session):
    c = build(session, slug="norates", settings={})
    value = build_report([c["timebank"]], *Q1)["value"]
    assert value["configured"] is False and value["levels"] == [] and "No valuation rates" in value["note"]


def test_unmet_need_is_read_from_the_matching_tables(session, community):
    unmet = build_report([community["timebank"]], *Q1)["unmet_need"]
    assert unmet["available"] is True and unmet["open_longer_than_days"] == 3  # see test_impact_unmet_need.py


def test_breakdown_rows_carry_the_previous_period_and_the_change(session, community):
    report = build_report([community["timebank"]], *Q1)
    rows = {r["label"]: r for r in report["breakdowns"]["outcome_area"]["rows"]}
    # Q4 2024: 45 minutes public health (B for A); 30 minutes social care (A for B, reversed in January)
    assert (rows["public_health"]["previous_minutes"], rows["public_health"]["minutes"]) == (45, 60)
    assert rows["public_health"]["change_hours"] == 0.2  # (60 - 45) / 60, one decimal
    assert rows["social_care"]["previous_minutes"] == 30 and rows["social_care"]["minutes"] == 90
    # the reversed December exchange leaves nobody active in social care in Q4
    assert rows["social_care"]["previous_people"] == 0
    # small counts stay hidden in the previous column, and a change is shown only between shown counts
    assert rows["public_health"]["previous_people_display"] == "fewer than 5"
    assert rows["public_health"]["change_people"] is None and rows["public_health"]["change_people_display"] == "not shown"


def test_two_timebanks_add_up(session, community):
    other = build(session, slug="second")
    both = queries.headline(session, [community["timebank"].id, other["timebank"].id], *Q1)
    assert both["minutes_delivered"] == 1560 and both["members_total"] == 10


def test_single_statement_breakdowns_equal_the_per_dimension_queries(session, community):
    together = queries.all_breakdowns(session, ids(community), *Q1)
    for dimension in queries.DIMENSIONS:
        assert together[dimension] == queries.breakdown(session, ids(community), *Q1, dimension)
