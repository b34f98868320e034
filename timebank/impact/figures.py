"""The dashboard's figures for a period and the previous one in a few statements over the roll-up.

1. Hours and exchanges per breakdown value (and the total, and the trend) from impact_daily: a few
   hundred rows a month, whatever the number of exchanges.
2. One statement per period over its member rows: impact_member_year for whole calendar or April-March years,
   impact_member_month for other whole months, the partial months at a period's edges grouped from impact_fact
   the same way; one row per member (read as is for exactly one whole year, else grouped): members active, who
   both gave and received, first exchange of new members, retention (the previous period's members joined to
   this period's active ones), people by ward / age band / gender (joined to the member now, so never stale),
   people per known tag value and per category (bits of the masks, OR-ed per member with BIT_OR) and active
   members per month. On PostgreSQL the previous period's statement runs beside this period's.
3. From the period's fact rows: people by organisation (by id, labelled afterwards), organisations taking
   part, distinct partners per member, and people for the few values the masks cannot tell apart (a tag
   value outside the vocabulary, categories sharing a bit). On PostgreSQL these run beside statement 2, on
   another connection reading the same snapshot (db.beside).

`source="raw"` runs the same statements over facts derived from raw exchange and transfer rows (and the
member-month rows grouped from those); the per-figure functions in queries.py are a second, independent
formulation. Tests check all agree (tests/impact/test_impact_rollups.py, test_impact_speed.py).
"""
from __future__ import annotations

import contextlib
import datetime as dt

from sqlalchemy import text

from timebank.impact.db import beside
from timebank.impact.queries import (DAILY_DIMENSIONS, DIMENSIONS, MEMBER_ROLES_SQL, TAG_BITS, YEAR_STARTS, _buckets,
                                     _daily, _days_between, _dialect, _facts, _month, _params, _run, category_bit,
                                     member_month_sql)

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
    """{dimension: {label: [minutes, exchanges, events, a value, {values}]}} from the daily roll-up."""
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
        entry = out[dimension].setdefault(str(label), [0, 0, 0, value, set()])
        entry[4].add(value)  # every value with this label (two categories may share a name)
        entry[0] += int(minutes)
        entry[1] += int(exchanges)
        entry[2] += int(events)
    return out


def month_split(start: dt.date, end: dt.date) -> tuple[tuple[dt.date, dt.date] | None, list[tuple[dt.date, dt.date]]]:
    """(first and last whole month inside [start, end] as first days of months, or None; the other day ranges).

    Whole months are read from impact_member_month; the partial months at the edges from impact_fact.
    """
    first_full = start if start.day == 1 else _bucket_bounds(f"{start.year:04d}-{start.month:02d}")[1] + dt.timedelta(
        days=1)
    last_full = end if (end + dt.timedelta(days=1)).day == 1 else end.replace(day=1) - dt.timedelta(days=1)
    if first_full > last_full:
        return None, [(start, end)]
    ranges = []
    if start < first_full:
        ranges.append((start, first_full - dt.timedelta(days=1)))
    if last_full < end:
        ranges.append((last_full + dt.timedelta(days=1), end))
    return (first_full, last_full.replace(day=1)), ranges


_MEMBER_MONTH_READ = "month, membership_id, active, gave, received, given_minutes, first_on, tag_mask, category_mask"
_MEMBER_YEAR_READ = _MEMBER_MONTH_READ.replace("month", "starts_on AS month", 1)


def year_split(first_month: dt.date, last_month: dt.date) -> tuple[list[dt.date], list[tuple[dt.date, dt.date]]]:
    """([first days of the whole years, starting in a YEAR_STARTS month, inside the months first_month..last_month],
    [(first, last) month ranges left over]), taking a year wherever one starts and fits, from the left."""
    years, ranges, month = [], [], first_month
    while month <= last_month:
        following = month.replace(year=month.year + 1)
        if month.month in YEAR_STARTS and following <= _next_month(last_month):
            years.append(month)
            month = following
            continue
        if ranges and _next_month(ranges[-1][1]) == month:
            ranges[-1] = (ranges[-1][0], month)
        else:
            ranges.append((month, month))
        month = _next_month(month)
    return years, ranges


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _member_months(session, source: str, params: dict, key: str, start: dt.date, end: dt.date,
                   facts_cte: str, years: bool = False) -> str:
    """A SELECT of the period's member rows (month, membership_id, flags...): per member and month, or with
    `years` per member and whole year where the period holds one (rows whose `month` is the year's first day).

    From the roll-up: whole years from impact_member_year, other whole months from impact_member_month, edge days
    grouped from impact_fact. From raw rows: all grouped per month from the raw-derived fact CTE `facts_cte` (the
    oracle for impact_member_month).
    """
    return " UNION ALL ".join(_member_month_parts(session, source, params, key, start, end, facts_cte, years)[0])


