"""Verbs: closing a reporting period, and reading a report (frozen when its period is closed)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import select

from timebank.community.models import TimeBank
from timebank.community.service import log_audit
from timebank.impact.errors import BadPeriod, PeriodAlreadyClosed
from timebank.impact.models import ClosedPeriod
from timebank.impact.report import build_report


def canonical_json(report: dict) -> str:
    return json.dumps(report, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(report_json: str) -> str:
    return hashlib.sha256(report_json.encode()).hexdigest()


def check_period(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise BadPeriod("The end of the period is before its start.")
    if (end - start).days > 3660:
        raise BadPeriod("A report covers at most ten years.")


def closed_period_for(session, timebank_id: int, start: dt.date, end: dt.date) -> ClosedPeriod | None:
    return session.scalar(select(ClosedPeriod).where(
        ClosedPeriod.timebank_id == timebank_id, ClosedPeriod.period_start == start, ClosedPeriod.period_end == end))


def close_period(session, *, timebank: TimeBank, start: dt.date, end: dt.date,
                 closed_by_user_id: int | None = None) -> ClosedPeriod:
    """Freeze the report for this period: stored JSON with its SHA-256. Flushes, never commits."""
    check_period(start, end)
    if closed_period_for(session, timebank.id, start, end) is not None:
        raise PeriodAlreadyClosed(f"{start} to {end} is already closed for {timebank.name}.")
    # Frozen figures must include every write committed so far: read the primary, never the replica.
    report = build_report([timebank], start, end, session=session)
    body = canonical_json(report)
    row = ClosedPeriod(timebank_id=timebank.id, period_start=start, period_end=end, report_json=body,
                       content_hash=content_hash(body), closed_by_user_id=closed_by_user_id)
    session.add(row)
    session.flush()
    log_audit(session, "impact.close_period", actor_user_id=closed_by_user_id, timebank_id=timebank.id,
              target_type="impact_closed_period", target_id=row.id, start=start.isoformat(), end=end.isoformat(),
              content_hash=row.content_hash)
    session.flush()
    return row


def get_report(session, timebanks: list[TimeBank], start: dt.date, end: dt.date, group_by: str = "month") -> dict:
    """The report; for one time bank and exactly a closed period, the frozen copy (checked against its hash)."""
    check_period(start, end)
    if len(timebanks) == 1:
        closed = closed_period_for(session, timebanks[0].id, start, end)
        if closed is not None:
            if content_hash(closed.report_json) != closed.content_hash:
                raise RuntimeError(f"closed period {closed.id} does not match its content hash")
            report = json.loads(closed.report_json)
            report["closed"] = {"closed_at": closed.closed_at.isoformat(timespec="seconds"),
                                "content_hash": closed.content_hash,
                                "note": "This period is closed: these figures are frozen. Corrections made later "
                                        "appear in the period in which they were made."}
            return report
    return build_report(timebanks, start, end, group_by)


def closed_periods(session, timebank_ids) -> list[ClosedPeriod]:
    return list(session.scalars(select(ClosedPeriod).where(ClosedPeriod.timebank_id.in_(list(timebank_ids)))
                                .order_by(ClosedPeriod.period_start.desc())))
