"""Brokers re-tag existing exchanges: reports follow, the ledger does not move, every change is audited."""
import datetime as dt

import pytest
from sqlalchemy import func, select

from timebank.community.models import AuditEvent, Category
from timebank.errors import DomainError
from timebank.exchanges import service
from timebank.impact.queries import breakdown
from timebank.ledger.models import Posting, Transfer


def ledger_state(session):
    return (session.scalar(select(func.count()).select_from(Transfer)),
            sorted(session.execute(select(Posting.account_id, Posting.minutes)).all()))


@pytest.fixture
def confirmed(session, make_person):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    broker_u, _ = make_person("broker")
    exchange = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=90,
                                    happened_on=dt.date.today(), description="Gardening")
    service.confirm_exchange(session, exchange.id, user=bob_u)
    return exchange, broker_u, alice_u, bob_u


def test_broker_retags_reports_follow_and_ledger_stays(session, confirmed, timebank, balance):
    exchange, broker_u, *_ = confirmed
    today = dt.date.today()
    assert {r["label"]: r["minutes"] for r in breakdown(session, [timebank.id], today, today, "outcome_area")} == {
        "other": 90}
    before = ledger_state(session)
    tutoring = session.scalar(select(Category).where(Category.timebank_id == timebank.id,
                                                     Category.name == "Tutoring"))
    diff = service.retag_exchange(session, exchange.id, user=broker_u, reason="It was homework help", changes={
        "category_id": tutoring.id, "outcome_area": "education", "coproduction_type": "co_assessment",
        "coproduction_subtype": "co_evaluation", "substitutive": True, "collective": True})
    assert diff == {"category_id": [None, tutoring.id], "outcome_area": ["other", "education"],
                    "coproduction_type": ["co_delivery", "co_assessment"],
                    "coproduction_subtype": [None, "co_evaluation"], "substitutive": [False, True],
                    "collective": [False, True]}
    assert ledger_state(session) == before
    assert exchange.status == "confirmed"
    by_area = {r["label"]: r["minutes"] for r in breakdown(session, [timebank.id], today, today, "outcome_area")}
    assert by_area == {"education": 90}
    by_kind = {r["label"]: r["minutes"] for r in breakdown(session, [timebank.id], today, today, "collective")}
    assert by_kind == {"collective": 90}

    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "exchange.retagged"))
    assert (event.actor_user_id, event.target_type, event.target_id) == (broker_u.id, "exchange", exchange.id)
    assert event.detail["changes"]["outcome_area"] == ["other", "education"]
    assert event.detail["reason"] == "It was homework help" and event.at is not None
    assert service.tag_history(session, exchange) == [event]


def test_changing_type_clears_a_finer_kind_that_no_longer_fits(session, confirmed):
    exchange, broker_u, *_ = confirmed
    service.retag_exchange(session, exchange.id, user=broker_u,
                           changes={"coproduction_type": "co_design", "coproduction_subtype": "design_lab"})
    diff = service.retag_exchange(session, exchange.id, user=broker_u, changes={"coproduction_type": "co_delivery"})
    assert diff == {"coproduction_type": ["co_design", "co_delivery"], "coproduction_subtype": ["design_lab", None]}
    assert service.retag_exchange(session, exchange.id, user=broker_u, changes={"outcome_area": "other"}) == {}
    assert len(service.tag_history(session, exchange)) == 2


@pytest.mark.parametrize("changes,code", [
    ({"outcome_area": "space_travel"}, "validation_error"),
    ({"coproduction_type": "co_design", "coproduction_subtype": "co_financing"}, "validation_error"),
    ({"category_id": 999_999}, "validation_error"),
    ({"minutes": 10}, "validation_error"),
    ({"substitutive": "maybe"}, "validation_error"),
])
def test_bad_tags_are_refused_and_change_nothing(session, confirmed, changes, code):
    exchange, broker_u, *_ = confirmed
    before = {name: getattr(exchange, name) for name in service.RETAGGABLE} | {"minutes": exchange.minutes}
    with pytest.raises(DomainError) as err:
        service.retag_exchange(session, exchange.id, user=broker_u, changes=changes)
    assert err.value.code == code
    assert {name: getattr(exchange, name) for name in service.RETAGGABLE} | {"minutes": exchange.minutes} == before
    assert service.tag_history(session, exchange) == []


def test_members_and_parties_cannot_retag(session, confirmed, make_person):
    exchange, _broker, alice_u, bob_u = confirmed
    commissioner_u, _ = make_person("commissioner")
    for user in (alice_u, bob_u, commissioner_u):
        with pytest.raises(DomainError) as err:
            service.retag_exchange(session, exchange.id, user=user, changes={"outcome_area": "housing"})
        assert err.value.status == 403
    assert exchange.outcome_area == "other"


def test_time_bank_outcome_areas_can_be_used(session, confirmed, timebank):
    exchange, broker_u, *_ = confirmed
    timebank.settings = {**(timebank.settings or {}), "outcome_areas": ["digital_inclusion"]}
    session.flush()
    service.retag_exchange(session, exchange.id, user=broker_u, changes={"outcome_area": "digital_inclusion"})
    assert exchange.outcome_area == "digital_inclusion"


