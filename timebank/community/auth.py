"""Passwords, API tokens and looking users up. No Flask request handling here."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from timebank.community.models import ApiToken, User, utcnow

_hasher = PasswordHasher()
# Verified against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


PASSWORD_MIN, PASSWORD_MAX = 12, 128  # OWASP ASVS 2.1.1 and 2.1.2


def check_password_policy(password: str) -> None:
    """At least 12 and at most 128 characters; any characters, spaces included, no composition rules."""
    from timebank.errors import ValidationFailed

    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        message = f"Choose a password of {PASSWORD_MIN} to {PASSWORD_MAX} characters."
        raise ValidationFailed(message, errors={"password": [message]})


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password) and \
            user is not None and user.password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def normalise_email(email: str) -> str:
    return email.strip().lower()


def user_by_email(session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def authenticate(session, email: str, password: str) -> User | None:
    user = user_by_email(session, email)
    if verify_password(user, password) and user.is_active:
        return user
    return None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session, user: User, ttl_hours: int = 24) -> tuple[str, ApiToken]:
    token = "tb_" + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=_token_hash(token),
                   expires_at=utcnow() + dt.timedelta(hours=ttl_hours))
    session.add(row)
    session.flush()
    return token, row


# Built once, run on every API call. The user's memberships come in the same statement (joined): most API
# requests read them next (who am I, my exchanges, my own membership as one side of an exchange), which was a
# statement of its own.
_TOKEN_LOOKUP = (select(ApiToken.revoked_at, ApiToken.expires_at, User)
                 .join(User, User.id == ApiToken.user_id)
                 .where(ApiToken.token_hash == bindparam("token_hash"))
                 .options(joinedload(User.memberships)))


def user_for_token(session, token: str) -> User | None:
    """The user a bearer token stands for, or None (unknown, revoked or expired). One query, on every API call."""
    found = session.execute(_TOKEN_LOOKUP, {"token_hash": _token_hash(token)}).unique().first()
    if found is None:
        return None
    revoked_at, expires_at, user = found
    if revoked_at is not None or expires_at <= utcnow():
        return None
    return user if user.is_active else None


def revoke_token(session, token: str) -> bool:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True
