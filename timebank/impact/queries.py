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

# One signed row per exchange delivery (+) and per reversal of one (-), read from the raw tables.
# {where_t} / {where_r} restrict the exchange transfers / the reversals (by time bank and date, or by exchange).
RAW_EVENTS_SQL = """
SELECT e.id AS exchange_id, e.status AS status, e.kind AS kind, e.minutes AS minutes, 1 AS sign,
       t.effective_date AS on_date, e.provider_membership_id AS pm, e.recipient_membership_id AS rm,
       e.provider_organisation_id AS po, e.recipient_organisation_id AS ro, e.coproduction_type AS coproduction_type,
       e.outcome_area AS outcome_area, e.collective AS collective, e.substitutive AS substitutive,
       e.category_id AS category_id, t.timebank_id AS timebank_id
FROM transfer t JOIN exchange e ON e.transfer_id = t.id
WHERE {where_t} AND t.kind IN ('exchange', 'group_activity') AND e.status IN ('confirmed', 'reversed')
UNION ALL
SELECT e.id, e.status, e.kind, -e.minutes, -1, r.effective_date, e.provider_membership_id,
       e.recipient_membership_id, e.provider_organisation_id, e.recipient_organisation_id, e.coproduction_type,
       e.outcome_area, e.collective, e.substitutive, e.category_id, r.timebank_id
FROM transfer r JOIN exchange e ON e.transfer_id = r.reverses_transfer_id
WHERE {where_r} AND r.kind = 'reversal' AND e.status IN ('confirmed', 'reversed')
"""

# Each event twice: once for the provider side, once for the recipient side. These are the columns
# of the roll-up table impact_fact (models.ImpactFact), in its order.
FACT_COLUMNS = ("timebank_id", "exchange_id", "on_date", "sign", "active", "side", "membership_id", "partner_key",
                "organisation_id", "minutes", "kind", "coproduction_type", "outcome_area", "collective",
                "substitutive", "category_id")
_SIDE_SQL = """
SELECT ev.timebank_id, ev.exchange_id, ev.on_date, ev.sign,
       CASE WHEN ev.sign = 1 AND ev.status = 'confirmed' THEN 1 ELSE 0 END AS active,
       '{side}' AS side, ev.{me} AS membership_id, COALESCE(ev.{other}, -ev.{other_org}) AS partner_key,
       COALESCE(ev.po, ev.ro) AS organisation_id, ev.minutes, ev.kind, ev.coproduction_type, ev.outcome_area,
       ev.collective, ev.substitutive, ev.category_id
FROM {ev} ev"""


def raw_facts_sql(events_name: str) -> str:
    """The fact rows (both sides of each event) of the events CTE called `events_name`."""
    return (_SIDE_SQL.format(side="provider", me="pm", other="rm", other_org="ro", ev=events_name) + " UNION ALL "
            + _SIDE_SQL.format(side="recipient", me="rm", other="pm", other_org="po", ev=events_name))


def raw_events_sql(d0: str = "d0", d1: str = "d1") -> str:
    return RAW_EVENTS_SQL.format(
        where_t=f"t.timebank_id IN :tb AND t.effective_date BETWEEN :{d0} AND :{d1}",
        where_r=f"r.timebank_id IN :tb AND r.effective_date BETWEEN :{d0} AND :{d1}")


SOURCES = ("rollup", "raw")


def _facts(source: str, name: str = "p", suffix: str = "") -> str:
    """A CTE `name` holding the period's fact rows: from the roll-up table, or derived from raw rows (the oracle)."""
    d0, d1 = f"d0{suffix}", f"d1{suffix}"
    if source == "raw":
        return (f"ev{suffix} AS MATERIALIZED ({raw_events_sql(d0, d1)}), "
                f"{name} AS ({raw_facts_sql('ev' + suffix)})")
    if source != "rollup":
        raise ValueError(source)
    return (f"{name} AS (SELECT {', '.join(FACT_COLUMNS)} FROM impact_fact "
            f"WHERE timebank_id IN :tb AND on_date BETWEEN :{d0} AND :{d1})")


