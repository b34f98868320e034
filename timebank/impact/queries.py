"""Report figures, computed in the database with aggregate SQL (never by summing rows in Python).

The rule that makes the figures reconcile with the ledger (see docs/IMPACT.md):
minutes delivered in a period = the exchange minutes of confirmed exchanges (and of
exchanges later reversed) whose `exchange`/`group_activity` transfer is effective in the
period, minus the minutes of those exchanges whose reversal transfer is effective in the
period. A correction therefore shows in the period it was made. The same figure read from
the ledger is `ledger_minutes_delivered`.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, text

# One signed row per exchange delivery (+) and per reversal of one (-).
EVENTS_SQL = """
SELECT e.id AS exchange_id, e.status AS status, e.kind AS kind, e.minutes AS minutes, 1 AS sign,
       t.effective_date AS on_date, e.provider_membership_id AS pm, e.recipient_membership_id AS rm,
       e.provider_organisation_id AS po, e.recipient_organisation_id AS ro, e.coproduction_type AS coproduction_type,
       e.outcome_area AS outcome_area, e.collective AS collective, e.substitutive AS substitutive,
       e.category_id AS category_id, t.timebank_id AS timebank_id
FROM transfer t JOIN exchange e ON e.transfer_id = t.id
WHERE t.timebank_id IN :tb AND t.kind IN ('exchange', 'group_activity')
  AND t.effective_date BETWEEN :{d0} AND :{d1} AND e.status IN ('confirmed', 'reversed')
UNION ALL
SELECT e.id, e.status, e.kind, -e.minutes, -1, r.effective_date, e.provider_membership_id,
       e.recipient_membership_id, e.provider_organisation_id, e.recipient_organisation_id, e.coproduction_type,
       e.outcome_area, e.collective, e.substitutive, e.category_id, r.timebank_id
FROM transfer r JOIN exchange e ON e.transfer_id = r.reverses_transfer_id
WHERE r.timebank_id IN :tb AND r.kind = 'reversal'
  AND r.effective_date BETWEEN :{d0} AND :{d1} AND e.status IN ('confirmed', 'reversed')
