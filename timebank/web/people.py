"""People pages: join, password reset, my profile, onboarding queue, directory, organisations,
admin settings and roles, audit log. Every check goes through community.permissions."""
from __future__ import annotations

import datetime as dt
import json

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request, url_for)
from flask_login import current_user, login_required
from sqlalchemy import select

from timebank.community import queries
from timebank.community import service as people
from timebank.community.models import ROLES, SAFETY_CHECK_LEVELS, Category, Membership, TimeBank
from timebank.community.permissions import authorize, can, role_in, timebanks_where
from timebank.errors import DomainError, Forbidden, ValidationFailed
from timebank.extensions import db
from timebank.web.ratelimit import init_rate_limits

bp = Blueprint("people", __name__)

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PARTS = ("morning", "afternoon", "evening")
AGE_BANDS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")


def _acting_timebank(action: str) -> TimeBank:
    """The time bank the page acts in: ?timebank=slug, or the first where the caller may do `action`."""
    ids = timebanks_where(current_user, action)
    slug = request.values.get("timebank")
    if slug:
        timebank = people.timebank_by_slug(db.session, slug)
        authorize(current_user, action, timebank_id=timebank.id)
        return timebank
    if not ids:
        raise Forbidden("Your account does not have permission for this page.")
    return db.session.get(TimeBank, ids[0])


def _my_membership() -> Membership:
    memberships = [m for m in current_user.memberships if m.status == "active"]
    if not memberships:
        raise Forbidden("Your membership is not active.")
    return memberships[0]


def _date(name: str) -> dt.date | None:
    value = request.form.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"Enter the {name.replace('_', ' ')} as a date.", status=422) from None


def _int(name: str, default=None):
    value = request.form.get(name, "").strip()
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DomainError(f"Enter {name.replace('_', ' ')} as a whole number.", status=422) from None


def _coordinates():
    """The profile form's latitude and longitude: both empty clears them; otherwise both must be numbers."""
    raw = [request.form.get(name, "").strip()[:40] for name in ("latitude", "longitude")]
    if not any(raw):
        return None
    values = []
    for name, text in zip(("latitude", "longitude"), raw):
        try:
            values.append(float(text.replace(",", ".")) if text else None)
        except ValueError:
            raise ValidationFailed(f"Enter the {name} as a number, for example 54.97 or -1.61.",
                                   errors={name: ["Not a number."]}) from None
    return tuple(values)


# --- join and password reset -------------------------------------------------------------------------------------

@bp.route("/join", methods=["GET", "POST"])
def join():
    banks = db.session.scalars(select(TimeBank).order_by(TimeBank.name)).all()
    if request.method == "POST":
        try:
            timebank = people.timebank_by_slug(db.session, request.form.get("timebank", ""))
            password = request.form.get("password", "")
            from timebank.community.auth import check_password_policy

            check_password_policy(password)  # before the known-email branch, so both answer the same
            email = request.form.get("email", "")[:320]
            application = people.apply_to_join(db.session, timebank=timebank, email=email,
                                               display_name=request.form.get("display_name", "")[:120],
                                               password=password, note=request.form.get("note", "")[:4000])
            if application is None:
                # Same answer as a new application, so the page never reveals who has an account.
                from timebank.community.auth import user_by_email
                from timebank.password_mail import mail_password_link

                mail_password_link(db.session, user_by_email(db.session, email))
        except DomainError as exc:
            return render_template("people/join.html", banks=banks, error=exc.message), exc.status
        return render_template("people/join_done.html")
    return render_template("people/join.html", banks=banks, error=None)


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    if request.method == "POST":
        from timebank.community.auth import user_by_email
        from timebank.password_mail import mail_password_link

        user = user_by_email(db.session, request.form.get("email", "")[:320])
        if user is not None and user.is_active:
            mail_password_link(db.session, user)
        # The same words whether the email is known or not.
        return render_template("people/forgot_done.html")
    return render_template("people/forgot.html")


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token):
    from timebank.community.passwords import set_password, user_for_reset_token

    try:
        user = user_for_reset_token(current_app, db.session, token)
        if request.method == "POST":
            password = request.form.get("password", "")
            if password != request.form.get("password_again", ""):
                raise DomainError("The two passwords are not the same.", status=422)
            set_password(db.session, user, password)
            flash("Your password is set. You can log in now.", "success")
            return redirect(url_for("web.login"))
    except DomainError as exc:
        return render_template("people/reset.html", error=exc.message, token=token), exc.status
    return render_template("people/reset.html", error=None, token=token)


