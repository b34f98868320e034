"""Impact reports for commissioners, brokers and admins; closing periods (admins)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from timebank.api.blueprint import Blueprint
from timebank.api.idempotency import idempotent
from timebank.api.security import current_api_user, token_required
from timebank.errors import NotFound
from timebank.extensions import db
from timebank.impact.errors import NotAllowedToClosePeriods
from timebank.impact.policy import can_close_period
from timebank.impact.scope import report_scope
from timebank.impact.service import close_period, get_report

blp = Blueprint("reports_api", __name__, url_prefix="/api/v1/reports", description="Impact reports")


class ImpactQueryIn(Schema):
    timebank = fields.String(validate=validate.Length(min=1, max=64),
                             metadata={"description": "Time bank slug; all granted time banks when omitted"})
    from_ = fields.Date(data_key="from", metadata={"description": "First day (default: 1 January this year)"})
    to = fields.Date(metadata={"description": "Last day (default: today)"})
    group_by = fields.String(load_default="month", validate=validate.OneOf(["month", "year"]))


class HeadlineOut(Schema):
    minutes_delivered = fields.Integer(required=True)
    hours_delivered = fields.Float(required=True)
    exchanges = fields.Integer(required=True)
    members_total = fields.Integer(required=True)
    members_active = fields.Integer(required=True)
    members_new = fields.Integer(required=True)
    organisations_taking_part = fields.Integer(required=True)
    members_gave_and_received = fields.Integer(required=True)


class ImpactReportOut(Schema):
    timebanks = fields.List(fields.Dict())
    period = fields.Dict()
    previous_period = fields.Dict()
    headline = fields.Nested(HeadlineOut)
    previous = fields.Nested(HeadlineOut)
    change = fields.Dict()
    group_by = fields.String()
    trend = fields.List(fields.Dict())
    breakdowns = fields.Dict()
    engagement = fields.Dict()
    value = fields.Dict()
    unmet_need = fields.Dict()
    reconciliation = fields.Dict()
    closed = fields.Dict(allow_none=True)


class ClosedPeriodIn(Schema):
    timebank = fields.String(required=True, validate=validate.Length(min=1, max=64))
    from_ = fields.Date(required=True, data_key="from")
    to = fields.Date(required=True)
    idempotency_key = fields.String(validate=validate.Length(min=1, max=200))


class ClosedPeriodOut(Schema):
    id = fields.Integer()
    timebank = fields.String()
    from_ = fields.Date(data_key="from")
    to = fields.Date()
    content_hash = fields.String()
    closed_at = fields.DateTime()


@blp.route("/impact", methods=["GET"])
@blp.arguments(ImpactQueryIn, location="query")
@blp.response(200, ImpactReportOut)
@blp.doc(security=[{"bearerAuth": []}])
@token_required
def impact(args):
    """The impact report for one time bank (or every granted one) and period, with the previous period."""
    timebanks, start, end = report_scope(db.session, current_api_user(), args.get("timebank"), args.get("from_"),
                                         args.get("to"))
    return get_report(db.session, timebanks, start, end, args["group_by"])


@blp.route("/closed-periods", methods=["POST"])
@idempotent
@blp.arguments(ClosedPeriodIn)
@blp.response(201, ClosedPeriodOut)
@blp.doc(security=[{"bearerAuth": []}])
@token_required
def create_closed_period(body):
    """Close a period (admins): its report is frozen with a SHA-256 content hash."""
    from sqlalchemy import select

    from timebank.community.models import TimeBank

    user = current_api_user()
    timebank = db.session.scalar(select(TimeBank).where(TimeBank.slug == body["timebank"]))
    if timebank is None:
        raise NotFound(f"There is no time bank called {body['timebank']!r}.", code="timebank_not_found")
    if not can_close_period(db.session, user, timebank.id):
        raise NotAllowedToClosePeriods()
    row = close_period(db.session, timebank=timebank, start=body["from_"], end=body["to"],
                       closed_by_user_id=user.id)
    return {"id": row.id, "timebank": timebank.slug, "from_": row.period_start, "to": row.period_end,
            "content_hash": row.content_hash, "closed_at": row.closed_at}
