"""Keeping the report roll-up (impact_fact and the tables grouped from it) equal to what the raw rows say.

The roll-up holds, per exchange, the fact rows that queries.RAW_EVENTS_SQL derives from the exchange
and its transfers. It changes when an exchange is written (confirmed, tags edited, status changed)
or when a reversal of an exchange's transfer is posted. A session hook (installed once, see
`install`) notices both in every flush and refreshes those exchanges' rows in the same transaction,
so services need not know about reports. Rows written with raw SQL (bulk loaders, the demo seeder's
bulk path) bypass the hook: call `rebuild_rollups(session, timebank_id)` afterwards, or run
`flask reports rebuild-rollups`.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, event, inspect, text
from sqlalchemy.orm import Session

from timebank.impact.queries import (DAILY_COLUMNS, FACT_COLUMNS, MEMBER_MONTH_COLUMNS, MEMBER_YEAR_COLUMNS,
                                     RAW_EVENTS_SQL, YEAR_STARTS, daily_from_facts_sql, member_first_sql,
                                     member_month_sql, member_year_sql, raw_facts_sql)

# Exchange columns the fact rows read: a change to any other column (a note, a timestamp) leaves them alone.
_WATCHED = ("status", "transfer_id", "minutes", "kind", "timebank_id", "provider_membership_id",
            "recipient_membership_id", "provider_organisation_id", "recipient_organisation_id", "coproduction_type",
            "outcome_area", "collective", "substitutive", "category_id")

_INSERT = f"INSERT INTO impact_fact ({', '.join(FACT_COLUMNS)}) "
_INSERT_DAILY = f"INSERT INTO impact_daily ({', '.join(DAILY_COLUMNS)}) "
_INSERT_MEMBER_MONTH = f"INSERT INTO impact_member_month ({', '.join(MEMBER_MONTH_COLUMNS)}) "
_INSERT_MEMBER_YEAR = f"INSERT INTO impact_member_year ({', '.join(MEMBER_YEAR_COLUMNS)}) "


def _events_for(where_e: str) -> str:
    return RAW_EVENTS_SQL.format(where_t=where_e, where_r=where_e)


# The previous active day of each active member row, per partner and per organisation (ImpactFact.pair_prev_on,
# org_prev_on). A window over whole partitions: {where} must select every active row of each (member, partner) or
# (member, organisation) it touches (a filter on the member and the partner does).
_PREVIOUS_DAYS = """
UPDATE impact_fact SET {column} = x.prev
FROM (SELECT timebank_id AS t, on_date AS d, exchange_id AS e, sign AS s, side AS sd,
             LAG(on_date) OVER (PARTITION BY timebank_id, membership_id, {other}
                                ORDER BY on_date, exchange_id, side) AS prev
      FROM impact_fact WHERE active = 1 AND membership_id IS NOT NULL AND {other} IS NOT NULL AND {where}) x
