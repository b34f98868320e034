"""Verbs for time banks, people and organisations. Services flush; callers commit."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from timebank.community.auth import hash_password, normalise_email, user_by_email
from timebank.community.models import ROLES, AuditEvent, Category, Membership, Organisation, TimeBank, User
from timebank.errors import Conflict, NotFound, ValidationFailed
from timebank.ledger.service import ensure_system_accounts, open_account

DEFAULT_CATEGORIES = {
    "Home & garden": (["Gardening", "DIY & repairs", "Cleaning", "Moving help"], "co_delivery", "local_environment"),
    "Care & company": (["Befriending", "Shopping & errands", "Lifts & transport", "Meals"], "co_delivery",
                       "social_care"),
    "Health & wellbeing": (["Peer support", "Walking group", "Exercise"], "co_delivery", "public_health"),
    "Learning": (["Tutoring", "Languages", "Computer help", "Reading"], "co_delivery", "education"),
    "Community": (["Litter picking", "Events", "Neighbourhood watch", "Admin & office"], "co_delivery",
                  "community_safety"),
    "Having a say": (["Patient panel", "Tenant inspection", "Service design workshop", "Survey & feedback"],
                     "co_design", "other"),
}


def log_audit(session, action: str, *, actor_user_id: int | None = None, timebank_id: int | None = None,
              target_type: str | None = None, target_id: int | None = None, **detail) -> AuditEvent:
    event = AuditEvent(action=action, actor_user_id=actor_user_id, timebank_id=timebank_id,
                       target_type=target_type, target_id=target_id, detail=detail)
    session.add(event)
    return event


def create_timebank(session, *, slug: str, name: str, default_floor_minutes: int = -600) -> TimeBank:
    slug = slug.strip().lower()
    if not slug or not slug.replace("-", "").isalnum() or len(slug) > 64:
        raise ValidationFailed("A time bank's short name uses letters, numbers and hyphens only.",
                               errors={"slug": ["Use letters, numbers and hyphens."]})
    if session.scalar(select(TimeBank).where(TimeBank.slug == slug)):
        raise Conflict(f"A time bank called {slug!r} already exists.", code="timebank_exists")
    timebank = TimeBank(slug=slug, name=name.strip(), default_floor_minutes=default_floor_minutes, settings={})
    session.add(timebank)
    session.flush()
    ensure_system_accounts(session, timebank.id)
    create_default_categories(session, timebank)
    return timebank


def create_default_categories(session, timebank: TimeBank) -> None:
    for parent_name, (children, coproduction_type, outcome_area) in DEFAULT_CATEGORIES.items():
        parent = Category(timebank_id=timebank.id, name=parent_name, default_coproduction_type=coproduction_type,
                          default_outcome_area=outcome_area)
        session.add(parent)
        session.flush()
        for child in children:
            session.add(Category(timebank_id=timebank.id, parent_id=parent.id, name=child,
                                 default_coproduction_type=coproduction_type, default_outcome_area=outcome_area))
    session.flush()


def timebank_by_slug(session, slug: str) -> TimeBank:
    timebank = session.scalar(select(TimeBank).where(TimeBank.slug == slug))
    if timebank is None:
        raise NotFound(f"There is no time bank called {slug!r}.", code="timebank_not_found")
    return timebank


def create_user(session, *, email: str, display_name: str, password: str | None = None) -> User:
    email = normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise ValidationFailed("Enter a real email address.", errors={"email": ["Not a valid email address."]})
    if user_by_email(session, email) is not None:
        raise Conflict("An account with that email already exists.", code="email_taken")
    user = User(email=email, display_name=display_name.strip() or email.split("@")[0],
                password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def add_membership(session, *, user: User, timebank: TimeBank, role: str = "member", status: str = "active",
                   joined_on: dt.date | None = None, **profile) -> Membership:
    """Add a user to a time bank. An active member gets a ledger account at the time bank's floor."""
    if role not in ROLES:
        raise ValidationFailed(f"Unknown role {role!r}.", errors={"role": [f"Must be one of {', '.join(ROLES)}."]})
    membership = Membership(user_id=user.id, timebank_id=timebank.id, role=role, status=status,
                            joined_on=joined_on or dt.date.today(), **profile)
    session.add(membership)
    session.flush()
    if status == "active" and role in ("member", "broker", "admin"):
        open_member_account(session, membership, timebank)
    return membership


def open_member_account(session, membership: Membership, timebank: TimeBank) -> None:
    if membership.account_id is None:
        account = open_account(session, timebank_id=timebank.id, kind="member",
                               name=f"Member {membership.id}", floor_minutes=timebank.default_floor_minutes,
                               ceiling_minutes=timebank.default_ceiling_minutes)
        membership.account_id = account.id
        session.flush()


def create_organisation(session, *, timebank: TimeBank, name: str, kind: str = "charity", area: str | None = None,
                        floor_minutes: int | None = None) -> Organisation:
    if session.scalar(select(Organisation).where(Organisation.timebank_id == timebank.id,
                                                 Organisation.name == name.strip())):
        raise Conflict(f"An organisation called {name!r} already exists in this time bank.",
                       code="organisation_exists")
    organisation = Organisation(timebank_id=timebank.id, name=name.strip(), kind=kind, area=area)
    session.add(organisation)
    session.flush()
    account = open_account(session, timebank_id=timebank.id, kind="organisation", name=organisation.name,
                           floor_minutes=timebank.default_floor_minutes * 10 if floor_minutes is None else floor_minutes)
    organisation.account_id = account.id
    session.flush()
    return organisation
