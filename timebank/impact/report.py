"""Assemble the whole impact report (a plain, JSON-ready dict) from the aggregate queries."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from timebank.community.models import TimeBank
from timebank.impact import queries, suppression
from timebank.impact.db import reports_session
from timebank.impact.valuation import value_of

HEADLINE_FIELDS = ("minutes_delivered", "hours_delivered", "exchanges", "members_total", "members_active",
                   "members_new", "organisations_taking_part", "members_gave_and_received")
UNMET_NEED_NOTE = ("Not available yet: unmet need (requests open longer than N days, time to match) needs the "
                   "matching capability, which is not part of this build.")


def previous_period(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """The period of equal length just before [start, end]."""
    days = (end - start).days + 1
    return start - dt.timedelta(days=days), start - dt.timedelta(days=1)


def _suppressed_breakdown(rows: list[dict]) -> list[dict]:
    people = suppression.suppress_counts({r["label"]: r["people"] for r in rows})
    return [{"label": r["label"], "minutes": r["minutes"], "hours": round(r["minutes"] / 60, 1),
             "people": people[r["label"]], "people_display": suppression.display(people[r["label"]])}
            for r in rows]


def build_report(timebanks: list[TimeBank], start: dt.date, end: dt.date, group_by: str = "month") -> dict:
    """The figures for these time banks and period, with the previous period for comparison.

    People breakdowns are suppressed (see suppression.py); no person is ever named.
    """
    ids = [tb.id for tb in timebanks]
    prev_start, prev_end = previous_period(start, end)
    with reports_session() as session:
        head = queries.headline(session, ids, start, end)
        prev = queries.headline(session, ids, prev_start, prev_end)
        breakdowns = queries.all_breakdowns(session, ids, start, end)
        report = {
            "timebanks": [{"slug": tb.slug, "name": tb.name} for tb in timebanks],
            "period": {"from": start.isoformat(), "to": end.isoformat()},
            "previous_period": {"from": prev_start.isoformat(), "to": prev_end.isoformat()},
            "headline": head,
            "previous": prev,
            "change": {k: (round(head[k] - prev[k], 1) if isinstance(head[k], float) else head[k] - prev[k])
                       for k in HEADLINE_FIELDS},
            "group_by": group_by,
            "trend": queries.trend(session, ids, start, end, group_by),
            "breakdowns": {
                name: {"title": title, "rows": _suppressed_breakdown(breakdowns[name])}
                for name, (title, _expr) in queries.DIMENSIONS.items()
            },
            "engagement": queries.engagement(session, ids, start, end, prev_start, prev_end, head),
            "value": value_of({ids[0]: head["minutes_delivered"]} if len(ids) == 1 else
                              queries.minutes_by_timebank(session, ids, start, end),
                              {tb.id: tb.settings or {} for tb in timebanks}, start, end),
            "unmet_need": {"available": False, "note": UNMET_NEED_NOTE},
            "reconciliation": {"ledger_minutes_delivered": queries.ledger_minutes_delivered(session, ids, start,
                                                                                             end)},
            "closed": None,
        }
    return report


def timebanks_by_ids(session, ids) -> list[TimeBank]:
    return list(session.scalars(select(TimeBank).where(TimeBank.id.in_(list(ids))).order_by(TimeBank.slug)))
