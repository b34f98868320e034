"""A member's statement page, with CSV download."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user, login_required

from timebank.api.ledger import can_read_account
from timebank.errors import DomainError
from timebank.extensions import db
from timebank.ledger.csvexport import statement_csv
from timebank.ledger.errors import describe_minutes
from timebank.ledger.queries import get_account, statement

bp = Blueprint("ledger", __name__)


def _date(name: str, default: dt.date) -> dt.date:
    value = request.args.get(name, "")
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


@bp.get("/accounts/<int:account_id>/statement")
@login_required
def statement_page(account_id: int):
    try:
        account = get_account(db.session, account_id)
    except DomainError:
        abort(404)
    if not can_read_account(db.session, current_user, account):
        abort(403)
    today = dt.date.today()
    date_to = _date("to", today)
    date_from = _date("from", date_to.replace(day=1))
    if date_from > date_to:
        date_from, date_to = date_to, date_from
    if request.args.get("format") == "csv":
        full = statement(db.session, account.id, date_from, date_to, page=1, per_page=10**9)
        return Response(statement_csv(full), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="statement-{account.id}-{date_from}-{date_to}.csv"'})
    page = request.args.get("page", "1")
    st = statement(db.session, account.id, date_from, date_to, page=int(page) if page.isdigit() else 1)
    return render_template("ledger/statement.html", account=account, st=st, hours=describe_minutes,
                           page_title=f"Statement for {account.name}")
