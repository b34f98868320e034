"""A realistic demo community: the rows the app's own services write, every ledger check on.

`load_demo(session, size="S", seed=1)` creates a time bank (several for XL) with
members joining month by month, organisations of every kind, brokers, a
commissioner and an admin, then a history of exchanges with the shape of real
time banks: most members rarely trade, a small core trades a lot, category
popularity is Zipf-like, individual help outnumbers group activities, and there
are pot donations and grants, reversals, disputes, pending and auto-confirmed
exchanges.

`Builder` tells the story; a writer records it. `ServiceWriter` calls the
services one event at a time; `demo_bulk.BulkWriter` (the default) writes the
same rows in batches, with the database triggers on, so every ledger invariant
(zero-sum transfers, floors, balances = sum of postings, the hash chain) holds
either way. Deterministic for a seed: one random stream per bank (bank_rng) and a calendar
ending on END_DATE; no clock reads in generated content.
"""
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import os
import random
import time
from dataclasses import dataclass, field

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from timebank.community.auth import hash_password
from timebank.community.models import Category, MemberSkill, Membership, Organisation, User
from timebank.community.service import add_membership, create_organisation, create_timebank, create_user
from timebank.demo_bulk import BulkWriter
from timebank.exchanges import service as exchanges
from timebank.exchanges.models import COPRODUCTION_SUBTYPES, Exchange
from timebank.impact.rollups import rebuild_rollups
from timebank.matching import queries as matching_queries, service as matching
from timebank.errors import DomainError
from timebank.matching.models import HelpRequest
from timebank.ledger.models import Account
from timebank.ledger.service import ensure_system_accounts, post_transfer

DEMO_PASSWORD = "demo-password-123"
DEMO_LOGINS = [
    ("member@demo.timebank", "member", "Mina Member"),
    ("org@demo.timebank", "member", "Olu Organiser"),
    ("broker@demo.timebank", "broker", "Bea Broker"),
    ("commissioner@demo.timebank", "commissioner", "Cal Commissioner"),
    ("admin@demo.timebank", "admin", "Ada Admin"),
]

END_DATE = dt.date(2026, 10, 31)


@dataclass(frozen=True)
class Size:
    members: int
    organisations: int
    months: int
    events: int          # individual exchanges + activities + pot movements, all banks together
    banks: int = 1


SIZES = {
    "XS": Size(members=60, organisations=6, months=6, events=400),
    "S": Size(members=300, organisations=20, months=12, events=2_900),
    "M": Size(members=1_000, organisations=200, months=24, events=17_000),
    "L": Size(members=5_000, organisations=500, months=36, events=95_000),
    "XL": Size(members=100_000, organisations=3_000, months=60, events=950_000, banks=5),
}

WARDS = [  # name, postcode district, latitude, longitude (a fictional riverside town)
    ("Riverside", "RT1", 53.8008, -1.5491), ("Old Town", "RT1", 53.7965, -1.5420),
    ("Harbour", "RT2", 53.7912, -1.5602), ("Millfield", "RT2", 53.8101, -1.5705),
    ("Northgate", "RT3", 53.8220, -1.5488), ("St Anne's", "RT3", 53.8175, -1.5310),
    ("Eastbrook", "RT4", 53.8032, -1.5150), ("Ashdown", "RT4", 53.7890, -1.5205),
    ("Southmead", "RT5", 53.7801, -1.5399), ("Kingswood", "RT5", 53.7755, -1.5620),
    ("Westcliff", "RT6", 53.7988, -1.5850), ("Hollins", "RT6", 53.8123, -1.5960),
    ("Parkside", "RT7", 53.8290, -1.5702), ("Beckett", "RT7", 53.8350, -1.5280),
    ("Greenhill", "RT8", 53.7690, -1.5050), ("Canal Wharf", "RT8", 53.7930, -1.5000),
]
# Deprived inner wards have more members: a time bank grows where it started.
WARD_WEIGHTS = [14, 11, 10, 9, 8, 8, 7, 6, 6, 5, 4, 4, 3, 2, 2, 1]

AGE_BANDS = [("18-24", 5), ("25-34", 11), ("35-44", 14), ("45-54", 17), ("55-64", 18), ("65-74", 17),
             ("75+", 12)]
GENDERS = [("woman", 62), ("man", 33), ("non-binary", 2), ("prefer not to say", 3)]

# Most popular first: a few categories carry most hours (Zipf-like weights).
POPULARITY = ["Befriending", "Shopping & errands", "Gardening", "Lifts & transport", "DIY & repairs",
              "Computer help", "Peer support", "Walking group", "Admin & office", "Meals", "Tutoring", "Events",
              "Litter picking", "Reading", "Languages", "Cleaning", "Exercise", "Survey & feedback",
              "Patient panel", "Moving help", "Service design workshop", "Tenant inspection", "Neighbourhood watch"]

FIRST_NAMES = ["Aisha", "Ben", "Chloe", "Dev", "Ewa", "Femi", "Grace", "Hamid", "Iris", "Jack", "Kiran", "Lena",
               "Marek", "Nadia", "Owen", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Una", "Vik", "Wen", "Yusuf",
               "Zara", "Alan", "Brenda", "Colin", "Doreen", "Eileen", "Frank", "Gwen", "Harold", "Ivy", "Joan",
               "Kwame", "Lucy", "Mo", "Nell", "Olga", "Pat", "Rita", "Stan", "Tess", "Viv", "Wilf"]
SURNAMES = ["Ahmed", "Baker", "Chen", "Dawson", "Evans", "Fraser", "Gill", "Hughes", "Iqbal", "Jones", "Khan",
            "Lewis", "Murphy", "Nowak", "O'Brien", "Patel", "Quigley", "Reid", "Smith", "Taylor", "Uddin",
            "Varga", "Walsh", "Young", "Zielinski", "Okafor", "Mensah", "Kowalski", "Begum", "Hussain"]

ORG_KINDS = [("charity", 30), ("community_group", 28), ("school", 12), ("nhs", 8), ("council", 6),
             ("business", 10), ("other", 6)]
ORG_NAMES = {
    "council": ["{w} Council Housing Office", "{w} Library", "{w} Parks Team", "{w} Community Safety Hub"],
    "nhs": ["{w} GP Practice", "{w} Health Centre", "{w} Mental Health Team", "{w} Hospital Volunteers"],
    "school": ["{w} Primary School", "{w} Academy", "{w} Adult Learning Centre"],
    "charity": ["{w} Food Bank", "{w} Age Friends", "{w} Carers Centre", "{w} Refugee Welcome",
                "{w} Credit Union", "{w} Youth Trust"],
    "community_group": ["{w} Allotment Society", "{w} Tenants' Association", "{w} Friends of the Park",
                        "{w} Repair Café", "{w} Walking Club", "{w} Residents' Group"],
    "business": ["{w} Bakery", "{w} Print Shop", "{w} Bike Workshop", "{w} Café"],
    "other": ["{w} Church Hall", "{w} Mosque Community Room", "{w} Sports Club"],
}
ACTIVITY_TITLES = {
    "co_delivery": ["Litter pick", "Community lunch", "Park clean-up", "Coffee morning", "Tree planting",
                    "Digital drop-in", "Walking group", "Food bank sorting"],
    "co_design": ["Service design workshop", "Journey mapping session", "Residents' consultation"],
    "co_assessment": ["Tenant inspection", "Patient feedback panel", "Mystery shopping visit"],
    "co_commissioning": ["Participatory budgeting vote", "Priorities planning day", "Grants panel"],
}
OFFER_TEXTS = ["I have done {what} for years and enjoy it.", "Weekday afternoons suit me best for {what}.",
               "Happy to help with {what}; I can bring my own tools.", "I can offer {what} most weekends."]
