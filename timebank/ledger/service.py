"""Ledger verbs. Services take a session and plain values, flush, and never commit.

Writing a transfer: validate in Python (clear domain errors), lock the touched
accounts in ascending id order (PostgreSQL `SELECT ... FOR UPDATE`; SQLite holds
its write lock from BEGIN IMMEDIATE), insert the transfer and its postings, and
let the database check the invariants again (see migration 0002_ledger). On PostgreSQL the lock and the insert go in one pipeline and
the account checks that name the account and amounts run only when the database
refuses (see _write_pipelined).
The critical section runs inside a savepoint so a deadlock, a serialization
failure or a concurrent duplicate idempotency key can be retried a bounded
number of times without losing the caller's transaction.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import namedtuple

from sqlalchemy import insert as sa_insert
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.util import identity_key

try:  # PostgreSQL through psycopg 3 (the project's driver); the ledger also runs without it on SQLite
    import psycopg
    psycopg_errors = psycopg.Error
except ImportError:  # pragma: no cover
    psycopg = None
    psycopg_errors = ()

from timebank.ledger.errors import (AccountClosed, AccountNotFound, AlreadyReversed, CeilingExceeded, CrossTimebank,
                                    DuplicateAccount,
                                    IdempotencyKeyReused, InsufficientBalance, LedgerError, TransferNotFound,
                                    UnbalancedTransfer, describe_minutes)
from timebank.ledger.models import TRANSFER_KINDS, Account, Posting, Transfer, utcnow

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
    return _link(prev_hash, _transfer_link_fields(transfer), account_id, minutes)


def _transfer_link_fields(transfer) -> str:
    """The transfer's part of its postings' chain links."""
    return f"{transfer.id}|{_link_rest(transfer)}"


def _link_rest(transfer) -> str:
    """The transfer's part of the chain links but its id (known before the id: the insert adds the id)."""
    return "|".join([
        str(transfer.timebank_id), transfer.kind, transfer.effective_date.isoformat(),
        str(transfer.reverses_transfer_id or ""), hashlib.sha256((transfer.memo or "").encode()).hexdigest(),
    ])


def _link(prev_hash: str, transfer_fields: str, account_id: int, minutes: int) -> str:
    return hashlib.sha256(f"{prev_hash}|{transfer_fields}|{account_id}|{minutes}".encode()).hexdigest()


# --- verbs -----------------------------------------------------------------------------------------------------------

def _is_retryable(exc: Exception) -> bool:
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in ("40P01", "40001")


def _now(session):
    """The time a transfer is recorded: the wall clock, unless the session carries a clock (the demo's calendar)."""
    clock = session.info.get("clock")
    return (clock() if clock else None) or utcnow()


def _existing_by_key(session, timebank_id: int, key: str) -> Transfer | None:
    return session.scalar(select(Transfer).where(Transfer.timebank_id == timebank_id,
                                                 Transfer.idempotency_key == key))


def _replay(existing: Transfer, fingerprint: str) -> Transfer:
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("This idempotency key was already used for a different transfer.",
                                   transfer_id=existing.id)
    return existing


