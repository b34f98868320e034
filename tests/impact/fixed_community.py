"""A small fixed community whose report figures are computed by hand in test_impact_figures.py.

Transfers go through the ledger verbs; exchange rows are inserted directly (the exchanges verbs are another branch).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from timebank.community.models import TimeBank
from timebank.community.service import add_membership, create_organisation, create_timebank, create_user
from timebank.exchanges.models import Exchange, GroupActivity
from timebank.ledger.service import post_transfer, reverse_transfer, system_account

D = dt.date
Q1 = (D(2025, 1, 1), D(2025, 3, 31))


def post(session, timebank_id, kind, postings, effective_date):
    return post_transfer(session, timebank_id=timebank_id, kind=kind, postings=postings,
                         effective_date=effective_date)


def exchange(session, tb, provider, recipient, minutes, on, *, logger, **tags):
    transfer = post(session, tb.id, "exchange", [(recipient.account_id, -minutes), (provider.account_id, minutes)], on)
    row = Exchange(timebank_id=tb.id, kind="p2p", provider_membership_id=provider.id,
                   recipient_membership_id=recipient.id, minutes=minutes, happened_on=on, status="confirmed",
                   transfer_id=transfer.id, logged_by_user_id=logger.id, extra={}, **tags)
    session.add(row)
    session.flush()
    return row


def reverse(session, row: Exchange, on: dt.date):
    reversal = reverse_transfer(session, row.transfer_id, reason="correction", effective_date=on)
    row.status = "reversed"
    session.flush()
    return reversal


def build(session, slug="fixed", settings=None):
    """Members A-E, organisation O; exchanges in Q4 2024 and Q1 2025 (see the test for the figures)."""
    tb = create_timebank(session, slug=slug, name=f"Fixed {slug}")
    tb.settings = settings if settings is not None else {"impact": {
        "rates": [{"level": "low", "rate": "10.00", "currency": "GBP", "source": "Minimum wage", "year": 2025},
                  {"level": "central", "rate": "12.60", "currency": "GBP", "source": "Real living wage", "year": 2025},
                  {"level": "high", "rate": "20.00", "currency": "GBP", "source": "Average wage", "year": 2025}],
        "funding": [{"from": "2025-01-01", "to": "2025-12-31", "amount": "3650", "currency": "GBP",
                     "source": "Council grant"}]}}
    session.flush()

    def person(name, joined, **profile):
        user = create_user(session, email=f"{name}-{slug}@example.test", display_name=f"Person {name}")
        return add_membership(session, user=user, timebank=tb, joined_on=joined, **profile)

    a = person("a", D(2024, 6, 1), ward="North", demographics_consent=True, age_band="25-34", gender="female")
    b = person("b", D(2024, 6, 1), ward="North", demographics_consent=True, age_band="65+", gender="male")
    c = person("c", D(2025, 1, 10), ward="South", demographics_consent=False, age_band="35-44", gender="male")
    d = person("d", D(2025, 2, 1), ward="South", demographics_consent=True, age_band="25-34", gender="female")
    e = person("e", D(2024, 1, 1), ward="North")
    org = create_organisation(session, timebank=tb, name="Council Parks", kind="council")
    logger = a.user
    from timebank.community.models import Category
    befriending = session.scalar(select(Category).where(Category.timebank_id == tb.id,
                                                        Category.name == "Befriending"))
    # previous period
    ex5 = exchange(session, tb, a, b, 30, D(2024, 12, 10), logger=logger, category_id=befriending.id,
                   coproduction_type="co_delivery", outcome_area="social_care")
    exchange(session, tb, b, a, 45, D(2024, 11, 5), logger=logger, coproduction_type="co_delivery",
             outcome_area="public_health")
    # Q1 2025
    ex1 = exchange(session, tb, a, b, 120, D(2025, 1, 15), logger=logger, category_id=befriending.id,
                   coproduction_type="co_delivery", outcome_area="social_care")
    ex2 = exchange(session, tb, b, a, 60, D(2025, 2, 10), logger=logger, coproduction_type="co_delivery",
                   outcome_area="public_health")
    exchange(session, tb, c, d, 90, D(2025, 2, 20), logger=logger, coproduction_type="co_design",
             outcome_area="other", substitutive=True)
    reverse(session, ex5, D(2025, 1, 20))
    on = D(2025, 3, 5)
    transfer = post(session, tb.id, "group_activity",
                    [(org.account_id, -540), (a.account_id, 180), (c.account_id, 180), (d.account_id, 180)], on)
    activity = GroupActivity(timebank_id=tb.id, organisation_id=org.id, title="Park clean-up", happened_on=on,
                             coproduction_type="co_delivery", outcome_area="local_environment", people_reached=40,
                             transfer_id=transfer.id, recorded_by_user_id=logger.id)
    session.add(activity)
    session.flush()
    for m in (a, c, d):
        session.add(Exchange(timebank_id=tb.id, kind="p2a", provider_membership_id=m.id,
                             recipient_organisation_id=org.id, minutes=180, happened_on=on, status="confirmed",
                             transfer_id=transfer.id, logged_by_user_id=logger.id, coproduction_type="co_delivery",
                             outcome_area="local_environment", collective=True, activity_id=activity.id, extra={}))
    pot = system_account(session, tb.id, "pot")
    post(session, tb.id, "donation", [(a.account_id, -60), (pot.id, 60)], D(2025, 1, 5))
    post(session, tb.id, "grant", [(pot.id, -30), (c.account_id, 30)], D(2025, 3, 1))
    session.flush()
    requests(session, tb, a, b, c, d, e, org)
    return {"timebank": tb, "a": a, "b": b, "c": c, "d": d, "e": e, "org": org, "ex1": ex1, "ex2": ex2}


def requests(session, tb, a, b, c, d, e, org):
    """Requests and matches for unmet need and time to match (figures in test_impact_unmet_need.py)."""
    from timebank.community.models import Category
    from timebank.matching.models import HelpRequest, Match

    cats = {name: session.scalar(select(Category.id).where(Category.timebank_id == tb.id, Category.name == name))
            for name in ("Befriending", "Gardening")}
    at = dt.datetime
    far = at(2030, 1, 1)

    def request(key, member, category, area, created, closed=None, organisation=None, expires=far):
        row = HelpRequest(timebank_id=tb.id, membership_id=None if organisation else member.id,
                          organisation_id=organisation.id if organisation else None,
                          created_by_user_id=(member or a).user_id, category_id=cats[category], title=key,
                          area=area, status="closed" if closed else "open", created_at=created, expires_at=expires,
                          closed_at=closed)
        session.add(row)
        session.flush()
        return row

    def match(req, volunteer, status, responded):
        session.add(Match(timebank_id=tb.id, request_id=req.id, membership_id=volunteer.id, status=status,
                          suggested_at=req.created_at, proposed_at=req.created_at, responded_at=responded))

    request("R1", a, "Befriending", "North", at(2025, 1, 5, 9))  # open all quarter: unmet
    r2 = request("R2", b, "Befriending", "North", at(2025, 1, 10, 12))
    match(r2, c, "accepted", at(2025, 1, 12, 12))  # matched in 2 days
    r3 = request("R3", d, "Gardening", "South", at(2025, 2, 1))
    match(r3, a, "declined", at(2025, 2, 3))  # a declined match does not meet the need: unmet
    request("R4", c, "Gardening", "South", at(2025, 3, 20))  # open only 12 days at the end of March
    r5 = request("R5", e, "Befriending", "North", at(2025, 2, 10))
    match(r5, b, "done", at(2025, 2, 20))  # 10 days
    request("R6", None, "Gardening", None, at(2024, 12, 1), closed=at(2025, 1, 15), organisation=org)
    r7 = request("R7", a, "Gardening", None, at(2025, 1, 20))
    match(r7, d, "logged", at(2025, 3, 15))  # 54 days
    r8 = request("R8", b, "Gardening", "North", at(2025, 3, 1))
    match(r8, c, "accepted", at(2025, 4, 10))  # matched after the quarter: unmet at its end
    request("R9", e, "Befriending", "East", at(2025, 1, 2), expires=at(2025, 3, 3))  # expired: not counted
    session.flush()


def timebank_of(session, slug) -> TimeBank:
    return session.scalar(select(TimeBank).where(TimeBank.slug == slug))
