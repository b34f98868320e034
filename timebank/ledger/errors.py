"""Ledger refusals with stable codes (see timebank.errors.DomainError)."""
from __future__ import annotations

from timebank.errors import DomainError


def describe_minutes(minutes: int) -> str:
    """Minutes in plain words: -660 -> "-11 hours", 90 -> "1 hour 30 minutes"."""
    sign = "-" if minutes < 0 else ""
    hours, rest = divmod(abs(int(minutes)), 60)
    parts = []
    if hours or not rest:
        parts.append(f"{hours} hour" + ("" if hours == 1 else "s"))
    if rest:
        parts.append(f"{rest} minute" + ("" if rest == 1 else "s"))
    return sign + " ".join(parts)


class LedgerError(DomainError):
    code = "ledger_error"
    status = 422
    title = "The ledger refused this"


class InsufficientBalance(LedgerError):
    code = "insufficient_balance"
    status = 422
    title = "Not enough hours"


class DuplicateAccount(LedgerError):
    code = "duplicate_account"
    status = 422
    title = "An account may appear only once in a transfer"


class CeilingExceeded(LedgerError):
    code = "ceiling_exceeded"
    status = 422
    title = "Above the account's ceiling"


class UnbalancedTransfer(LedgerError):
    code = "unbalanced_transfer"
    status = 422
    title = "The postings of a transfer must sum to zero"


class AccountClosed(LedgerError):
    code = "account_closed"
    status = 409
    title = "The account is not open"


class CrossTimebank(LedgerError):
    code = "cross_timebank"
    status = 422
    title = "All accounts of a transfer must belong to the same time bank"


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    status = 409
    title = "This transfer has already been reversed"


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"
    status = 409
    title = "This idempotency key was already used for a different transfer"


class AccountNotFound(LedgerError):
    code = "account_not_found"
    status = 404
    title = "No such account"


class TransferNotFound(LedgerError):
    code = "transfer_not_found"
    status = 404
    title = "No such transfer"
