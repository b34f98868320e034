"""The ledger as a plain-text journal for hledger, ledger-cli or beancount.

Unit: the commodity MIN, one minute, always an integer, so every balance is
exact (hours with decimals are not: 20 minutes is 0.333... hours). 60 MIN = 1 hour.
Account names: <Root>:TB<timebank id>:<Kind>:A<account id>, with roots that
beancount accepts (Assets for members and organisations, Equity for the pot and
system accounts). Every account gets a closing balance assertion, and the
header carries each account's hash-chain head and a digest of all of them.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re

from sqlalchemy import select

from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.service import GENESIS_HASH

FORMATS = ("hledger", "ledger", "beancount")
COMMODITY = "MIN"
ROOTS = {"member": ("Assets", "Member"), "organisation": ("Assets", "Organisation"), "pot": ("Equity", "Pot"),
         "system": ("Equity", "System")}


def account_path(account: Account) -> str:
    root, kind = ROOTS[account.kind]
    return f"{root}:TB{account.timebank_id}:{kind}:A{account.id}"


def _text(value: str) -> str:
    """One line of free text, with no characters the journal formats treat specially."""
    return re.sub(r"[\r\n\t;|\"\\]", " ", value or "").strip()


def export_journal(session, fmt: str, timebank_id: int | None = None) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    acc_q = select(Account).order_by(Account.id).execution_options(populate_existing=True)
    tr_q = select(Transfer).order_by(Transfer.effective_date, Transfer.id)
    if timebank_id is not None:
        acc_q = acc_q.where(Account.timebank_id == timebank_id)
        tr_q = tr_q.where(Transfer.timebank_id == timebank_id)
    accounts = {a.id: a for a in session.scalars(acc_q)}
    transfers = list(session.scalars(tr_q))
    postings: dict[int, list[tuple[int, int]]] = {}
    p_q = select(Posting.transfer_id, Posting.account_id, Posting.minutes).order_by(Posting.id)
    if timebank_id is not None:
        p_q = p_q.join(Transfer, Posting.transfer_id == Transfer.id).where(Transfer.timebank_id == timebank_id)
    for tid, aid, minutes in session.execute(p_q):
        postings.setdefault(tid, []).append((aid, minutes))
    heads = {aid: a.chain_head or GENESIS_HASH for aid, a in accounts.items()}
    digest = hashlib.sha256("".join(f"{aid}:{h}\n" for aid, h in sorted(heads.items())).encode()).hexdigest()
    last = max([t.effective_date for t in transfers], default=dt.date.today())

    out: list[str] = []
    c = ";"
    out.append(f"{c} Time bank ledger export ({fmt}). Unit: {COMMODITY} = 1 minute (exact integers; 60 {COMMODITY} = 1 hour).")
    out.append(f"{c} chain-digest: {digest}")
    for aid, a in accounts.items():
        out.append(f"{c} chain-head {account_path(a)}: {heads[aid]}")
    out.append("")
    if fmt == "beancount":
        out.append(f'option "title" "Time bank ledger"')
        out.append(f'1970-01-01 commodity {COMMODITY}')
        for a in accounts.values():
            out.append(f'1970-01-01 open {account_path(a)} {COMMODITY}')
            out.append(f'  name: "{_text(a.name)}"')
    else:
        out.append(f"commodity {COMMODITY}")
        for a in accounts.values():
            out.append(f"account {account_path(a)}  ; {_text(a.name)}" if fmt == "hledger"
                       else f"account {account_path(a)}\n    note {_text(a.name)}")
    out.append("")
    for t in transfers:
        memo = _text(t.memo) or t.kind
        if fmt == "beancount":
            out.append(f'{t.effective_date.isoformat()} * "{memo}"')
            out.append(f'  transfer: "{t.id}"')
            out.append(f'  kind: "{t.kind}"')
        else:
            out.append(f"{t.effective_date.isoformat()} * {memo}  ; transfer:{t.id}, kind:{t.kind}")
        for aid, minutes in postings.get(t.id, []):
            path = account_path(accounts[aid]) if aid in accounts else f"Equity:Unknown:A{aid}"
            out.append(f"    {path}    {minutes} {COMMODITY}")
        out.append("")
    if fmt == "beancount":
        # beancount checks a balance at the start of its date: the day after the last transfer.
        when = (last + dt.timedelta(days=1)).isoformat()
        for a in accounts.values():
            out.append(f"{when} balance {account_path(a)}  {a.balance_minutes} {COMMODITY}")
    else:
        out.append(f"{last.isoformat()} * Closing balance assertions")
        for a in accounts.values():
            out.append(f"    {account_path(a)}    0 {COMMODITY} = {a.balance_minutes} {COMMODITY}")
    out.append("")
    return "\n".join(out)
