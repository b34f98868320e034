"""Offers, requests, opportunities, suggestions, match plans and the match funnel."""
from __future__ import annotations

from flask import request as http_request
from marshmallow import Schema, fields, validate

from timebank.api.blueprint import Blueprint
from timebank.api.idempotency import idempotent
from timebank.api.security import current_api_user, token_required
from timebank.community.models import Membership, Organisation, TimeBank
from timebank.errors import NotFound, ValidationFailed
from timebank.extensions import db
from timebank.matching import queries, scoring, service
from timebank.matching.errors import NotAllowed

blp = Blueprint("matching_api", __name__, url_prefix="/api/v1", description="Offers, requests and matching")
SECURITY = [{"bearerAuth": []}]


# --- schemas ------------------------------------------------------------------------------------------------------

class ListingQuery(Schema):
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "closed", "all"]))
    category_id = fields.Integer(load_default=None)
    area = fields.String(load_default=None)
    availability = fields.Integer(load_default=None, validate=validate.Range(0, (1 << 21) - 1))
    q = fields.String(load_default=None)
    timebank = fields.String(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class ListingIn(Schema):
    title = fields.String(required=True, validate=validate.Length(1, 200))
    category_id = fields.Integer(required=True)
    description = fields.String(load_default="")
    area = fields.String(load_default=None, allow_none=True)
    remote = fields.Boolean(load_default=False)
    availability = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, (1 << 21) - 1))
    starts_on = fields.Date(load_default=None, allow_none=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    timebank = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class OfferIn(ListingIn):
    pass


class RequestIn(ListingIn):
    urgency = fields.String(load_default="normal", validate=validate.OneOf(["low", "normal", "high"]))
    estimated_minutes = fields.Integer(load_default=60, validate=validate.Range(1, 24 * 60))


class OpportunityIn(RequestIn):
    organisation_id = fields.Integer(required=True)
    volunteers_needed = fields.Integer(load_default=1, validate=validate.Range(1, 500))
    safety_check_level = fields.String(load_default="none", validate=validate.OneOf(scoring.SAFETY_LEVELS))
    min_age = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 120))
    latitude = fields.Float(load_default=None, allow_none=True)
    longitude = fields.Float(load_default=None, allow_none=True)


class OfferOut(Schema):
    id = fields.Integer()
    member_id = fields.Integer(attribute="membership_id")
    category_id = fields.Integer()
    category = fields.Function(lambda o: o.category.name)
    title = fields.String()
    description = fields.String()
    area = fields.String(allow_none=True)
    remote = fields.Boolean()
    availability = fields.Integer()
    status = fields.Function(lambda o: "open" if queries.is_open(o) else "closed")
    starts_on = fields.Date(allow_none=True)
    ends_on = fields.Date(allow_none=True, metadata={"description": "an offer's last day; a request's needed-by"})
    closes_on = fields.Function(lambda o: queries.closes_on(o).isoformat(),
                                metadata={"description": "last day it can be matched: ends_on or expiry"})
    created_at = fields.DateTime()
    expires_at = fields.DateTime()


class RequestOut(OfferOut):
    member_id = fields.Integer(attribute="membership_id", allow_none=True)
    organisation_id = fields.Integer(allow_none=True)
    urgency = fields.String()
    estimated_minutes = fields.Integer()
    volunteers_needed = fields.Integer()
    safety_check_level = fields.String()
    min_age = fields.Integer(allow_none=True)


class SuggestionQuery(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 100))


class SuggestionOut(Schema):
    member_id = fields.Integer()
    display_name = fields.String()
    score = fields.Float()
    reasons = fields.List(fields.String())
    features = fields.Dict()


class SuggestionsOut(Schema):
    request_id = fields.Integer()
    weights = fields.Dict()
    items = fields.List(fields.Nested(SuggestionOut))


class PlanIn(Schema):
    request_ids = fields.List(fields.Integer(), required=True, validate=validate.Length(1, 5000))
    idempotency_key = fields.String(load_default=None)


