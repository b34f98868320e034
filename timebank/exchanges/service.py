"""Exchange verbs: log, confirm, dispute, cancel, resolve, record, correct; organisations, group
activities and the community pot. Services flush and never commit; a refusal raises before any write
that matters, and the caller's single transaction rolls back everything else.

Posting rule: a confirmed exchange posts one transfer where the recipient pays and the provider earns.
Person-to-person exchanges wait for the other side. When the paying side logs an exchange with an
organisation (a representative crediting a volunteer, a member spending hours with an organisation),
it posts at once: the payer has consented.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from timebank.community.models import Category, Membership, Organisation, TimeBank, User
from timebank.community.service import log_audit
from timebank.errors import DomainError, ValidationFailed
from timebank.exchanges import policy
from timebank.exchanges.errors import (BelowFloor, CsvInvalid, ExchangeNotConfirmed, ExchangeNotDisputed,
                                       ExchangeNotFound, ExchangeNotPending, ExchangeRuleBroken)
from timebank.ledger.service import post_transfer, reverse_transfer, system_account
from timebank.exchanges.models import (COPRODUCTION_SUBTYPES, COPRODUCTION_TYPES, OUTCOME_AREAS, Exchange,
                                       GroupActivity, utcnow)
from timebank.exchanges.notifications import notify, notify_all
from timebank.ledger.models import Account

log = logging.getLogger("timebank.exchanges")


def hours_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h} hour{'s' if h != 1 else ''}" + (f" {m} minutes" if m else "")


@dataclass
class Side:
    """One side of an exchange: a member or an organisation."""

    membership: Membership | None = None
    organisation: Organisation | None = None

    @property
    def account_id(self) -> int | None:
        return (self.membership or self.organisation).account_id

    @property
    def name(self) -> str:
        return self.membership.user.display_name if self.membership else self.organisation.name

    @property
    def user_ids(self) -> list[int]:
        if self.membership:
            return [self.membership.user_id]
        return [u.id for u in self.organisation.representatives]


_WITH_USER = (joinedload(Membership.user),)


def resolve_side(session, *, membership_id=None, organisation_id=None, label="provider") -> Side:
    if (membership_id is None) == (organisation_id is None):
        raise ValidationFailed(f"Name the {label} as a member or an organisation, not both.",
                               errors={f"{label}_id": [f"Give either {label}_id or {label}_organisation_id."]})
    if membership_id is not None:
        # With the member's user, whose name and id the messages and notifications about the exchange need next.
        membership = session.get(Membership, membership_id, options=_WITH_USER)
        if membership is None:
            raise ExchangeRuleBroken(f"There is no member with id {membership_id}.", code="unknown_member",
                                     status=404)
        return Side(membership=membership)
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise ExchangeRuleBroken(f"There is no organisation with id {organisation_id}.", code="unknown_organisation",
                                 status=404)
    return Side(organisation=organisation)


def side_of(session, exchange: Exchange, which: str) -> Side:
    return resolve_side(session, membership_id=getattr(exchange, f"{which}_membership_id"),
                        organisation_id=getattr(exchange, f"{which}_organisation_id"), label=which)


# --- rules -----------------------------------------------------------------------------------------------------

def check_side_active(side: Side, timebank_id: int) -> None:
    if side.membership is not None:
        m = side.membership
        if m.timebank_id != timebank_id:
            raise ExchangeRuleBroken(f"{m.user.display_name} is not a member of this time bank.",
                                     code="not_same_timebank")
        if m.status != "active" or m.account_id is None:
            raise ExchangeRuleBroken(f"{m.user.display_name} is not an active member of this time bank.",
                                     code="inactive_member")
    else:
        o = side.organisation
        if o.timebank_id != timebank_id:
            raise ExchangeRuleBroken(f"{o.name} is not part of this time bank.", code="not_same_timebank")
        if o.status != "active" or o.account_id is None:
            raise ExchangeRuleBroken(f"{o.name} is not active in this time bank.", code="inactive_organisation")


def check_minutes(minutes, timebank: TimeBank) -> int:
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise ValidationFailed("Enter how long the help took, more than zero minutes.",
                               errors={"minutes": ["Must be a whole number of minutes above zero."]})
    if minutes > timebank.max_exchange_minutes:
        raise ExchangeRuleBroken(
            f"One exchange can be at most {hours_text(timebank.max_exchange_minutes)}. "
            "If you helped for longer, log it as separate days.", code="exchange_too_long")
    return minutes


def check_date(happened_on: dt.date, timebank: TimeBank, today: dt.date) -> None:
    if happened_on > today:
        raise ExchangeRuleBroken("The date cannot be in the future: log the help once it has happened.",
                                 code="date_in_future")
    if happened_on < today - dt.timedelta(days=timebank.max_backdate_days):
        raise ExchangeRuleBroken(
            f"The date is more than {timebank.max_backdate_days} days ago. Ask a broker to record older help.",
            code="date_too_old")


def check_floor(session, account_id: int, minutes: int, *, who: str = "you") -> None:
    """Would paying `minutes` take this account below its credit limit?"""
    account = session.get(Account, account_id)
    if account.floor_minutes is None:
        return
    if account.balance_minutes - minutes < account.floor_minutes:
        if who == "you":
            message = (f"This would take you below your limit of {hours_text(account.floor_minutes)}; "
                       "you can earn hours by offering help first.")
        else:
            message = (f"This would take {who} below the limit of {hours_text(account.floor_minutes)}; "
                       f"{who} can earn hours by offering help first.")
        raise BelowFloor(message, balance_minutes=account.balance_minutes, floor_minutes=account.floor_minutes)


def check_parties(provider: Side, recipient: Side) -> None:
    same = ((provider.membership and recipient.membership and provider.membership.id == recipient.membership.id)
            or (provider.organisation and recipient.organisation
                and provider.organisation.id == recipient.organisation.id))
    if same:
        raise ExchangeRuleBroken("You cannot log an exchange with yourself.", code="self_exchange")


def tags_for(session, timebank: TimeBank, category_id, tags: dict | None) -> dict:
    """Co-production tags: the category's defaults, overridden by anything given."""
    tags = dict(tags or {})
    category = None
    if category_id is not None:
        category = session.get(Category, category_id)
        if category is None or category.timebank_id != timebank.id:
            raise ValidationFailed("That category does not exist in this time bank.",
                                   errors={"category_id": ["Unknown category."]})
    ctype = tags.get("coproduction_type") or (category and category.default_coproduction_type) or "co_delivery"
    area = tags.get("outcome_area") or (category and category.default_outcome_area) or "other"
    subtype = tags.get("coproduction_subtype") or None
    check_tags(timebank, ctype, subtype, area)
    return {"coproduction_type": ctype, "coproduction_subtype": subtype, "outcome_area": area,
            "substitutive": bool(tags.get("substitutive", False))}