def _member_month_parts(session, source: str, params: dict, key: str, start: dt.date, end: dt.date,
                        facts_cte: str, years: bool = False) -> tuple[list[str], dt.date | None]:
    """(The parts of _member_months, one SELECT each; the year's first day when they are exactly one whole year's
    rows, so one row per member, a membership belonging to one time bank, else None)."""
    dialect = _dialect(session)
    if source == "raw":
        return [f"SELECT {_MEMBER_MONTH_READ} FROM ({member_month_sql(dialect, facts_cte, bit_or=True)}) {key}r"], None
    whole_years: list[dt.date] = []
    full, ranges = month_split(start, end)
    parts = []
    if full is not None:
        whole_years, months = year_split(*full) if years else ([], [full])
        if whole_years:
            names = []
            for i, starts_on in enumerate(whole_years):
                params[f"{key}y{i}"] = starts_on
                names.append(f":{key}y{i}")
            parts.append(f"SELECT {_MEMBER_YEAR_READ} FROM impact_member_year "
                         f"WHERE timebank_id IN :tb AND starts_on IN ({', '.join(names)})")
        for i, (m0, m1) in enumerate(months):
            params[f"{key}m0{i}"], params[f"{key}m1{i}"] = m0, m1
            parts.append(f"SELECT {_MEMBER_MONTH_READ} FROM impact_member_month "
                         f"WHERE timebank_id IN :tb AND month BETWEEN :{key}m0{i} AND :{key}m1{i}")
    for i, (a, b) in enumerate(ranges):
        params[f"{key}a{i}"], params[f"{key}b{i}"] = a, b
        where = f"p.timebank_id IN :tb AND p.on_date BETWEEN :{key}a{i} AND :{key}b{i}"
        edge = member_month_sql(dialect, "impact_fact", where, bit_or=True)
        parts.append(f"SELECT {_MEMBER_MONTH_READ} FROM ({edge}) {key}e{i}")
    return parts, (whole_years[0] if len(whole_years) == 1 and len(parts) == 1 else None)


def _per_member(session, source: str, params: dict, key: str, start: dt.date, end: dt.date,
                facts_cte: str) -> tuple[str, dt.date | None]:
    """(A SELECT of one row per member active or not in the period: mid, act, both_sides, first_on, given, tags,
    cats, and for exactly one whole year `months`, its month_mask; that year's first day or None).

    Grouped from the member rows, or for exactly one whole year read straight from its rows (XL bench: grouping
    85k year rows by member cost about 50 ms per period for nothing)."""
    parts, one_year = _member_month_parts(session, source, params, key, start, end, facts_cte, years=True)
    if one_year:
        return (f"SELECT y.membership_id AS mid, y.active AS act, y.gave * y.received AS both_sides, y.first_on, "
                f"y.given_minutes AS given, y.tag_mask AS tags, y.category_mask AS cats, y.month_mask AS months "
                f"FROM impact_member_year y WHERE y.timebank_id IN :tb AND y.starts_on = :{key}y0"), one_year
    rows = f"{key}r" if source == "raw" else f"{key}u"
    return (f"SELECT {rows}.membership_id AS mid, MAX({rows}.active) AS act, "
            f"MAX({rows}.gave) * MAX({rows}.received) AS both_sides, MIN({rows}.first_on) AS first_on, "
            f"SUM({rows}.given_minutes) AS given, BIT_OR({rows}.tag_mask) AS tags, "
            f"BIT_OR({rows}.category_mask) AS cats "
            f"FROM ({' UNION ALL '.join(parts)}) {rows} GROUP BY {rows}.membership_id"), None