class ProposalOut(Schema):
    request_id = fields.Integer()
    member_id = fields.Integer(attribute="membership_id")
    score = fields.Float()
    reasons = fields.List(fields.String())


class PlanOut(Schema):
    id = fields.Integer()
    status = fields.String()
    request_ids = fields.List(fields.Integer())
    total_score = fields.Float()
    capacity = fields.Dict()
    proposals = fields.List(fields.Nested(ProposalOut))
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
    skipped = fields.Method("_skipped", metadata={
        "description": "once sent: the proposals not sent because they were no longer valid, each with request_id, "
                       "member_id, request_title, member_name and the reason in words"})

    def _skipped(self, plan):
        return queries.skipped_of(db.session, plan)


class MatchOut(Schema):
    id = fields.Integer()
    request_id = fields.Integer()
    member_id = fields.Integer(attribute="membership_id")
    status = fields.String()
    score = fields.Float()
    reasons = fields.List(fields.String())
    plan_id = fields.Integer(allow_none=True)
    proposed_at = fields.DateTime(allow_none=True)
    responded_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    logged_at = fields.DateTime(allow_none=True)
    exchange_id = fields.Integer(allow_none=True)


class ExchangeDraftOut(Schema):
    provider_id = fields.Integer(attribute="provider_membership_id")
    recipient_id = fields.Integer(attribute="recipient_membership_id", allow_none=True)
    recipient_organisation_id = fields.Integer(allow_none=True)
    minutes = fields.Integer()
    category_id = fields.Integer()
    description = fields.String()


class MatchDetailOut(MatchOut):
    exchange_draft = fields.Method("_draft", metadata={
        "description": "the exchange fields POST /matches/{id}/log uses when the body leaves them out"})

    def _draft(self, match):
        return ExchangeDraftOut().dump(service.prefilled_exchange(db.session, match))


class LogHoursIn(Schema):
    minutes = fields.Integer(load_default=None, strict=True, validate=validate.Range(1, 24 * 60))
    date = fields.Date(load_default=None)
    description = fields.String(load_default=None, validate=validate.Length(max=2000))
    category_id = fields.Integer(load_default=None, strict=True)
    tags = fields.Dict(load_default=None)
    idempotency_key = fields.String(load_default=None)


class LoggedOut(Schema):
    match = fields.Nested(MatchOut)
    exchange_id = fields.Integer()
    exchange_status = fields.String()


class BlockIn(Schema):
    member_id = fields.Integer(required=True, strict=True)
    other_member_id = fields.Integer(load_default=None, strict=True, metadata={
        "description": "brokers: the second member; members leave it out (the pair is them and member_id)"})
    reason = fields.String(load_default="", validate=validate.Length(max=2000))
    timebank = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class BlockOut(Schema):
    id = fields.Integer()
    member_ids = fields.Function(lambda b: [b.low_membership_id, b.high_membership_id])
    by_broker = fields.Boolean()
    reason = fields.String()
    created_at = fields.DateTime()


class ProposeIn(Schema):
    member_id = fields.Integer(required=True)
    idempotency_key = fields.String(load_default=None)


class EmptyIn(Schema):
    idempotency_key = fields.String(load_default=None)


# --- who is calling -----------------------------------------------------------------------------------------------

def caller_membership(slug: str | None = None) -> Membership:
    """The caller's active membership: in the named time bank, or their only one."""
    user = current_api_user()
    active = [m for m in user.memberships if m.status == "active"]
    if slug:
        active = [m for m in active if m.timebank.slug == slug]
        if not active:
            raise NotFound(f"You are not an active member of {slug!r}.", code="timebank_not_found")
    if not active:
        raise NotAllowed("You have no active membership.")
    if len(active) > 1 and not slug:
        raise ValidationFailed("Say which time bank with ?timebank=<slug>.", errors={"timebank": ["Required."]})
    return active[0]


def membership_for(timebank_id: int) -> Membership:
    membership = service.membership_in(db.session, current_api_user(), timebank_id)
    if membership is None:
        raise NotFound("Not found.")
    return membership


