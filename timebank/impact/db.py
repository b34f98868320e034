"""Where report queries run: the reporting replica when REPORTS_DATABASE_URL is set, else the main database."""
from __future__ import annotations

import contextlib
import re

from flask import current_app, has_app_context
from sqlalchemy import text
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


_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_.]{1,20}$")


def tune_for_reports(session) -> None:
    """On PostgreSQL, set this transaction's work_mem and jit for report queries (REPORTS_WORK_MEM,
    REPORTS_JIT); SET LOCAL ends with the transaction, so nothing leaks into the next use of the connection."""
    if session.get_bind().dialect.name != "postgresql" or not has_app_context():
        return
    for name, key in (("work_mem", "REPORTS_WORK_MEM"), ("jit", "REPORTS_JIT")):
        value = str(current_app.config.get(key) or "")
        if value and _SETTING_VALUE.match(value):  # set_config takes a parameter; the check keeps config sane
            session.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def _snapshot_reader(session):
    """A second session on `session`'s engine that reads `session`'s snapshot, or None where that cannot hold:
    not PostgreSQL, REPORTS_PARALLEL off, or `session`'s transaction has written (no other connection would see
    its rows)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or not has_app_context() or not current_app.config.get("REPORTS_PARALLEL"):
        return None
    snapshot = session.execute(text(
        "SELECT CASE WHEN txid_current_if_assigned() IS NULL THEN pg_export_snapshot() END")).scalar()
    if snapshot is None or not _SNAPSHOT_ID.match(snapshot):
        return None
    reader = Session(bind=bind.engine if hasattr(bind, "engine") else bind)
    reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    reader.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))  # a literal only; checked above
    tune_for_reports(reader)
    # The two connections already keep the cores busy: PostgreSQL's own parallel workers on top of them only
    # compete (XL dashboard: about 1.0-1.1 s without them against 1.3-1.5 s with). For these transactions only.
    for each in (session, reader):
        each.execute(text("SELECT set_config('max_parallel_workers_per_gather', '0', true)"))
    return reader


@contextlib.contextmanager
def beside(session, work):
    """Run `work(session)` beside the caller's own statements; yields a function that returns its result.

    On PostgreSQL the work runs in a thread, on a second connection importing this transaction's snapshot
    (pg_export_snapshot), so it reads exactly what `session` reads while the database runs both on two cores.
    Elsewhere, or where that cannot hold (see _snapshot_reader), it runs in `session` when the result is asked for.
    """
    reader = _snapshot_reader(session)
    if reader is None:
        results: list = []

        def result():
            if not results:
                results.append(work(session))
            return results[0]

        yield result
        return
    from concurrent.futures import ThreadPoolExecutor

    app = current_app._get_current_object()

    def run():
        with app.app_context():
            return work(reader)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports-beside")
    try:
        future = pool.submit(run)
        yield future.result
    finally:
        pool.shutdown(wait=True)  # the thread is done with the reader before it is closed
        reader.close()


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
        tune_for_reports(session)
        yield session
        return
    if not reports_configured():
        try:
            tune_for_reports(db.session)
            yield db.session
        except DBAPIError as exc:
            if is_recovery_conflict(exc):
                raise ReportsUnavailable() from exc
            raise
        return
    replica = Session(bind=db.engines["reports"])
    try:
        tune_for_reports(replica)
        yield replica
    except DBAPIError as exc:
        if is_recovery_conflict(exc) or is_database_unavailable(exc):
            raise ReportsUnavailable() from exc
        raise
    finally:
        replica.close()  # returns the connection with a rollback