def outcome_areas_of(timebank: TimeBank) -> list[str]:
    """The standard outcome areas, then the ones this time bank added."""
    extra = [a for a in (timebank.settings or {}).get("outcome_areas", []) if a not in OUTCOME_AREAS]
    return list(OUTCOME_AREAS) + extra


def check_tags(timebank: TimeBank, ctype, subtype, area) -> None:
    errors = {}
    if ctype not in COPRODUCTION_TYPES:
        errors["coproduction_type"] = [f"Must be one of {', '.join(COPRODUCTION_TYPES)}."]
    elif subtype is not None and subtype not in COPRODUCTION_SUBTYPES[ctype]:
        errors["coproduction_subtype"] = [f"Must be one of {', '.join(COPRODUCTION_SUBTYPES[ctype])}."]
    areas = outcome_areas_of(timebank)
    if area not in areas:
        errors["outcome_area"] = [f"Must be one of {', '.join(areas)}."]
    if errors:
        kinds = {"coproduction_type": "type of co-production", "coproduction_subtype": "finer kind of co-production",
                 "outcome_area": "outcome area"}
        raise ValidationFailed("This " + " and ".join(kinds[k] for k in errors) + " is not known"
                               + (" for that type of co-production." if "coproduction_subtype" in errors else "."),
                               errors=errors)


def _kind(provider: Side, recipient: Side) -> str:
    orgs = (provider.organisation is not None) + (recipient.organisation is not None)
    return ("p2p", "p2a", "a2a")[orgs]


def get_exchange(session, exchange_id: int, *, for_update: bool = False) -> Exchange:
    """The exchange, or ExchangeNotFound. `for_update`: lock its row until the transaction ends and read its
    current status (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), so a member's confirm
    and the auto-confirm job cannot both post it."""
    if for_update:
        exchange = session.get(Exchange, exchange_id, with_for_update=True, populate_existing=True)
    else:
        exchange = session.get(Exchange, exchange_id)
    if exchange is None:
        raise ExchangeNotFound(f"There is no exchange {exchange_id}.")
    return exchange


def _timebank_of(session, side: Side) -> TimeBank:
    return session.get(TimeBank, (side.membership or side.organisation).timebank_id)


# --- the ledger step ---------------------------------------------------------------------------------------------

def _post(session, exchange: Exchange, *, recorded_by_user_id: int | None,
          today: dt.date | None = None) -> tuple[Side, Side]:
    """Post the exchange's transfer and mark it confirmed; answers its (provider, recipient) sides, so that the
    caller's message names them without loading them again."""
    provider, recipient = side_of(session, exchange, "provider"), side_of(session, exchange, "recipient")
    check_side_active(provider, exchange.timebank_id)
    check_side_active(recipient, exchange.timebank_id)
    who = "you" if recipient.membership is not None else recipient.name
    check_floor(session, recipient.account_id, exchange.minutes, who=who)
    try:
        transfer = post_transfer(
            session, timebank_id=exchange.timebank_id, kind="exchange",
            postings=[(recipient.account_id, -exchange.minutes), (provider.account_id, exchange.minutes)],
            effective_date=exchange.happened_on, memo=exchange.description[:500],
            recorded_by_user_id=recorded_by_user_id, idempotency_key=f"exchange:{exchange.id}",
            metadata={"exchange_id": exchange.id})
    except DomainError as exc:
        if exc.code == "insufficient_balance":
            raise BelowFloor(f"This would take {who} below the credit limit.") from exc
        raise
    exchange.transfer_id = transfer.id
    exchange.status = "confirmed"
    exchange.confirmed_at = utcnow()
    session.flush()
    return provider, recipient


def _sides(session, exchange: Exchange, sides: tuple[Side, Side] | None = None) -> tuple[Side, Side]:
    """The exchange's (provider, recipient): `sides` when the caller holds them already, else loaded. (A Side
    dropped between two uses lets the session forget its membership, which is then read again.)"""
    return sides or (side_of(session, exchange, "provider"), side_of(session, exchange, "recipient"))


def _notify_sides(session, exchange: Exchange, kind: str, message: str, *, skip_user_id: int | None = None,
                  sides: tuple[Side, Side] | None = None):
    users = [u for side in _sides(session, exchange, sides) for u in side.user_ids]
    notify_all(session, [(user_id, kind, message, exchange.timebank_id, exchange.id)
                         for user_id in users if user_id != skip_user_id])


def describe(session, exchange: Exchange, sides: tuple[Side, Side] | None = None) -> str:
    provider, recipient = _sides(session, exchange, sides)
    return (f"{provider.name} helped {recipient.name} "
            f"for {hours_text(exchange.minutes)} on {exchange.happened_on:%d %b %Y}")


# --- person-to-person and organisation exchanges -----------------------------------------------------------------

