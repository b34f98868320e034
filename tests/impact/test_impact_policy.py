"""Who may see and close reports: a matrix of role x action."""
import pytest

from timebank.community.service import add_membership, create_timebank
from timebank.impact.policy import can_close_period, can_view_reports, granted_timebank_ids


@pytest.mark.parametrize("role,status,view,close", [
    ("member", "active", False, False),
    ("broker", "active", True, False),
    ("admin", "active", True, True),
    ("commissioner", "active", True, False),
    ("commissioner", "suspended", False, False),
    ("commissioner", "left", False, False),
])
def test_role_matrix(session, timebank, make_person, role, status, view, close):
    user, _m = make_person(role, status=status)
    assert can_view_reports(session, user, timebank.id) is view
    assert can_close_period(session, user, timebank.id) is close


def test_commissioner_sees_only_granted_banks(session, timebank, make_person):
    other = create_timebank(session, slug="elsewhere", name="Elsewhere")
    third = create_timebank(session, slug="third", name="Third")
    user, _m = make_person("commissioner")
    add_membership(session, user=user, timebank=third, role="commissioner")
    assert granted_timebank_ids(session, user) == sorted([timebank.id, third.id])
    assert not can_view_reports(session, user, other.id)
    assert not can_view_reports(session, None, timebank.id)
