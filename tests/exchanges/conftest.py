import datetime as dt

import pytest

from timebank.community.service import create_organisation
from timebank.ledger.models import Account


@pytest.fixture
def today():
    return dt.date.today()


@pytest.fixture
def balance(session):
    def of(thing):
        return session.get(Account, thing.account_id).balance_minutes
    return of


@pytest.fixture
def organisation(session, timebank):
    return create_organisation(session, timebank=timebank, name="Riverside Centre")


@pytest.fixture
def rep(session, make_person, organisation):
    user, membership = make_person("member")
    organisation.representatives.append(user)
    session.flush()
    return user, membership


@pytest.fixture
def api_headers(api_headers, session):
    """The shared fixture, plus a commit of the setup so far: a refused request rolls back only itself."""
    def headers(user, **extra):
        result = api_headers(user, **extra)
        session.commit()
        return result
    return headers
