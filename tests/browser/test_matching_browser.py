"""Matching in real Chromium: a member posts an offer and a request, a broker reads ranked suggestions with reasons
and proposes, the volunteer accepts and logs the hours, a broker makes and sends a batch plan, the volunteer
declines its proposal, and a broker blocks a pair.
Every page visited passes axe-core (no serious or critical violations)."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect


PASSWORD = "browser-pass-123"
TUESDAY_MORNING = 1 << 3


@pytest.fixture
def community(committed_db):
    from sqlalchemy import select

    from timebank.community.models import Category, MemberSkill
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user
    from timebank.matching import service

    session = committed_db.session
    timebank = create_timebank(session, slug="riverside", name="Riverside Time Bank")
    where = {"latitude": 53.80, "longitude": -1.55, "availability": TUESDAY_MORNING}
    people = {}
    for key, role, name, extra in [("broker", "broker", "Bea Broker", {}),
                                   ("asker", "member", "Ann Asker", where),
                                   ("helper", "member", "Hal Helper", {**where, "latitude": 53.81})]:
        user = create_user(session, email=f"{key}@m.test", display_name=name, password=PASSWORD)
        people[key] = (user, add_membership(session, user=user, timebank=timebank, role=role, **extra))
    gardening = session.scalar(select(Category).where(Category.timebank_id == timebank.id,
                                                      Category.name == "Gardening"))
    session.add(MemberSkill(membership_id=people["helper"][1].id, category_id=gardening.id))
    organisation = create_organisation(session, timebank=timebank, name="Park Friends")
    organisation.representatives.append(people["asker"][0])
    # A second open request, for the batch plan.
    service.create_request(session, user=people["asker"][0], timebank=timebank, membership=people["asker"][1],
                           title="Prune the apple tree", category_id=gardening.id)
    session.commit()
    committed_db.session.remove()  # release SQLite's write lock for the server


def _login(page, email):
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_post_suggest_propose_accept_log_plan_and_block(browser_page, check_accessibility, community):
    page = browser_page

    # The member posts an offer and a request.
    _login(page, "asker@m.test")
    page.get_by_role("link", name="Offers & requests").click()
    check_accessibility(page)
    page.get_by_role("link", name="Offer help").click()
    check_accessibility(page)
    page.get_by_label("Title").fill("Bike repairs")
    page.get_by_label("Category").select_option(label="Home & garden › DIY & repairs")
    page.get_by_label("Description").fill("Punctures and brakes")
    page.get_by_role("button", name="Post").click()
    expect(page.get_by_text("Your offer is posted.")).to_be_visible()
    page.get_by_role("link", name="Ask for help").click()
    page.get_by_label("Title").fill("Dig a vegetable bed")
    page.get_by_label("Category").select_option(label="Home & garden › Gardening")
    page.get_by_label("Needed by (optional)").fill("2099-12-31")
    page.get_by_label("Tuesday morning").check()
    page.get_by_role("button", name="Post").click()
    expect(page.get_by_text("Your request is posted.")).to_be_visible()
    mine = page.get_by_role("region", name="Your offers and requests")
    expect(mine.get_by_role("button", name="Close “Bike repairs”")).to_be_visible()
    expect(mine.get_by_role("button", name="Close “Dig a vegetable bed”")).to_be_visible()
    expect(mine).to_contain_text("needed by 31 Dec 2099")
    check_accessibility(page)
    page.goto("/listings/blocks")
    check_accessibility(page)
    page.goto("/listings")
    page.get_by_role("link", name="Post a volunteering opportunity").click()
    check_accessibility(page)
    page.get_by_label("Title").fill("Bulb planting day")
    page.get_by_label("Category").select_option(label="Home & garden › Gardening")
    page.get_by_label("Volunteers needed").fill("4")
    page.get_by_label("Safety check needed").select_option("enhanced")
    page.get_by_role("button", name="Post").click()
    expect(page.get_by_text("Your opportunity is posted.")).to_be_visible()
    expect(page.get_by_text("Park Friends: 4 volunteers")).to_be_visible()

    # The broker reads ranked suggestions with their reasons and proposes the helper.
    _login(page, "broker@m.test")
    page.get_by_role("link", name="Matching").click()
    check_accessibility(page)
    page.get_by_role("link", name="Suggestions for Dig a vegetable bed").click()
    suggestions = page.get_by_role("region", name="Suggestions for “Dig a vegetable bed”")
    first = suggestions.get_by_role("listitem").first
    expect(first).to_contain_text("Hal Helper")
    expect(first).to_contain_text(re.compile(r"offers Gardening, 1\.1 km away, free on Tuesday mornings"))
    check_accessibility(page)
    page.get_by_role("button", name="Propose Hal Helper").click()
    expect(page.get_by_text("Proposed. The volunteer will see it on their page.")).to_be_visible()

    # The volunteer accepts, then logs the hours from the pre-filled form.
    _login(page, "helper@m.test")
    page.get_by_role("link", name="Offers & requests").click()
    check_accessibility(page)
    page.get_by_role("button", name="Accept “Dig a vegetable bed”").click()
    expect(page.get_by_text("You accepted the match")).to_be_visible()
    page.get_by_role("link", name="Log the hours for “Dig a vegetable bed”").click()
    check_accessibility(page)
    expect(page.get_by_label("Hours")).to_have_value("1")
    expect(page.get_by_label("What was done")).to_have_value("Dig a vegetable bed")
    page.get_by_role("button", name="Log the hours").click()
    expect(page.get_by_text("The hours are logged and the match is complete")).to_be_visible()

    # The broker makes a batch plan for the open requests, reviews it and sends it; then blocks a pair.
    _login(page, "broker@m.test")
    page.get_by_role("link", name="Matching").click()
    funnel = page.get_by_role("region", name="Funnel")
    expect(funnel.get_by_role("cell").nth(5)).to_have_text("1")  # one match logged
    page.get_by_label("Include Bulb planting day").uncheck()  # the broker plans the members' requests only
    page.get_by_role("button", name="Make a plan").click()
    expect(page.get_by_role("heading", name=re.compile(r"Match plan \d+ \(draft\)"))).to_be_visible()
    expect(page.get_by_text("1 of 1 places filled")).to_be_visible()
    expect(page.get_by_role("cell", name="Prune the apple tree")).to_be_visible()
    expect(page.get_by_role("cell", name="Hal Helper")).to_be_visible()
    check_accessibility(page)
    page.get_by_role("button", name="Send the proposals").click()
    expect(page.get_by_text("Sent 1 proposal.")).to_be_visible()
    check_accessibility(page)

    # The volunteer declines the plan's proposal.
    _login(page, "helper@m.test")
    page.get_by_role("link", name="Offers & requests").click()
    page.get_by_role("button", name="Decline “Prune the apple tree”").click()
    expect(page.get_by_text("You declined the match.")).to_be_visible()
    expect(page.get_by_role("region", name="Your matches")).to_contain_text("Prune the apple tree – declined")
    check_accessibility(page)

    # A broker blocks the pair for safeguarding.
    _login(page, "broker@m.test")
    page.goto("/matching/blocks")
    check_accessibility(page)
    page.get_by_label("First member").select_option(label="Ann Asker")
    page.get_by_label("Second member").select_option(label="Hal Helper")
    page.get_by_label("Why (kept for the safeguarding record)").fill("Safeguarding concern")
    page.get_by_role("button", name="Block this pair").click()
    expect(page.get_by_text("Blocked: these two members will never be matched.")).to_be_visible()
    expect(page.get_by_role("cell", name="Ann Asker and Hal Helper", exact=True)).to_be_visible()
    check_accessibility(page)
