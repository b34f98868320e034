"""Stand-in for the ledger's post_transfer/reverse_transfer until the `ledger` branch is merged.

Same signature and the same rules (at least two non-zero postings summing to zero, floors and
ceilings, balances kept equal to the sum of postings); delete once timebank.ledger.service has them.
"""
from __future__ import annotations

from timebank.errors import ValidationFailed
from timebank.ledger.models import Account, Posting, Transfer


def post_transfer(session, *, timebank_id, kind, postings, effective_date, memo="", recorded_by_user_id=None,
                  idempotency_key=None, metadata=None, reverses_transfer_id=None):
    if len(postings) < 2 or any(m == 0 for _, m in postings) or sum(m for _, m in postings) != 0:
        raise ValidationFailed("A transfer needs two or more non-zero postings that sum to zero.")
    for account_id, minutes in postings:
        account = session.get(Account, account_id)
        if account is None or account.timebank_id != timebank_id or account.status != "open":
            raise ValidationFailed("Unknown or closed account.")
        new = account.balance_minutes + minutes
        if account.floor_minutes is not None and new < account.floor_minutes:
            raise ValidationFailed("Not enough hours.", code="insufficient_balance")
        if account.ceiling_minutes is not None and new > account.ceiling_minutes:
            raise ValidationFailed("Above the account's ceiling.", code="ceiling_exceeded")
        account.balance_minutes = new
    transfer = Transfer(timebank_id=timebank_id, kind=kind, memo=memo, effective_date=effective_date,
                        recorded_by_user_id=recorded_by_user_id, idempotency_key=idempotency_key,
                        reverses_transfer_id=reverses_transfer_id, metadata_=metadata or {})
    transfer.postings = [Posting(account_id=a, minutes=m) for a, m in postings]
    session.add(transfer)
    session.flush()
    return transfer


def reverse_transfer(session, transfer_id, *, reason, recorded_by_user_id=None, effective_date=None):
    original = session.get(Transfer, transfer_id)
    return post_transfer(session, timebank_id=original.timebank_id, kind="reversal",
                         postings=[(p.account_id, -p.minutes) for p in original.postings],
                         effective_date=effective_date or original.effective_date, memo=reason,
                         recorded_by_user_id=recorded_by_user_id, reverses_transfer_id=transfer_id)