def _new_exchange(session, *, user: User, provider: Side, recipient: Side, minutes: int, happened_on: dt.date,
                  description: str, category_id, tags, today: dt.date, backdate_check: bool = True,
                  logged_for: str | None = None) -> Exchange:
    timebank = _timebank_of(session, provider)
    check_parties(provider, recipient)
    check_side_active(provider, timebank.id)
    check_side_active(recipient, timebank.id)
    check_minutes(minutes, timebank)
    if backdate_check:
        check_date(happened_on, timebank, today)
    elif happened_on > today:
        check_date(happened_on, timebank, today)
    tag_values = tags_for(session, timebank, category_id, tags)
    exchange = Exchange(
        timebank_id=timebank.id, kind=_kind(provider, recipient),
        provider_membership_id=provider.membership.id if provider.membership else None,
        provider_organisation_id=provider.organisation.id if provider.organisation else None,
        recipient_membership_id=recipient.membership.id if recipient.membership else None,
        recipient_organisation_id=recipient.organisation.id if recipient.organisation else None,
        minutes=minutes, happened_on=happened_on, description=(description or "").strip()[:2000],
        category_id=category_id, collective=False, status="pending", logged_by_user_id=user.id,
        extra={"logged_for": logged_for} if logged_for else {}, **tag_values)
    session.add(exchange)
    session.flush()
    return exchange


def log_exchange(session, *, user: User, provider_id=None, recipient_id=None, provider_organisation_id=None,
                 recipient_organisation_id=None, minutes: int, happened_on: dt.date, description: str = "",
                 category_id=None, tags=None, today: dt.date | None = None) -> Exchange:
    """Log an exchange the user took part in. It waits for the other side, unless the user pays an
    organisation or pays as an organisation, which posts at once."""
    today = today or dt.date.today()
    provider = resolve_side(session, membership_id=provider_id, organisation_id=provider_organisation_id,
                            label="provider")
    recipient = resolve_side(session, membership_id=recipient_id, organisation_id=recipient_organisation_id,
                             label="recipient")
    probe = Exchange(timebank_id=(provider.membership or provider.organisation).timebank_id,
                     provider_membership_id=provider_id, recipient_membership_id=recipient_id,
                     provider_organisation_id=provider_organisation_id,
                     recipient_organisation_id=recipient_organisation_id)
    sides = policy.sides_of(session, user, probe)
    policy.require(policy.can_log(session, user, probe),
                   "You can only log an exchange you took part in, or one for an organisation you represent.")
    logged_for = "recipient" if "recipient" in sides else "provider"
    if sides == {"provider", "recipient"}:
        check_parties(provider, recipient)
    if logged_for == "recipient" and "provider" not in sides:
        # The paying side logs: check the floor now so the member hears about it straight away.
        check_floor(session, recipient.account_id, minutes if isinstance(minutes, int) else 0,
                    who="you" if recipient.membership else recipient.name)
    exchange = _new_exchange(session, user=user, provider=provider, recipient=recipient, minutes=minutes,
                             happened_on=happened_on, description=description, category_id=category_id, tags=tags,
                             today=today, logged_for=logged_for)
    involves_org = exchange.kind != "p2p"
    if involves_org and logged_for == "recipient":
        sides = _post(session, exchange, recorded_by_user_id=user.id)
        _notify_sides(session, exchange, "exchange_recorded", f"Recorded: {describe(session, exchange, sides)}.",
                      skip_user_id=user.id, sides=sides)
    else:
        other = provider if logged_for == "recipient" else recipient
        message = f"Please confirm: {describe(session, exchange, (provider, recipient))}."
        notify_all(session, [(user_id, "exchange_to_confirm", message, exchange.timebank_id, exchange.id)
                             for user_id in other.user_ids])
    return exchange


def confirm_exchange(session, exchange_id: int, *, user: User) -> Exchange:
    exchange = get_exchange(session, exchange_id, for_update=True)
    if exchange.status != "pending":
        raise ExchangeNotPending(f"This exchange is {exchange.status}, so it cannot be confirmed now.")
    policy.require(policy.can_confirm(session, user, exchange),
                   "Only the other person in this exchange can confirm it.")
    sides = _post(session, exchange, recorded_by_user_id=user.id)
    notify(session, exchange.logged_by_user_id, "exchange_confirmed",
           f"Confirmed: {describe(session, exchange, sides)}.", timebank_id=exchange.timebank_id,
           exchange_id=exchange.id)
    return exchange


def dispute_exchange(session, exchange_id: int, *, user: User, reason: str) -> Exchange:
    exchange = get_exchange(session, exchange_id, for_update=True)
    if exchange.status != "pending":
        raise ExchangeNotPending(f"This exchange is {exchange.status}, so it cannot be disputed now.")
    policy.require(policy.can_dispute(session, user, exchange),
                   "Only the other person in this exchange can dispute it.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say what is wrong, so a broker can sort it out.",
                               errors={"reason": ["Missing data for required field."]})
    exchange.status = "disputed"
    exchange.dispute_reason = reason[:2000]
    session.flush()
    notify(session, exchange.logged_by_user_id, "exchange_disputed",
           f"Disputed: {describe(session, exchange)}. Reason: {exchange.dispute_reason}",
           timebank_id=exchange.timebank_id, exchange_id=exchange.id)
    return exchange


def cancel_exchange(session, exchange_id: int, *, user: User) -> Exchange:
    exchange = get_exchange(session, exchange_id, for_update=True)
    if exchange.status != "pending":
        raise ExchangeNotPending(f"This exchange is {exchange.status}, so it cannot be cancelled now.")
    policy.require(policy.can_cancel(session, user, exchange), "Only the person who logged it can cancel it.")
    exchange.status = "cancelled"
    session.flush()
    _notify_sides(session, exchange, "exchange_cancelled", f"Cancelled: {describe(session, exchange)}.",
                  skip_user_id=user.id)
    return exchange