def _answer_conflict(session, *, timebank_id, idempotency_key, fingerprint, reverses_transfer_id) -> Transfer:
    """The transfer row was not inserted (a unique key exists): a replay, a reused key or a second reversal."""
    if idempotency_key is not None:
        existing = _existing_by_key(session, timebank_id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint)
    if reverses_transfer_id is not None:
        raise AlreadyReversed("This transfer has already been reversed.", transfer_id=reverses_transfer_id)
    raise LedgerError("The transfer conflicts with one already recorded.", code="conflict")  # pragma: no cover


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
    # No look-up of the idempotency key up front: the common case is a new key, and the transfer insert
    # (ON CONFLICT DO NOTHING) finds a used one. A replay is answered when the insert conflicts or when a
    # check refuses (an account closed since, a balance moved since), so it still returns the original.
    # The row to write is a plain draft; the ORM Transfer is made only once it is written (see _attach).
    draft = _Draft(timebank_id=timebank_id, kind=kind, memo=memo, effective_date=effective_date,
                   recorded_at=_now(session), recorded_by_user_id=recorded_by_user_id,
                   idempotency_key=idempotency_key, request_hash=fingerprint,
                   reverses_transfer_id=_reverses_transfer_id, metadata_=metadata or {})
    # Transfers with very many legs (large group activities) take the Core path: the pipelined statements have
    # parameters per leg, and one statement text per number of legs.
    raw = _pipeline_connection(session) if len(clean) <= PIPELINED_MAX_LEGS else None
    last_error: Exception | None = None
    for _attempt in range(MAX_ATTEMPTS):
        try:
            written = _write_pipelined(session, raw, draft, clean) if raw is not None \
                else _write_core(session, draft, clean)
        except LedgerError:
            if idempotency_key is not None:
                existing = _existing_by_key(session, timebank_id, idempotency_key)
                if existing is not None:
                    return _replay(existing, fingerprint)
            raise
        except (DBAPIError, psycopg_errors) as exc:
            if not _is_retryable(exc):
                raise
            last_error = exc
            continue
        if written is None:
            return _answer_conflict(session, timebank_id=timebank_id, idempotency_key=idempotency_key,
                                    fingerprint=fingerprint, reverses_transfer_id=_reverses_transfer_id)
        return written
    if psycopg is not None and isinstance(last_error, psycopg.Error):  # pragma: no cover - see below
        raise DBAPIError.instance("ledger write", None, last_error, psycopg.Error) from last_error
    raise last_error  # pragma: no cover - only after MAX_ATTEMPTS deadlocks in a row


# --- the write: lock, check, insert ------------------------------------------------------------------------------
#
# Both paths lock the accounts in ascending id order, check them in Python (clear domain errors), then insert
# the transfer (ON CONFLICT DO NOTHING: a used idempotency key or a second reversal inserts nothing) and its
# postings in one statement, inside a savepoint so a deadlock can be retried without losing the caller's
# transaction. The database triggers check everything again and move the balances (migration 0002_ledger).
# No ORM unit of work on this path: the Transfer and Posting objects are attached to the session afterwards
# as already persistent, and Account objects already in the session get the new balance and chain head.

_ACCOUNT_COLUMNS = (Account.id, Account.timebank_id, Account.name, Account.status, Account.floor_minutes,
                    Account.ceiling_minutes, Account.balance_minutes, Account.chain_head)

# The transfer's columns but its id: attribute key -> column name (metadata_ is the column "metadata").
_TRANSFER_COLUMNS = {attr.key: attr.columns[0].name for attr in Transfer.__mapper__.column_attrs if attr.key != "id"}


class _Draft:
    """The transfer row to write, before it exists: the ORM Transfer is made only once it is written."""

    __slots__ = ("id", *_TRANSFER_COLUMNS)

    def __init__(self, **fields):
        self.id = None
        for key in _TRANSFER_COLUMNS:
            setattr(self, key, fields[key])

    def values(self) -> dict:
        return {key: getattr(self, key) for key in _TRANSFER_COLUMNS}


def _check_locked(transfer, net: dict[int, int], rows) -> dict:
    """Refuse missing, foreign, frozen or closed accounts and moves past a floor or ceiling. Pure."""
    found = {row.id: row for row in rows}
    for account_id in sorted(net):
        account = found.get(account_id)
        if account is None:
            raise AccountNotFound(f"There is no account {account_id}.", account_id=account_id)
        if account.timebank_id != transfer.timebank_id:
            raise CrossTimebank(f"{account.name} belongs to another time bank.", account_id=account_id)
        if account.status != "open":
            raise AccountClosed(f"{account.name} is {account.status} and cannot take new postings.",
                                account_id=account_id)
    for account_id in sorted(net):
        check_limits(found[account_id], net[account_id])
    return found


