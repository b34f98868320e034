import datetime as dt

import pytest
from sqlalchemy import select

from timebank.community.models import Category, MemberSkill
from timebank.matching import service

# Central Leeds-ish; 0.01 degrees of latitude is about 1.1 km.
LAT, LON = 53.80, -1.55
TUESDAY_MORNING = 1 << (1 * 3 + 0)
SATURDAY_AFTERNOON = 1 << (5 * 3 + 1)


@pytest.fixture
def category(session, timebank):
    def find(name, tb=None):
        return session.scalar(select(Category).where(Category.timebank_id == (tb or timebank).id,
                                                     Category.name == name))
    return find


@pytest.fixture
def volunteer(session, make_person, category):
    """volunteer(skills=["Gardening"], **profile) -> (user, membership), active with a location and availability."""

    def make(skills=("Gardening",), role="member", tb=None, **profile):
        profile.setdefault("latitude", LAT + 0.01)
        profile.setdefault("longitude", LON)
        profile.setdefault("availability", TUESDAY_MORNING)
        user, membership = make_person(role, tb=tb, **profile)
        for name in skills:
            session.add(MemberSkill(membership_id=membership.id, category_id=category(name, tb).id))
        session.flush()
        return user, membership

    return make


@pytest.fixture
def requester(volunteer):
    def make(**profile):
        profile.setdefault("latitude", LAT)
        profile.setdefault("longitude", LON)
        return volunteer(skills=(), **profile)
    return make


def in_days(n):
    return dt.date.today() + dt.timedelta(days=n)


@pytest.fixture
def accepted_match(session, timebank, volunteer, requester, category, make_person):
    """A broker proposed a gardener for a 90-minute request and the gardener accepted."""
    broker, _ = make_person("broker")
    asker_user, asker = requester()
    helper_user, helper = volunteer(skills=["Gardening"])
    req = service.create_request(session, user=asker_user, timebank=timebank, membership=asker,
                                 title="Dig a vegetable bed", category_id=category("Gardening").id,
                                 estimated_minutes=90)
    match = service.propose(session, req, helper.id, by_user_id=broker.id)
    service.respond(session, match, accept=True, by_membership=helper)
    return {"match": match, "broker": broker, "asker": (asker_user, asker), "helper": (helper_user, helper),
            "request": req}
