"""Assemble the whole impact report (a plain, JSON-ready dict) from the aggregate queries."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from timebank.community.models import TimeBank
from timebank.impact import figures, queries, suppression, unmet
from timebank.impact.db import beside, reports_session
from timebank.impact.valuation import value_of

HEADLINE_FIELDS = ("minutes_delivered", "hours_delivered", "exchanges", "members_total", "members_active",
                   "members_new", "organisations_taking_part", "members_gave_and_received")

def previous_period(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """The period just before [start, end]: as many whole months when the period is whole months (a quarter is
    compared with the quarter before, a calendar or financial year with the year before), else as many days."""
    if start.day == 1 and (end + dt.timedelta(days=1)).day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        first = start.year * 12 + start.month - 1 - months
        return dt.date(first // 12, first % 12 + 1, 1), start - dt.timedelta(days=1)
    days = (end - start).days + 1
    return start - dt.timedelta(days=days), start - dt.timedelta(days=1)


def _suppressed_breakdown(rows: list[dict], previous: list[dict] | None = None) -> list[dict]:
    """Rows with people suppressed (primary and secondary), each with the previous period's figures and the change.

    Previous-period people are suppressed on their own column; a change in people is shown only when
    both figures are shown, so it can never reveal a hidden count.
    """
    previous = previous or []
    before = {r["label"]: r for r in previous}
    shown_now = {r["label"] for r in rows}
    labels = [r["label"] for r in rows] + [r["label"] for r in previous if r["label"] not in shown_now]
    now = {r["label"]: r for r in rows}
    cur = {label: now.get(label, {"minutes": 0, "people": 0}) for label in labels}
    old = {label: before.get(label, {"minutes": 0, "people": 0}) for label in labels}
    people = suppression.suppress_counts({label: cur[label]["people"] for label in labels})
    people_before = suppression.suppress_counts({label: old[label]["people"] for label in labels})
    out = []
    for label in labels:
        minutes, minutes_before = cur[label]["minutes"], old[label]["minutes"]
        shown, shown_before = people[label], people_before[label]
        change_people = shown - shown_before if shown is not None and shown_before is not None else None
        out.append({"label": label, "minutes": minutes, "hours": round(minutes / 60, 1),
                    "people": shown, "people_display": suppression.display(shown),
                    "previous_minutes": minutes_before, "previous_hours": round(minutes_before / 60, 1),
                    "previous_people": shown_before, "previous_people_display": suppression.display(shown_before),
                    "change_hours": round((minutes - minutes_before) / 60, 1),
                    "change_people": change_people,
                    "change_people_display": "not shown" if change_people is None else f"{change_people:+d}"})
    return out


def build_report(timebanks: list[TimeBank], start: dt.date, end: dt.date, group_by: str = "month",
                 source: str = "rollup", session=None) -> dict:
    """The figures for these time banks and period, with the previous period for comparison.

    People breakdowns are suppressed (see suppression.py); no person is ever named. `source="raw"`
    computes every figure from the raw exchange and transfer rows instead of the roll-up: the oracle
    the roll-up is tested against. `session`: read there (closing a period reads the primary, never a
    replica that may lag); by default the reporting replica when configured (see db.reports_session).
    """
    ids = [tb.id for tb in timebanks]
    prev_start, prev_end = previous_period(start, end)
    settings = [tb.settings or {} for tb in timebanks]

    def side_figures(reader) -> dict:
        """The figures that do not depend on the person-level pass: read beside it (see db.beside)."""
        return {"reconciliation": queries.ledger_minutes_delivered(reader, ids, start, end),
                "no_trade_yet": queries._no_trade_yet(reader, ids, start, end, source),
                "pot": figures.pot_movements(reader, ids, start, end),
                "trend_hours": figures.trend_hours(reader, ids, start, end, group_by, source),
                "joined": figures.members_joined(reader, ids, start, end, group_by),
                "unmet_need": unmet_need(reader, ids, start, end, settings)}

    with reports_session(session) as session, beside(session, side_figures) as side:
        now, before = figures.report_figures(session, ids, start, end, (prev_start, prev_end), group_by=group_by,
                                             source=source)
        head = queries._headline(session, ids, start, end, now["minutes"], now["exchanges"],
                                 now["organisations_taking_part"], now["members_active"],
                                 now["members_gave_and_received"])
        prev = queries._headline(session, ids, prev_start, prev_end, before["minutes"], before["exchanges"],
                                 before["organisations_taking_part"], before["members_active"],
                                 before["members_gave_and_received"])
        report = {
            "timebanks": [{"slug": tb.slug, "name": tb.name} for tb in timebanks],
            "period": {"from": start.isoformat(), "to": end.isoformat()},
            "previous_period": {"from": prev_start.isoformat(), "to": prev_end.isoformat()},
            "headline": head,
            "previous": prev,
            "change": {k: (round(head[k] - prev[k], 1) if isinstance(head[k], float) else head[k] - prev[k])
                       for k in HEADLINE_FIELDS},
            "group_by": group_by,
            "trend": _trend(now, side()),
            "breakdowns": {
                name: {"title": title, "rows": _suppressed_breakdown(now["breakdowns"][name],
                                                                     before["breakdowns"][name])}
                for name, (title, _expr) in queries.DIMENSIONS.items()
            },
            "engagement": _engagement(head, now, before, side()),
            "value": value_of({ids[0]: head["minutes_delivered"]} if len(ids) == 1 else
                              queries.minutes_by_timebank(session, ids, start, end, source),
                              {tb.id: tb.settings or {} for tb in timebanks}, start, end),
            "unmet_need": side()["unmet_need"],
            "reconciliation": {"ledger_minutes_delivered": side()["reconciliation"]},
            "closed": None,
        }
    return report


def _trend(now, side) -> list[dict]:
    hours, joined = side["trend_hours"], side["joined"]
    rows = []
    for entry in now["trend_active"]:
        minutes, exchanges = hours.get(entry["period"], (0, 0))
        rows.append({"period": entry["period"], "minutes": minutes, "hours": round(minutes / 60, 1),
                     "exchanges": exchanges, "members_active": entry["members_active"],
                     "members_new": joined.get(entry["period"], 0)})
    return rows


def _engagement(head, now, before, side) -> dict:
    pot = side["pot"]
    total, active = head["members_total"], head["members_active"]
    prev_active, retained = before["members_active"], now["retained"]
    return {
        "share_active": round(active / total, 3) if total else None,
        "retention": round(retained / prev_active, 3) if prev_active else None,
        "members_active_previous_period": prev_active,
        "members_retained": retained,
        "exchanges_per_active_member": round(head["exchanges"] / active, 2) if active else None,
        "distinct_partners_per_member": round(now["partners_avg"], 2) if now["partners_avg"] is not None else None,
        "members_no_trade_yet": side["no_trade_yet"],
        "days_joining_to_first_exchange_avg": (round(now["first_days_avg"], 1)
                                               if now["first_days_avg"] is not None else None),
        "new_members_with_first_exchange": now["first_count"],
        "pot_donations_minutes": pot["donation"]["minutes"],
        "pot_donations": pot["donation"]["transfers"],
        "pot_grants_minutes": pot["grant"]["minutes"],
        "pot_grants": pot["grant"]["transfers"],
    }


def unmet_need(session, ids, start, end, settings: list[dict]) -> dict:
    """Unmet need from the matching tables, request counts suppressed like people (a request is a person's need)."""
    figures_ = unmet.unmet_need(session, ids, start, end, unmet.unmet_days(settings))
    for key in ("by_category", "by_area"):
        shown = suppression.suppress_counts({r["label"]: r["requests"] for r in figures_[key]})
        for row in figures_[key]:
            row["requests"] = shown[row["label"]]
            row["requests_display"] = suppression.display(shown[row["label"]])
    return figures_


def timebanks_by_ids(session, ids) -> list[TimeBank]:
    return list(session.scalars(select(TimeBank).where(TimeBank.id.in_(list(ids))).order_by(TimeBank.slug)))