def _chain(transfer, postings: list[tuple[int, int]], accounts: dict) -> list[dict]:
    """The postings' rows with their chain links (posting_hash's, with the transfer's part built once)."""
    heads = {a.id: a.chain_head or GENESIS_HASH for a in accounts.values()}
    fields = _transfer_link_fields(transfer)
    rows = []
    for account_id, minutes in postings:
        link = _link(heads[account_id], fields, account_id, minutes)
        rows.append({"account_id": account_id, "minutes": minutes, "prev_hash": heads[account_id], "hash": link})
        heads[account_id] = link
    return rows


def _persistent(cls, values: dict):
    """An instance of a mapped class holding `values` as loaded from the database (no history, no events):
    what make_transient_to_detached makes of a constructed object, at a fraction of the cost. Every column
    must be given; relationships not given load lazily as usual."""
    obj = cls._sa_class_manager.new_instance()
    state = instance_state(obj)
    state.dict.update(values)
    state.key = (cls, (values["id"],), None)
    return obj


def _attach(session, draft: _Draft, chain: list[dict], posting_ids: dict[int, int], accounts: dict,
            net: dict[int, int]) -> Transfer:
    """Put the written rows in the session as persistent objects, without reading them back."""
    transfer = _persistent(Transfer, {"id": draft.id, **draft.values()})
    postings = []
    for row in chain:
        posting = _persistent(Posting, {"id": posting_ids[row["account_id"]], "transfer_id": draft.id, **row,
                                        "transfer": transfer})
        postings.append(posting)
    postings.sort(key=lambda p: p.id)
    set_committed_value(transfer, "postings", postings)
    if isinstance(session, scoped_session):
        session = session()
    for obj in (transfer, *postings):
        # What Session.add does with a persistent object (identity map, attach events), without walking the
        # save-update cascades again for each: they lead only to these objects (and unloaded accounts).
        session._update_impl(instance_state(obj))
    heads = {row["account_id"]: row["hash"] for row in chain}
    touched = []
    identity_map = session.identity_map
    for account_id, row in accounts.items():
        loaded = identity_map.get(identity_key(Account, account_id))
        if loaded is not None:
            # What the trigger just wrote, and the other columns as locked: no stale balance for the caller.
            for column in ("timebank_id", "name", "status", "floor_minutes", "ceiling_minutes"):
                set_committed_value(loaded, column, getattr(row, column))
            set_committed_value(loaded, "balance_minutes", row.balance_minutes + net[account_id])
            set_committed_value(loaded, "chain_head", heads[account_id])
            touched.append(loaded)
    _register_with_transaction(session, new=[transfer, *postings], altered=touched)
    return transfer


def _register_with_transaction(session, *, new: list, altered: list) -> None:
    """Tell the session's transaction about rows written behind the unit of work, as a flush would.

    Without this a rolled-back savepoint (or transaction) would leave the attached Transfer and Postings in the
    identity map as if they existed, and the accounts with the balances the rollback undid; on SQLite the next
    transfer can even reuse the id. SQLAlchemy has no public call for it: this is what Session._register_altered
    does for flushed objects (expunged on rollback when new, expired when altered).
    """
    if isinstance(session, scoped_session):
        session = session()
    transaction = session._transaction
    if transaction is None:  # pragma: no cover - the write path always runs inside a transaction
        return
    for obj in new:
        transaction._new[instance_state(obj)] = True
    for obj in altered:
        transaction._dirty[instance_state(obj)] = True


def _write_core(session, draft: _Draft, postings: list[tuple[int, int]]) -> Transfer | None:
    """The write through SQLAlchemy Core statements: SQLite, and PostgreSQL drivers without pipelines."""
    dialect = session.get_bind().dialect.name
    net = net_by_account(postings)
    savepoint = session.begin_nested()
    try:
        lock = select(*_ACCOUNT_COLUMNS).where(Account.id.in_(sorted(net))).order_by(Account.id)
        if dialect == "postgresql":
            lock = lock.with_for_update()
        accounts = _check_locked(draft, net, session.execute(lock).all())
        table = Transfer.__table__
        values = {_TRANSFER_COLUMNS[key]: value for key, value in draft.values().items()}
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(**values)
        transfer_id = session.execute(insert.on_conflict_do_nothing().returning(table.c.id)).scalar()
        if transfer_id is None:
            savepoint.rollback()
            return None
        draft.id = transfer_id
        chain = _chain(draft, postings, accounts)
        table = Posting.__table__
        inserted = session.execute(sa_insert(table).values([{"transfer_id": transfer_id, **row} for row in chain])
                                   .returning(table.c.id, table.c.account_id)).all()
        if dialect == "postgresql":
            # Fire the deferred zero-sum trigger now, inside the savepoint, not at COMMIT.
            session.execute(_SET_IMMEDIATE)
            session.execute(_SET_DEFERRED)
        savepoint.commit()
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        raise
    return _attach(session, draft, chain, dict((a, i) for i, a in inserted), accounts, net)


