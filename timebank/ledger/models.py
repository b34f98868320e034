"""Accounts, transfers and postings: the double-entry core.

Amounts are integer minutes. Transfers and postings are append-only; the
database itself refuses updates and deletes (see the ledger migrations).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from timebank.extensions import db

ACCOUNT_KINDS = ("member", "organisation", "pot", "system")
ACCOUNT_STATUSES = ("open", "frozen", "closed")
TRANSFER_KINDS = ("exchange", "group_activity", "donation", "grant", "adjustment", "reversal", "opening")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Account(db.Model):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    # By table name only: the ledger does not import the community package.
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    # For system accounts: "issuance", "adjustments"; unique per time bank.
    system_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    floor_minutes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ceiling_minutes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")
    balance_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Hash of the account's latest posting (tamper evidence); moved by the posting trigger with the balance.
    chain_head: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('member','organisation','pot','system')", name="kind_known"),
        CheckConstraint("status IN ('open','frozen','closed')", name="status_known"),
        CheckConstraint("floor_minutes IS NULL OR floor_minutes <= 0", name="floor_not_positive"),
        CheckConstraint(
            "floor_minutes IS NULL OR ceiling_minutes IS NULL OR ceiling_minutes >= floor_minutes",
            name="ceiling_above_floor",
        ),
        # The credit limit, held by the database itself.
        CheckConstraint("floor_minutes IS NULL OR balance_minutes >= floor_minutes", name="balance_above_floor"),
        CheckConstraint("ceiling_minutes IS NULL OR balance_minutes <= ceiling_minutes", name="balance_below_ceiling"),
        UniqueConstraint("timebank_id", "system_code"),
    )


class Transfer(db.Model):
    __tablename__ = "transfer"

    id: Mapped[int] = mapped_column(primary_key=True)
    timebank_id: Mapped[int] = mapped_column(ForeignKey("timebank.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    memo: Mapped[str] = mapped_column(Text, default="")
    effective_date: Mapped[dt.date] = mapped_column(Date, index=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    recorded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reverses_transfer_id: Mapped[int | None] = mapped_column(ForeignKey("transfer.id"), nullable=True, unique=True)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)

    postings: Mapped[list["Posting"]] = relationship(back_populates="transfer", order_by="Posting.id")

    __table_args__ = (
        CheckConstraint(
            "kind IN ('exchange','group_activity','donation','grant','adjustment','reversal','opening')",
            name="kind_known",
        ),
        CheckConstraint("(kind = 'reversal') = (reverses_transfer_id IS NOT NULL)", name="reversal_link"),
        UniqueConstraint("timebank_id", "idempotency_key"),
    )


class Posting(db.Model):
    __tablename__ = "posting"

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfer.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    minutes: Mapped[int] = mapped_column(BigInteger)
    # Per-account hash chain: prev_hash is the account's previous posting hash (or 64 zeros).
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    transfer: Mapped[Transfer] = relationship(back_populates="postings")
    account: Mapped[Account] = relationship()

    __table_args__ = (
        CheckConstraint("minutes <> 0", name="minutes_not_zero"),
        Index("ix_posting_account_transfer", "account_id", "transfer_id"),
        # With the minutes: report sums over a period's transfers read the index alone (migration 0017).
        Index("ix_posting_transfer_minutes", "transfer_id", "minutes"),
    )


class TransferZeroSumGuard(db.Model):
    """SQLite's stand-in for PostgreSQL's deferred zero-sum constraint trigger.

    Triggers keep one row per transfer with the running sum and count of its
    postings. While the transfer is unbalanced (sum != 0 or fewer than two
    postings) `unbalanced_ref` holds -transfer_id, which no row has, so the
    deferred foreign key makes COMMIT fail. Balanced, it is NULL. Unused
    (empty) on PostgreSQL.
    """

    __tablename__ = "transfer_zero_sum_guard"

    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfer.id"), primary_key=True, autoincrement=False)
    minutes_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    postings_count: Mapped[int] = mapped_column(Integer, default=0)
    unbalanced_ref: Mapped[int | None] = mapped_column(
        # Indexed: SQLite looks up children of every new guard row; unindexed, each insert scans the table.
        ForeignKey("transfer_zero_sum_guard.transfer_id", deferrable=True, initially="DEFERRED"), nullable=True,
        index=True)