REMOTE_OK = {"Computer help", "Languages", "Tutoring", "Admin & office", "Survey & feedback", "Befriending"}
OUTCOME_WEIGHTS = [("community_safety", 9), ("local_environment", 14), ("public_health", 18), ("social_care", 26),
                   ("education", 14), ("housing", 9), ("other", 10)]


@dataclass
class Person:
    membership_id: int
    user: User
    account_id: int | None
    joined: dt.date
    until: dt.date | None          # left or suspended on
    give_weight: float
    receive_weight: float
    skills: list[int] = field(default_factory=list)
    traded: bool = False


@dataclass
class Org:
    organisation_id: int
    account_id: int
    kind: str
    rep: User


class _Picker:
    """Weighted choice among the people eligible on a date (joined, not yet gone)."""

    def __init__(self, rng: random.Random, people: list[Person], attr: str):
        self.rng, self.people, self.attr = rng, people, attr
        self._month = None

    def at(self, day: dt.date):
        self.day = day
        key = (day.year, day.month)
        if key != self._month:
            self._month = key
            eligible = [p for p in self.people if getattr(p, self.attr) > 0 and p.joined <= day
                        and (p.until is None or p.until > day)]
            self._eligible = eligible
            self._cum = list(itertools.accumulate(getattr(p, self.attr) for p in eligible))
        return self

    def pick(self) -> Person | None:
        if not self._eligible:
            return None
        for _ in range(10):
            person = self._eligible[min(bisect.bisect(self._cum, self.rng.random() * self._cum[-1]),
                                        len(self._eligible) - 1)]
            if person.until is None or person.until > self.day:  # left or suspended since the month began
                return person
        return None


BULK_BATCH_ROWS = 20_000  # rows the bulk path gathers before writing them (one executemany per table)


class ServiceWriter:
    """The demo's reference path: every row through the app's own services, one flush at a time.

    The services stamp the wall clock; while the demo runs, a flush hook stamps new rows' creation times
    from the demo's calendar instead (`now`), so the same seed gives the same rows.
    """

    rows = 0

    def __init__(self, session):
        self.session = session
        self.now = None
        event.listen(Session, "before_flush", self._stamp_new)
        # The ledger writes transfers without the unit of work, so it asks the session for the time instead.
        session.info["clock"] = lambda: self.now
        session.info["emails"] = False  # seeded people are not real: no outbox rows (the bulk path writes none)

    def _stamp_new(self, session, _context, _instances):
        _stamp_unset_times(session, self.now)

    def __getattr__(self, name):
        return getattr(exchanges, name)  # log_exchange, confirm_exchange, record_group_activity...

    def create_user(self, session, *, email, display_name, password_hash=None):
        user = create_user(session, email=email, display_name=display_name)
        user.password_hash = password_hash
        return user

    def add_membership(self, session, **fields):
        return add_membership(session, **fields)

    def add_skill(self, membership_id, category_id):
        self.session.add(MemberSkill(membership_id=membership_id, category_id=category_id))

    def create_organisation(self, session, **fields):
        return create_organisation(session, **fields)

    def add_representative(self, organisation, user):
        organisation.representatives.append(user)

    def floor_of(self, account_id):
        return self.session.get(Account, account_id).floor_minutes

    def set_status(self, membership, status, note):
        membership.status, membership.risk_note = status, note

    def membership(self, membership_id):
        return self.session.get(Membership, membership_id)

    def organisation(self, organisation_id):
        return self.session.get(Organisation, organisation_id)

    def post_transfer(self, session, **fields):
        return post_transfer(session, **fields)

    def stamp_activity(self, activity, at):
        activity.created_at = at
        for exchange in self.session.scalars(select(Exchange).where(Exchange.activity_id == activity.id)):
            exchange.confirmed_at = at

    def create_offer(self, session, **fields):
        return self._stamp_listing(matching.create_offer(session, **fields))

    def create_request(self, session, **fields):
        return self._stamp_listing(matching.create_request(session, **fields))

    def _stamp_listing(self, listing):
        # The service opens listings from the wall clock; the demo's open on its own calendar.
        listing.expires_at = self.now + (listing.expires_at - listing.created_at)
        listing.created_at = self.now
        return listing

    def touch(self, _row, _table=None):
        pass

    def after_commit(self):
        pass

    def flush(self):
        self.session.flush()

    def finish(self):
        self.session.flush()
        event.remove(Session, "before_flush", self._stamp_new)
        self.session.info.pop("clock", None)
        self.session.info.pop("emails", None)


