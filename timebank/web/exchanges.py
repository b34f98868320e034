"""Pages for exchanges: the member dashboard, logging and confirming hours, the broker desk,
organisation pages, notifications. Views parse forms, call a service and show its message."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import literal, select, union_all
from werkzeug.routing import BuildError

from timebank.community.models import (Category, Membership, Organisation, OrganisationRepresentative, TimeBank,
                                       User)
from timebank.errors import DomainError
from timebank.exchanges import notifications, policy, queries, service
from timebank.exchanges.models import COPRODUCTION_SUBTYPES, COPRODUCTION_TYPES, NOTIFICATION_KINDS, Exchange
from timebank.extensions import db
from timebank.ledger.models import Account

bp = Blueprint("exchanges", __name__, url_prefix="/exchanges")


@bp.app_context_processor
def _unread_notifications():
    """The unread count shown in every page's header (templates/base.html)."""
    if getattr(current_user, "is_authenticated", False):
        return {"unread_notifications": notifications.unread_count(db.session, current_user.id)}
    return {"unread_notifications": None}


def _membership(broker: bool = False) -> Membership:
    """The current user's active membership that holds an account (or a broker's one)."""
    roles = ("broker", "admin") if broker else ("member", "broker", "admin")
    for membership in current_user.memberships:
        if membership.status == "active" and membership.role in roles:
            return membership
    abort(403)


def _minutes_from_form(form) -> int | None:
    try:
        hours = int(form.get("hours") or 0)
        minutes = int(form.get("minutes") or 0)
    except ValueError:
        return None
    if hours < 0 or not 0 <= minutes < 60:
        return None
    return hours * 60 + minutes


def _date_from_form(form, name="date") -> dt.date | None:
    try:
        return dt.date.fromisoformat(form.get(name, ""))
    except ValueError:
        return None


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _side_from_form(form, side: str) -> dict:
    """A member's id, or 'org-<id>' for an organisation, as the service's keyword arguments."""
    value = form.get(f"{side}_id") or ""
    if value.startswith("org-"):
        return {f"{side}_organisation_id": _int(value[4:])}
    return {f"{side}_id": _int(value)}


def _tags_from_form(form) -> dict:
    """Co-production tags from a form; an empty choice is left to the category's defaults."""
    return {"coproduction_type": form.get("coproduction_type") or None,
            "coproduction_subtype": form.get("coproduction_subtype") or None,
            "outcome_area": form.get("outcome_area") or None,
            "substitutive": form.get("substitutive") == "yes"}


def _members(timebank_id: int, exclude: int | None = None) -> list[Membership]:
    rows = db.session.scalars(select(Membership).join(User, User.id == Membership.user_id)
                              .where(Membership.timebank_id == timebank_id, Membership.status == "active",
                                     Membership.account_id.is_not(None))
                              .order_by(User.display_name))
    return [m for m in rows if m.id != exclude]


def _categories(timebank_id: int) -> list[Category]:
    return list(db.session.scalars(select(Category).where(Category.timebank_id == timebank_id,
                                                          Category.parent_id.is_not(None),
                                                          Category.retired_at.is_(None)).order_by(Category.name)))


def _names(exchanges) -> dict:
    """(provider's name, recipient's name) by exchange id: the people and organisations read in one query each,
    not two per exchange (the dashboard lists up to twenty)."""
    member_ids = {i for e in exchanges for i in (e.provider_membership_id, e.recipient_membership_id) if i}
    org_ids = {i for e in exchanges for i in (e.provider_organisation_id, e.recipient_organisation_id) if i}
    people, orgs = {}, {}
    parts = ([select(literal(True), Membership.id, User.display_name).join(User, User.id == Membership.user_id)
              .where(Membership.id.in_(member_ids))] if member_ids else []) + \
        ([select(literal(False), Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))]
         if org_ids else [])
    if parts:  # both kinds of name in one statement
        for is_member, key, name in db.session.execute(parts[0] if len(parts) == 1 else union_all(*parts)):
            (people if is_member else orgs)[key] = name

    def name(exchange, which: str) -> str:
        membership_id = getattr(exchange, f"{which}_membership_id")
        organisation_id = getattr(exchange, f"{which}_organisation_id")
        if membership_id is not None and organisation_id is None and membership_id in people:
            return people[membership_id]
        if organisation_id is not None and membership_id is None and organisation_id in orgs:
            return orgs[organisation_id]
        return service.side_of(db.session, exchange, which).name  # not found: the service says why

    return {e.id: (name(e, "provider"), name(e, "recipient")) for e in exchanges}


