"""In-app notifications, per-member preferences, and email (a log line when SMTP is not configured)."""
from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from sqlalchemy import func, select, update

from timebank.community.models import User
from timebank.exchanges.models import NOTIFICATION_KINDS, Notification, NotificationPreference, utcnow

log = logging.getLogger("timebank.email")


def preference(session, user_id: int, kind: str) -> tuple[bool, bool]:
    """(in_app, email) for this user and kind; both on unless the member turned them off."""
    row = session.get(NotificationPreference, (user_id, kind))
    return (True, True) if row is None else (row.in_app, row.email)


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
           exchange_id: int | None = None) -> Notification | None:
    """Tell a user something, the ways they chose."""
    if user_id is None:
        return None
    in_app, email = preference(session, user_id, kind)
    note = None
    if in_app:
        note = Notification(user_id=user_id, kind=kind, message=message, timebank_id=timebank_id,
                            exchange_id=exchange_id)
        session.add(note)
        session.flush()
    if email:
        user = session.get(User, user_id)
        if user is not None and user.erased_at is None:
            send_email(user.email, NOTIFICATION_KINDS.get(kind, "Time bank"), message)
    return note


def send_email(to: str, subject: str, body: str) -> None:
    from flask import current_app, has_app_context

    host = current_app.config.get("SMTP_HOST") if has_app_context() else None
    if not host:
        log.info("email (SMTP not configured) to=%s subject=%r body=%r", to, subject, body)
        return
    msg = EmailMessage()
    msg["From"] = current_app.config.get("MAIL_FROM", "timebank@localhost")
    msg["To"], msg["Subject"] = to, subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(host, int(current_app.config.get("SMTP_PORT", 25)), timeout=10) as smtp:
            smtp.send_message(msg)
    except OSError as exc:  # mail trouble must never undo the exchange itself
        log.warning("email to %s failed: %s", to, exc)


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
