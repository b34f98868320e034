"""Ledger nouns: balances and statements. Read-only."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, func, join, select

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
    return int(session.scalar(_BALANCE_AS_OF, {"account_id": account_id, "as_of": as_of}))


_BALANCE_AS_OF = (select(func.coalesce(func.sum(Posting.minutes), 0)).join(Transfer, Posting.transfer_id == Transfer.id)
                  .where(Posting.account_id == bindparam("account_id"), Transfer.effective_date <= bindparam("as_of")))


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


# Built once (the statement is one of the most read pages): the period's movements, one per transfer, in date order.
_PERIOD_LINES = (
    select(Transfer.effective_date, Transfer.id, func.sum(Posting.minutes))
    .join(Transfer, Posting.transfer_id == Transfer.id)
    .where(Posting.account_id == bindparam("account_id"), Transfer.effective_date >= bindparam("date_from"),
           Transfer.effective_date <= bindparam("date_to"))
    .group_by(Transfer.effective_date, Transfer.id)
    .order_by(Transfer.effective_date, Transfer.id))
# A period that runs to today or later: the lines from its first day on and the account's balance now, in one
# statement and so one snapshot. The opening balance is the balance less those lines (the ledger keeps
# account.balance_minutes equal to the sum of the account's postings), so the account's earlier history is not
# summed on every read. The left join gives one row, of NULL lines, when there are none.
_LINES_SINCE = (
    select(Account.balance_minutes, Transfer.effective_date, Transfer.id, func.sum(Posting.minutes))
    .select_from(Account)
    .outerjoin(join(Posting, Transfer, and_(Posting.transfer_id == Transfer.id,
                                            Transfer.effective_date >= bindparam("date_from"))),
               Posting.account_id == Account.id)
    .where(Account.id == bindparam("account_id"))
    .group_by(Account.balance_minutes, Transfer.effective_date, Transfer.id)
    .order_by(Transfer.effective_date, Transfer.id))
_PAGE_TRANSFERS = (
    select(Transfer.id, Transfer.kind, Transfer.memo, Account.name, Posting.minutes).select_from(Transfer)
    .outerjoin(Posting, and_(Posting.transfer_id == Transfer.id, Posting.account_id != bindparam("account_id")))
    .outerjoin(Account, Account.id == Posting.account_id)
    .where(Transfer.id.in_(bindparam("ids", expanding=True))).order_by(Transfer.id, Posting.id))


def statement(session, account_id: int, date_from: dt.date, date_to: dt.date, page: int = 1,
              per_page: int = 50) -> Statement:
    """Opening balance, the lines of the period in date order with running balance, closing balance, totals.

    Lines are ordered by the date the help happened, then by transfer id. `page`
    and `per_page` pick a page of lines; totals always cover the whole period.
    """
    account = get_account(session, account_id)
    page = max(1, int(page))
    per_page = max(1, int(per_page))
    if date_to >= dt.date.today():
        since = session.execute(_LINES_SINCE, {"account_id": account_id, "date_from": date_from}).all()
        rows = [(day, transfer_id, minutes) for _b, day, transfer_id, minutes in since if transfer_id is not None]
        opening = int(since[0][0]) - sum(int(minutes) for _d, _t, minutes in rows)
        rows = [row for row in rows if row[0] <= date_to]  # transfers dated after the period (rare) open no line
    else:
        opening = balance_of(session, account_id, date_from - dt.timedelta(days=1))
        rows = session.execute(_PERIOD_LINES, {"account_id": account_id, "date_from": date_from,
                                               "date_to": date_to}).all()
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
    # The page's transfers and the other side of each, in one statement: (kind, memo) per transfer, and the names
    # and minutes of its postings on other accounts (none: a left join keeps the transfer).
    transfers: dict[int, tuple[str, str]] = {}
    others: dict[int, list[tuple[str, int]]] = {}
    if ids:
        for transfer_id, kind, memo, name, minutes in session.execute(_PAGE_TRANSFERS, {
                "ids": ids, "account_id": account_id}):
            transfers[transfer_id] = (kind, memo)
            if name is not None:
                others.setdefault(transfer_id, []).append((name, minutes))
    lines = []
    for date, transfer_id, minutes, running_minutes in page_rows:
        kind, memo = transfers[transfer_id]
        # The counterparties are the accounts on the other side of this account's movement.
        names = [n for n, m in others.get(transfer_id, []) if (m > 0) != (minutes > 0)] or \
            [n for n, _ in others.get(transfer_id, [])]
        lines.append(StatementLine(date=date, transfer_id=transfer_id, kind=kind, memo=memo or "",
                                   counterparty=", ".join(dict.fromkeys(names)), minutes=minutes,
                                   running_minutes=running_minutes))
    return Statement(account_id=account.id, account_name=account.name, date_from=date_from, date_to=date_to,
                     opening_minutes=opening, closing_minutes=running, given_minutes=given,
                     received_minutes=received, total_lines=len(all_lines), page=page, per_page=per_page,
                     lines=lines)
