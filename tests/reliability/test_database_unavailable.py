"""A lost database connection is a 503 ("try again"), however the code that met it carried on.

Found by the fault drill (bench/faults.py): PostgreSQL restarted in the middle of a transfer; the ledger's retry
loop caught the OperationalError and read again on the dead transaction, which raised PendingRollbackError,
answered as a 500.
"""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError

from timebank.database import is_database_unavailable


def _lost_connection() -> OperationalError:
    return OperationalError("SET CONSTRAINTS ALL IMMEDIATE", {}, Exception("server closed the connection"),
                            connection_invalidated=True)


def _raised_while_handling(first: Exception, second: Exception) -> Exception:
    try:
        try:
            raise first
        except Exception:
            raise second
    except Exception as exc:  # noqa: BLE001 - we want the exception with its context
        return exc


def test_pending_rollback_after_a_lost_connection_is_unavailable():
    exc = _raised_while_handling(_lost_connection(), PendingRollbackError("Can't reconnect until invalid "
                                                                          "transaction is rolled back."))
    assert is_database_unavailable(exc)


def test_pending_rollback_after_a_constraint_failure_is_a_bug_not_an_outage():
    integrity = IntegrityError("INSERT", {}, Exception("duplicate key"))
    exc = _raised_while_handling(integrity, PendingRollbackError("This Session's transaction has been rolled back"))
    assert not is_database_unavailable(exc)
    assert not is_database_unavailable(PendingRollbackError("no cause"))


def test_a_lost_connection_itself_is_unavailable():
    assert is_database_unavailable(_lost_connection())
