"""A concurrency storm on PostgreSQL: 16 threads on a handful of hot accounts near their floors."""
import datetime as dt
import random
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from timebank.errors import DomainError
from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.service import open_account, post_transfer, reverse_transfer

D = dt.date(2026, 11, 1)


def test_storm(committed_db):
    engine = committed_db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("the storm runs on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE")
    from timebank.community.service import create_timebank

    session = committed_db.session
    tb = create_timebank(session, slug="storm", name="Storm")
    hot = [open_account(session, timebank_id=tb.id, kind="member", name=f"Hot {i}", floor_minutes=-60)
           for i in range(5)]
    tb_id, ids = tb.id, [a.id for a in hot]
    session.commit()
    session.close()

    accepted: dict[str, int] = {}
    lock = threading.Lock()
    failures: list[str] = []

    def worker(n):
        rnd = random.Random(n)
        for step in range(40):
            key = f"w{n}-{step}"
            with Session(engine) as s:
                try:
                    op = rnd.random()
                    if op < 0.15 and accepted:
                        with lock:
                            old_key, old_id = rnd.choice(sorted(accepted.items()))
                        if rnd.random() < 0.5:
                            t = reverse_transfer(s, old_id, reason="storm", idempotency_key=f"rev-{old_id}")
                        else:
                            t = s.scalar(select(Transfer).where(Transfer.idempotency_key == old_key))
                            t = post_transfer(s, timebank_id=tb_id, kind=t.kind, effective_date=t.effective_date,
                                              memo=t.memo, postings=[(p.account_id, p.minutes) for p in t.postings],
                                              idempotency_key=old_key, metadata=t.metadata_)
                            assert t.id == old_id
                            continue
                        key = f"rev-{old_id}"
                    else:
                        legs = rnd.sample(ids, 3)
                        if n % 2:
                            legs.reverse()  # opposite orders
                        a, b = rnd.randint(1, 40), rnd.randint(1, 40)
                        t = post_transfer(s, timebank_id=tb_id, kind="exchange", effective_date=D,
                                          postings=[(legs[0], -(a + b)), (legs[1], a), (legs[2], b)],
                                          idempotency_key=key)
                    s.commit()
                    with lock:
                        accepted[key] = t.id
                except DomainError:
                    s.rollback()
                except Exception as exc:  # noqa: BLE001 - the test counts every unexpected error
                    s.rollback()
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    with Session(engine) as s:
        for a in s.scalars(select(Account).where(Account.id.in_(ids))):
            total = s.scalar(select(func.coalesce(func.sum(Posting.minutes), 0)).where(Posting.account_id == a.id))
            assert a.balance_minutes == total
            assert a.balance_minutes >= a.floor_minutes
        keys = [k for k, in s.execute(select(Transfer.idempotency_key).where(Transfer.timebank_id == tb_id))]
        assert sorted(keys) == sorted(accepted)  # every accepted transfer exactly once, nothing else
        reversed_ids = [r for r, in s.execute(select(Transfer.reverses_transfer_id)
                                             .where(Transfer.reverses_transfer_id.is_not(None)))]
        assert len(reversed_ids) == len(set(reversed_ids))
    assert len(accepted) > 100
