"""Closed reporting periods: a frozen report with its content hash."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text,
                        UniqueConstraint)
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


class ImpactFact(db.Model):
    """Roll-up: one row per side (provider, recipient) of each signed exchange event.

    An event is an exchange's `exchange`/`group_activity` transfer (sign +1) or the reversal of that
    transfer (sign -1), dated by the transfer's effective date. These are exactly the rows the raw
    report queries derive from `exchange` joined to `transfer` (queries.RAW_EVENTS_SQL), kept here so a
    report reads one narrow, indexed table. Maintained by timebank/impact/rollups.py in the same
    transaction as the exchange or reversal; `flask reports rebuild-rollups` rebuilds it from raw rows.
    Labels (category and organisation names, a member's ward, age band, gender) are joined at read
    time, so editing them never leaves the roll-up stale.
    """

    __tablename__ = "impact_fact"

    # The key leads with (time bank, day) and, on SQLite, the table is stored in key order (WITHOUT ROWID):
    # a period's rows are read in one sequential range instead of one random row lookup per index entry.
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), primary_key=True)
    on_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchange.id"), primary_key=True)
    sign: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    # 1 when the event is a delivery (+1) of an exchange still confirmed: it makes its members "active".
    active: Mapped[int] = mapped_column(SmallInteger)
    side: Mapped[str] = mapped_column(String(9), primary_key=True)
    membership_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The other side: a membership id, or minus an organisation id.
    partner_key: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The organisation taking part, on either side (null for person-to-person).
    organisation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    minutes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(5))
    coproduction_type: Mapped[str] = mapped_column(String(30))
    outcome_area: Mapped[str] = mapped_column(String(50))
    collective: Mapped[bool] = mapped_column(Boolean)
    substitutive: Mapped[bool] = mapped_column(Boolean)
    category_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # On an active row with a member: the day of the same member's previous active row with the same partner
    # (pair_prev_on) or the same organisation (org_prev_on), in (day, exchange, side) order; null for the first.
    # A member-partner pair is active in a period once for each of its rows there whose previous row is before
    # the period: distinct partners and people per organisation become counts instead of de-duplications.
    # Maintained by rollups.set_previous_days.
    pair_prev_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    org_prev_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)

    __table_args__ = (
        Index("ix_impact_fact_exchange", "exchange_id"),
        Index("ix_impact_fact_member", "membership_id", "on_date"),
        {"sqlite_with_rowid": False},
    )


class ImpactDaily(db.Model):
    """Roll-up of impact_fact per time bank, day and breakdown value: hours and exchanges (provider side).

    `dimension` is "total" (value "") or a tag breakdown (values are tag codes, or category and
    organisation ids as text, "" when none). `events` counts the fact rows (both sides), so a value
    with activity but no net minutes still shows. Maintained with impact_fact (rollups.py).
    """

    __tablename__ = "impact_daily"

    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), primary_key=True)
    on_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[str] = mapped_column(String(60), primary_key=True)
    minutes: Mapped[int] = mapped_column(Integer)
    exchanges: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)



class _MemberFlags:
    """The per-member figures impact_member_month and impact_member_year both hold (see ImpactMemberMonth)."""

    active: Mapped[int] = mapped_column(SmallInteger)
    gave: Mapped[int] = mapped_column(SmallInteger)
    received: Mapped[int] = mapped_column(SmallInteger)
    given_minutes: Mapped[int] = mapped_column(Integer)
    first_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    tag_mask: Mapped[int] = mapped_column(BigInteger)
    category_mask: Mapped[int] = mapped_column(BigInteger)


class ImpactMemberMonth(_MemberFlags, db.Model):
    """Roll-up of impact_fact per time bank, calendar month and member (sides with no member are left out).

    What the person-level figures need, so a month-aligned period reads about one row per active member
    per month instead of one per exchange side (the partial months at a period's edges are grouped from
    impact_fact at read time, the same way): `active` (a delivery of a still-confirmed exchange), `gave` /
    `received` (such a delivery on that side), `given_minutes` (provider-side minutes, signed), `first_on`
    (first active day) and `tag_mask`, one bit per known tag value the member was active with
    (queries.TAG_BITS; values outside that vocabulary are counted from impact_fact) and `category_mask` (bit
    category id mod 62, queries.category_bit; categories sharing a bit are counted from impact_fact). Maintained with
    impact_fact (rollups.py); month is the first day of the month.
    """

    __tablename__ = "impact_member_month"

    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    membership_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    __table_args__ = ({"sqlite_with_rowid": False},)



class ImpactMemberYear(_MemberFlags, db.Model):
    """impact_member_month grouped per time bank, year and member, for years starting in January and in April
    (queries.YEAR_STARTS): the same columns, `starts_on` the year's first day. A period of whole such years (a
    calendar or financial year) reads one row per active member instead of one per active member and month.
    Maintained with impact_member_month (rollups.py)."""

    __tablename__ = "impact_member_year"

    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), primary_key=True)
    starts_on: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    membership_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Bit i: active in the year's month i (0 its first month). A one-year report's members active per month
    # are then counts of bits over these rows, not a second read of the year's member-month rows.
    month_mask: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    __table_args__ = ({"sqlite_with_rowid": False},)


class ImpactMemberFirst(db.Model):
    """The day of each member's first delivered exchange (the earliest impact_fact row with sign +1, whatever
    became of the exchange since): "members with no trade yet" is then one join, not a search of each member's
    facts. Maintained with impact_fact (rollups.py); a member with no such row has no row here."""

    __tablename__ = "impact_member_first"

    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), primary_key=True)
    membership_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_on: Mapped[dt.date] = mapped_column(Date)


# Reports join exchanges to their transfers; the foundation has no index on exchange.transfer_id.
from timebank.exchanges.models import Exchange  # noqa: E402

Index("ix_exchange_transfer_id", Exchange.transfer_id)

# The ledger reconciliation sums one time bank's transfers of some kinds over a period.
from timebank.ledger.models import Transfer  # noqa: E402

Index("ix_transfer_timebank_kind_date", Transfer.timebank_id, Transfer.kind, Transfer.effective_date)

from timebank.impact.queries import install_bit_or as _install_bit_or  # noqa: E402
from timebank.impact.rollups import install as _install_rollup_hook  # noqa: E402

_install_rollup_hook()
_install_bit_or()
