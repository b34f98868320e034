"""A broker's daily work: applications, checks, approval, direct adds, suspensions, queues."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from timebank.community.models import AuditEvent, Membership
from timebank.ledger.models import Account


def _audit_actions(session, membership_id):
    return [e.action for e in session.scalars(select(AuditEvent).where(
        AuditEvent.target_type == "membership", AuditEvent.target_id == membership_id).order_by(AuditEvent.id))]


def test_join_checks_approve_opens_an_account(client, world, session, api_headers):
    response = client.post("/join", data={"timebank": "testbank", "display_name": "Nia New",
                                          "email": "nia@example.test", "password": "a-long-password",
                                          "note": "I can garden"})
    assert response.status_code == 200 and "We have your application" in response.get_data(as_text=True)
    headers = api_headers(world.broker)
    pending = client.get("/api/v1/applications?timebank=testbank", headers=headers).get_json()
    nia = next(a for a in pending if a["email"] == "nia@example.test")
    assert nia["status"] == "pending" and nia["account_id"] is None and nia["application_note"] == "I can garden"

    checks = client.post(f"/api/v1/applications/{nia['id']}/checks", headers={**headers, "Idempotency-Key": "c1"},
                         json={"references_received": 2, "safety_check_level": "enhanced",
                               "safety_check_date": "2026-01-10", "safety_check_expires": "2029-01-10",
                               "risk_note": "none known", "induction_date": "2026-02-01"})
    assert checks.status_code == 200, checks.get_json()
    assert checks.get_json()["safety_check_level"] == "enhanced"
    approved = client.post(f"/api/v1/applications/{nia['id']}/approve", headers={**headers, "Idempotency-Key": "a1"},
                           json={})
    assert approved.status_code == 200
    body = approved.get_json()
    assert body["status"] == "active" and body["account_id"]
    account = session.get(Account, body["account_id"])
    assert account.balance_minutes == 0 and account.floor_minutes == world.timebank.default_floor_minutes
    assert "onboarding.approved" in _audit_actions(session, nia["id"])
    # The new member logs in and sees their own account in /me.
    token = client.post("/api/v1/tokens", auth=("nia@example.test", "a-long-password")).get_json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert me["memberships"][0]["account_id"] == body["account_id"]
    # Deciding twice is a conflict, not a second account.
    again = client.post(f"/api/v1/applications/{nia['id']}/approve", headers={**headers, "Idempotency-Key": "a2"},
                        json={})
    assert again.status_code == 409 and again.get_json()["code"] == "application_not_pending"


def test_decline_needs_a_reason_and_ask_for_more_keeps_it_pending(client, world, session, login):
    from timebank.community.service import apply_to_join

    application = apply_to_join(session, timebank=world.timebank, email="dee@example.test", display_name="Dee",
                                password="a-long-password")
    session.commit()
    login(world.broker)
    client.post(f"/applications/{application.id}/request-info", data={"message": "A second reference please"})
    session.refresh(application)
    assert application.status == "pending" and application.info_requested == "A second reference please"
    page = client.get("/onboarding").get_data(as_text=True)
    assert "Dee" in page and "A second reference please" in page
    refused = client.post(f"/applications/{application.id}/decline", data={"reason": ""}, follow_redirects=True)
    assert "Give a reason for declining" in refused.get_data(as_text=True)
    client.post(f"/applications/{application.id}/decline", data={"reason": "Lives outside the area"})
    session.refresh(application)
    assert application.status == "declined" and application.decline_reason == "Lives outside the area"
    assert application.account_id is None
    assert "Pending applications (0)" in client.get("/onboarding").get_data(as_text=True)


def test_safety_check_must_expire_after_its_date(client, world, api_headers):
    response = client.post(f"/api/v1/applications/{world.other_m.id}/checks",
                           headers=api_headers(world.broker, **{"Idempotency-Key": "x"}),
                           json={"safety_check_date": "2026-05-01", "safety_check_expires": "2026-04-01"})
    assert response.status_code == 422 and "safety_check_expires" in response.get_json()["errors"]


def test_expiring_safety_checks_queue(client, world, session, login):
    today = dt.date.today()
    world.other_m.safety_check_level = "enhanced"
    world.other_m.safety_check_expires = today + dt.timedelta(days=10)
    world.member_m.safety_check_level = "basic"
    world.member_m.safety_check_expires = today + dt.timedelta(days=90)
    session.commit()
    login(world.broker)
    page = client.get("/onboarding").get_data(as_text=True)
    section = page.split("Safety checks expiring")[1]
    assert world.other.display_name in section and world.member.display_name not in section


def test_broker_adds_member_without_password_and_a_link_is_logged(client, world, session, api_headers, caplog):
    with caplog.at_level(logging.INFO, logger="timebank.mail"):
        response = client.post("/api/v1/members", headers=api_headers(world.broker, **{"Idempotency-Key": "m1"}),
                               json={"email": "Offline@Example.test", "display_name": "Olive Offline"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["id"] and body["account_id"] and body["status"] == "active"
    assert body["email"] == "offline@example.test"
    assert "/password/reset/" in caplog.text
    link = caplog.text.split("http://localhost")[1].split()[0]
    client.post(link, data={"password": "olives-new-password", "password_again": "olives-new-password"})
    assert client.post("/api/v1/tokens", auth=("offline@example.test", "olives-new-password")).status_code == 201
    # The same key again replays; a taken email is a conflict.
    replay = client.post("/api/v1/members", headers=api_headers(world.broker, **{"Idempotency-Key": "m1"}),
                         json={"email": "Offline@Example.test", "display_name": "Olive Offline"})
    assert replay.status_code in (201, 409)


def test_broker_with_one_timebank_need_not_name_it(client, world, api_headers):
    response = client.post("/api/v1/members", headers=api_headers(world.broker, **{"Idempotency-Key": "m2"}),
                           json={"email": "pat@example.test", "display_name": "Pat", "password": "pats-password-1"})
    assert response.status_code == 201 and response.get_json()["timebank"] == "testbank"


def test_member_search(client, world, api_headers):
    found = client.get(f"/api/v1/members?timebank=testbank&q={world.other.display_name}",
                       headers=api_headers(world.broker)).get_json()
    assert [m["id"] for m in found] == [world.other_m.id]


def test_suspend_and_reinstate(client, world, session, login, api_headers):
    login(world.broker)
    client.post(f"/members/{world.other_m.id}/suspend", data={"reason": "complaint under review"})
    session.refresh(world.other_m)
    assert world.other_m.status == "suspended"
    # A suspended member has no role anywhere: their own token cannot read the directory or profiles.
    assert client.get(f"/api/v1/members/{world.member_m.id}", headers=api_headers(world.other)).status_code == 404
    client.post(f"/members/{world.other_m.id}/reinstate")
    session.refresh(world.other_m)
    assert world.other_m.status == "active"
    actions = _audit_actions(session, world.other_m.id)
    assert actions[-2:] == ["member.suspended", "member.reinstated"]


def test_admin_changes_a_role_and_it_is_audited(client, world, session, api_headers, login):
    response = client.put(f"/api/v1/members/{world.other_m.id}/role",
                          headers=api_headers(world.admin, **{"Idempotency-Key": "r1"}), json={"role": "broker"})
    assert response.status_code == 200 and response.get_json()["role"] == "broker"
    login(world.admin)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "role.changed" in page


def test_admin_settings_page_saves(client, world, session, login):
    login(world.admin)
    response = client.post("/admin/settings", data={"name": "Renamed Bank", "max_exchange_hours": "8",
                                                    "max_backdate_days": "30", "auto_confirm_days": "7",
                                                    "match_radius_km": "5"})
    assert response.status_code == 302
    session.refresh(world.timebank)
    assert world.timebank.name == "Renamed Bank" and world.timebank.max_exchange_minutes == 480
    bad = client.post("/admin/settings", data={"max_exchange_hours": "0"})
    assert bad.status_code == 422 and "not valid" in bad.get_data(as_text=True)


def test_profile_saves_skills_availability_and_demographics_only_with_consent(client, world, session, login):
    login(world.member)
    from timebank.community.models import Category

    gardening = session.scalar(select(Category).where(Category.timebank_id == world.timebank.id,
                                                      Category.name == "Gardening"))
    response = client.post("/profile", data={"display_name": "Mo", "bio": "Keen gardener", "ward": "Byker",
                                             "postcode_district": "ne6", "skill": [str(gardening.id)],
                                             "slot": ["0", "20"], "age_band": "65-74", "gender": "woman",
                                             "disability": "yes"})
    assert response.status_code == 302
    session.refresh(world.member_m)
    m = world.member_m
    assert [c.name for c in m.skills] == ["Gardening"] and m.postcode_district == "NE6"
    assert m.availability == (1 | 1 << 20)
    assert m.age_band is None and m.disability is None  # no consent given: nothing kept
    client.post("/profile", data={"display_name": "Mo", "demographics_consent": "yes", "age_band": "65-74",
                                  "disability": "yes", "slot": ["3"]})
    session.refresh(m)
    assert m.age_band == "65-74" and m.disability is True and m.availability == 8
    page = client.get("/profile").get_data(as_text=True)
    assert 'id="slot-3" name="slot" value="3" checked' in page


def test_approval_with_welcome_hours_from_issuance(client, world, session, api_headers):
    """Welcome hours come from the time bank's issuance account through the ledger."""
    from timebank.community.service import apply_to_join
    from timebank.ledger.service import system_account

    application = apply_to_join(session, timebank=world.timebank, email="wes@example.test", display_name="Wes",
                                password="a-long-password")
    session.commit()
    issuance_before = system_account(session, world.timebank.id, "issuance").balance_minutes
    response = client.post(f"/api/v1/applications/{application.id}/approve",
                           headers=api_headers(world.broker, **{"Idempotency-Key": "w1"}),
                           json={"welcome_minutes": 120, "welcome_from": "issuance"})
    assert response.status_code == 200, response.get_json()
    session.expire_all()
    assert session.get(Account, response.get_json()["account_id"]).balance_minutes == 120
    assert system_account(session, world.timebank.id, "issuance").balance_minutes == issuance_before - 120




def test_a_membership_added_in_a_request_is_among_the_users_memberships_at_once(session):
    """The token lookup loads a user with their memberships; one added later in the same request (a direct add, an
    approval into a second time bank) must be in that list straight away, not after the session forgets it."""
    from timebank.community.service import add_membership, create_timebank, create_user

    first = create_timebank(session, name="First Bank", slug="first-bank")
    second = create_timebank(session, name="Second Bank", slug="second-bank")
    user = create_user(session, email="two-banks@example.test", display_name="Two Banks", password="a-long-password")
    add_membership(session, user=user, timebank=first)
    assert [m.timebank_id for m in user.memberships] == [first.id]  # loaded now, as the token lookup does
    added = add_membership(session, user=user, timebank=second)
    assert added in user.memberships and {m.timebank_id for m in user.memberships} == {first.id, second.id}