def resolve_dispute(session, exchange_id: int, *, user: User, action: str, reason: str = "",
                    replacement: dict | None = None, today: dt.date | None = None) -> Exchange:
    """A broker settles a dispute: confirm it, cancel it, or replace it with a corrected exchange (posted)."""
    exchange = get_exchange(session, exchange_id, for_update=True)
    policy.require(policy.can_resolve(session, user, exchange.timebank_id), "Only a broker can settle disputes.")
    if exchange.status != "disputed":
        raise ExchangeNotDisputed("This exchange is not disputed.")
    if action not in ("confirm", "cancel", "replace"):
        raise ValidationFailed("Choose confirm, cancel or replace.", errors={"action": ["Unknown action."]})
    result = exchange
    if action == "confirm":
        _post(session, exchange, recorded_by_user_id=user.id)
    elif action == "cancel":
        exchange.status = "cancelled"
    else:
        exchange.status = "cancelled"
        session.flush()
        result = _broker_record(session, user=user, base=exchange, changes=replacement or {}, today=today)
    session.flush()
    log_audit(session, f"exchange.dispute_{action}", actor_user_id=user.id, timebank_id=exchange.timebank_id,
              target_type="exchange", target_id=exchange.id, reason=reason,
              replacement_id=result.id if result is not exchange else None)
    _notify_sides(session, result, "dispute_resolved",
                  f"A broker settled a dispute ({action}): {describe(session, result)}.")
    return result


def _broker_record(session, *, user: User, base: Exchange | None, changes: dict, today=None) -> Exchange:
    today = today or dt.date.today()

    def pick(name):
        if name in changes and changes[name] is not None:
            return changes[name]
        return getattr(base, name if name != "provider_id" else "provider_membership_id", None) if base else None

    fields = {
        "provider_id": changes.get("provider_id", base.provider_membership_id if base else None),
        "recipient_id": changes.get("recipient_id", base.recipient_membership_id if base else None),
        "provider_organisation_id": changes.get("provider_organisation_id",
                                                base.provider_organisation_id if base else None),
        "recipient_organisation_id": changes.get("recipient_organisation_id",
                                                 base.recipient_organisation_id if base else None),
    }
    provider = resolve_side(session, membership_id=fields["provider_id"],
                            organisation_id=fields["provider_organisation_id"], label="provider")
    recipient = resolve_side(session, membership_id=fields["recipient_id"],
                             organisation_id=fields["recipient_organisation_id"], label="recipient")
    tags = changes.get("tags") or ({"coproduction_type": base.coproduction_type, "outcome_area": base.outcome_area,
                                    "coproduction_subtype": base.coproduction_subtype,
                                    "substitutive": base.substitutive} if base else None)
    exchange = _new_exchange(
        session, user=user, provider=provider, recipient=recipient, minutes=pick("minutes"),
        happened_on=pick("happened_on"), description=pick("description") or "",
        category_id=pick("category_id"), tags=tags, today=today, backdate_check=False, logged_for="broker")
    if base is not None:
        exchange.replaces_exchange_id = base.id
    _post(session, exchange, recorded_by_user_id=user.id)
    return exchange


def record_exchange(session, *, user: User, provider_id=None, recipient_id=None, provider_organisation_id=None,
                    recipient_organisation_id=None, minutes: int, happened_on: dt.date, description: str = "",
                    category_id=None, tags=None, today: dt.date | None = None) -> Exchange:
    """A broker records an exchange for members who are not online. It posts at once and is audited."""
    side = resolve_side(session, membership_id=provider_id, organisation_id=provider_organisation_id)
    timebank_id = (side.membership or side.organisation).timebank_id
    policy.require(policy.can_record(session, user, timebank_id), "Only a broker can record exchanges for others.")
    exchange = _broker_record(session, user=user, base=None, today=today, changes={
        "provider_id": provider_id, "recipient_id": recipient_id, "provider_organisation_id": provider_organisation_id,
        "recipient_organisation_id": recipient_organisation_id, "minutes": minutes, "happened_on": happened_on,
        "description": description, "category_id": category_id, "tags": tags})
    log_audit(session, "exchange.recorded", actor_user_id=user.id, timebank_id=timebank_id, target_type="exchange",
              target_id=exchange.id, minutes=exchange.minutes, transfer_id=exchange.transfer_id)
    _notify_sides(session, exchange, "exchange_recorded",
                  f"A broker recorded: {describe(session, exchange)}.", skip_user_id=user.id)
    return exchange


def correct_exchange(session, exchange_id: int, *, user: User, reason: str, replacement: dict | None = None,
                     today: dt.date | None = None) -> tuple[Exchange, Exchange | None]:
    """A broker reverses a confirmed exchange's transfer and, if given, records the corrected one."""
    exchange = get_exchange(session, exchange_id, for_update=True)
    policy.require(policy.can_correct(session, user, exchange.timebank_id),
                   "Only a broker can correct a confirmed exchange.")
    if exchange.status != "confirmed":
        raise ExchangeNotConfirmed("Only a confirmed exchange can be corrected.")
    if exchange.activity_id is not None:
        raise ExchangeRuleBroken("This hour is part of a group activity; correct the activity instead.",
                                 code="part_of_activity", status=409)
    if not (reason or "").strip():
        raise ValidationFailed("Give a reason for the correction.", errors={"reason": ["Required."]})
    reversal = reverse_transfer(session, exchange.transfer_id, reason=reason.strip(), recorded_by_user_id=user.id,
                                idempotency_key=f"exchange-reversal:{exchange.id}", effective_date=today)
    exchange.status = "reversed"
    exchange.extra = {**(exchange.extra or {}), "reversal_transfer_id": reversal.id, "reversal_reason": reason}
    session.flush()
    new = None
    if replacement:
        new = _broker_record(session, user=user, base=exchange, changes=replacement, today=today)
    log_audit(session, "exchange.corrected", actor_user_id=user.id, timebank_id=exchange.timebank_id,
              target_type="exchange", target_id=exchange.id, reason=reason, reversal_transfer_id=reversal.id,
              replacement_id=new.id if new else None)
    return exchange, new


