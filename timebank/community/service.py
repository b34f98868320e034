"""Verbs for time banks, people and organisations. Services flush; callers commit."""
from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import func, select

from timebank.community.auth import check_password_policy, hash_password, normalise_email, user_by_email
from timebank.community.models import (ROLES, AuditEvent, Category, Membership, Organisation,
                                       OrganisationRepresentative, TimeBank, User, utcnow)
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


# --- categories: the per-time-bank list of skills and services, managed by brokers ---------------------------------

CATEGORY_NAME_MAX = 100


def _category_name(name) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ValidationFailed("Give the category a name.", errors={"name": ["Missing data for required field."]})
    if len(name) > CATEGORY_NAME_MAX:
        raise ValidationFailed(f"A category name has at most {CATEGORY_NAME_MAX} characters.",
                               errors={"name": [f"Longer than {CATEGORY_NAME_MAX} characters."]})
    return name


def _check_sibling_name(session, timebank_id: int, parent_id: int | None, name: str, *, exclude_id=None) -> None:
    query = select(Category).where(Category.timebank_id == timebank_id, Category.parent_id.is_(None)
                                   if parent_id is None else Category.parent_id == parent_id,
                                   func.lower(Category.name) == name.lower())
    if exclude_id is not None:
        query = query.where(Category.id != exclude_id)
    if session.scalar(query) is not None:
        raise Conflict(f"There is already a category called {name!r} here.", code="category_exists")


def category_in(session, timebank_id: int, category_id) -> Category:
    """A category of this time bank, or NotFound (a category of another bank does not exist for the caller)."""
    valid = isinstance(category_id, int) and not isinstance(category_id, bool) and 0 < category_id < 2 ** 63
    category = session.get(Category, category_id) if valid else None
    if category is None or category.timebank_id != timebank_id:
        raise NotFound("There is no such category.", code="category_not_found")
    return category


def create_category(session, *, timebank: TimeBank, name: str, parent_id: int | None = None, actor=None,
                    default_coproduction_type: str | None = None, default_outcome_area: str | None = None) -> Category:
    """A new category, at the top or under a top-level category (the list is two levels deep)."""
    name = _category_name(name)
    parent = None
    if parent_id is not None:
        parent = category_in(session, timebank.id, parent_id)
        if parent.parent_id is not None:
            raise ValidationFailed("Put a new category under a top-level category.",
                                   errors={"parent_id": ["Must be a top-level category."]})
        if parent.is_retired:
            raise Conflict(f"{parent.name!r} is retired; restore it first.", code="category_retired")
    _check_sibling_name(session, timebank.id, parent_id, name)
    category = Category(timebank_id=timebank.id, parent_id=parent_id, name=name,
                        default_coproduction_type=default_coproduction_type or
                        (parent.default_coproduction_type if parent else None),
                        default_outcome_area=default_outcome_area or (parent.default_outcome_area if parent else None))
    session.add(category)
    session.flush()
    log_audit(session, "category.created", actor_user_id=getattr(actor, "id", None), timebank_id=timebank.id,
              target_type="category", target_id=category.id, name=name)
    return category


def rename_category(session, category: Category, *, name: str, actor=None) -> Category:
    name = _category_name(name)
    if name == category.name:
        return category
    _check_sibling_name(session, category.timebank_id, category.parent_id, name, exclude_id=category.id)
    old = category.name
    category.name = name
    session.flush()
    log_audit(session, "category.renamed", actor_user_id=getattr(actor, "id", None),
              timebank_id=category.timebank_id, target_type="category", target_id=category.id, old=old, new=name)
    return category


def retire_category(session, category: Category, *, actor=None) -> Category:
    """Stop offering a category (and its sub-categories) for new offers, requests and skills. Everything that
    already uses it keeps it, so history and reports do not change."""
    if category.is_retired:
        raise Conflict(f"{category.name!r} is already retired.", code="category_retired")
    now = utcnow()
    category.retired_at = now
    for child in session.scalars(select(Category).where(Category.parent_id == category.id,
                                                        Category.retired_at.is_(None))):
        child.retired_at = now
    session.flush()
    log_audit(session, "category.retired", actor_user_id=getattr(actor, "id", None),
              timebank_id=category.timebank_id, target_type="category", target_id=category.id, name=category.name)
    return category


