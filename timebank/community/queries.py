"""Nouns about people: queues, the directory, organisations."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select

from timebank.community.models import AuditEvent, Membership, Organisation, User
from timebank.errors import NotFound


def pending_applications(session, timebank_id: int) -> list[Membership]:
    return list(session.scalars(select(Membership).join(User, Membership.user_id == User.id)
                                .where(Membership.timebank_id == timebank_id, Membership.status == "pending",
                                       User.erased_at.is_(None))
                                .order_by(Membership.created_at, Membership.id)))


def expiring_safety_checks(session, timebank_id: int, *, today: dt.date | None = None, days: int = 30):
    """Active members whose safety check expires within `days` (or has expired), soonest first."""
    today = today or dt.date.today()
    return list(session.scalars(select(Membership).where(
        Membership.timebank_id == timebank_id, Membership.status == "active",
        Membership.safety_check_expires.is_not(None),
        Membership.safety_check_expires <= today + dt.timedelta(days=days)).order_by(Membership.safety_check_expires)))


def directory(session, timebank_id: int, *, search: str | None = None, status: str | None = None,
              limit: int = 200, offset: int = 0) -> list[Membership]:
    query = (select(Membership).join(User, Membership.user_id == User.id)
             .where(Membership.timebank_id == timebank_id, User.erased_at.is_(None)))
    if status:
        query = query.where(Membership.status == status)
    if search:
        like = f"%{search.strip().lower()}%"
        query = query.where(or_(func.lower(User.display_name).like(like), User.email.like(like),
                                func.lower(func.coalesce(Membership.ward, "")).like(like)))
    return list(session.scalars(query.order_by(func.lower(User.display_name), Membership.id)
                                .limit(limit).offset(offset)))


def membership_by_id(session, membership_id: int) -> Membership:
    membership = session.get(Membership, membership_id)
    if membership is None:
        raise NotFound("There is no such member.", code="member_not_found")
    return membership


def organisation_by_id(session, organisation_id: int) -> Organisation:
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound("There is no such organisation.", code="organisation_not_found")
    return organisation


def organisations_in(session, timebank_ids: list[int]) -> list[Organisation]:
    if not timebank_ids:
        return []
    return list(session.scalars(select(Organisation).where(Organisation.timebank_id.in_(timebank_ids))
                                .order_by(Organisation.name)))


def audit_events(session, timebank_id: int, *, limit: int = 200) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.timebank_id == timebank_id)
                                .order_by(AuditEvent.id.desc()).limit(limit)))


def availability_slots(bits: int) -> list[bool]:
    return [bool(bits >> i & 1) for i in range(21)]
