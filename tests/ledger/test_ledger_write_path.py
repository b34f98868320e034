"""The fast write path keeps the service's promises, through both ways of writing.

On PostgreSQL with psycopg 3 the write runs in pipelines; the Core path (SQLite, other drivers) is run on
PostgreSQL too by turning pipelines off.
"""
import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from timebank.ledger import errors, service
from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.queries import balance_of
from timebank.ledger.service import post_transfer, reverse_transfer

D = dt.date(2026, 11, 1)


@pytest.fixture(params=["pipeline", "core"])
def write_path(request, session, monkeypatch):
    pipelined = session.get_bind().dialect.driver == "psycopg"
    if request.param == "pipeline" and not pipelined:
        pytest.skip("pipelines are used with PostgreSQL through psycopg 3 only")
    monkeypatch.setattr(service, "USE_PIPELINE", request.param == "pipeline")
    return request.param


def give(session, tb, src, dst, minutes, **kw):
    kw.setdefault("effective_date", D)
    return post_transfer(session, timebank_id=tb.id, kind=kw.pop("kind", "exchange"),
                         postings=[(src.id, -minutes), (dst.id, minutes)], **kw)


def stored_sum(session, account_id):
    return session.scalar(select(func.coalesce(func.sum(Posting.minutes), 0)).where(Posting.account_id == account_id))


def test_written_transfer_is_whole_and_loaded_accounts_are_current(write_path, session, timebank, accounts):
    m1, m2 = accounts["m1"], accounts["m2"]
    t = give(session, timebank, m1, m2, 90, memo="Gardening", metadata={"source": "test"})
    # The objects the caller holds show the new balances without a refresh.
    assert (m1.balance_minutes, m2.balance_minutes) == (-90, 90)
    assert [(p.account_id, p.minutes) for p in t.postings] == [(m1.id, -90), (m2.id, 90)]
    assert t.postings[0].transfer is t and t.metadata_ == {"source": "test"} and t.recorded_at is not None
    session.expire_all()
    again = session.get(Transfer, t.id)
    assert (again.memo, again.kind, again.metadata_) == ("Gardening", "exchange", {"source": "test"})
    assert m1.chain_head == again.postings[0].hash and m2.chain_head == again.postings[1].hash
    assert (m1.balance_minutes, m2.balance_minutes) == (stored_sum(session, m1.id), stored_sum(session, m2.id))


def test_replay_returns_original_even_when_it_would_now_be_refused(write_path, session, timebank, accounts):
    m1, m2 = accounts["m1"], accounts["m2"]
    first = give(session, timebank, m1, m2, 600, idempotency_key="near-floor")
    # m1 is now at its floor: the same request again would break it, but it is a replay.
    assert give(session, timebank, m1, m2, 600, idempotency_key="near-floor").id == first.id
    m2.status = "frozen"
    session.flush()
    assert give(session, timebank, m1, m2, 600, idempotency_key="near-floor").id == first.id
    with pytest.raises(errors.IdempotencyKeyReused):
        give(session, timebank, m1, m2, 599, idempotency_key="near-floor")
    assert (balance_of(session, m1.id), balance_of(session, m2.id)) == (-600, 600)
    assert session.scalar(select(func.count()).select_from(Transfer)
                          .where(Transfer.idempotency_key == "near-floor")) == 1


def test_refusal_leaves_the_callers_transaction_usable(write_path, session, timebank, accounts):
    m1, m2, m3 = accounts["m1"], accounts["m2"], accounts["m3"]
    give(session, timebank, m3, m1, 600)
    for bad in (lambda: give(session, timebank, m3, m2, 1),
                lambda: post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D,
                                      postings=[(m2.id, -5), (10 ** 9, 5)])):
        with pytest.raises(errors.LedgerError):
            bad()
    t = give(session, timebank, m2, m1, 30)
    session.flush()
    assert t.id is not None
    assert [balance_of(session, a.id) for a in (m1, m2, m3)] == [630, -30, -600]
    assert session.scalar(select(Account.balance_minutes).where(Account.id == m3.id)) == -600