@bp.get("/")
@login_required
def dashboard():
    membership = _membership()
    account = queries.account_of(db.session, membership)
    given, received = queries.hours_this_year(db.session, membership)
    waiting, recent = queries.waiting_and_recent(db.session, membership, limit=10)
    orgs = list(db.session.scalars(select(Organisation).join(
        OrganisationRepresentative, OrganisationRepresentative.organisation_id == Organisation.id)
        .where(OrganisationRepresentative.user_id == current_user.id)))
    try:  # the statement page belongs to the ledger capability
        statement_url = url_for("ledger.statement_page", account_id=membership.account_id)
    except BuildError:
        statement_url = None
    return render_template("exchanges/dashboard.html", statement_url=statement_url, membership=membership, account=account, given=given,
                           received=received, waiting=waiting, recent=recent, names=_names(waiting + recent),
                           hours=service.hours_text, organisations=orgs)


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new_exchange():
    membership = _membership()
    error = None
    form = request.form
    if request.method == "POST":
        other = _int(form.get("other_id"))
        minutes = _minutes_from_form(form)
        happened_on = _date_from_form(form)
        if other is None or minutes is None or happened_on is None:
            error = "Choose the other member, and enter the time as hours and minutes and a real date."
        else:
            provider, recipient = ((membership.id, other) if form.get("direction") == "gave"
                                   else (other, membership.id))
            try:
                exchange = service.log_exchange(db.session, user=current_user, provider_id=provider,
                                                recipient_id=recipient, minutes=minutes, happened_on=happened_on,
                                                description=form.get("description", ""),
                                                category_id=_int(form.get("category_id")))
            except DomainError as exc:
                error = exc.message
            else:
                flash("Logged. We have asked the other member to confirm it.", "success")
                return redirect(url_for("exchanges.show_exchange", exchange_id=exchange.id))
    return render_template("exchanges/new.html", members=_members(membership.timebank_id, exclude=membership.id),
                           categories=_categories(membership.timebank_id), error=error, form=form,
                           today=dt.date.today()), (422 if error else 200)


def _organisations(timebank_id: int, exclude: int | None = None) -> list[Organisation]:
    rows = db.session.scalars(select(Organisation).where(Organisation.timebank_id == timebank_id,
                                                         Organisation.status == "active",
                                                         Organisation.account_id.is_not(None))
                              .order_by(Organisation.name))
    return [o for o in rows if o.id != exclude]


@bp.route("/spend", methods=["GET", "POST"])
@login_required
def spend():
    """A member pays an organisation in hours: a place on its activity, a room, a course. Counts at once."""
    membership = _membership()
    error, form = None, request.form
    if request.method == "POST":
        organisation_id = _int(form.get("organisation_id"))
        minutes, happened_on = _minutes_from_form(form), _date_from_form(form)
        if organisation_id is None or minutes is None or happened_on is None:
            error = "Choose the organisation, and enter the time as hours and minutes and a real date."
        else:
            try:
                exchange = service.spend_with_organisation(
                    db.session, user=current_user, membership_id=membership.id, organisation_id=organisation_id,
                    minutes=minutes, happened_on=happened_on, description=form.get("description", ""),
                    category_id=_int(form.get("category_id")))
            except DomainError as exc:
                db.session.rollback()
                error = exc.message
            else:
                flash(f"Paid: {service.hours_text(exchange.minutes)} to "
                      f"{service.side_of(db.session, exchange, 'provider').name}.", "success")
                return redirect(url_for("exchanges.show_exchange", exchange_id=exchange.id))
    account = queries.account_of(db.session, membership)
    return render_template("exchanges/spend.html", organisations=_organisations(membership.timebank_id),
                           categories=_categories(membership.timebank_id), error=error, form=form,
                           account=account, hours=service.hours_text, today=dt.date.today()), (422 if error else 200)


@bp.get("/<int:exchange_id>")
@login_required
def show_exchange(exchange_id):
    exchange = db.session.get(Exchange, exchange_id)
    if exchange is None:
        abort(404)
    if not policy.can_view(db.session, current_user, exchange):
        abort(403)
    return render_template("exchanges/show.html", exchange=exchange, names=_names([exchange]),
                           hours=service.hours_text,
                           can_confirm=policy.can_confirm(db.session, current_user, exchange),
                           can_cancel=policy.can_cancel(db.session, current_user, exchange),
                           can_resolve=exchange.status == "disputed"
                           and policy.can_resolve(db.session, current_user, exchange.timebank_id),
                           can_correct=exchange.status == "confirmed" and exchange.activity_id is None
                           and policy.can_correct(db.session, current_user, exchange.timebank_id),
                           can_retag=policy.can_retag(db.session, current_user, exchange.timebank_id))