def test_retag_of_a_participant_retags_the_whole_activity(session, make_person, organisation, rep):
    rep_u, _ = rep
    broker_u, _ = make_person("broker")
    people = [make_person()[1] for _ in range(3)]
    activity = service.record_group_activity(session, user=rep_u, organisation_id=organisation.id,
                                             title="Litter pick", happened_on=dt.date.today(),
                                             participants=[(m.id, 60) for m in people])
    rows = list(session.scalars(select(service.Exchange).where(service.Exchange.activity_id == activity.id)))
    with pytest.raises(DomainError) as err:
        service.retag_exchange(session, rows[0].id, user=broker_u, changes={"collective": False})
    assert err.value.code == "activity_is_collective"
    service.retag_exchange(session, rows[1].id, user=broker_u, changes={"outcome_area": "local_environment"})
    assert activity.outcome_area == "local_environment"
    assert {r.outcome_area for r in rows} == {"local_environment"} and all(r.collective for r in rows)
    assert len(service.tag_history(session, rows[2])) == 1


# --- API ---------------------------------------------------------------------------------------------------------

def test_retag_over_api_and_history(client, session, confirmed, api_headers):
    exchange, broker_u, alice_u, _ = confirmed
    member = api_headers(alice_u, **{"Idempotency-Key": "m-1"})
    r = client.post(f"/api/v1/exchanges/{exchange.id}/retag", json={"outcome_area": "housing"}, headers=member)
    assert r.status_code == 403 and r.content_type == "application/problem+json"
    r = client.get(f"/api/v1/exchanges/{exchange.id}/tag-changes", headers=api_headers(alice_u))
    assert r.status_code == 403
    broker = api_headers(broker_u, **{"Idempotency-Key": "b-1"})
    r = client.post(f"/api/v1/exchanges/{exchange.id}/retag",
                    json={"outcome_area": "housing", "substitutive": True, "reason": "Tenant work"}, headers=broker)
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["outcome_area"], r.get_json()["substitutive"], r.get_json()["minutes"]) == (
        "housing", True, 90)
    r = client.post(f"/api/v1/exchanges/{exchange.id}/retag", json={"outcome_area": "nowhere"},
                    headers=api_headers(broker_u, **{"Idempotency-Key": "b-2"}))
    assert r.status_code == 422
    r = client.get(f"/api/v1/exchanges/{exchange.id}/tag-changes", headers=api_headers(broker_u))
    assert r.status_code == 200
    [change] = r.get_json()
    assert change["by_user_id"] == broker_u.id and change["reason"] == "Tenant work"
    assert change["changes"] == {"outcome_area": {"old": "other", "new": "housing"},
                                 "substitutive": {"old": False, "new": True}}


# --- pages -------------------------------------------------------------------------------------------------------

def test_retag_page_for_broker_only(client, session, confirmed, login):
    exchange, broker_u, alice_u, _ = confirmed
    login(alice_u)
    assert client.get(f"/exchanges/{exchange.id}/tags").status_code == 403
    r = client.post(f"/exchanges/{exchange.id}/tags", data={"outcome_area": "housing", "coproduction_type":
                                                            "co_delivery"})
    assert r.status_code == 403 and exchange.outcome_area == "other"
    assert "Change the report tags" not in client.get(f"/exchanges/{exchange.id}").get_data(as_text=True)
    client.post("/logout")

    login(broker_u)
    assert "Change the report tags" in client.get(f"/exchanges/{exchange.id}").get_data(as_text=True)
    page = client.get(f"/exchanges/{exchange.id}/tags").get_data(as_text=True)
    assert "have not been changed" in page
    form = {"category_id": "", "coproduction_type": "co_design", "coproduction_subtype": "journey_mapping",
            "outcome_area": "public_health", "substitutive": "no", "collective": "no", "reason": "Panel work"}
    r = client.post(f"/exchanges/{exchange.id}/tags", data={**form, "coproduction_subtype": "co_financing"})
    assert r.status_code == 422 and "not known for that type of co-production" in r.get_data(as_text=True)
    assert exchange.coproduction_type == "co_delivery"
    r = client.post(f"/exchanges/{exchange.id}/tags", data=form, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Tags saved" in page and broker_u.display_name in page and "Panel work" in page
    assert "co delivery → co design" in page and "other → public health" in page
    assert (exchange.coproduction_type, exchange.coproduction_subtype, exchange.outcome_area) == (
        "co_design", "journey_mapping", "public_health")


def test_broker_adds_an_outcome_area_then_uses_it(client, session, make_person, login, confirmed, timebank):
    exchange, broker_u, alice_u, _ = confirmed
    login(alice_u)
    r = client.post("/exchanges/broker", data={"task": "outcome_area", "name": "Digital inclusion"})
    assert r.status_code == 403
    client.post("/logout")
    login(broker_u)
    r = client.post("/exchanges/broker", data={"task": "outcome_area", "name": "Digital inclusion"},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Added the outcome area" in page and "<li>Digital inclusion</li>" in page
    r = client.post("/exchanges/broker", data={"task": "outcome_area", "name": "digital  INCLUSION"})
    assert r.status_code == 422 and "already has the outcome area" in r.get_data(as_text=True)
    assert timebank.settings["outcome_areas"] == ["digital_inclusion"]
    page = client.get(f"/exchanges/{exchange.id}/tags").get_data(as_text=True)
    assert 'value="digital_inclusion"' in page
    client.post(f"/exchanges/{exchange.id}/tags", data={"coproduction_type": "co_delivery",
                                                         "outcome_area": "digital_inclusion"})
    assert exchange.outcome_area == "digital_inclusion"
