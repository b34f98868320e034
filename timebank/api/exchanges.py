"""Exchanges, group activities and the community pot over the JSON API."""
from __future__ import annotations


from marshmallow import Schema, fields, validate
from sqlalchemy import or_, select

from timebank.api.blueprint import Blueprint
from timebank.api.idempotency import idempotent
from timebank.api.security import current_api_user, token_required
from timebank.community.models import OrganisationRepresentative
from timebank.errors import NotFound, ValidationFailed
from timebank.exchanges import policy, service
from timebank.exchanges.models import Exchange, GroupActivity
from timebank.exchanges.queries import pot_summary
from timebank.extensions import db
from timebank.matching import service as matching

blp = Blueprint("exchanges_api", __name__, url_prefix="/api/v1", description="Exchanges, group activities, the pot")
BEARER = [{"bearerAuth": []}]


class TagsIn(Schema):
    coproduction_type = fields.String(allow_none=True)
    coproduction_subtype = fields.String(allow_none=True)
    outcome_area = fields.String(allow_none=True)
    substitutive = fields.Boolean()


class WriteIn(Schema):
    idempotency_key = fields.String(load_only=True)


class ExchangeIn(WriteIn):
    provider_id = fields.Integer(allow_none=True, strict=True)
    recipient_id = fields.Integer(allow_none=True, strict=True)
    provider_organisation_id = fields.Integer(allow_none=True, strict=True)
    recipient_organisation_id = fields.Integer(allow_none=True, strict=True)
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    date = fields.Date(required=True)
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    category_id = fields.Integer(allow_none=True, strict=True)
    tags = fields.Nested(TagsIn, load_default=None)
    match_id = fields.Integer(load_default=None, allow_none=True, strict=True, metadata={
        "description": "the accepted or done match whose hours this logs: the match moves to logged (same as "
                       "POST /matches/{id}/log)"})


class ExchangeOut(Schema):
    id = fields.Integer()
    timebank_id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    provider_id = fields.Integer(attribute="provider_membership_id", allow_none=True)
    recipient_id = fields.Integer(attribute="recipient_membership_id", allow_none=True)
    provider_organisation_id = fields.Integer(allow_none=True)
    recipient_organisation_id = fields.Integer(allow_none=True)
    minutes = fields.Integer()
    date = fields.Date(attribute="happened_on")
    description = fields.String()
    category_id = fields.Integer(allow_none=True)
    coproduction_type = fields.String()
    coproduction_subtype = fields.String(allow_none=True)
    outcome_area = fields.String()
    substitutive = fields.Boolean()
    collective = fields.Boolean()
    activity_id = fields.Integer(allow_none=True)
    transfer_id = fields.Integer(allow_none=True)
    replaces_exchange_id = fields.Integer(allow_none=True)
    dispute_reason = fields.String(allow_none=True)
    auto_confirmed = fields.Boolean()
    created_at = fields.DateTime()
    confirmed_at = fields.DateTime(allow_none=True)


class ExchangeListArgs(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "confirmed", "disputed", "cancelled", "reversed"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class DisputeIn(WriteIn):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class ReplacementIn(Schema):
    provider_id = fields.Integer(strict=True)
    recipient_id = fields.Integer(strict=True)
    minutes = fields.Integer(strict=True, validate=validate.Range(min=1))
    happened_on = fields.Date(data_key="date")
    description = fields.String()


class ResolveIn(WriteIn):
    action = fields.String(required=True, validate=validate.OneOf(["confirm", "cancel", "replace"]))
    reason = fields.String(load_default="")
    replacement = fields.Nested(ReplacementIn, load_default=None)


class CorrectIn(WriteIn):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    replacement = fields.Nested(ReplacementIn, load_default=None)


class RetagIn(WriteIn):
    category_id = fields.Integer(allow_none=True, strict=True)
    coproduction_type = fields.String()
    coproduction_subtype = fields.String(allow_none=True)
    outcome_area = fields.String()
    substitutive = fields.Boolean()
    collective = fields.Boolean()
    reason = fields.String(load_default="", validate=validate.Length(max=500))


class TagChangeOut(Schema):
    at = fields.DateTime()
    by_user_id = fields.Integer(attribute="actor_user_id")
    reason = fields.Function(lambda e: (e.detail or {}).get("reason", ""))
    changes = fields.Function(lambda e: {k: {"old": v[0], "new": v[1]}
                                         for k, v in (e.detail or {}).get("changes", {}).items()})
    exchange_ids = fields.Function(lambda e: (e.detail or {}).get("exchange_ids", []))


class ParticipantIn(Schema):
    member_id = fields.Integer(required=True, strict=True)
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class ActivityIn(WriteIn):
    organisation_id = fields.Integer(required=True, strict=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    date = fields.Date(required=True)
    participants = fields.List(fields.Nested(ParticipantIn), load_default=None)
    csv = fields.String(load_default=None, validate=validate.Length(max=200_000))
    category_id = fields.Integer(allow_none=True, strict=True)
    tags = fields.Nested(TagsIn, load_default=None)
    people_reached = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0))


