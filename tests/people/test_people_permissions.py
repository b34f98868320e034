"""The one rule set, as a whole matrix: role x action, allowed and refused (403 or 404)."""
from __future__ import annotations

import pytest

from timebank.community.permissions import ACTIONS, authorize, can
from timebank.errors import Forbidden, NotFound

ROLES = ["member", "org_rep", "broker", "commissioner", "admin", "outsider"]

# action -> target -> roles allowed. Targets: "other" (another member's membership), "own" (the caller's own
# membership), "org" (the organisation), "tb" (the time bank). Outsiders (another time bank) get 404 on targets.
MATRIX = {
    ("profile.read_own", "own"): set(ROLES) - {"outsider"} | {"outsider"},
    ("profile.edit_own", "own"): set(ROLES),
    ("data.export_own", "own"): set(ROLES),
    ("profile.read_own", "other"): set(),
    ("profile.edit_own", "other"): set(),
    ("data.export_own", "other"): set(),
    ("profile.read_public", "other"): {"member", "org_rep", "broker", "admin"},
    ("people.read_private", "other"): {"broker", "admin"},
    ("people.manage", "other"): {"broker", "admin"},
    ("people.manage", "tb"): {"broker", "admin"},
    ("ledger.read_account", "own"): set(ROLES),
    ("ledger.read_account", "other"): {"broker", "admin"},
    ("ledger.read_account", "org"): {"org_rep", "broker", "admin"},
    ("ledger.post", "tb"): {"broker", "admin"},
    ("exchange.record_for_others", "tb"): {"broker", "admin"},
    ("organisation.act", "org"): {"org_rep", "broker", "admin"},
    ("organisation.manage", "org"): {"broker", "admin"},
    ("matching.broker", "tb"): {"broker", "admin"},
    ("categories.manage", "tb"): {"broker", "admin"},
    ("reports.read", "tb"): {"commissioner", "broker", "admin"},
    ("timebank.settings", "tb"): {"admin"},
    ("roles.manage", "other"): {"admin"},
    ("audit.read", "tb"): {"admin"},
    ("reports.close_period", "tb"): {"admin"},
    ("person.erase", "other"): {"admin"},
}


def test_matrix_names_every_action():
    assert {action for action, _ in MATRIX} == set(ACTIONS)


def _target(world, role, target):
    if target == "own":
        user = world.users[role]
        return {"membership": [m for m in user.memberships][0]}
    if target == "other":
        return {"membership": world.other_m}
    if target == "org":
        return {"organisation": world.organisation}
    return {"timebank_id": world.timebank.id}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action,target", list(MATRIX))
def test_permission_matrix(world, role, action, target):
    user = world.users[role]
    kwargs = _target(world, role, target)
    allowed = role in MATRIX[(action, target)]
    assert can(user, action, **kwargs) is allowed
    if not allowed:
        expected = NotFound if role == "outsider" and target != "own" else Forbidden
        with pytest.raises(expected):
            authorize(user, action, **kwargs)


def test_suspended_broker_loses_every_power(world, session):
    world.broker_m.status = "suspended"
    session.flush()
    assert not can(world.broker, "people.manage", timebank_id=world.timebank.id)
    assert not can(world.broker, "ledger.post", timebank_id=world.timebank.id)


def test_representative_of_an_inactive_organisation_cannot_act(world, session):
    world.organisation.status = "inactive"
    session.flush()
    assert not can(world.rep, "organisation.act", organisation=world.organisation)


def test_unknown_action_is_a_programming_error(world):
    with pytest.raises(ValueError):
        can(world.admin, "ledger.delete_everything", timebank_id=world.timebank.id)


def test_anonymous_is_refused(world):
    from flask_login import AnonymousUserMixin

    assert not can(AnonymousUserMixin(), "profile.read_public", membership=world.other_m)
