"""notify_all: each person told the ways they chose (in-app, email, both, neither), in the order given; on
PostgreSQL in one statement, on SQLite in three. The same rows either way. And the dashboard's lists read in one
statement equal them read apart."""
import datetime as dt
import random

from sqlalchemy import or_, select

from timebank.exchanges import policy, queries, service
from timebank.exchanges.models import NOTIFICATION_KINDS, EmailOutbox, Exchange, Notification
from timebank.exchanges.notifications import notify_all, set_preferences


def _rows(session, users):
    notes = session.execute(select(Notification.user_id, Notification.kind, Notification.message)
                            .where(Notification.user_id.in_(users)).order_by(Notification.id)).all()
    mails = session.execute(select(EmailOutbox.user_id, EmailOutbox.kind, EmailOutbox.subject, EmailOutbox.body,
                                   EmailOutbox.status).where(EmailOutbox.user_id.in_(users))
                            .order_by(EmailOutbox.id)).all()
    return [tuple(r) for r in notes], [tuple(r) for r in mails]


def test_each_person_is_told_the_ways_they_chose_in_order(session, make_person):
    people = [make_person()[0] for _ in range(4)]
    both, app_only, mail_only, neither = (u.id for u in people)
    kind, other = "exchange_to_confirm", "exchange_confirmed"
    set_preferences(session, app_only, {kind: (True, False)})
    set_preferences(session, mail_only, {kind: (False, True)})
    set_preferences(session, neither, {kind: (False, False)})
    # A choice for one kind says nothing about another: `neither` is told about `other` both ways.
    items = [(neither, other, "m1", None, None), (both, kind, "m2", None, None),
             (app_only, kind, "m3", None, None), (None, kind, "skipped", None, None),
             (mail_only, kind, "m4", None, None), (neither, kind, "m5", None, None), (both, other, "m6", None, None)]
    session.info.pop("outbox_written", None)
    notify_all(session, items)
    notes, mails = _rows(session, [both, app_only, mail_only, neither])
    assert notes == [(neither, other, "m1"), (both, kind, "m2"), (app_only, kind, "m3"), (both, other, "m6")]
    assert mails == [(neither, other, NOTIFICATION_KINDS[other], "m1", "pending"),
                     (both, kind, NOTIFICATION_KINDS[kind], "m2", "pending"),
                     (mail_only, kind, NOTIFICATION_KINDS[kind], "m4", "pending"),
                     (both, other, NOTIFICATION_KINDS[other], "m6", "pending")]
    assert session.info.pop("outbox_written") is True


def test_no_email_when_emails_are_off_and_no_outbox_flag_when_none_written(session, make_person):
    user = make_person()[0]
    set_preferences(session, user.id, {"exchange_confirmed": (True, False)})
    session.info.pop("outbox_written", None)
    notify_all(session, [(user.id, "exchange_confirmed", "only in the app", None, None)])
    assert "outbox_written" not in session.info
    session.info["emails"] = False  # the demo's service path: told in-app, never mailed
    try:
        notify_all(session, [(user.id, "exchange_to_confirm", "demo", None, None)])
    finally:
        session.info.pop("emails")
    notes, mails = _rows(session, [user.id])
    assert [n[2] for n in notes] == ["only in the app", "demo"] and mails == []
    assert "outbox_written" not in session.info


def test_waiting_and_recent_equal_the_two_lists_read_apart(session, make_person):
    """The dashboard's one statement gives the two lists read apart: pending exchanges older than the latest ten
    are still waiting, and exchanges of one day are ordered by id."""
    rng = random.Random(5)
    me_u, me = make_person()
    others = [make_person() for _ in range(3)]
    today = dt.date.today()
    for n in range(16):
        other_u, other = rng.choice(others)
        mine_to_log = rng.random() < 0.5
        exchange = service.log_exchange(
            session, user=me_u if mine_to_log else other_u,
            provider_id=me.id if n % 2 else other.id, recipient_id=other.id if n % 2 else me.id, minutes=15,
            happened_on=today - dt.timedelta(days=rng.choice([0, 0, 3, 10, 40])))
        if rng.random() < 0.5:  # the other side confirms about half of them
            service.confirm_exchange(session, exchange.id, user=other_u if mine_to_log else me_u)
    waiting, recent = queries.waiting_and_recent(session, me, limit=10)
    # The two lists read apart, as the dashboard did before.
    mine = or_(Exchange.provider_membership_id == me.id, Exchange.recipient_membership_id == me.id)
    everything = list(session.scalars(select(Exchange).where(mine)
                                      .order_by(Exchange.happened_on.desc(), Exchange.id.desc())))
    pending = session.scalars(select(Exchange).where(mine, Exchange.status == "pending").order_by(Exchange.id))
    assert [e.id for e in waiting] == [e.id for e in pending if policy.can_confirm(session, me_u, e)]
    assert [e.id for e in recent] == [e.id for e in everything[:10]]
    assert waiting and len(recent) == 10
    assert any(e.status == "pending" for e in everything[10:])  # a pending exchange older than the latest ten
