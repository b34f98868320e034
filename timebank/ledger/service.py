"""Ledger verbs. Services take a session and plain values, flush, and never commit.

Writing a transfer: validate in Python (clear domain errors), lock the touched
accounts in ascending id order (PostgreSQL `SELECT ... FOR UPDATE`; SQLite holds
its write lock from BEGIN IMMEDIATE), insert the transfer and its postings, and
let the database check the invariants again (see migrations 0002_ledger).
The critical section runs inside a savepoint so a deadlock, a serialization
failure or a concurrent duplicate idempotency key can be retried a bounded
number of times without losing the caller's transaction.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.attributes import set_committed_value

from timebank.ledger.errors import (AccountClosed, AccountNotFound, AlreadyReversed, CeilingExceeded, CrossTimebank,
                                    DuplicateAccount,
                                    IdempotencyKeyReused, InsufficientBalance, LedgerError, TransferNotFound,
                                    UnbalancedTransfer, describe_minutes)
from timebank.ledger.models import TRANSFER_KINDS, Account, Posting, Transfer

SYSTEM_ACCOUNTS = {
    "issuance": ("system", "Issuance"),
    "adjustments": ("system", "Adjustments"),
    "pot": ("pot", "Community pot"),
}

MAX_ATTEMPTS = 5
GENESIS_HASH = "0" * 64


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


# --- pure rules ------------------------------------------------------------------------------------------------------

def normalise_postings(postings) -> list[tuple[int, int]]:
    """Check the shape of the postings; returns them as (account_id, minutes) int pairs. Pure."""
    result = []
    for item in postings:
        try:
            account_id, minutes = item
        except (TypeError, ValueError):
            raise UnbalancedTransfer("Each posting needs an account and a number of minutes.") from None
        if isinstance(minutes, bool) or not isinstance(minutes, int) or isinstance(account_id, bool) \
                or not isinstance(account_id, int):
            raise UnbalancedTransfer("Posting amounts are whole minutes (integers), never fractions.")
        if minutes == 0:
            raise UnbalancedTransfer("A posting cannot be zero minutes.")
        result.append((account_id, minutes))
    if len(result) < 2:
        raise UnbalancedTransfer("A transfer needs at least two postings.")
    if len({a for a, _ in result}) != len(result):
        # One posting per account: the database checks limits posting by posting, so legs must not net out.
        raise DuplicateAccount("An account may appear only once in a transfer.")
    total = sum(m for _, m in result)
    if total != 0:
        raise UnbalancedTransfer(f"The postings sum to {total} minutes; they must sum to zero.", sum_minutes=total)
    return result


def net_by_account(postings: list[tuple[int, int]]) -> dict[int, int]:
    net: dict[int, int] = {}
    for account_id, minutes in postings:
        net[account_id] = net.get(account_id, 0) + minutes
    return net


def check_limits(account: Account, delta: int) -> None:
    """Refuse a move that takes an account below its floor or above its ceiling. Pure."""
    new_balance = account.balance_minutes + delta
    if delta < 0 and account.floor_minutes is not None and new_balance < account.floor_minutes:
        raise InsufficientBalance(
            f"Not enough hours: this would take {account.name} to {describe_minutes(new_balance)}, "
            f"below its limit of {describe_minutes(account.floor_minutes)} "
            f"(short by {describe_minutes(account.floor_minutes - new_balance)}).",
            account_id=account.id, balance_minutes=account.balance_minutes, would_be_minutes=new_balance,
            floor_minutes=account.floor_minutes)
    if delta > 0 and account.ceiling_minutes is not None and new_balance > account.ceiling_minutes:
        raise CeilingExceeded(
            f"This would take {account.name} to {describe_minutes(new_balance)}, "
            f"above its ceiling of {describe_minutes(account.ceiling_minutes)}.",
            account_id=account.id, would_be_minutes=new_balance, ceiling_minutes=account.ceiling_minutes)


def request_hash(*, timebank_id: int, kind: str, postings: list[tuple[int, int]], effective_date: dt.date,
                 memo: str, metadata: dict | None, reverses_transfer_id: int | None = None) -> str:
    """A fingerprint of a transfer's content, to tell a replay from a reused key."""
    content = {"timebank": timebank_id, "kind": kind, "postings": sorted(postings),
               "date": effective_date.isoformat(), "memo": memo or "", "metadata": metadata or {},
               "reverses": reverses_transfer_id}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def posting_hash(prev_hash: str, *, transfer: Transfer, account_id: int, minutes: int) -> str:
    """The chain link for one posting: the account's previous link plus this posting's content."""
    content = "|".join([
        prev_hash, str(transfer.id), str(transfer.timebank_id), transfer.kind, transfer.effective_date.isoformat(),
        str(transfer.reverses_transfer_id or ""), hashlib.sha256((transfer.memo or "").encode()).hexdigest(),
        str(account_id), str(minutes),
    ])
    return hashlib.sha256(content.encode()).hexdigest()