class Builder:
    def __init__(self, session, *, rng: random.Random, size: Size, slug: str, name: str, members: int,
                 organisations: int, events: int, logins: bool, echo, progress, commit_every: int | None,
                 via: str = "bulk", end: dt.date = END_DATE):
        self.session, self.rng, self.size = session, rng, size
        self.end = end  # the last day of the story: the demo's "today"
        self.via = via
        self.slug, self.name = slug, name
        self.n_members, self.n_orgs, self.n_events = members, organisations, events
        self.logins, self.echo, self.progress = logins, echo, progress
        self.bank = 0  # which of the community's banks (build_bank sets it)
        self.commit_every = commit_every
        self.start = _add_months(self.end.replace(day=1), 1 - size.months)
        self.balance: dict[int, int] = {}
        self.floor: dict[int, int] = {}
        self.people: list[Person] = []
        self.orgs: list[Org] = []
        self.stats = {"transfers": 0, "p2p": 0, "p2a": 0, "a2a": 0, "activities": 0, "collective_minutes": 0,
                      "individual_minutes": 0, "donations": 0, "grants": 0, "reversals": 0, "disputed": 0,
                      "pending": 0, "auto_confirmed": 0, "pending_applications": 0, "suspended": 0, "left": 0,
                      "offers": 0, "requests": 0, "matches": 0, "matches_logged": 0}
        self._since_commit = 0
        self._seq = itertools.count(1)
        # Strong references keep these rows in the session's identity map: no SELECT per session.get().
        self._keep: list = []
        self.pending: list = []
        self.confirmed: list = []
        self.status_changes: list = []  # (date, membership, status): members who leave or are suspended

    # --- population -------------------------------------------------------------------------------------------

    def build_population(self):
        session = self.session
        self.timebank = create_timebank(session, slug=self.slug, name=self.name)
        self.timebank_id = self.timebank.id
        self.floor_minutes = self.timebank.default_floor_minutes
        self.ceiling_minutes = self.timebank.default_ceiling_minutes
        self.auto_confirm_days = self.timebank.auto_confirm_days
        system = ensure_system_accounts(session, self.timebank_id)
        self.system = {code: account.id for code, account in system.items()}
        # Created by the services before the demo's clock runs: put them on the demo's calendar too.
        for row in (self.timebank, *system.values()):
            row.created_at = _at(self.start, 8)
        for account_id in self.system.values():
            self._track(account_id, session.get(Account, account_id).floor_minutes)
        self.staff = {}
        # Categories: only leaves carry skills; popularity by a fixed order with Zipf weights.
        leaves = session.scalars(select(Category).where(Category.timebank_id == self.timebank.id,
                                                        Category.parent_id.is_not(None))).all()
        by_name = {c.name: c for c in leaves}
        ordered = [by_name[n] for n in POPULARITY if n in by_name] + [c for c in leaves if c.name not in POPULARITY]
        self.categories = ordered
        self.category_names = {c.id: c.name for c in ordered}
        self.category_cum = list(itertools.accumulate(1 / (i + 1) ** 1.15 for i in range(len(ordered))))
        self.category_defaults = {c.id: (c.default_coproduction_type, c.default_outcome_area) for c in ordered}
        self.x = BulkWriter(session, self.timebank, leaves) if self.via == "bulk" else ServiceWriter(session)
        self.x.now = _at(self.start, 9)

        if self.logins:
            password_hash = None
            for email, role, display_name in DEMO_LOGINS:
                user = session.scalar(select(User).where(User.email == email))
                if user is None:
                    # One hash shared by the demo logins: argon2 is slow on purpose.
                    password_hash = password_hash or hash_password(DEMO_PASSWORD)
                    user = self.x.create_user(session, email=email, display_name=display_name,
                                              password_hash=password_hash)
                self.staff[email] = user
                if email == "org@demo.timebank":
                    continue  # joins below as an organisation's representative
                membership = self.x.add_membership(session, user=user, timebank=self.timebank, role=role,
                                                   joined_on=self.start, **self._profile(role="staff"))
                self._keep.append(membership)
                if email == "member@demo.timebank":
                    self.people.append(Person(membership.id, user, membership.account_id, self.start, None,
                                              give_weight=6.0, receive_weight=4.0,
                                              skills=self._skills(membership.id, 3)))
                    self._track(membership.account_id, self.floor_minutes)
        else:
            for role in ("broker", "commissioner"):
                user = self.x.create_user(session, email=f"{role}@{self.slug}.demo.timebank",
                                          display_name=f"{self.name} {role}")
                self.x.add_membership(session, user=user, timebank=self.timebank, role=role, joined_on=self.start)
                self.staff[role] = user
        broker_key = "broker@demo.timebank" if self.logins else "broker"
        self.broker = self.staff[broker_key]
        # A second broker joins for bigger banks.
        if self.n_members >= 500:
            user = self.x.create_user(session, email=f"broker2@{self.slug}.demo.timebank", display_name="Bo Broker")
            self.x.add_membership(session, user=user, timebank=self.timebank, role="broker", joined_on=self.start)

        self._members()
        self._organisations()
        self.x.flush()
        session.flush()
        if self.via == "services":
            self._keep.extend(session.scalars(select(Account).where(Account.timebank_id == self.timebank_id)).all())

    def _profile(self, role="member") -> dict:
        rng = self.rng
        ward, district, lat, lon = rng.choices(WARDS, weights=WARD_WEIGHTS)[0]
        profile = dict(ward=ward, postcode_district=district,
                       latitude=round(lat + rng.gauss(0, 0.004), 5), longitude=round(lon + rng.gauss(0, 0.006), 5),
                       availability=self._availability())
        if rng.random() < 0.82:  # the rest decline to share demographics
            profile.update(demographics_consent=True, age_band=_weighted(rng, AGE_BANDS),
                           gender=_weighted(rng, GENDERS), disability=rng.random() < 0.18)
        return profile

    def _availability(self) -> int:
        rng = self.rng
        bits = 0
        pattern = rng.random()
        for day in range(7):
            for part in range(3):
                weekday = day < 5
                p = (0.45 if weekday and part < 2 else 0.15) if pattern < 0.5 else \
                    (0.1 if weekday and part < 2 else 0.5) if pattern < 0.85 else 0.3
                if rng.random() < p:
                    bits |= 1 << (day * 3 + part)
        return bits

    def _skills(self, membership_id: int, n: int) -> list[int]:
        chosen = []
        for _ in range(n):
            category = self._category()
            if category not in chosen:
                chosen.append(category)
        for category_id in chosen:
            self.x.add_skill(membership_id, category_id)
        return chosen

    def _category(self) -> int:
        index = bisect.bisect(self.category_cum, self.rng.random() * self.category_cum[-1])
        return self.categories[min(index, len(self.categories) - 1)].id

    def _members(self):
        rng, session = self.rng, self.session
        days = (self.end - self.start).days
        bar = self._bar(self.n_members, f"{self.slug}: members")
        for i in range(self.n_members):
            # A third are founding members; the rest join month by month, faster as the bank grows.
            if rng.random() < 0.3:
                joined = self.start + dt.timedelta(days=rng.randrange(0, 31))
            else:
                joined = self.start + dt.timedelta(days=int(days * math.sqrt(rng.random())))
            joined = min(joined, self.end)
            self.x.now = _at(joined, 9)
            first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
            email = f"{first.lower()}.{last.lower().replace(chr(39), '')}.{i + 1}@{self.slug}.example.org"
            user = self.x.create_user(session, email=email, display_name=f"{first} {last}")
            profile = self._profile()
            fate = rng.random()
            status, until = "active", None
            if (self.end - joined).days < 45 and fate < 0.25:
                status = "pending"
                profile.update(references_received=rng.choice([0, 1, 1, 2]))
            elif fate < 0.005:
                status = "declined"
                profile["decline_reason"] = "References not received."
            if status == "active":
                profile.update(self._safety(joined))
                profile["induction_date"] = joined
            membership = self.x.add_membership(session, user=user, timebank=self.timebank, role="member",
                                               status=status, joined_on=joined, **profile)
            self._keep.append(membership)
            bar.update(1)
            if status != "active":
                self.stats["pending_applications"] += status == "pending"
                continue
            later = rng.random()
            if later < 0.07 and (self.end - joined).days > 60:
                until = joined + dt.timedelta(days=rng.randrange(30, (self.end - joined).days))
                self.status_changes.append((until, membership, "left", None))
                self.stats["left"] += 1
            elif later < 0.09 and (self.end - joined).days > 60:
                until = joined + dt.timedelta(days=rng.randrange(30, (self.end - joined).days))
                self.status_changes.append((until, membership, "suspended",
                                            "Suspended by a broker pending a review."))
                self.stats["suspended"] += 1
            # Heavy-tailed activity: over half never trade, a small core trades a great deal.
            if rng.random() < 0.52:
                give = 0.0
            else:
                give = rng.paretovariate(1.25)
            older = profile.get("age_band") in ("75+", "65-74")
            receive = 0.0 if give == 0 and rng.random() < 0.85 else \
                (give or 0.3) * rng.lognormvariate(0, 0.6) * (2.5 if older else 1.0)
            person = Person(membership.id, user, membership.account_id, joined, until, give, receive,
                            skills=self._skills(membership.id, rng.choice([1, 1, 2, 2, 3, 4])))
            self.people.append(person)
            self._track(membership.account_id, self.floor_minutes)
        bar.finish()

    def _safety(self, joined: dt.date) -> dict:
        rng = self.rng
        level = _weighted(rng, [("none", 30), ("basic", 40), ("standard", 20), ("enhanced", 10)])
        if level == "none":
            return {"safety_check_level": "none", "references_received": rng.choice([1, 2, 2])}
        # Checks last three years; some fall due within the next month.
        checked = joined - dt.timedelta(days=rng.randrange(0, 300))
        expires = checked + dt.timedelta(days=3 * 365)
        if rng.random() < 0.12:
            expires = self.end + dt.timedelta(days=rng.randrange(1, 30))
        return {"safety_check_level": level, "safety_check_date": checked, "safety_check_expires": expires,
                "references_received": 2}

    def _organisations(self):
        rng, session = self.rng, self.session
        names = set()
        bar = self._bar(self.n_orgs, f"{self.slug}: organisations")
        for i in range(self.n_orgs):
            kind = "council" if i == 0 else _weighted(rng, ORG_KINDS)
            ward = rng.choices(WARDS, weights=WARD_WEIGHTS)[0][0]
            name = rng.choice(ORG_NAMES[kind]).format(w=ward)
            while name in names:
                name = f"{name} ({len(names)})"
            names.add(name)
            self.x.now = _at(self.start, 9)
            organisation = self.x.create_organisation(session, timebank=self.timebank, name=name, kind=kind,
                                                      area=ward)
            self._keep.append(organisation)
            if i == 0 and self.logins:
                rep = self.staff["org@demo.timebank"]
            else:
                rep = self.x.create_user(session, email=f"rep{i + 1}@{self.slug}.example.org",
                                  display_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}")
            self._keep.append(self.x.add_membership(session, user=rep, timebank=self.timebank, role="member",
                                                    joined_on=self.start, **self._profile()))
            self.x.add_representative(organisation, rep)
            self._track(organisation.account_id, self.x.floor_of(organisation.account_id))
            org = Org(organisation.id, organisation.account_id, kind, rep)
            self.orgs.append(org)
            # Commissioned hours: councils and the NHS fund more volunteering than a café does.
            opening = {"council": 300, "nhs": 200, "school": 80, "charity": 120}.get(kind, 40) * 60
            self._commission(org, opening, self.start, f"Opening hours for {name}")
            bar.update(1)
        self.org_cum = list(itertools.accumulate(
            {"council": 5, "nhs": 4, "charity": 3, "school": 2, "community_group": 2}.get(o.kind, 1) *
            rng.paretovariate(1.5) for o in self.orgs))
        bar.finish()

    # --- history ----------------------------------------------------------------------------------------------

    def build_history(self):
        rng = self.rng
        months = [_add_months(self.start, k) for k in range(self.size.months)]
        # Activity follows membership: more events in later months as the bank grows.
        live = [sum(1 for p in self.people if p.joined <= _month_end(m) and p.give_weight > 0) or 1
                for m in months]
        total = sum(live)
        self.givers = _Picker(rng, self.people, "give_weight")
        self.receivers = _Picker(rng, self.people, "receive_weight")
        changes = sorted(self.status_changes, key=lambda c: (c[0], c[1].id))
        bar = self._bar(self.n_events, f"{self.slug}: exchanges", counted=True)
        previous = None
        for month, count in zip(months, live):
            n = round(self.n_events * count / total)
            last_day = min(_month_end(month), self.end)
            days = sorted(month + dt.timedelta(days=rng.randrange(0, (last_day - month).days + 1))
                          for _ in range(n))
            for day in days:
                if day != previous:
                    while changes and changes[0][0] <= day:
                        _, membership, status, note = changes.pop(0)
                        self.x.set_status(membership, status, note)
                    self.x.now = _at(day, 3)  # the nightly jobs
                    self._run_auto_confirm(day)
                    previous = day
                self.givers.at(day)
                self.receivers.at(day)
                self.x.now = _at(day, 12)
                self._event(day)
                bar.update(1)
                self._maybe_commit()
        bar.finish()
        for _, membership, status, note in changes:
            self.x.set_status(membership, status, note)
        self.x.now = _at(self.end, 3)
        self._run_auto_confirm(self.end)
        self.build_listings()
        self.x.finish()

    def build_listings(self):
        """Open offers and requests of members still active at the end, and organisations' opportunities."""
        rng, session = self.rng, self.session
        for person in self.people:
            if person.until is not None:
                continue
            membership = self.x.membership(person.membership_id)
            self.x.now = _at(self.end - dt.timedelta(days=rng.randrange(0, 21)), 10)
            if person.give_weight > 0 and rng.random() < 0.6:
                for category in person.skills[:rng.choice([1, 1, 2])]:
                    name = self.category_names[category]
                    self.x.create_offer(session, membership=membership, title=f"{name} – happy to help",
                                          category_id=category, description=rng.choice(OFFER_TEXTS).format(
                                              what=name.lower()), remote=name in REMOTE_OK)
                    self.stats["offers"] += 1
            if person.receive_weight > 0 and rng.random() < 0.25:
                category = self._category()
                name = self.category_names[category]
                self.x.create_request(session, user=person.user, timebank=self.timebank, membership=membership,
                                        title=f"Looking for help: {name.lower()}", category_id=category,
                                        urgency=_weighted(rng, [("low", 2), ("normal", 6), ("high", 2)]),
                                        estimated_minutes=rng.choice([60, 60, 90, 120, 180]),
                                        remote=name in REMOTE_OK)
                self.stats["requests"] += 1
        for org in self.orgs:
            if rng.random() < 0.5:
                category = self._category()
                kind = _weighted(rng, [("co_delivery", 60), ("co_design", 20), ("co_assessment", 20)])
                self.x.now = _at(self.end - dt.timedelta(days=rng.randrange(0, 21)), 10)
                self.x.create_request(
                    session, user=org.rep, timebank=self.timebank,
                    organisation=self.x.organisation(org.organisation_id),
                    title=rng.choice(ACTIVITY_TITLES[kind]) + " volunteers", category_id=category,
                    volunteers_needed=rng.randrange(2, 12), estimated_minutes=rng.choice([120, 180, 240]),
                    safety_check_level=rng.choice(["none", "none", "basic", "standard"]),
                    starts_on=self.end + dt.timedelta(days=rng.randrange(7, 60)))
                self.stats["requests"] += 1

    # How the brokers' suggestions for the open requests fared by the end: (stage, weight).
    MATCH_FATES = [("proposed", 20), ("declined", 15), ("accepted", 20), ("done", 15), ("logged", 30)]
    MATCHED_SHARE = 0.6  # of the open requests, the share a broker has worked on
    MATCHED_MAX = 250  # per time bank: bounds the seeding time of the large sizes

    def build_match_history(self):
        """The match funnel for the open requests: a broker proposed the best suggestion (the real ranking, as of
        the demo's last day) and the volunteer declined, accepted, did it, or logged the hours (an exchange
        waiting for the other side, so no balance moves). Runs after the rows are written, through the
        matching services; the timestamps are put on the demo's calendar."""
        session = self.session
        session.flush()
        if session.get_bind().dialect.name == "postgresql":
            # The tables were just filled in bulk: without fresh statistics (autovacuum may be off, or behind) the
            # planner picks poor plans for the suggestions queries below.
            for table in ("membership", "member_skill", "offer", "help_request", "match", "exchange", "account"):
                session.execute(text(f'ANALYZE "{table}"'))
        session.info["emails"] = False
        now = _at(self.end, 18)
        self._stamp_at = now
        # The services' rows (exchanges, notifications, audit events) on the demo's calendar, not the wall clock's.
        session.info["clock"] = lambda: self._stamp_at
        event.listen(Session, "before_flush", self._stamp_match_rows)
        try:
            self._match_requests(now)
        finally:
            event.remove(Session, "before_flush", self._stamp_match_rows)
            session.info.pop("emails", None)
            session.info.pop("clock", None)

    def _stamp_match_rows(self, session, _context, _instances):
        _stamp_unset_times(session, self._stamp_at)

    def _match_requests(self, now: dt.datetime):
        session, rng = self.session, self.rng
        requests = session.scalars(select(HelpRequest).where(HelpRequest.timebank_id == self.timebank_id,
                                                             HelpRequest.status == "open")
                                   .order_by(HelpRequest.id)).all()
        picked = [r for r in requests if rng.random() < self.MATCHED_SHARE][:self.MATCHED_MAX]
        demo_user = self.staff.get("member@demo.timebank")
        demo_member = next((p.membership_id for p in self.people if p.user is demo_user), None) if demo_user else None
        for request in picked:
            found = matching_queries.suggestions(session, request, limit=3, now=now, today=self.end)
            if not found:
                continue
            # The demo member gets a proposal to answer on their dashboard when they are among the best three.
            mine = next((f for f in found if f.member_id == demo_member), None)
            best, fate = (mine, "proposed") if mine else (found[0], _weighted(rng, self.MATCH_FATES))
            if mine:
                demo_member = None
            try:
                with session.begin_nested():
                    self._match(request, best, fate, now)
            except DomainError:
                continue  # e.g. a place filled by an earlier proposal in this loop: a broker would move on
        if demo_member is not None:  # else the first request the demo member could help with
            for request in requests[:200]:
                found = matching_queries.suggestions(session, request, limit=1, now=now, today=self.end,
                                                     only_member_id=demo_member)
                if found and request not in picked:
                    with session.begin_nested():
                        self._match(request, found[0], "proposed", now)
                    break
        session.flush()

    def _match(self, request, best, fate: str, now: dt.datetime):
        session, rng = self.session, self.rng
        # Not propose(): it checks the request against today's clock, while the demo's day is self.end; the
        # suggestions (as of self.end) already applied every hard filter.
        match = matching._mark_proposed(session, request, best.member_id, None, by_user_id=self.broker.id,
                                        score=best.score, reasons=best.reasons, plan_id=None)
        session.flush()
        # Suggested within a week of the request, proposed the same day, answered within three days.
        at = min(request.created_at + dt.timedelta(hours=rng.randrange(2, 24 * 7)), now - dt.timedelta(days=4))
        at = max(at, request.created_at)
        match.suggested_at = match.proposed_at = at
        self._stamp_at = at
        self.stats["matches"] += 1
        if fate == "proposed":
            return
        volunteer = session.get(Membership, best.member_id)
        matching.respond(session, match, accept=fate != "declined", by_membership=volunteer)
        match.responded_at = min(at + dt.timedelta(hours=rng.randrange(1, 72)), now)
        if fate in ("declined", "accepted"):
            return
        if fate == "done":
            matching.complete(session, match, by_membership=volunteer)
            match.completed_at = min(match.responded_at + dt.timedelta(hours=rng.randrange(24, 72)), now)
            return
        happened_on = min((match.responded_at + dt.timedelta(days=1)).date(), self.end)
        logged_at = min(match.responded_at + dt.timedelta(hours=rng.randrange(24, 72)), now)
        self._stamp_at = logged_at
        exchange = matching.log_hours(session, match, user=session.get(User, volunteer.user_id),
                                      happened_on=happened_on, today=self.end)
        match.completed_at = match.logged_at = exchange.created_at = logged_at
        self.stats["matches_logged"] += 1

    def _event(self, day: dt.date):
        r = self.rng.random()
        if r < 0.60:
            self._p2p(day)
        elif r < 0.78:
            self._p2a(day)
        elif r < 0.84:
            self._a2p(day)
        elif r < 0.86:
            self._a2a(day)
        elif r < 0.905:
            self._activity(day)
        elif r < 0.955:
            self._donation(day)
        elif r < 0.985:
            self._grant(day)
        else:
            self._reversal(day)

    def _minutes(self, mean_hours=2.0) -> int:
        # Mostly whole or half hours, a long tail of longer sessions.
        hours = min(self.rng.lognormvariate(math.log(mean_hours), 0.55), 8)
        return max(30, int(round(hours * 2)) * 30)

    def _tags(self, category_id: int, context: str) -> dict:
        rng = self.rng
        default_type, default_area = self.category_defaults[category_id]
        if context == "p2p":
            kind = _weighted(rng, [("co_delivery", 90), ("co_assessment", 4), ("co_design", 6)])
        else:
            kind = _weighted(rng, [("co_delivery", 55), ("co_design", 20), ("co_assessment", 15),
                                   ("co_commissioning", 10)])
        if default_type and default_type != "co_delivery" and rng.random() < 0.7:
            kind = default_type
        subtype = rng.choice(COPRODUCTION_SUBTYPES[kind]) if kind != "co_delivery" else \
            ("co_performing" if rng.random() < 0.85 else "co_managing")
        area = default_area if rng.random() < 0.7 and default_area else _weighted(rng, OUTCOME_WEIGHTS)
        return dict(category_id=category_id, coproduction_type=kind, coproduction_subtype=subtype,
                    outcome_area=area, substitutive=rng.random() < 0.3)

    def _fate(self, day: dt.date) -> str:
        """What becomes of a member-to-member exchange logged on `day`."""
        rng = self.rng
        if (self.end - day).days < self.auto_confirm_days and rng.random() < 0.6:
            return "pending"  # still waiting for the other side
        r = rng.random()
        if r < 0.03:
            return "disputed"
        if r < 0.11:
            return "auto_confirmed"  # the other side never answered: auto-confirm posts it
        return "confirmed"

    def _stamp(self, exchange: Exchange, day: dt.date, confirmed_after: int | None = None):
        # The service stamps the wall clock; the demo's story happens on its own fixed calendar.
        exchange.created_at = _at(day, 18)
        if confirmed_after is not None:
            exchange.confirmed_at = _at(day + dt.timedelta(days=confirmed_after), 9)
        self.x.touch(exchange)

    def _p2p(self, day):
        rng = self.rng
        provider = self.givers.pick()
        if provider is None:
            return
        for _ in range(6):
            recipient = self.receivers.pick()
            minutes = self._minutes()
            if recipient is not None and recipient is not provider and self._room(recipient.account_id, minutes):
                break
        else:
            return
        category = rng.choice(provider.skills) if provider.skills and rng.random() < 0.8 else self._category()
        tags = self._tags(category, "p2p")
        fields = dict(provider_id=provider.membership_id, recipient_id=recipient.membership_id, minutes=minutes,
                      happened_on=day, description=self._describe(category), category_id=category, tags=tags,
                      today=day)
        provider.traded = recipient.traded = True
        if rng.random() < 0.3:
            # Many members never use a computer: a broker records the exchange for them; it posts at once.
            exchange = self.x.record_exchange(self.session, user=self.broker, **fields)
            self._paid(recipient.account_id, provider.account_id, minutes)
            self._stamp(exchange, day, 0)
            self._confirmed(exchange, recipient.account_id, provider.account_id, (recipient, provider))
            self.stats["p2p"] += 1
            self.stats["individual_minutes"] += minutes
            return
        exchange = self.x.log_exchange(self.session, user=provider.user, **fields)
        self._stamp(exchange, day)
        fate = self._fate(day)
        if fate == "confirmed":
            self.x.confirm_exchange(self.session, exchange.id, user=recipient.user)
            self._paid(recipient.account_id, provider.account_id, minutes)
            self._stamp(exchange, day, rng.randrange(0, 4))
            self._confirmed(exchange, recipient.account_id, provider.account_id, (recipient, provider))
        elif fate == "disputed":
            self.x.dispute_exchange(self.session, exchange.id, user=recipient.user, reason=rng.choice(
                ["The time recorded is too long.", "This exchange did not happen.", "Logged twice by mistake."]))
            self.stats["disputed"] += 1
            if (self.end - day).days > 30 and rng.random() < 0.7:
                # Brokers settle most disputes within a few weeks.
                action = rng.choice(["cancel", "cancel", "confirm"])
                if action == "confirm" and not self._room(recipient.account_id, minutes):
                    action = "cancel"
                self.x.resolve_dispute(self.session, exchange.id, user=self.broker, action=action,
                                          reason="Talked to both members.", today=day + dt.timedelta(days=10))
                if action == "confirm":
                    self.stats["transfers"] += 1
                    self._paid(recipient.account_id, provider.account_id, minutes)
                    self._stamp(exchange, day, 10)
            return
        else:
            # Pending: hours are promised, so the demo keeps the payer's headroom for them.
            # Only the payer side: the provider is credited once it posts.
            self.balance[recipient.account_id] -= minutes
            self.pending.append((exchange, day, fate, provider.account_id))
            if fate == "pending":
                self.stats["pending"] += 1
                return
        self.stats["p2p"] += 1
        self.stats["individual_minutes"] += minutes

    def _run_auto_confirm(self, today: dt.date):
        """The nightly auto-confirm, run by the service as the real scheduler would."""
        due = [(e, payee) for e, day, fate, payee in self.pending if fate == "auto_confirmed"
               and day + dt.timedelta(days=self.auto_confirm_days) <= today]
        if not due:
            return
        confirmed = set(self.x.auto_confirm(self.session, today=today))
        for exchange, payee in due:
            if exchange.id in confirmed:
                self.balance[payee] += exchange.minutes
                self._stamp(exchange, exchange.happened_on, self.auto_confirm_days)
                self.stats["auto_confirmed"] += 1
                self.stats["transfers"] += 1
        self.pending = [item for item in self.pending if item[0].id not in confirmed]

    def _org(self) -> Org:
        index = bisect.bisect(self.org_cum, self.rng.random() * self.org_cum[-1])
        return self.orgs[min(index, len(self.orgs) - 1)]

    def _p2a(self, day):
        """A member helps an organisation's mission; its representative credits them (posts at once)."""
        provider = self.givers.pick()
        if provider is None:
            return
        org = self._org()
        minutes = self._minutes(2.5)
        self._fund(org, minutes, day)
        category = self._category()
        exchange = self.x.credit_volunteer(
            self.session, user=org.rep, organisation_id=org.organisation_id, membership_id=provider.membership_id,
            minutes=minutes, happened_on=day, description=self._describe(category), category_id=category,
            tags=self._tags(category, "p2a"), today=day)
        self._paid(org.account_id, provider.account_id, minutes)
        self._stamp(exchange, day, 0)
        self._confirmed(exchange, org.account_id, provider.account_id, (provider,))
        provider.traded = True
        self.stats["p2a"] += 1
        self.stats["individual_minutes"] += minutes

    def _a2p(self, day):
        """A member spends hours with an organisation: a course place, a room, a swim."""
        recipient = None
        for _ in range(6):
            candidate = self.givers.pick()  # those who earned hours are those who spend them at organisations
            minutes = self._minutes(1.5)
            if candidate is not None and self._room(candidate.account_id, minutes):
                recipient = candidate
                break
        if recipient is None:
            return
        org = self._org()
        category = self._category()
        exchange = self.x.spend_with_organisation(
            self.session, user=recipient.user, membership_id=recipient.membership_id,
            organisation_id=org.organisation_id, minutes=minutes, happened_on=day,
            description=f"Place at {self._describe(category).lower()}", category_id=category,
            tags=self._tags(category, "p2a"), today=day)
        self._paid(recipient.account_id, org.account_id, minutes)
        self._stamp(exchange, day, 0)
        self._confirmed(exchange, recipient.account_id, org.account_id, (recipient,))
        recipient.traded = True
        self.stats["p2a"] += 1
        self.stats["individual_minutes"] += minutes

    def _a2a(self, day):
        """Organisations trade spare capacity: a minibus, a room, help writing a bid."""
        provider, recipient = self._org(), self._org()
        if provider is recipient:
            return
        minutes = self._minutes(3.0)
        self._fund(recipient, minutes, day)
        what = self.rng.choice(["Minibus loan", "Meeting room", "Help writing a funding bid", "Printing",
                                "Shared stall at the summer fair"])
        category = self._category()
        exchange = self.x.organisation_exchange(
            self.session, user=recipient.rep, provider_organisation_id=provider.organisation_id,
            recipient_organisation_id=recipient.organisation_id, minutes=minutes, happened_on=day, description=what,
            category_id=category, tags=self._tags(category, "a2a"), today=day)
        self._paid(recipient.account_id, provider.account_id, minutes)
        self._stamp(exchange, day, 0)
        self._confirmed(exchange, recipient.account_id, provider.account_id, (recipient, provider))
        self.stats["a2a"] += 1
        self.stats["individual_minutes"] += minutes

    def _activity(self, day):
        """Collective co-production: an organisation credits everyone who took part, in one transfer."""
        rng = self.rng
        org = self._org()
        # 5 to 60 people, most events small.
        size = min(60, 5 + int(rng.paretovariate(1.2) * 4) - 4)
        participants = {}
        for _ in range(size * 2):
            person = self.givers.pick() if rng.random() < 0.7 else self.receivers.pick()
            if person is not None:
                participants[person.membership_id] = person
            if len(participants) >= size:
                break
        if len(participants) < 5:
            return
        duration = self._minutes(2.0)
        legs = [(p, duration if rng.random() < 0.85 else max(30, duration - 30)) for p in participants.values()]
        total = sum(m for _, m in legs)
        self._fund(org, total, day)
        kind = _weighted(rng, [("co_delivery", 50), ("co_design", 20), ("co_assessment", 15),
                               ("co_commissioning", 15)])
        title = rng.choice(ACTIVITY_TITLES[kind])
        category = self._category()
        tags = self._tags(category, "group")
        tags.update(coproduction_type=kind, coproduction_subtype=rng.choice(COPRODUCTION_SUBTYPES[kind]))
        activity = self.x.record_group_activity(
            self.session, user=org.rep, organisation_id=org.organisation_id, title=title, happened_on=day,
            participants=[(p.membership_id, m) for p, m in legs], category_id=category, tags=tags,
            people_reached=len(legs) * rng.randrange(2, 20), today=day)
        self.x.stamp_activity(activity, _at(day, 20))
        self.balance[org.account_id] -= total
        for person, minutes in legs:
            person.traded = True
            self.balance[person.account_id] += minutes
        self.stats["activities"] += 1
        self.stats["transfers"] += 1
        self.stats["collective_minutes"] += total

    def _donation(self, day):
        best = None
        for _ in range(8):
            person = self.givers.pick()
            if person is not None and (best is None or self.balance[person.account_id] >
                                       self.balance[best.account_id]):
                best = person
        if best is None or self.balance[best.account_id] < 600:
            return
        minutes = self.rng.choice([60, 60, 120, 180, 300])
        self.x.donate_to_pot(self.session, user=best.user, timebank_id=self.timebank_id, minutes=minutes,
                                note="Donation to the community pot", today=day)
        self._paid(best.account_id, self.system["pot"], minutes)
        self.stats["donations"] += 1
        self.stats["transfers"] += 1

    def _grant(self, day):
        pot = self.system["pot"]
        worst = None
        for _ in range(8):
            person = self.receivers.pick()
            if person is not None and (worst is None or self.balance[person.account_id] <
                                       self.balance[worst.account_id]):
                worst = person
        minutes = self.rng.choice([60, 120, 180, 240])
        if worst is None or self.balance[pot] < minutes or \
                self.balance[worst.account_id] + minutes > self._ceiling(worst.account_id):
            return
        self.x.grant_from_pot(self.session, user=self.broker, membership_id=worst.membership_id,
                                 minutes=minutes, reason="Member cannot reciprocate at present", today=day)
        self._paid(pot, worst.account_id, minutes)
        worst.traded = True
        self.stats["grants"] += 1
        self.stats["transfers"] += 1

    def _reversal(self, day):
        """A broker corrects a mistake: the transfer is mirrored (never edited) and, often, re-recorded."""
        rng = self.rng
        for _ in range(4):
            if not self.confirmed:
                return
            index = rng.randrange(len(self.confirmed))
            exchange, payer, payee, people = self.confirmed[index]
            if self._room(payee, exchange.minutes) and all(p.until is None or p.until > day for p in people):
                break
        else:
            return
        self.confirmed.pop(index)
        reason = rng.choice(["Logged against the wrong date.", "Hours entered twice.",
                             "Recorded in hours instead of minutes."])
        replacement = None
        if reason != "Hours entered twice." and exchange.minutes > 30 and self._room(payer, 30):
            replacement = {"minutes": exchange.minutes - 30}
        _, new = self.x.correct_exchange(self.session, exchange.id, user=self.broker, reason=reason,
                                            replacement=replacement, today=day)
        self._paid(payee, payer, exchange.minutes)
        self.stats["reversals"] += 1
        self.stats["transfers"] += 1
        self.stats["individual_minutes"] -= exchange.minutes
        if new is not None:
            self._paid(payer, payee, new.minutes)
            self._stamp(new, day, 0)
            self.stats["transfers"] += 1
            self.stats["individual_minutes"] += new.minutes

    # --- ledger -----------------------------------------------------------------------------------------------

    def _track(self, account_id: int, floor: int | None):
        self.balance[account_id] = 0
        self.floor[account_id] = floor

    def _room(self, account_id: int, minutes: int) -> bool:
        floor = self.floor[account_id]
        return floor is None or self.balance[account_id] - minutes >= floor

    def _ceiling(self, account_id: int) -> float:
        ceiling = self.ceiling_minutes
        return math.inf if ceiling is None else ceiling

    def _paid(self, payer: int, payee: int, minutes: int):
        self.balance[payer] -= minutes
        self.balance[payee] += minutes

    def _confirmed(self, exchange: Exchange, payer: int, payee: int, people=()):
        self.stats["transfers"] += 1
        self._since_commit += 1
        if exchange.kind != "a2a":
            self.confirmed.append((exchange, payer, payee, people))
            del self.confirmed[:-300]  # reversals correct recent mistakes

    def _fund(self, org: Org, minutes: int, day: dt.date):
        """Commissioners top up an organisation before it runs out of hours to give."""
        if not self._room(org.account_id, minutes + 600):
            self._commission(org, max(minutes, 100 * 60), day, "Commissioned hours top-up")

    def _commission(self, org: Org, minutes: int, day: dt.date, memo: str):
        """Hours a commissioner funds an organisation with: issued by the ledger, not an exchange."""
        self.x.post_transfer(self.session, timebank_id=self.timebank_id, kind="opening" if "Opening" in memo else
                      "adjustment", postings=[(self.system["issuance"], -minutes), (org.account_id, minutes)],
                      effective_date=day, memo=memo, recorded_by_user_id=self.broker.id,
                      idempotency_key=f"demo-commission-{self.slug}-{next(self._seq)}",
                      metadata={"organisation_id": org.organisation_id})
        self._paid(self.system["issuance"], org.account_id, minutes)
        self.stats["transfers"] += 1

    def _maybe_commit(self):
        if self.via == "services":
            self.session.flush()  # rows added without a flush (audit events) take this event's time
        if self.via == "bulk" and self.x.rows >= BULK_BATCH_ROWS:
            self.x.flush()
            self.x.rows = 0
        # Large sizes commit every N transfers to bound the transaction (and PostgreSQL's deferred checks).
        if self.commit_every and self._since_commit >= self.commit_every:
            self.x.flush()
            self.session.commit()
            self.x.after_commit()
            self._since_commit = 0

    # --- helpers ----------------------------------------------------------------------------------------------

    def _describe(self, category_id: int) -> str:
        return self.category_names[category_id]

    def _bar(self, length, label, counted: bool = False):
        """A progress bar on the terminal; in a worker process, the shared count of events (`counted` bars)."""
        if _SHARED_PROGRESS is not None:
            return _SharedBar(self.bank) if counted else _Bar(None)
        if self.progress:
            import click

            bar = click.progressbar(length=length, label=label, file=None)
            bar.__enter__()
            return _Bar(bar)
        return _Bar(None)


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def finish(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _stamp_unset_times(session, when: dt.datetime) -> None:
    """Before a flush: new rows' creation times from the demo's calendar, where the services left the default."""
    for obj in session.new:
        for name in ("created_at", "recorded_at", "at", "suggested_at"):
            if hasattr(type(obj), name) and getattr(obj, name) is None:
                setattr(obj, name, when)


def _weighted(rng: random.Random, pairs) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, 28))


