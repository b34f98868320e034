"""Ledger API: transfers, reversals, accounts and statements (brokers and admins; members read their own)."""
from __future__ import annotations

import datetime as dt

from flask import Response, request
from marshmallow import Schema, fields, validate

from timebank.api.blueprint import Blueprint
from timebank.api.idempotency import idempotency_key_from_request, idempotent
from timebank.api.security import current_api_user, token_required
from timebank.errors import Forbidden
from timebank.extensions import db
from timebank.ledger.csvexport import statement_csv
from timebank.ledger.models import TRANSFER_KINDS, Account, Transfer
from timebank.ledger.queries import get_account, get_transfer, reversal_of, statement
from timebank.ledger.service import post_transfer, reverse_transfer

blp = Blueprint("ledger_api", __name__, url_prefix="/api/v1", description="The hour ledger")

MANAGERS = ("broker", "admin")


# --- who may do what: one place -------------------------------------------------------------------------------------

# Both read the caller's memberships, which the token lookup loads with the user (no statement of their own).

def active_roles(session, user, timebank_id: int) -> set[str]:
    return {m.role for m in user.memberships if m.status == "active" and m.timebank_id == timebank_id}


def own_account_ids(session, user) -> set[int]:
    return {m.account_id for m in user.memberships if m.status == "active" and m.account_id is not None}


def require_manager(session, user, timebank_id: int) -> None:
    if not active_roles(session, user, timebank_id) & set(MANAGERS):
        raise Forbidden("Only the time bank's brokers and admins can record or reverse transfers.")


def can_read_account(session, user, account: Account) -> bool:
    """Brokers and admins of the account's time bank, and the member whose account it is."""
    return bool(active_roles(session, user, account.timebank_id) & set(MANAGERS)) or \
        account.id in own_account_ids(session, user)


def readable_account(session, user, account_id: int) -> Account:
    account = get_account(session, account_id)
    if not can_read_account(session, user, account):
        raise Forbidden("You can read only your own account.")
    return account


# --- schemas -------------------------------------------------------------------------------------------------------

class PostingIn(Schema):
    account_id = fields.Integer(required=True, strict=True)
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=-10**9, max=10**9))


class TransferIn(Schema):
    idempotency_key = fields.String(validate=validate.Length(min=1, max=200))
    memo = fields.String(load_default="", validate=validate.Length(max=2000))
    effective_date = fields.Date(required=True)
    kind = fields.String(load_default="adjustment",
                         validate=validate.OneOf([k for k in TRANSFER_KINDS if k != "reversal"]))
    postings = fields.List(fields.Nested(PostingIn), required=True, validate=validate.Length(min=2, max=500))
    metadata = fields.Dict(load_default=dict)


class ReversalIn(Schema):
    idempotency_key = fields.String(validate=validate.Length(min=1, max=200))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    effective_date = fields.Date()


class PostingOut(Schema):
    account_id = fields.Integer()
    minutes = fields.Integer()