WHERE impact_fact.timebank_id = x.t AND impact_fact.on_date = x.d AND impact_fact.exchange_id = x.e
  AND impact_fact.sign = x.s AND impact_fact.side = x.sd AND impact_fact.{column} {distinct} x.prev"""


def set_previous_days(connection, members=None, partners=None, organisations=None, timebank_id=None) -> None:
    """Set pair_prev_on and org_prev_on: for every row (no arguments, or one time bank), or for the pairs of
    these members with these partners and these organisations (after their fact rows changed)."""
    distinct = "IS DISTINCT FROM" if connection.dialect.name == "postgresql" else "IS NOT"
    for column, other, values in (("pair_prev_on", "partner_key", partners),
                                  ("org_prev_on", "organisation_id", organisations)):
        if members is None:
            where, params = ("1 = 1", {}) if timebank_id is None else ("timebank_id = :tb", {"tb": timebank_id})
            statement = text(_PREVIOUS_DAYS.format(column=column, other=other, where=where, distinct=distinct))
        else:
            if not members or not values:
                continue
            where, params = f"membership_id IN :members AND {other} IN :values", {
                "members": sorted(members), "values": sorted(values)}
            statement = text(_PREVIOUS_DAYS.format(column=column, other=other, where=where, distinct=distinct)
                             ).bindparams(bindparam("members", expanding=True), bindparam("values", expanding=True))
        connection.execute(statement, params)


_TOUCHED = text("SELECT DISTINCT timebank_id, on_date, membership_id, partner_key, organisation_id "
                 "FROM impact_fact WHERE exchange_id IN :ids").bindparams(bindparam("ids", expanding=True))
_DELETE_FACTS = text("DELETE FROM impact_fact WHERE exchange_id IN :ids").bindparams(bindparam("ids", expanding=True))
_FACTS_FROM_RAW = _INSERT + f"WITH ev AS ({_events_for('e.id IN :ids')}) {raw_facts_sql('ev')}"
_INSERT_FACTS = text(_FACTS_FROM_RAW).bindparams(bindparam("ids", expanding=True))
# PostgreSQL: the insert hands back what it touched and what it adds to impact_daily in the same statement (two
# round trips and two reads of the rows just written fewer). 't' rows are touched keys, 'd' rows daily sums.
_INSERT_FACTS_RETURNING = text(
    f"WITH ins AS ({_FACTS_FROM_RAW} RETURNING *) "
    "SELECT DISTINCT 't' AS kind, timebank_id, on_date, NULL AS dimension, NULL AS value, membership_id, "
    "partner_key, organisation_id, 0 AS minutes, 0 AS exchanges, 0 AS events FROM ins "
    "UNION ALL SELECT 'd', d.timebank_id, d.on_date, d.dimension, d.value, NULL, NULL, NULL, d.minutes, d.exchanges, "
    f"d.events FROM ({daily_from_facts_sql('ins')}) d").bindparams(bindparam("ids", expanding=True))


def _add(delta: dict[tuple, list[int]], key: tuple, values, sign: int) -> None:
    row = delta.setdefault(key, [0, 0, 0])
    for i, value in enumerate(values):
        row[i] += sign * int(value)


def refresh_exchanges(connection, exchange_ids, fresh_ids=()) -> None:
    """Replace the fact rows of these exchanges with what their raw rows say now, and move impact_daily by the
    difference. Idempotent. `fresh_ids`: exchanges known to have no fact rows yet (just created, or just confirmed
    from a status that has none), whose old rows need not be read or deleted."""
    ids = sorted({int(i) for i in exchange_ids if i is not None})
    fresh = {int(i) for i in fresh_ids if i is not None}
    postgres = connection.dialect.name == "postgresql"
    # What the rows touch, before and after: member-months to regroup, and the members' partners and
    # organisations whose previous days to set again.
    touched: set = set()
    delta: dict[tuple, list[int]] = {}
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        old = [i for i in chunk if i not in fresh]
        if old:
            touched.update(tuple(r) for r in connection.execute(_TOUCHED, {"ids": old}))
            for key, values in _daily_of(connection, old).items():
                _add(delta, key, values, -1)
            connection.execute(_DELETE_FACTS, {"ids": old})
        if postgres:
            for kind, tb, on_date, dimension, value, member, partner, organisation, *values in connection.execute(
                    _INSERT_FACTS_RETURNING, {"ids": chunk}):
                if kind == "t":
                    touched.add((tb, on_date, member, partner, organisation))
                else:
                    _add(delta, (tb, on_date, dimension, value), values, 1)
        else:
            connection.execute(_INSERT_FACTS, {"ids": chunk})
            touched.update(tuple(r) for r in connection.execute(_TOUCHED, {"ids": chunk}))
            for key, values in _daily_of(connection, chunk).items():
                _add(delta, key, values, 1)
    set_previous_days(connection, members={m for _t, _d, m, _p, _o in touched if m is not None},
                      partners={p for _t, _d, m, p, _o in touched if m is not None and p is not None},
                      organisations={o for _t, _d, m, _p, o in touched if m is not None and o is not None})
    months = {(tb, _month_of(on_date), member) for tb, on_date, member, _p, _o in touched if member is not None}
    firsts = {(tb, member) for tb, _d, member, _p, _o in touched if member is not None}
    _lock_keys(connection, [("impact_member_month", tb, month, member) for tb, month, member in months]
               + [("impact_member_year", tb, _year_start(month, start_month), member)
                  for tb, month, member in months for start_month in YEAR_STARTS]
               + [("impact_member_first", tb, None, member) for tb, member in firsts])
    # Only new fact rows (a confirmation): every regrouped row can only appear or grow, so an upsert of the regrouped
    # rows replaces the DELETE and INSERT pairs (three statements fewer).
    only_added = set(ids) <= fresh
    refresh_member_months(connection, months, only_added=only_added)
    refresh_member_firsts(connection, firsts, only_added=only_added)
    # Last: every writer of a day adds to that day's rows (its totals above all), and each holds their row locks
    # until it commits. Taken here, they are held for the rest of the request only, not for the regrouping too.
    apply_daily_delta(connection, delta)


def _upsert(key: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """ON CONFLICT on `key`: the other columns take the new row's values (both dialects)."""
    return (f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key))