def credit_volunteer(session, *, user: User, organisation_id: int, membership_id: int, minutes: int,
                     happened_on: dt.date, description: str = "", category_id=None, tags=None,
                     today: dt.date | None = None) -> Exchange:
    """An organisation pays a volunteer for help given to it (by its representative, or a broker)."""
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise ExchangeRuleBroken("There is no such organisation.", code="unknown_organisation", status=404)
    policy.require(policy.can_credit(session, user, organisation),
                   "Only the organisation's representatives or a broker can credit volunteers.")
    if policy.represents(session, user, organisation_id):
        return log_exchange(session, user=user, provider_id=membership_id, recipient_organisation_id=organisation_id,
                            minutes=minutes, happened_on=happened_on, description=description,
                            category_id=category_id, tags=tags, today=today)
    return record_exchange(session, user=user, provider_id=membership_id, recipient_organisation_id=organisation_id,
                           minutes=minutes, happened_on=happened_on, description=description,
                           category_id=category_id, tags=tags, today=today)


def spend_with_organisation(session, *, user: User, membership_id: int, organisation_id: int, minutes: int,
                            happened_on: dt.date, description: str = "", category_id=None, tags=None,
                            today: dt.date | None = None) -> Exchange:
    """A member pays an organisation for a place, a room or a course. Posts at once."""
    return log_exchange(session, user=user, provider_organisation_id=organisation_id, recipient_id=membership_id,
                        minutes=minutes, happened_on=happened_on, description=description, category_id=category_id,
                        tags=tags, today=today)


def organisation_exchange(session, *, user: User, provider_organisation_id: int, recipient_organisation_id: int,
                          minutes: int, happened_on: dt.date, description: str = "", category_id=None, tags=None,
                          today: dt.date | None = None) -> Exchange:
    """Agency-to-agency: posts at once when the paying organisation logs it, else waits for it.
    A broker who represents neither records it (posts at once, audited)."""
    kwargs = dict(provider_organisation_id=provider_organisation_id,
                  recipient_organisation_id=recipient_organisation_id, minutes=minutes, happened_on=happened_on,
                  description=description, category_id=category_id, tags=tags, today=today)
    if not (policy.represents(session, user, provider_organisation_id)
            or policy.represents(session, user, recipient_organisation_id)):
        provider = resolve_side(session, organisation_id=provider_organisation_id)
        if policy.can_record(session, user, provider.organisation.timebank_id):
            return record_exchange(session, user=user, **kwargs)
    return log_exchange(session, user=user, **kwargs)


def charge_member(session, *, user: User, organisation_id: int, membership_id: int, minutes: int,
                  happened_on: dt.date, description: str = "", category_id=None, tags=None,
                  today: dt.date | None = None) -> Exchange:
    """An organisation asks a member to pay for a place, a room or a course: it waits for the member to confirm.
    A broker (not a representative) records it at once for a member who is not online."""
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise ExchangeRuleBroken("There is no such organisation.", code="unknown_organisation", status=404)
    policy.require(policy.can_credit(session, user, organisation),
                   "Only the organisation's representatives or a broker can do this.")
    kwargs = dict(provider_organisation_id=organisation_id, recipient_id=membership_id, minutes=minutes,
                  happened_on=happened_on, description=description, category_id=category_id, tags=tags, today=today)
    if policy.represents(session, user, organisation_id):
        return log_exchange(session, user=user, **kwargs)
    return record_exchange(session, user=user, **kwargs)


# --- auto-confirm ------------------------------------------------------------------------------------------------

def due_for_auto_confirm(session, today: dt.date) -> list[tuple[int, int]]:
    """(exchange id, waiting days) of pending exchanges logged at least their time bank's auto_confirm_days ago."""
    rows = session.execute(select(Exchange.id, Exchange.created_at, TimeBank.auto_confirm_days)
                           .join(TimeBank, TimeBank.id == Exchange.timebank_id)
                           .where(Exchange.status == "pending").order_by(Exchange.id)).all()
    return [(exchange_id, days) for exchange_id, created_at, days in rows
            if created_at.date() + dt.timedelta(days=days) <= today]


def auto_confirm_one(session, exchange_id: int, days: int) -> bool:
    """Confirm this exchange if it is still pending and nobody else holds it. True when it was confirmed.

    Claims the row first (PostgreSQL SELECT ... FOR UPDATE SKIP LOCKED: a row another run or a member's
    confirm holds is skipped, it is theirs) and reads its status after locking, so concurrent runs and a
    member confirming or disputing at the same moment never post it twice. Flushes, never commits.
    """
    exchange = session.scalar(select(Exchange).where(Exchange.id == exchange_id, Exchange.status == "pending")
                              .with_for_update(skip_locked=True).execution_options(populate_existing=True))
    if exchange is None:  # confirmed, disputed or cancelled meanwhile, or another run holds it
        return False
    try:  # the lock is taken outside the savepoint, so it stays held if the post is refused
        with session.begin_nested():
            sides = _post(session, exchange, recorded_by_user_id=None)
            exchange.auto_confirmed = True
            session.flush()
    except DomainError as exc:  # e.g. the payer is now below the limit: leave it for a broker
        log.warning("auto-confirm skipped exchange %s: %s", exchange.id, exc.message)
        return False
    _notify_sides(session, exchange, "exchange_auto_confirmed",
                  f"Confirmed automatically after {days} days: {describe(session, exchange, sides)}.", sides=sides)
    return True


def auto_confirm(session, today: dt.date | None = None) -> list[int]:
    """Confirm every due pending exchange in the caller's transaction (see auto_confirm_one). Safe to repeat.
    The CLI instead commits after each exchange (`exchanges.cli.run_auto_confirm`), so two runs at once never
    hold locks on many rows for long."""
    today = today or dt.date.today()
    return [exchange_id for exchange_id, days in due_for_auto_confirm(session, today)
            if auto_confirm_one(session, exchange_id, days)]