# --- my profile and my data --------------------------------------------------------------------------------------

@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    membership = _my_membership()
    authorize(current_user, "profile.edit_own", membership=membership)
    # Retired categories are not offered, except to those who already have them.
    categories = [c for c in queries.categories(db.session, membership.timebank_id, include_retired=True)
                  if c.retired_at is None or c in membership.skills]
    error = None
    if request.method == "POST":
        availability = 0
        for slot in request.form.getlist("slot"):
            if slot.isdigit() and int(slot) < 21:
                availability |= 1 << int(slot)
        consent = request.form.get("demographics_consent") == "yes"
        disability = {"yes": True, "no": False}.get(request.form.get("disability", ""))
        try:
            coordinates = _coordinates()
            people.update_profile(
                db.session, membership, display_name=request.form.get("display_name", ""),
                phone=request.form.get("phone", ""), preferred_contact=request.form.get("preferred_contact"),
                bio=request.form.get("bio", ""), ward=request.form.get("ward", ""),
                postcode_district=request.form.get("postcode_district", ""), availability=availability,
                skill_ids=[int(s) for s in request.form.getlist("skill") if s.isdigit()],
                demographics_consent=consent, age_band=request.form.get("age_band") or None,
                gender=(request.form.get("gender") or "").strip()[:30] or None, disability=disability,
                coordinates=coordinates)
        except DomainError as exc:
            error = exc.message
        else:
            flash("Your profile is saved.", "success")
            return redirect(url_for("people.profile"))
    chosen = {c.id for c in membership.skills}
    return render_template("people/profile.html", m=membership, categories=categories, chosen=chosen,
                           slots=queries.availability_slots(membership.availability), days=DAYS, parts=PARTS,
                           age_bands=AGE_BANDS, error=error), (200 if error is None else 422)