# Breakdown dimensions kept per day in impact_daily: name -> value expression over a fact row p.
DAILY_DIMENSIONS = {
    "total": "''",
    "coproduction_type": "p.coproduction_type",
    "outcome_area": "p.outcome_area",
    "collective": "CASE WHEN p.collective THEN 'collective' ELSE 'individual' END",
    "substitutive": "CASE WHEN p.substitutive THEN 'substitutive' ELSE 'additive' END",
    "category": "COALESCE(CAST(p.category_id AS VARCHAR(20)), '')",
    "organisation": "COALESCE(CAST(p.organisation_id AS VARCHAR(20)), '')",
    "kind": "p.kind",
}
DAILY_COLUMNS = ("timebank_id", "on_date", "dimension", "value", "minutes", "exchanges", "events")


def daily_from_facts_sql(facts: str, where: str = "1 = 1") -> str:
    """impact_daily rows (DAILY_COLUMNS) grouped from the fact rows in `facts` (a table or CTE name)."""
    return " UNION ALL ".join(f"""
        SELECT p.timebank_id AS timebank_id, p.on_date AS on_date, '{name}' AS dimension, {expr} AS value,
               SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END) AS minutes,
               SUM(CASE WHEN p.side = 'provider' THEN p.sign ELSE 0 END) AS exchanges, COUNT(*) AS events
        FROM {facts} p WHERE {where} GROUP BY p.timebank_id, p.on_date{'' if name == 'total' else ', ' + expr}"""
                              for name, expr in DAILY_DIMENSIONS.items())


# One bit of impact_member_month.tag_mask per known value of the small tag breakdowns (the values the services
# accept, see timebank/exchanges/models.py). A value outside this vocabulary (an outcome area a time bank adds)
# has no bit: its people are counted from impact_fact (figures.py). Never renumber a bit: stored masks use them.
_TAG_VOCABULARY = (
    ("coproduction_type", ("co_commissioning", "co_design", "co_delivery", "co_assessment")),
    ("outcome_area", ("community_safety", "local_environment", "public_health", "social_care", "education",
                      "housing", "other")),
    ("collective", ("collective", "individual")),
    ("substitutive", ("substitutive", "additive")),
    ("kind", ("p2p", "p2a", "a2a")),
    ("organisation", ("",)),  # active with no partner organisation: the "no organisation" row's people
)
TAG_BITS: dict[tuple[str, str], int] = {}
for _name, _values in _TAG_VOCABULARY:
    for _value in _values:
        TAG_BITS[(_name, _value)] = 1 << len(TAG_BITS)

MEMBER_MONTH_COLUMNS = ("timebank_id", "month", "membership_id", "active", "gave", "received", "given_minutes",
                        "first_on", "tag_mask", "category_mask")

# impact_member_month.category_mask: bit (category id mod 62) for each category the member was active in, bit 62
# for no category. Two categories of a period may share a bit: their people are then counted from impact_fact.
CATEGORY_BITS = 62


def category_bit(category_id: int | None) -> int:
    return 1 << (CATEGORY_BITS if category_id is None else int(category_id) % CATEGORY_BITS)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _BitOr:
    """BIT_OR for SQLite (PostgreSQL has it built in): the OR of the non-null integers of a group, NULL if none."""

    def __init__(self):
        self.value = None

    def step(self, value):
        if value is not None:
            self.value = int(value) | (self.value or 0)

    def finalize(self):
        return self.value


def _register_bit_or(dbapi_connection, _record) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_aggregate("bit_or", 1, _BitOr)


