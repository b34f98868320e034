"""Nouns about people: queues, the directory, organisations."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, inspect, or_, select

from timebank.community.models import AuditEvent, Category, Membership, Organisation, User
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


def active_membership_of(session, user, timebank_id: int) -> Membership | None:
    """The user's active membership in this time bank, or None (at most one: unique per user and time bank).
    Read from the user's memberships when they are already loaded (an API caller's come with the token
    lookup), else from the database."""
    if user is None:
        return None
    if "memberships" not in inspect(user).unloaded:
        return next((m for m in user.memberships if m.timebank_id == timebank_id and m.status == "active"), None)
    return session.scalar(select(Membership).where(Membership.user_id == user.id,
                                                   Membership.timebank_id == timebank_id,
                                                   Membership.status == "active"))


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


def categories(session, timebank_id: int, *, include_retired: bool = False) -> list[Category]:
    """The time bank's category list, parents first then by name; retired ones only when asked."""
    query = select(Category).where(Category.timebank_id == timebank_id)
    if not include_retired:
        query = query.where(Category.retired_at.is_(None))
    return list(session.scalars(query.order_by(Category.parent_id.is_not(None), Category.name)))


def category_tree(session, timebank_id: int, *, include_retired: bool = True) -> list[tuple[Category, list[Category]]]:
    """[(top-level category, [its sub-categories])], each sorted by name."""
    rows = categories(session, timebank_id, include_retired=include_retired)
    children: dict[int, list[Category]] = {}
    for c in rows:
        if c.parent_id is not None:
            children.setdefault(c.parent_id, []).append(c)
    return [(c, sorted(children.get(c.id, []), key=lambda x: x.name.lower()))
            for c in sorted((c for c in rows if c.parent_id is None), key=lambda x: x.name.lower())]


ERASED = "erased member"


def _person_name(user: User | None) -> str:
    if user is None:
        return "unknown person"
    return ERASED if user.erased_at is not None else user.display_name


def audit_log(session, timebank_id: int, *, limit: int = 200) -> list[dict]:
    """The audit events with names: who did it and what it was about ("erased member" for an erased person).
    Names are looked up in one query per kind, not per row."""
    events = audit_events(session, timebank_id, limit=limit)
    ids: dict[str, set[int]] = {}
    for e in events:
        if e.actor_user_id is not None:
            ids.setdefault("user", set()).add(e.actor_user_id)
        if e.target_type and e.target_id is not None:
            ids.setdefault(e.target_type, set()).add(e.target_id)
    memberships = {m.id: m for m in session.scalars(select(Membership).where(
        Membership.id.in_(ids.get("membership") or [-1])))}
    user_ids = ids.get("user", set()) | {m.user_id for m in memberships.values()}
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids or [-1])))}
    organisations = dict(session.execute(select(Organisation.id, Organisation.name).where(
        Organisation.id.in_(ids.get("organisation") or [-1]))).all())
    category_names = dict(session.execute(select(Category.id, Category.name).where(
        Category.id.in_(ids.get("category") or [-1]))).all())

    def subject(e: AuditEvent) -> str:
        if not e.target_type or e.target_id is None:
            return ""
        if e.target_type == "membership":
            m = memberships.get(e.target_id)
            return _person_name(users.get(m.user_id)) if m else "unknown person"
        if e.target_type == "user":
            return _person_name(users.get(e.target_id))
        if e.target_type == "organisation":
            return organisations.get(e.target_id, "unknown organisation")
        if e.target_type == "category":
            return f"category {category_names.get(e.target_id, e.target_id)}"
        if e.target_type == "timebank":
            return "this time bank's settings"
        return f"{e.target_type.replace('_', ' ')} {e.target_id}"

    return [{"at": e.at, "action": e.action, "actor": _person_name(users.get(e.actor_user_id))
             if e.actor_user_id is not None else "system", "subject": subject(e)} for e in events]