# --- group activities --------------------------------------------------------------------------------------------

def record_group_activity(session, *, user: User, organisation_id: int, title: str, happened_on: dt.date,
                          participants: list[tuple[int, int]], category_id=None, tags=None,
                          people_reached: int | None = None, today: dt.date | None = None) -> GroupActivity:
    """One event, many participants: one multi-leg transfer from the organisation, all or nothing."""
    today = today or dt.date.today()
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise ExchangeRuleBroken("There is no such organisation.", code="unknown_organisation", status=404)
    policy.require(policy.can_credit(session, user, organisation),
                   "Only the organisation's representatives or a broker can record its group activities.")
    timebank = session.get(TimeBank, organisation.timebank_id)
    if not (title or "").strip():
        raise ValidationFailed("Give the activity a title.", errors={"title": ["Required."]})
    if not participants:
        raise ValidationFailed("Add at least one participant.", errors={"participants": ["Empty."]})
    if people_reached is not None and (not isinstance(people_reached, int) or people_reached < 0):
        raise ValidationFailed("The number of people who benefited cannot be below zero.",
                               errors={"people_reached": ["Must be zero or more."]})
    check_date(happened_on, timebank, today)
    org_side = Side(organisation=organisation)
    check_side_active(org_side, timebank.id)
    # One query for every participant, not one each; resolve_side answers for any id not found.
    wanted = [m for m, _ in participants if isinstance(m, int) and not isinstance(m, bool)]
    found = {m.id: m for m in session.scalars(select(Membership).where(Membership.id.in_(wanted)))} if wanted else {}
    seen, sides = set(), []
    for membership_id, minutes in participants:
        if membership_id in seen:
            raise ExchangeRuleBroken(f"Member {membership_id} is listed twice.", code="duplicate_participant")
        seen.add(membership_id)
        member = found.get(membership_id)
        side = Side(membership=member) if member is not None else resolve_side(session, membership_id=membership_id)
        check_side_active(side, timebank.id)
        check_minutes(minutes, timebank)
        sides.append((side, minutes))
    total = sum(m for _s, m in sides)
    check_floor(session, organisation.account_id, total, who=organisation.name)
    tag_values = tags_for(session, timebank, category_id, tags)
    activity = GroupActivity(timebank_id=timebank.id, organisation_id=organisation.id, title=title.strip()[:200],
                             happened_on=happened_on, category_id=category_id, people_reached=people_reached,
                             recorded_by_user_id=user.id, **tag_values)
    session.add(activity)
    session.flush()
    transfer = post_transfer(
        session, timebank_id=timebank.id, kind="group_activity",
        postings=[(organisation.account_id, -total)] + [(s.account_id, m) for s, m in sides],
        effective_date=happened_on, memo=activity.title, recorded_by_user_id=user.id,
        idempotency_key=f"activity:{activity.id}", metadata={"activity_id": activity.id})
    activity.transfer_id = transfer.id
    for side, minutes in sides:
        exchange = Exchange(timebank_id=timebank.id, kind="p2a", provider_membership_id=side.membership.id,
                            recipient_organisation_id=organisation.id, minutes=minutes, happened_on=happened_on,
                            description=activity.title, category_id=category_id, collective=True,
                            activity_id=activity.id, status="confirmed", logged_by_user_id=user.id,
                            transfer_id=transfer.id, confirmed_at=utcnow(), extra={"logged_for": "recipient"},
                            **tag_values)
        session.add(exchange)
    session.flush()
    log_audit(session, "group_activity.recorded", actor_user_id=user.id, timebank_id=timebank.id,
              target_type="group_activity", target_id=activity.id, participants=len(sides), minutes=total)
    notify_all(session, [(side.membership.user_id, "exchange_recorded",
                          f"{organisation.name} credited you {hours_text(minutes)} for {activity.title}.",
                          timebank.id, None) for side, minutes in sides])
    return activity


@dataclass
class CsvRow:
    line: int
    member: str
    amount: str
    membership_id: int | None = None
    name: str | None = None
    minutes: int | None = None
    error: str | None = None


@dataclass
class CsvPreview:
    rows: list[CsvRow] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rows) and all(r.error is None for r in self.rows)

    @property
    def participants(self) -> list[tuple[int, int]]:
        return [(r.membership_id, r.minutes) for r in self.rows]

    @property
    def total_minutes(self) -> int:
        return sum(r.minutes or 0 for r in self.rows)


_DURATION = re.compile(r"^\s*(\d{1,3})(?::([0-5]\d))?\s*$")


def parse_amount(text: str, unit: str) -> int | None:
    """'90' minutes, or hours as '3', '2.5' or '2:30'. None when it is not a number."""
    text = (text or "").strip()
    if unit == "minutes":
        return int(text) if text.isdigit() else None
    match = _DURATION.match(text)
    if match:
        return int(match.group(1)) * 60 + int(match.group(2) or 0)
    if re.fullmatch(r"\d{1,3}\.\d{1,2}", text):
        minutes = float(text) * 60
        return int(round(minutes)) if abs(minutes - round(minutes)) < 1e-6 else None
    return None


CSV_MAX_BYTES = 200_000


def csv_text_from_upload(data: bytes) -> str:
    """An uploaded participants file as text, or CsvInvalid in plain words: too big, not text, not UTF-8."""
    if len(data) > CSV_MAX_BYTES:
        raise CsvInvalid(f"The file is too big: a participants file can be up to {CSV_MAX_BYTES // 1000} KB. "
                         "Nothing was recorded.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CsvInvalid("This file is not in UTF-8 (it is UTF-16, which Excel calls 'Unicode text'). In your "
                         "spreadsheet choose 'Save as' and 'CSV UTF-8', then upload it again. Nothing was recorded.")
    if b"\x00" in data:
        raise CsvInvalid("This file is not a CSV text file (it looks like a spreadsheet or another binary file). "
                         "Save it as 'CSV UTF-8' and upload it again. Nothing was recorded.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvInvalid("This file is not in UTF-8. In your spreadsheet choose 'Save as' and 'CSV UTF-8', then "
                         "upload it again. Nothing was recorded.") from None