TAG_FIELD_LABELS = {"category_id": "Kind of help", "coproduction_type": "Type of co-production",
                    "coproduction_subtype": "Finer kind", "outcome_area": "Outcome area",
                    "substitutive": "Substitutive or additive", "collective": "Individual or collective"}


def _yes_no(form, name) -> bool | None:
    return {"yes": True, "no": False}.get(form.get(name))


def _tag_value_words(field: str, value) -> str:
    if value is None:
        return "not stated" if field != "category_id" else "Other"
    if field == "category_id":
        category = db.session.get(Category, value)
        return category.name if category else f"category {value}"
    if field == "substitutive":
        return "substitutive" if value else "additive"
    if field == "collective":
        return "collective" if value else "individual"
    return str(value).replace("_", " ")


@bp.route("/<int:exchange_id>/tags", methods=["GET", "POST"])
@login_required
def retag(exchange_id):
    """Broker: change the tags reports use on an exchange, with its history of changes."""
    exchange = db.session.get(Exchange, exchange_id)
    if exchange is None:
        abort(404)
    if not policy.can_retag(db.session, current_user, exchange.timebank_id):
        abort(403)
    error, status, form = None, 200, request.form
    if request.method == "POST":
        changes = {"category_id": _int(form.get("category_id")),
                   "coproduction_type": form.get("coproduction_type", ""),
                   "coproduction_subtype": form.get("coproduction_subtype") or None,
                   "outcome_area": form.get("outcome_area", "")}
        for flag in ("substitutive", "collective"):
            if _yes_no(form, flag) is not None:
                changes[flag] = _yes_no(form, flag)
        try:
            diff = service.retag_exchange(db.session, exchange.id, user=current_user, changes=changes,
                                          reason=form.get("reason", ""))
        except DomainError as exc:
            db.session.rollback()
            error, status = exc.message, (exc.status if 400 <= exc.status < 500 else 422)
        else:
            flash("Tags saved. Reports now count these hours under the new tags." if diff
                  else "Nothing changed.", "success")
            return redirect(url_for("exchanges.retag", exchange_id=exchange.id))
    values = form if error else {name: getattr(exchange, name) for name in service.RETAGGABLE}
    history = service.tag_history(db.session, exchange)
    people = {u.id: u.display_name for u in db.session.scalars(
        select(User).where(User.id.in_({e.actor_user_id for e in history if e.actor_user_id})))}
    timebank = db.session.get(TimeBank, exchange.timebank_id)
    return render_template("exchanges/tags.html", exchange=exchange, names=_names([exchange]), error=error,
                           form=form, values=values, history=history, people=people,
                           categories=_categories(exchange.timebank_id),
                           outcome_areas=service.outcome_areas_of(timebank), subtypes=COPRODUCTION_SUBTYPES,
                           field_labels=TAG_FIELD_LABELS, describe=_tag_value_words), status


@bp.post("/<int:exchange_id>/<action>")
@login_required
def act(exchange_id, action):
    target = url_for("exchanges.show_exchange", exchange_id=exchange_id)
    try:
        if action == "confirm":
            service.confirm_exchange(db.session, exchange_id, user=current_user)
            flash("Confirmed. The hours have moved.", "success")
        elif action == "dispute":
            service.dispute_exchange(db.session, exchange_id, user=current_user, reason=request.form.get("reason", ""))
            flash("Disputed. A broker will look at it.", "success")
        elif action == "cancel":
            service.cancel_exchange(db.session, exchange_id, user=current_user)
            flash("Cancelled.", "success")
        elif action == "resolve":
            replacement = None
            if request.form.get("action") == "replace":
                replacement = {"minutes": _minutes_from_form(request.form)}
            result = service.resolve_dispute(db.session, exchange_id, user=current_user,
                                             action=request.form.get("action", ""),
                                             reason=request.form.get("reason", ""), replacement=replacement)
            flash("Dispute settled.", "success")
            target = url_for("exchanges.show_exchange", exchange_id=result.id)
        elif action == "correct":
            minutes = _minutes_from_form(request.form)
            _old, new = service.correct_exchange(db.session, exchange_id, user=current_user,
                                                 reason=request.form.get("reason", ""),
                                                 replacement={"minutes": minutes} if minutes else None)
            flash("Corrected: the old hours were reversed.", "success")
            if new is not None:
                target = url_for("exchanges.show_exchange", exchange_id=new.id)
        else:
            abort(404)
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(target)


