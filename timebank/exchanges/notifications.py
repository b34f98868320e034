"""In-app notifications, per-member preferences, and email through the outbox (see outbox.py)."""
from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, text, update

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


# PostgreSQL: the choices read and both inserts in one statement (one round trip instead of three, on every exchange
# logged or confirmed). Rows are inserted in the order of the items, as the executemany below does.
_NOTIFY_ALL_PG = text("""
WITH item AS (
    SELECT * FROM unnest(CAST(:users AS integer[]), CAST(:kinds AS text[]), CAST(:messages AS text[]),
                         CAST(:timebanks AS integer[]), CAST(:exchanges AS integer[]), CAST(:subjects AS text[]))
           WITH ORDINALITY AS i(user_id, kind, message, timebank_id, exchange_id, subject, n)
), chosen AS (
    SELECT item.*, coalesce(p.in_app, :default_in_app) AS in_app, coalesce(p.email, :default_email) AS email
    FROM item LEFT JOIN notification_preference AS p ON p.user_id = item.user_id AND p.kind = item.kind
), notes AS (
    INSERT INTO notification (user_id, timebank_id, kind, message, exchange_id, created_at)
    SELECT user_id, timebank_id, kind, message, exchange_id, :now FROM chosen WHERE in_app ORDER BY n
), mails AS (
    INSERT INTO email_outbox (user_id, kind, subject, body, status, attempts, next_attempt_at, created_at)
    SELECT user_id, kind, subject, message, 'pending', 0, :now, :now FROM chosen WHERE email AND :emails_on
    ORDER BY n
    RETURNING 1
)
SELECT count(*) FROM mails""")


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
    clock = session.info.get("clock")  # the demo runs on its own calendar (as the ledger does)
    now = clock() if clock else utcnow()
    # The demo's service path writes people who do not exist: they are told in-app, never mailed.
    emails_on = session.info.get("emails", True)
    if connection.dialect.name == "postgresql":
        columns = list(zip(*items))
        mailed = connection.execute(_NOTIFY_ALL_PG, {
            "users": list(columns[0]), "kinds": list(columns[1]), "messages": list(columns[2]),
            "timebanks": list(columns[3]), "exchanges": list(columns[4]),
            "subjects": [NOTIFICATION_KINDS.get(kind, "Time bank") for kind in columns[1]],
            "default_in_app": DEFAULT_CHOICE[0], "default_email": DEFAULT_CHOICE[1], "now": now,
            "emails_on": bool(emails_on)}).scalar_one()
        if mailed:
            session.info["outbox_written"] = True
        return
    chosen = {(user_id, kind): (in_app, email) for user_id, kind, in_app, email in connection.execute(
        _CHOICES, {"users": sorted({item[0] for item in items}), "kinds": sorted({item[1] for item in items})})}
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
