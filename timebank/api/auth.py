"""Personal access tokens and the caller's own identity."""
from __future__ import annotations

from flask import request
from marshmallow import Schema, fields
from werkzeug.exceptions import Unauthorized

from timebank.api.blueprint import Blueprint
from timebank.api.security import current_api_user, token_required
from timebank.community.auth import authenticate, issue_token, revoke_token
from timebank.extensions import db

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Access tokens and who I am")


class TokenOut(Schema):
    token = fields.String(required=True)
    expires_at = fields.DateTime(required=True)


class MembershipOut(Schema):
    timebank_id = fields.Integer()
    timebank = fields.Function(lambda m: m.timebank.slug)
    role = fields.String()
    status = fields.String()
    account_id = fields.Integer(allow_none=True)
    id = fields.Integer()


class MeOut(Schema):
    id = fields.Integer()
    email = fields.String()
    display_name = fields.String()
    memberships = fields.List(fields.Nested(MembershipOut))


@blp.route("/tokens", methods=["POST"])
@blp.response(201, TokenOut)
@blp.doc(security=[{"basicAuth": []}])
def create_token():
    """Exchange HTTP Basic credentials (email:password) for a bearer token."""
    from flask import current_app

    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise Unauthorized("Send your email and password with HTTP Basic authentication.")
    user = authenticate(db.session, auth.username, auth.password or "")
    if user is None:
        raise Unauthorized("The email or password is not right.")
    token, row = issue_token(db.session, user, current_app.config["API_TOKEN_TTL_HOURS"])
    return {"token": token, "expires_at": row.expires_at}


@blp.route("/tokens/current", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=[{"bearerAuth": []}])
@token_required
def revoke_current_token():
    """Revoke the token this request carries."""
    revoke_token(db.session, request.headers["Authorization"][7:].strip())


@blp.route("/me", methods=["GET"])
@blp.response(200, MeOut)
@blp.doc(security=[{"bearerAuth": []}])
@token_required
def me():
    """The calling user and their memberships."""
    return current_api_user()
