"""Exchanges (the business record behind a transfer) and group activities."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, Text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from timebank.extensions import db

EXCHANGE_STATUSES = ("pending", "confirmed", "disputed", "cancelled", "reversed")
COPRODUCTION_TYPES = ("co_commissioning", "co_design", "co_delivery", "co_assessment")
COPRODUCTION_SUBTYPES = {
    "co_commissioning": ("co_planning", "co_prioritisation", "co_financing"),
    "co_design": ("user_consultation", "design_lab", "journey_mapping"),
    "co_delivery": ("co_managing", "co_performing"),
    "co_assessment": ("co_monitoring", "co_evaluation"),
}
OUTCOME_AREAS = ("community_safety", "local_environment", "public_health", "social_care", "education", "housing",
                 "other")
# person-to-person, person-to-agency, agency-to-agency
EXCHANGE_KINDS = ("p2p", "p2a", "a2a")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class GroupActivity(db.Model):
    """Collective co-production: one event, many participants, one multi-leg transfer."""

    __tablename__ = "group_activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"))
    title: Mapped[str] = mapped_column(String(200))
    happened_on: Mapped[dt.date] = mapped_column(Date)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"), nullable=True)
    coproduction_type: Mapped[str] = mapped_column(String(30))
    coproduction_subtype: Mapped[str | None] = mapped_column(String(30), nullable=True)
    outcome_area: Mapped[str] = mapped_column(String(50))
    substitutive: Mapped[bool] = mapped_column(Boolean, default=False)
    people_reached: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("transfer.id"), nullable=True, unique=True)
    recorded_by_user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Exchange(db.Model):
    """Who helped whom, for how long, doing what. Only a confirmed exchange posts a transfer.

    One side is a member or an organisation, the other likewise. A participant
    of a group activity has an exchange row too (collective, sharing the
    activity's transfer), so reports read one table.
    """

    __tablename__ = "exchange"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    kind: Mapped[str] = mapped_column(String(5), default="p2p")
    provider_membership_id: Mapped[int | None] = mapped_column(ForeignKey("membership.id"), nullable=True)
    recipient_membership_id: Mapped[int | None] = mapped_column(ForeignKey("membership.id"), nullable=True)
    provider_organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), nullable=True)
    recipient_organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), nullable=True)
    minutes: Mapped[int] = mapped_column(Integer)
    happened_on: Mapped[dt.date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"), nullable=True)
    coproduction_type: Mapped[str] = mapped_column(String(30), default="co_delivery")
    coproduction_subtype: Mapped[str | None] = mapped_column(String(30), nullable=True)
    outcome_area: Mapped[str] = mapped_column(String(50), default="other")
    substitutive: Mapped[bool] = mapped_column(Boolean, default=False)
    collective: Mapped[bool] = mapped_column(Boolean, default=False)
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("group_activity.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    logged_by_user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("transfer.id"), nullable=True)
    replaces_exchange_id: Mapped[int | None] = mapped_column(ForeignKey("exchange.id"), nullable=True)
    dispute_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    auto_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)

    activity: Mapped[GroupActivity | None] = relationship()

    __table_args__ = (
        CheckConstraint("minutes > 0", name="minutes_positive"),
        CheckConstraint("status IN ('pending','confirmed','disputed','cancelled','reversed')", name="status_known"),
        CheckConstraint("kind IN ('p2p','p2a','a2a')", name="kind_known"),
        CheckConstraint("(provider_membership_id IS NULL) <> (provider_organisation_id IS NULL)",
                        name="one_provider"),
        CheckConstraint("(recipient_membership_id IS NULL) <> (recipient_organisation_id IS NULL)",
                        name="one_recipient"),
        CheckConstraint("status <> 'confirmed' OR transfer_id IS NOT NULL", name="confirmed_has_transfer"),
        Index("ix_exchange_timebank_status_date", "timebank_id", "status", "happened_on"),
        Index("ix_exchange_provider", "provider_membership_id"),
        Index("ix_exchange_recipient", "recipient_membership_id"),
        Index("ix_exchange_activity", "activity_id"),  # a group activity's exchanges (its page, its API answer)
    )


NOTIFICATION_KINDS = {
    "exchange_to_confirm": "An exchange waits for me to confirm it",
    "exchange_confirmed": "An exchange I logged was confirmed",
    "exchange_disputed": "An exchange I logged was disputed",
    "exchange_cancelled": "An exchange with me was cancelled",
    "exchange_auto_confirmed": "An exchange confirmed itself after the waiting time",
    "exchange_recorded": "A broker or organisation recorded hours for me",
    "dispute_resolved": "A dispute was settled by a broker",
    "pot_grant": "I received hours from the community pot",
}


class Notification(db.Model):
    """An in-app message to one user; unread until read_at is set."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    timebank_id: Mapped[int | None] = mapped_column(ForeignKey("timebank.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    exchange_id: Mapped[int | None] = mapped_column(ForeignKey("exchange.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_notification_user_read", "user_id", "read_at"),)


class NotificationPreference(db.Model):
    """A member's choice per kind; no row means both in-app and email are on."""

    __tablename__ = "notification_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[bool] = mapped_column(Boolean, default=True)


OUTBOX_STATUSES = ("pending", "sent", "failed", "skipped")


class EmailOutbox(db.Model):
    """An email waiting to be sent: written in the same transaction as the change it tells about (a
    transactional outbox), delivered after commit by `flask notifications send`. Rolled back with the
    request, so a refused change mails nobody; kept until sent, so a failed send is retried, not lost.

    The address is not copied here: delivery reads it from the user row (so an erased member gets nothing).
    `attempts` counts claims; a claimed row's next_attempt_at is pushed past the lease, so another sender
    skips it until the lease runs out (then it is retried: delivery is at least once).
    """

    __tablename__ = "email_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('pending','sent','failed','skipped')", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_email_outbox_status_due", "status", "next_attempt_at"),
    )