def restore_category(session, category: Category, *, actor=None) -> Category:
    if not category.is_retired:
        raise Conflict(f"{category.name!r} is in use already.", code="category_not_retired")
    if category.parent is not None and category.parent.is_retired:
        raise Conflict(f"Restore {category.parent.name!r} first.", code="category_retired")
    category.retired_at = None
    session.flush()
    log_audit(session, "category.restored", actor_user_id=getattr(actor, "id", None),
              timebank_id=category.timebank_id, target_type="category", target_id=category.id, name=category.name)
    return category


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
    if password is not None:
        check_password_policy(password)
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
    # Through the relationship, so a user whose memberships are loaded already (the token lookup loads them) has
    # the new one in the list at once, not after the session next forgets it.
    membership = Membership(user=user, timebank_id=timebank.id, role=role, status=status,
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


ORGANISATION_KINDS = ("council", "nhs", "school", "charity", "community_group", "business", "other")


def create_organisation(session, *, timebank: TimeBank, name: str, kind: str = "charity", area: str | None = None,
                        floor_minutes: int | None = None) -> Organisation:
    name, area = " ".join(str(name or "").split()), (" ".join(str(area).split()) or None) if area else None
    errors = {}
    if not name or len(name) > 200:
        errors["name"] = ["Give a name of 1 to 200 characters."]
    if kind not in ORGANISATION_KINDS:
        errors["kind"] = [f"Must be one of {', '.join(ORGANISATION_KINDS)}."]
    if area is not None and len(area) > 100:
        errors["area"] = ["At most 100 characters."]
    if errors:
        raise ValidationFailed("Give the organisation a name (up to 200 characters), a kind from the list and an "
                               "area of up to 100 characters.", errors=errors)
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


# --- onboarding: a broker's daily work ---------------------------------------------------------------------------

SAFETY_LEVELS = ("none", "basic", "standard", "enhanced")


def _audit(session, action, actor, membership, **detail):
    return log_audit(session, action, actor_user_id=getattr(actor, "id", None), timebank_id=membership.timebank_id,
                     target_type="membership", target_id=membership.id, **detail)


def apply_to_join(session, *, timebank: TimeBank, email: str, display_name: str, password: str | None,
                  note: str | None = None) -> Membership | None:
    """A public application: a pending membership. Returns None (and changes nothing) when the email is
    already known, so the join page answers the same either way and never reveals who has an account."""
    if user_by_email(session, email) is not None:
        return None
    user = create_user(session, email=email, display_name=display_name, password=password)
    return add_membership(session, user=user, timebank=timebank, role="member", status="pending",
                          application_note=(note or "").strip() or None)


def record_checks(session, membership: Membership, *, actor, references_received: int | None = None,
                  safety_check_level: str | None = None, safety_check_date: dt.date | None = None,
                  safety_check_expires: dt.date | None = None, risk_note: str | None = None,
                  induction_date: dt.date | None = None) -> Membership:
    """Record references, the safety (DBS) check, a risk note and the induction date."""
    if safety_check_level is not None:
        if safety_check_level not in SAFETY_LEVELS:
            raise ValidationFailed("Choose none, basic, standard or enhanced.",
                                   errors={"safety_check_level": ["Must be none, basic, standard or enhanced."]})
        membership.safety_check_level = safety_check_level
    if references_received is not None:
        if references_received < 0 or references_received > 20:
            raise ValidationFailed("References received must be between 0 and 20.",
                                   errors={"references_received": ["Must be between 0 and 20."]})
        membership.references_received = references_received
    if safety_check_date is not None:
        membership.safety_check_date = safety_check_date
    if safety_check_expires is not None:
        membership.safety_check_expires = safety_check_expires
    if membership.safety_check_date and membership.safety_check_expires and \
            membership.safety_check_expires <= membership.safety_check_date:
        raise ValidationFailed("The safety check must expire after the certificate date.",
                               errors={"safety_check_expires": ["Must be after the certificate date."]})
    if risk_note is not None:
        membership.risk_note = risk_note.strip() or None
    if induction_date is not None:
        membership.induction_date = induction_date
    session.flush()
    _audit(session, "onboarding.checks_recorded", actor, membership, safety_check_level=membership.safety_check_level)
    return membership


def _require_pending(membership: Membership) -> None:
    if membership.status != "pending":
        raise Conflict("This application has already been decided.", code="application_not_pending")


def approve_application(session, membership: Membership, *, actor, welcome_minutes: int = 0,
                        welcome_from: str = "issuance") -> Membership:
    """Approve: the membership becomes active and its ledger account is opened.

    Welcome hours need the ledger's post_transfer; until that lands a request for them is refused."""
    _require_pending(membership)
    if welcome_minutes < 0:
        raise ValidationFailed("Welcome hours cannot be negative.", errors={"welcome_minutes": ["Must be 0 or more."]})
    membership.status = "active"
    membership.info_requested = None
    membership.joined_on = dt.date.today()
    open_member_account(session, membership, membership.timebank)
    if welcome_minutes:
        grant_welcome_minutes(session, membership, minutes=welcome_minutes, source=welcome_from, actor=actor)
    _audit(session, "onboarding.approved", actor, membership, welcome_minutes=welcome_minutes)
    return membership


def grant_welcome_minutes(session, membership: Membership, *, minutes: int, source: str, actor) -> None:
    try:
        from timebank.ledger.service import post_transfer
    except ImportError:
        raise ValidationFailed("Welcome hours are not available in this version yet.",
                               errors={"welcome_minutes": ["Not available yet."]}) from None
    from timebank.ledger.service import system_account

    if source not in ("issuance", "pot"):
        raise ValidationFailed("Welcome hours come from issuance or the pot.",
                               errors={"welcome_from": ["Must be issuance or pot."]})
    source_account = system_account(session, membership.timebank_id, source)
    post_transfer(session, timebank_id=membership.timebank_id, kind="grant",
                  postings=[(source_account.id, -minutes), (membership.account_id, minutes)],
                  effective_date=dt.date.today(), memo="Welcome hours",
                  recorded_by_user_id=getattr(actor, "id", None),
                  idempotency_key=f"welcome-{membership.id}")


def decline_application(session, membership: Membership, *, actor, reason: str) -> Membership:
    _require_pending(membership)
    if not reason or not reason.strip():
        raise ValidationFailed("Give a reason for declining.", errors={"reason": ["Missing data for required field."]})
    membership.status = "declined"
    membership.decline_reason = reason.strip()
    _audit(session, "onboarding.declined", actor, membership)
    session.flush()
    return membership


def request_more_information(session, membership: Membership, *, actor, message: str) -> Membership:
    _require_pending(membership)
    if not message or not message.strip():
        raise ValidationFailed("Say what is needed.", errors={"message": ["Missing data for required field."]})
    membership.info_requested = message.strip()
    _audit(session, "onboarding.more_info_requested", actor, membership)
    session.flush()
    return membership


def add_member_directly(session, *, timebank: TimeBank, actor, email: str, display_name: str,
                        password: str | None = None, **profile) -> Membership:
    """A broker adds someone who is not online: approved at once, with an account."""
    user = create_user(session, email=email, display_name=display_name, password=password)
    membership = add_membership(session, user=user, timebank=timebank, role="member", status="active", **profile)
    _audit(session, "member.added", actor, membership)
    return membership


def suspend_member(session, membership: Membership, *, actor, reason: str = "") -> Membership:
    if membership.status != "active":
        raise Conflict("Only an active member can be suspended.", code="membership_not_active")
    if actor is not None and membership.user_id == actor.id:
        raise Conflict("You cannot suspend yourself.", code="cannot_suspend_self")
    membership.status = "suspended"
    _audit(session, "member.suspended", actor, membership, reason=reason)
    session.flush()
    return membership


def reinstate_member(session, membership: Membership, *, actor) -> Membership:
    if membership.status != "suspended":
        raise Conflict("Only a suspended member can be reinstated.", code="membership_not_suspended")
    membership.status = "active"
    open_member_account(session, membership, membership.timebank)
    _audit(session, "member.reinstated", actor, membership)
    session.flush()
    return membership


def change_role(session, membership: Membership, *, actor, role: str) -> Membership:
    if role not in ROLES:
        raise ValidationFailed(f"Unknown role {role!r}.", errors={"role": [f"Must be one of {', '.join(ROLES)}."]})
    if actor is not None and membership.user_id == actor.id and role != "admin":
        raise Conflict("You cannot take away your own admin role.", code="cannot_demote_self")
    old = membership.role
    membership.role = role
    if membership.status == "active" and role in ("member", "broker", "admin"):
        open_member_account(session, membership, membership.timebank)
    _audit(session, "role.changed", actor, membership, old=old, new=role)
    session.flush()
    return membership


def update_timebank_settings(session, timebank: TimeBank, *, actor, **values) -> TimeBank:
    allowed = {"name", "max_exchange_minutes", "max_backdate_days", "auto_confirm_days", "listing_expiry_days",
               "match_radius_km", "default_floor_minutes"}
    errors = {}
    for key, value in values.items():
        if key not in allowed:
            continue
        if key == "name":
            if not str(value).strip():
                errors[key] = ["Missing data for required field."]
                continue
            value = str(value).strip()[:200]
        elif key == "default_floor_minutes":
            if value > 0:
                errors[key] = ["Must be 0 or less."]
                continue
        elif value <= 0:
            errors[key] = ["Must be more than 0."]
            continue
        setattr(timebank, key, value)
    if errors:
        raise ValidationFailed("Some settings are not valid.", errors=errors)
    log_audit(session, "timebank.settings_changed", actor_user_id=getattr(actor, "id", None),
              timebank_id=timebank.id, target_type="timebank", target_id=timebank.id,
              fields=sorted(k for k in values if k in allowed))
    session.flush()
    return timebank


KEEP = object()  # "leave this as it is", where None means "clear it"


def check_coordinates(coordinates) -> tuple[float | None, float | None]:
    """(latitude, longitude) within range, or (None, None). Raises ValidationFailed naming the field."""
    if coordinates is None:
        return None, None
    latitude, longitude = coordinates
    if latitude is None and longitude is None:
        return None, None
    if (latitude is None) != (longitude is None):
        missing = "latitude" if latitude is None else "longitude"
        raise ValidationFailed("Give both latitude and longitude, or leave both empty.",
                               errors={missing: ["Give both latitude and longitude, or neither."]})
    errors = {}
    for name, value, limit in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not -limit <= value <= limit:
            errors[name] = [f"Must be a number from -{limit} to {limit}."]
    if errors:
        raise ValidationFailed("Latitude is from -90 to 90 and longitude from -180 to 180 (for example 54.97 and "
                               "-1.61); leave both empty if you prefer.", errors=errors)
    return round(float(latitude), 6), round(float(longitude), 6)


def update_profile(session, membership: Membership, *, bio=None, ward=None, postcode_district=None,
                   availability: int | None = None, skill_ids: list[int] | None = None,
                   demographics_consent: bool | None = None, age_band=None, gender=None, disability=None,
                   display_name=None, phone=None, preferred_contact=None, coordinates=KEEP) -> Membership:
    """A member's own profile. Demographics are kept only with consent; withdrawing consent clears them.
    `coordinates` is (latitude, longitude) in degrees, or None to clear them; matching uses it for distance."""
    if coordinates is not KEEP:
        latitude, longitude = check_coordinates(coordinates)
        membership.latitude, membership.longitude = latitude, longitude
    if availability is not None:
        if not 0 <= availability < (1 << 21):
            raise ValidationFailed("Availability has 21 slots.", errors={"availability": ["Out of range."]})
        membership.availability = availability
    if bio is not None:
        membership.bio = bio.strip()[:4000] or None
    if ward is not None:
        membership.ward = ward.strip()[:100] or None
    if postcode_district is not None:
        membership.postcode_district = postcode_district.strip().upper()[:10] or None
    if skill_ids is not None:
        # A retired category may be kept by those who had it, but not newly chosen.
        kept = {c.id for c in membership.skills}
        chosen = session.scalars(select(Category).where(Category.timebank_id == membership.timebank_id,
                                                        Category.id.in_(skill_ids))).all() if skill_ids else []
        membership.skills = [c for c in chosen if c.retired_at is None or c.id in kept]
    if demographics_consent is not None:
        membership.demographics_consent = demographics_consent
        if demographics_consent:
            membership.age_band = age_band or None
            membership.gender = gender or None
            membership.disability = disability
        else:
            membership.age_band = membership.gender = membership.disability = None
    user = membership.user
    if display_name is not None and display_name.strip():
        user.display_name = display_name.strip()[:120]
    if phone is not None:
        user.phone = phone.strip()[:40] or None
    if preferred_contact in ("email", "phone", "post"):
        user.preferred_contact = preferred_contact
    session.flush()
    return membership


def add_representative(session, organisation: Organisation, user: User, *, actor) -> None:
    if user not in organisation.representatives:
        organisation.representatives.append(user)
    log_audit(session, "organisation.representative_added", actor_user_id=getattr(actor, "id", None),
              timebank_id=organisation.timebank_id, target_type="organisation", target_id=organisation.id,
              user_id=user.id)
    session.flush()


# --- privacy -----------------------------------------------------------------------------------------------------

def export_personal_data(session, user: User, *, actor=None) -> dict:
    """Everything held about a person, as plain JSON-ready values."""
    from timebank.ledger.models import Account, Posting, Transfer

    def iso(value):
        return value.isoformat() if value is not None else None

    memberships = []
    for m in user.memberships:
        entries = []
        balance = None
        if m.account_id:
            account = session.get(Account, m.account_id)
            balance = account.balance_minutes
            rows = session.execute(select(Transfer, Posting.minutes).join(Posting, Posting.transfer_id == Transfer.id)
                                   .where(Posting.account_id == m.account_id).order_by(Transfer.id)).all()
            entries = [{"transfer_id": t.id, "date": iso(t.effective_date), "kind": t.kind, "memo": t.memo,
                        "minutes": minutes} for t, minutes in rows]
        memberships.append({
            "timebank": m.timebank.slug, "role": m.role, "status": m.status, "joined_on": iso(m.joined_on),
            "account_id": m.account_id, "balance_minutes": balance, "ledger_entries": entries,
            "profile": {"bio": m.bio, "ward": m.ward, "postcode_district": m.postcode_district,
                        "latitude": m.latitude, "longitude": m.longitude, "availability": m.availability,
                        "skills": [c.name for c in m.skills]},
            "demographics": {"consent": m.demographics_consent, "age_band": m.age_band, "gender": m.gender,
                             "disability": m.disability},
            "onboarding": {"references_received": m.references_received,
                           "safety_check_level": m.safety_check_level,
                           "safety_check_date": iso(m.safety_check_date),
                           "safety_check_expires": iso(m.safety_check_expires), "risk_note": m.risk_note,
                           "induction_date": iso(m.induction_date), "decline_reason": m.decline_reason,
                           "application_note": m.application_note, "info_requested": m.info_requested},
        })
    organisations = session.scalars(select(Organisation).join(OrganisationRepresentative)
                                    .where(OrganisationRepresentative.user_id == user.id)).all()
    data = {
        "user": {"id": user.id, "email": user.email, "display_name": user.display_name, "phone": user.phone,
                 "preferred_contact": user.preferred_contact, "created_at": iso(user.created_at)},
        "memberships": memberships,
        "represents_organisations": [o.name for o in organisations],
        "audit_events_about_me": [
            {"at": iso(e.at), "action": e.action} for e in session.scalars(
                select(AuditEvent).where(AuditEvent.target_type == "membership",
                                         AuditEvent.target_id.in_([m.id for m in user.memberships] or [-1]))
                .order_by(AuditEvent.id))],
    }
    log_audit(session, "privacy.exported", actor_user_id=getattr(actor, "id", user.id),
              timebank_id=user.memberships[0].timebank_id if user.memberships else None, target_type="user",
              target_id=user.id)
    session.flush()
    return data


def erase_person(session, user: User, *, actor, timebank_id: int | None = None) -> User:
    """Remove or pseudonymise a person's data. Their memberships, accounts and every ledger entry stay,
    so balances and aggregate reports are exactly as before; only what identifies them goes."""
    from timebank.community.models import ApiToken, MemberSkill

    if user.erased_at is not None:
        raise Conflict("This person has already been erased.", code="already_erased")
    if actor is not None and actor.id == user.id:
        raise Conflict("You cannot erase yourself.", code="cannot_erase_self")
    user.email = f"erased-{user.id}@erased.invalid"
    user.display_name = f"Former member {user.id}"
    user.password_hash = None
    user.phone = None
    user.is_active_user = False
    user.erased_at = utcnow()
    for m in user.memberships:
        m.bio = m.ward = m.postcode_district = None
        m.latitude = m.longitude = None
        m.availability = 0
        m.risk_note = m.decline_reason = m.application_note = m.info_requested = None
        m.references_received = 0
        m.safety_check_date = m.safety_check_expires = m.induction_date = None
        session.execute(MemberSkill.__table__.delete().where(MemberSkill.membership_id == m.id))
        # Role, status and aggregate-only demographics given with consent are kept so reports do not change.
    for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))):
        token.revoked_at = utcnow()
    session.execute(OrganisationRepresentative.__table__.delete()
                    .where(OrganisationRepresentative.user_id == user.id))
    log_audit(session, "privacy.erased", actor_user_id=getattr(actor, "id", None), timebank_id=timebank_id,
              target_type="user",
              target_id=user.id)
    session.flush()
    session.expire(user)
    return user
