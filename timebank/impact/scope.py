"""Which time banks and period a caller's report covers, checked against the policy."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from timebank.community.models import TimeBank
from timebank.errors import NotFound
from timebank.impact.errors import NotAllowedToSeeReports
from timebank.impact.policy import can_view_reports, granted_timebank_ids
from timebank.impact.report import timebanks_by_ids
from timebank.impact.service import check_period


def default_period(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The year to date."""
    today = today or dt.date.today()
    return dt.date(today.year, 1, 1), today


def report_scope(session, user, slug: str | None, start: dt.date | None, end: dt.date | None):
    """(time banks, start, end) for this user: one named time bank, or every granted one."""
    default_start, default_end = default_period()
    start, end = start or default_start, end or default_end
    check_period(start, end)
    if slug:
        timebank = session.scalar(select(TimeBank).where(TimeBank.slug == slug))
        if timebank is None:
            raise NotFound(f"There is no time bank called {slug!r}.", code="timebank_not_found")
        if not can_view_reports(session, user, timebank.id):
            raise NotAllowedToSeeReports()
        return [timebank], start, end
    ids = granted_timebank_ids(session, user)
    if not ids:
        raise NotAllowedToSeeReports()
    return timebanks_by_ids(session, ids), start, end