# --- verbs -----------------------------------------------------------------------------------------------------------

def _is_retryable(exc: Exception) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    return code in ("40P01", "40001")


def _existing_by_key(session, timebank_id: int, key: str) -> Transfer | None:
    return session.scalar(select(Transfer).where(Transfer.timebank_id == timebank_id,
                                                 Transfer.idempotency_key == key))


def _replay(existing: Transfer, fingerprint: str) -> Transfer:
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("This idempotency key was already used for a different transfer.",
                                   transfer_id=existing.id)
    return existing


def post_transfer(session, *, timebank_id: int, kind: str, postings: list[tuple[int, int]],
                  effective_date: dt.date, memo: str = "", recorded_by_user_id: int | None = None,
                  idempotency_key: str | None = None, metadata: dict | None = None,
                  _reverses_transfer_id: int | None = None) -> Transfer:
    """Record one balanced transfer, or refuse with a LedgerError and write nothing.

    The same idempotency key with the same content returns the original transfer;
    with different content it raises IdempotencyKeyReused.
    """
    if kind not in TRANSFER_KINDS:
        raise LedgerError(f"Unknown transfer kind {kind!r}.", code="unknown_transfer_kind")
    if (kind == "reversal") != (_reverses_transfer_id is not None):
        raise LedgerError("Reversals are made with reverse_transfer.", code="reversal_only_by_reverse")
    if not isinstance(effective_date, dt.date) or isinstance(effective_date, dt.datetime):
        raise LedgerError("The effective date must be a date.", code="validation_error")
    clean = normalise_postings(postings)
    memo = memo or ""
    fingerprint = request_hash(timebank_id=timebank_id, kind=kind, postings=clean, effective_date=effective_date,
                               memo=memo, metadata=metadata, reverses_transfer_id=_reverses_transfer_id)
    if idempotency_key is not None:
        existing = _existing_by_key(session, timebank_id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint)

    last_error: Exception | None = None
    for _attempt in range(MAX_ATTEMPTS):
        savepoint = session.begin_nested()
        try:
            transfer = _write_transfer(session, timebank_id=timebank_id, kind=kind, postings=clean,
                                       effective_date=effective_date, memo=memo,
                                       recorded_by_user_id=recorded_by_user_id, idempotency_key=idempotency_key,
                                       fingerprint=fingerprint, metadata=metadata,
                                       reverses_transfer_id=_reverses_transfer_id)
            savepoint.commit()
            return transfer
        except LedgerError:
            savepoint.rollback()
            raise
        except (IntegrityError, OperationalError) as exc:
            if exc.connection_invalidated:  # the database went away: no retry on this session can work
                raise
            savepoint.rollback()
            last_error = exc
            if idempotency_key is not None:
                existing = _existing_by_key(session, timebank_id, idempotency_key)
                if existing is not None:
                    return _replay(existing, fingerprint)
            if _reverses_transfer_id is not None and session.scalar(
                    select(Transfer.id).where(Transfer.reverses_transfer_id == _reverses_transfer_id)):
                raise AlreadyReversed("This transfer has already been reversed.",
                                      transfer_id=_reverses_transfer_id) from None
            if isinstance(exc, OperationalError) and _is_retryable(exc):
                continue
            raise
    raise last_error  # pragma: no cover - only after MAX_ATTEMPTS deadlocks in a row


