"""Closed reporting periods: a frozen report with its content hash."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from timebank.extensions import db


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class ClosedPeriod(db.Model):
    """A period an admin closed; `report_json` never changes afterwards (its SHA-256 is `content_hash`)."""

    __tablename__ = "impact_closed_period"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), index=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    report_json: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    closed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)

    __table_args__ = (UniqueConstraint("timebank_id", "period_start", "period_end"),)


# Reports join exchanges to their transfers; the foundation has no index on exchange.transfer_id.
from sqlalchemy import Index  # noqa: E402

from timebank.exchanges.models import Exchange  # noqa: E402

Index("ix_exchange_transfer_id", Exchange.transfer_id)
