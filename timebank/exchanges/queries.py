"""Exchange nouns: a member's dashboard figures, lists, disputes, pot flows."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select

from timebank.community.models import Membership
from timebank.exchanges.models import Exchange
from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.service import system_account


def waiting_and_recent(session, membership: Membership, limit: int = 10) -> tuple[list[Exchange], list[Exchange]]:
    """(the pending exchanges this member is asked to confirm, by id; their `limit` latest exchanges) in one
    statement: pending and latest read together, the latest among them being the latest of all."""
    from timebank.exchanges import policy

    mine = or_(Exchange.provider_membership_id == membership.id, Exchange.recipient_membership_id == membership.id)
    latest = (select(Exchange.id).where(mine).order_by(Exchange.happened_on.desc(), Exchange.id.desc())
              .limit(limit).scalar_subquery())
    rows = list(session.scalars(select(Exchange).where(mine, or_(Exchange.status == "pending",
                                                                 Exchange.id.in_(latest)))))
    pending = sorted((e for e in rows if e.status == "pending"), key=lambda e: e.id)
    recent = sorted(rows, key=lambda e: (e.happened_on, e.id), reverse=True)[:limit]
    return [e for e in pending if policy.can_confirm(session, membership.user, e)], recent


def hours_this_year(session, membership: Membership, today: dt.date | None = None) -> tuple[int, int]:
    """(minutes given, minutes received) in confirmed exchanges this calendar year."""
    today = today or dt.date.today()
    start = dt.date(today.year, 1, 1)
    gave = Exchange.provider_membership_id == membership.id
    got = Exchange.recipient_membership_id == membership.id
    given, received = session.execute(
        select(func.coalesce(func.sum(Exchange.minutes).filter(gave), 0),
               func.coalesce(func.sum(Exchange.minutes).filter(got), 0))
        .where(Exchange.status == "confirmed", Exchange.happened_on >= start, or_(gave, got))).one()
    return int(given), int(received)


def disputes(session, timebank_id: int) -> list[Exchange]:
    return list(session.scalars(select(Exchange).where(Exchange.timebank_id == timebank_id,
                                                       Exchange.status == "disputed").order_by(Exchange.id)))


def pot_summary(session, timebank_id: int, limit: int = 20) -> dict:
    """The pot's balance and its recent flows (donations in, grants out)."""
    pot = system_account(session, timebank_id, "pot")
    flows = session.execute(select(Transfer.id, Transfer.kind, Transfer.effective_date, Transfer.memo,
                                   Posting.minutes)
                            .join(Posting, Posting.transfer_id == Transfer.id)
                            .where(Posting.account_id == pot.id)
                            .order_by(Transfer.id.desc()).limit(limit)).all()
    return {"balance_minutes": pot.balance_minutes, "account_id": pot.id,
            "flows": [dict(id=f.id, kind=f.kind, date=f.effective_date, memo=f.memo, minutes=f.minutes)
                      for f in flows]}


def account_of(session, membership: Membership) -> Account | None:
    return session.get(Account, membership.account_id) if membership.account_id else None


def exchanges_of_organisation(session, organisation_id: int, limit: int = 20) -> list[Exchange]:
    return list(session.scalars(select(Exchange).where(or_(
        Exchange.provider_organisation_id == organisation_id, Exchange.recipient_organisation_id == organisation_id),
        Exchange.activity_id.is_(None))
        .order_by(Exchange.happened_on.desc(), Exchange.id.desc()).limit(limit)))


def waiting_for_organisation(session, organisation_id: int, user) -> list[Exchange]:
    """Pending exchanges the other side logged, which this user may confirm for the organisation."""
    from timebank.exchanges import policy

    pending = session.scalars(select(Exchange).where(Exchange.status == "pending", or_(
        Exchange.provider_organisation_id == organisation_id, Exchange.recipient_organisation_id == organisation_id))
        .order_by(Exchange.id))
    return [e for e in pending if policy.can_confirm(session, user, e)]
