"""Members, applications and organisations. Every check goes through community.permissions."""
from __future__ import annotations

from flask import current_app, request
from marshmallow import Schema, fields, validate

from timebank.api.blueprint import Blueprint
from timebank.api.idempotency import idempotent
from timebank.api.security import current_api_user, token_required
from timebank.community import queries
from timebank.community import service as people
from timebank.community.models import ROLES, SAFETY_CHECK_LEVELS, TimeBank
from timebank.community.permissions import authorize, timebanks_where
from timebank.errors import Forbidden, ValidationFailed
from timebank.extensions import db

blp = Blueprint("people_api", __name__, url_prefix="/api/v1", description="Members, applications, organisations")
BEARER = [{"bearerAuth": []}]


class MemberOut(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    display_name = fields.Function(lambda m: m.user.display_name)
    email = fields.Function(lambda m: m.user.email)
    timebank = fields.Function(lambda m: m.timebank.slug)
    role = fields.String()
    status = fields.String()
    account_id = fields.Integer(allow_none=True)
    joined_on = fields.Date(allow_none=True)
    ward = fields.String(allow_none=True)
    postcode_district = fields.String(allow_none=True)
    bio = fields.String(allow_none=True)
    availability = fields.Integer()
    skills = fields.Function(lambda m: [c.name for c in m.skills])
    references_received = fields.Integer()
    safety_check_level = fields.String()
    safety_check_date = fields.Date(allow_none=True)
    safety_check_expires = fields.Date(allow_none=True)
    risk_note = fields.String(allow_none=True)
    induction_date = fields.Date(allow_none=True)
    decline_reason = fields.String(allow_none=True)
    info_requested = fields.String(allow_none=True)
    application_note = fields.String(allow_none=True)


class PublicProfileOut(Schema):
    """What members see of each other: no contact details, no onboarding notes."""
    id = fields.Integer()
    display_name = fields.Function(lambda m: m.user.display_name)
    timebank = fields.Function(lambda m: m.timebank.slug)
    role = fields.String()
    ward = fields.String(allow_none=True)
    bio = fields.String(allow_none=True)
    availability = fields.Integer()
    skills = fields.Function(lambda m: [c.name for c in m.skills])


class MemberIn(Schema):
    email = fields.Email(required=True)
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    password = fields.String(load_default=None, validate=validate.Length(min=12, max=128))
    timebank = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class MemberQuery(Schema):
    q = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(["pending", "active", "declined",
                                                                       "suspended", "left"]))
    timebank = fields.String(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class TimebankQuery(Schema):
    timebank = fields.String(load_default=None)


class StatusChangeIn(Schema):
    reason = fields.String(load_default="")
    idempotency_key = fields.String(load_default=None)


class RoleIn(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    idempotency_key = fields.String(load_default=None)


class ChecksIn(Schema):
    references_received = fields.Integer(load_default=None)
    safety_check_level = fields.String(load_default=None, validate=validate.OneOf(SAFETY_CHECK_LEVELS))
    safety_check_date = fields.Date(load_default=None)
    safety_check_expires = fields.Date(load_default=None)
    risk_note = fields.String(load_default=None)
    induction_date = fields.Date(load_default=None)
    idempotency_key = fields.String(load_default=None)


class ApproveIn(Schema):
    welcome_minutes = fields.Integer(load_default=0, validate=validate.Range(min=0, max=6000))
    welcome_from = fields.String(load_default="issuance", validate=validate.OneOf(["issuance", "pot"]))
    idempotency_key = fields.String(load_default=None)


class DeclineIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1))
    idempotency_key = fields.String(load_default=None)


class InfoIn(Schema):
    message = fields.String(required=True, validate=validate.Length(min=1))
    idempotency_key = fields.String(load_default=None)