def _month_end(day: dt.date) -> dt.date:
    return _add_months(day.replace(day=1), 1) - dt.timedelta(days=1)


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


# XL's banks: of very different sizes, as in a real network (shares of the members, organisations and events).
BANK_SHARES = (0.4, 0.25, 0.15, 0.12, 0.08)


def bank_rng(seed: int, bank: int) -> random.Random:
    """Each bank has its own random stream, so a bank is the same whether built alone, after others or beside
    them in another process. The first bank's stream is random.Random(seed), as it was for one-bank sizes."""
    return random.Random(seed if bank == 0 else f"{seed}/bank {bank}")


@dataclass(frozen=True)
class BankPlan:
    """What one worker needs to build one bank (picklable: it crosses to a worker process)."""
    size: str
    seed: int
    bank: int
    banks: int
    slug: str
    via: str
    commit_every: int | None
    end: dt.date


def _bank_slug(slug: str, bank: int) -> str:
    return slug if bank == 0 else f"{slug}-{bank + 1}"


def _share(plan: BankPlan) -> float:
    shares = BANK_SHARES[:plan.banks]
    return shares[plan.bank] / sum(shares) if plan.banks > 1 else 1.0


def _events(plan: BankPlan) -> int:
    return int(SIZES[plan.size].events * _share(plan))