def refresh_member_firsts(connection, keys, only_added: bool = False) -> None:
    """Set impact_member_first again for these (time bank, membership) keys from their facts (the caller holds their
    locks: _lock_keys). `only_added`: the facts only gained rows since, so no row can have to go (upsert only)."""
    members: dict[int, set] = {}
    for timebank_id, membership_id in keys:
        members.setdefault(timebank_id, set()).add(int(membership_id))
    for timebank_id, ids in sorted(members.items()):
        params = {"tb": timebank_id, "ids": sorted(ids)}
        if not only_added:
            connection.execute(text("DELETE FROM impact_member_first WHERE timebank_id = :tb "
                                    "AND membership_id IN :ids").bindparams(bindparam("ids", expanding=True)), params)
        # Per member the earliest delivered row through the (membership_id, on_date) index, not a group of all
        # of the member's rows (32,030 for the XL bench's busiest member).
        connection.execute(text(
            "INSERT INTO impact_member_first (timebank_id, membership_id, first_on) "
            "SELECT x.timebank_id, x.membership_id, x.first_on FROM ("
            "  SELECT m.timebank_id AS timebank_id, m.id AS membership_id, (SELECT MIN(f.on_date) FROM impact_fact f "
            "    WHERE f.membership_id = m.id AND f.sign = 1) AS first_on "
            "  FROM membership m WHERE m.timebank_id = :tb AND m.id IN :ids) x WHERE x.first_on IS NOT NULL"
            + (_upsert(("timebank_id", "membership_id"), ("timebank_id", "membership_id", "first_on"))
               if only_added else "")).bindparams(bindparam("ids", expanding=True)), params)


_DAILY_OF = text(daily_from_facts_sql("impact_fact", "p.exchange_id IN :ids")).bindparams(
    bindparam("ids", expanding=True))


def _daily_of(connection, ids) -> dict[tuple, tuple[int, int, int]]:
    """What these exchanges' fact rows add to impact_daily, by (time bank, day, dimension, value)."""
    return {tuple(r[:4]): (int(r[4]), int(r[5]), int(r[6])) for r in connection.execute(_DAILY_OF, {"ids": ids})}


_UPSERT_DAILY = text(
    _INSERT_DAILY + "VALUES (:timebank_id, :on_date, :dimension, :value, :minutes, :exchanges, :events) "
    "ON CONFLICT (timebank_id, on_date, dimension, value) DO UPDATE SET "
    "minutes = impact_daily.minutes + excluded.minutes, exchanges = impact_daily.exchanges + excluded.exchanges, "
    "events = impact_daily.events + excluded.events")
_DROP_EMPTY_DAILY = text("DELETE FROM impact_daily WHERE timebank_id = :timebank_id AND on_date = :on_date "
                         "AND dimension = :dimension AND value = :value AND events = 0")


