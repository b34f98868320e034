"""Ledger verbs. Services take a session and plain values, flush, and never commit."""
from __future__ import annotations

from sqlalchemy import select

from timebank.ledger.models import Account

SYSTEM_ACCOUNTS = {
    "issuance": ("system", "Issuance"),
    "adjustments": ("system", "Adjustments"),
    "pot": ("pot", "Community pot"),
}


def open_account(session, *, timebank_id: int, kind: str, name: str, floor_minutes: int | None = 0,
                 ceiling_minutes: int | None = None, system_code: str | None = None) -> Account:
    """Open an empty account in a time bank."""
    account = Account(timebank_id=timebank_id, kind=kind, name=name, floor_minutes=floor_minutes,
                      ceiling_minutes=ceiling_minutes, system_code=system_code, status="open", balance_minutes=0)
    session.add(account)
    session.flush()
    return account


def ensure_system_accounts(session, timebank_id: int) -> dict[str, Account]:
    """The time bank's issuance, adjustments and pot accounts, opened on first use."""
    existing = {a.system_code: a for a in session.scalars(
        select(Account).where(Account.timebank_id == timebank_id, Account.system_code.is_not(None)))}
    for code, (kind, name) in SYSTEM_ACCOUNTS.items():
        if code not in existing:
            # Issuance has no floor: it is where new hours come from. The pot cannot go below zero.
            floor = None if kind == "system" else 0
            existing[code] = open_account(session, timebank_id=timebank_id, kind=kind, name=name,
                                          floor_minutes=floor, system_code=code)
    return existing


def system_account(session, timebank_id: int, code: str) -> Account:
    return ensure_system_accounts(session, timebank_id)[code]
