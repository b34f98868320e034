"""Login rate limits, per account and per address (flask-limiter).

In memory by default; set RATELIMIT_STORAGE_URI (e.g. redis://...) to share counts between workers.
LOGIN_RATE_LIMIT sets the allowance (default 10 per minute per account and per address).
"""
from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

def _account_key() -> str:
    email = request.form.get("email", "")
    if not email and request.authorization is not None:
        email = request.authorization.username or ""
    return "account:" + email.strip().lower()[:320]


def _posting_credentials() -> bool:
    return request.method != "POST"  # exempt when True: only credential submissions count


def init_rate_limits(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # One limiter per app: its settings (enabled, storage) are per app, not global.
    # The store comes from the config: a storage_uri given here would win over RATELIMIT_STORAGE_URI.
    limiter = Limiter(key_func=get_remote_address, default_limits=[],
                      storage_uri=app.config["RATELIMIT_STORAGE_URI"])
    limiter.init_app(app)
    app.extensions["timebank_limiter"] = limiter  # flask-limiter keeps only a weak reference
    # The limits below are checked by their decorators, when the view runs. flask-limiter's app-wide
    # before-request check (registered when limiting is enabled) serves default, application and blueprint
    # limits, and we have none: it would cost every request about 0.1 ms to find nothing. With such limits it stays.
    app_wide_check = app.before_request_funcs.get(None, [])
    manager = limiter.limit_manager
    if not manager.default_limits and not manager.application_limits and \
            limiter._check_request_limit in app_wide_check:
        app_wide_check.remove(limiter._check_request_limit)
    allowance = app.config.get("LOGIN_RATE_LIMIT", "10 per minute")
    for endpoint in ("web.login", "auth.create_token", "people.forgot_password", "people.join"):
        view = app.view_functions.get(endpoint)
        if view is None:
            continue
        # Shared scopes: guesses through the page, the API and the reset form count together.
        view = limiter.shared_limit(allowance, scope="credentials-by-address", key_func=get_remote_address,
                                    exempt_when=_posting_credentials)(view)
        view = limiter.shared_limit(allowance, scope="credentials-by-account", key_func=_account_key,
                                    exempt_when=_posting_credentials)(view)
        app.view_functions[endpoint] = view