@bp.post("/pot/donate")
@login_required
def donate():
    membership = _membership()
    minutes = _minutes_from_form(request.form)
    try:
        service.donate_to_pot(db.session, user=current_user, timebank_id=membership.timebank_id,
                              minutes=minutes or 0, note=request.form.get("note", ""))
        flash(f"Thank you: you gave {service.hours_text(minutes)} to the community pot.", "success")
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(url_for("exchanges.dashboard"))


# --- notifications ----------------------------------------------------------------------------------------------

@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def notifications_page():
    if request.method == "POST":
        notifications.mark_all_read(db.session, current_user.id)
        flash("All notifications marked as read.", "success")
        return redirect(url_for("exchanges.notifications_page"))
    return render_template("exchanges/notifications.html",
                           items=notifications.notifications_for(db.session, current_user.id))


@bp.route("/notifications/preferences", methods=["GET", "POST"])
@login_required
def notification_preferences():
    if request.method == "POST":
        notifications.set_preferences(db.session, current_user.id, {
            kind: (f"{kind}-in_app" in request.form, f"{kind}-email" in request.form) for kind in NOTIFICATION_KINDS})
        flash("Your notification choices are saved.", "success")
        return redirect(url_for("exchanges.notification_preferences"))
    return render_template("exchanges/preferences.html", kinds=NOTIFICATION_KINDS,
                           prefs=notifications.preferences(db.session, current_user.id))


# --- broker desk and organisations ------------------------------------------------------------------------------

def _activity_form(organisation: Organisation | None, organisations, timebank_id: int):
    """Shared handling of the group activity form: preview a CSV, or record when every row is right."""
    form = request.form
    preview = None
    if organisation is None:
        organisation = db.session.get(Organisation, _int(form.get("organisation_id")) or 0)
        if organisation is None or organisation.timebank_id != timebank_id:
            raise DomainError("Choose the organisation that ran the activity.", code="unknown_organisation")
    text = form.get("csv", "")
    upload = request.files.get("csv_file")
    if upload and upload.filename:
        text = service.csv_text_from_upload(upload.read(service.CSV_MAX_BYTES + 1))
    happened_on = _date_from_form(form)
    if happened_on is None:
        raise DomainError("Enter the date of the activity.", code="validation_error")
    preview = service.parse_participants_csv(db.session, organisation.timebank, text)
    if form.get("step") == "record" and preview.ok:
        activity = service.record_group_activity(
            db.session, user=current_user, organisation_id=organisation.id, title=form.get("title", ""),
            happened_on=happened_on, participants=preview.participants,
            category_id=_int(form.get("category_id")), tags=_tags_from_form(form),
            people_reached=_int(form.get("people_reached")))
        return activity, preview, text
    return None, preview, text


@bp.route("/broker", methods=["GET", "POST"])
@login_required
def broker_desk():
    membership = _membership(broker=True)
    timebank_id = membership.timebank_id
    status, preview, csv_text = 200, None, ""
    if request.method == "POST":
        form = request.form
        task = form.get("task")
        try:
            if task == "record":
                minutes, happened_on = _minutes_from_form(form), _date_from_form(form)
                if minutes is None or happened_on is None:
                    raise DomainError("Enter the time as hours and minutes, and a real date.",
                                      code="validation_error")
                exchange = service.record_exchange(
                    db.session, user=current_user, **_side_from_form(form, "provider"),
                    **_side_from_form(form, "recipient"), minutes=minutes, happened_on=happened_on,
                    description=form.get("description", ""), category_id=_int(form.get("category_id")),
                    tags=_tags_from_form(form))
                flash(f"Recorded: {service.describe(db.session, exchange)}.", "success")
                return redirect(url_for("exchanges.broker_desk"))
            if task == "grant":
                minutes = _minutes_from_form(form)
                service.grant_from_pot(db.session, user=current_user, membership_id=_int(form.get("member_id")),
                                       minutes=minutes or 0, reason=form.get("reason", ""))
                flash(f"Granted {service.hours_text(minutes)} from the pot.", "success")
                return redirect(url_for("exchanges.broker_desk"))
            if task == "outcome_area":
                key = service.add_outcome_area(db.session, user=current_user, timebank_id=timebank_id,
                                               name=form.get("name", ""))
                flash(f"Added the outcome area {key.replace('_', ' ')!r}.", "success")
                return redirect(url_for("exchanges.broker_desk") + "#outcome-areas")
            if task == "activity":
                activity, preview, csv_text = _activity_form(None, None, timebank_id)
                if activity is not None:
                    flash(f"Recorded the group activity {activity.title!r}.", "success")
                    return redirect(url_for("exchanges.broker_desk"))
                if not preview.ok:
                    status = 422
            else:
                abort(400)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            status = exc.status if 400 <= exc.status < 500 else 422
    organisations = list(db.session.scalars(select(Organisation).where(Organisation.timebank_id == timebank_id,
                                                                       Organisation.status == "active")
                                            .order_by(Organisation.name)))
    disputes = queries.disputes(db.session, timebank_id)
    return render_template("exchanges/broker.html", members=_members(timebank_id), organisations=organisations,
                           categories=_categories(timebank_id), disputes=disputes, names=_names(disputes),
                           pot=queries.pot_summary(db.session, timebank_id), hours=service.hours_text,
                           preview=preview, csv_text=csv_text, form=request.form, today=dt.date.today(),
                           outcome_areas=service.outcome_areas_of(membership.timebank),
                           subtypes=COPRODUCTION_SUBTYPES), status


