"""Property: whatever members do, every confirmed exchange has exactly one transfer, no other has any,
and balances equal the sum of confirmed exchanges."""
import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from timebank.errors import DomainError
from timebank.exchanges import service
from timebank.exchanges.models import Exchange
from timebank.ledger.models import Account, Transfer

ACTIONS = st.lists(st.tuples(st.sampled_from(["log", "confirm", "dispute", "cancel", "resolve", "auto"]),
                             st.integers(0, 2), st.integers(0, 2), st.integers(1, 400)), min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_exchange_transfer_invariant(session, make_person, actions):
    savepoint = session.begin_nested()
    try:
        people = [make_person() for _ in range(3)]
        broker_u, _ = make_person("broker")
        logged = []
        for action, i, j, minutes in actions:
            try:
                with session.begin_nested():
                    if action == "log":
                        (u, m), (_, other) = people[i], people[j]
                        logged.append(service.log_exchange(session, user=u, provider_id=m.id, recipient_id=other.id,
                                                           minutes=minutes, happened_on=dt.date.today()))
                    elif logged:
                        e = logged[minutes % len(logged)]
                        user = people[i][0]
                        if action == "confirm":
                            service.confirm_exchange(session, e.id, user=user)
                        elif action == "dispute":
                            service.dispute_exchange(session, e.id, user=user, reason="no")
                        elif action == "cancel":
                            service.cancel_exchange(session, e.id, user=user)
                        elif action == "resolve":
                            service.resolve_dispute(session, e.id, user=broker_u,
                                                    action=("confirm", "cancel")[minutes % 2])
                        else:
                            service.auto_confirm(session, dt.date.today() + dt.timedelta(days=30))
            except DomainError:
                pass
        ids = [m.id for _, m in people]
        exchanges = session.scalars(select(Exchange).where(Exchange.provider_membership_id.in_(ids))).all()
        transfers = session.scalars(select(Transfer).where(Transfer.kind == "exchange")).all()
        by_exchange = {}
        for t in transfers:
            by_exchange.setdefault((t.metadata_ or {}).get("exchange_id"), []).append(t)
        for e in exchanges:
            posted = by_exchange.get(e.id, [])
            assert len(posted) == (1 if e.status == "confirmed" else 0), e.status
        for _, m in people:
            expected = sum(e.minutes for e in exchanges if e.status == "confirmed" and e.provider_membership_id == m.id)
            expected -= sum(e.minutes for e in exchanges if e.status == "confirmed"
                            and e.recipient_membership_id == m.id)
            assert session.get(Account, m.account_id).balance_minutes == expected
    finally:
        savepoint.rollback()