class ActivityOut(Schema):
    id = fields.Integer()
    organisation_id = fields.Integer()
    title = fields.String()
    date = fields.Date(attribute="happened_on")
    transfer_id = fields.Integer()
    coproduction_type = fields.String()
    outcome_area = fields.String()
    substitutive = fields.Boolean()
    people_reached = fields.Integer(allow_none=True)
    participants = fields.Method("_participants")

    def _participants(self, activity):
        rows = db.session.scalars(select(Exchange).where(Exchange.activity_id == activity.id).order_by(Exchange.id))
        return [{"member_id": e.provider_membership_id, "minutes": e.minutes, "exchange_id": e.id} for e in rows]


class CsvPreviewIn(Schema):
    organisation_id = fields.Integer(required=True, strict=True)
    csv = fields.String(required=True, validate=validate.Length(max=200_000))


class CsvRowOut(Schema):
    line = fields.Integer()
    member = fields.String()
    amount = fields.String()
    member_id = fields.Integer(attribute="membership_id", allow_none=True)
    name = fields.String(allow_none=True)
    minutes = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class CsvPreviewOut(Schema):
    ok = fields.Boolean()
    error = fields.String(allow_none=True)
    total_minutes = fields.Integer()
    rows = fields.List(fields.Nested(CsvRowOut))


class DonationIn(WriteIn):
    timebank_id = fields.Integer(strict=True)
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    note = fields.String(load_default="", validate=validate.Length(max=500))


class GrantIn(WriteIn):
    member_id = fields.Integer(required=True, strict=True)
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class PotTransferOut(Schema):
    transfer_id = fields.Integer(attribute="id")
    kind = fields.String()
    minutes = fields.Method("_minutes")
    date = fields.Date(attribute="effective_date")
    memo = fields.String()

    def _minutes(self, transfer):
        return max(p.minutes for p in transfer.postings)


class PotOut(Schema):
    balance_minutes = fields.Integer()
    flows = fields.List(fields.Dict())


def _exchange_for(exchange_id: int) -> Exchange:
    exchange = service.get_exchange(db.session, exchange_id)
    policy.require(policy.can_view(db.session, current_api_user(), exchange), "This exchange is not yours to see.")
    return exchange


def _side_args(body) -> dict:
    return {k: body.get(k) for k in ("provider_id", "recipient_id", "provider_organisation_id",
                                     "recipient_organisation_id")}


def _timebank_id(body) -> int:
    user = current_api_user()
    active = [m for m in user.memberships if m.status == "active"]
    if body.get("timebank_id") is not None:
        if not any(m.timebank_id == body["timebank_id"] for m in active):
            raise NotFound("You are not a member of that time bank.")
        return body["timebank_id"]
    if len(active) != 1:
        raise ValidationFailed("Say which time bank.", errors={"timebank_id": ["Required: you are in several."]})
    return active[0].timebank_id


