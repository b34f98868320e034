import datetime as dt

from sqlalchemy import select

from timebank.community.models import Membership, User
from timebank.community.service import add_membership, create_timebank, create_user
from timebank.exchanges import service
from timebank.exchanges.models import Exchange
from timebank.ledger.models import Account


def test_auto_confirm_command_is_idempotent(committed_db, runner):
    session = committed_db.session
    tb = create_timebank(session, slug="clibank", name="CLI bank")
    people = []
    for i in range(2):
        user = create_user(session, email=f"cli{i}@example.test", display_name=f"P{i}", password="pw-123456789")
        people.append((user, add_membership(session, user=user, timebank=tb)))
    (alice_u, alice), (_, bob) = people
    exchange = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=60,
                                    happened_on=dt.date.today())
    exchange.created_at -= dt.timedelta(days=20)
    session.commit()
    exchange_id, bob_account = exchange.id, bob.account_id

    first = runner.invoke(args=["exchanges", "auto-confirm"])
    second = runner.invoke(args=["exchanges", "auto-confirm"])
    assert first.exit_code == 0 and "Auto-confirmed 1 exchange." in first.output
    assert second.exit_code == 0 and "Auto-confirmed 0 exchanges." in second.output
    session.expire_all()
    assert session.get(Exchange, exchange_id).status == "confirmed"
    assert session.get(Account, bob_account).balance_minutes == -60