def build_bank(session, plan: BankPlan, *, echo=print, progress: bool = False) -> dict:
    """Build one bank of the demo (population, history, match history, roll-ups); returns its summary."""
    spec = SIZES[plan.size]
    share = _share(plan)
    builder = Builder(session, rng=bank_rng(plan.seed, plan.bank), size=spec, slug=_bank_slug(plan.slug, plan.bank),
                      name="Riverside Time Bank" if plan.bank == 0 else f"Time Bank {plan.bank + 1}",
                      members=max(10, int(spec.members * share)),
                      organisations=max(3, int(spec.organisations * share)),
                      events=_events(plan), logins=plan.bank == 0, echo=echo, progress=progress,
                      commit_every=plan.commit_every, via=plan.via, end=plan.end)
    builder.bank = plan.bank
    phases = {}
    # The bulk path writes rows without the ORM, so the report roll-up's session hook never saw them:
    # rebuild the roll-up from the raw rows (on the service path this gives the same rows again).
    for name, step in (("population", builder.build_population), ("history", builder.build_history),
                       ("match history", builder.build_match_history),
                       ("roll-ups", lambda: rebuild_rollups(session, builder.timebank_id))):
        started = time.perf_counter()
        step()
        phases[name] = time.perf_counter() - started
    return {"slug": builder.slug, "stats": dict(builder.stats), "members": len(builder.people),
            "traded": sum(1 for p in builder.people if p.traded), "organisations": len(builder.orgs),
            "phases": phases}


