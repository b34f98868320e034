"""Where report queries run: the reporting replica when REPORTS_DATABASE_URL is set, else the main database."""
from __future__ import annotations

import contextlib

from sqlalchemy.orm import Session

from timebank.extensions import db


def reports_configured() -> bool:
    return "reports" in db.engines


@contextlib.contextmanager
def reports_session():
    """Yield a session for read-only report queries.

    With a "reports" bind (REPORTS_DATABASE_URL) a short-lived session on the replica's
    engine; without one, the request's own session, so reports see what the request sees.
    """
    if not reports_configured():
        yield db.session
        return
    session = Session(bind=db.engines["reports"])
    try:
        yield session
    finally:
        session.rollback()
        session.close()
