"""Keeping the report roll-up (impact_fact) equal to what the raw rows say.

The roll-up holds, per exchange, the fact rows that queries.RAW_EVENTS_SQL derives from the exchange
and its transfers. It changes when an exchange is written (confirmed, tags edited, status changed)
or when a reversal of an exchange's transfer is posted. A session hook (installed once, see
`install`) notices both in every flush and refreshes those exchanges' rows in the same transaction,
so services need not know about reports. Rows written with raw SQL (bulk loaders, the demo seeder's
bulk path) bypass the hook: call `rebuild_rollups(session, timebank_id)` afterwards, or run
`flask reports rebuild-rollups`.
"""
from __future__ import annotations

from sqlalchemy import bindparam, event, inspect, text
from sqlalchemy.orm import Session

from timebank.impact.queries import DAILY_COLUMNS, FACT_COLUMNS, RAW_EVENTS_SQL, daily_from_facts_sql, raw_facts_sql

# Exchange columns the fact rows read: a change to any other column (a note, a timestamp) leaves them alone.
_WATCHED = ("status", "transfer_id", "minutes", "kind", "timebank_id", "provider_membership_id",
            "recipient_membership_id", "provider_organisation_id", "recipient_organisation_id", "coproduction_type",
            "outcome_area", "collective", "substitutive", "category_id")

_INSERT = f"INSERT INTO impact_fact ({', '.join(FACT_COLUMNS)}) "
_INSERT_DAILY = f"INSERT INTO impact_daily ({', '.join(DAILY_COLUMNS)}) "


def _events_for(where_e: str) -> str:
    return RAW_EVENTS_SQL.format(where_t=where_e, where_r=where_e)


def refresh_exchanges(connection, exchange_ids) -> None:
    """Replace the fact rows of these exchanges with what their raw rows say now. Idempotent."""
    ids = sorted({int(i) for i in exchange_ids if i is not None})
    days_sql = text("SELECT DISTINCT timebank_id, on_date FROM impact_fact WHERE exchange_id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    days: set = set()
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        params = {"ids": chunk}
        days.update(tuple(r) for r in connection.execute(days_sql, params))
        connection.execute(text("DELETE FROM impact_fact WHERE exchange_id IN :ids")
                           .bindparams(bindparam("ids", expanding=True)), params)
        connection.execute(text(
            _INSERT + f"WITH ev AS ({_events_for('e.id IN :ids')}) {raw_facts_sql('ev')}")
            .bindparams(bindparam("ids", expanding=True)), params)
        days.update(tuple(r) for r in connection.execute(days_sql, params))
    refresh_days(connection, days)


def refresh_days(connection, days) -> None:
    """Regroup impact_daily for these (time bank, day) pairs from impact_fact."""
    for timebank_id, on_date in sorted(days):
        params = {"tb": timebank_id, "d": on_date}
        connection.execute(text("DELETE FROM impact_daily WHERE timebank_id = :tb AND on_date = :d"), params)
        connection.execute(text(_INSERT_DAILY + daily_from_facts_sql(
            "impact_fact", "p.timebank_id = :tb AND p.on_date = :d")), params)


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
    connection.execute(text(_INSERT + f"WITH ev AS ({_events_for(where)}) {raw_facts_sql('ev')} "
                            "ORDER BY 1, 3"), params)
    connection.execute(text("DELETE FROM impact_daily" + ("" if timebank_id is None else
                                                          " WHERE timebank_id = :tb")), params)
    connection.execute(text(_INSERT_DAILY + daily_from_facts_sql(
        "impact_fact", "1 = 1" if timebank_id is None else "p.timebank_id = :tb")), params)
    count = connection.execute(text("SELECT COUNT(*) FROM impact_fact" + ("" if timebank_id is None else
                                                                          " WHERE timebank_id = :tb")),
                               params).scalar_one()
    if connection.dialect.name == "postgresql":
        connection.execute(text("ANALYZE impact_fact"))
        connection.execute(text("ANALYZE impact_daily"))
    return int(count)


_COUNTED = ("confirmed", "reversed")  # only these statuses have fact rows (see RAW_EVENTS_SQL)


def _changed(exchange) -> bool:
    """Does this change touch what the fact rows read, for an exchange that has (or had) fact rows?"""
    state = inspect(exchange)
    if not any(state.attrs[name].history.has_changes() for name in _WATCHED):
        return False
    status = state.attrs["status"].history
    return exchange.status in _COUNTED or any(old in _COUNTED for old in status.deleted or ())


def _after_flush(session, _flush_context) -> None:
    from timebank.exchanges.models import Exchange
    from timebank.ledger.models import Transfer

    exchange_ids, reversed_transfers = set(), set()
    for obj in session.new:
        if isinstance(obj, Exchange) and obj.status in _COUNTED:  # a pending exchange has no fact rows yet
            exchange_ids.add(obj.id)
        elif isinstance(obj, Transfer) and obj.reverses_transfer_id is not None:
            reversed_transfers.add(obj.reverses_transfer_id)
    for obj in session.dirty:
        if isinstance(obj, Exchange) and _changed(obj):
            exchange_ids.add(obj.id)
    for obj in session.deleted:
        if isinstance(obj, Exchange):
            exchange_ids.add(obj.id)
    if not exchange_ids and not reversed_transfers:
        return
    connection = session.connection()
    if reversed_transfers:
        exchange_ids |= set(connection.execute(
            text("SELECT id FROM exchange WHERE transfer_id IN :t").bindparams(bindparam("t", expanding=True)),
            {"t": sorted(reversed_transfers)}).scalars())
    refresh_exchanges(connection, exchange_ids)


def install() -> None:
    """Refresh the roll-up in every flush that writes exchanges or reversals (idempotent)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
