"""Password reset and set-password links: signed, expiring, single-use in effect.

The token carries the user id and a fingerprint of the current password hash, so it stops
working once the password changes. The email is written to the outbox in the same transaction as the change
that asks for it (a new member, a reset request) and sent by `flask notifications send`, never during the request.
"""
from __future__ import annotations

import hashlib

from flask import url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from timebank.community.auth import check_password_policy, hash_password
from timebank.community.models import User
from timebank.errors import DomainError

SALT = "password-reset"


class InvalidResetLink(DomainError):
    code = "invalid_reset_link"
    status = 400
    title = "This link does not work"


def _fingerprint(user: User) -> str:
    return hashlib.sha256((user.password_hash or "none").encode()).hexdigest()[:16]


def make_token(app, user: User) -> str:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT).dumps([user.id, _fingerprint(user)])


def user_for_reset_token(app, session, token: str) -> User:
    max_age = int(app.config.get("PASSWORD_RESET_MAX_AGE", 3600))
    try:
        user_id, fingerprint = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT).loads(token,
                                                                                                   max_age=max_age)
    except SignatureExpired:
        raise InvalidResetLink("This link has expired. Ask for a new one.") from None
    except (BadSignature, ValueError, TypeError):
        raise InvalidResetLink("This link is not valid. Ask for a new one.") from None
    user = session.get(User, user_id)
    if user is None or not user.is_active or _fingerprint(user) != fingerprint:
        raise InvalidResetLink("This link is not valid any more. Ask for a new one.")
    return user


def set_password(session, user: User, password: str) -> None:
    check_password_policy(password)
    user.password_hash = hash_password(password)
    user.session_version = (user.session_version or 0) + 1  # a new password ends every signed-in session
    session.flush()


def password_email(app, user: User, *, purpose: str = "reset") -> tuple[str, str, str]:
    """(subject, body, link) of the email that lets this user choose a password. Sending is the edges' part:
    they put it in the email outbox with the change that asked for it (timebank/password_mail.py)."""
    link = url_for("people.reset_password", token=make_token(app, user), _external=True)
    subject = "Set your time bank password" if purpose == "set" else "Reset your time bank password"
    body = (f"Hello {user.display_name},\n\nUse this link within an hour to choose a password:\n{link}\n\n"
            "If you did not ask for this, you can ignore this email.\n")
    return subject, body, link
