"""On the demo community: the dashboard's hours equal the ledger's, and the roll-up the seeder leaves equals the
raw rows (the demo builds through the services, so the session hook keeps the roll-up)."""
import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import aliased

from timebank import demo
from timebank.community.models import TimeBank
from timebank.impact.report import build_report
from timebank.impact.rollups import rebuild_rollups
from timebank.ledger.models import Posting, Transfer

D = dt.date


def _months(first: dt.date, last: dt.date):
    start = first.replace(day=1)
    while start <= last:
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        yield start, end
        start = end + dt.timedelta(days=1)


def ledger_minutes(session, timebank_id, start, end) -> int:
    """Credits of confirmed exchanges' transfers in the period, less the credits of their reversals in it."""
    delivered = session.scalar(
        select(func.coalesce(func.sum(Posting.minutes), 0)).join(Transfer, Transfer.id == Posting.transfer_id)
        .where(Transfer.timebank_id == timebank_id, Transfer.kind.in_(("exchange", "group_activity")),
               Posting.minutes > 0, Transfer.effective_date.between(start, end)))
    original = aliased(Transfer)
    reversed_ = session.scalar(
        select(func.coalesce(func.sum(Posting.minutes), 0)).join(Transfer, Transfer.id == Posting.transfer_id)
        .join(original, original.id == Transfer.reverses_transfer_id)
        .where(Transfer.timebank_id == timebank_id, Transfer.kind == "reversal",
               original.kind.in_(("exchange", "group_activity")), Posting.minutes > 0,
               Transfer.effective_date.between(start, end)))
    return int(delivered) - int(reversed_)


@pytest.fixture
def riverside(session):
    demo.load_demo(session, size="XS", seed=3, slug="riverside", echo=lambda *a, **k: None)
    session.flush()
    return session.scalar(select(TimeBank).where(TimeBank.slug == "riverside"))


def test_dashboard_hours_equal_the_ledger_on_the_demo_community(session, riverside):
    last = demo.END_DATE
    periods = list(_months(last - dt.timedelta(days=200), last)) + [(last - dt.timedelta(days=400), last)]
    total = 0
    for start, end in periods:
        report = build_report([riverside], start, end)
        expected = ledger_minutes(session, riverside.id, start, end)
        assert report["headline"]["minutes_delivered"] == expected, (start, end)
        assert report["reconciliation"]["ledger_minutes_delivered"] == expected
        total = max(total, expected)
    assert total > 0  # the demo has hours: the comparison is not between two zeros


def test_demo_rollup_equals_raw_rows_and_a_rebuild(session, riverside):
    last = demo.END_DATE
    for start, end in [(last - dt.timedelta(days=90), last), (last - dt.timedelta(days=200), last)]:
        assert build_report([riverside], start, end) == build_report([riverside], start, end, source="raw")
    query = text("SELECT exchange_id, on_date, sign, active, side, membership_id, minutes FROM impact_fact "
                 "WHERE timebank_id = :tb ORDER BY 1, 2, 3, 5")
    kept = session.execute(query, {"tb": riverside.id}).all()
    rebuild_rollups(session, riverside.id)
    assert session.execute(query, {"tb": riverside.id}).all() == kept
