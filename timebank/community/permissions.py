"""The one authorisation rule set: role x action, checked in one place.

Every capability asks here: `authorize(user, action, timebank_id=..., membership=..., organisation=...)`
raises Forbidden (403) or NotFound (404, when the caller has no place in the target's time bank, so that
existence does not leak); `can(...)` answers True/False. Roles count only on active memberships.
Action names are documented in docs/PEOPLE.md.
"""
from __future__ import annotations

from timebank.community.models import Membership, Organisation
from timebank.errors import Forbidden, NotFound

# Who may do what in a time bank, by role. "self" rules (own account, own data) and organisation
# representatives are handled in _allowed below.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "member": frozenset({"profile.read_public"}),
    "commissioner": frozenset({"reports.read"}),
    "broker": frozenset({
        "profile.read_public", "people.read_private", "people.manage", "organisation.manage", "organisation.act",
        "categories.manage",
        "ledger.read_account", "ledger.post", "exchange.record_for_others", "matching.broker", "reports.read",
    }),
}
# An admin manages settings and roles and may do everything a broker may.
ROLE_ACTIONS["admin"] = ROLE_ACTIONS["broker"] | frozenset({
    "timebank.settings", "roles.manage", "audit.read", "person.erase", "reports.close_period"})

# Actions on one's own things: allowed to any active membership when the target is the caller's own.
SELF_ACTIONS = frozenset({"profile.read_own", "profile.edit_own", "data.export_own", "ledger.read_account"})

ACTIONS = frozenset(SELF_ACTIONS | {"organisation.act"} | {a for acts in ROLE_ACTIONS.values() for a in acts})


def active_memberships(user) -> list[Membership]:
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    return [m for m in user.memberships if m.status == "active"]


def role_in(user, timebank_id: int) -> str | None:
    """The caller's role in a time bank, or None when they have no active membership there."""
    for m in active_memberships(user):
        if m.timebank_id == timebank_id:
            return m.role
    return None


def timebanks_where(user, action: str) -> list[int]:
    """Ids of the time banks where the user's role allows `action` (e.g. a commissioner's granted banks)."""
    return [m.timebank_id for m in active_memberships(user) if action in ROLE_ACTIONS.get(m.role, ())]


def _target_timebank(timebank_id, membership, organisation) -> int | None:
    if membership is not None:
        return membership.timebank_id
    if organisation is not None:
        return organisation.timebank_id
    return timebank_id


def _allowed(user, action: str, timebank_id, membership: Membership | None,
             organisation: Organisation | None) -> bool:
    role = role_in(user, timebank_id)
    if role is None:
        return False
    own = membership is not None and membership.user_id == user.id
    if action in SELF_ACTIONS and own:
        return True
    if action == "organisation.act" and organisation is not None and organisation.status == "active" and \
            any(rep.id == user.id for rep in organisation.representatives):
        return True
    if action == "ledger.read_account" and organisation is not None and role != "commissioner" and \
            any(rep.id == user.id for rep in organisation.representatives):
        return True
    if action in ("profile.read_own", "profile.edit_own", "data.export_own"):
        return own
    return action in ROLE_ACTIONS.get(role, ())


def authorize(user, action: str, *, timebank_id: int | None = None, membership: Membership | None = None,
              organisation: Organisation | None = None) -> None:
    """Raise unless `user` may do `action` on the target (a membership, an organisation or a time bank)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    target_tb = _target_timebank(timebank_id, membership, organisation)
    if target_tb is None:
        # No target: allowed when the role allows it in at least one time bank.
        if any(_allowed(user, action, m.timebank_id, None, None) for m in active_memberships(user)):
            return
        raise Forbidden("Your account does not have permission to do that.")
    if role_in(user, target_tb) is None:
        # Someone from elsewhere must not learn that the thing exists.
        raise NotFound("We could not find that.")
    if not _allowed(user, action, target_tb, membership, organisation):
        raise Forbidden("Your account does not have permission to do that.")


def can(user, action: str, **target) -> bool:
    try:
        authorize(user, action, **target)
    except (Forbidden, NotFound):
        return False
    return True
