"""`flask db upgrade` from empty gives exactly the schema the models declare."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from timebank.extensions import db


def test_migrations_match_models_no_drift(app, committed_db):
    with app.app_context():
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_sqlite_is_tuned_for_a_service(app, committed_db):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            return
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
