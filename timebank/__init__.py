"""The time bank service: create_app builds the Flask application."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, make_response, render_template, request, session
from werkzeug.exceptions import HTTPException

from timebank.extensions import api, csrf, db, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent


def create_app(config=None) -> Flask:
    """Build the app. `config` is a config class (with resolve()) or a dict of overrides."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder="static",
                instance_path=str(ROOT / "instance"))
    import config as config_module

    base = config_module.Config
    overrides = {}
    if isinstance(config, dict):
        overrides = config
        if config.get("TESTING"):
            base = config_module.TestingConfig
    elif config is not None:
        base = config
    app.config.from_mapping(base.resolve())
    app.config.from_mapping(overrides)
    if app.config.get("REPORTS_DATABASE_URL") and "reports" not in app.config["SQLALCHEMY_BINDS"]:
        app.config["SQLALCHEMY_BINDS"] = {**app.config["SQLALCHEMY_BINDS"],
                                          "reports": app.config["REPORTS_DATABASE_URL"]}

    hops = int(app.config.get("PROXY_FIX_HOPS") or 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    register_extensions(app)
    register_request_hooks(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    from timebank import models  # noqa: F401  (every table known to the metadata)
    from timebank.database import configure_engine

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    login_manager.login_message = "Please log in to see that page."
    csrf.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])

    @login_manager.user_loader
    def load_user(user_id: str):
        from sqlalchemy.orm import joinedload

        from timebank.community.models import User

        # "<id>.<session version>": a cookie from before a log-out or a password change no longer matches.
        user_part, _, version = user_id.partition(".")
        if not (user_part.isdigit() and version.isdigit() and len(user_part) < 19):
            return None
        # Every page's navigation reads the user's memberships: load them in the same statement.
        user = db.session.get(User, int(user_part), options=[joinedload(User.memberships)])
        if user is None or not user.is_active or str(user.session_version or 0) != version:
            return None
        return user


def register_request_hooks(app: Flask) -> None:
    from timebank.database import set_read_only
    from timebank.request_log import register_request_logging

    register_request_logging(app)

    @app.before_request
    def _refuse_oversized_bodies():
        # Flask only refuses a too-large body when a view reads it; refuse it up front, whatever the view.
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit and request.content_length is not None and request.content_length > limit:
            from werkzeug.exceptions import RequestEntityTooLarge

            raise RequestEntityTooLarge()

    @app.before_request
    def _transaction_mode():
        set_read_only(request.method in ("GET", "HEAD", "OPTIONS"))

    # Registered before _commit_once so it runs after it (Flask runs after_request hooks in reverse order):
    # the 503 that a failed commit turns into gets these headers too.
    @app.after_request
    def _security_headers(response):
        headers = response.headers
        if response.status_code == 503:  # every "try again later" says when (RFC 9110 10.2.3)
            headers.setdefault("Retry-After", str(app.config.get("RETRY_AFTER_SECONDS", 30)))
        headers.setdefault("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "geolocation=(), camera=(), microphone=()")
        if app.config.get("SESSION_COOKIE_SECURE"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Personal data must not stay in shared or proxy caches (ASVS 8.2.1); static files may be cached.
        if request.endpoint != "static" and ("Authorization" in request.headers or "_user_id" in session):
            headers.setdefault("Cache-Control", "no-store")
        return response

    @app.after_request
    def _commit_once(response):
        """One transaction per request: commit what succeeded, roll back anything else."""
        emails_written = db.session.info.pop("outbox_written", False)
        if response.status_code >= 400:
            db.session.rollback()
            return response
        try:
            db.session.commit()
        except Exception as exc:  # a failed commit must not look like success
            db.session.rollback()
            return make_response(handle_exception(exc))  # pages answer a (body, status) pair
        if emails_written and app.config.get("MAIL_SEND_AFTER_COMMIT"):
            _send_after_commit()
        return response

    def _send_after_commit():
        """Optional: try the outbox now that the change is committed; cron's `notifications send` is the
        guarantee, so any trouble here is logged and left to it."""
        from timebank.exchanges.outbox import deliver

        try:
            deliver(db.session, app.config, limit=20)
        except Exception:  # noqa: BLE001  the answer is already decided; the rows stay pending
            db.session.rollback()
            logging.getLogger("timebank.email").warning("after-commit email delivery failed; left for the "
                                                        "sender job", exc_info=True)



def register_blueprints(app: Flask) -> None:
    from timebank.api import register_api
    from timebank.health import bp as health_bp
    from timebank.web import register_web

    app.register_blueprint(health_bp)
    register_api(app)
    register_web(app)
    # The API authenticates with bearer tokens, never cookies, so CSRF does not apply there.
    for name, blueprint in app.blueprints.items():
        if blueprint.url_prefix and blueprint.url_prefix.startswith("/api/"):
            csrf.exempt(blueprint)


log = logging.getLogger("timebank")


def handle_exception(exc: Exception):
    from timebank.api import api_error_response, is_api_request
    from timebank.errors import DomainError
    from timebank.web.errors import page_error_response

    from sqlalchemy.exc import DataError

    from timebank.database import is_database_unavailable, set_read_only

    db.session.rollback()
    if is_database_unavailable(exc):
        log.error("database unavailable: %s", exc.__class__.__name__)
        set_read_only(True)  # the answer may still read (e.g. the error page's user): no SQLite write lock
        from timebank.errors import DomainError as _D

        exc = _D("The database is not accepting changes right now. Nothing was saved; please try again shortly.",
                 code="service_unavailable", status=503)
    elif isinstance(exc, RecursionError):  # JSON nested thousands deep: refuse it, it is not a server fault
        from werkzeug.exceptions import BadRequest

        exc = BadRequest("The request body is nested too deeply to read.")
    elif isinstance(exc, (DataError, OverflowError)):  # OverflowError: SQLite given an int beyond 64 bits
        # SQLSTATE class 22 (a NUL byte, a value too long for its column, a number out of range): input that
        # slipped past validation. The user gets a 422 in words; the log says which statement, to fix validation.
        log.warning("database refused a value on %s %s: %s", request.method, request.path, getattr(exc, "orig", exc))
        from timebank.errors import ValidationFailed

        exc = ValidationFailed("A value could not be stored: it is too long or contains characters that are not "
                               "allowed (such as a NUL byte). Nothing was saved.")
    elif not isinstance(exc, (DomainError, HTTPException)):
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    if is_api_request():
        return api_error_response(exc)
    return page_error_response(exc)


def OperationalErrorTypes():
    from sqlalchemy.exc import DisconnectionError, OperationalError

    return (OperationalError, DisconnectionError)


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(Exception, handle_exception)


def register_commands(app: Flask) -> None:
    from timebank.cli import register_cli

    register_cli(app)