"""

# Each event twice: once for the provider side, once for the recipient side.
PART_SQL = """
SELECT ev.*, ev.pm AS membership_id, 'provider' AS side FROM ev
UNION ALL
SELECT ev.*, ev.rm AS membership_id, 'recipient' AS side FROM ev
"""

ACTIVE = "p.sign = 1 AND p.status = 'confirmed'"

NOT_STATED = "not stated"

# label expression for each breakdown; p = participation, m = its membership, c = category, o = organisation
DIMENSIONS = {
    "coproduction_type": ("Type of co-production", "p.coproduction_type"),
    "outcome_area": ("Outcome area", "p.outcome_area"),
    "collective": ("Individual or collective",
                   "CASE WHEN p.collective THEN 'collective' ELSE 'individual' END"),
    "substitutive": ("Substitutive or additive",
                     "CASE WHEN p.substitutive THEN 'substitutive' ELSE 'additive' END"),
    "category": ("Category", "c.name"),
    "organisation": ("Partner organisation", "o.name"),
    "ward": ("Area (ward)", "m.ward"),
    "kind": ("Kind of exchange", "p.kind"),
    "age_band": ("Age band (consenting members)", "CASE WHEN m.demographics_consent THEN m.age_band END"),
    "gender": ("Gender (consenting members)", "CASE WHEN m.demographics_consent THEN m.gender END"),
}

# Members are the people who trade; brokers, admins and commissioners run or watch the bank.
MEMBER_ROLES_SQL = "m.role = 'member'"


def _dialect(session) -> str:
    return session.get_bind().dialect.name


def _month(session, column: str, group_by: str = "month") -> str:
    if _dialect(session) == "sqlite":
        return f"strftime('{'%Y-%m' if group_by == 'month' else '%Y'}', {column})"
    return f"to_char({column}, '{'YYYY-MM' if group_by == 'month' else 'YYYY'}')"


def _days_between(session, later: str, earlier: str) -> str:
    if _dialect(session) == "sqlite":
        return f"(julianday({later}) - julianday({earlier}))"
    return f"({later} - {earlier})"


def _with(suffix: str = "") -> str:
    d0, d1 = f"d0{suffix}", f"d1{suffix}"
    return f"WITH ev AS MATERIALIZED ({EVENTS_SQL.format(d0=d0, d1=d1)}), p AS ({PART_SQL}) "


def _run(session, sql: str, params: dict):
    statement = text(sql)
    if "tb" in params:
        statement = statement.bindparams(bindparam("tb", expanding=True))
    return session.execute(statement, params)


def _params(timebank_ids, start, end, **extra) -> dict:
    return {"tb": list(timebank_ids), "d0": start, "d1": end, **extra}


def headline(session, timebank_ids, start: dt.date, end: dt.date) -> dict:
    """Hours, exchanges, members (total, active, new), organisations, people who gave and received."""
    params = _params(timebank_ids, start, end)
    # One statement, so the period's events are materialised once.
    row = _run(session, _with() + f"""
        SELECT COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.sign ELSE 0 END), 0),
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END),
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN COALESCE(p.po, p.ro) END),
               (SELECT COUNT(*) FROM (
                  SELECT q.membership_id FROM p q
                  WHERE q.sign = 1 AND q.status = 'confirmed' AND q.membership_id IS NOT NULL
                  GROUP BY q.membership_id HAVING COUNT(DISTINCT q.side) = 2) both_sides)
        FROM p""", params).one()
    gave_and_received = row[4]
    members = _run(session, f"""
        SELECT COUNT(*), COALESCE(SUM(CASE WHEN m.joined_on >= :d0 THEN 1 ELSE 0 END), 0)
        FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL} AND m.joined_on <= :d1""",
                   params).one()
    minutes = int(row[0])
    return {
        "minutes_delivered": minutes,
        "hours_delivered": round(minutes / 60, 1),
        "exchanges": int(row[1]),
        "members_total": int(members[0]),
        "members_active": int(row[2]),
        "members_new": int(members[1]),
        "organisations_taking_part": int(row[3]),
        "members_gave_and_received": int(gave_and_received),
    }


def ledger_minutes_delivered(session, timebank_ids, start: dt.date, end: dt.date) -> int:
    """The same figure read from postings alone: credits of exchange transfers minus those of their reversals."""
    return int(_run(session, """
        SELECT
          (SELECT COALESCE(SUM(p.minutes), 0) FROM transfer t JOIN posting p ON p.transfer_id = t.id
           WHERE t.timebank_id IN :tb AND t.kind IN ('exchange', 'group_activity') AND p.minutes > 0
             AND t.effective_date BETWEEN :d0 AND :d1)
          -
          (SELECT COALESCE(SUM(p.minutes), 0) FROM transfer r JOIN transfer o ON o.id = r.reverses_transfer_id
             JOIN posting p ON p.transfer_id = r.id
           WHERE r.timebank_id IN :tb AND r.kind = 'reversal' AND o.kind IN ('exchange', 'group_activity')
             AND p.minutes > 0 AND r.effective_date BETWEEN :d0 AND :d1)
        """, _params(timebank_ids, start, end)).scalar_one())


def minutes_by_timebank(session, timebank_ids, start: dt.date, end: dt.date) -> dict[int, int]:
    rows = _run(session, _with() + """
        SELECT p.timebank_id, COALESCE(SUM(p.minutes), 0) FROM p WHERE p.side = 'provider' GROUP BY p.timebank_id""",
                _params(timebank_ids, start, end))
    return {int(tb): int(minutes) for tb, minutes in rows}


def trend(session, timebank_ids, start: dt.date, end: dt.date, group_by: str = "month") -> list[dict]:
    """Hours, exchanges, active and new members per month (or year)."""
    params = _params(timebank_ids, start, end)
    bucket = _month(session, "p.on_date", group_by)
    rows = _run(session, _with() + f"""
        SELECT {bucket} AS bucket,
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.sign ELSE 0 END), 0),
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END)
        FROM p GROUP BY {bucket}""", params).all()
    joined = _run(session, f"""
        SELECT {_month(session, 'm.joined_on', group_by)}, COUNT(*) FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL}
          AND m.joined_on BETWEEN :d0 AND :d1
        GROUP BY {_month(session, 'm.joined_on', group_by)}""", params).all()
    buckets: dict[str, dict] = {}
    for label in _buckets(start, end, group_by):
        buckets[label] = {"period": label, "minutes": 0, "hours": 0.0, "exchanges": 0, "members_active": 0,
                          "members_new": 0}
    for label, minutes, exchanges, active in rows:
        entry = buckets.setdefault(label, {"period": label, "members_new": 0})
        entry.update(minutes=int(minutes), hours=round(int(minutes) / 60, 1), exchanges=int(exchanges),
                     members_active=int(active))
    for label, count in joined:
        buckets.setdefault(label, {"period": label, "minutes": 0, "hours": 0.0, "exchanges": 0,
                                   "members_active": 0})["members_new"] = int(count)
    return [buckets[k] for k in sorted(buckets)]


def _buckets(start: dt.date, end: dt.date, group_by: str) -> list[str]:
    labels, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        labels.append(f"{year:04d}-{month:02d}" if group_by == "month" else f"{year:04d}")
        if group_by == "month":
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            year, month = year + 1, 1
    return list(dict.fromkeys(labels))


def breakdown(session, timebank_ids, start: dt.date, end: dt.date, dimension: str) -> list[dict]:
    """Minutes delivered (provider side) and distinct people taking part, by one dimension."""
    _title, expression = DIMENSIONS[dimension]
    missing = "no organisation" if dimension == "organisation" else NOT_STATED
    label = f"COALESCE({expression}, '{missing}')"
    rows = _run(session, _with() + f"""
        SELECT {label} AS label,
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END), 0) AS minutes,
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END) AS people
        FROM p
        LEFT JOIN membership m ON m.id = p.membership_id
        LEFT JOIN category c ON c.id = p.category_id
        LEFT JOIN organisation o ON o.id = COALESCE(p.po, p.ro)
        GROUP BY {label}
        HAVING SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END) <> 0
            OR COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END) > 0
        ORDER BY minutes DESC, label""", _params(timebank_ids, start, end)).all()
    return [{"label": str(r[0]), "minutes": int(r[1]), "people": int(r[2])} for r in rows]


def active_member_count_in_both(session, timebank_ids, start, end, prev_start, prev_end) -> tuple[int, int]:
    """(members active in the previous period, of whom also active in this one)."""
    params = {**_params(timebank_ids, start, end), "d0b": prev_start, "d1b": prev_end}
    events_now = EVENTS_SQL.format(d0="d0", d1="d1")
    events_prev = EVENTS_SQL.format(d0="d0b", d1="d1b")
    active = """SELECT pm AS mid FROM {ev} WHERE sign = 1 AND status = 'confirmed' AND pm IS NOT NULL
                UNION SELECT rm FROM {ev} WHERE sign = 1 AND status = 'confirmed' AND rm IS NOT NULL"""
    row = _run(session, f"""
        WITH now_ev AS MATERIALIZED ({events_now}), prev_ev AS MATERIALIZED ({events_prev}),
             now_m AS ({active.format(ev='now_ev')}), prev_m AS ({active.format(ev='prev_ev')})
        SELECT (SELECT COUNT(*) FROM prev_m),
               (SELECT COUNT(*) FROM prev_m JOIN now_m ON now_m.mid = prev_m.mid)""", params).one()
    return int(row[0]), int(row[1])


def engagement(session, timebank_ids, start: dt.date, end: dt.date, prev_start: dt.date, prev_end: dt.date,
               head: dict) -> dict:
    params = _params(timebank_ids, start, end)
    partners = _run(session, _with() + f"""
        SELECT AVG(n) FROM (
          SELECT a, COUNT(DISTINCT b) AS n FROM (
            SELECT pm AS a, COALESCE(rm, -ro) AS b FROM ev WHERE sign = 1 AND status = 'confirmed' AND pm IS NOT NULL
            UNION ALL
            SELECT rm, COALESCE(pm, -po) FROM ev WHERE sign = 1 AND status = 'confirmed' AND rm IS NOT NULL
          ) pairs GROUP BY a
        ) per_member""", params).scalar_one()
    traded_before = """SELECT 1 FROM exchange e JOIN transfer t ON t.id = e.transfer_id
        WHERE e.status IN ('confirmed', 'reversed') AND t.effective_date <= :d1 AND e.{side}_membership_id = m.id"""
    no_trade = _run(session, f"""
        SELECT COUNT(*) FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL} AND m.joined_on <= :d1
          AND NOT EXISTS ({traded_before.format(side='provider')})
          AND NOT EXISTS ({traded_before.format(side='recipient')})""", params).scalar_one()
    # A member who joined in the period and traded by its end first traded within it: read it from the events.
    days = _run(session, _with() + f"""
        SELECT AVG({_days_between(session, 'f.first_on', 'm.joined_on')}), COUNT(*)
        FROM (SELECT p.membership_id AS mid, MIN(p.on_date) AS first_on FROM p
              WHERE {ACTIVE} AND p.membership_id IS NOT NULL GROUP BY p.membership_id) f
        JOIN membership m ON m.id = f.mid
        WHERE m.joined_on BETWEEN :d0 AND :d1 AND {MEMBER_ROLES_SQL}""", params).one()
    pot = {kind: {"transfers": 0, "minutes": 0} for kind in ("donation", "grant")}
    for kind, transfers, minutes in _run(session, """
        SELECT t.kind, COUNT(DISTINCT t.id), COALESCE(SUM(p.minutes), 0)
        FROM transfer t JOIN posting p ON p.transfer_id = t.id
        WHERE t.timebank_id IN :tb AND t.kind IN ('donation', 'grant') AND p.minutes > 0
          AND t.effective_date BETWEEN :d0 AND :d1
        GROUP BY t.kind""", params):
        pot[kind] = {"transfers": int(transfers), "minutes": int(minutes)}
    prev_active, retained = active_member_count_in_both(session, timebank_ids, start, end, prev_start, prev_end)
    total, active = head["members_total"], head["members_active"]
    return {
        "share_active": round(active / total, 3) if total else None,
        "retention": round(retained / prev_active, 3) if prev_active else None,
        "members_active_previous_period": prev_active,
        "members_retained": retained,
        "exchanges_per_active_member": round(head["exchanges"] / active, 2) if active else None,
        "distinct_partners_per_member": round(float(partners), 2) if partners is not None else None,
        "members_no_trade_yet": int(no_trade),
        "days_joining_to_first_exchange_avg": round(float(days[0]), 1) if days[0] is not None else None,
        "new_members_with_first_exchange": int(days[1]),
        "pot_donations_minutes": pot["donation"]["minutes"],
        "pot_donations": pot["donation"]["transfers"],
        "pot_grants_minutes": pot["grant"]["minutes"],
        "pot_grants": pot["grant"]["transfers"],
    }


def all_breakdowns(session, timebank_ids, start: dt.date, end: dt.date) -> dict[str, list[dict]]:
    """Every breakdown in one statement: the events are materialised once, then grouped per dimension."""
    labelled = ", ".join(
        f"COALESCE({expr}, '{'no organisation' if name == 'organisation' else NOT_STATED}') AS d_{name}"
        for name, (_title, expr) in DIMENSIONS.items())
    per_dimension = " UNION ALL ".join(f"""
        SELECT '{name}' AS dimension, d_{name} AS label,
               COALESCE(SUM(CASE WHEN side = 'provider' THEN minutes ELSE 0 END), 0) AS minutes,
               COUNT(DISTINCT CASE WHEN active = 1 THEN membership_id END) AS people
        FROM lp GROUP BY d_{name}
        HAVING SUM(CASE WHEN side = 'provider' THEN minutes ELSE 0 END) <> 0
            OR COUNT(DISTINCT CASE WHEN active = 1 THEN membership_id END) > 0""" for name in DIMENSIONS)
    sql = f"""
        WITH ev AS MATERIALIZED ({EVENTS_SQL.format(d0='d0', d1='d1')}),
             p AS ({PART_SQL}),
             lp AS MATERIALIZED (
               SELECT p.side AS side, p.minutes AS minutes, p.membership_id AS membership_id,
                      CASE WHEN {ACTIVE} THEN 1 ELSE 0 END AS active, {labelled}
               FROM p
               LEFT JOIN membership m ON m.id = p.membership_id
               LEFT JOIN category c ON c.id = p.category_id
               LEFT JOIN organisation o ON o.id = COALESCE(p.po, p.ro))
        {per_dimension}"""
    out: dict[str, list[dict]] = {name: [] for name in DIMENSIONS}
    for dimension, label, minutes, people in _run(session, sql, _params(timebank_ids, start, end)):
        out[dimension].append({"label": str(label), "minutes": int(minutes), "people": int(people)})
    for rows in out.values():
        rows.sort(key=lambda r: (-r["minutes"], r["label"]))
    return out
