"""Closing a period freezes its report; later corrections show in the period they are made."""
import datetime as dt
import json

import pytest

from tests.impact.fixed_community import Q1, exchange, reverse, build
from timebank.impact.errors import PeriodAlreadyClosed
from timebank.impact.service import close_period, content_hash, get_report

D = dt.date
Q2 = (D(2025, 4, 1), D(2025, 6, 30))


def test_closed_period_is_frozen_and_corrections_show_when_made(session):
    c = build(session)
    tb = c["timebank"]
    closed = close_period(session, timebank=tb, start=Q1[0], end=Q1[1], closed_by_user_id=c["a"].user_id)
    assert closed.content_hash == content_hash(closed.report_json)
    frozen_hash = closed.content_hash

    # Later: a reversal of a February exchange made in April, and an exchange back-dated into March.
    reverse(session, c["ex2"], D(2025, 4, 10))
    exchange(session, tb, c["d"], c["c"], 45, D(2025, 3, 20), logger=c["a"].user)
    session.flush()

    q1 = get_report(session, [tb], *Q1)
    assert q1["headline"]["minutes_delivered"] == 780
    assert q1["closed"]["content_hash"] == frozen_hash
    assert "Corrections made later appear in the period in which they were made" in q1["closed"]["note"]
    assert json.loads(closed.report_json)["headline"]["minutes_delivered"] == 780

    q2 = get_report(session, [tb], *Q2)
    assert q2["closed"] is None
    assert q2["headline"]["minutes_delivered"] == -60  # the April correction of a Q1 exchange


def test_a_period_closes_once(session):
    c = build(session)
    close_period(session, timebank=c["timebank"], start=Q1[0], end=Q1[1])
    with pytest.raises(PeriodAlreadyClosed):
        close_period(session, timebank=c["timebank"], start=Q1[0], end=Q1[1])


def test_tampered_frozen_report_is_detected(session):
    c = build(session)
    closed = close_period(session, timebank=c["timebank"], start=Q1[0], end=Q1[1])
    closed.report_json = closed.report_json.replace('"minutes_delivered":780', '"minutes_delivered":999')
    session.flush()
    with pytest.raises(RuntimeError, match="content hash"):
        get_report(session, [c["timebank"]], *Q1)