def _build_bank_in_worker(url: str, plan: BankPlan) -> dict:
    """A worker process: its own app and connection; builds one bank and commits it."""
    from timebank import create_app
    from timebank.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        try:
            summary = build_bank(db.session, plan, echo=lambda *_args, **_kw: None)
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()
    return summary


def default_jobs(session, commit_every: int | None) -> int:
    """How many banks to build at once by default: on PostgreSQL with commits as it goes, one more worker than the
    CPUs (each worker and its database connection take turns on the CPU); else one, in this process."""
    if session.get_bind().dialect.name == "postgresql" and commit_every:
        return (os.cpu_count() or 1) + 1
    return 1


# In a worker process: the shared count of events written, one counter per bank (see _build_in_parallel).
_SHARED_PROGRESS = None


def _init_worker(counters) -> None:
    global _SHARED_PROGRESS
    _SHARED_PROGRESS = counters


class _SharedBar:
    """A worker's progress through its bank's events, added to the bank's shared counter every few hundred."""

    def __init__(self, bank: int):
        self.bank, self.pending = bank, 0

    def update(self, n):
        self.pending += n
        if self.pending >= 500:
            self.finish()

    def finish(self):
        with _SHARED_PROGRESS.get_lock():
            _SHARED_PROGRESS[self.bank] += self.pending
        self.pending = 0


