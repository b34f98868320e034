"""The dashboard's figures for one period in a few statements over the roll-up.

1. Hours and exchanges per breakdown value (and the total, and the trend) from impact_daily: a few
   hundred rows a month, whatever the number of exchanges.
2. One pass over the period's fact rows grouped by member (by `membership_id + 0`, so SQLite reads the
   period's key range and sorts, rather than walking the member index with one random lookup per row)
   gives every person-level figure: members active, who both gave and received, partners, first exchange of new members, retention, people by
   ward / age band / gender (joined to the member now, so never stale), people per value of the small
   tag breakdowns and active members per trend bucket (as per-member flags, summed).
3. People by category and by organisation (open-ended lists) and organisations taking part.

`source="raw"` runs the same statements over facts derived from raw exchange and transfer rows; the
per-figure functions in queries.py are a second, independent formulation. Tests check all agree.
"""
from __future__ import annotations

import datetime as dt

from timebank.impact.queries import (DAILY_DIMENSIONS, DIMENSIONS, MEMBER_ROLES_SQL, _buckets, _daily,
                                     _days_between, _facts, _month, _params, _run)

SMALL_DIMENSIONS = ("coproduction_type", "outcome_area", "collective", "substitutive", "kind")
MEMBER_DIMENSIONS = {"ward": "m.ward", "age_band": "CASE WHEN m.demographics_consent THEN m.age_band END",
                     "gender": "CASE WHEN m.demographics_consent THEN m.gender END"}
NOT_STATED = "not stated"


def _bucket_bounds(label: str) -> tuple[dt.date, dt.date]:
    """First and last day of a trend bucket labelled YYYY-MM or YYYY."""
    if len(label) == 4:
        return dt.date(int(label), 1, 1), dt.date(int(label), 12, 31)
    year, month = int(label[:4]), int(label[5:7])
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return dt.date(year, month, 1), following - dt.timedelta(days=1)


def _fact_source(source: str) -> tuple[str, str]:
    """(CTEs to put first, a FROM clause naming the period's fact rows `p` and ending in a WHERE condition).

    The roll-up is read straight from its table, so SQLite reads the key range instead of copying it first.
    """
    if source == "raw":
        return f"{_facts('raw')}, ", "p WHERE 1 = 1"
    return "", "impact_fact p WHERE p.timebank_id IN :tb AND p.on_date BETWEEN :d0 AND :d1"


def _hours(session, params, source) -> dict[str, dict[str, list]]:
    """{dimension: {label: [minutes, exchanges, events, value]}} from the daily roll-up."""
    rows = _run(session, f"WITH {_daily(source)} " + """
        SELECT g.dimension, g.value,
               CASE g.dimension WHEN 'category' THEN COALESCE(c.name, 'not stated')
                                WHEN 'organisation' THEN COALESCE(o.name, 'no organisation') ELSE g.value END,
               g.minutes, g.exchanges, g.events
        FROM (SELECT dimension, value, SUM(minutes) AS minutes, SUM(exchanges) AS exchanges, SUM(events) AS events
              FROM dly GROUP BY dimension, value) g
        LEFT JOIN category c ON g.dimension = 'category' AND CAST(c.id AS VARCHAR(20)) = g.value
        LEFT JOIN organisation o ON g.dimension = 'organisation' AND CAST(o.id AS VARCHAR(20)) = g.value""",
                params)
    out: dict[str, dict[str, list]] = {name: {} for name in DAILY_DIMENSIONS}
    for dimension, value, label, minutes, exchanges, events in rows:
        entry = out[dimension].setdefault(str(label), [0, 0, 0, value])
        entry[0] += int(minutes)
        entry[1] += int(exchanges)
        entry[2] += int(events)
    return out


