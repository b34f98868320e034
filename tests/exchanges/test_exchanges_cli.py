import datetime as dt

from sqlalchemy import select

from timebank.community.models import Membership, User
from timebank.community.service import add_membership, create_timebank, create_user
from timebank.exchanges import service
from timebank.exchanges.cli import run_auto_confirm
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


def _aged_exchanges(session, count):
    """`count` pending exchanges old enough to confirm themselves, committed; answers their ids."""
    tb = create_timebank(session, slug="racebank", name="Race bank")
    users = []
    for i in range(4):
        user = create_user(session, email=f"race{i}@example.test", display_name=f"R{i}", password="pw-123456789")
        users.append((user, add_membership(session, user=user, timebank=tb)))
    ids = []
    for n in range(count):
        (giver_u, giver), (_, taker) = users[n % 2], users[2 + n % 2]
        exchange = service.log_exchange(session, user=giver_u, provider_id=giver.id, recipient_id=taker.id,
                                        minutes=15 + n, happened_on=dt.date.today())
        exchange.created_at -= dt.timedelta(days=30)
        ids.append(exchange.id)
    session.commit()
    return ids


def _run_in_threads(app, targets):
    import threading

    barrier, errors = threading.Barrier(len(targets)), []

    def run(target):
        with app.app_context():
            try:
                barrier.wait()
                target()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                committed_session().remove()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def committed_session():
    from timebank.extensions import db

    return db.session


def test_two_concurrent_auto_confirm_runs_confirm_each_exchange_once(committed_db, app):
    """Two cron runs at the same moment (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock)."""
    from timebank.ledger.models import Transfer

    session = committed_db.session
    ids = _aged_exchanges(session, 30)
    session.rollback()
    runs = []

    def one_run():  # what `flask exchanges auto-confirm` runs
        runs.append(run_auto_confirm(committed_session(), dt.date.today()))

    assert _run_in_threads(app, [one_run, one_run]) == []
    assert sorted(runs[0] + runs[1]) == sorted(ids)  # every one confirmed, by exactly one of the runs
    assert not set(runs[0]) & set(runs[1])
    session.expire_all()
    for exchange_id in ids:
        exchange = session.get(Exchange, exchange_id)
        assert exchange.status == "confirmed" and exchange.auto_confirmed
        transfers = session.scalars(select(Transfer).where(Transfer.idempotency_key == f"exchange:{exchange_id}"))
        assert len(list(transfers)) == 1
    # The hours moved once: each member's balance is what their exchanges say.
    expected = {}
    for exchange_id in ids:
        exchange = session.get(Exchange, exchange_id)
        for membership_id, sign in ((exchange.provider_membership_id, 1), (exchange.recipient_membership_id, -1)):
            account_id = session.get(Membership, membership_id).account_id
            expected[account_id] = expected.get(account_id, 0) + sign * exchange.minutes
    assert {a: session.get(Account, a).balance_minutes for a in expected} == expected


def test_a_member_confirming_while_auto_confirm_runs_does_not_post_twice(committed_db, app):
    """The member's confirm waits for the job's row lock, then sees the exchange is no longer pending."""
    import threading
    import time

    from timebank.exchanges.errors import ExchangeNotPending

    session = committed_db.session
    [exchange_id] = _aged_exchanges(session, 1)
    exchange = session.get(Exchange, exchange_id)
    recipient = session.get(Membership, exchange.recipient_membership_id)
    recipient_user_id = recipient.user_id
    session.rollback()
    job_has_lock, member_tried = threading.Event(), threading.Event()
    outcome = {}

    def job():
        s = committed_session()
        outcome["job"] = service.auto_confirm(s, dt.date.today())
        job_has_lock.set()
        member_tried.wait(5)
        time.sleep(0.5)  # hold the lock while the member's confirm runs into it
        s.commit()

    def member():
        job_has_lock.wait(30)
        s = committed_session()
        user = s.get(User, recipient_user_id)
        member_tried.set()
        try:
            service.confirm_exchange(s, exchange_id, user=user)
            s.commit()
            outcome["member"] = "confirmed"
        except ExchangeNotPending:
            s.rollback()
            outcome["member"] = "not pending"

    assert _run_in_threads(app, [job, member]) == []
    assert outcome == {"job": [exchange_id], "member": "not pending"}
    session.expire_all()
    assert session.get(Exchange, exchange_id).status == "confirmed"
