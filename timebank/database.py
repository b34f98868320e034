"""Database engine set-up: SQLite tuned for a service; on PostgreSQL, statements that ask not to be prepared.

SQLite runs in WAL mode with foreign keys and a busy timeout. Transactions that
may write begin with BEGIN IMMEDIATE so concurrent writers queue on the write
lock instead of failing half-way; read-only requests (GET/HEAD) begin deferred.
"""
from __future__ import annotations

import contextlib
import contextvars

from sqlalchemy import event
from sqlalchemy.engine import Engine

_begin_mode: contextvars.ContextVar[str] = contextvars.ContextVar("sqlite_begin", default="BEGIN IMMEDIATE")


@contextlib.contextmanager
def _begin_as(mode: str):
    token = _begin_mode.set(mode)
    try:
        yield
    finally:
        _begin_mode.reset(token)


def read_only_transactions():
    """Within this block, SQLite transactions begin deferred (no write lock)."""
    return _begin_as("BEGIN")


def write_transactions():
    """Within this block, SQLite transactions begin IMMEDIATE (take the write lock first), whatever the request
    said: a job that reads then writes (claiming outbox rows) must not read rows another writer is changing."""
    return _begin_as("BEGIN IMMEDIATE")


def set_read_only(flag: bool) -> None:
    _begin_mode.set("BEGIN" if flag else "BEGIN IMMEDIATE")


def _execute_unprepared_when_asked(cursor, statement, parameters, context):
    """PostgreSQL: a statement run with execution_options(prepare=False) is planned for its own values every time.

    psycopg prepares a statement on its fifth execution, and PostgreSQL may then settle on one plan for any values
    (a generic plan). That is right for most of our statements, whose best plan does not depend on the values; for
    the suggestion candidates (timebank/matching/queries.py) the generic plan took 57 ms where a plan for the
    request's own categories takes 3."""
    if context is not None and context.execution_options.get("prepare") is False:
        cursor.execute(statement, parameters, prepare=False)
        return True
    return None


def configure_engine(engine: Engine, busy_timeout_ms: int = 15000) -> None:
    if getattr(engine, "_timebank_configured", False):
        return
    if engine.dialect.name == "postgresql":
        engine._timebank_configured = True
        event.listen(engine, "do_execute", _execute_unprepared_when_asked)
        return
    if engine.dialect.name != "sqlite":
        return
    engine._timebank_configured = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql(_begin_mode.get())


def is_sqlite(session_or_engine) -> bool:
    bind = session_or_engine.get_bind() if hasattr(session_or_engine, "get_bind") else session_or_engine
    return bind.dialect.name == "sqlite"


# PostgreSQL SQLSTATEs meaning "the database cannot take this now", not "your request is wrong":
# read-only transaction (e.g. a replica, or default_transaction_read_only), disk full, out of memory,
# too many connections, shutting down, cannot connect.
UNAVAILABLE_SQLSTATES = {"25006", "53100", "53200", "53300", "57P01", "57P02", "57P03"}
UNAVAILABLE_SQLSTATE_CLASSES = ("08",)  # connection exceptions


def is_database_unavailable(exc: BaseException) -> bool:
    """True when the database refuses or cannot take the request (answer 503), not a bug (500)."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, PendingRollbackError

    if isinstance(exc, (OperationalError, DisconnectionError)):
        return True
    if isinstance(exc, PendingRollbackError):
        # Code that caught the lost connection and carried on hits this next: the cause is the outage.
        seen, cause = set(), exc.__cause__ or exc.__context__
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            if isinstance(cause, (OperationalError, DisconnectionError)) or (
                    isinstance(cause, DBAPIError) and cause.connection_invalidated):
                return True
            cause = cause.__cause__ or cause.__context__
        return False
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES)
    return False
