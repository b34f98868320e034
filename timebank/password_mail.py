"""The edges' one way to mail a password link (web and API): community words it, the email outbox delivers it.

The link goes into the outbox in the request's transaction, so a request that fails mails no link for an account
that was never created, no SMTP conversation holds up the request (the time it took also told an onlooker whether
an email address has an account), and a mail server that is down delays the link instead of losing it. The
outbox blanks a message's text once it is sent, so the link does not stay in the database. Without a mail server
(development) the link is also written to the log, as the only way to follow it.
"""
from __future__ import annotations

import logging

from flask import current_app

from timebank.community.models import User
from timebank.community.passwords import password_email
from timebank.exchanges.notifications import queue_email

log = logging.getLogger("timebank.mail")


def mail_password_link(session, user: User, *, purpose: str = "reset") -> None:
    subject, body, link = password_email(current_app, user, purpose=purpose)
    queue_email(session, user_id=user.id, kind=f"password_{purpose}", subject=subject, body=body)
    if not (current_app.config.get("SMTP_HOST") or current_app.config.get("MAIL_SERVER")):
        log.info("password link for user %s (development, no MAIL_SERVER): %s", user.id, link)