def period_figures(session, timebank_ids, start: dt.date, end: dt.date, *, group_by: str = "month",
                   source: str = "rollup", previous: tuple[dt.date, dt.date] | None = None) -> dict:
    """Headline, breakdown rows (unsuppressed), trend and person-level engagement figures for one period."""
    params = _params(timebank_ids, start, end)
    hours = _hours(session, params, source)
    total = hours["total"].get("", [0, 0, 0, ""])

    # 2. The member pass: per-member flags, then summed.
    flags, flag_params = [], {}
    small_values = {name: [label for label, e in hours[name].items() if e[2]] for name in SMALL_DIMENSIONS}
    for name in SMALL_DIMENSIONS:
        for k, label in enumerate(small_values[name]):
            key = f"v_{name}_{k}"
            flag_params[key] = label
            flags.append((f"f_{name}_{k}",
                          f"MAX(CASE WHEN p.active = 1 AND {DAILY_DIMENSIONS[name]} = :{key} THEN 1 ELSE 0 END)"))
    buckets = _buckets(start, end, group_by)
    for j, label in enumerate(buckets):
        # Date bounds, not a formatted date per row: comparing dates is far cheaper than strftime/to_char.
        flag_params[f"b0_{j}"], flag_params[f"b1_{j}"] = _bucket_bounds(label)
        flags.append((f"t_{j}", f"MAX(CASE WHEN p.active = 1 AND p.on_date BETWEEN :b0_{j} AND :b1_{j} "
                                "THEN 1 ELSE 0 END)"))
    flag_columns = "".join(f", {expr} AS {name}" for name, expr in flags)
    if previous is not None:
        params.update(d0b=previous[0], d1b=previous[1])
        if source == "raw":
            prev_cte = f", {_facts(source, 'q', 'b')}, qm AS MATERIALIZED (SELECT DISTINCT membership_id FROM q " \
                       "WHERE active = 1)"
            was_active = "EXISTS (SELECT 1 FROM qm WHERE qm.membership_id = f.mid)"
        else:  # one index seek per active member (ix_impact_fact_member)
            prev_cte = ""
            was_active = ("EXISTS (SELECT 1 FROM impact_fact q WHERE q.membership_id = f.mid "
                          "AND q.on_date BETWEEN :d0b AND :d1b AND q.active = 1)")
    else:
        prev_cte, was_active = "", "0 = 1"
    new_member = f"m.joined_on BETWEEN :d0 AND :d1 AND {MEMBER_ROLES_SQL}"
    member_rows = " UNION ALL ".join(f"""
        SELECT '{name}', COALESCE({expr}, '{NOT_STATED}'), SUM(f.given),
               SUM(CASE WHEN f.mid IS NOT NULL THEN f.act ELSE 0 END)
        FROM f LEFT JOIN membership m ON m.id = f.mid GROUP BY COALESCE({expr}, '{NOT_STATED}')"""
                                     for name, expr in MEMBER_DIMENSIONS.items())
    flag_rows = "".join(f" UNION ALL SELECT 'flag', '{name}', SUM({name}), 0 FROM f WHERE f.mid IS NOT NULL"
                        for name, _expr in flags)
    ctes, facts = _fact_source(source)
    sql = f"""
        WITH {ctes}{prev_cte.lstrip(', ') + ', ' if prev_cte else ''}
             f AS MATERIALIZED (
               SELECT p.membership_id + 0 AS mid, MAX(p.active) AS act,
                      MAX(CASE WHEN p.active = 1 AND p.side = 'provider' THEN 1 ELSE 0 END)
                        * MAX(CASE WHEN p.active = 1 AND p.side = 'recipient' THEN 1 ELSE 0 END) AS both_sides,
                      COUNT(DISTINCT CASE WHEN p.active = 1 THEN p.partner_key END) AS partners,
                      MIN(CASE WHEN p.active = 1 THEN p.on_date END) AS first_on,
                      SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END) AS given{flag_columns}
               FROM {facts} GROUP BY p.membership_id + 0)
        SELECT 'summary', 'active', SUM(CASE WHEN f.mid IS NOT NULL THEN f.act ELSE 0 END),
               SUM(CASE WHEN f.mid IS NOT NULL THEN f.both_sides ELSE 0 END) FROM f
        UNION ALL
        SELECT 'summary', 'partners', AVG(CASE WHEN f.mid IS NOT NULL AND f.act = 1 THEN f.partners END),
               SUM(CASE WHEN f.mid IS NOT NULL AND f.act = 1 AND {was_active} THEN 1 ELSE 0 END) FROM f
        UNION ALL
        SELECT 'summary', 'first', AVG(CASE WHEN {new_member} THEN {_days_between(session, 'f.first_on', 'm.joined_on')}
                                   END),
               SUM(CASE WHEN {new_member} THEN 1 ELSE 0 END)
        FROM f JOIN membership m ON m.id = f.mid WHERE f.act = 1
        UNION ALL {member_rows}{flag_rows}"""
    summary, member_dims, flag_sums = {}, {name: {} for name in MEMBER_DIMENSIONS}, {}
    for section, label, n1, n2 in _run(session, sql, {**params, **flag_params}):
        if section == "summary":
            summary[label] = (n1, n2)
        elif section == "flag":
            flag_sums[label] = int(n1 or 0)
        else:
            member_dims[section][str(label)] = (int(n1 or 0), int(n2 or 0))

    # 3. Open-ended lists: people by category and by organisation; organisations taking part.
    lists: dict[str, dict[str, int]] = {"category": {}, "organisation": {}}
    organisations = 0
    for section, label, n in _run(session, f"""
        {'WITH ' + ctes.rstrip(', ') if ctes else ''}
        SELECT 'category', COALESCE(c.name, '{NOT_STATED}'), COUNT(DISTINCT p.membership_id)
        FROM {facts.replace(' WHERE ', ' LEFT JOIN category c ON c.id = p.category_id WHERE ', 1)} AND p.active = 1
        GROUP BY COALESCE(c.name, '{NOT_STATED}')
        UNION ALL
        SELECT 'organisation', COALESCE(o.name, 'no organisation'), COUNT(DISTINCT p.membership_id)
        FROM {facts.replace(' WHERE ', ' LEFT JOIN organisation o ON o.id = p.organisation_id WHERE ', 1)}
          AND p.active = 1
        GROUP BY COALESCE(o.name, 'no organisation')
        UNION ALL
        SELECT 'organisations', '', COUNT(DISTINCT p.organisation_id) FROM {facts} AND p.active = 1""", params):
        if section == "organisations":
            organisations = int(n)
        else:
            lists[section][str(label)] = int(n)

    breakdowns: dict[str, list[dict]] = {}
    for name in DIMENSIONS:
        if name in MEMBER_DIMENSIONS:
            cells = member_dims[name]
        elif name in lists:
            cells = {label: (entry[0], lists[name].get(label, 0)) for label, entry in hours[name].items()}
        else:
            people = {label: flag_sums.get(f"f_{name}_{k}", 0) for k, label in enumerate(small_values[name])}
            cells = {label: (entry[0], people.get(label, 0)) for label, entry in hours[name].items()}
        rows = [{"label": label, "minutes": minutes, "people": people}
                for label, (minutes, people) in cells.items() if minutes != 0 or people > 0]
        breakdowns[name] = sorted(rows, key=lambda r: (-r["minutes"], r["label"]))

    active, both_sides = summary.get("active", (0, 0))
    partners, retained = summary.get("partners", (None, 0))
    first_days, first_count = summary.get("first", (None, 0))
    trend = []
    for j, label in enumerate(buckets):
        trend.append({"period": label, "members_active": flag_sums.get(f"t_{j}", 0)})
    return {
        "minutes": int(total[0]), "exchanges": int(total[1]), "members_active": int(active or 0),
        "members_gave_and_received": int(both_sides or 0), "organisations_taking_part": organisations,
        "breakdowns": breakdowns, "trend_active": trend,
        "partners_avg": None if partners is None else float(partners), "retained": int(retained or 0),
        "first_days_avg": None if first_days is None else float(first_days), "first_count": int(first_count or 0),
    }


