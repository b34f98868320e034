"""Pages for organisations: a member spending hours with one, organisation-to-organisation exchanges, charging a
member, and a broker recording for an organisation."""
import datetime as dt

import pytest
from sqlalchemy import select

from timebank.community.service import create_organisation
from timebank.exchanges.models import Exchange

TODAY = dt.date.today().isoformat()


@pytest.fixture
def school(session, timebank, make_person):
    school = create_organisation(session, timebank=timebank, name="Hill School")
    head_u, _ = make_person()
    school.representatives.append(head_u)
    session.flush()
    return school, head_u


def test_member_spends_hours_with_an_organisation(client, session, make_person, login, balance, organisation):
    member_u, member = make_person()
    login(member_u)
    page = client.get("/exchanges/spend").get_data(as_text=True)
    assert organisation.name in page
    assert "/exchanges/spend" in client.get("/exchanges/").get_data(as_text=True)
    r = client.post("/exchanges/spend", data={"organisation_id": organisation.id, "hours": "2", "minutes": "0",
                                              "date": TODAY, "description": "Pottery course"},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Paid: 2 hours to Riverside Centre." in page and "Confirmed" in page
    assert (balance(member), balance(organisation)) == (-120, 120)
    exchange = session.scalar(select(Exchange))
    assert (exchange.kind, exchange.provider_organisation_id, exchange.recipient_membership_id) == (
        "p2a", organisation.id, member.id)


def test_spending_below_the_limit_is_refused_in_words(client, session, make_person, login, balance, organisation):
    member_u, member = make_person()
    login(member_u)
    r = client.post("/exchanges/spend", data={"organisation_id": organisation.id, "hours": "11", "minutes": "0",
                                              "date": TODAY})
    assert r.status_code == 422
    assert "below your limit of -10 hours" in r.get_data(as_text=True)
    r = client.post("/exchanges/spend", data={"organisation_id": "", "hours": "1", "date": TODAY})
    assert r.status_code == 422 and "Choose the organisation" in r.get_data(as_text=True)
    assert session.scalar(select(Exchange)) is None and balance(member) == 0


def test_organisation_charges_a_member_who_confirms(client, session, make_person, login, balance, organisation,
                                                    rep):
    rep_u, _ = rep
    member_u, member = make_person()
    login(rep_u)
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "charge", "member_id": member.id, "hours": "1", "minutes": "30", "date": TODAY,
                          "description": "Room hire"}, follow_redirects=True)
    assert "We have asked the other side to confirm it." in r.get_data(as_text=True)
    assert balance(member) == 0
    client.post("/logout")
    login(member_u)
    dash = client.get("/exchanges/").get_data(as_text=True)
    assert "Room hire" in dash and "Waiting for me" in dash
    exchange = session.scalar(select(Exchange))
    client.post(f"/exchanges/{exchange.id}/confirm")
    assert (balance(member), balance(organisation)) == (-90, 90)


def test_organisation_to_organisation_on_pages(client, session, login, balance, organisation, rep, school):
    rep_u, _ = rep
    school, head_u = school
    login(rep_u)
    desk = client.get(f"/exchanges/organisations/{organisation.id}").get_data(as_text=True)
    assert "Exchange with another organisation" in desk and "Hill School" in desk
    # We lent our minibus: waits for the school.
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "partner", "direction": "gave", "partner_id": school.id, "hours": "4",
                          "minutes": "0", "date": TODAY, "description": "Minibus"}, follow_redirects=True)
    assert "asked the other side to confirm" in r.get_data(as_text=True)
    assert (balance(organisation), balance(school)) == (0, 0)
    # The school helped us with a bid and we pay: counts at once.
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "partner", "direction": "received", "partner_id": school.id, "hours": "1",
                          "minutes": "0", "date": TODAY, "description": "Bid writing"}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Recorded: Hill School helped Riverside Centre for 1 hour" in page
    assert (balance(organisation), balance(school)) == (-60, 60)
    client.post("/logout")

    login(head_u)
    desk = client.get(f"/exchanges/organisations/{school.id}").get_data(as_text=True)
    assert "Waiting for Hill School" in desk and "Minibus" in desk
    minibus = session.scalar(select(Exchange).where(Exchange.description == "Minibus"))
    assert client.get(f"/exchanges/organisations/{organisation.id}").status_code == 403
    r = client.post(f"/exchanges/{minibus.id}/confirm", follow_redirects=True)
    assert "Confirmed. The hours have moved." in r.get_data(as_text=True)
    assert (balance(organisation), balance(school)) == (180, -180)
    assert "Nothing is waiting for Hill School" in client.get(
        f"/exchanges/organisations/{school.id}").get_data(as_text=True)


def test_member_cannot_act_for_an_organisation(client, session, make_person, login, balance, organisation, school):
    school, _ = school
    member_u, member = make_person()
    login(member_u)
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "partner", "direction": "received", "partner_id": school.id, "hours": "1",
                          "minutes": "0", "date": TODAY})
    assert r.status_code == 403
    assert (balance(organisation), balance(school)) == (0, 0)


def test_broker_records_for_organisations(client, session, make_person, login, balance, organisation, school):
    school, _ = school
    broker_u, _ = make_person("broker")
    _, member = make_person()
    login(broker_u)
    desk = client.get("/exchanges/broker").get_data(as_text=True)
    assert f'value="org-{organisation.id}"' in desk
    assert f"/exchanges/organisations/{organisation.id}" in desk
    r = client.post("/exchanges/broker", data={"task": "record", "provider_id": f"org-{school.id}",
                                               "recipient_id": f"org-{organisation.id}", "hours": "2",
                                               "minutes": "0", "date": TODAY, "coproduction_type": "co_design",
                                               "outcome_area": "education", "substitutive": "yes"},
                    follow_redirects=True)
    assert "Recorded: Hill School helped Riverside Centre for 2 hours" in r.get_data(as_text=True)
    exchange = session.scalar(select(Exchange))
    assert (exchange.kind, exchange.coproduction_type, exchange.outcome_area, exchange.substitutive) == (
        "a2a", "co_design", "education", True)
    # On an organisation's page a broker records at once, for either kind.
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "partner", "direction": "gave", "partner_id": school.id, "hours": "1",
                          "minutes": "0", "date": TODAY}, follow_redirects=True)
    assert "Recorded:" in r.get_data(as_text=True)
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "charge", "member_id": member.id, "hours": "1", "minutes": "0", "date": TODAY},
                    follow_redirects=True)
    assert "Recorded:" in r.get_data(as_text=True)
    # -2 h paid to the school, +1 h from the school, +1 h from the member
    assert (balance(organisation), balance(school), balance(member)) == (0, 60, -60)


def test_group_activity_form_takes_finer_tags_and_people_reached(client, session, make_person, login, organisation,
                                                                 rep):
    from timebank.exchanges.models import GroupActivity

    rep_u, _ = rep
    a_u, _ = make_person()
    login(rep_u)
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "activity", "step": "record", "title": "Tenant inspection", "date": TODAY,
                          "csv": f"{a_u.email},2", "coproduction_type": "co_assessment",
                          "coproduction_subtype": "co_monitoring", "outcome_area": "housing", "substitutive": "yes",
                          "people_reached": "40"}, follow_redirects=True)
    assert "Recorded the group activity" in r.get_data(as_text=True)
    activity = session.scalar(select(GroupActivity))
    assert (activity.coproduction_subtype, activity.outcome_area, activity.substitutive, activity.people_reached) == (
        "co_monitoring", "housing", True, 40)