# PostgreSQL with psycopg 3: one pipeline, one round trip for the write: SAVEPOINT, lock the accounts
# (SELECT ... FOR UPDATE in id order), insert the transfer (ON CONFLICT DO NOTHING) and its postings, fire the
# zero-sum check, RELEASE. Then the caller's COMMIT: two round trips per transfer in all.
# The write is optimistic: Python's checks (which name the account and the amounts) run only when the database
# refuses, in a second try that locks, checks, then inserts. The database holds every rule either way
# (migration 0002_ledger), so what it accepts Python would have accepted.
# The postings' chain links are computed by the insert from the locked accounts' chain heads: the same
# sha256 as posting_hash (prev|transfer id|transfer fields|account|minutes; the transfer fields but its id come
# from Python, see _link_rest), and the posting trigger still refuses a prev_hash that is not the chain head.
# Parameters are positional scalars, one statement text per number of legs: cheaper to send than arrays.

_PG_LOCK = """
SELECT id, timebank_id, name, status, floor_minutes, ceiling_minutes, balance_minutes, chain_head
FROM account WHERE id IN ({ids}) ORDER BY id FOR UPDATE
"""

_PG_INSERT = """
WITH new_transfer AS (
    INSERT INTO transfer (timebank_id, kind, memo, effective_date, recorded_at, recorded_by_user_id,
                          idempotency_key, request_hash, reverses_transfer_id, metadata)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)
    ON CONFLICT DO NOTHING
    RETURNING id),
leg AS (
    SELECT new_transfer.id AS transfer_id, leg.account_id, leg.minutes, leg.n,
           coalesce(account.chain_head, '{genesis}') AS prev_hash
    FROM new_transfer CROSS JOIN (VALUES {legs}) AS leg(account_id, minutes, n)
    LEFT JOIN account ON account.id = leg.account_id)
INSERT INTO posting (transfer_id, account_id, minutes, prev_hash, hash)
SELECT transfer_id, account_id, minutes, prev_hash,
       encode(sha256(convert_to(prev_hash || '|' || transfer_id || '|' || %s::text || '|' || account_id || '|'
                                || minutes, 'UTF8')), 'hex')
FROM leg ORDER BY n
RETURNING transfer_id, id, account_id, prev_hash, hash
"""

_pg_statements: dict[int, tuple[str, str]] = {}


def _pg_statements_for(legs: int) -> tuple[str, str]:
    """The lock and insert statements for a transfer with this many legs (built once per count)."""
    statements = _pg_statements.get(legs)
    if statements is None:
        statements = _pg_statements[legs] = (
            _PG_LOCK.format(ids=", ".join(["%s"] * legs)),
            _PG_INSERT.format(genesis=GENESIS_HASH,
                              legs=", ".join(f"(%s::integer, %s::bigint, {n})" for n in range(legs))))
    return statements


USE_PIPELINE = True  # tests turn it off to run the Core path on PostgreSQL too
PIPELINED_MAX_LEGS = 100


def _pipeline_connection(session):
    """The psycopg 3 connection under the session when pipelines can be used, else None."""
    if not USE_PIPELINE or psycopg is None or session.get_bind().dialect.driver != "psycopg":
        return None
    raw = session.connection().connection.driver_connection
    return raw if isinstance(raw, psycopg.Connection) and psycopg.Pipeline.is_supported() else None