def _trend_active(session, source, params, start, end, facts_cte, year_start, group_by) -> str:
    """A SELECT of the members active per trend bucket: for exactly one whole year, bits of its rows' month_mask
    counted over `fc` (labelled by _trend_masks); else from the period's member-month rows (a second read of them,
    XL bench: 55-80 ms a year)."""
    if year_start is not None:
        return _bit_counts("c", "trend", "fc", "months", list(_trend_masks(year_start, group_by)))
    months = f"({_member_months(session, source, params, 't', start, end, facts_cte)}) mt"
    if group_by == "month":  # one member-month row per member and month: sum the flags
        return f"SELECT 'c', 'trend', CAST(mt.month AS VARCHAR(10)), SUM(mt.active), 0 FROM {months} GROUP BY mt.month"
    bucket = _month(session, "mt.month", group_by)
    return (f"SELECT 'c', 'trend', {bucket}, COUNT(DISTINCT CASE WHEN mt.active = 1 THEN mt.membership_id END), 0 "
            f"FROM {months} GROUP BY {bucket}")


def _trend_masks(year_start: dt.date, group_by: str) -> dict[int, str]:
    """{the month_mask bits of a trend bucket: its label} for the year starting on `year_start`."""
    masks: dict[str, int] = {}
    month = year_start
    for i in range(12):
        label = f"{month.year:04d}-{month.month:02d}" if group_by == "month" else f"{month.year:04d}"
        masks[label] = masks.get(label, 0) | 1 << i
        month = _next_month(month)
    return {mask: label for label, mask in masks.items()}


def _active_members(session, source: str, params: dict, key: str, start: dt.date, end: dt.date,
                    facts_cte: str) -> str:
    """A SELECT of the ids (`mid`) of the members active in the period, for retention."""
    parts, one_year = _member_month_parts(session, source, params, key, start, end, facts_cte, years=True)
    if one_year:
        return f"SELECT y.membership_id AS mid FROM ({parts[0]}) y WHERE y.active = 1"
    return (f"SELECT u.membership_id AS mid FROM ({' UNION ALL '.join(parts)}) u "
            f"GROUP BY u.membership_id HAVING MAX(u.active) = 1")


_LABELS = {"category": "not stated", "organisation": "no organisation"}


def _by_label(session, ctes: str, facts: str, params: dict, name: str, by_id: dict,
              none_people: int | None = None) -> dict[str, int]:
    """{label: people} from {id: people} (None: no category / no organisation, or `none_people` when given).

    When two ids share a label (two sub-categories of different parents may share a name, and so may the
    organisations of two time banks), people are counted again grouped by label: a person active in both
    counts once.
    """
    missing = _LABELS[name]
    if none_people is not None:
        by_id = {**by_id, None: none_people}
    # Every name of the time banks read (a few thousand organisations at most) rather than an IN list of
    # thousands of ids, each a bound parameter (XL bench: 176 ms).
    names = dict(_run(session, f"SELECT id, name FROM {name} WHERE timebank_id IN :tb", params).all()) if any(
        i is not None for i in by_id) else {}
    labels = {i: (names.get(i, missing) if i is not None else missing) for i in by_id}
    if len(set(labels.values())) == len(labels):
        return {labels[i]: n for i, n in by_id.items()}
    label = f"COALESCE(x.name, '{missing}')"
    rows = _run(session, f"""
        {'WITH ' + ctes.rstrip(', ') if ctes else ''}
        SELECT {label}, COUNT(DISTINCT p.membership_id)
        FROM {facts.replace(' WHERE ', f' LEFT JOIN {name} x ON x.id = p.{name}_id WHERE ', 1)} AND p.active = 1
        GROUP BY {label}""", params).all()
    return {str(k): int(n) for k, n in rows}


def period_figures(session, timebank_ids, start: dt.date, end: dt.date, *, group_by: str = "month",
                   source: str = "rollup", previous: tuple[dt.date, dt.date] | None = None) -> dict:
    """Headline, breakdown rows (unsuppressed), trend and person-level engagement figures for one period.

    `previous` adds retention (members active then and now).
    """
    return report_figures(session, timebank_ids, start, end, previous, group_by=group_by, source=source)[0]


