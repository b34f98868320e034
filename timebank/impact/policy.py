"""Who may see and close impact reports: the questions impact asks of the one rule set.

The rules live in timebank/community/permissions.py (role x action, tested as a matrix there and here):
commissioners, brokers and admins hold `reports.read` in their time bank (a commissioner only in the time
banks where they hold an active commissioner membership); only admins hold `reports.close_period`.
Members never see reports.
"""
from __future__ import annotations

from timebank.community.permissions import can, timebanks_where


def can_view_reports(session, user, timebank_id: int) -> bool:
    return can(user, "reports.read", timebank_id=timebank_id)


def can_close_period(session, user, timebank_id: int) -> bool:
    return can(user, "reports.close_period", timebank_id=timebank_id)


def granted_timebank_ids(session, user) -> list[int]:
    """Every time bank whose reports this user may see."""
    return sorted(set(timebanks_where(user, "reports.read")))