def test_second_reversal_refused_on_both_paths(write_path, session, timebank, accounts):
    t = give(session, timebank, accounts["m1"], accounts["m2"], 45)
    reverse_transfer(session, t.id, reason="typo")
    # Past the service's early check, the insert itself finds the unique reversal link.
    with pytest.raises(errors.AlreadyReversed):
        post_transfer(session, timebank_id=timebank.id, kind="reversal", effective_date=D,
                      postings=[(accounts["m1"].id, 45), (accounts["m2"].id, -45)], _reverses_transfer_id=t.id)
    assert balance_of(session, accounts["m1"].id) == 0


def test_chain_links_are_posting_hash_whoever_computes_them(write_path, session, timebank, accounts):
    # On PostgreSQL's pipelined path the insert computes the links in SQL; ledger verify recomputes them in Python.
    m1, m2, m3 = accounts["m1"], accounts["m2"], accounts["m3"]
    first = give(session, timebank, m1, m2, 30, memo="Café — «quoted» | piped 🙂")
    post_transfer(session, timebank_id=timebank.id, kind="group_activity", effective_date=dt.date(999, 1, 2),
                  postings=[(m1.id, -20), (m2.id, 5), (m3.id, 15)], memo="")
    with pytest.raises(errors.InsufficientBalance):  # refused by the database first on the pipelined path
        give(session, timebank, m3, m1, 10_000)
    reverse_transfer(session, first.id, reason="typo")
    session.expire_all()
    heads = {}
    for posting in session.scalars(select(Posting).order_by(Posting.id)):
        transfer = session.get(Transfer, posting.transfer_id)
        prev = heads.get(posting.account_id, service.GENESIS_HASH)
        assert posting.prev_hash == prev
        assert posting.hash == service.posting_hash(prev, transfer=transfer, account_id=posting.account_id,
                                                    minutes=posting.minutes)
        heads[posting.account_id] = posting.hash
    assert all(session.get(Account, a).chain_head == h for a, h in heads.items())


def test_a_transfer_with_more_legs_than_the_pipelined_statements_take(session, timebank, accounts):
    many = [service.open_account(session, timebank_id=timebank.id, kind="member", name=f"Helper {i}")
            for i in range(service.PIPELINED_MAX_LEGS + 1)]
    legs = [(accounts["m1"].id, -len(many))] + [(a.id, 1) for a in many]
    t = post_transfer(session, timebank_id=timebank.id, kind="group_activity", effective_date=D, postings=legs)
    session.expire_all()
    assert len(session.get(Transfer, t.id).postings) == len(legs)
    assert [balance_of(session, a.id) for a in many] == [1] * len(many)


def test_draft_has_every_transfer_column():
    # _Draft and the pipelined insert list the transfer's columns: a new column must be added there too.
    assert set(service._TRANSFER_COLUMNS) | {"id"} == {attr.key for attr in Transfer.__mapper__.column_attrs}
    listed = re.search(r"INSERT INTO transfer \(([^)]*)\)", service._PG_INSERT).group(1)
    assert [c.strip() for c in listed.split(",")] == list(service._TRANSFER_COLUMNS.values())


def test_after_a_refused_first_try_the_careful_path_updates_the_loaded_accounts(session, timebank, accounts,
                                                                                 monkeypatch):
    """The optimistic write refused (as when another transaction moved an account between the two tries), the
    careful path writes it: the accounts the caller holds must show the new balances, not the old ones."""
    import psycopg

    if session.get_bind().dialect.driver != "psycopg":
        pytest.skip("the two-try write is the PostgreSQL pipeline path")
    monkeypatch.setattr(service, "USE_PIPELINE", True)
    m1, m2 = accounts["m1"], accounts["m2"]
    real, calls = service._check_zero_sum_now, []

    def refuse_first(cursor):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.errors.IntegrityError("refused on the first try")
        real(cursor)

    monkeypatch.setattr(service, "_check_zero_sum_now", refuse_first)
    t = give(session, timebank, m1, m2, 45)
    assert len(calls) == 2
    assert (m1.balance_minutes, m2.balance_minutes) == (-45, 45)
    assert m1.chain_head == t.postings[0].hash
    assert (m1.balance_minutes, m2.balance_minutes) == (stored_sum(session, m1.id), stored_sum(session, m2.id))
