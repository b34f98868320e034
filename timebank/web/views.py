"""Home, log in and log out."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from timebank.community.auth import authenticate
from timebank.extensions import db

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("web.index"))
    error = None
    if request.method == "POST":
        email = request.form.get("email", "")[:320]
        password = request.form.get("password", "")[:1000]
        user = authenticate(db.session, email, password)
        if user is None:
            # The same words whether the email exists or not.
            error = "That email and password do not match an account."
        else:
            session.clear()  # a fresh session on log in: nothing set before it carries over (ASVS 3.2.1)
            login_user(user)
            flash(f"Welcome back, {user.display_name}.", "success")
            target = request.args.get("next", "")
            if not target.startswith("/") or urlsplit(target).netloc or target.startswith("//") or "\\" in target:
                target = url_for("web.index")
            return redirect(target)
    return render_template("login.html", error=error), (200 if error is None else 401)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        # End this session everywhere: a copy of the cookie taken before logging out stops working too.
        current_user.session_version = (current_user.session_version or 0) + 1
    logout_user()
    flash("You have logged out.", "info")
    return redirect(url_for("web.index"))