def _write_pipelined(session, raw, draft: _Draft, postings: list[tuple[int, int]]) -> Transfer | None:
    session.flush()  # the caller's pending changes go first, as autoflush would do
    net = net_by_account(postings)
    ids = sorted(net)
    lock, insert = _pg_statements_for(len(ids))
    # The transfer's columns in _TRANSFER_COLUMNS order, which is _PG_INSERT's (a test checks).
    params = [json.dumps(value) if key == "metadata_" else value for key, value in draft.values().items()]
    for account_id, minutes in postings:
        params += (account_id, minutes)
    params.append(_link_rest(draft))
    # One cursor for the statements whose results are not read. They are never prepared: psycopg empties its
    # prepared-statement cache on every ROLLBACK (TO SAVEPOINT) and, inside a pipeline, a statement queued as
    # prepared before that could then name a deallocated one (the storm test found it).
    util = raw.cursor()
    try:
        try:
            with raw.pipeline():  # leaving the block sends the batch and waits for it once
                util.execute("SAVEPOINT ledger_write", prepare=False)
                locked = raw.execute(lock, ids)
                inserted = raw.execute(insert, params)
                _check_zero_sum_now(util)
                util.execute("RELEASE SAVEPOINT ledger_write", prepare=False)
            rows = [_LockedRow(*r) for r in locked.fetchall()]
        except psycopg.errors.IntegrityError:
            # The database refused (a floor, a ceiling, a closed, missing or foreign account). Again, the
            # careful way, for Python's clear refusal: lock, check (raises the LedgerError), insert.
            _rollback_savepoint(raw)
            with raw.pipeline():
                raw.execute("SAVEPOINT ledger_write", prepare=False)
                locked = raw.execute(lock, ids)
            rows = [_LockedRow(*r) for r in locked.fetchall()]  # a cursor's rows can be fetched once
            _check_locked(draft, net, rows)
            with raw.pipeline():
                inserted = raw.execute(insert, params)
                _check_zero_sum_now(util)
                util.execute("RELEASE SAVEPOINT ledger_write", prepare=False)
        inserted = inserted.fetchall()
    except BaseException as exc:
        _rollback_savepoint(raw)
        if isinstance(exc, psycopg.Error) and not _is_retryable(exc):
            raise DBAPIError.instance("ledger write", None, exc, psycopg.Error) from exc
        raise
    finally:
        util.close()
    if not inserted:
        return None  # a unique key (idempotency key, reversal link) exists; the savepoint is released
    draft.id = inserted[0][0]
    minutes = dict(postings)
    chain = [{"account_id": account_id, "minutes": minutes[account_id], "prev_hash": prev_hash, "hash": link}
             for _transfer_id, _id, account_id, prev_hash, link in inserted]
    return _attach(session, draft, chain, {row[2]: row[1] for row in inserted}, {row.id: row for row in rows}, net)


def _check_zero_sum_now(cursor) -> None:
    """Fire the deferred zero-sum trigger now, inside the savepoint, not at COMMIT. Python has checked the sum
    already; this keeps a database refusal where it can be answered (and gives the caller a transaction with
    no pending trigger events). Two cheap statements in the pipeline, no round trip."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE", prepare=False)
    cursor.execute("SET CONSTRAINTS ALL DEFERRED", prepare=False)


def _rollback_savepoint(raw) -> None:
    if raw.info.transaction_status in (psycopg.pq.TransactionStatus.INERROR, psycopg.pq.TransactionStatus.INTRANS):
        try:
            with raw.pipeline():
                raw.execute("ROLLBACK TO SAVEPOINT ledger_write", prepare=False)
                raw.execute("RELEASE SAVEPOINT ledger_write", prepare=False)
        except psycopg.Error:  # the savepoint was already released; nothing of ours is left to undo
            pass


_LockedRow = namedtuple("_LockedRow", "id timebank_id name status floor_minutes ceiling_minutes balance_minutes "
                                      "chain_head")


_SET_IMMEDIATE = text("SET CONSTRAINTS ALL IMMEDIATE")
_SET_DEFERRED = text("SET CONSTRAINTS ALL DEFERRED")


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
