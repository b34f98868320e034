"""Impact pages: the dashboard, its printable view, downloads, and closing a period."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from timebank.errors import DomainError, ValidationFailed
from timebank.extensions import db
from timebank.impact import charts
from timebank.impact.exports import FORMATS
from timebank.impact.policy import can_close_period, granted_timebank_ids
from timebank.impact.report import timebanks_by_ids
from timebank.impact.scope import report_scope
from timebank.impact.service import close_period, closed_periods, get_report

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _date(name: str) -> dt.date | None:
    raw = request.values.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"Enter the {'start' if name == 'from' else 'end'} date as YYYY-MM-DD.") from None


def _report():
    slug = request.args.get("timebank", "").strip()[:64] or None
    timebanks, start, end = report_scope(db.session, current_user, slug, _date("from"), _date("to"))
    group_by = request.args.get("group_by", "month")
    if group_by not in ("month", "year"):
        group_by = "month"
    return get_report(db.session, timebanks, start, end, group_by), slug, timebanks


# A breakdown on the page shows its rows with most hours (a council's partner list can run to thousands); the
# rest are a click away (?all=<breakdown>) and always in the downloads, which carry every row.
PAGE_ROWS = 25


def _shown_rows(report: dict, show_all: str | None) -> dict[str, list[dict]]:
    return {name: section["rows"] if name == show_all else section["rows"][:PAGE_ROWS]
            for name, section in report["breakdowns"].items()}


def _charts(report: dict, shown: dict[str, list[dict]]) -> dict:
    out = {"trend": charts.bar_chart("Hours delivered by " + report["group_by"],
                                     [(r["period"], r["hours"]) for r in report["trend"]])}
    for name, section in report["breakdowns"].items():
        out[name] = charts.bar_chart(f"Hours by {section['title'].lower()}",
                                     [(r["label"], r["hours"]) for r in shown[name]])
    return out


def _render(template: str):
    try:
        report, slug, timebanks = _report()
    except DomainError as exc:
        if exc.status == 403:
            raise
        flash(exc.message, "error")
        return render_template("reports/dashboard.html", report=None, error=exc.message, args=request.args,
                               choices=timebanks_by_ids(db.session, granted_timebank_ids(db.session, current_user)),
                               closable=False, closed=[]), exc.status
    granted = timebanks_by_ids(db.session, granted_timebank_ids(db.session, current_user))
    closable = len(timebanks) == 1 and can_close_period(db.session, current_user, timebanks[0].id)
    shown = _shown_rows(report, request.args.get("all"))
    return render_template(template, report=report, shown=shown, charts=_charts(report, shown), args=request.args,
                           slug=slug,
                           choices=granted, closable=closable, error=None,
                           closed=closed_periods(db.session, [tb.id for tb in timebanks]))


@bp.get("/")
@login_required
def dashboard():
    return _render("reports/dashboard.html")


@bp.get("/print")
@login_required
def print_view():
    return _render("reports/print.html")


@bp.get("/download.<fmt>")
@login_required
def download(fmt: str):
    if fmt not in FORMATS:
        return render_template("errors/404.html", title="Page not found", detail="No such download."), 404
    report, slug, _tbs = _report()
    mime, render = FORMATS[fmt]
    name = f"impact-{slug or 'all'}-{report['period']['from']}-{report['period']['to']}.{fmt}"
    from timebank.community.service import log_audit  # exports are sensitive actions, read in the audit log

    for timebank in _tbs:
        log_audit(db.session, "impact.exported", actor_user_id=current_user.id, timebank_id=timebank.id,
                  target_type="timebank", target_id=timebank.id, format=fmt, period=report["period"])
    return Response(render(report), mimetype=mime.split(";")[0],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/close")
@login_required
def close():
    slug = request.form.get("timebank", "").strip()[:64]
    try:
        timebanks, start, end = report_scope(db.session, current_user, slug or None, _date("from"), _date("to"))
        if len(timebanks) != 1 or not can_close_period(db.session, current_user, timebanks[0].id):
            flash("Only an admin of this time bank can close a reporting period.", "error")
            return redirect(url_for("reports.dashboard", timebank=slug, **{"from": request.form.get("from", ""),
                                                                           "to": request.form.get("to", "")})), 303
        row = close_period(db.session, timebank=timebanks[0], start=start, end=end, closed_by_user_id=current_user.id)
    except DomainError as exc:
        if exc.status == 403:
            raise
        flash(exc.message, "error")
        return redirect(url_for("reports.dashboard", timebank=slug)), 303
    flash(f"Closed {start} to {end}. The report is frozen (SHA-256 {row.content_hash[:12]}…).", "success")
    return redirect(url_for("reports.dashboard", timebank=slug, **{"from": start.isoformat(),
                                                                   "to": end.isoformat()})), 303