@blp.route("/exchanges", methods=["POST"])
@token_required
@idempotent
@blp.arguments(ExchangeIn)
@blp.response(201, ExchangeOut)
@blp.doc(security=BEARER)
def create_exchange(body):
    """Log an exchange you took part in (it waits for the other side), or, as a broker, record one for others."""
    user = current_api_user()
    sides = _side_args(body)
    kwargs = dict(minutes=body["minutes"], happened_on=body["date"], description=body["description"],
                  category_id=body.get("category_id"), tags=body.get("tags"))
    provider = service.resolve_side(db.session, membership_id=sides["provider_id"],
                                    organisation_id=sides["provider_organisation_id"], label="provider")
    # Held, not only checked: while a side is referenced the session keeps its row, so the checks and the
    # service below find it without reading it again.
    recipient = service.resolve_side(db.session, membership_id=sides["recipient_id"],  # noqa: F841
                                     organisation_id=sides["recipient_organisation_id"], label="recipient")
    probe = Exchange(timebank_id=(provider.membership or provider.organisation).timebank_id,
                     provider_membership_id=sides["provider_id"], recipient_membership_id=sides["recipient_id"],
                     provider_organisation_id=sides["provider_organisation_id"],
                     recipient_organisation_id=sides["recipient_organisation_id"])
    if not policy.sides_of(db.session, user, probe) and policy.can_record(db.session, user, probe.timebank_id):
        exchange = service.record_exchange(db.session, user=user, **sides, **kwargs)
    else:
        exchange = service.log_exchange(db.session, user=user, **sides, **kwargs)
    if body.get("match_id") is not None:
        matching.link_exchange(db.session, matching.get_match(db.session, body["match_id"]), exchange)
    return exchange


@blp.route("/exchanges", methods=["GET"])
@blp.arguments(ExchangeListArgs, location="query")
@blp.response(200, ExchangeOut(many=True))
@blp.doc(security=BEARER)
@token_required
def list_exchanges(args):
    """Exchanges I am part of (as a member or for an organisation I represent), newest first."""
    user = current_api_user()
    membership_ids = [m.id for m in user.memberships]
    org_ids = list(db.session.scalars(select(OrganisationRepresentative.organisation_id)
                                      .where(OrganisationRepresentative.user_id == user.id)))
    query = select(Exchange).where(or_(Exchange.provider_membership_id.in_(membership_ids),
                                       Exchange.recipient_membership_id.in_(membership_ids),
                                       Exchange.provider_organisation_id.in_(org_ids),
                                       Exchange.recipient_organisation_id.in_(org_ids)))
    if args.get("status"):
        query = query.where(Exchange.status == args["status"])
    return list(db.session.scalars(query.order_by(Exchange.id.desc()).limit(args["limit"])))


@blp.route("/exchanges/<int:exchange_id>", methods=["GET"])
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
@token_required
def get_exchange(exchange_id):
    return _exchange_for(exchange_id)