def broker_for(timebank_id: int) -> Membership:
    membership = membership_for(timebank_id)
    if not service.is_broker(membership):
        raise NotAllowed("Only brokers can do this.")
    return membership


def _status(args) -> str | None:
    return None if args["status"] == "all" else args["status"]


# --- listings -----------------------------------------------------------------------------------------------------

@blp.route("/offers", methods=["GET"])
@blp.arguments(ListingQuery, location="query")
@blp.response(200, OfferOut(many=True))
@blp.doc(security=SECURITY)
@token_required
def list_offers(args):
    """Offers in the caller's time bank, searchable and filtered."""
    me = caller_membership(args["timebank"])
    return queries.list_offers(db.session, me.timebank_id, status=_status(args), category_id=args["category_id"],
                               area=args["area"], availability=args["availability"], text=args["q"],
                               limit=args["limit"])


@blp.route("/offers", methods=["POST"])
@token_required
@idempotent
@blp.arguments(OfferIn)
@blp.response(201, OfferOut)
@blp.doc(security=SECURITY)
def create_offer(data):
    """Post an offer: what I can do."""
    me = caller_membership(data.pop("timebank"))
    data.pop("idempotency_key", None)
    return service.create_offer(db.session, membership=me, **data)


@blp.route("/offers/<int:offer_id>/close", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, OfferOut)
@blp.doc(security=SECURITY)
def close_offer(_data, offer_id):
    offer = queries.get_offer(db.session, offer_id)
    service.close_listing(db.session, offer, by_membership=membership_for(offer.timebank_id))
    return offer


def _list_requests(args, opportunities):
    me = caller_membership(args["timebank"])
    return queries.list_requests(db.session, me.timebank_id, status=_status(args), category_id=args["category_id"],
                                 area=args["area"], availability=args["availability"], text=args["q"],
                                 opportunities=opportunities, limit=args["limit"])


@blp.route("/requests", methods=["GET"])
@blp.arguments(ListingQuery, location="query")
@blp.response(200, RequestOut(many=True))
@blp.doc(security=SECURITY)
@token_required
def list_requests(args):
    """Members' requests and organisations' opportunities (each with its member_id or organisation_id)."""
    return _list_requests(args, None)


@blp.route("/requests", methods=["POST"])
@token_required
@idempotent
@blp.arguments(RequestIn)
@blp.response(201, RequestOut)
@blp.doc(security=SECURITY)
def create_request(data):
    """Post a request: what I need."""
    me = caller_membership(data.pop("timebank"))
    data.pop("idempotency_key", None)
    return service.create_request(db.session, user=current_api_user(), timebank=me.timebank, membership=me, **data)


@blp.route("/requests/<int:request_id>", methods=["GET"])
@blp.response(200, RequestOut)
@blp.doc(security=SECURITY)
@token_required
def get_request(request_id):
    row = queries.get_request(db.session, request_id)
    membership_for(row.timebank_id)
    return row


@blp.route("/requests/<int:request_id>/close", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, RequestOut)
@blp.doc(security=SECURITY)
def close_request(_data, request_id):
    row = queries.get_request(db.session, request_id)
    service.close_listing(db.session, row, by_membership=membership_for(row.timebank_id), user=current_api_user())
    return row


@blp.route("/opportunities", methods=["GET"])
@blp.arguments(ListingQuery, location="query")
@blp.response(200, RequestOut(many=True))
@blp.doc(security=SECURITY)
@token_required
def list_opportunities(args):
    """Organisations' volunteering opportunities."""
    return _list_requests(args, True)


@blp.route("/opportunities", methods=["POST"])
@token_required
@idempotent
@blp.arguments(OpportunityIn)
@blp.response(201, RequestOut)
@blp.doc(security=SECURITY)
def create_opportunity(data):
    """Post an organisation's opportunity (its representatives and brokers)."""
    me = caller_membership(data.pop("timebank"))
    data.pop("idempotency_key", None)
    organisation = db.session.get(Organisation, data.pop("organisation_id"))
    if organisation is None or organisation.timebank_id != me.timebank_id:
        raise NotFound("There is no such organisation.", code="organisation_not_found")
    if not (service.is_broker(me) or service.can_post_for(db.session, current_api_user(), organisation)):
        raise NotAllowed("Only the organisation's representatives or a broker can post its opportunities.")
    return service.create_request(db.session, user=current_api_user(), timebank=me.timebank,
                                  organisation=organisation, **data)


