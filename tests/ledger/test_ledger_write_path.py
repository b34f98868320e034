"""The fast write path keeps the service's promises, through both ways of writing.

On PostgreSQL with psycopg 3 the write runs in pipelines; the Core path (SQLite, other drivers) is run on
PostgreSQL too by turning pipelines off.
"""
import datetime as dt

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