def apply_daily_delta(connection, delta: dict[tuple, list[int]]) -> None:
    """Add a difference to impact_daily, row by row, and drop rows left with no events.

    An upsert touches only the rows that change, so writers on the same day do not regroup the whole day,
    and two of them adding to the same row one after the other both count (on PostgreSQL the second waits
    for the first's row; SQLite lets one writer in at a time). Keys go in sorted order, so two writers
    lock shared rows in the same order.
    """
    rows = [dict(zip(DAILY_COLUMNS, (*key, *values))) for key, values in sorted(delta.items(), key=lambda kv: tuple(
        str(part) for part in kv[0])) if any(values)]
    if not rows:
        return
    connection.execute(_UPSERT_DAILY, rows)
    emptied = [row for row in rows if row["events"] < 0]
    if emptied:
        connection.execute(_DROP_EMPTY_DAILY, emptied)


def _month_of(on_date) -> dt.date:
    """The first day of the month of a date (SQLite hands dates back as text from a text() query)."""
    day = on_date if isinstance(on_date, dt.date) else dt.date.fromisoformat(str(on_date)[:10])
    return day.replace(day=1)


def _month_end(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def _year_start(month: dt.date, start_month: int) -> dt.date:
    return dt.date(month.year - (month.month < start_month), start_month, 1)


_LOCK_ORDER = {"impact_member_month": 0, "impact_member_year": 1, "impact_member_first": 2}


def _lock_keys(connection, keys) -> None:
    """PostgreSQL: wait for any other transaction regrouping these (table, time bank, period, member) rows to commit.

    Two transactions regrouping the same member-month (a re-tag while the member confirms) would both insert its
    row: the second waits here until the first commits, then sees its rows. One statement for every key of a
    write, in one order (months, then years, then first days, each sorted): every transaction takes these locks
    in the same order. SQLite lets one writer in at a time."""
    if connection.dialect.name != "postgresql" or not keys:
        return
    keys = sorted({(_LOCK_ORDER[table], table, int(tb), str(period or ""), int(member))
                   for table, tb, period, member in keys})
    connection.execute(text(
        "SELECT pg_advisory_xact_lock(hashtextextended(k.name || ':' || CAST(k.tb AS text) || ':' || k.period || ':' "
        "|| CAST(k.member AS text), 0)) FROM unnest(CAST(:names AS text[]), CAST(:tbs AS integer[]), "
        "CAST(:periods AS text[]), CAST(:members AS integer[])) WITH ORDINALITY AS k(name, tb, period, member, n) "
        "ORDER BY k.n"),
        {"names": [k[1] for k in keys], "tbs": [k[2] for k in keys], "periods": [k[3] for k in keys],
         "members": [k[4] for k in keys]})


def _months_of_year(starts_on: dt.date) -> list[dt.date]:
    return [dt.date(starts_on.year + (starts_on.month - 1 + i) // 12, (starts_on.month - 1 + i) % 12 + 1, 1)
            for i in range(12)]


def refresh_member_months(connection, keys, only_added: bool = False) -> None:
    """Regroup impact_member_month for these (time bank, first day of month, membership) keys from impact_fact,
    then impact_member_year for the years holding those months (the caller holds their locks: _lock_keys).
    `only_added`: the facts only gained rows since, so no row can have to go (upsert only)."""
    members: dict[tuple, set] = {}
    for timebank_id, month, membership_id in keys:
        members.setdefault((timebank_id, month), set()).add(int(membership_id))
    dialect = connection.dialect.name
    years: dict[tuple, set] = {}
    for (timebank_id, month), ids in sorted(members.items()):
        params = {"tb": timebank_id, "m": month, "m1": _month_end(month), "ids": sorted(ids)}
        if not only_added:
            connection.execute(text("DELETE FROM impact_member_month WHERE timebank_id = :tb AND month = :m "
                                    "AND membership_id IN :ids").bindparams(bindparam("ids", expanding=True)), params)
        connection.execute(text(_INSERT_MEMBER_MONTH + member_month_sql(
            dialect, "impact_fact", "p.timebank_id = :tb AND p.on_date BETWEEN :m AND :m1 AND p.membership_id IN :ids")
            + (_upsert(("timebank_id", "month", "membership_id"), MEMBER_MONTH_COLUMNS) if only_added else ""))
            .bindparams(bindparam("ids", expanding=True)), params)
        for start_month in YEAR_STARTS:
            years.setdefault((timebank_id, start_month, _year_start(month, start_month)), set()).update(ids)
    by_bank: dict[int, list] = {}
    for (timebank_id, start_month, starts_on), ids in sorted(years.items()):
        by_bank.setdefault(timebank_id, []).append((start_month, starts_on, sorted(ids)))
    for timebank_id, items in sorted(by_bank.items()):
        _regroup_years(connection, timebank_id, items, only_added)


def _regroup_years(connection, timebank_id: int, items, only_added: bool = False) -> None:
    """Regroup impact_member_year for one time bank's (start month, first day of year, member ids) items: every
    year in one DELETE and one INSERT. Each year's twelve months by name: the key (time bank, month, member) is
    then probed per month and member, instead of reading the time bank's whole year of member-months."""
    dialect = connection.dialect.name
    params, deletes, inserts, binds = {"tb": timebank_id}, [], [], []
    for i, (start_month, starts_on, ids) in enumerate(items):
        params.update({f"y{i}": starts_on, f"months{i}": _months_of_year(starts_on), f"ids{i}": ids})
        deletes.append(f"(starts_on = :y{i} AND membership_id IN :ids{i})")
        inserts.append(member_year_sql(dialect, start_month, f"mm.timebank_id = :tb AND mm.month IN :months{i} "
                                                             f"AND mm.membership_id IN :ids{i}"))
        binds += [bindparam(f"ids{i}", expanding=True), bindparam(f"months{i}", expanding=True)]
    if not only_added:
        connection.execute(text(f"DELETE FROM impact_member_year WHERE timebank_id = :tb AND ({' OR '.join(deletes)})")
                           .bindparams(*[b for b in binds if b.key.startswith("ids")]),
                           {k: v for k, v in params.items() if not k.startswith("months")})
    connection.execute(text(_INSERT_MEMBER_YEAR + " UNION ALL ".join(inserts) + (
        _upsert(("timebank_id", "starts_on", "membership_id"), MEMBER_YEAR_COLUMNS) if only_added else ""))
        .bindparams(*binds), params)


def rebuild_rollups(session, timebank_id: int | None = None) -> int:
    """Rebuild the roll-up for one time bank (every time bank when None) from raw rows. Flushes, never commits.

    For data written without the ORM (bulk seeding, imports). Returns the number of fact rows.
    """
    session.flush()
    connection = session.connection()
    where = "1 = 1" if timebank_id is None else "e.timebank_id = :tb"
    params = {} if timebank_id is None else {"tb": timebank_id}
    connection.execute(text("DELETE FROM impact_fact" + ("" if timebank_id is None else
                                                         " WHERE timebank_id = :tb")), params)
    # The previous-day columns in the same statement (a later UPDATE would write every row twice).
    previous = ", ".join(
        f"CASE WHEN {qualifies} THEN LAG(f.on_date) OVER (PARTITION BY f.timebank_id, f.membership_id, f.{other}, "
        f"CASE WHEN {qualifies} THEN 1 ELSE 0 END ORDER BY f.on_date, f.exchange_id, f.side) END"
        for other in ("partner_key", "organisation_id")
        for qualifies in [f"f.active = 1 AND f.membership_id IS NOT NULL AND f.{other} IS NOT NULL"])
    connection.execute(text(
        f"INSERT INTO impact_fact ({', '.join(FACT_COLUMNS)}, pair_prev_on, org_prev_on) "
        f"WITH ev AS ({_events_for(where)}), f AS ({raw_facts_sql('ev')}) "
        f"SELECT {', '.join('f.' + c for c in FACT_COLUMNS)}, {previous} FROM f ORDER BY 1, 3"), params)
    dialect = connection.dialect.name

    def refill(table: str, insert: str, column: str) -> None:
        """Replace the time bank's rows of `table` (every row when timebank_id is None) by `insert`'s, which reads
        a table aliased so that `column` is its time bank column."""
        connection.execute(text(f"DELETE FROM {table}" + ("" if timebank_id is None else " WHERE timebank_id = :tb")),
                           params)
        where = "1 = 1" if timebank_id is None else f"{column} = :tb"
        connection.execute(text(insert.replace("{where}", where)), params)

    refill("impact_daily", _INSERT_DAILY + daily_from_facts_sql("impact_fact", "{where}"), "p.timebank_id")
    refill("impact_member_month", _INSERT_MEMBER_MONTH + member_month_sql(dialect, "impact_fact", "{where}"),
           "p.timebank_id")
    refill("impact_member_first", "INSERT INTO impact_member_first (timebank_id, membership_id, first_on) "
           + member_first_sql("{where}"), "f.timebank_id")
    refill("impact_member_year", _INSERT_MEMBER_YEAR + " UNION ALL ".join(
        member_year_sql(dialect, start_month, "{where}") for start_month in YEAR_STARTS), "mm.timebank_id")
    count = connection.execute(text("SELECT COUNT(*) FROM impact_fact" + ("" if timebank_id is None else
                                                                          " WHERE timebank_id = :tb")),
                               params).scalar_one()
    # Fresh statistics for the planner after a bulk load (both dialects accept ANALYZE of one table).
    for table in ("impact_fact", "impact_daily", "impact_member_month", "impact_member_year", "impact_member_first"):
        connection.execute(text(f"ANALYZE {table}"))
    return int(count)


_COUNTED = ("confirmed", "reversed")  # only these statuses have fact rows (see RAW_EVENTS_SQL)


def _changed(exchange) -> bool:
    """Does this change touch what the fact rows read, for an exchange that has (or had) fact rows?"""
    state = inspect(exchange)
    if not any(state.attrs[name].history.has_changes() for name in _WATCHED):
        return False
    status = state.attrs["status"].history
    return exchange.status in _COUNTED or any(old in _COUNTED for old in status.deleted or ())


def _counted_only_now(exchange) -> bool:
    """Did this flush move the exchange from a status without fact rows (pending, disputed, ...) to a counted one?
    Then it has no fact rows yet: only counted statuses have any, and the flush that left one removed them. When the
    old status is not known (the attribute was expired), the answer is no, and the rows are read as before."""
    status = inspect(exchange).attrs["status"].history
    return exchange.status in _COUNTED and bool(status.deleted) and not any(old in _COUNTED for old in status.deleted)


def _after_flush(session, _flush_context) -> None:
    from timebank.exchanges.models import Exchange
    from timebank.ledger.models import Transfer

    exchange_ids, reversed_transfers, fresh = set(), set(), set()
    for obj in session.new:
        if isinstance(obj, Exchange) and obj.status in _COUNTED:  # a pending exchange has no fact rows yet
            exchange_ids.add(obj.id)
            fresh.add(obj.id)  # new: no fact rows to replace
        elif isinstance(obj, Transfer) and obj.reverses_transfer_id is not None:
            reversed_transfers.add(obj.reverses_transfer_id)
    for obj in session.dirty:
        if isinstance(obj, Exchange) and _changed(obj):
            exchange_ids.add(obj.id)
            if _counted_only_now(obj):
                fresh.add(obj.id)
    for obj in session.deleted:
        if isinstance(obj, Exchange):
            exchange_ids.add(obj.id)
    if not exchange_ids and not reversed_transfers:
        return
    connection = session.connection()
    if reversed_transfers:
        reversing = set(connection.execute(
            text("SELECT id FROM exchange WHERE transfer_id IN :t").bindparams(bindparam("t", expanding=True)),
            {"t": sorted(reversed_transfers)}).scalars())
        exchange_ids |= reversing
        fresh -= reversing  # a reversal changes rows the exchange already has
    refresh_exchanges(connection, exchange_ids, fresh_ids=fresh)


def install() -> None:
    """Refresh the roll-up in every flush that writes exchanges or reversals (idempotent)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
