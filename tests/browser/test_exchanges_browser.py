"""Exchanges clicked through in real Chromium by a member, a broker and organisations' representatives.
Every page visited passes the axe-core check (no serious or critical violations)."""
from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import expect


PASSWORD = "browser-pass-123"


@pytest.fixture
def bank(committed_db):
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user
    from timebank.exchanges import service

    session = committed_db.session
    timebank = create_timebank(session, slug="riverside", name="Riverside Time Bank")
    people, password_hash = {}, None
    for key, role, name in [("alice", "member", "Alice Allen"), ("bob", "member", "Bob Brown"),
                            ("carol", "member", "Carol Cole"), ("rep", "member", "Rita Rep"),
                            ("head", "member", "Hugh Head"), ("broker", "broker", "Bea Broker")]:
        user = create_user(session, email=f"{key}@b.test", display_name=name,
                           password=None if password_hash else PASSWORD)
        # One slow argon2 hash shared by everyone keeps the fixture quick.
        password_hash = user.password_hash = password_hash or user.password_hash
        people[key] = (user, add_membership(session, user=user, timebank=timebank, role=role))
    library = create_organisation(session, timebank=timebank, name="Riverside Library")
    library.representatives.append(people["rep"][0])
    school = create_organisation(session, timebank=timebank, name="Hill School")
    school.representatives.append(people["head"][0])
    session.flush()
    alice_u, alice = people["alice"]
    bob = people["bob"][1]
    # A pending exchange for the dispute flow: Alice says she helped Bob for 2 hours.
    pending = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=120,
                                   happened_on=dt.date.today(), description="Painted the fence")
    ids = {"library": library.id, "school": school.id, "pending": pending.id,
           "members": {k: m.id for k, (_u, m) in people.items()}}
    session.commit()
    committed_db.session.remove()  # free SQLite's write lock for the server
    return ids


def login_as(page, browser_login, who):
    page.context.clear_cookies()
    browser_login(page, f"{who}@b.test", PASSWORD)


