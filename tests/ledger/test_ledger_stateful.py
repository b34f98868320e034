"""Random transfers, multi-leg transfers, reversals, replays and refusals against an in-memory model."""
import datetime as dt

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select

from timebank.ledger import errors
from timebank.ledger.models import Posting
from timebank.ledger.queries import balance_of
from timebank.ledger.service import open_account, post_transfer, reverse_transfer, system_account

D = dt.date(2026, 11, 1)
N = 4  # member accounts; index N is issuance (no floor), N+1 has a ceiling


def test_ledger_agrees_with_model(session, timebank):
    issuance = system_account(session, timebank.id, "issuance")
    members = [open_account(session, timebank_id=timebank.id, kind="member", name=f"Member {i}",
                            floor_minutes=-120) for i in range(N)]
    capped = open_account(session, timebank_id=timebank.id, kind="member", name="Capped", floor_minutes=0,
                          ceiling_minutes=200)
    accts = [*members, issuance, capped]
    ids = [a.id for a in accts]
    floors = [a.floor_minutes for a in accts]
    ceilings = [a.ceiling_minutes for a in accts]

    class Ledger(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.savepoint = session.begin_nested()
            self.balances = [0] * len(ids)
            self.transfers = {}  # id -> (postings as index pairs, reversed?)
            self.keys = {}  # key -> (postings, transfer id)
            self.counter = 0

        def teardown(self):
            self.savepoint.rollback()
            session.expire_all()

        def _expect(self, legs):
            net = {}
            for i, m in legs:
                net[i] = net.get(i, 0) + m
            for i, m in sorted(net.items(), key=lambda kv: ids[kv[0]]):
                new = self.balances[i] + m
                if m < 0 and floors[i] is not None and new < floors[i]:
                    return errors.InsufficientBalance
                if m > 0 and ceilings[i] is not None and new > ceilings[i]:
                    return errors.CeilingExceeded
            return None

        def _post(self, legs, key=None):
            expected = self._expect(legs)
            call = lambda: post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D,  # noqa
                                         postings=[(ids[i], m) for i, m in legs], idempotency_key=key)
            if expected:
                with pytest.raises(expected):
                    call()
                return None
            t = call()
            for i, m in legs:
                self.balances[i] += m
            self.transfers[t.id] = (legs, False)
            if key:
                self.keys[key] = (legs, t.id)
            return t

        @rule(src=st.integers(0, len(ids) - 1), dst=st.integers(0, len(ids) - 1), minutes=st.integers(1, 150),
              keyed=st.booleans())
        def transfer(self, src, dst, minutes, keyed):
            if src == dst:
                return
            self.counter += 1
            self._post([(src, -minutes), (dst, minutes)], key=f"k{self.counter}" if keyed else None)

        @rule(src=st.integers(0, len(ids) - 1), splits=st.lists(st.tuples(st.integers(0, len(ids) - 1),
                                                                          st.integers(1, 60)), min_size=2, max_size=4))
        def multi_leg(self, src, splits):
            legs = [(i, m) for i, m in splits] + [(src, -sum(m for _, m in splits))]
            if len({i for i, _ in legs}) != len(legs):
                with pytest.raises(errors.DuplicateAccount):
                    post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D,
                                  postings=[(ids[i], m) for i, m in legs])
                return
            self._post(legs)

        @rule(a=st.integers(0, len(ids) - 1), b=st.integers(0, len(ids) - 1), minutes=st.integers(1, 50))
        def unbalanced(self, a, b, minutes):
            if a == b:
                return
            with pytest.raises(errors.UnbalancedTransfer):
                post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D,
                              postings=[(ids[a], -minutes), (ids[b], minutes + 1)])

        @precondition(lambda self: self.keys)
        @rule(data=st.data())
        def replay(self, data):
            key = data.draw(st.sampled_from(sorted(self.keys)))
            legs, tid = self.keys[key]
            again = post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D,
                                  postings=[(ids[i], m) for i, m in legs], idempotency_key=key)
            assert again.id == tid
            with pytest.raises(errors.IdempotencyKeyReused):
                post_transfer(session, timebank_id=timebank.id, kind="exchange", effective_date=D, memo="other",
                              postings=[(ids[i], m) for i, m in legs], idempotency_key=key)

        @precondition(lambda self: self.transfers)
        @rule(data=st.data())
        def reverse(self, data):
            tid = data.draw(st.sampled_from(sorted(self.transfers)))
            legs, reversed_ = self.transfers[tid]
            if reversed_:
                with pytest.raises(errors.AlreadyReversed):
                    reverse_transfer(session, tid, reason="again")
                return
            mirrored = [(i, -m) for i, m in legs]
            expected = self._expect(mirrored)
            if expected:
                with pytest.raises(expected):
                    reverse_transfer(session, tid, reason="fix")
                return
            reverse_transfer(session, tid, reason="fix")
            for i, m in mirrored:
                self.balances[i] += m
            self.transfers[tid] = (legs, True)

        @invariant()
        def balances_agree(self):
            for i, aid in enumerate(ids):
                assert balance_of(session, aid) == self.balances[i]
                stored = session.scalar(select(func.coalesce(func.sum(Posting.minutes), 0))
                                        .where(Posting.account_id == aid))
                assert stored == self.balances[i]
                if floors[i] is not None:
                    assert self.balances[i] >= floors[i]
            assert sum(self.balances) == 0

    run_state_machine_as_test(Ledger, settings=settings(max_examples=20, stateful_step_count=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                                                        suppress_health_check=list(HealthCheck)))
