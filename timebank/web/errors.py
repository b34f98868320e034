"""Error pages in plain words; never a traceback."""
from __future__ import annotations

import logging

from flask import Response, g, render_template
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from timebank.errors import DomainError

log = logging.getLogger("timebank")

MESSAGES = {
    400: ("Something in that request was not right", "Please go back and try again."),
    403: ("You can't see this page", "Your account does not have permission for this page."),
    404: ("Page not found", "We could not find that page. Check the address, or go to the home page."),
    405: ("That did not work", "This page does not accept that kind of request."),
    413: ("That file is too big", "Please upload a smaller file."),
    429: ("Too many attempts", "Please wait a few minutes and try again."),
    500: ("Sorry, something went wrong", "It is our fault, not yours. It has been logged and nothing was saved."),
    503: ("The service is busy", "Nothing was saved. Please try again in a few minutes."),
}


def page_error_response(exc: Exception):
    if isinstance(exc, DomainError):
        status, detail = exc.status, exc.message
        title = MESSAGES.get(status, MESSAGES[400])[0]
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        title, detail = MESSAGES.get(status, (exc.name, exc.description))
    else:
        status = 500
        title, detail = MESSAGES[500]
    template = f"errors/{status}.html" if status in (403, 404, 500) else "errors/generic.html"
    try:
        return render_template(template, status=status, title=title, detail=detail), status
    except Exception:  # noqa: BLE001  the page itself needs the database (current user, navigation)
        log.warning("error page for %s rendered without the signed-in user", status, exc_info=True)
    from timebank.extensions import db, login_manager

    db.session.rollback()
    g._login_user = login_manager.anonymous_user()  # flask-login's cache: render as a visitor
    try:
        return render_template(template, status=status, title=title, detail=detail), status
    except Exception:  # noqa: BLE001  last resort: plain words, no template
        log.error("error page for %s could not be rendered", status, exc_info=True)
    body = f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(detail)}</p>"
    return Response(body, status=status, mimetype="text/html")