def install_bit_or() -> None:
    """Give every new SQLite connection the BIT_OR aggregate the report reads use (idempotent)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _register_bit_or):
        event.listen(Engine, "connect", _register_bit_or)


def month_start_sql(dialect: str, column: str) -> str:
    """The first day of `column`'s month, as the dialect stores a date."""
    if dialect == "sqlite":
        return f"date({column}, 'start of month')"
    return f"CAST(date_trunc('month', {column}) AS DATE)"


def member_month_sql(dialect: str, facts: str, where: str = "1 = 1", bit_or: bool = False) -> str:
    """impact_member_month rows (MEMBER_MONTH_COLUMNS) grouped from the fact rows in `facts` (a table or CTE).

    A mask is the OR of one bit per value. Portable form (what the roll-up is written with): per tag bit a MAX,
    and the sum of the distinct category bits. `bit_or=True` (report reads): the BIT_OR aggregate over each
    row's bits (built into PostgreSQL; on SQLite the one install_bit_or registers).
    """
    month = month_start_sql(dialect, "p.on_date")
    category = (f"CAST(1 AS BIGINT) << CASE WHEN p.category_id IS NULL THEN {CATEGORY_BITS} "
                f"ELSE p.category_id % {CATEGORY_BITS} END")
    if bit_or:
        row_mask = " + ".join(f"CASE {expr} {' '.join(f'WHEN {_quote(v)} THEN {TAG_BITS[(name, v)]}' for v in values)}"
                              f" ELSE 0 END" for name, values in _TAG_VOCABULARY
                              for expr in [DAILY_DIMENSIONS[name]])
        mask = f"COALESCE(BIT_OR(CASE WHEN p.active = 1 THEN {row_mask} END), 0)"
        categories = f"COALESCE(BIT_OR(CASE WHEN p.active = 1 THEN {category} END), 0)"
    else:
        mask = " + ".join(f"MAX(CASE WHEN p.active = 1 AND {DAILY_DIMENSIONS[name]} = '{value}' THEN {bit} ELSE 0 END)"
                          for (name, value), bit in TAG_BITS.items())
        categories = f"COALESCE(CAST(SUM(DISTINCT CASE WHEN p.active = 1 THEN {category} END) AS BIGINT), 0)"
    return f"""
        SELECT p.timebank_id AS timebank_id, {month} AS month, p.membership_id AS membership_id,
               MAX(p.active) AS active,
               MAX(CASE WHEN p.active = 1 AND p.side = 'provider' THEN 1 ELSE 0 END) AS gave,
               MAX(CASE WHEN p.active = 1 AND p.side = 'recipient' THEN 1 ELSE 0 END) AS received,
               SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END) AS given_minutes,
               MIN(CASE WHEN p.active = 1 THEN p.on_date END) AS first_on,
               {mask} AS tag_mask, {categories} AS category_mask
        FROM {facts} p WHERE p.membership_id IS NOT NULL AND {where}
        GROUP BY p.timebank_id, {month}, p.membership_id"""


# impact_member_year: the member-month rows grouped per year, for years starting in these months: January (calendar
# years) and April (the financial year of UK public bodies, which is how commissioners report). A period made of
# whole such years reads one row per member and year instead of one per member and month.
YEAR_STARTS = (1, 4)
MEMBER_YEAR_COLUMNS = ("timebank_id", "starts_on", "membership_id", "active", "gave", "received", "given_minutes",
                       "first_on", "tag_mask", "category_mask", "month_mask")


def year_start_sql(dialect: str, column: str, start_month: int) -> str:
    """The first day of the year (starting in `start_month`) that holds the date `column`."""
    if dialect == "sqlite":
        return (f"date(printf('%04d-%02d-01', CAST(strftime('%Y', {column}) AS INTEGER) - "
                f"(CAST(strftime('%m', {column}) AS INTEGER) < {start_month}), {start_month}))")
    return (f"make_date(CAST(EXTRACT(YEAR FROM {column}) AS INTEGER) - "
            f"CASE WHEN EXTRACT(MONTH FROM {column}) < {start_month} THEN 1 ELSE 0 END, {start_month}, 1)")


