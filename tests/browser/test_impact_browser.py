"""A commissioner reads the impact dashboard in real Chromium, downloads its exports and opens the print view;
an admin closes the period. Every page passes axe-core (no serious or critical violations)."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect


PASSWORD = "browser-pass-123"


@pytest.fixture
def community(committed_db):
    from tests.impact.fixed_community import build
    from timebank.community.service import add_membership, create_user

    session = committed_db.session
    c = build(session)
    for role, email in [("commissioner", "comm@impact.test"), ("admin", "admin@impact.test")]:
        user = create_user(session, email=email, display_name=f"{role.title()} Person", password=PASSWORD)
        add_membership(session, user=user, timebank=c["timebank"], role=role)
    session.commit()
    committed_db.session.remove()  # release SQLite's write lock for the server


def _show_q1(page):
    page.get_by_role("link", name="Impact").click()
    page.get_by_label("Time bank").select_option("fixed")
    page.get_by_label("From").fill("2025-01-01")
    page.get_by_label("To").fill("2025-03-31")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()


def test_commissioner_dashboard_exports_and_print_view(browser_page, check_accessibility, browser_login, community):
    page = browser_page
    browser_login(page, "comm@impact.test", PASSWORD)
    _show_q1(page)
    expect(page.get_by_role("heading", name="Impact", exact=True)).to_be_visible()
    expect(page.locator('[data-measure="hours_delivered"]')).to_have_text("13.0")
    # charts are images with a text alternative, and a table beside each
    assert page.locator('svg[role="img"]').count() >= 11
    ward_table = "Area (ward): hours and people, this period and the previous one"
    expect(page.get_by_role("table", name=ward_table)).to_be_visible()
    expect(page.get_by_text("fewer than 5").first).to_be_visible()
    expect(page.locator('[data-measure="open_longer_than_days"]')).to_have_text("3")
    assert "Person a" not in page.content()
    check_accessibility(page)

    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").click()
    csv_text = open(info.value.path(), encoding="utf-8").read()
    assert csv_text.startswith("section,measure,label,value") and "headline,minutes_delivered,,780" in csv_text
    assert info.value.suggested_filename == "impact-fixed-2025-01-01-2025-03-31.csv"
    with page.expect_download() as info:
        page.get_by_role("link", name="Excel (XLSX)").click()
    from openpyxl import load_workbook

    assert info.value.suggested_filename.endswith(".xlsx")
    with open(info.value.path(), "rb") as fh:  # the download's temporary file has no extension
        sheet = load_workbook(fh).active
    assert ("headline", "minutes_delivered", None, 780) in list(sheet.iter_rows(values_only=True))
    with page.expect_download() as info:
        page.get_by_role("link", name="JSON").click()
    data = json.loads(open(info.value.path(), encoding="utf-8").read())
    assert data["headline"]["hours_delivered"] == 13.0 and data["unmet_need"]["open_longer_than_days"] == 3

    page.get_by_role("link", name="Printable view").click()
    page.wait_for_load_state()
    expect(page.get_by_role("heading", name="Impact report")).to_be_visible()
    expect(page.locator('[data-measure="hours_delivered"]')).to_have_text("13.0")
    # the print stylesheet hides the controls on paper
    page.emulate_media(media="print")
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_hidden()
    page.emulate_media(media="screen")
    check_accessibility(page)


def test_admin_closes_the_period_and_sees_it_frozen(browser_page, check_accessibility, browser_login, community):
    page = browser_page
    browser_login(page, "admin@impact.test", PASSWORD)
    _show_q1(page)
    page.get_by_role("button", name="Close this period").click()
    page.wait_for_load_state()
    expect(page.get_by_text("This period is closed")).to_be_visible()
    expect(page.locator('[data-measure="hours_delivered"]')).to_have_text("13.0")
    check_accessibility(page)
