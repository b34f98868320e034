"""Pages: browse and post listings, a member's matches, the broker's matching workbench."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from timebank.community.models import Category, Organisation, OrganisationRepresentative
from timebank.errors import DomainError, ValidationFailed
from timebank.extensions import db
from timebank.matching import queries, scoring, service
from timebank.matching.models import HelpRequest, Match

bp = Blueprint("matching", __name__)


def _membership():
    active = [m for m in current_user.memberships if m.status == "active" and m.role != "commissioner"]
    if not active:
        abort(403)
    return active[0]


def _broker():
    membership = _membership()
    if not service.is_broker(membership):
        abort(403)
    return membership


def _categories(timebank_id):
    rows = db.session.scalars(select(Category).where(Category.timebank_id == timebank_id,
                                                     Category.retired_at.is_(None))  # retired: not for new listings
                              .order_by(Category.parent_id.is_not(None), Category.name)).all()
    parents = {c.id: c for c in rows if c.parent_id is None}
    out = []
    for parent in parents.values():
        out.append((parent.id, parent.name))
        out += [(c.id, f"{parent.name} › {c.name}") for c in rows if c.parent_id == parent.id]
    return out


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _date(value):
    try:
        return dt.date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def _slots_from_form(form) -> int:
    return sum(1 << bit for bit in range(21) if form.get(f"slot{bit}"))


@bp.get("/listings")
@login_required
def listings():
    me = _membership()
    args = request.args
    filters = {"text": args.get("q") or None, "category_id": _int(args.get("category_id")),
               "area": args.get("area") or None, "availability": _int(args.get("slot")) is not None
               and (1 << _int(args.get("slot"))) or None}
    if filters["availability"] is not None and not 0 <= _int(args.get("slot")) < 21:
        filters["availability"] = None
    offers = queries.list_offers(db.session, me.timebank_id, **filters)
    requests_ = queries.list_requests(db.session, me.timebank_id, **filters)
    could_help = queries.requests_member_could_help(db.session, me, limit=10)
    my_matches = queries.matches_for_member(db.session, me.id)
    mine = (queries.list_offers(db.session, me.timebank_id, membership_id=me.id, limit=50)
            + queries.list_requests(db.session, me.timebank_id, membership_id=me.id, limit=50))
    return render_template("matching/listings.html", offers=offers, requests=requests_, could_help=could_help,
                           can_post_opportunity=bool(_organisations_for(me)),
                           my_matches=my_matches, my_listings=mine, closes_on=queries.closes_on,
                           on_my_requests=queries.matches_on_requests_of(db.session, me.id),
                           categories=_categories(me.timebank_id), args=args,
                           slots=[(b, f"{scoring.DAYS[b // 3]} {scoring.PARTS[b % 3]}") for b in range(21)])


@bp.route("/listings/new/<kind>", methods=["GET", "POST"])
@login_required
def new_listing(kind):
    if kind not in ("offer", "request", "opportunity"):
        abort(404)
    me = _membership()
    organisations = _organisations_for(me) if kind == "opportunity" else []
    if kind == "opportunity" and not organisations:
        abort(403)
    error, status = None, 200
    if request.method == "POST":
        form = request.form
        common = dict(title=form.get("title", "")[:200], category_id=_int(form.get("category_id")),
                      description=form.get("description", "")[:5000], area=form.get("area") or None,
                      remote=bool(form.get("remote")), availability=_slots_from_form(form) or None,
                      starts_on=_date(form.get("starts_on")), ends_on=_date(form.get("ends_on")))
        try:
            if (form.get("starts_on") and common["starts_on"] is None) or (form.get("ends_on")
                                                                           and common["ends_on"] is None):
                raise ValidationFailed("Enter dates as year-month-day.", errors={"dates": ["Not a date."]})
            if kind == "offer":
                service.create_offer(db.session, membership=me, **common)
            elif kind == "opportunity":
                organisation = {o.id: o for o in organisations}.get(_int(form.get("organisation_id")))
                if organisation is None:
                    raise ValidationFailed("Choose an organisation you act for.",
                                           errors={"organisation_id": ["Not one of yours."]})
                service.create_request(db.session, user=current_user, timebank=me.timebank,
                                       organisation=organisation, urgency=form.get("urgency", "normal"),
                                       estimated_minutes=_int(form.get("estimated_minutes")) or 60,
                                       volunteers_needed=_int(form.get("volunteers_needed")) or 1,
                                       safety_check_level=form.get("safety_check_level", "none"),
                                       min_age=_int(form.get("min_age")), **common)
            else:
                service.create_request(db.session, user=current_user, timebank=me.timebank, membership=me,
                                       urgency=form.get("urgency", "normal"),
                                       estimated_minutes=_int(form.get("estimated_minutes")) or 60, **common)
        except DomainError as exc:
            error, status = exc.message, getattr(exc, "status", 422)
            if getattr(exc, "errors", None):
                error += " " + " ".join(f"{k}: {'; '.join(v)}" for k, v in exc.errors.items())
        else:
            flash(f"Your {kind} is posted.", "success")
            return redirect(url_for("matching.listings"))
    return render_template("matching/new_listing.html", kind=kind, error=error, organisations=organisations,
                           safety_levels=scoring.SAFETY_LEVELS,
                           categories=_categories(me.timebank_id),
                           slots=[(b, f"{scoring.DAYS[b // 3]} {scoring.PARTS[b % 3]}") for b in range(21)],
                           form=request.form), status


def _organisations_for(me) -> list[Organisation]:
    """Organisations this user may post opportunities for: those they represent; a broker, any active one."""
    stmt = select(Organisation).where(Organisation.timebank_id == me.timebank_id, Organisation.status == "active")
    if not service.is_broker(me):
        stmt = stmt.join(OrganisationRepresentative, OrganisationRepresentative.organisation_id == Organisation.id
                         ).where(OrganisationRepresentative.user_id == current_user.id)
    return list(db.session.scalars(stmt.order_by(Organisation.name)))


@bp.post("/matches/<int:match_id>/<action>")
@login_required
def respond_match(match_id, action):
    if action not in ("accept", "decline", "complete"):
        abort(404)
    me = _membership()
    try:
        match = service.get_match(db.session, match_id)
        if match.timebank_id != me.timebank_id:
            abort(404)
        if action == "complete":
            service.complete(db.session, match, by_membership=me)
        else:
            service.respond(db.session, match, accept=action == "accept", by_membership=me)
    except DomainError as exc:
        flash(exc.message, "error")
        return redirect(request.referrer or url_for("matching.listings")), 303
    flash({"accept": "You accepted the match. Thank you!", "decline": "You declined the match.",
           "complete": "Marked as done. Now log the hours."}[action], "success")
    return redirect(url_for("matching.listings")), 303


@bp.get("/matching")
@login_required
def workbench():
    me = _broker()
    open_requests = queries.list_requests(db.session, me.timebank_id, status="open", limit=200)
    selected = None
    suggestions = []
    request_id = _int(request.args.get("request_id"))
    if request_id:
        selected = db.session.get(HelpRequest, request_id)
        if selected is None or selected.timebank_id != me.timebank_id:
            abort(404)
        suggestions = queries.suggestions(db.session, selected, limit=10)
    weights = scoring.weights_for(me.timebank.settings)
    return render_template("matching/workbench.html", open_requests=open_requests, selected=selected,
                           suggestions=suggestions, weights=weights, labels=scoring.WEIGHT_LABELS,
                           funnel=queries.funnel(db.session, me.timebank_id), closes_on=queries.closes_on,
                           matches=queries.matches_for_timebank(db.session, me.timebank_id, limit=50))


@bp.post("/matching/requests/<int:request_id>/propose")
@login_required
def propose(request_id):
    me = _broker()
    try:
        row = queries.get_request(db.session, request_id, me.timebank_id)
        service.propose(db.session, row, _int(request.form.get("member_id")) or 0, by_user_id=current_user.id)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash("Proposed. The volunteer will see it on their page.", "success")
    return redirect(url_for("matching.workbench", request_id=request_id)), 303


@bp.post("/matching/plans")
@login_required
def create_plan():
    me = _broker()
    ids = [i for i in (_int(v) for v in request.form.getlist("request_ids")) if i]
    try:
        plan = service.create_plan(db.session, timebank=me.timebank, request_ids=ids, by_user_id=current_user.id)
    except DomainError as exc:
        flash(exc.message, "error")
        return redirect(url_for("matching.workbench")), 303
    return redirect(url_for("matching.plan", plan_id=plan.id)), 303


@bp.get("/matching/plans/<int:plan_id>")
@login_required
def plan(plan_id):
    me = _broker()
    try:
        row = service.get_plan(db.session, plan_id, me.timebank_id)
    except DomainError:
        abort(404)
    requests_ = {r.id: r for r in db.session.scalars(select(HelpRequest).where(HelpRequest.id.in_(row.request_ids)))}
    names = queries.member_names(db.session, [p.membership_id for p in row.proposals])
    return render_template("matching/plan.html", plan=row, requests=requests_, names=names,
                           skipped=queries.skipped_of(db.session, row))


@bp.post("/matching/plans/<int:plan_id>/send")
@login_required
def send_plan(plan_id):
    me = _broker()
    try:
        row = service.get_plan(db.session, plan_id, me.timebank_id)
        matches = service.send_plan(db.session, row, by_user_id=current_user.id)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Sent {len(matches)} proposal{'s' if len(matches) != 1 else ''}.", "success")
        skipped = queries.skipped_of(db.session, row)
        if skipped:
            shown = "; ".join(f"{s['member_name']} for “{s['request_title']}”: {s['reason']}" for s in skipped[:10])
            more = f"; and {len(skipped) - 10} more, listed below" if len(skipped) > 10 else ""
            flash(f"Not sent ({len(skipped)}), because things changed since the plan was made: {shown}{more}.",
                  "error")
    return redirect(url_for("matching.plan", plan_id=plan_id)), 303


@bp.post("/listings/<kind>/<int:listing_id>/close")
@login_required
def close_listing(kind, listing_id):
    if kind not in ("offer", "request"):
        abort(404)
    me = _membership()
    try:
        getter = queries.get_offer if kind == "offer" else queries.get_request
        service.close_listing(db.session, getter(db.session, listing_id, me.timebank_id), by_membership=me,
                              user=current_user)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Your {kind} is closed.", "success")
    return redirect(url_for("matching.listings")), 303


# --- logging the hours of a match ---------------------------------------------------------------------------------

def _loggable_match(match_id: int, me) -> Match:
    match = db.session.get(Match, match_id)
    if match is None or match.timebank_id != me.timebank_id:
        abort(404)
    request_row = match.request
    if me.id not in (match.membership_id, request_row.membership_id) and not service.is_broker(me) and not (
            request_row.organisation_id and service.can_post_for(db.session, current_user, request_row.organisation)):
        abort(403)
    return match


@bp.route("/matches/<int:match_id>/log", methods=["GET", "POST"])
@login_required
def log_hours(match_id):
    """The exchange form, pre-filled from the match; logging it moves the match to logged."""
    me = _membership()
    match = _loggable_match(match_id, me)
    draft = service.prefilled_exchange(db.session, match)
    error = None
    form = request.form
    if request.method == "POST":
        try:
            hours, minutes = int(form.get("hours") or 0), int(form.get("minutes") or 0)
        except ValueError:
            hours = minutes = -1
        happened_on = _date(form.get("date"))
        if hours < 0 or not 0 <= minutes < 60 or happened_on is None:
            error = "Enter the time as hours and minutes, and a real date."
        else:
            try:
                exchange = service.log_hours(db.session, match, user=current_user, minutes=hours * 60 + minutes,
                                             happened_on=happened_on, description=form.get("description", ""),
                                             category_id=_int(form.get("category_id")))
            except DomainError as exc:
                db.session.rollback()
                error = exc.message
            else:
                flash("The hours are logged and the match is complete. Thank you!", "success")
                return redirect(url_for("exchanges.show_exchange", exchange_id=exchange.id)), 303
    if request.method == "GET" and match.status not in ("accepted", "done"):
        error = ("The hours of this match are already logged." if match.status == "logged"
                 else f"This match is {match.status}; hours can be logged once it is accepted.")
    request_row = match.request
    other = request_row.organisation.name if request_row.organisation_id else request_row.membership.user.display_name
    values = {"hours": str(draft["minutes"] // 60), "minutes": str(draft["minutes"] % 60),
              "date": dt.date.today().isoformat(), "description": draft["description"],
              "category_id": str(draft["category_id"])}
    values.update({k: v for k, v in form.items() if k in values})
    return render_template("matching/log_hours.html", match=match, volunteer=match.membership.user.display_name,
                           other=other, values=values, error=error, categories=_categories(me.timebank_id),
                           today=dt.date.today()), (422 if error and request.method == "POST" else 200)


# --- blocked pairs ------------------------------------------------------------------------------------------------

def _blocks_page(me, *, broker: bool):
    blocks = queries.blocked_pairs(db.session, me.timebank_id, made_by_user_id=None if broker else current_user.id)
    names = queries.member_names(db.session, [m for b in blocks for m in (b.low_membership_id, b.high_membership_id)])
    members = [(mid, name) for mid, name in queries.active_members(db.session, me.timebank_id) if mid != me.id
               or broker]
    return render_template("matching/blocks.html", blocks=blocks, names=names, members=members, me=me,
                           broker=broker, can_lift=service.can_lift)


@bp.route("/listings/blocks", methods=["GET", "POST"])
@login_required
def my_blocks():
    """A member says: do not match me with this person."""
    me = _membership()
    if request.method == "POST":
        try:
            service.block_pair(db.session, timebank_id=me.timebank_id, a=me.id,
                               b=_int(request.form.get("member_id")) or 0, reason=request.form.get("reason", ""),
                               by_user_id=current_user.id)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash("Done: you will not be matched with them.", "success")
        return redirect(url_for("matching.my_blocks")), 303
    return _blocks_page(me, broker=False)


@bp.route("/matching/blocks", methods=["GET", "POST"])
@login_required
def broker_blocks():
    """A broker blocks a pair of members (safeguarding); members cannot lift a broker's block."""
    me = _broker()
    if request.method == "POST":
        a, b = _int(request.form.get("member_id")) or 0, _int(request.form.get("other_member_id")) or 0
        try:
            if not request.form.get("reason", "").strip():
                raise ValidationFailed("Say why, for the safeguarding record.", errors={"reason": ["Required."]})
            service.block_pair(db.session, timebank_id=me.timebank_id, a=a, b=b,
                               reason=request.form.get("reason", ""), by_user_id=current_user.id, by_broker=True)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash("Blocked: these two members will never be matched.", "success")
        return redirect(url_for("matching.broker_blocks")), 303
    return _blocks_page(me, broker=True)


@bp.post("/blocks/<int:block_id>/lift")
@login_required
def lift_block(block_id):
    me = _membership()
    try:
        service.unblock_pair(db.session, service.get_block(db.session, block_id, me.timebank_id), by_membership=me)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash("The block is lifted.", "success")
    return redirect(url_for("matching.broker_blocks" if service.is_broker(me) else "matching.my_blocks")), 303
