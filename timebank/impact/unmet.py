"""Unmet need and time to match, read from the matching tables (help_request, match).

As at the end of the period (so a closed period's figures do not depend on when they were computed):

- **Unmet need**: requests (members' requests and organisations' opportunities) posted at least N days
  before the end of the period (N = TimeBank.settings["impact"]["unmet_need_days"], default 30) that were
  still open then: not closed, not expired and with no match accepted by then. Counted by category and
  by area (the request's area, "not stated" when none).
- **Time to match**: for requests posted in the period, the time from posting to the first match accepted
  by the period's end (a match whose status is accepted, done or logged; `responded_at`). Median (the
  mean of the two middle values when their number is even) and 90th percentile (nearest rank), in days.
"""
from __future__ import annotations

import datetime as dt

from timebank.impact.queries import _params, _run

DEFAULT_DAYS = 30
ACCEPTED = "('accepted', 'done', 'logged')"


def unmet_days(settings_by_timebank: list[dict]) -> int:
    days = {int(((s or {}).get("impact") or {}).get("unmet_need_days") or DEFAULT_DAYS) for s in settings_by_timebank}
    return min(days) if days else DEFAULT_DAYS


def _hours_between(session, later: str, earlier: str) -> str:
    if session.get_bind().dialect.name == "sqlite":
        return f"((julianday({later}) - julianday({earlier})) * 24.0)"
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 3600.0)"


def unmet_need(session, timebank_ids, start: dt.date, end: dt.date, days: int = DEFAULT_DAYS) -> dict:
    """Requests open longer than `days` days at the period's end, by category and by area; time to match."""
    after_end = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    params = _params(timebank_ids, start, end, cutoff=after_end - dt.timedelta(days=days), after_end=after_end,
                     period_start=dt.datetime.combine(start, dt.time()))
    still_open = f"""
        FROM help_request r
        WHERE r.timebank_id IN :tb AND r.created_at < :cutoff
          AND (r.closed_at IS NULL OR r.closed_at >= :after_end) AND r.expires_at >= :after_end
          AND NOT EXISTS (SELECT 1 FROM match x WHERE x.request_id = r.id AND x.status IN {ACCEPTED}
                          AND x.responded_at < :after_end)"""
    by: dict[str, dict[str, int]] = {"category": {}, "area": {}}
    for section, label, count in _run(session, f"""
        SELECT 'category', COALESCE(c.name, 'not stated'), COUNT(*) {still_open.replace('WHERE', '''
        LEFT JOIN category c ON c.id = r.category_id WHERE''', 1)} GROUP BY COALESCE(c.name, 'not stated')
        UNION ALL
        SELECT 'area', COALESCE(NULLIF(r.area, ''), 'not stated'), COUNT(*) {still_open}
        GROUP BY COALESCE(NULLIF(r.area, ''), 'not stated')""", params):
        by[section][str(label)] = int(count)
    waits = f"""
        w AS (SELECT {_hours_between(session, 'f.first_at', 'r.created_at')} AS hours
              FROM help_request r
              JOIN (SELECT x.request_id, MIN(x.responded_at) AS first_at FROM match x
                    WHERE x.status IN {ACCEPTED} AND x.responded_at < :after_end GROUP BY x.request_id) f
                ON f.request_id = r.id
              WHERE r.timebank_id IN :tb AND r.created_at >= :period_start AND r.created_at < :after_end),
        ranked AS (SELECT hours, ROW_NUMBER() OVER (ORDER BY hours) AS rn, COUNT(*) OVER () AS n FROM w)"""
    row = _run(session, f"""
        WITH {waits}
        SELECT (SELECT COUNT(*) FROM help_request r WHERE r.timebank_id IN :tb AND r.created_at >= :period_start
                  AND r.created_at < :after_end),
               (SELECT COUNT(*) FROM w),
               (SELECT AVG(hours) FROM ranked WHERE rn IN ((n + 1) / 2, (n + 2) / 2)),
               (SELECT MIN(hours) FROM ranked WHERE rn * 10 >= 9 * n)""", params).one()
    posted, matched, median, p90 = row
    total = sum(by["area"].values())

    def rows(counts):
        return sorted(({"label": k, "requests": v} for k, v in counts.items()), key=lambda r: (-r["requests"],
                                                                                               r["label"]))
    return {
        "available": True,
        "days": days,
        "open_longer_than_days": total,
        "by_category": rows(by["category"]),
        "by_area": rows(by["area"]),
        "requests_posted": int(posted),
        "requests_matched": int(matched),
        "days_to_match_median": None if median is None else round(float(median) / 24, 1),
        "days_to_match_p90": None if p90 is None else round(float(p90) / 24, 1),
        "note": (f"Requests posted at least {days} days before {end.isoformat()} and still open then, with no "
                 "match accepted. Time to match: requests posted in the period, from posting to the first "
                 "match accepted by the period's end."),
    }
