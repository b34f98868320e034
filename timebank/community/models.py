"""Time banks, people, memberships, organisations and the category list."""
from __future__ import annotations

import datetime as dt

from flask_login import UserMixin
from sqlalchemy import (JSON, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, func)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from timebank.extensions import db

ROLES = ("member", "broker", "commissioner", "admin")
MEMBERSHIP_STATUSES = ("pending", "active", "declined", "suspended", "left")
SAFETY_CHECK_LEVELS = ("none", "basic", "standard", "enhanced")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class TimeBank(db.Model):
    __tablename__ = "timebank"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Ledger settings, all in minutes.
    default_floor_minutes: Mapped[int] = mapped_column(Integer, default=-600)
    default_ceiling_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_exchange_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    max_backdate_days: Mapped[int] = mapped_column(Integer, default=90)
    auto_confirm_days: Mapped[int] = mapped_column(Integer, default=14)
    listing_expiry_days: Mapped[int] = mapped_column(Integer, default=60)
    match_radius_km: Mapped[int] = mapped_column(Integer, default=10)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("max_exchange_minutes > 0", name="max_exchange_positive"),
        CheckConstraint("default_floor_minutes <= 0", name="floor_not_positive"),
    )


class User(UserMixin, db.Model):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased so uniqueness is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    display_name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    preferred_contact: Mapped[str] = mapped_column(String(20), default="email")
    is_active_user: Mapped[bool] = mapped_column(Boolean, default=True)
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Part of the signed session cookie; raising it (log out, new password) ends every session of this user,
    # even a copied cookie, although sessions are kept in the cookie and not on the server.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user", foreign_keys="Membership.user_id")

    @property
    def is_active(self) -> bool:  # flask-login
        return self.is_active_user and self.erased_at is None

    def get_id(self) -> str:  # flask-login: what the session cookie carries
        return f"{self.id}.{self.session_version or 0}"


class Membership(db.Model):
    """A user's place in one time bank, with a role and (once approved) a ledger account."""

    __tablename__ = "membership"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    role: Mapped[str] = mapped_column(String(20), default="member")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), nullable=True, unique=True)
    joined_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    # Profile
    bio: Mapped[str | None] = mapped_column(Text, nullable=True)
    ward: Mapped[str | None] = mapped_column(String(100), nullable=True)
    postcode_district: Mapped[str | None] = mapped_column(String(10), nullable=True)
    latitude: Mapped[float | None] = mapped_column(nullable=True)
    longitude: Mapped[float | None] = mapped_column(nullable=True)
    # 21 bits: day * 3 + part (0 morning, 1 afternoon, 2 evening), Monday = day 0.
    availability: Mapped[int] = mapped_column(Integer, default=0)
    # Demographics, used only in aggregate and only with consent.
    demographics_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    age_band: Mapped[str | None] = mapped_column(String(20), nullable=True)
    gender: Mapped[str | None] = mapped_column(String(30), nullable=True)
    disability: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Onboarding and safety
    references_received: Mapped[int] = mapped_column(Integer, default=0)
    safety_check_level: Mapped[str] = mapped_column(String(20), default="none")
    safety_check_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    safety_check_expires: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    risk_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    induction_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    decline_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the applicant told us on the join page, and what a broker asked them for.
    application_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    info_requested: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships", foreign_keys=[user_id])
    timebank: Mapped[TimeBank] = relationship()
    skills: Mapped[list["Category"]] = relationship(secondary="member_skill")

    __table_args__ = (
        UniqueConstraint("user_id", "timebank_id"),
        CheckConstraint("role IN ('member','broker','commissioner','admin')", name="role_known"),
        CheckConstraint("status IN ('pending','active','declined','suspended','left')", name="status_known"),
        Index("ix_membership_timebank_status", "timebank_id", "status"),
    )


class Category(db.Model):
    """A skill or service category; a per-time-bank tree (Home & garden > Gardening)."""

    __tablename__ = "category"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    # Sensible co-production defaults so members are not asked hard questions.
    default_coproduction_type: Mapped[str | None] = mapped_column(String(30), nullable=True)
    default_outcome_area: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # A retired category is kept for the offers, requests and exchanges that used it, but is not offered
    # for new ones.
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    parent: Mapped["Category | None"] = relationship(remote_side=[id])
    timebank: Mapped[TimeBank] = relationship()

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    __table_args__ = (UniqueConstraint("timebank_id", "parent_id", "name"),)


class MemberSkill(db.Model):
    __tablename__ = "member_skill"

    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id"), primary_key=True)


class Organisation(db.Model):
    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30), default="charity")
    area: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    timebank: Mapped[TimeBank] = relationship()
    representatives: Mapped[list[User]] = relationship(secondary="organisation_representative")

    __table_args__ = (
        UniqueConstraint("timebank_id", "name"),
        CheckConstraint(
            "kind IN ('council','nhs','school','charity','community_group','business','other')", name="kind_known"
        ),
    )


class OrganisationRepresentative(db.Model):
    __tablename__ = "organisation_representative"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)


class ApiToken(db.Model):
    """A personal access token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    user: Mapped[User] = relationship()


class AuditEvent(db.Model):
    """Sensitive actions: approvals, role changes, suspensions, reversals, exports, erasures."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    timebank_id: Mapped[int | None] = mapped_column(ForeignKey("timebank.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class IdempotencyRecord(db.Model):
    """The stored answer to an API write, so a retried request gets the same answer once."""

    __tablename__ = "idempotency_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    key: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())

    __table_args__ = (UniqueConstraint("user_id", "key"),)
