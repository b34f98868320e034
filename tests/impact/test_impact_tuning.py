"""Report queries run with their own PostgreSQL settings (REPORTS_WORK_MEM, REPORTS_JIT), for that transaction only."""
import pytest
from sqlalchemy import text

from timebank.impact.db import reports_session, tune_for_reports


def _show(session, name):
    return session.execute(text(f"SHOW {name}")).scalar_one()


def test_report_transactions_get_the_configured_settings_and_nothing_leaks(app, session):
    if session.get_bind().dialect.name != "postgresql":
        with reports_session() as reports:  # SQLite: nothing to set, and nothing fails
            assert reports.execute(text("SELECT 1")).scalar_one() == 1
        return
    before = (_show(session, "work_mem"), _show(session, "jit"))
    assert before != ("64MB", "off")  # the server defaults differ, or the test would prove nothing
    with reports_session() as reports:
        assert (_show(reports, "work_mem"), _show(reports, "jit")) == ("64MB", "off")
    session.rollback()  # SET LOCAL ends with the transaction
    assert (_show(session, "work_mem"), _show(session, "jit")) == before


@pytest.mark.parametrize("value", ["64MB; DROP TABLE account", "a" * 40, ""])
def test_a_malformed_setting_is_ignored(app, session, value):
    app.config["REPORTS_WORK_MEM"] = value
    try:
        before = _show(session, "work_mem") if session.get_bind().dialect.name == "postgresql" else None
        tune_for_reports(session)
        if before is not None:
            assert _show(session, "work_mem") == before
    finally:
        app.config["REPORTS_WORK_MEM"] = "64MB"