def member_year_sql(dialect: str, start_month: int, where: str = "1 = 1") -> str:
    """impact_member_year rows (MEMBER_YEAR_COLUMNS) for years starting in `start_month`, grouped from the
    impact_member_month rows `mm` that `where` selects: flags by MAX, minutes summed, masks OR-ed (BIT_OR), and
    month_mask: bit i set when the member was active in the year's month i (0 the year's first month)."""
    starts_on = year_start_sql(dialect, "mm.month", start_month)
    month = "CAST(strftime('%m', mm.month) AS INTEGER)" if dialect == "sqlite" else \
        "CAST(EXTRACT(MONTH FROM mm.month) AS INTEGER)"
    return f"""
        SELECT mm.timebank_id, {starts_on}, mm.membership_id, MAX(mm.active), MAX(mm.gave), MAX(mm.received),
               SUM(mm.given_minutes), MIN(mm.first_on), COALESCE(BIT_OR(mm.tag_mask), 0),
               COALESCE(BIT_OR(mm.category_mask), 0),
               COALESCE(BIT_OR(CASE WHEN mm.active = 1 THEN 1 << (({month} + {12 - start_month}) % 12) END), 0)
        FROM impact_member_month mm WHERE {where}
        GROUP BY mm.timebank_id, {starts_on}, mm.membership_id"""


def member_first_sql(where: str = "1 = 1") -> str:
    """impact_member_first rows (timebank_id, membership_id, first_on) from the facts `f` that `where` selects:
    each member's first delivered day."""
    return (f"SELECT f.timebank_id, f.membership_id, MIN(f.on_date) FROM impact_fact f WHERE f.sign = 1 "
            f"AND f.membership_id IS NOT NULL AND {where} GROUP BY f.timebank_id, f.membership_id")


def _daily(source: str, suffix: str = "") -> str:
    """A CTE `dly` with the period's impact_daily rows (from the table, or grouped from raw-derived facts)."""
    d0, d1 = f"d0{suffix}", f"d1{suffix}"
    if source == "raw":
        return f"{_facts('raw', 'p', suffix)}, dly AS ({daily_from_facts_sql('p')})"
    return (f"dly AS (SELECT {', '.join(DAILY_COLUMNS)} FROM impact_daily "
            f"WHERE timebank_id IN :tb AND on_date BETWEEN :{d0} AND :{d1})")


ACTIVE = "p.active = 1"

NOT_STATED = "not stated"

# label expression for each breakdown; p = fact row, m = its membership, c = category, o = organisation
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


def _with(source: str = "rollup", suffix: str = "") -> str:
    return f"WITH {_facts(source, 'p', suffix)} "


def _run(session, sql: str, params: dict):
    statement = text(sql)
    if "tb" in params:
        statement = statement.bindparams(bindparam("tb", expanding=True))
    return session.execute(statement, params)


def _params(timebank_ids, start, end, **extra) -> dict:
    return {"tb": list(timebank_ids), "d0": start, "d1": end, **extra}


def headline(session, timebank_ids, start: dt.date, end: dt.date, source: str = "rollup") -> dict:
    """Hours, exchanges, members (total, active, new), organisations, people who gave and received."""
    params = _params(timebank_ids, start, end)
    row = _run(session, _with(source) + f"""
        SELECT COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.sign ELSE 0 END), 0),
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.organisation_id END)
        FROM p""", params).one()
    people = _run(session, _with(source) + f"""
        SELECT COUNT(*), COALESCE(SUM(gave * received), 0) FROM (
          SELECT MAX(CASE WHEN p.side = 'provider' THEN 1 ELSE 0 END) AS gave,
                 MAX(CASE WHEN p.side = 'recipient' THEN 1 ELSE 0 END) AS received
          FROM p WHERE {ACTIVE} AND p.membership_id IS NOT NULL GROUP BY p.membership_id) per_member""",
                  params).one()
    return _headline(session, timebank_ids, start, end, row[0], row[1], row[2], people[0], people[1])


