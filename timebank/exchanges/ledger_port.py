"""The ledger verbs exchanges use.

The ledger capability (branch `ledger`) provides post_transfer/reverse_transfer.
Until it is merged, a minimal stand-in with the same signature posts balanced
transfers and keeps balances; it is used only when the real verbs are absent.
"""
from __future__ import annotations

try:  # pragma: no cover - which branch wins depends on the merge
    from timebank.ledger.service import post_transfer, reverse_transfer, system_account  # noqa: F401
except ImportError:  # the ledger branch has not landed yet
    from sqlalchemy import select

    from timebank.errors import Conflict, DomainError, NotFound
    from timebank.ledger.models import Account, Posting, Transfer
    from timebank.ledger.service import system_account  # noqa: F401

    def post_transfer(session, *, timebank_id, kind, postings, effective_date, memo="", recorded_by_user_id=None,
                      idempotency_key=None, metadata=None):
        if idempotency_key:
            existing = session.scalar(select(Transfer).where(Transfer.timebank_id == timebank_id,
                                                             Transfer.idempotency_key == idempotency_key))
            if existing is not None:
                return existing
        if sum(m for _a, m in postings) != 0 or any(m == 0 for _a, m in postings) or len(postings) < 2:
            raise DomainError("A transfer must balance.", code="unbalanced_transfer")
        accounts = {}
        for account_id, minutes in postings:
            account = accounts.get(account_id) or session.get(Account, account_id, with_for_update=True)
            if account is None or account.timebank_id != timebank_id:
                raise DomainError("The accounts are not in the same time bank.", code="cross_timebank")
            if account.status != "open":
                raise DomainError("That account is closed.", code="account_closed", status=409)
            accounts[account_id] = account
        totals: dict[int, int] = {}
        for account_id, minutes in postings:
            totals[account_id] = totals.get(account_id, 0) + minutes
        for account_id, delta in totals.items():
            account = accounts[account_id]
            new = account.balance_minutes + delta
            if account.floor_minutes is not None and new < account.floor_minutes and delta < 0:
                raise DomainError("Not enough hours.", code="insufficient_balance", status=409)
            if account.ceiling_minutes is not None and new > account.ceiling_minutes and delta > 0:
                raise DomainError("Above the ceiling.", code="ceiling_exceeded", status=409)
        transfer = Transfer(timebank_id=timebank_id, kind=kind, memo=memo, effective_date=effective_date,
                            recorded_by_user_id=recorded_by_user_id, idempotency_key=idempotency_key,
                            metadata_=metadata or {})
        session.add(transfer)
        session.flush()
        for account_id, minutes in postings:
            session.add(Posting(transfer_id=transfer.id, account_id=account_id, minutes=minutes))
            accounts[account_id].balance_minutes += minutes
        session.flush()
        return transfer

    def reverse_transfer(session, transfer_id, *, reason, recorded_by_user_id=None, idempotency_key=None,
                         effective_date=None):
        original = session.get(Transfer, transfer_id)
        if original is None:
            raise NotFound("No such transfer.")
        if session.scalar(select(Transfer).where(Transfer.reverses_transfer_id == transfer_id)):
            raise Conflict("That transfer was already reversed.", code="already_reversed")
        import datetime as dt

        postings = [(p.account_id, p.minutes) for p in original.postings]
        total = {}
        for a, m in postings:
            total[a] = total.get(a, 0) - m
        accounts = {a: session.get(Account, a) for a in total}
        transfer = Transfer(timebank_id=original.timebank_id, kind="reversal", memo=reason,
                            effective_date=effective_date or dt.date.today(), recorded_by_user_id=recorded_by_user_id,
                            idempotency_key=idempotency_key, reverses_transfer_id=original.id, metadata_={})
        session.add(transfer)
        session.flush()
        for a, m in postings:
            session.add(Posting(transfer_id=transfer.id, account_id=a, minutes=-m))
            accounts[a].balance_minutes -= m
        session.flush()
        return transfer
