"""Who may see and close impact reports. One place, tested as a matrix of role x action.

Commissioners see the time banks where they hold an active commissioner membership;
brokers and admins see their own time bank; only admins close periods. Members never see reports.
"""
from __future__ import annotations

from sqlalchemy import select

from timebank.community.models import Membership

REPORT_ROLES = ("commissioner", "broker", "admin")


def _active_roles(session, user, timebank_id: int) -> set[str]:
    if user is None or not getattr(user, "id", None):
        return set()
    return set(session.scalars(select(Membership.role).where(
        Membership.user_id == user.id, Membership.timebank_id == timebank_id, Membership.status == "active")))


def can_view_reports(session, user, timebank_id: int) -> bool:
    return bool(_active_roles(session, user, timebank_id) & set(REPORT_ROLES))


def can_close_period(session, user, timebank_id: int) -> bool:
    return "admin" in _active_roles(session, user, timebank_id)


def granted_timebank_ids(session, user) -> list[int]:
    """Every time bank whose reports this user may see."""
    if user is None or not getattr(user, "id", None):
        return []
    return sorted(set(session.scalars(select(Membership.timebank_id).where(
        Membership.user_id == user.id, Membership.status == "active", Membership.role.in_(REPORT_ROLES)))))