def _headline(session, timebank_ids, start, end, minutes, exchanges, organisations, active, gave_and_received):
    members = _run(session, f"""
        SELECT COUNT(*), COALESCE(SUM(CASE WHEN m.joined_on >= :d0 THEN 1 ELSE 0 END), 0)
        FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL} AND m.joined_on <= :d1""",
                   _params(timebank_ids, start, end)).one()
    minutes = int(minutes or 0)
    return {
        "minutes_delivered": minutes,
        "hours_delivered": round(minutes / 60, 1),
        "exchanges": int(exchanges or 0),
        "members_total": int(members[0]),
        "members_active": int(active or 0),
        "members_new": int(members[1]),
        "organisations_taking_part": int(organisations or 0),
        "members_gave_and_received": int(gave_and_received or 0),
    }


def ledger_minutes_delivered(session, timebank_ids, start: dt.date, end: dt.date) -> int:
    """The same figure read from postings alone: credits of exchange transfers minus those of their reversals.

    The period's exchange transfers as an IN list, not a join: the planner may then read the postings in
    table order against the list (SQLite does, on the M bench: about half the cost of one index probe and
    row fetch per transfer) or probe per transfer, whichever it estimates cheaper. The postings are also bounded
    by the lowest and highest of those transfer ids (true of every one of them, so the sum is the same): a ledger
    records transfers in date order, so a year's transfers are a narrow band of ids, and the postings' transfer
    index is read for that band only instead of whole (XL bench: 1.1M positive postings read for a year's
    200k). The reversed transfer's kind is looked up per reversal (a few per cent of transfers): as a join,
    PostgreSQL merge-joined the whole transfer table (XL bench: 740 ms against 225 ms).
    """
    return int(_run(session, """
        WITH x AS (SELECT t.id FROM transfer t WHERE t.timebank_id IN :tb AND t.kind IN ('exchange', 'group_activity')
                     AND t.effective_date BETWEEN :d0 AND :d1)
        SELECT
          (SELECT COALESCE(SUM(p.minutes), 0) FROM posting p
           WHERE p.minutes > 0 AND p.transfer_id BETWEEN (SELECT MIN(x.id) FROM x) AND (SELECT MAX(x.id) FROM x)
             AND p.transfer_id IN (SELECT x.id FROM x))
          -
          (SELECT COALESCE(SUM(p.minutes), 0) FROM transfer r JOIN posting p ON p.transfer_id = r.id
           WHERE r.timebank_id IN :tb AND r.kind = 'reversal' AND p.minutes > 0
             AND r.effective_date BETWEEN :d0 AND :d1
             AND (SELECT o.kind FROM transfer o WHERE o.id = r.reverses_transfer_id) IN ('exchange', 'group_activity'))
        """, _params(timebank_ids, start, end)).scalar_one())


def minutes_by_timebank(session, timebank_ids, start: dt.date, end: dt.date, source: str = "rollup") -> dict[int, int]:
    rows = _run(session, _with(source) + """
        SELECT p.timebank_id, COALESCE(SUM(p.minutes), 0) FROM p WHERE p.side = 'provider' GROUP BY p.timebank_id""",
                _params(timebank_ids, start, end))
    return {int(tb): int(minutes) for tb, minutes in rows}