@blp.route("/exchanges/<int:exchange_id>/confirm", methods=["POST"])
@token_required
@idempotent
@blp.arguments(WriteIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def confirm(body, exchange_id):
    """Confirm an exchange the other side logged: the hours move."""
    return service.confirm_exchange(db.session, exchange_id, user=current_api_user())


@blp.route("/exchanges/<int:exchange_id>/dispute", methods=["POST"])
@token_required
@idempotent
@blp.arguments(DisputeIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def dispute(body, exchange_id):
    return service.dispute_exchange(db.session, exchange_id, user=current_api_user(), reason=body["reason"])


@blp.route("/exchanges/<int:exchange_id>/cancel", methods=["POST"])
@token_required
@idempotent
@blp.arguments(WriteIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def cancel(body, exchange_id):
    return service.cancel_exchange(db.session, exchange_id, user=current_api_user())


@blp.route("/exchanges/<int:exchange_id>/resolve", methods=["POST"])
@token_required
@idempotent
@blp.arguments(ResolveIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def resolve(body, exchange_id):
    """Broker: settle a dispute by confirming, cancelling, or replacing it (answers the resulting exchange)."""
    return service.resolve_dispute(db.session, exchange_id, user=current_api_user(), action=body["action"],
                                   reason=body["reason"], replacement=body.get("replacement"))


@blp.route("/exchanges/<int:exchange_id>/correct", methods=["POST"])
@token_required
@idempotent
@blp.arguments(CorrectIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def correct(body, exchange_id):
    """Broker: reverse a confirmed exchange; with a replacement, answers the new exchange."""
    old, new = service.correct_exchange(db.session, exchange_id, user=current_api_user(), reason=body["reason"],
                                        replacement=body.get("replacement"))
    return new or old


@blp.route("/exchanges/<int:exchange_id>/retag", methods=["POST"])
@token_required
@idempotent
@blp.arguments(RetagIn)
@blp.response(200, ExchangeOut)
@blp.doc(security=BEARER)
def retag(body, exchange_id):
    """Broker: change the report tags (category, type of co-production, outcome area, substitutive, collective)
    of an exchange in any status. Only the fields sent change; the ledger is untouched; each change is audited."""
    reason = body.pop("reason", "")
    body.pop("idempotency_key", None)
    service.retag_exchange(db.session, exchange_id, user=current_api_user(), changes=body, reason=reason)
    return service.get_exchange(db.session, exchange_id)


@blp.route("/exchanges/<int:exchange_id>/tag-changes", methods=["GET"])
@blp.response(200, TagChangeOut(many=True))
@blp.doc(security=BEARER)
@token_required
def tag_changes(exchange_id):
    """Broker: who changed this exchange's tags, when, and from what to what (oldest first)."""
    exchange = service.get_exchange(db.session, exchange_id)
    policy.require(policy.can_retag(db.session, current_api_user(), exchange.timebank_id),
                   "Only a broker can see the tag history.")
    return service.tag_history(db.session, exchange)


@blp.route("/activities", methods=["POST"])
@token_required
@idempotent
@blp.arguments(ActivityIn)
@blp.response(201, ActivityOut)
@blp.doc(security=BEARER)
def create_activity(body):
    """Record a group activity from `participants` or a `csv` text (member or email, hours); all or nothing."""
    common = dict(user=current_api_user(), organisation_id=body["organisation_id"], title=body["title"],
                  happened_on=body["date"], category_id=body.get("category_id"), tags=body.get("tags"),
                  people_reached=body.get("people_reached"))
    if (body.get("participants") is None) == (body.get("csv") is None):
        raise ValidationFailed("Give either participants or csv.", errors={"participants": ["Give one of the two."]})
    if body.get("csv") is not None:
        return service.record_group_activity_from_csv(db.session, csv_text=body["csv"], **common)
    return service.record_group_activity(db.session, participants=[(p["member_id"], p["minutes"])
                                                                   for p in body["participants"]], **common)


@blp.route("/activities/preview", methods=["POST"])
@blp.arguments(CsvPreviewIn)
@blp.response(200, CsvPreviewOut)
@blp.doc(security=BEARER)
@token_required
def preview_activity_csv(body):
    """Check a participants CSV row by row. Records nothing."""
    from timebank.community.models import Organisation

    organisation = db.session.get(Organisation, body["organisation_id"])
    if organisation is None:
        raise NotFound("There is no such organisation.")
    policy.require(policy.can_credit(db.session, current_api_user(), organisation),
                   "Only the organisation's representatives or a broker can do this.")
    return service.parse_participants_csv(db.session, organisation.timebank, body["csv"])


@blp.route("/activities/<int:activity_id>", methods=["GET"])
@blp.response(200, ActivityOut)
@blp.doc(security=BEARER)
@token_required
def get_activity(activity_id):
    activity = db.session.get(GroupActivity, activity_id)
    if activity is None or policy.active_membership(db.session, current_api_user(), activity.timebank_id) is None:
        raise NotFound("There is no such activity.")
    return activity


@blp.route("/pot/donations", methods=["POST"])
@token_required
@idempotent
@blp.arguments(DonationIn)
@blp.response(201, PotTransferOut)
@blp.doc(security=BEARER)
def donate(body):
    """Give some of your hours to the community pot."""
    return service.donate_to_pot(db.session, user=current_api_user(), timebank_id=_timebank_id(body),
                                 minutes=body["minutes"], note=body["note"])


@blp.route("/pot/grants", methods=["POST"])
@token_required
@idempotent
@blp.arguments(GrantIn)
@blp.response(201, PotTransferOut)
@blp.doc(security=BEARER)
def grant(body):
    """Broker: give hours from the pot to a member who needs help and cannot earn it."""
    return service.grant_from_pot(db.session, user=current_api_user(), membership_id=body["member_id"],
                                  minutes=body["minutes"], reason=body["reason"])


@blp.route("/pot", methods=["GET"])
@blp.response(200, PotOut)
@blp.doc(security=BEARER)
@token_required
def pot():
    """Broker: the pot's balance and recent flows."""
    user = current_api_user()
    brokered = [m.timebank_id for m in user.memberships if m.status == "active" and m.role in ("broker", "admin")]
    policy.require(bool(brokered), "Only a broker can see the pot.")
    summary = pot_summary(db.session, brokered[0])
    for flow in summary["flows"]:
        flow["date"] = flow["date"].isoformat()
    return summary