@bp.get("/profile/data.json")
@login_required
def my_data():
    data = people.export_personal_data(db.session, current_user, actor=current_user)
    return Response(json.dumps(data, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": "attachment; filename=my-time-bank-data.json"})


@bp.get("/members/<int:member_id>")
@login_required
def member_profile(member_id):
    membership = queries.membership_by_id(db.session, member_id)
    private = can(current_user, "people.read_private", membership=membership)
    if not private:
        authorize(current_user, "profile.read_public", membership=membership)
        if membership.status != "active" or membership.user.erased_at is not None:
            raise queries.NotFound("There is no such member.")
    return render_template("people/member.html", m=membership, private=private,
                           is_admin=can(current_user, "roles.manage", membership=membership),
                           slots=queries.availability_slots(membership.availability), days=DAYS, parts=PARTS,
                           roles=ROLES)


# --- broker: onboarding and directory ----------------------------------------------------------------------------

@bp.get("/onboarding")
@login_required
def onboarding_queue():
    timebank = _acting_timebank("people.manage")
    return render_template("people/onboarding.html", timebank=timebank,
                           pending=queries.pending_applications(db.session, timebank.id),
                           expiring=queries.expiring_safety_checks(db.session, timebank.id),
                           levels=SAFETY_CHECK_LEVELS, today=dt.date.today())


@bp.post("/applications/<int:member_id>/<verb>")
@login_required
def decide_application(member_id, verb):
    membership = queries.membership_by_id(db.session, member_id)
    authorize(current_user, "people.manage", membership=membership)
    name = membership.user.display_name
    try:
        if verb == "checks":
            people.record_checks(db.session, membership, actor=current_user,
                                 references_received=_int("references_received"),
                                 safety_check_level=request.form.get("safety_check_level") or None,
                                 safety_check_date=_date("safety_check_date"),
                                 safety_check_expires=_date("safety_check_expires"),
                                 risk_note=request.form.get("risk_note"), induction_date=_date("induction_date"))
            flash(f"Checks saved for {name}.", "success")
        elif verb == "approve":
            people.approve_application(db.session, membership, actor=current_user,
                                       welcome_minutes=(_int("welcome_hours", 0) or 0) * 60,
                                       welcome_from=request.form.get("welcome_from", "issuance"))
            flash(f"{name} is approved and has an account.", "success")
        elif verb == "decline":
            people.decline_application(db.session, membership, actor=current_user,
                                       reason=request.form.get("reason", ""))
            flash(f"The application from {name} is declined.", "info")
        elif verb == "request-info":
            people.request_more_information(db.session, membership, actor=current_user,
                                            message=request.form.get("message", ""))
            flash(f"Asked {name} for more information.", "info")
        else:
            raise queries.NotFound()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("people.onboarding_queue")), 303
    return redirect(url_for("people.onboarding_queue"))


@bp.route("/members", methods=["GET", "POST"])
@login_required
def directory():
    timebank = _acting_timebank("people.manage")
    error = None
    status = 200
    if request.method == "POST":
        try:
            password = request.form.get("password") or None
            membership = people.add_member_directly(
                db.session, timebank=timebank, actor=current_user, email=request.form.get("email", "")[:320],
                display_name=request.form.get("display_name", "")[:120], password=password,
                ward=(request.form.get("ward") or "").strip()[:100] or None)
            if password is None:
                from timebank.password_mail import mail_password_link

                mail_password_link(db.session, membership.user, purpose="set")
            flash(f"{membership.user.display_name} is added with an account.", "success")
            return redirect(url_for("people.directory"))
        except DomainError as exc:
            error, status = exc.message, exc.status
            db.session.rollback()
    q = request.args.get("q", "")[:100]
    members = queries.directory(db.session, timebank.id, search=q or None)
    return render_template("people/directory.html", timebank=timebank, members=members, q=q, error=error), status


@bp.post("/members/<int:member_id>/<verb>")
@login_required
def change_member(member_id, verb):
    membership = queries.membership_by_id(db.session, member_id)
    action = {"suspend": "people.manage", "reinstate": "people.manage", "role": "roles.manage",
              "erase": "person.erase"}.get(verb)
    if action is None:
        raise queries.NotFound()
    authorize(current_user, action, membership=membership)
    try:
        if verb == "suspend":
            people.suspend_member(db.session, membership, actor=current_user, reason=request.form.get("reason", ""))
            flash(f"{membership.user.display_name} is suspended.", "info")
        elif verb == "reinstate":
            people.reinstate_member(db.session, membership, actor=current_user)
            flash(f"{membership.user.display_name} is reinstated.", "success")
        elif verb == "role":
            people.change_role(db.session, membership, actor=current_user, role=request.form.get("role", ""))
            flash(f"{membership.user.display_name} is now {membership.role}.", "success")
        elif verb == "erase":
            if request.form.get("confirm") != "erase":
                raise DomainError("Tick the box to confirm the erasure.", status=422)
            people.erase_person(db.session, membership.user, actor=current_user,
                                timebank_id=membership.timebank_id)
            flash("Their personal data is erased. Their hours stay in the ledger.", "success")
            return redirect(url_for("people.admin_settings"))
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(url_for("people.member_profile", member_id=member_id))


# --- organisations -----------------------------------------------------------------------------------------------

@bp.route("/organisations", methods=["GET", "POST"])
@login_required
def organisations():
    ids = timebanks_where(current_user, "profile.read_public")
    if not ids:
        raise Forbidden("Your account does not have permission for this page.")
    error, status = None, 200
    if request.method == "POST":
        timebank = _acting_timebank("organisation.manage")
        try:
            organisation = people.create_organisation(db.session, timebank=timebank,
                                                      name=request.form.get("name", "")[:200],
                                                      kind=request.form.get("kind", "charity"),
                                                      area=(request.form.get("area") or "").strip() or None)
            people.log_audit(db.session, "organisation.created", actor_user_id=current_user.id,
                             timebank_id=timebank.id, target_type="organisation", target_id=organisation.id)
            flash(f"{organisation.name} is added.", "success")
            return redirect(url_for("people.organisation", organisation_id=organisation.id))
        except DomainError as exc:
            db.session.rollback()
            error, status = exc.message, exc.status
    return render_template("people/organisations.html", organisations=queries.organisations_in(db.session, ids),
                           may_manage=bool(timebanks_where(current_user, "organisation.manage")),
                           error=error), status


@bp.route("/organisations/<int:organisation_id>", methods=["GET", "POST"])
@login_required
def organisation(organisation_id):
    organisation = queries.organisation_by_id(db.session, organisation_id)
    authorize(current_user, "profile.read_public", organisation=organisation)
    may_manage = can(current_user, "organisation.manage", organisation=organisation)
    if request.method == "POST":
        authorize(current_user, "organisation.manage", organisation=organisation)
        from timebank.community.auth import user_by_email

        user = user_by_email(db.session, request.form.get("email", ""))
        if user is None or role_in(user, organisation.timebank_id) is None:
            flash("No member of this time bank has that email.", "error")
        else:
            people.add_representative(db.session, organisation, user, actor=current_user)
            flash(f"{user.display_name} now represents {organisation.name}.", "success")
        return redirect(url_for("people.organisation", organisation_id=organisation.id))
    balance = None
    if can(current_user, "ledger.read_account", organisation=organisation) and organisation.account_id:
        from timebank.ledger.models import Account

        balance = db.session.get(Account, organisation.account_id).balance_minutes
    return render_template("people/organisation.html", o=organisation, may_manage=may_manage,
                           acts_for=can(current_user, "organisation.act", organisation=organisation),
                           balance=balance)


# --- admin -------------------------------------------------------------------------------------------------------

@bp.route("/admin/settings", methods=["GET", "POST"])
@login_required
def admin_settings():
    timebank = _acting_timebank("timebank.settings")
    error, status = None, 200
    if request.method == "POST":
        try:
            people.update_timebank_settings(
                db.session, timebank, actor=current_user, name=request.form.get("name", timebank.name),
                max_exchange_minutes=(_int("max_exchange_hours", timebank.max_exchange_minutes // 60)) * 60,
                max_backdate_days=_int("max_backdate_days", timebank.max_backdate_days),
                auto_confirm_days=_int("auto_confirm_days", timebank.auto_confirm_days),
                match_radius_km=_int("match_radius_km", timebank.match_radius_km))
            flash("Settings saved.", "success")
            return redirect(url_for("people.admin_settings"))
        except DomainError as exc:
            db.session.rollback()
            error, status = exc.message, exc.status
    members = queries.directory(db.session, timebank.id)
    return render_template("people/admin_settings.html", timebank=timebank, members=members, roles=ROLES,
                           error=error), status


@bp.route("/categories", methods=["GET", "POST"])
@login_required
def categories():
    """Brokers and admins keep the time bank's list of categories: add, rename, retire, restore."""
    timebank = _acting_timebank("categories.manage")
    error, status = None, 200
    if request.method == "POST":
        verb = request.form.get("action", "")
        try:
            if verb == "create":
                parent_id = _int("parent_id")
                category = people.create_category(db.session, timebank=timebank, actor=current_user,
                                                  name=request.form.get("name", "")[:1000], parent_id=parent_id)
                flash(f"Added the category {category.name}.", "success")
            elif verb in ("rename", "retire", "restore"):
                category = people.category_in(db.session, timebank.id, _int("category_id"))
                if verb == "rename":
                    old = category.name
                    people.rename_category(db.session, category, name=request.form.get("name", "")[:1000],
                                           actor=current_user)
                    flash(f"Renamed {old} to {category.name}.", "success")
                elif verb == "retire":
                    people.retire_category(db.session, category, actor=current_user)
                    flash(f"Retired {category.name}: it is no longer offered for new offers, requests and "
                          "skills; what already uses it keeps it.", "info")
                else:
                    people.restore_category(db.session, category, actor=current_user)
                    flash(f"{category.name} is in use again.", "success")
            else:
                raise ValidationFailed("Choose what to do: add, rename, retire or restore.")
        except DomainError as exc:
            db.session.rollback()
            error, status = exc.message, exc.status
        else:
            return redirect(url_for("people.categories", timebank=request.values.get("timebank") or None))
    return render_template("people/categories.html", timebank=timebank, error=error,
                           tree=queries.category_tree(db.session, timebank.id)), status


@bp.get("/admin/audit")
@login_required
def audit_log():
    timebank = _acting_timebank("audit.read")
    return render_template("people/audit_log.html", timebank=timebank,
                           events=queries.audit_log(db.session, timebank.id))


# Registered last so the limits wrap this blueprint's views as well as the log-in and token endpoints.
bp.record_once(lambda state: init_rate_limits(state.app))