def report_figures(session, timebank_ids, start: dt.date, end: dt.date,
                   previous: tuple[dt.date, dt.date] | None, *, group_by: str = "month",
                   source: str = "rollup") -> tuple[dict, dict | None]:
    """(this period's figures, the previous period's or None), the person-level pass one statement per period.

    The previous period's figures leave out what only the report's own period shows (trend, distinct
    partners, days from joining to the first exchange).
    """
    periods = [("c", start, end, _params(timebank_ids, start, end))]
    if previous is not None:
        periods.append(("q", previous[0], previous[1], _params(timebank_ids, *previous)))
    hours = {key: _hours(session, params, source) for key, _start, _end, params in periods}
    small_values = {key: {name: [label for label, e in hours[key][name].items() if e[2]] for name in SMALL_DIMENSIONS}
                    for key in hours}
    categories = {key: _category_bits(hours[key]) for key in hours}
    statements = {key: _fact_lists_statement(session, params, source, small_values[key], categories[key],
                                             details=key == "c") for key, _start, _end, params in periods}

    def fact_lists(reader) -> dict:
        return {key: _run(reader, statements[key], params).all() for key, _start, _end, params in periods}

    def member_pass(key):
        return lambda reader: _member_pass(reader, timebank_ids, periods, key, small_values, categories, group_by,
                                           source)

    # The fact-row statements and the previous period's member pass run beside this period's member pass (on
    # PostgreSQL each on another connection reading the same snapshot).
    later = beside(session, member_pass("q")) if previous is not None else contextlib.nullcontext()
    with beside(session, fact_lists) as fact_rows, later as previous_pass:
        member = {"c": member_pass("c")(session)}
        if previous is not None:
            member["q"] = previous_pass()
            member["c"]["summary"]["retained"] = member["q"]["summary"].pop("retained", (0, 0))
        rows = fact_rows()
    out = []
    for key, p_start, p_end, params in periods:
        out.append(_assemble(session, params, source, hours[key], small_values[key], member[key], categories[key],
                             rows[key], details=key == "c", start=p_start, end=p_end, group_by=group_by))
    return out[0], (out[1] if len(out) > 1 else None)


def _category_bits(hours) -> tuple[dict, list]:
    """({category id or None: its category_mask bit} for the period's categories whose bit no other one shares,
    [the ids that share a bit]) for the categories with activity in the period."""
    by_bit: dict[int, list] = {}
    for entry in hours["category"].values():
        for value in entry[4]:
            category_id = int(value) if value != "" else None
            by_bit.setdefault(category_bit(category_id), []).append(category_id)
    alone = {ids[0]: bit for bit, ids in by_bit.items() if len(ids) == 1}
    shared = [i for ids in by_bit.values() if len(ids) > 1 for i in ids]
    return alone, shared


def _bit_counts(key: str, section: str, members: str, column: str, wanted: list[int]) -> str:
    """Members per wanted bit of a per-member mask column: the members grouped by mask first (far fewer masks than
    members), then every bit's count summed in one pass over the masks, then one row per bit. (Joining the masks
    to a list of bits on `mask & bit <> 0` instead cost a nested loop over masks x bits: 135 ms on the XL bench's
    categories, against 50 ms.)"""
    sums = ", ".join(f"SUM(CASE WHEN g.mask & {bit} <> 0 THEN g.n ELSE 0 END) AS b{i}" for i, bit in enumerate(wanted))
    pick = " ".join(f"WHEN {bit} THEN s.b{i}" for i, bit in enumerate(wanted))
    bit_rows = " UNION ALL ".join(f"SELECT {int(bit)} AS bit" for bit in wanted)
    return f"""SELECT '{key}', '{section}', CAST(b.bit AS VARCHAR(20)), CASE b.bit {pick} END, 0
        FROM (SELECT {sums}
              FROM (SELECT f.{column} AS mask, COUNT(*) AS n FROM {members} f WHERE f.{column} <> 0
                    GROUP BY f.{column}) g) s
        CROSS JOIN ({bit_rows}) b"""


def _member_dimensions(session, key: str) -> str:
    """Minutes given and people active by ward, by age band and by gender, over the members of f{key}.

    PostgreSQL groups the three in one pass (GROUPING SETS); SQLite, which has no grouping sets, in three."""
    if _dialect(session) != "postgresql":
        return " UNION ALL ".join(f"""SELECT '{key}', '{name}', COALESCE(f.d_{name}, '{NOT_STATED}'), SUM(f.given),
               SUM(f.act)
        FROM f{key} f GROUP BY COALESCE(f.d_{name}, '{NOT_STATED}')""" for name in MEMBER_DIMENSIONS)
    labels = {name: f"COALESCE(f.d_{name}, '{NOT_STATED}')" for name in MEMBER_DIMENSIONS}
    which = " ".join(f"WHEN GROUPING({label}) = 0 THEN '{name}'" for name, label in labels.items())
    value = " ".join(f"WHEN GROUPING({label}) = 0 THEN {label}" for label in labels.values())
    sets = ", ".join(f"({label})" for label in labels.values())
    return f"""SELECT '{key}', CASE {which} END, CASE {value} END, SUM(f.given), SUM(f.act)
        FROM f{key} f GROUP BY GROUPING SETS ({sets})"""


