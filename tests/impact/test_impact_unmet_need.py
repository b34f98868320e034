"""Unmet need and time to match, from the matching tables, against hand-computed values (fixed_community.py)."""
import datetime as dt

from tests.impact.fixed_community import Q1, build
from timebank.impact import unmet
from timebank.impact.report import build_report

D = dt.date


def test_requests_open_longer_than_30_days_by_category_and_area(session):
    c = build(session)
    figures = unmet.unmet_need(session, [c["timebank"].id], *Q1, days=30)
    # Open at 31 March, posted before 2 March, no match accepted by then: R1, R3 (declined match), R8 (accepted
    # in April). Not R2, R5, R7 (matched), R4 (12 days), R6 (closed), R9 (expired).
    assert figures["open_longer_than_days"] == 3
    assert figures["by_category"] == [{"label": "Gardening", "requests": 2}, {"label": "Befriending", "requests": 1}]
    assert figures["by_area"] == [{"label": "North", "requests": 2}, {"label": "South", "requests": 1}]


def test_a_longer_threshold_counts_fewer_requests(session):
    c = build(session)
    # 60 days before 1 April is 31 January: only R1 (5 January) remains; R3 was posted on 1 February.
    assert unmet.unmet_need(session, [c["timebank"].id], *Q1, days=60)["open_longer_than_days"] == 1


def test_time_to_match_median_and_90th_percentile(session):
    c = build(session)
    figures = unmet.unmet_need(session, [c["timebank"].id], *Q1)
    # Posted in Q1: R1, R2, R3, R4, R5, R7, R8, R9 (8). Matched by 31 March: R2 2 days, R5 10, R7 54.
    assert (figures["requests_posted"], figures["requests_matched"]) == (8, 3)
    assert figures["days_to_match_median"] == 10.0
    assert figures["days_to_match_p90"] == 54.0


def test_median_of_an_even_number_is_the_mean_of_the_middle_two(session):
    c = build(session)
    # Through April R8 is matched too (40 days after 1 March): 2, 10, 40, 54 -> median 25, p90 54.
    figures = unmet.unmet_need(session, [c["timebank"].id], D(2025, 1, 1), D(2025, 4, 30))
    assert figures["requests_matched"] == 4
    assert figures["days_to_match_median"] == 25.0 and figures["days_to_match_p90"] == 54.0


def test_report_shows_unmet_need_with_small_numbers_suppressed(session):
    c = build(session)
    c["timebank"].settings = {**c["timebank"].settings, "impact": {**c["timebank"].settings["impact"],
                                                                   "unmet_need_days": 60}}
    session.flush()
    report = build_report([c["timebank"]], *Q1)
    u = report["unmet_need"]
    assert u["available"] is True and u["days"] == 60 and u["open_longer_than_days"] == 1
    assert [r["requests_display"] for r in u["by_area"]] == ["fewer than 5"]
