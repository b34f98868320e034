"""Each role logs in in real Chromium and does its main people task; every page visited passes axe-core."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect


PASSWORD = "browser-pass-123"


@pytest.fixture
def community(committed_db):
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user

    session = committed_db.session
    timebank = create_timebank(session, slug="riverside", name="Riverside Time Bank")
    people = {}
    for role, email in [("broker", "broker@b.test"), ("admin", "admin@b.test"), ("commissioner", "comm@b.test"),
                        ("member", "rep@b.test")]:
        user = create_user(session, email=email, display_name=f"{role.title()} Person", password=PASSWORD)
        add_membership(session, user=user, timebank=timebank, role=role)
        people[email] = user
    organisation = create_organisation(session, timebank=timebank, name="Riverside Library", kind="council")
    organisation.representatives.append(people["rep@b.test"])
    organisation_id = organisation.id
    session.commit()
    # Release the connection: a lingering SQLite transaction would hold the write lock the server needs.
    committed_db.session.remove()
    return {"organisation_id": organisation_id}


def test_applicant_joins_broker_approves_member_edits_profile(browser_page, check_accessibility, browser_login,
                                                              community):
    page = browser_page
    # An applicant joins.
    page.goto("/join")
    check_accessibility(page)
    page.get_by_label("Your name").fill("Ada Applicant")
    page.get_by_label("Email address").fill("ada@b.test")
    page.get_by_label("Choose a password").fill("ada-password-123")
    page.get_by_label("What could you offer").fill("Gardening and lifts")
    page.get_by_role("button", name="Send my application").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    check_accessibility(page)

    # The broker records checks and approves.
    page.context.clear_cookies()
    browser_login(page, "broker@b.test", PASSWORD)
    page.get_by_role("link", name="Onboarding").click()
    expect(page.get_by_role("heading", name="Ada Applicant")).to_be_visible()
    check_accessibility(page)
    page.get_by_label("References received").fill("2")
    page.get_by_label("Safety check (DBS)").select_option("enhanced")
    page.get_by_label("Certificate date").fill("2026-01-10")
    page.get_by_label("Certificate expires").fill("2029-01-10")
    page.get_by_role("button", name="Save checks").click()
    expect(page.get_by_text("Checks saved for Ada Applicant")).to_be_visible()
    page.get_by_role("button", name="Approve Ada Applicant").click()
    expect(page.get_by_text("Ada Applicant is approved and has an account")).to_be_visible()
    page.get_by_role("link", name="Members").click()
    check_accessibility(page)
    expect(page.get_by_role("link", name="Ada Applicant")).to_be_visible()

    # The new member logs in and fills in their profile with the keyboard-friendly form.
    page.context.clear_cookies()
    browser_login(page, "ada@b.test", "ada-password-123")
    page.goto("/profile")
    check_accessibility(page)
    page.get_by_label("Ward or neighbourhood").fill("Byker")
    page.get_by_label("Gardening").check()
    page.get_by_label("Saturday morning").check()
    page.get_by_role("button", name="Save my profile").click()
    expect(page.get_by_text("Your profile is saved")).to_be_visible()
    expect(page.get_by_label("Saturday morning")).to_be_checked()
    expect(page.get_by_label("Ward or neighbourhood")).to_have_value("Byker")


def test_admin_changes_settings_and_reads_the_audit_log(browser_page, check_accessibility, browser_login,
                                                        community):
    page = browser_page
    browser_login(page, "admin@b.test", PASSWORD)
    page.get_by_role("link", name="Settings").click()
    check_accessibility(page)
    page.get_by_label("Time bank name").fill("Riverside & District Time Bank")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved")).to_be_visible()
    page.get_by_role("link", name="Audit log").click()
    check_accessibility(page)
    expect(page.get_by_role("cell", name="timebank.settings_changed")).to_be_visible()


def test_representative_acts_for_their_organisation(browser_page, check_accessibility, browser_login, community):
    page = browser_page
    browser_login(page, "rep@b.test", PASSWORD)
    page.goto(f"/organisations/{community['organisation_id']}")
    check_accessibility(page)
    expect(page.get_by_text("You act for this organisation")).to_be_visible()
    expect(page.get_by_text("Balance:")).to_be_visible()


def test_commissioner_is_refused_named_people(browser_page, check_accessibility, browser_login, community):
    page = browser_page
    browser_login(page, "comm@b.test", PASSWORD)
    check_accessibility(page)
    response = page.goto("/members")
    assert response.status == 403
    expect(page.get_by_role("heading", name="You can't see this page")).to_be_visible()
    check_accessibility(page)


def test_the_accessibility_check_does_catch_a_violation(browser_page, check_accessibility):
    page = browser_page
    page.goto("/login")
    # Strip the labels: unlabelled inputs are a critical axe violation, so the check must fail.
    page.evaluate("() => document.querySelectorAll('label').forEach(l => l.remove())")
    with pytest.raises(AssertionError, match="label"):
        check_accessibility(page)


def test_broker_manages_categories(browser_page, check_accessibility, browser_login, community):
    page = browser_page
    browser_login(page, "broker@b.test", PASSWORD)
    page.get_by_role("link", name="Categories").click()
    expect(page.get_by_role("heading", name="Categories: Riverside Time Bank")).to_be_visible()
    check_accessibility(page)
    page.get_by_label("Name of the new category").fill("Dog walking")
    page.get_by_label("Put it under").select_option(label="Home & garden")
    page.get_by_role("button", name="Add the category").click()
    expect(page.get_by_text("Added the category Dog walking")).to_be_visible()
    page.get_by_label("New name for Dog walking").fill("Pet care")
    page.get_by_role("button", name="Rename Dog walking").click()
    expect(page.get_by_text("Renamed Dog walking to Pet care")).to_be_visible()
    page.get_by_role("button", name="Retire Pet care").click()
    expect(page.get_by_text("Retired Pet care")).to_be_visible()
    expect(page.get_by_role("button", name="Restore Pet care")).to_be_visible()
    check_accessibility(page)

    # A member no longer sees the retired category among the skills they can choose.
    page.context.clear_cookies()
    browser_login(page, "rep@b.test", PASSWORD)
    page.goto("/profile")
    expect(page.get_by_label("Gardening")).to_be_visible()
    expect(page.get_by_label("Pet care")).to_have_count(0)
    page.get_by_label("Latitude").fill("54.97")
    page.get_by_label("Longitude").fill("-1.61")
    page.get_by_role("button", name="Save my profile").click()
    expect(page.get_by_text("Your profile is saved")).to_be_visible()
    expect(page.get_by_label("Latitude")).to_have_value("54.97")
    check_accessibility(page)