def _member_pass(session, timebank_ids, periods, key, small_values, categories, group_by, source) -> dict:
    """One statement over one period's member rows (`key`: "c" the report's period, "q" the previous one): one row
    per member with its flags, then summed. The report's period adds the trend and new members' first exchange;
    the previous period adds retention (its active members also active in the report's period, read lightly).
    So the two periods' passes are independent and can run beside each other (report_figures)."""
    params = {"tb": list(timebank_ids), "d0": periods[0][1], "d1": periods[0][2]}
    bounds = {k: (start, end) for k, start, end, _params_ in periods}
    raw_ctes, ctes, selects = [], [], []

    def facts_for(k: str) -> str:
        """The name of period k's fact rows derived from raw rows (declared once), for source="raw"."""
        name, suffix = ("p", "") if k == "c" else ("q", "b")
        if source == "raw" and not any(cte.startswith(f"{name} AS") for cte in raw_ctes):
            params[f"d0{suffix}"], params[f"d1{suffix}"] = bounds[k]
            raw_ctes.append(_facts("raw", name, suffix))
        return name

    start, end = bounds[key]
    facts_cte = facts_for(key)
    bits = sorted({TAG_BITS[(name, label)] for name in SMALL_DIMENSIONS for label in small_values[key][name]
                   if (name, label) in TAG_BITS} | {TAG_BITS[("organisation", "")]})
    category_bits = sorted(categories[key][0].values())
    # One row per member with what the selects below need of the membership, joined once here (the planner
    # cannot estimate a CTE's rows, and joined per select it chose a nested loop per member).
    member_columns = ", ".join(f"{expr} AS d_{name}" for name, expr in MEMBER_DIMENSIONS.items())
    per_member, year_start = _per_member(session, source, params, key, start, end, facts_cte)
    ctes.append(f"""f{key} AS MATERIALIZED (
           SELECT g.*, {member_columns}, CASE WHEN {MEMBER_ROLES_SQL} THEN m.joined_on END AS member_joined_on
           FROM ({per_member}) g
           LEFT JOIN membership m ON m.id = g.mid)""")
    selects.append(f"SELECT '{key}', 'summary', 'active', SUM(f.act), SUM(f.both_sides) FROM f{key} f")
    selects.append(_member_dimensions(session, key))
    for section, column, wanted in (("flag", "tags", bits), ("category", "cats", category_bits)):
        if wanted:
            selects.append(_bit_counts(key, section, f"f{key}", column, wanted))
    if key == "q" and "c" in bounds:
        ctes.append(f"rc AS ({_active_members(session, source, params, 'r', *bounds['c'], facts_for('c'))})")
        # PostgreSQL hash-joins the two member sets; SQLite would build an index on one first, and is faster
        # probing a list.
        selects.append("SELECT 'q', 'summary', 'retained', COUNT(*), 0 FROM fq f JOIN rc ON rc.mid = f.mid "
                       "WHERE f.act = 1" if _dialect(session) == "postgresql" else
                       "SELECT 'q', 'summary', 'retained', SUM(CASE WHEN f.act = 1 AND f.mid IN "
                       "(SELECT rc.mid FROM rc) THEN 1 ELSE 0 END), 0 FROM fq f")
    if key == "c":
        new_member = "f.member_joined_on BETWEEN :d0 AND :d1"
        selects.append(f"""SELECT 'c', 'summary', 'first',
               AVG(CASE WHEN {new_member} THEN {_days_between(session, 'f.first_on', 'f.member_joined_on')} END),
               SUM(CASE WHEN {new_member} THEN 1 ELSE 0 END)
        FROM fc f WHERE f.act = 1""")
        selects.append(_trend_active(session, source, params, start, end, facts_cte, year_start, group_by))
    out = {"summary": {}, "flag": {}, "category": {}, "trend": {}, **{name: {} for name in MEMBER_DIMENSIONS}}
    sql = f"WITH {', '.join(raw_ctes + ctes)} " + " UNION ALL ".join(selects)
    for _key, section, label, n1, n2 in _run(session, sql, params):
        cells = out[section]
        if section == "summary":
            cells[label] = (n1, n2)
        elif section in ("flag", "category"):
            cells[int(label)] = int(n1 or 0)
        elif section == "trend":
            if year_start is not None:
                label = _trend_masks(year_start, group_by)[int(label)]
            label = str(label)[:7] if group_by == "month" else str(label)
            cells[label] = cells.get(label, 0) + int(n1 or 0)
        else:
            cells[str(label)] = (int(n1 or 0), int(n2 or 0))
    return out