def trend(session, timebank_ids, start: dt.date, end: dt.date, group_by: str = "month",
          source: str = "rollup") -> list[dict]:
    """Hours, exchanges, active and new members per month (or year)."""
    params = _params(timebank_ids, start, end)
    bucket = _month(session, "p.on_date", group_by)
    rows = _run(session, _with(source) + f"""
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


def _label(name: str) -> str:
    missing = "no organisation" if name == "organisation" else NOT_STATED
    return f"COALESCE({DIMENSIONS[name][1]}, '{missing}')"


def breakdown(session, timebank_ids, start: dt.date, end: dt.date, dimension: str,
              source: str = "rollup") -> list[dict]:
    """Minutes delivered (provider side) and distinct people taking part, by one dimension."""
    label = _label(dimension)
    rows = _run(session, _with(source) + f"""
        SELECT {label} AS label,
               COALESCE(SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END), 0) AS minutes,
               COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END) AS people
        FROM p
        LEFT JOIN membership m ON m.id = p.membership_id
        LEFT JOIN category c ON c.id = p.category_id
        LEFT JOIN organisation o ON o.id = p.organisation_id
        GROUP BY {label}
        HAVING SUM(CASE WHEN p.side = 'provider' THEN p.minutes ELSE 0 END) <> 0
            OR COUNT(DISTINCT CASE WHEN {ACTIVE} THEN p.membership_id END) > 0
        ORDER BY minutes DESC, label""", _params(timebank_ids, start, end)).all()
    return [{"label": str(r[0]), "minutes": int(r[1]), "people": int(r[2])} for r in rows]


def active_member_count_in_both(session, timebank_ids, start, end, prev_start, prev_end,
                                source: str = "rollup") -> tuple[int, int]:
    """(members active in the previous period, of whom also active in this one)."""
    params = {**_params(timebank_ids, start, end), "d0b": prev_start, "d1b": prev_end}
    row = _run(session, f"""
        WITH {_facts(source, 'p')}, {_facts(source, 'q', 'b')},
             now_m AS (SELECT DISTINCT membership_id AS mid FROM p WHERE active = 1 AND membership_id IS NOT NULL),
             prev_m AS (SELECT DISTINCT membership_id AS mid FROM q WHERE active = 1 AND membership_id IS NOT NULL)
        SELECT (SELECT COUNT(*) FROM prev_m),
               (SELECT COUNT(*) FROM prev_m JOIN now_m ON now_m.mid = prev_m.mid)""", params).one()
    return int(row[0]), int(row[1])


def engagement(session, timebank_ids, start: dt.date, end: dt.date, prev_start: dt.date, prev_end: dt.date,
               head: dict, source: str = "rollup") -> dict:
    params = _params(timebank_ids, start, end)
    # Per active member: distinct partners and first day traded in the period; then averaged.
    partners, days, new_with_first = _run(session, _with(source) + f"""
        SELECT AVG(f.partners),
               AVG(CASE WHEN m.joined_on BETWEEN :d0 AND :d1 AND {MEMBER_ROLES_SQL}
                        THEN {_days_between(session, 'f.first_on', 'm.joined_on')} END),
               COALESCE(SUM(CASE WHEN m.joined_on BETWEEN :d0 AND :d1 AND {MEMBER_ROLES_SQL} THEN 1 ELSE 0 END), 0)
        FROM (SELECT p.membership_id AS mid, COUNT(DISTINCT p.partner_key) AS partners, MIN(p.on_date) AS first_on
              FROM p WHERE {ACTIVE} AND p.membership_id IS NOT NULL GROUP BY p.membership_id) f
        JOIN membership m ON m.id = f.mid""", params).one()
    no_trade = _no_trade_yet(session, timebank_ids, start, end, source)
    pot = {kind: {"transfers": 0, "minutes": 0} for kind in ("donation", "grant")}
    for kind, transfers, minutes in _run(session, """
        SELECT t.kind, COUNT(DISTINCT t.id), COALESCE(SUM(p.minutes), 0)
        FROM transfer t JOIN posting p ON p.transfer_id = t.id
        WHERE t.timebank_id IN :tb AND t.kind IN ('donation', 'grant') AND p.minutes > 0
          AND t.effective_date BETWEEN :d0 AND :d1
        GROUP BY t.kind""", params):
        pot[kind] = {"transfers": int(transfers), "minutes": int(minutes)}
    prev_active, retained = active_member_count_in_both(session, timebank_ids, start, end, prev_start, prev_end,
                                                        source)
    total, active = head["members_total"], head["members_active"]
    return {
        "share_active": round(active / total, 3) if total else None,
        "retention": round(retained / prev_active, 3) if prev_active else None,
        "members_active_previous_period": prev_active,
        "members_retained": retained,
        "exchanges_per_active_member": round(head["exchanges"] / active, 2) if active else None,
        "distinct_partners_per_member": round(float(partners), 2) if partners is not None else None,
        "members_no_trade_yet": int(no_trade),
        "days_joining_to_first_exchange_avg": round(float(days), 1) if days is not None else None,
        "new_members_with_first_exchange": int(new_with_first or 0),
        "pot_donations_minutes": pot["donation"]["minutes"],
        "pot_donations": pot["donation"]["transfers"],
        "pot_grants_minutes": pot["grant"]["minutes"],
        "pot_grants": pot["grant"]["transfers"],
    }


def _no_trade_yet(session, timebank_ids, start, end, source: str) -> int:
    """Members (joined by the period's end) with no exchange delivered by the period's end."""
    if source == "raw":
        traded = """SELECT 1 FROM exchange e JOIN transfer t ON t.id = e.transfer_id
            WHERE e.status IN ('confirmed', 'reversed') AND t.effective_date <= :d1 AND e.{side}_membership_id = m.id"""
        condition = (f"NOT EXISTS ({traded.format(side='provider')}) "
                     f"AND NOT EXISTS ({traded.format(side='recipient')})")
    else:
        condition = ("NOT EXISTS (SELECT 1 FROM impact_member_first f WHERE f.membership_id = m.id "
                     "AND f.first_on <= :d1)")
    return int(_run(session, f"""
        SELECT COUNT(*) FROM membership m
        WHERE m.timebank_id IN :tb AND m.status = 'active' AND {MEMBER_ROLES_SQL} AND m.joined_on <= :d1
          AND {condition}""", _params(timebank_ids, start, end)).scalar_one())


def all_breakdowns(session, timebank_ids, start: dt.date, end: dt.date,
                   source: str = "rollup") -> dict[str, list[dict]]:
    """Every breakdown in one statement: the period's facts are labelled once, then grouped per dimension."""
    labelled = ", ".join(f"{_label(name)} AS d_{name}" for name in DIMENSIONS)
    per_dimension = " UNION ALL ".join(f"""
        SELECT '{name}' AS dimension, d_{name} AS label,
               COALESCE(SUM(CASE WHEN side = 'provider' THEN minutes ELSE 0 END), 0) AS minutes,
               COUNT(DISTINCT CASE WHEN active = 1 THEN membership_id END) AS people
        FROM lp GROUP BY d_{name}
        HAVING SUM(CASE WHEN side = 'provider' THEN minutes ELSE 0 END) <> 0
            OR COUNT(DISTINCT CASE WHEN active = 1 THEN membership_id END) > 0""" for name in DIMENSIONS)
    sql = f"""
        WITH {_facts(source)},
             lp AS MATERIALIZED (
               SELECT p.side AS side, p.minutes AS minutes, p.membership_id AS membership_id,
                      p.active AS active, {labelled}
               FROM p
               LEFT JOIN membership m ON m.id = p.membership_id
               LEFT JOIN category c ON c.id = p.category_id
               LEFT JOIN organisation o ON o.id = p.organisation_id)
        {per_dimension}"""
    out: dict[str, list[dict]] = {name: [] for name in DIMENSIONS}
    for dimension, label, minutes, people in _run(session, sql, _params(timebank_ids, start, end)):
        out[dimension].append({"label": str(label), "minutes": int(minutes), "people": int(people)})
    for rows in out.values():
        rows.sort(key=lambda r: (-r["minutes"], r["label"]))
    return out
