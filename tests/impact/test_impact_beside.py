"""The dashboard reads its independent figures beside the person-level pass (timebank/impact/db.py, beside).

On PostgreSQL they run in a thread on a second connection that imports the request transaction's snapshot, so
both read exactly the same rows; elsewhere, or when the transaction has written, they run in the same session.
"""
import os

import pytest
from sqlalchemy import text

from tests.impact.fixed_community import Q1, build
from timebank.extensions import db
from timebank.impact import db as impact_db
from timebank.impact.report import build_report

POSTGRES = os.environ.get("TEST_DB", "sqlite") == "postgres"


@pytest.fixture
def readers(monkeypatch):
    """Record every second session the reports open (None when they read in one session)."""
    made = []
    original = impact_db._snapshot_reader

    def recording(session):
        reader = original(session)
        made.append(reader)
        return reader

    monkeypatch.setattr(impact_db, "_snapshot_reader", recording)
    return made


def test_the_report_read_beside_equals_the_report_read_in_one_session(app, committed_db, readers):
    session = committed_db.session
    c = build(session)
    session.commit()
    app.config["REPORTS_PARALLEL"] = False
    serial = build_report([c["timebank"]], *Q1)
    session.commit()
    app.config["REPORTS_PARALLEL"] = True
    beside = build_report([c["timebank"]], *Q1)
    session.commit()
    assert beside == serial
    assert beside["headline"]["minutes_delivered"] == 780 and beside["reconciliation"]["ledger_minutes_delivered"] == 780
    assert beside["engagement"]["members_no_trade_yet"] == serial["engagement"]["members_no_trade_yet"]
    # PostgreSQL read on a second connection the second time; SQLite never does.
    assert (readers[-1] is not None) == POSTGRES
    assert readers[0] is None


@pytest.mark.skipif(not POSTGRES, reason="a second connection reading one snapshot is PostgreSQL's")
def test_the_second_connection_reads_the_snapshot_of_the_first(app, committed_db):
    session = committed_db.session
    c = build(session)
    member_id = c["a"].id
    session.commit()
    ward = text("SELECT ward FROM membership WHERE id = :id")
    before = session.execute(ward, {"id": member_id}).scalar()
    reader = impact_db._snapshot_reader(session)
    try:
        assert reader is not None
        pid = text("SELECT pg_backend_pid()")
        assert reader.execute(pid).scalar() != session.execute(pid).scalar()
        # Another connection commits a change after the snapshot was taken: the reader does not see it.
        with db.engine.begin() as other:
            other.execute(text("UPDATE membership SET ward = 'Moved after the snapshot' WHERE id = :id"),
                          {"id": member_id})
        assert reader.execute(ward, {"id": member_id}).scalar() == before
        with db.engine.connect() as fresh:
            assert fresh.execute(ward, {"id": member_id}).scalar() == "Moved after the snapshot"
    finally:
        reader.close()


@pytest.mark.skipif(not POSTGRES, reason="a second connection reading one snapshot is PostgreSQL's")
def test_a_transaction_that_has_written_reads_in_one_session(app, committed_db):
    session = committed_db.session
    c = build(session)  # flushed, not committed: another connection would not see these rows
    assert impact_db._snapshot_reader(session) is None
    report = build_report([c["timebank"]], *Q1)
    assert report["headline"]["minutes_delivered"] == 780
    session.rollback()