class OrganisationOut(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    area = fields.String(allow_none=True)
    status = fields.String()
    timebank = fields.Function(lambda o: o.timebank.slug)
    account_id = fields.Integer(allow_none=True)
    representatives = fields.Function(lambda o: [u.display_name for u in o.representatives])


class OrganisationIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(load_default="charity", validate=validate.OneOf(
        ["council", "nhs", "school", "charity", "community_group", "business", "other"]))
    area = fields.String(load_default=None)
    timebank = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


def acting_timebank(user, action: str, slug: str | None) -> TimeBank:
    """The time bank the caller acts in: the one named, or their only one where `action` is allowed."""
    if slug:
        timebank = people.timebank_by_slug(db.session, slug)
        authorize(user, action, timebank_id=timebank.id)
        return timebank
    ids = timebanks_where(user, action)
    if not ids:
        raise Forbidden("Your account does not have permission to do that.")
    if len(ids) > 1:
        raise ValidationFailed("You belong to several time banks: say which with `timebank`.",
                               errors={"timebank": ["Missing data for required field."]})
    return db.session.get(TimeBank, ids[0])


def _member(member_id: int, action: str):
    membership = queries.membership_by_id(db.session, member_id)
    authorize(current_api_user(), action, membership=membership)
    return membership


# --- members ---------------------------------------------------------------------------------------------------

@blp.route("/members", methods=["GET"])
@blp.arguments(MemberQuery, location="query")
@blp.response(200, MemberOut(many=True))
@blp.doc(security=BEARER)
@token_required
def list_members(args):
    """List or search the members of a time bank (brokers and admins)."""
    timebank = acting_timebank(current_api_user(), "people.manage", args["timebank"])
    return queries.directory(db.session, timebank.id, search=args["q"], status=args["status"],
                             limit=args["limit"], offset=args["offset"])


@blp.route("/members", methods=["POST"])
@idempotent
@blp.arguments(MemberIn)
@blp.response(201, MemberOut)
@blp.doc(security=BEARER)
@token_required
def create_member(body):
    """Add an approved member with a ledger account. Without a password a set-password link is sent."""
    actor = current_api_user()
    timebank = acting_timebank(actor, "people.manage", body["timebank"])
    membership = people.add_member_directly(db.session, timebank=timebank, actor=actor, email=body["email"],
                                            display_name=body["display_name"], password=body["password"])
    if not body["password"]:
        from timebank.password_mail import mail_password_link

        mail_password_link(db.session, membership.user, purpose="set")
    return membership


@blp.route("/members/<int:member_id>", methods=["GET"])
@blp.response(200, description="The member: full record or public profile, by who asks")
@blp.doc(security=BEARER)
@token_required
def get_member(member_id):
    """A member: the full record for brokers and the member themselves, the public profile for other members."""
    membership = queries.membership_by_id(db.session, member_id)
    user = current_api_user()
    from timebank.community.permissions import can

    if can(user, "people.read_private", membership=membership) or can(user, "profile.read_own",
                                                                      membership=membership):
        return MemberOut().dump(membership)
    authorize(user, "profile.read_public", membership=membership)
    if membership.status != "active" or membership.user.erased_at is not None:
        from timebank.errors import NotFound

        raise NotFound("There is no such member.", code="member_not_found")
    return PublicProfileOut().dump(membership)


@blp.route("/members/<int:member_id>/suspend", methods=["POST"])
@idempotent
@blp.arguments(StatusChangeIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def suspend(body, member_id):
    membership = _member(member_id, "people.manage")
    return people.suspend_member(db.session, membership, actor=current_api_user(), reason=body["reason"])


@blp.route("/members/<int:member_id>/reinstate", methods=["POST"])
@idempotent
@blp.arguments(StatusChangeIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def reinstate(body, member_id):
    membership = _member(member_id, "people.manage")
    return people.reinstate_member(db.session, membership, actor=current_api_user())


@blp.route("/members/<int:member_id>/role", methods=["PUT"])
@idempotent
@blp.arguments(RoleIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def set_role(body, member_id):
    """Change a member's role (admins)."""
    membership = _member(member_id, "roles.manage")
    return people.change_role(db.session, membership, actor=current_api_user(), role=body["role"])


@blp.route("/members/<int:member_id>/erase", methods=["POST"])
@idempotent
@blp.arguments(StatusChangeIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def erase(body, member_id):
    """Erase a person's personal data (admins). Ledger history and balances stay as they were."""
    membership = _member(member_id, "person.erase")
    people.erase_person(db.session, membership.user, actor=current_api_user(), timebank_id=membership.timebank_id)
    return membership


@blp.route("/me/data", methods=["GET"])
@blp.response(200, description="Everything held about the caller, as JSON")
@blp.doc(security=BEARER)
@token_required
def my_data():
    """Everything held about me, as JSON (UK GDPR right of access)."""
    user = current_api_user()
    return people.export_personal_data(db.session, user, actor=user)


# --- applications ------------------------------------------------------------------------------------------------

@blp.route("/applications", methods=["GET"])
@blp.arguments(TimebankQuery, location="query")
@blp.response(200, MemberOut(many=True))
@blp.doc(security=BEARER)
@token_required
def list_applications(args):
    """Pending applications (brokers and admins)."""
    timebank = acting_timebank(current_api_user(), "people.manage", args["timebank"])
    return queries.pending_applications(db.session, timebank.id)


@blp.route("/applications/<int:member_id>/checks", methods=["POST"])
@idempotent
@blp.arguments(ChecksIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def record_checks(body, member_id):
    membership = _member(member_id, "people.manage")
    body.pop("idempotency_key", None)
    return people.record_checks(db.session, membership, actor=current_api_user(), **body)


@blp.route("/applications/<int:member_id>/approve", methods=["POST"])
@idempotent
@blp.arguments(ApproveIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def approve(body, member_id):
    membership = _member(member_id, "people.manage")
    return people.approve_application(db.session, membership, actor=current_api_user(),
                                      welcome_minutes=body["welcome_minutes"], welcome_from=body["welcome_from"])


@blp.route("/applications/<int:member_id>/decline", methods=["POST"])
@idempotent
@blp.arguments(DeclineIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def decline(body, member_id):
    membership = _member(member_id, "people.manage")
    return people.decline_application(db.session, membership, actor=current_api_user(), reason=body["reason"])


@blp.route("/applications/<int:member_id>/request-info", methods=["POST"])
@idempotent
@blp.arguments(InfoIn)
@blp.response(200, MemberOut)
@blp.doc(security=BEARER)
@token_required
def request_info(body, member_id):
    membership = _member(member_id, "people.manage")
    return people.request_more_information(db.session, membership, actor=current_api_user(),
                                           message=body["message"])


# --- organisations -----------------------------------------------------------------------------------------------

@blp.route("/organisations", methods=["GET"])
@blp.response(200, OrganisationOut(many=True))
@blp.doc(security=BEARER)
@token_required
def list_organisations():
    """Partner organisations in the caller's time banks (not shown to commissioners: they see reports only)."""
    return queries.organisations_in(db.session, timebanks_where(current_api_user(), "profile.read_public"))


@blp.route("/organisations", methods=["POST"])
@idempotent
@blp.arguments(OrganisationIn)
@blp.response(201, OrganisationOut)
@blp.doc(security=BEARER)
@token_required
def create_organisation(body):
    actor = current_api_user()
    timebank = acting_timebank(actor, "organisation.manage", body["timebank"])
    organisation = people.create_organisation(db.session, timebank=timebank, name=body["name"], kind=body["kind"],
                                              area=body["area"])
    people.log_audit(db.session, "organisation.created", actor_user_id=actor.id, timebank_id=timebank.id,
                     target_type="organisation", target_id=organisation.id)
    return organisation


@blp.route("/organisations/<int:organisation_id>", methods=["GET"])
@blp.response(200, OrganisationOut)
@blp.doc(security=BEARER)
@token_required
def get_organisation(organisation_id):
    organisation = queries.organisation_by_id(db.session, organisation_id)
    authorize(current_api_user(), "profile.read_public", organisation=organisation)
    return organisation


# --- categories --------------------------------------------------------------------------------------------------

class CategoryOut(Schema):
    id = fields.Integer()
    name = fields.String()
    parent_id = fields.Integer(allow_none=True)
    timebank = fields.Function(lambda c: c.timebank.slug)
    retired = fields.Function(lambda c: c.retired_at is not None)
    default_coproduction_type = fields.String(allow_none=True)
    default_outcome_area = fields.String(allow_none=True)


class CategoryQuery(Schema):
    timebank = fields.String(load_default=None)
    include_retired = fields.Boolean(load_default=False)


class CategoryIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    parent_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    timebank = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class CategoryChangeIn(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    retired = fields.Boolean()
    idempotency_key = fields.String(load_default=None)


@blp.route("/categories", methods=["GET"])
@blp.arguments(CategoryQuery, location="query")
@blp.response(200, CategoryOut(many=True))
@blp.doc(security=BEARER)
@token_required
def list_categories(args):
    """The time bank's categories (members of the bank; commissioners too, for reading reports)."""
    user = current_api_user()
    if args["timebank"]:
        timebank = people.timebank_by_slug(db.session, args["timebank"])
        from timebank.community.permissions import role_in

        if role_in(user, timebank.id) is None:
            from timebank.errors import NotFound

            raise NotFound("There is no such time bank.", code="timebank_not_found")
    else:
        ids = sorted({m.timebank_id for m in user.memberships if m.status == "active"})
        if not ids:
            raise Forbidden("Your membership is not active.")
        if len(ids) > 1:
            raise ValidationFailed("You belong to several time banks: say which with `timebank`.",
                                   errors={"timebank": ["Missing data for required field."]})
        timebank = db.session.get(TimeBank, ids[0])
    return queries.categories(db.session, timebank.id, include_retired=args["include_retired"])


@blp.route("/categories", methods=["POST"])
@token_required
@idempotent
@blp.arguments(CategoryIn)
@blp.response(201, CategoryOut)
@blp.doc(security=BEARER)
def create_category(body):
    """Add a category, at the top or under a top-level one (brokers and admins)."""
    actor = current_api_user()
    timebank = acting_timebank(actor, "categories.manage", body["timebank"])
    return people.create_category(db.session, timebank=timebank, name=body["name"], parent_id=body["parent_id"],
                                  actor=actor)


@blp.route("/categories/<int:category_id>", methods=["PATCH"])
@token_required
@idempotent
@blp.arguments(CategoryChangeIn)
@blp.response(200, CategoryOut)
@blp.doc(security=BEARER)
def change_category(body, category_id):
    """Rename (`name`), retire (`retired: true`) or restore (`retired: false`) a category (brokers and admins)."""
    from timebank.community.models import Category

    actor = current_api_user()
    category = db.session.get(Category, category_id)
    if category is None:
        from timebank.errors import NotFound

        raise NotFound("There is no such category.", code="category_not_found")
    authorize(actor, "categories.manage", timebank_id=category.timebank_id)
    if "name" in body:
        people.rename_category(db.session, category, name=body["name"], actor=actor)
    if "retired" in body and body["retired"] != category.is_retired:
        (people.retire_category if body["retired"] else people.restore_category)(db.session, category, actor=actor)
    return category
