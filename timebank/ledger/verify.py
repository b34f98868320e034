"""Check the whole ledger from its postings: balances, zero sums, limits, reversals and the hash chain."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.service import GENESIS_HASH, posting_hash


@dataclass
class VerifyReport:
    accounts: int = 0
    transfers: int = 0
    postings: int = 0
    problems: list[str] = field(default_factory=list)
    total_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "OK" if self.ok else f"{self.total_problems} problem(s)"
        return f"ledger verify: {self.accounts} accounts, {self.transfers} transfers, {self.postings} postings: {state}"


def verify_ledger(session, timebank_id: int | None = None, limit: int = 50) -> VerifyReport:
    """Recompute everything from the postings. Problems are listed in a stable order (first broken first)."""
    report = VerifyReport()
    problems = report.problems
    acc_q = select(Account).order_by(Account.id).execution_options(populate_existing=True)
    tr_q = select(Transfer).order_by(Transfer.id).execution_options(populate_existing=True)
    if timebank_id is not None:
        acc_q = acc_q.where(Account.timebank_id == timebank_id)
        tr_q = tr_q.where(Transfer.timebank_id == timebank_id)
    accounts = {a.id: a for a in session.scalars(acc_q)}
    transfers = {t.id: t for t in session.scalars(tr_q)}
    report.accounts, report.transfers = len(accounts), len(transfers)

    sums: dict[int, int] = {}
    counts: Counter = Counter()
    legs: dict[int, Counter] = {}
    balances = {a: 0 for a in accounts}
    heads = {a: GENESIS_HASH for a in accounts}
    broken_chain: set[int] = set()
    total = 0
    rows = session.execute(select(Posting.id, Posting.transfer_id, Posting.account_id, Posting.minutes,
                                  Posting.prev_hash, Posting.hash).order_by(Posting.account_id, Posting.id))
    for pid, tid, aid, minutes, prev_hash, link in rows:
        transfer = transfers.get(tid)
        if transfer is None and timebank_id is not None and aid not in accounts:
            continue
        report.postings += 1
        total += minutes
        sums[tid] = sums.get(tid, 0) + minutes
        counts[tid] += 1
        legs.setdefault(tid, Counter())[(aid, minutes)] += 1
        if aid not in accounts:
            problems.append(f"posting {pid}: account {aid} is not in this time bank")
            continue
        account = accounts[aid]
        balances[aid] += minutes
        if minutes == 0:
            problems.append(f"posting {pid}: zero minutes")
        if transfer is None:
            problems.append(f"posting {pid}: transfer {tid} is missing")
            continue
        if transfer.timebank_id != account.timebank_id:
            problems.append(f"posting {pid}: account {aid} and transfer {tid} are in different time banks")
        if aid in broken_chain:
            continue
        expected = posting_hash(heads[aid], transfer=transfer, account_id=aid, minutes=minutes)
        if prev_hash != heads[aid] or link != expected:
            broken_chain.add(aid)
            problems.append(f"hash chain of account {aid} ({account.name}) broken at posting {pid} "
                            f"(transfer {tid}): its content or order was changed outside the service")
            continue
        heads[aid] = link

    for aid, account in accounts.items():
        if account.balance_minutes != balances[aid]:
            problems.append(f"account {aid} ({account.name}): stored balance {account.balance_minutes} "
                            f"but postings sum to {balances[aid]}")
        if aid not in broken_chain and (account.chain_head or GENESIS_HASH) != heads[aid]:
            problems.append(f"account {aid} ({account.name}): chain head does not match its last posting")
        if account.status == "open" and account.floor_minutes is not None and balances[aid] < account.floor_minutes:
            problems.append(f"account {aid} ({account.name}): balance {balances[aid]} below floor "
                            f"{account.floor_minutes}")
        if account.status == "open" and account.ceiling_minutes is not None \
                and balances[aid] > account.ceiling_minutes:
            problems.append(f"account {aid} ({account.name}): balance {balances[aid]} above ceiling "
                            f"{account.ceiling_minutes}")
    for tid, transfer in transfers.items():
        if counts[tid] < 2:
            problems.append(f"transfer {tid}: {counts[tid]} posting(s); needs at least two")
        if sums.get(tid, 0) != 0:
            problems.append(f"transfer {tid}: postings sum to {sums[tid]}, not zero")
        if transfer.reverses_transfer_id is not None:
            original = transfers.get(transfer.reverses_transfer_id) or session.get(Transfer,
                                                                                    transfer.reverses_transfer_id)
            if original is None:
                problems.append(f"transfer {tid}: reverses missing transfer {transfer.reverses_transfer_id}")
            else:
                mirrored = Counter({(a, -m): n for (a, m), n in legs.get(original.id, Counter()).items()})
                if legs.get(tid, Counter()) != mirrored:
                    problems.append(f"transfer {tid}: does not mirror transfer {original.id}, which it reverses")
    if total != 0:
        problems.append(f"all postings together sum to {total}, not zero")
    report.total_problems = len(problems)
    del problems[limit:]
    return report


def chain_heads(session, timebank_id: int | None = None) -> dict[int, str]:
    q = select(Account.id, Account.chain_head).order_by(Account.id)
    if timebank_id is not None:
        q = q.where(Account.timebank_id == timebank_id)
    return {aid: head or GENESIS_HASH for aid, head in session.execute(q)}