def test_member_logs_hours_and_the_other_confirms(browser_page, browser_login, check_accessibility, bank):
    page = browser_page
    login_as(page, browser_login, "alice")
    page.get_by_role("link", name="My dashboard").click()
    check_accessibility(page)
    expect(page.locator("#balance")).to_have_text("0 hours")
    page.get_by_role("link", name="Log hours").first.click()
    check_accessibility(page)
    page.get_by_label("I helped someone").check()
    page.get_by_label("The other member").select_option(label="Carol Cole")
    page.locator("#hours").fill("1")
    page.locator("#minutes").fill("30")
    page.get_by_label("What was done").fill("Weeded the allotment")
    page.get_by_role("button", name="Log hours").click()
    expect(page.get_by_text("We have asked the other member to confirm it")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Waiting for confirmation")
    check_accessibility(page)

    login_as(page, browser_login, "carol")
    expect(page.locator(".badge")).to_have_text("1")
    page.get_by_role("link", name="My dashboard").click()
    check_accessibility(page)
    page.get_by_role("link", name="Confirm or dispute").click()
    check_accessibility(page)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Confirmed. The hours have moved.")).to_be_visible()
    page.get_by_role("link", name="My dashboard").click()
    expect(page.locator("#balance")).to_have_text("-1 hour 30 minutes")
    expect(page.get_by_text("Nothing is waiting for you.")).to_be_visible()
    page.locator(".notifications-link").click()
    expect(page.get_by_text("Please confirm: Alice Allen helped Carol Cole")).to_be_visible()
    check_accessibility(page)

    login_as(page, browser_login, "alice")
    page.get_by_role("link", name="My dashboard").click()
    expect(page.locator("#balance")).to_have_text("1 hour 30 minutes")


def test_member_disputes_broker_settles_and_retags(browser_page, browser_login, check_accessibility, bank):
    page = browser_page
    login_as(page, browser_login, "bob")
    page.goto(f"/exchanges/{bank['pending']}")
    check_accessibility(page)
    page.get_by_label("What is wrong?").fill("It was one hour, not two")
    page.get_by_role("button", name="Dispute").click()
    expect(page.get_by_text("Disputed. A broker will look at it.")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Disputed")

    login_as(page, browser_login, "broker")
    page.get_by_role("link", name="Broker desk").click()
    check_accessibility(page)
    expect(page.get_by_role("cell", name="It was one hour, not two")).to_be_visible()
    page.get_by_role("link", name="Settle").click()
    check_accessibility(page)
    page.get_by_label("Replace with the corrected time below").check()
    page.locator("#resolve-hours").fill("1")
    page.get_by_label("Note for the record").fill("Both agreed one hour")
    page.get_by_role("button", name="Settle").click()
    expect(page.get_by_text("Dispute settled.")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Confirmed")
    expect(page.get_by_role("heading", name="Alice Allen helped Bob Brown")).to_be_visible()

    # The broker re-tags the corrected exchange for the impact reports.
    page.get_by_role("link", name="Change the report tags").click()
    check_accessibility(page)
    page.get_by_label("Outcome area").select_option("local_environment")
    page.get_by_label("Substitutive (replaces it)").check()
    page.get_by_label("Why (for the record)").fill("Council would have painted it")
    page.get_by_role("button", name="Save the tags").click()
    expect(page.get_by_text("Tags saved")).to_be_visible()
    expect(page.get_by_role("cell", name="Bea Broker")).to_be_visible()
    expect(page.get_by_text("other → local environment")).to_be_visible()
    check_accessibility(page)

    login_as(page, browser_login, "bob")
    page.get_by_role("link", name="My dashboard").click()
    expect(page.locator("#balance")).to_have_text("-1 hour")


def test_representative_records_a_group_activity_from_csv(browser_page, browser_login, check_accessibility, bank):
    page = browser_page
    login_as(page, browser_login, "rep")
    page.get_by_role("link", name="My dashboard").click()
    page.get_by_role("link", name="Riverside Library").click()
    check_accessibility(page)
    page.get_by_label("Title").fill("Litter pick on the green")
    page.get_by_label("Participants, one per line").fill("alice@b.test,3\nghost@b.test,2\nbob@b.test,two\n")
    page.get_by_role("button", name="Record the activity").click()
    # Nothing is recorded: the preview marks each bad row.
    expect(page.get_by_text("fix the rows marked below; nothing has been recorded")).to_be_visible()
    expect(page.get_by_text("Unknown member 'ghost@b.test'.")).to_be_visible()
    expect(page.get_by_text("'two' is not a number of hours.")).to_be_visible()
    expect(page.locator("table.preview tbody tr")).to_have_count(3)
    expect(page.locator("#org-balance")).to_have_text("0 hours")
    check_accessibility(page)

    page.get_by_label("Participants, one per line").fill("alice@b.test,3\ncarol@b.test,2:30\nbob@b.test,2\n")
    page.get_by_role("button", name="Check participants").click()
    expect(page.get_by_text("every row is right (3 people)")).to_be_visible()
    expect(page.locator("#org-balance")).to_have_text("0 hours")
    check_accessibility(page)
    page.get_by_role("button", name="Record the activity").click()
    expect(page.get_by_text("Recorded the group activity 'Litter pick on the green'")).to_be_visible()
    expect(page.locator("#org-balance")).to_have_text("-7 hours 30 minutes")

    login_as(page, browser_login, "carol")
    page.get_by_role("link", name="My dashboard").click()
    expect(page.locator("#balance")).to_have_text("2 hours 30 minutes")


def test_pot_donation_and_grant(browser_page, browser_login, check_accessibility, bank):
    page = browser_page
    login_as(page, browser_login, "alice")
    page.get_by_role("link", name="My dashboard").click()
    page.locator("#donate-hours").fill("2")
    page.get_by_role("button", name="Give to the pot").click()
    expect(page.get_by_text("Thank you: you gave 2 hours to the community pot.")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("-2 hours")
    check_accessibility(page)

    login_as(page, browser_login, "broker")
    page.get_by_role("link", name="Broker desk").click()
    expect(page.locator("#pot-balance")).to_have_text("2 hours")
    page.get_by_label("Grant to").select_option(label="Carol Cole")
    page.locator("#grant-hours").fill("1")
    page.get_by_label("Reason").fill("Housebound after a fall")
    page.get_by_role("button", name="Grant from the pot").click()
    expect(page.get_by_text("Granted 1 hour from the pot.")).to_be_visible()
    expect(page.locator("#pot-balance")).to_have_text("1 hour")
    expect(page.get_by_role("cell", name="Housebound after a fall")).to_be_visible()
    check_accessibility(page)


def test_member_spends_with_an_organisation_and_organisations_trade(browser_page, browser_login,
                                                                   check_accessibility, bank):
    page = browser_page
    login_as(page, browser_login, "alice")
    page.get_by_role("link", name="My dashboard").click()
    page.get_by_role("link", name="Spend hours with an organisation").click()
    check_accessibility(page)
    page.get_by_label("Organisation").select_option(label="Riverside Library")
    page.locator("#spend-hours").fill("1")
    page.get_by_label("What for").fill("A place on the craft course")
    page.get_by_role("button", name="Pay with my hours").click()
    expect(page.get_by_text("Paid: 1 hour to Riverside Library.")).to_be_visible()
    check_accessibility(page)

    login_as(page, browser_login, "rep")
    page.goto(f"/exchanges/organisations/{bank['library']}")
    expect(page.locator("#org-balance")).to_have_text("1 hour")
    page.get_by_label("We helped them").check()
    page.get_by_label("The other organisation").select_option(label="Hill School")
    page.locator("#partner-hours").fill("3")
    page.locator("#partner-description").fill("Lent the minibus")
    page.get_by_role("button", name="Log the exchange").click()
    expect(page.get_by_text("We have asked the other side to confirm it.")).to_be_visible()
    expect(page.locator("#org-balance")).to_have_text("1 hour")
    check_accessibility(page)

    login_as(page, browser_login, "head")
    page.get_by_role("link", name="My dashboard").click()
    page.get_by_role("link", name="Hill School").click()
    check_accessibility(page)
    page.get_by_role("link", name="Confirm or dispute").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Confirmed. The hours have moved.")).to_be_visible()
    page.goto(f"/exchanges/organisations/{bank['school']}")
    expect(page.locator("#org-balance")).to_have_text("-3 hours")
    expect(page.get_by_text("Nothing is waiting for Hill School.")).to_be_visible()