# --- suggestions and plans ----------------------------------------------------------------------------------------

@blp.route("/requests/<int:request_id>/suggestions", methods=["GET"])
@blp.arguments(SuggestionQuery, location="query")
@blp.response(200, SuggestionsOut)
@blp.doc(security=SECURITY)
@token_required
def request_suggestions(args, request_id):
    """Ranked members who could help, with reasons and the weights used (brokers)."""
    row = queries.get_request(db.session, request_id)
    broker_for(row.timebank_id)
    timebank = db.session.get(TimeBank, row.timebank_id)
    weights = scoring.weights_for(timebank.settings)
    items = queries.suggestions(db.session, row, limit=args["limit"], weights=weights)
    return {"request_id": row.id, "weights": weights, "items": items}


@blp.route("/requests/<int:request_id>/proposals", methods=["POST"])
@token_required
@idempotent
@blp.arguments(ProposeIn)
@blp.response(201, MatchOut)
@blp.doc(security=SECURITY)
def propose(data, request_id):
    """Propose one member for a request (brokers)."""
    row = queries.get_request(db.session, request_id)
    broker = broker_for(row.timebank_id)
    return service.propose(db.session, row, data["member_id"], by_user_id=broker.user_id)


@blp.route("/match-plans", methods=["POST"])
@token_required
@idempotent
@blp.arguments(PlanIn)
@blp.response(201, PlanOut)
@blp.doc(security=SECURITY)
def create_plan(data):
    """An exactly optimal batch plan for these requests (brokers)."""
    me = caller_membership(http_request.args.get("timebank"))
    if not service.is_broker(me):
        raise NotAllowed("Only brokers can make match plans.")
    return service.create_plan(db.session, timebank=me.timebank, request_ids=data["request_ids"],
                               by_user_id=me.user_id)


@blp.route("/match-plans/<int:plan_id>", methods=["GET"])
@blp.response(200, PlanOut)
@blp.doc(security=SECURITY)
@token_required
def get_plan(plan_id):
    plan = service.get_plan(db.session, plan_id)
    broker_for(plan.timebank_id)
    return plan


@blp.route("/match-plans/<int:plan_id>/send", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, PlanOut)
@blp.doc(security=SECURITY)
def send_plan(_data, plan_id):
    """Send the plan's proposals to the volunteers (brokers)."""
    plan = service.get_plan(db.session, plan_id)
    broker = broker_for(plan.timebank_id)
    service.send_plan(db.session, plan, by_user_id=broker.user_id)
    return plan


# --- the funnel ---------------------------------------------------------------------------------------------------

@blp.route("/matches", methods=["GET"])
@blp.response(200, MatchOut(many=True))
@blp.doc(security=SECURITY)
@token_required
def my_matches():
    """The caller's own matches (brokers: add ?all=1 for the time bank's)."""
    me = caller_membership(http_request.args.get("timebank"))
    if http_request.args.get("all") and service.is_broker(me):
        return queries.matches_for_timebank(db.session, me.timebank_id)
    return queries.matches_for_member(db.session, me.id)


def _match_action(match_id, action):
    match = service.get_match(db.session, match_id)
    me = membership_for(match.timebank_id)
    if action == "complete":
        return service.complete(db.session, match, by_membership=me)
    return service.respond(db.session, match, accept=action == "accept", by_membership=me)


@blp.route("/matches/<int:match_id>/accept", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, MatchOut)
@blp.doc(security=SECURITY)
def accept_match(_data, match_id):
    return _match_action(match_id, "accept")


@blp.route("/matches/<int:match_id>/decline", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, MatchOut)
@blp.doc(security=SECURITY)
def decline_match(_data, match_id):
    return _match_action(match_id, "decline")