def _build_in_parallel(session, plans: list[BankPlan], jobs: int, echo, progress: bool) -> list[dict]:
    """Build the banks in `jobs` worker processes, biggest first (they are independent: one stream, one slug and
    one set of accounts each). Each worker commits its bank; the caller's session writes nothing. With
    `progress`, one bar for the events of every bank."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    import multiprocessing

    import click

    url = session.get_bind().url.render_as_string(hide_password=False)
    summaries: dict[int, dict] = {}
    # spawn, not fork: a forked child would share the parent's open database connections.
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", len(plans))
    bar = click.progressbar(length=sum(_events(p) for p in plans), label="exchanges, all banks") if progress else None
    shown = 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(counters,)) as pool:
        futures = {pool.submit(_build_bank_in_worker, url, plan): plan for plan in plans}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1, return_when=FIRST_COMPLETED)
            if bar is not None:
                written = sum(counters[:])
                bar.update(written - shown)
                shown = written
            for future in done:
                plan = futures[future]
                summaries[plan.bank] = future.result()
                if bar is None:
                    echo(f"  built {summaries[plan.bank]['slug']}")
    if bar is not None:
        bar.render_finish()
    return [summaries[plan.bank] for plan in sorted(plans, key=lambda p: p.bank)]


def load_demo(session, *, size: str = "S", seed: int = 1, slug: str = "riverside", echo=print,
              progress: bool = False, commit_every: int | None = None, via: str = "bulk",
              end_date: dt.date | None = None, jobs: int = 1, banks: int | None = None):
    """Build the demo community; flushes (and commits only every `commit_every` transfers when asked).

    Returns a summary dict. The first (or only) time bank is `slug`; XL adds `slug-2`, `slug-3`...
    `via="bulk"` (the default) writes the rows the services would write, in batches (timebank.demo_bulk);
    `via="services"` calls the services one event at a time (slower; the reference the tests compare with).
    `end_date` is the story's last day (default END_DATE, a fixed date, so a seed always gives the same rows;
    `make run` passes yesterday, so the demo is current whenever it is loaded).
    `jobs` > 1 builds several banks at once in worker processes (PostgreSQL only: each worker commits its own
    bank as it goes, so `commit_every` is required). `banks` overrides the size's number of banks (tests).
    """
    if via not in ("bulk", "services"):
        raise ValueError(f"via must be 'bulk' or 'services', not {via!r}")
    size = size.upper()
    spec = SIZES[size]
    n_banks = banks or spec.banks
    if n_banks > len(BANK_SHARES):
        raise ValueError(f"at most {len(BANK_SHARES)} banks")
    plans = [BankPlan(size=size, seed=seed, bank=bank, banks=n_banks, slug=slug, via=via, commit_every=commit_every,
                      end=end_date or END_DATE) for bank in range(n_banks)]
    started = time.perf_counter()
    jobs = min(jobs, n_banks)
    if jobs > 1:
        if session.get_bind().dialect.name != "postgresql" or not commit_every:
            raise ValueError("several jobs need PostgreSQL and commit_every (each worker commits its bank)")
        session.commit()  # the workers' connections must see whatever the caller has written
        summaries = _build_in_parallel(session, plans, jobs, echo, progress)
    else:
        summaries = [build_bank(session, plan, echo=echo, progress=progress) for plan in plans]
    summary = _summary(summaries, time.perf_counter() - started)
    for line in summary["lines"]:
        echo(line)
    return summary


def _summary(banks: list[dict], seconds) -> dict:
    totals: dict[str, int] = {}
    for b in banks:
        for key, value in b["stats"].items():
            totals[key] = totals.get(key, 0) + value
    members = sum(b["members"] for b in banks)
    traded = sum(b["traded"] for b in banks)
    orgs = sum(b["organisations"] for b in banks)
    hours = (totals["individual_minutes"] + totals["collective_minutes"]) / 60
    lines = [
        f"Demo community: {', '.join(b['slug'] for b in banks)} ({seconds:.1f} s)",
        f"  members with accounts {members:,} ({members - traded:,} never traded), "
        f"pending applications {totals['pending_applications']:,}, left {totals['left']:,}, "
        f"suspended {totals['suspended']:,}",
        f"  organisations {orgs:,}; transfers {totals['transfers']:,}; hours exchanged {hours:,.0f} "
        f"(collective {totals['collective_minutes'] / 60:,.0f})",
        f"  exchanges p2p {totals['p2p']:,}, p2a {totals['p2a']:,}, a2a {totals['a2a']:,}; "
        f"group activities {totals['activities']:,}",
        f"  pot donations {totals['donations']:,}, grants {totals['grants']:,}; reversals {totals['reversals']:,}; "
        f"disputed {totals['disputed']:,}; pending {totals['pending']:,}; auto-confirmed "
        f"{totals['auto_confirmed']:,}",
        f"  open offers {totals['offers']:,}, open requests and opportunities {totals['requests']:,}; "
        f"matches proposed {totals['matches']:,} ({totals['matches_logged']:,} with hours logged)",
    ]
    return {"timebanks": [b["slug"] for b in banks], "seconds": seconds, "members": members,
            "phases": {b["slug"]: b["phases"] for b in banks},
            "never_traded": members - traded, "organisations": orgs, "hours": hours, "lines": lines, **totals}


def print_logins(echo=print):
    echo("Demo logins (demo only; password for all: %s):" % DEMO_PASSWORD)
    for email, role, _name in DEMO_LOGINS:
        label = "organisation representative" if email.startswith("org@") else role
        echo(f"  {label:<28} {email}")