def parse_participants_csv(session, timebank: TimeBank, text: str) -> CsvPreview:
    """Read 'member,hours' (or 'email,minutes') rows; every bad row gets its own message. Posts nothing."""
    preview = CsvPreview()
    if len((text or "").encode("utf-8", "surrogatepass")) > CSV_MAX_BYTES:
        preview.error = f"The list is too long: up to {CSV_MAX_BYTES // 1000} KB of participants at a time."
        return preview
    if "\x00" in (text or ""):
        preview.error = "The list contains characters that are not text (NUL bytes)."
        return preview
    try:
        rows = [r for r in csv.reader(io.StringIO(text or "")) if any(c.strip() for c in r)]
    except csv.Error as exc:  # e.g. a field longer than the csv module allows
        preview.error = f"The file could not be read as CSV ({exc}). Check it has one member and amount per line."
        return preview
    if not rows:
        preview.error = "The file is empty."
        return preview
    header = [c.strip().lower() for c in rows[0]]
    unit = "hours"
    if header and header[0] in ("member", "email", "membership_id", "member_id", "id"):
        unit = "minutes" if len(header) > 1 and header[1] == "minutes" else "hours"
        rows = rows[1:]
    seen: set[int] = set()
    for number, raw in enumerate(rows, start=2 if len(header) and header[0] in (
            "member", "email", "membership_id", "member_id", "id") else 1):
        member = raw[0].strip() if raw else ""
        amount = raw[1].strip() if len(raw) > 1 else ""
        row = CsvRow(line=number, member=member, amount=amount)
        preview.rows.append(row)
        membership = _find_member(session, timebank, member)
        if membership is None:
            row.error = f"Unknown member {member!r}."
            continue
        row.membership_id, row.name = membership.id, membership.user.display_name
        if membership.status != "active" or membership.account_id is None:
            row.error = f"{row.name} does not have an active account."
            continue
        if membership.id in seen:
            row.error = f"{row.name} is listed twice."
            continue
        seen.add(membership.id)
        minutes = parse_amount(amount, unit)
        if minutes is None or minutes <= 0:
            row.error = f"{amount!r} is not a number of {unit}."
            continue
        if minutes > timebank.max_exchange_minutes:
            row.error = f"{hours_text(minutes)} is more than the most for one exchange."
            continue
        row.minutes = minutes
    return preview


def _find_member(session, timebank: TimeBank, key: str) -> Membership | None:
    if not key:
        return None
    query = select(Membership).where(Membership.timebank_id == timebank.id)
    if key.isdigit():
        return session.scalar(query.where(Membership.id == int(key)))
    return session.scalar(query.join(User, User.id == Membership.user_id).where(User.email == key.lower()))


def record_group_activity_from_csv(session, *, user: User, organisation_id: int, title: str, happened_on: dt.date,
                                   csv_text: str, **kwargs) -> GroupActivity:
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise ExchangeRuleBroken("There is no such organisation.", code="unknown_organisation", status=404)
    preview = parse_participants_csv(session, session.get(TimeBank, organisation.timebank_id), csv_text)
    if not preview.ok:
        raise CsvInvalid("Some rows of the file are not right; nothing was recorded.",
                         rows=[{"line": r.line, "error": r.error} for r in preview.rows if r.error]
                         + ([{"line": 0, "error": preview.error}] if preview.error else []))
    return record_group_activity(session, user=user, organisation_id=organisation_id, title=title,
                                 happened_on=happened_on, participants=preview.participants, **kwargs)


# --- the community pot -------------------------------------------------------------------------------------------

def donate_to_pot(session, *, user: User, timebank_id: int, minutes: int, note: str = "",
                  today: dt.date | None = None):
    """A member gives hours to the time bank's pot."""
    policy.require(policy.can_donate(session, user, timebank_id), "Only members with an account can donate hours.")
    membership = policy.active_membership(session, user, timebank_id)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise ValidationFailed("Enter how many minutes to give.", errors={"minutes": ["Must be above zero."]})
    check_floor(session, membership.account_id, minutes)
    pot = system_account(session, timebank_id, "pot")
    return post_transfer(session, timebank_id=timebank_id, kind="donation",
                         postings=[(membership.account_id, -minutes), (pot.id, minutes)],
                         effective_date=today or dt.date.today(), memo=note[:500] or "Donation to the pot",
                         recorded_by_user_id=user.id, metadata={"membership_id": membership.id})


def grant_from_pot(session, *, user: User, membership_id: int, minutes: int, reason: str,
                   today: dt.date | None = None):
    """A broker gives hours from the pot to a member who needs help and cannot earn it."""
    if membership_id is None:
        raise ValidationFailed("Choose the member to grant hours to.", errors={"membership_id": ["Required."]})
    membership = session.get(Membership, membership_id)
    if membership is None:
        raise ExchangeRuleBroken("There is no such member.", code="unknown_member", status=404)
    policy.require(policy.can_grant(session, user, membership.timebank_id), "Only a broker can grant from the pot.")
    if not (reason or "").strip():
        raise ValidationFailed("Give a reason for the grant.", errors={"reason": ["Required."]})
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise ValidationFailed("Enter how many minutes to grant.", errors={"minutes": ["Must be above zero."]})
    timebank = session.get(TimeBank, membership.timebank_id)
    check_side_active(Side(membership=membership), timebank.id)
    pot = system_account(session, timebank.id, "pot")
    if pot.balance_minutes < minutes:
        raise BelowFloor(f"The pot holds only {hours_text(pot.balance_minutes)}.", code="pot_too_small")
    transfer = post_transfer(session, timebank_id=timebank.id, kind="grant",
                             postings=[(pot.id, -minutes), (membership.account_id, minutes)],
                             effective_date=today or dt.date.today(), memo=reason.strip()[:500],
                             recorded_by_user_id=user.id, metadata={"membership_id": membership.id})
    log_audit(session, "pot.grant", actor_user_id=user.id, timebank_id=timebank.id, target_type="membership",
              target_id=membership.id, minutes=minutes, reason=reason.strip())
    notify(session, membership.user_id, "pot_grant",
           f"You received {hours_text(minutes)} from the community pot.", timebank_id=timebank.id)
    return transfer


