"""A small community with one person per role, plus someone from another time bank."""
from __future__ import annotations

import types

import pytest


@pytest.fixture
def world(session, timebank, make_person):
    from timebank.community.service import create_organisation, create_timebank

    w = types.SimpleNamespace(timebank=timebank)
    w.member, w.member_m = make_person("member")
    w.other, w.other_m = make_person("member")  # the target of most checks
    w.rep, w.rep_m = make_person("member")
    w.broker, w.broker_m = make_person("broker")
    w.commissioner, w.commissioner_m = make_person("commissioner")
    w.admin, w.admin_m = make_person("admin")
    w.elsewhere_tb = create_timebank(session, slug="elsewhere", name="Elsewhere Time Bank")
    w.outsider, w.outsider_m = make_person("broker", tb=w.elsewhere_tb)
    w.organisation = create_organisation(session, timebank=timebank, name="Community Centre", kind="community_group")
    w.organisation.representatives.append(w.rep)
    # Committed (to the test's savepoint) so a refused request's rollback does not undo the set-up.
    session.commit()
    w.users = {"member": w.member, "org_rep": w.rep, "broker": w.broker, "commissioner": w.commissioner,
               "admin": w.admin, "outsider": w.outsider}
    return w


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """argon2 at production cost takes most of a test's time on a shared 2-core machine; the tests are
    about who may do what, not about hash strength, so they use the same algorithm at minimum cost."""
    from argon2 import PasswordHasher

    from timebank.community import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