@bp.route("/organisations/<int:organisation_id>", methods=["GET", "POST"])
@login_required
def organisation_desk(organisation_id):
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        abort(404)
    if not policy.can_credit(db.session, current_user, organisation):
        abort(403)
    status, preview, csv_text = 200, None, ""
    if request.method == "POST":
        form = request.form
        try:
            if form.get("task") == "credit":
                minutes, happened_on = _minutes_from_form(form), _date_from_form(form)
                if minutes is None or happened_on is None:
                    raise DomainError("Enter the time as hours and minutes, and a real date.",
                                      code="validation_error")
                exchange = service.credit_volunteer(
                    db.session, user=current_user, organisation_id=organisation.id,
                    membership_id=_int(form.get("member_id")), minutes=minutes, happened_on=happened_on,
                    description=form.get("description", ""))
                flash(f"Credited: {service.describe(db.session, exchange)}.", "success")
                return redirect(url_for("exchanges.organisation_desk", organisation_id=organisation.id))
            if form.get("task") in ("charge", "partner"):
                minutes, happened_on = _minutes_from_form(form), _date_from_form(form)
                other = _int(form.get("member_id" if form.get("task") == "charge" else "partner_id"))
                if minutes is None or happened_on is None or other is None:
                    raise DomainError("Choose who, and enter the time as hours and minutes and a real date.",
                                      code="validation_error")
                common = dict(user=current_user, minutes=minutes, happened_on=happened_on,
                              description=form.get("description", ""), category_id=_int(form.get("category_id")))
                if form.get("task") == "charge":
                    exchange = service.charge_member(db.session, organisation_id=organisation.id,
                                                     membership_id=other, **common)
                elif form.get("direction") == "received":
                    exchange = service.organisation_exchange(db.session, provider_organisation_id=other,
                                                             recipient_organisation_id=organisation.id, **common)
                else:
                    exchange = service.organisation_exchange(db.session, provider_organisation_id=organisation.id,
                                                             recipient_organisation_id=other, **common)
                if exchange.status == "confirmed":
                    flash(f"Recorded: {service.describe(db.session, exchange)}.", "success")
                else:
                    flash(f"Logged: {service.describe(db.session, exchange)}. "
                          "We have asked the other side to confirm it.", "success")
                return redirect(url_for("exchanges.organisation_desk", organisation_id=organisation.id))
            if form.get("task") == "activity":
                activity, preview, csv_text = _activity_form(organisation, None, organisation.timebank_id)
                if activity is not None:
                    flash(f"Recorded the group activity {activity.title!r}.", "success")
                    return redirect(url_for("exchanges.organisation_desk", organisation_id=organisation.id))
                if not preview.ok:
                    status = 422
            else:
                abort(400)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            status = exc.status if 400 <= exc.status < 500 else 422
    account = db.session.get(Account, organisation.account_id)
    waiting = queries.waiting_for_organisation(db.session, organisation.id, current_user)
    recent = queries.exchanges_of_organisation(db.session, organisation.id, limit=15)
    return render_template("exchanges/organisation.html", organisation=organisation, account=account,
                           waiting=waiting, recent=recent, names=_names(waiting + recent),
                           partners=_organisations(organisation.timebank_id, exclude=organisation.id),
                           members=_members(organisation.timebank_id), hours=service.hours_text, preview=preview,
                           csv_text=csv_text, form=request.form, today=dt.date.today(),
                           categories=_categories(organisation.timebank_id),
                           outcome_areas=service.outcome_areas_of(organisation.timebank),
                           subtypes=COPRODUCTION_SUBTYPES), status