# --- re-tagging (reports only; the ledger is untouched) ----------------------------------------------------------

RETAGGABLE = ("category_id", "coproduction_type", "coproduction_subtype", "outcome_area", "substitutive",
              "collective")


def retag_exchange(session, exchange_id: int, *, user: User, changes: dict, reason: str = "") -> dict:
    """A broker changes the tags reports use on an existing exchange, in any status. Nothing in the ledger moves.

    `changes` holds any of RETAGGABLE; a missing key keeps its value. Changing the type of co-production clears
    a finer kind that no longer fits, unless a new one is given. A group activity's participants share the
    activity's tags, so re-tagging one of them re-tags the activity and all its participants (and `collective`
    stays true). Answers {field: [old, new]} for what changed (empty when nothing did); each change is audited.
    """
    exchange = get_exchange(session, exchange_id)
    policy.require(policy.can_retag(session, user, exchange.timebank_id),
                   "Only a broker can change the tags of an exchange.")
    unknown = set(changes) - set(RETAGGABLE)
    if unknown:
        raise ValidationFailed("Only the report tags can be changed here.",
                               errors={k: ["Not a tag."] for k in sorted(unknown)})
    timebank = session.get(TimeBank, exchange.timebank_id)
    current = {name: getattr(exchange, name) for name in RETAGGABLE}
    wanted = {**current, **{k: v for k, v in changes.items()}}
    if "coproduction_subtype" not in changes and wanted["coproduction_type"] != current["coproduction_type"]:
        wanted["coproduction_subtype"] = None
    wanted["coproduction_subtype"] = wanted["coproduction_subtype"] or None
    if wanted["category_id"] is not None:
        category = session.get(Category, wanted["category_id"])
        if category is None or category.timebank_id != timebank.id:
            raise ValidationFailed("That category does not exist in this time bank.",
                                   errors={"category_id": ["Unknown category."]})
    for flag in ("substitutive", "collective"):
        if not isinstance(wanted[flag], bool):
            raise ValidationFailed(f"Say yes or no for {flag}.", errors={flag: ["Must be true or false."]})
    check_tags(timebank, wanted["coproduction_type"], wanted["coproduction_subtype"], wanted["outcome_area"])
    if exchange.activity_id is not None and not wanted["collective"]:
        raise ExchangeRuleBroken("Hours from a group activity are always collective.", code="activity_is_collective",
                                 status=409)
    diff = {name: [current[name], wanted[name]] for name in RETAGGABLE if current[name] != wanted[name]}
    if not diff:
        return {}
    if exchange.activity_id is not None:
        activity = session.get(GroupActivity, exchange.activity_id)
        rows = list(session.scalars(select(Exchange).where(Exchange.activity_id == activity.id)))
        for name in RETAGGABLE:
            if name != "collective":
                setattr(activity, name, wanted[name])
        target_type, target_id = "group_activity", activity.id
    else:
        rows, target_type, target_id = [exchange], "exchange", exchange.id
    for row in rows:
        for name, (_old, new) in diff.items():
            setattr(row, name, new)
    session.flush()
    log_audit(session, "exchange.retagged", actor_user_id=user.id, timebank_id=timebank.id, target_type=target_type,
              target_id=target_id, exchange_ids=[r.id for r in rows], changes=diff, reason=(reason or "").strip())
    return diff


def tag_history(session, exchange: Exchange) -> list:
    """Re-tagging events for this exchange (or its group activity), oldest first: who, when, old -> new."""
    from timebank.community.models import AuditEvent

    query = select(AuditEvent).where(AuditEvent.action == "exchange.retagged",
                                     AuditEvent.timebank_id == exchange.timebank_id)
    if exchange.activity_id is not None:
        query = query.where(AuditEvent.target_type == "group_activity", AuditEvent.target_id == exchange.activity_id)
    else:
        query = query.where(AuditEvent.target_type == "exchange", AuditEvent.target_id == exchange.id)
    return list(session.scalars(query.order_by(AuditEvent.at, AuditEvent.id)))


def add_outcome_area(session, *, user: User, timebank_id: int, name: str) -> str:
    """A broker adds an outcome area to the time bank's list (e.g. 'digital inclusion'). Answers its key."""
    policy.require(policy.can_retag(session, user, timebank_id), "Only a broker can add outcome areas.")
    key = re.sub(r"[^a-z0-9]+", "_", (name or "").strip().lower()).strip("_")
    if not key or len(key) > 50:
        raise ValidationFailed("Name the outcome area in a few words (letters and numbers).",
                               errors={"name": ["Between 1 and 50 letters or numbers."]})
    timebank = session.get(TimeBank, timebank_id)
    if key in outcome_areas_of(timebank):
        raise ValidationFailed(f"The time bank already has the outcome area {key.replace('_', ' ')!r}.",
                               code="outcome_area_exists", errors={"name": ["Already there."]})
    settings = dict(timebank.settings or {})
    settings["outcome_areas"] = list(settings.get("outcome_areas", [])) + [key]
    timebank.settings = settings  # a new dict, so the JSON column is seen as changed
    session.flush()
    log_audit(session, "exchange.outcome_area_added", actor_user_id=user.id, timebank_id=timebank_id,
              target_type="timebank", target_id=timebank_id, outcome_area=key)
    return key
