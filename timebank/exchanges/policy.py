"""Who may do what with exchanges, group activities and the pot. One place, tested as a matrix.

Every function takes the session, the acting user and the object, and answers
True or False; `require` turns a False into a Forbidden the caller can show. Role questions (is this
person a broker here?) go to the one rule set, timebank/community/permissions.py; what is left here is
about the exchange itself (which side the user acts for, its status).
"""
from __future__ import annotations

from timebank.community import permissions
from timebank.community.models import Membership, OrganisationRepresentative
from timebank.community.queries import active_membership_of
from timebank.exchanges.errors import NotAllowed

ACCOUNT_ROLES = ("member", "broker", "admin")


def active_membership(session, user, timebank_id: int) -> Membership | None:
    return active_membership_of(session, user, timebank_id)


def is_broker(session, user, timebank_id: int) -> bool:
    """May record, settle and correct exchanges for others: the one rule set's `exchange.record_for_others`."""
    return permissions.can(user, "exchange.record_for_others", timebank_id=timebank_id)


def represents(session, user, organisation_id: int | None) -> bool:
    if user is None or organisation_id is None:
        return False
    return session.get(OrganisationRepresentative, (organisation_id, user.id)) is not None


def acts_for_side(session, user, exchange, side: str) -> bool:
    """Does the user act for the provider or recipient side of this exchange?"""
    membership_id = getattr(exchange, f"{side}_membership_id")
    if membership_id is not None:
        membership = session.get(Membership, membership_id)
        return membership is not None and membership.user_id == user.id and membership.status == "active"
    return (represents(session, user, getattr(exchange, f"{side}_organisation_id"))
            and active_membership(session, user, exchange.timebank_id) is not None)


def sides_of(session, user, exchange) -> set[str]:
    return {side for side in ("provider", "recipient") if acts_for_side(session, user, exchange, side)}


def can_log(session, user, exchange) -> bool:
    """A party to the exchange with an active account-holding membership (or a representative)."""
    membership = active_membership(session, user, exchange.timebank_id)
    if membership is None:
        return False
    sides = sides_of(session, user, exchange)
    if not sides:
        return False
    if any(getattr(exchange, f"{s}_membership_id") for s in sides):
        return membership.role in ACCOUNT_ROLES
    return True


def can_confirm(session, user, exchange) -> bool:
    """The side that did not log it."""
    if exchange.status != "pending":
        return False
    logged_for = (exchange.extra or {}).get("logged_for")
    other = {"provider": "recipient", "recipient": "provider"}.get(logged_for)
    return other is not None and acts_for_side(session, user, exchange, other)


can_dispute = can_confirm


def can_cancel(session, user, exchange) -> bool:
    return exchange.status == "pending" and exchange.logged_by_user_id == user.id


def can_view(session, user, exchange) -> bool:
    return bool(sides_of(session, user, exchange)) or is_broker(session, user, exchange.timebank_id)


def can_resolve(session, user, timebank_id: int) -> bool:
    return is_broker(session, user, timebank_id)


can_record = can_resolve
can_correct = can_resolve
can_grant = can_resolve
# Re-tagging changes what reports say, never the ledger; brokers answer for the figures.
can_retag = can_resolve


def can_credit(session, user, organisation) -> bool:
    """Credit volunteers or record a group activity for this organisation."""
    if organisation is None or active_membership(session, user, organisation.timebank_id) is None:
        return False
    return represents(session, user, organisation.id) or is_broker(session, user, organisation.timebank_id)


def can_donate(session, user, timebank_id: int) -> bool:
    membership = active_membership(session, user, timebank_id)
    return membership is not None and membership.role in ACCOUNT_ROLES and membership.account_id is not None


def require(allowed: bool, message: str = "You are not allowed to do that.") -> None:
    if not allowed:
        raise NotAllowed(message)