@blp.route("/matches/<int:match_id>/complete", methods=["POST"])
@token_required
@idempotent
@blp.arguments(EmptyIn)
@blp.response(200, MatchOut)
@blp.doc(security=SECURITY)
def complete_match(_data, match_id):
    return _match_action(match_id, "complete")


def _logger_membership(match):
    """The caller may log a match's hours: its volunteer, the requester, the organisation's representative or a
    broker (the exchanges rules decide the rest)."""
    me = membership_for(match.timebank_id)
    request_row = match.request
    allowed = (me.id in (match.membership_id, request_row.membership_id) or service.is_broker(me)
               or (request_row.organisation_id is not None
                   and service.can_post_for(db.session, current_api_user(), request_row.organisation)))
    if not allowed:
        raise NotAllowed("Only the people in this match or a broker can see or log it.")
    return me


@blp.route("/matches/<int:match_id>", methods=["GET"])
@blp.response(200, MatchDetailOut)
@blp.doc(security=SECURITY)
@token_required
def get_match(match_id):
    """One match, with the exchange that would log its hours (pre-filled from the request)."""
    match = service.get_match(db.session, match_id)
    _logger_membership(match)
    return match


@blp.route("/matches/<int:match_id>/log", methods=["POST"])
@token_required
@idempotent
@blp.arguments(LogHoursIn)
@blp.response(201, LoggedOut)
@blp.doc(security=SECURITY)
def log_match_hours(data, match_id):
    """Log the hours of an accepted or done match as an exchange (fields left out come from the match); the match
    moves to logged. A party's exchange waits for the other side as usual; a broker's is recorded at once."""
    match = service.get_match(db.session, match_id)
    _logger_membership(match)
    exchange = service.log_hours(db.session, match, user=current_api_user(), minutes=data["minutes"],
                                 happened_on=data["date"], description=data["description"],
                                 category_id=data["category_id"], tags=data["tags"])
    return {"match": match, "exchange_id": exchange.id, "exchange_status": exchange.status}


# --- blocked pairs ------------------------------------------------------------------------------------------------

@blp.route("/blocked-pairs", methods=["GET"])
@blp.arguments(ListingQuery(only=("timebank",)), location="query")
@blp.response(200, BlockOut(many=True))
@blp.doc(security=SECURITY)
@token_required
def list_blocks(args):
    """Brokers: every blocked pair of the time bank. Members: the blocks they made themselves."""
    me = caller_membership(args["timebank"])
    return queries.blocked_pairs(db.session, me.timebank_id,
                                 made_by_user_id=None if service.is_broker(me) else me.user_id)


@blp.route("/blocked-pairs", methods=["POST"])
@token_required
@idempotent
@blp.arguments(BlockIn)
@blp.response(201, BlockOut)
@blp.doc(security=SECURITY)
def create_block(data):
    """Never match two members: a member blocks themself and member_id; a broker any two (safeguarding)."""
    me = caller_membership(data["timebank"])
    other = data["other_member_id"]
    if other is not None and other != me.id:
        if not service.is_broker(me):
            raise NotAllowed("Only brokers can block a pair that does not include themselves.")
        if not data["reason"].strip():
            raise ValidationFailed("Say why, for the safeguarding record.", errors={"reason": ["Required."]})
    return service.block_pair(db.session, timebank_id=me.timebank_id, a=data["member_id"],
                              b=me.id if other is None else other, reason=data["reason"], by_user_id=me.user_id,
                              by_broker=service.is_broker(me))


@blp.route("/blocked-pairs/<int:block_id>", methods=["DELETE"])
@token_required
@idempotent
@blp.response(204)
@blp.doc(security=SECURITY)
def delete_block(block_id):
    """Lift a block: brokers any; a member only one they made (never a broker's)."""
    me = caller_membership(http_request.args.get("timebank"))
    service.unblock_pair(db.session, service.get_block(db.session, block_id, me.timebank_id), by_membership=me)
    return None
