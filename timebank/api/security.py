"""Who is calling the API: bearer tokens, and role checks by membership."""
from __future__ import annotations

import functools

from flask import g, request
from werkzeug.exceptions import Unauthorized

from timebank.community.auth import user_for_token
from timebank.extensions import db


def current_api_user():
    if "api_user" not in g:
        g.api_user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            g.api_user = user_for_token(db.session, header[7:].strip())
    return g.api_user


def token_required(view):
    """Require a valid bearer token; the user is passed nowhere, read it with current_api_user()."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_api_user() is None:
            raise Unauthorized("A valid bearer token is required. Get one from POST /api/v1/tokens.")
        return view(*args, **kwargs)

    wrapper._apidoc = getattr(view, "_apidoc", {})  # keep flask-smorest's doc info
    return wrapper