def trend_hours(session, timebank_ids, start: dt.date, end: dt.date, group_by: str, source: str) -> dict:
    """{bucket: (minutes, exchanges)} from the daily roll-up's totals."""
    bucket = _month(session, "d.on_date", group_by)
    return {label: (int(minutes), int(exchanges)) for label, minutes, exchanges in _run(
        session, f"WITH {_daily(source)} SELECT {bucket}, SUM(d.minutes), SUM(d.exchanges) FROM dly d "
                 f"WHERE d.dimension = 'total' GROUP BY {bucket}", _params(timebank_ids, start, end))}


def members_joined(session, timebank_ids, start: dt.date, end: dt.date, group_by: str) -> dict:
    bucket = _month(session, "m.joined_on", group_by)
    return {label: int(n) for label, n in _run(session, f"""
        SELECT {bucket}, COUNT(*) FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL} AND m.joined_on BETWEEN :d0 AND :d1
        GROUP BY {bucket}""", _params(timebank_ids, start, end))}


def pot_movements(session, timebank_ids, start: dt.date, end: dt.date) -> dict:
    pot = {kind: {"transfers": 0, "minutes": 0} for kind in ("donation", "grant")}
    for kind, transfers, minutes in _run(session, """
        SELECT t.kind, COUNT(DISTINCT t.id), COALESCE(SUM(p.minutes), 0)
        FROM transfer t JOIN posting p ON p.transfer_id = t.id
        WHERE t.timebank_id IN :tb AND t.kind IN ('donation', 'grant') AND p.minutes > 0
          AND t.effective_date BETWEEN :d0 AND :d1
        GROUP BY t.kind""", _params(timebank_ids, start, end)):
        pot[kind] = {"transfers": int(transfers), "minutes": int(minutes)}
    return pot
