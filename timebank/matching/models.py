"""Offers, requests (and organisations' opportunities), matches, blocked pairs and batch plans."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, Boolean, CheckConstraint, Date, DateTime, Float, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint, false)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from timebank.extensions import db

LISTING_STATUSES = ("open", "closed")
URGENCIES = ("low", "normal", "high")
# suggested -> proposed -> accepted | declined -> done -> logged
MATCH_STATUSES = ("suggested", "proposed", "accepted", "declined", "done", "logged", "withdrawn")
OPEN_MATCH_STATUSES = ("proposed", "accepted")
PLAN_STATUSES = ("draft", "sent")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Offer(db.Model):
    """What a member can do."""

    __tablename__ = "offer"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    area: Mapped[str | None] = mapped_column(String(100), nullable=True)
    remote: Mapped[bool] = mapped_column(Boolean, default=False)
    availability: Mapped[int] = mapped_column(Integer, default=0)
    starts_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    ends_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    category = relationship("Category")
    membership = relationship("Membership")

    __table_args__ = (
        CheckConstraint("status IN ('open','closed')", name="status_known"),
        Index("ix_offer_browse", "timebank_id", "status", "expires_at"),
        Index("ix_offer_category", "category_id", "status"),
    )


class HelpRequest(db.Model):
    """What a member needs, or (with organisation_id) an organisation's volunteering opportunity."""

    __tablename__ = "help_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    # The member who needs help; null for an organisation's opportunity.
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("membership.id"), nullable=True, index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), nullable=True)
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    area: Mapped[str | None] = mapped_column(String(100), nullable=True)
    remote: Mapped[bool] = mapped_column(Boolean, default=False)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    availability: Mapped[int] = mapped_column(Integer, default=0)
    starts_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    ends_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    urgency: Mapped[str] = mapped_column(String(10), default="normal")
    estimated_minutes: Mapped[int] = mapped_column(Integer, default=60)
    volunteers_needed: Mapped[int] = mapped_column(Integer, default=1)
    safety_check_level: Mapped[str] = mapped_column(String(20), default="none")
    min_age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    category = relationship("Category")
    membership = relationship("Membership")
    organisation = relationship("Organisation")

    @property
    def is_opportunity(self) -> bool:
        return self.organisation_id is not None

    __table_args__ = (
        CheckConstraint("status IN ('open','closed')", name="status_known"),
        CheckConstraint("urgency IN ('low','normal','high')", name="urgency_known"),
        CheckConstraint("volunteers_needed >= 1", name="places_positive"),
        CheckConstraint("estimated_minutes > 0", name="minutes_positive"),
        CheckConstraint("(membership_id IS NULL) <> (organisation_id IS NULL)", name="one_owner"),
        Index("ix_help_request_browse", "timebank_id", "status", "expires_at"),
    )


class Match(db.Model):
    """A volunteer paired with a request, moving through the funnel."""

    __tablename__ = "match"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    request_id: Mapped[int] = mapped_column(ForeignKey("help_request.id"))
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("match_plan.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="suggested")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    proposed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    exchange_id: Mapped[int | None] = mapped_column(ForeignKey("exchange.id"), nullable=True)
    suggested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    proposed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    responded_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    logged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    request = relationship("HelpRequest")
    membership = relationship("Membership")

    __table_args__ = (
        CheckConstraint(
            "status IN ('suggested','proposed','accepted','declined','done','logged','withdrawn')",
            name="status_known"),
        UniqueConstraint("request_id", "membership_id"),
        Index("ix_match_member_status", "membership_id", "status"),
    )


class BlockedPair(db.Model):
    """Two members a broker has decided must never be matched; stored with the lower id first."""

    __tablename__ = "blocked_pair"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    low_membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"))
    high_membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    # True for a broker's block (safeguarding): the members cannot lift it themselves.
    by_broker: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    blocked_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("low_membership_id", "high_membership_id"),
        CheckConstraint("low_membership_id < high_membership_id", name="ordered"),
    )


class MatchPlan(db.Model):
    """A batch plan a broker reviews before sending its proposals."""

    __tablename__ = "match_plan"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"))
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    request_ids: Mapped[list] = mapped_column(JSON, default=list)
    capacity: Mapped[dict] = mapped_column(JSON, default=dict)
    total_score: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # When sent: the proposals that were no longer valid and were not sent, each with the reason in words.
    skipped: Mapped[list | None] = mapped_column(JSON, nullable=True)

    proposals: Mapped[list["MatchPlanProposal"]] = relationship(back_populates="plan",
                                                                order_by="MatchPlanProposal.id")

    __table_args__ = (CheckConstraint("status IN ('draft','sent')", name="status_known"),)


class MatchPlanProposal(db.Model):
    __tablename__ = "match_plan_proposal"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("match_plan.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("help_request.id"))
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"))
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list] = mapped_column(JSON, default=list)

    plan: Mapped[MatchPlan] = relationship(back_populates="proposals")


# Indexes the hard filters need on foundation tables (declared here so the foundation files stay untouched).
from timebank.community.models import Membership, MemberSkill  # noqa: E402

Index("ix_member_skill_category", MemberSkill.category_id, MemberSkill.membership_id)
Index("ix_membership_geo", Membership.timebank_id, Membership.latitude, Membership.longitude)

from timebank.matching.funnel import install as _install_funnel_hook  # noqa: E402

_install_funnel_hook()
