"""In-app notifications, per-member preferences, and email through the outbox (see outbox.py)."""
from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, update

from timebank.exchanges.models import (NOTIFICATION_KINDS, EmailOutbox, Notification, NotificationPreference,
                                       utcnow)


# (in_app, email) when the member has not chosen: both on.
DEFAULT_CHOICE = (True, True)


def preference(session, user_id: int, kind: str) -> tuple[bool, bool]:
    """(in_app, email) for this user and kind; both on unless the member turned them off."""
    row = session.get(NotificationPreference, (user_id, kind))
    return DEFAULT_CHOICE if row is None else (row.in_app, row.email)


def preferences(session, user_id: int) -> dict[str, tuple[bool, bool]]:
    return {kind: preference(session, user_id, kind) for kind in NOTIFICATION_KINDS}


def set_preferences(session, user_id: int, choices: dict[str, tuple[bool, bool]]) -> None:
    for kind, (in_app, email) in choices.items():
        if kind not in NOTIFICATION_KINDS:
            continue
        row = session.get(NotificationPreference, (user_id, kind))
        if row is None:
            row = NotificationPreference(user_id=user_id, kind=kind)
            session.add(row)
        row.in_app, row.email = bool(in_app), bool(email)
    session.flush()


def notify(session, user_id: int | None, kind: str, message: str, *, timebank_id: int | None = None,
           exchange_id: int | None = None) -> None:
    """Tell a user something, the ways they chose."""
    notify_all(session, [(user_id, kind, message, timebank_id, exchange_id)])


# Built once: run on every write that tells someone something (plain rows, past the ORM: a third of the cost).
_CHOICES = select(NotificationPreference.user_id, NotificationPreference.kind, NotificationPreference.in_app,
                  NotificationPreference.email).where(
    NotificationPreference.user_id.in_(bindparam("users", expanding=True)),
    NotificationPreference.kind.in_(bindparam("kinds", expanding=True)))
_INSERT_NOTIFICATIONS = Notification.__table__.insert()
_INSERT_EMAILS = EmailOutbox.__table__.insert()


def notify_all(session, items) -> None:
    """Tell several users something, each the ways they chose, in a few statements whatever their number.

    `items` are (user_id, kind, message, timebank_id, exchange_id); a None user_id is skipped. In-app
    notifications and emails are inserted in one batch each; an email is an outbox row (EmailOutbox) written
    in the caller's transaction and sent after commit by `flask notifications send`, so a change that is
    rolled back mails nobody and a failed send is retried.
    """
    items = [item for item in items if item[0] is not None]
    if not items:
        return
    session.flush()  # what the rows below refer to is written first (the statements below go past the session)
    connection = session.connection()
    chosen = {(user_id, kind): (in_app, email) for user_id, kind, in_app, email in connection.execute(
        _CHOICES, {"users": sorted({item[0] for item in items}), "kinds": sorted({item[1] for item in items})})}
    clock = session.info.get("clock")  # the demo runs on its own calendar (as the ledger does)
    now = clock() if clock else utcnow()
    # The demo's service path writes people who do not exist: they are told in-app, never mailed.
    emails_on = session.info.get("emails", True)
    notes, emails = [], []
    for user_id, kind, message, timebank_id, exchange_id in items:
        in_app, email = chosen.get((user_id, kind), DEFAULT_CHOICE)
        if in_app:
            notes.append({"user_id": user_id, "kind": kind, "message": message, "timebank_id": timebank_id,
                          "exchange_id": exchange_id, "created_at": now})
        if email and emails_on:
            emails.append({"user_id": user_id, "kind": kind, "subject": NOTIFICATION_KINDS.get(kind, "Time bank"),
                           "body": message, "status": "pending", "attempts": 0, "next_attempt_at": now,
                           "created_at": now})
    # One insert per table (an executemany when several), no RETURNING.
    if notes:
        connection.execute(_INSERT_NOTIFICATIONS, notes)
    if emails:
        connection.execute(_INSERT_EMAILS, emails)
        session.info["outbox_written"] = True


def queue_email(session, *, user_id: int, kind: str, subject: str, body: str) -> None:
    """Put one email in the outbox, in the caller's transaction (sent after commit; nothing if rolled back)."""
    now = utcnow()
    session.execute(insert(EmailOutbox), [{"user_id": user_id, "kind": kind, "subject": subject, "body": body,
                                           "status": "pending", "attempts": 0, "next_attempt_at": now,
                                           "created_at": now}])
    session.info["outbox_written"] = True


def unread_count(session, user_id: int) -> int:
    return session.scalar(select(func.count(Notification.id)).where(Notification.user_id == user_id,
                                                                    Notification.read_at.is_(None))) or 0


def notifications_for(session, user_id: int, limit: int = 50) -> list[Notification]:
    return list(session.scalars(select(Notification).where(Notification.user_id == user_id)
                                .order_by(Notification.id.desc()).limit(limit)))


def mark_all_read(session, user_id: int) -> None:
    session.execute(update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
                    .values(read_at=utcnow()))
    session.flush()