def _average(total: int, count: int):
    """What PostgreSQL's AVG over `count` integers summing to `total` gives (numeric), or None for no rows."""
    if not count:
        return None
    from decimal import Decimal, localcontext

    with localcontext() as context:
        context.prec = 28
        return Decimal(total) / Decimal(count)


def _fact_lists_statement(session, params: dict, source: str, small_values, categories, *,
                          details: bool) -> str:
    """3. The statement over the period's fact rows: people by organisation (an open-ended list, grouped by id,
    then labelled) and by the categories that share a mask bit, organisations taking part, distinct partners per
    active member, and people per tag value outside the mask vocabulary (adds their parameters to `params`).
    People by category (bit by bit) and with no organisation come from the member pass. Independent of the member
    pass, so it can run beside it (report_figures)."""
    ctes, facts = _fact_source(source)
    unknown = _unknown_tags(small_values)
    extra = ""
    # Distinct counts: SQLite's COUNT(DISTINCT) per group is cheaper than de-duplicating first; PostgreSQL sorts
    # for COUNT(DISTINCT) but hashes a DISTINCT subquery (about a fifth faster on the M bench).
    hashed = _dialect(session) == "postgresql"
    # From the roll-up, a member's rows with one partner (or one organisation) count once: the row whose previous
    # such row is before the period (ImpactFact.pair_prev_on, org_prev_on). One scan, no de-duplication; the
    # fourth column, summed over the organisations, is the number of distinct (member, partner) pairs.
    counted = source == "rollup"
    if details and not counted:
        per_member = ("SELECT d.mid, COUNT(*) AS partners FROM (SELECT DISTINCT p.membership_id AS mid, "
                      f"p.partner_key FROM {facts} AND p.active = 1 AND p.membership_id IS NOT NULL "
                      "AND p.partner_key IS NOT NULL) d GROUP BY d.mid" if hashed else
                      "SELECT p.membership_id + 0 AS mid, COUNT(DISTINCT p.partner_key) AS partners "
                      f"FROM {facts} AND p.active = 1 AND p.membership_id IS NOT NULL GROUP BY p.membership_id + 0")
        # Members whose every active side has no partner count with 0 partners (hashed form: added back).
        extra += f"""
        UNION ALL
        SELECT 'partners', NULL, {'SUM(n.partners)' if hashed else 'AVG(n.partners)'}, 0 FROM ({per_member}) n"""
    for k, (name, label) in enumerate(unknown):
        params[f"u_{k}"] = label
        extra += f"""
        UNION ALL
        SELECT 'tag', {k}, COUNT(DISTINCT p.membership_id), 0 FROM {facts} AND p.active = 1
          AND {DAILY_DIMENSIONS[name]} = :u_{k}"""
    alone, shared = categories
    if shared:  # categories sharing a mask bit: their people from the fact rows
        ids = [int(i) for i in shared if i is not None]
        where = " OR ".join(([f"p.category_id IN ({', '.join(map(str, ids))})"] if ids else [])
                            + (["p.category_id IS NULL"] if None in shared else []))
        extra += (f"\n        UNION ALL\n        SELECT 'category', p.category_id, COUNT(DISTINCT p.membership_id), 0 "
                  f"FROM {facts} AND p.active = 1 AND ({where}) GROUP BY p.category_id")
    if counted:
        pairs_sum = ("SUM(CASE WHEN p.membership_id IS NOT NULL AND p.partner_key IS NOT NULL "
                     "AND (p.pair_prev_on IS NULL OR p.pair_prev_on < :d0) THEN 1 ELSE 0 END)")
        organisations_sql = f"""
        SELECT 'organisation', p.organisation_id,
               SUM(CASE WHEN p.membership_id IS NOT NULL AND (p.org_prev_on IS NULL OR p.org_prev_on < :d0)
                        THEN 1 ELSE 0 END),
               {pairs_sum if details else '0'}
        FROM {facts} AND p.active = 1{'' if details else ' AND p.organisation_id IS NOT NULL'}
        GROUP BY p.organisation_id"""
    else:
        organisations_sql = f"""
        SELECT 'organisation', p.organisation_id, COUNT(DISTINCT p.membership_id), 0 FROM {facts} AND p.active = 1
          AND p.organisation_id IS NOT NULL
        GROUP BY p.organisation_id"""
    return f"""
        {'WITH ' + ctes.rstrip(', ') if ctes else ''}
        {organisations_sql}{extra}"""


