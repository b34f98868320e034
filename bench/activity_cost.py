"""Cost of one group-activity POST (25 participants) in process: SQL statements, wall time, app CPU time.

    python bench/activity_cost.py [--sqlite] [--requests 30] [--participants 25]

Uses a temporary database on the shared PostgreSQL (127.0.0.1:5432; TEST_POSTGRES_URL overrides) or a temporary
SQLite file, runs the POSTs through Flask's test client (no HTTP server, no network), and prints the median and
90th percentile. CPU is this process's (the app, SQLAlchemy and the driver); the database server's is not in it.
A few seconds of work: fine on the shared server.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--participants", type=int, default=25)
    args = parser.parse_args()

    drop = None
    if args.sqlite:
        url = f"sqlite:///{tempfile.mkdtemp()}/cost.sqlite3"
    else:
        admin_url = sa.make_url(os.environ.get("TEST_POSTGRES_URL",
                                               "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
        name = f"timebank_cost_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin_url.set(database=name).render_as_string(hide_password=False)

        def drop():
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    try:
        run(url, args)
    finally:
        if drop:
            drop()


def run(url: str, args) -> None:
    from flask_migrate import upgrade

    from timebank import create_app
    from timebank.community.auth import issue_token
    from timebank.community.service import add_membership, create_organisation, create_timebank, create_user
    from timebank.extensions import db
    from timebank.ledger.models import Account

    os.environ.setdefault("TIMEBANK_INSTANCE", tempfile.mkdtemp())
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        s = db.session
        tb = create_timebank(s, slug="cost", name="Cost")
        tb.max_backdate_days = 3650
        org = create_organisation(s, timebank=tb, name="Parks")
        rep = create_user(s, email="rep@example.test", display_name="Rep", password="pw-123456789")
        add_membership(s, user=rep, timebank=tb)
        org.representatives.append(rep)
        members = [add_membership(s, user=create_user(s, email=f"m{i}@example.test", display_name=f"M{i}",
                                                      password="pw-123456789"), timebank=tb)
                   for i in range(args.participants)]
        s.get(Account, org.account_id).floor_minutes = None
        token, _ = issue_token(s, rep)
        s.commit()
        body = {"organisation_id": org.id, "title": "Litter pick", "date": dt.date.today().isoformat(),
                "participants": [{"member_id": m.id, "minutes": 180} for m in members]}
        engine = db.engine
    client = app.test_client()
    counts, walls, cpus = [], [], []
    current = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: current.append(1))
    for i in range(args.requests + 3):
        current.clear()
        w0, c0 = time.perf_counter(), time.process_time()
        response = client.post("/api/v1/activities", json=body,
                               headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k{i}"})
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        assert response.status_code == 201, response.get_data(as_text=True)
        if i >= 3:  # warm-up
            counts.append(len(current))
            walls.append(wall * 1000)
            cpus.append(cpu * 1000)
    with app.app_context():
        for e in db.engines.values():
            e.dispose()

    def p90(values):
        return sorted(values)[int(0.9 * (len(values) - 1))]

    print(f"{engine.dialect.name}, {args.participants} participants, {args.requests} POSTs: "
          f"statements {statistics.median(counts):.0f}; wall median {statistics.median(walls):.1f} ms "
          f"(p90 {p90(walls):.1f}); app CPU median {statistics.median(cpus):.1f} ms (p90 {p90(cpus):.1f}); "
          f"load average {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
