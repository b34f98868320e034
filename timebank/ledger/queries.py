"""Ledger nouns: balances and statements. Read-only."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select

from timebank.ledger.errors import AccountNotFound, TransferNotFound
from timebank.ledger.models import Account, Posting, Transfer


def get_account(session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(f"There is no account {account_id}.", account_id=account_id)
    return account


def get_transfer(session, transfer_id: int) -> Transfer:
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise TransferNotFound(f"There is no transfer {transfer_id}.", transfer_id=transfer_id)
    return transfer


def reversal_of(session, transfer_id: int) -> Transfer | None:
    """The transfer that reverses `transfer_id`, if any."""
    return session.scalar(select(Transfer).where(Transfer.reverses_transfer_id == transfer_id))


def balance_of(session, account_id: int, as_of: dt.date | None = None) -> int:
    """The balance in minutes now (read from the account row: constant cost), or at the end of `as_of`."""
    if as_of is None:
        balance = session.scalar(select(Account.balance_minutes).where(Account.id == account_id))
        if balance is None:
            raise AccountNotFound(f"There is no account {account_id}.", account_id=account_id)
        return int(balance)
    get_account(session, account_id)
    total = session.scalar(
        select(func.coalesce(func.sum(Posting.minutes), 0)).join(Transfer, Posting.transfer_id == Transfer.id)
        .where(Posting.account_id == account_id, Transfer.effective_date <= as_of))
    return int(total)


@dataclass
class StatementLine:
    date: dt.date
    transfer_id: int
    kind: str
    memo: str
    counterparty: str
    minutes: int
    running_minutes: int


@dataclass
class Statement:
    account_id: int
    account_name: str
    date_from: dt.date
    date_to: dt.date
    opening_minutes: int
    closing_minutes: int
    given_minutes: int  # hours that left the account in the period (debits), as a positive number
    received_minutes: int  # hours that came into the account in the period (credits)
    total_lines: int
    page: int
    per_page: int
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_lines // self.per_page))


def statement(session, account_id: int, date_from: dt.date, date_to: dt.date, page: int = 1,
              per_page: int = 50) -> Statement:
    """Opening balance, the lines of the period in date order with running balance, closing balance, totals.

    Lines are ordered by the date the help happened, then by transfer id. `page`
    and `per_page` pick a page of lines; totals always cover the whole period.
    """
    account = get_account(session, account_id)
    page = max(1, int(page))
    per_page = max(1, int(per_page))
    opening = balance_of(session, account_id, date_from - dt.timedelta(days=1))
    rows = session.execute(
        select(Transfer.effective_date, Transfer.id, func.sum(Posting.minutes))
        .join(Transfer, Posting.transfer_id == Transfer.id)
        .where(Posting.account_id == account_id, Transfer.effective_date >= date_from,
               Transfer.effective_date <= date_to)
        .group_by(Transfer.effective_date, Transfer.id)
        .order_by(Transfer.effective_date, Transfer.id)).all()
    given = received = 0
    running = opening
    all_lines = []
    for date, transfer_id, minutes in rows:
        minutes = int(minutes)
        running += minutes
        if minutes < 0:
            given += -minutes
        else:
            received += minutes
        all_lines.append((date, transfer_id, minutes, running))
    start = (page - 1) * per_page
    page_rows = all_lines[start:start + per_page]
    ids = [r[1] for r in page_rows]
    transfers = {t.id: t for t in session.scalars(select(Transfer).where(Transfer.id.in_(ids)))} if ids else {}
    others: dict[int, list[tuple[str, int]]] = {}
    if ids:
        for transfer_id, name, minutes in session.execute(
                select(Posting.transfer_id, Account.name, Posting.minutes).join(Account, Posting.account_id == Account.id)
                .where(Posting.transfer_id.in_(ids), Posting.account_id != account_id).order_by(Posting.id)):
            others.setdefault(transfer_id, []).append((name, minutes))
    lines = []
    for date, transfer_id, minutes, running_minutes in page_rows:
        transfer = transfers[transfer_id]
        # The counterparties are the accounts on the other side of this account's movement.
        names = [n for n, m in others.get(transfer_id, []) if (m > 0) != (minutes > 0)] or \
            [n for n, _ in others.get(transfer_id, [])]
        lines.append(StatementLine(date=date, transfer_id=transfer_id, kind=transfer.kind, memo=transfer.memo or "",
                                   counterparty=", ".join(dict.fromkeys(names)), minutes=minutes,
                                   running_minutes=running_minutes))
    return Statement(account_id=account.id, account_name=account.name, date_from=date_from, date_to=date_to,
                     opening_minutes=opening, closing_minutes=running, given_minutes=given,
                     received_minutes=received, total_lines=len(all_lines), page=page, per_page=per_page,
                     lines=lines)
