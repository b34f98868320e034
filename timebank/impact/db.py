"""Where report queries run: the reporting replica when REPORTS_DATABASE_URL is set, else the main database."""
from __future__ import annotations

import contextlib

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from timebank.extensions import db
from timebank.impact.errors import ReportsUnavailable

# SQLSTATE 40001 (serialization_failure) is what a hot standby raises when it cancels a query to apply WAL
# ("canceling statement due to conflict with recovery"); trying again a little later normally works.
RECOVERY_CONFLICT_SQLSTATES = {"40001", "40P01"}


def reports_configured() -> bool:
    return "reports" in db.engines


def is_recovery_conflict(exc: BaseException) -> bool:
    """A report query the database cancelled (a replica applying WAL, a serialization failure): retry later."""
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate in RECOVERY_CONFLICT_SQLSTATES or "conflict with recovery" in str(exc.orig)


@contextlib.contextmanager
def reports_session(session=None):
    """Yield a session for read-only report queries.

    With `session` given, that one (a period being closed reads the primary). Otherwise, with a "reports" bind
    (REPORTS_DATABASE_URL), a short-lived session on the replica's engine; without one, the request's own
    session, so reports see what the request sees. A query the replica cancels (or a replica that cannot be
    reached) becomes ReportsUnavailable: a 503 with Retry-After, not a 500.
    """
    from timebank.database import is_database_unavailable

    if session is not None:
        yield session
        return
    if not reports_configured():
        try:
            yield db.session
        except DBAPIError as exc:
            if is_recovery_conflict(exc):
                raise ReportsUnavailable() from exc
            raise
        return
    replica = Session(bind=db.engines["reports"])
    try:
        yield replica
    except DBAPIError as exc:
        if is_recovery_conflict(exc) or is_database_unavailable(exc):
            raise ReportsUnavailable() from exc
        raise
    finally:
        replica.close()  # returns the connection with a rollback