class TransferOut(Schema):
    id = fields.Integer()
    timebank_id = fields.Integer()
    kind = fields.String()
    memo = fields.String()
    effective_date = fields.Date()
    recorded_at = fields.DateTime()
    recorded_by_user_id = fields.Integer(allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    reverses_transfer_id = fields.Integer(allow_none=True)
    reversed_by_transfer_id = fields.Method("get_reversed_by", allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    postings = fields.List(fields.Nested(PostingOut))

    def get_reversed_by(self, transfer):
        reversal = reversal_of(db.session, transfer.id)
        return reversal.id if reversal else None


class AccountOut(Schema):
    id = fields.Integer()
    timebank_id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    status = fields.String()
    balance_minutes = fields.Integer()
    floor_minutes = fields.Integer(allow_none=True)
    ceiling_minutes = fields.Integer(allow_none=True)


class StatementQuery(Schema):
    date_from = fields.Date(data_key="from")
    date_to = fields.Date(data_key="to")
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class StatementLineOut(Schema):
    date = fields.Date()
    transfer_id = fields.Integer()
    kind = fields.String()
    memo = fields.String()
    counterparty = fields.String()
    minutes = fields.Integer()
    running_minutes = fields.Integer()


class StatementOut(Schema):
    account_id = fields.Integer()
    account_name = fields.String()
    date_from = fields.Date(data_key="from")
    date_to = fields.Date(data_key="to")
    opening_minutes = fields.Integer()
    closing_minutes = fields.Integer()
    given_minutes = fields.Integer()
    received_minutes = fields.Integer()
    total_lines = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    pages = fields.Integer()
    lines = fields.List(fields.Nested(StatementLineOut))


# --- endpoints -----------------------------------------------------------------------------------------------------

SECURITY = [{"bearerAuth": []}]


@blp.route("/transfers", methods=["POST"])
@token_required  # before @idempotent, which reads the caller
@idempotent
@blp.arguments(TransferIn)
@blp.response(201, TransferOut)
@blp.doc(security=SECURITY)
def create_transfer(data):
    """Record a balanced transfer (brokers and admins of the accounts' time bank)."""
    user = current_api_user()
    first = get_account(db.session, data["postings"][0]["account_id"])
    require_manager(db.session, user, first.timebank_id)
    return post_transfer(db.session, timebank_id=first.timebank_id, kind=data["kind"],
                         postings=[(p["account_id"], p["minutes"]) for p in data["postings"]],
                         effective_date=data["effective_date"], memo=data["memo"], recorded_by_user_id=user.id,
                         idempotency_key=data.get("idempotency_key") or idempotency_key_from_request(),
                         metadata=data["metadata"])


@blp.route("/transfers/<int:transfer_id>", methods=["GET"])
@blp.response(200, TransferOut)
@blp.doc(security=SECURITY)
@token_required
def read_transfer(transfer_id):
    """One transfer with its postings (managers, or a member whose account it touches)."""
    user = current_api_user()
    transfer = get_transfer(db.session, transfer_id)
    if not active_roles(db.session, user, transfer.timebank_id) & set(MANAGERS) and \
            not own_account_ids(db.session, user) & {p.account_id for p in transfer.postings}:
        raise Forbidden("You can read only transfers on your own account.")
    return transfer


@blp.route("/transfers/<int:transfer_id>/reversal", methods=["POST"])
@token_required  # before @idempotent, which reads the caller
@idempotent
@blp.arguments(ReversalIn)
@blp.response(201, TransferOut)
@blp.doc(security=SECURITY)
def create_reversal(data, transfer_id):
    """Reverse a transfer with a mirroring transfer; a transfer is reversed at most once."""
    user = current_api_user()
    transfer = get_transfer(db.session, transfer_id)
    require_manager(db.session, user, transfer.timebank_id)
    reversal = reverse_transfer(db.session, transfer.id, reason=data["reason"], recorded_by_user_id=user.id,
                                idempotency_key=data.get("idempotency_key") or idempotency_key_from_request(),
                                effective_date=data.get("effective_date"))
    # Reversals are sensitive actions: admins read them in the audit log (the ledger itself knows no people).
    from timebank.community.service import log_audit

    log_audit(db.session, "ledger.reversed", actor_user_id=user.id, timebank_id=transfer.timebank_id,
              target_type="transfer", target_id=transfer.id, reversal_transfer_id=reversal.id)
    return reversal


@blp.route("/accounts/<int:account_id>", methods=["GET"])
@blp.response(200, AccountOut)
@blp.doc(security=SECURITY)
@token_required
def read_account(account_id):
    """An account with its balance, floor, ceiling and status."""
    return readable_account(db.session, current_api_user(), account_id)


@blp.route("/accounts/<int:account_id>/statement", methods=["GET"])
@blp.arguments(StatementQuery, location="query")
@blp.response(200, StatementOut)
@blp.alt_response(200, content_type="text/csv", description="The statement as CSV (format=csv or Accept: text/csv)")
@blp.doc(security=SECURITY)
@token_required
def read_statement(args, account_id):
    """Opening balance, lines with running balance, closing balance and totals for a period."""
    account = readable_account(db.session, current_api_user(), account_id)
    today = dt.date.today()
    date_to = args.get("date_to") or today
    date_from = args.get("date_from") or date_to.replace(day=1)
    if date_from > date_to:
        from timebank.errors import ValidationFailed

        raise ValidationFailed("The start of the period is after its end.", errors={"from": ["After `to`."]})
    wants_csv = args["format"] == "csv" or request.accept_mimetypes.best_match(
        ["application/json", "text/csv"]) == "text/csv"
    if wants_csv:
        full = statement(db.session, account.id, date_from, date_to, page=1, per_page=10**9)
        return Response(statement_csv(full), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="statement-{account.id}-{date_from}-{date_to}.csv"'})
    return statement(db.session, account.id, date_from, date_to, page=args["page"], per_page=args["per_page"])