def _write_transfer(session, *, timebank_id, kind, postings, effective_date, memo, recorded_by_user_id,
                    idempotency_key, fingerprint, metadata, reverses_transfer_id) -> Transfer:
    net = net_by_account(postings)
    ids = sorted(net)
    # One global lock order (ascending ids) so concurrent transfers never deadlock.
    accounts = {a.id: a for a in session.scalars(
        select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update()
        .execution_options(populate_existing=True))}
    for account_id in ids:
        account = accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"There is no account {account_id}.", account_id=account_id)
        if account.timebank_id != timebank_id:
            raise CrossTimebank(f"{account.name} belongs to another time bank.", account_id=account_id)
        if account.status != "open":
            raise AccountClosed(f"{account.name} is {account.status} and cannot take new postings.",
                                account_id=account_id)
    for account_id in ids:
        check_limits(accounts[account_id], net[account_id])

    transfer = Transfer(timebank_id=timebank_id, kind=kind, memo=memo, effective_date=effective_date,
                        recorded_by_user_id=recorded_by_user_id, idempotency_key=idempotency_key,
                        request_hash=fingerprint, reverses_transfer_id=reverses_transfer_id,
                        metadata_=metadata or {})
    session.add(transfer)
    session.flush()
    heads = {a.id: a.chain_head or GENESIS_HASH for a in accounts.values()}
    for account_id, minutes in postings:
        link = posting_hash(heads[account_id], transfer=transfer, account_id=account_id, minutes=minutes)
        session.add(Posting(transfer=transfer, account_id=account_id, minutes=minutes,
                            prev_hash=heads[account_id], hash=link))
        heads[account_id] = link
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        # Fire the deferred zero-sum trigger now, inside the savepoint, not at COMMIT.
        session.execute(_SET_IMMEDIATE)
        session.execute(_SET_DEFERRED)
    for account_id in ids:
        # The database trigger moved the balance and the chain head; mirror it without another read.
        set_committed_value(accounts[account_id], "balance_minutes",
                            accounts[account_id].balance_minutes + net[account_id])
        set_committed_value(accounts[account_id], "chain_head", heads[account_id])
    return transfer


from sqlalchemy import text as _text  # noqa: E402

_SET_IMMEDIATE = _text("SET CONSTRAINTS ALL IMMEDIATE")
_SET_DEFERRED = _text("SET CONSTRAINTS ALL DEFERRED")


def reverse_transfer(session, transfer_id: int, *, reason: str, recorded_by_user_id: int | None = None,
                     idempotency_key: str | None = None, effective_date: dt.date | None = None) -> Transfer:
    """Record a transfer that mirrors `transfer_id`. A transfer is reversed at most once."""
    original = session.get(Transfer, transfer_id)
    if original is None:
        raise TransferNotFound(f"There is no transfer {transfer_id}.", transfer_id=transfer_id)
    postings = [(p.account_id, -p.minutes) for p in original.postings]
    effective_date = effective_date or dt.date.today()
    memo = f"Reversal of transfer {original.id}: {reason}".strip()
    if idempotency_key is not None:
        existing = _existing_by_key(session, original.timebank_id, idempotency_key)
        if existing is not None:
            fingerprint = request_hash(timebank_id=original.timebank_id, kind="reversal", postings=postings,
                                       effective_date=existing.effective_date, memo=memo, metadata=None,
                                       reverses_transfer_id=original.id)
            return _replay(existing, fingerprint)
    if session.scalar(select(Transfer.id).where(Transfer.reverses_transfer_id == original.id)) is not None:
        raise AlreadyReversed(f"Transfer {original.id} has already been reversed.", transfer_id=original.id)
    return post_transfer(session, timebank_id=original.timebank_id, kind="reversal", postings=postings,
                         effective_date=effective_date, memo=memo, recorded_by_user_id=recorded_by_user_id,
                         idempotency_key=idempotency_key, metadata=None, _reverses_transfer_id=original.id)