def _unknown_tags(small_values) -> list[tuple[str, str]]:
    """The period's small-breakdown values outside the mask vocabulary: their people are counted from the facts."""
    return [(name, label) for name in SMALL_DIMENSIONS for label in small_values[name] if (name, label) not in TAG_BITS]


def _assemble(session, params, source, hours, small_values, member, categories, fact_rows, *, details, start,
              end, group_by) -> dict:
    total = hours["total"].get("", [0, 0, 0, ""])
    ctes, facts = _fact_source(source)
    member_dims, flag_sums = {name: member[name] for name in MEMBER_DIMENSIONS}, member["flag"]
    unknown = _unknown_tags(small_values)
    # Sides with no member (an organisation providing) have no member-month row: their minutes are the rest of
    # the total, shown as "not stated" like any side whose member has no ward, age band or gender.
    organisation_minutes = int(total[0]) - sum(minutes for minutes, _people in member_dims["ward"].values())
    if organisation_minutes:
        for cells in member_dims.values():
            minutes, people = cells.get(NOT_STATED, (0, 0))
            cells[NOT_STATED] = (minutes + organisation_minutes, people)

    lists: dict[str, dict] = {"category": {}, "organisation": {}}
    partners, unknown_people = None, {}
    hashed, counted = _dialect(session) == "postgresql", source == "rollup"
    alone, _shared = categories
    pairs = 0
    for section, key, n, n_pairs in fact_rows:
        pairs += int(n_pairs or 0)
        if section == "organisation" and key is None:  # members' sides with no organisation: partners only
            continue
        if section == "partners":
            partners = n
            if hashed:  # the average over every active member, as AVG over the members would give
                partners = _average(int(n or 0), int(member["summary"].get("active", (0, 0))[0] or 0))
        elif section == "tag":
            unknown_people[unknown[int(key)]] = int(n)
        else:
            lists[section][key] = int(n)
    if details and counted:  # the average over every active member, as AVG over the members would give
        partners = _average(pairs, int(member["summary"].get("active", (0, 0))[0] or 0))
    organisations = len(lists["organisation"])
    for category_id, bit in alone.items():
        lists["category"][category_id] = member["category"].get(bit, 0)
    lists["category"] = _by_label(session, ctes, facts, params, "category", lists["category"])
    no_organisation = any("" in e[4] for e in hours["organisation"].values())
    lists["organisation"] = _by_label(session, ctes, facts, params, "organisation", lists["organisation"],
                                      flag_sums.get(TAG_BITS[("organisation", "")], 0) if no_organisation else None)

    breakdowns: dict[str, list[dict]] = {}
    for name in DIMENSIONS:
        if name in MEMBER_DIMENSIONS:
            cells = member_dims[name]
        elif name in lists:
            cells = {label: (entry[0], lists[name].get(label, 0)) for label, entry in hours[name].items()}
        else:
            people = {label: (flag_sums.get(TAG_BITS[(name, label)], 0) if (name, label) in TAG_BITS
                              else unknown_people.get((name, label), 0)) for label in small_values[name]}
            cells = {label: (entry[0], people.get(label, 0)) for label, entry in hours[name].items()}
        rows = [{"label": label, "minutes": minutes, "people": people}
                for label, (minutes, people) in cells.items() if minutes != 0 or people > 0]
        breakdowns[name] = sorted(rows, key=lambda r: (-r["minutes"], r["label"]))

    summary = member["summary"]
    active, both_sides = summary.get("active", (0, 0))
    retained, _zero = summary.get("retained", (0, 0))
    first_days, first_count = summary.get("first", (None, 0))
    trend = [{"period": label, "members_active": member["trend"].get(label, 0)}
             for label in _buckets(start, end, group_by)]
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
