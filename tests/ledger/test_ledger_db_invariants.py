"""The database itself refuses to break the ledger: raw SQL, real commits, both databases."""
import datetime as dt

import pytest
import sqlalchemy as sa

from timebank.ledger.service import open_account, post_transfer, reverse_transfer

GENESIS = "0" * 64
D = dt.date(2026, 11, 1)


@pytest.fixture
def ledger(committed_db):
    from timebank.community.service import create_timebank

    session = committed_db.session
    tb = create_timebank(session, slug="rawbank", name="Raw")
    other = create_timebank(session, slug="otherbank", name="Other")
    a = open_account(session, timebank_id=tb.id, kind="member", name="A", floor_minutes=-600)
    b = open_account(session, timebank_id=tb.id, kind="member", name="B", floor_minutes=-600)
    c = open_account(session, timebank_id=tb.id, kind="member", name="C", floor_minutes=-600)
    stranger = open_account(session, timebank_id=other.id, kind="member", name="S", floor_minutes=-600)
    t = post_transfer(session, timebank_id=tb.id, kind="exchange", postings=[(a.id, -60), (b.id, 60)],
                      effective_date=D)
    ids = dict(tb=tb.id, a=a.id, b=b.id, c=c.id, s=stranger.id, t=t.id)
    session.commit()
    session.close()
    yield committed_db.engine, ids


def new_transfer(conn, tb, kind="exchange", reverses=None):
    return conn.execute(sa.text(
        "INSERT INTO transfer (timebank_id, kind, memo, effective_date, recorded_at, metadata, reverses_transfer_id) "
        "VALUES (:tb, :kind, 'raw', '2026-11-02', '2026-11-02 10:00:00', '{}', :rev) RETURNING id"),
        dict(tb=tb, kind=kind, rev=reverses)).scalar_one()


def add_posting(conn, transfer_id, account_id, minutes):
    conn.execute(sa.text(
        "INSERT INTO posting (transfer_id, account_id, minutes, prev_hash, hash) VALUES "
        "(:t, :a, :m, coalesce((SELECT chain_head FROM account WHERE id = :a), :g), :h)"),
        dict(t=transfer_id, a=account_id, m=minutes, g=GENESIS, h=f"{transfer_id:032d}{account_id:032d}"))


def balances(engine, ids):
    with engine.connect() as conn:
        return {k: conn.execute(sa.text("SELECT balance_minutes FROM account WHERE id = :i"), {"i": ids[k]}).scalar()
                for k in ("a", "b", "c")}


def refused(engine, work):
    with pytest.raises(sa.exc.DBAPIError):
        with engine.begin() as conn:
            work(conn)


def test_balanced_raw_transfer_moves_stored_balances(ledger):
    engine, ids = ledger
    with engine.begin() as conn:
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -30)
        add_posting(conn, t, ids["c"], 30)
    assert balances(engine, ids) == {"a": -90, "b": 60, "c": 30}


def test_unbalanced_transfer_cannot_commit(ledger):
    engine, ids = ledger

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -30)
        add_posting(conn, t, ids["c"], 29)
    refused(engine, work)
    assert balances(engine, ids) == {"a": -60, "b": 60, "c": 0}


def test_single_posting_and_empty_transfer_cannot_commit(ledger):
    engine, ids = ledger
    refused(engine, lambda conn: new_transfer(conn, ids["tb"]))

    def one_leg(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], 5)
    refused(engine, one_leg)
    assert balances(engine, ids) == {"a": -60, "b": 60, "c": 0}


def test_adding_a_posting_to_a_committed_transfer_is_refused(ledger):
    engine, ids = ledger
    refused(engine, lambda conn: add_posting(conn, ids["t"], ids["c"], 10))
    assert balances(engine, ids)["c"] == 0


@pytest.mark.parametrize("statement", [
    "UPDATE posting SET minutes = minutes * 2",
    "DELETE FROM posting",
    "UPDATE transfer SET memo = 'edited'",
    "DELETE FROM transfer",
])
def test_transfers_and_postings_are_append_only(ledger, statement):
    engine, ids = ledger
    refused(engine, lambda conn: conn.execute(sa.text(statement)))
    assert balances(engine, ids) == {"a": -60, "b": 60, "c": 0}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT memo FROM transfer WHERE id = :t"), {"t": ids["t"]}).scalar() == ""


def test_floor_held_by_database(ledger):
    engine, ids = ledger

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -541)  # -60 - 541 = -601 < -600
        add_posting(conn, t, ids["c"], 541)
    refused(engine, work)
    assert balances(engine, ids)["a"] == -60


def test_ceiling_held_by_database(ledger):
    engine, ids = ledger
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE account SET ceiling_minutes = 100 WHERE id = :c"), {"c": ids["c"]})

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -101)
        add_posting(conn, t, ids["c"], 101)
    refused(engine, work)
    assert balances(engine, ids)["c"] == 0


@pytest.mark.parametrize("status", ["frozen", "closed"])
def test_frozen_or_closed_account_takes_no_postings(ledger, status):
    engine, ids = ledger
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE account SET status = :s WHERE id = :c"), {"s": status, "c": ids["c"]})

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -10)
        add_posting(conn, t, ids["c"], 10)
    refused(engine, work)
    assert balances(engine, ids)["c"] == 0


def test_cross_timebank_posting_refused(ledger):
    engine, ids = ledger

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        add_posting(conn, t, ids["a"], -10)
        add_posting(conn, t, ids["s"], 10)
    refused(engine, work)


def test_transfer_reversed_at_most_once(ledger):
    engine, ids = ledger
    with engine.begin() as conn:
        r = new_transfer(conn, ids["tb"], kind="reversal", reverses=ids["t"])
        add_posting(conn, r, ids["a"], 60)
        add_posting(conn, r, ids["b"], -60)

    def second(conn):
        r2 = new_transfer(conn, ids["tb"], kind="reversal", reverses=ids["t"])
        add_posting(conn, r2, ids["a"], 60)
        add_posting(conn, r2, ids["b"], -60)
    refused(engine, second)
    assert balances(engine, ids) == {"a": 0, "b": 0, "c": 0}


def test_posting_must_extend_the_hash_chain(ledger):
    engine, ids = ledger

    def work(conn):
        t = new_transfer(conn, ids["tb"])
        conn.execute(sa.text("INSERT INTO posting (transfer_id, account_id, minutes, prev_hash, hash) "
                             "VALUES (:t, :a, -5, :g, 'x'), (:t, :c, 5, :g, 'y')"),
                     dict(t=t, a=ids["a"], c=ids["c"], g=GENESIS))  # A already has a chain head
    refused(engine, work)


def test_postgres_refuses_direct_balance_edits(ledger):
    engine, ids = ledger
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite cannot tell a trigger's update from a direct one; `ledger verify` catches it there")
    refused(engine, lambda conn: conn.execute(sa.text("UPDATE account SET balance_minutes = 1000")))


def test_service_reversal_after_raw_checks(ledger, committed_db):
    engine, ids = ledger
    session = committed_db.session
    reverse_transfer(session, ids["t"], reason="test")
    session.commit()
    session.close()
    assert balances(engine, ids) == {"a": 0, "b": 0, "c": 0}
