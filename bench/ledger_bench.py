"""Ledger write throughput through the service layer.

    python bench/ledger_bench.py [--seconds 3] [--db sqlite,postgres] [--writers 1,4,16]

For each database, contention (low: 2,000 accounts; high: 10 hot accounts) and
writer count, threads post two-leg transfers (one commit each) for a fixed time
and the script prints transfers/s, p50/p99 latency, refusals and errors.
Uses a throwaway database (a temp SQLite file; a new PostgreSQL database on
TEST_POSTGRES_URL, dropped afterwards).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timebank import create_app  # noqa: E402
from timebank.errors import DomainError  # noqa: E402
from timebank.extensions import db  # noqa: E402

PG = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def make_database(kind):
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        return f"sqlite:///{path}", lambda: None
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"timebank_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return sa.make_url(PG).set(database=name).render_as_string(hide_password=False), drop


def setup(app, n_accounts):
    from timebank.community.service import create_timebank
    from timebank.ledger.service import open_account

    s = db.session
    tb = create_timebank(s, slug=f"b{uuid.uuid4().hex[:6]}", name="Bench")
    ids = [open_account(s, timebank_id=tb.id, kind="member", name=f"M{i}", floor_minutes=-10**8).id
           for i in range(n_accounts)]
    tb_id = tb.id
    s.commit()
    return tb_id, ids


def run(engine, tb_id, ids, writers, seconds):
    from timebank.ledger.service import post_transfer

    latencies, counts = [], {"ok": 0, "refused": 0, "error": 0}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(n):
        rnd = random.Random(n)
        mine, local = [], {"ok": 0, "refused": 0, "error": 0}
        while time.perf_counter() < stop:
            a, b = rnd.sample(ids, 2)
            t0 = time.perf_counter()
            with Session(engine) as s:
                try:
                    post_transfer(s, timebank_id=tb_id, kind="exchange", effective_date=dt.date(2026, 11, 1),
                                  postings=[(a, -30), (b, 30)], idempotency_key=f"{n}-{uuid.uuid4().hex}")
                    s.commit()
                    local["ok"] += 1
                    mine.append(time.perf_counter() - t0)
                except DomainError:
                    s.rollback()
                    local["refused"] += 1
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    s.rollback()
                    local["error"] += 1
                    if local["error"] == 1:
                        print("  error:", type(exc).__name__, str(exc)[:200], file=sys.stderr)
        with lock:
            latencies.extend(mine)
            for k in counts:
                counts[k] += local[k]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")  # noqa
    return counts["ok"] / elapsed, p(0.50), p(0.99), counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--writers", default="1,4,16")
    args = parser.parse_args()
    writers = [int(w) for w in args.writers.split(",")]
    print(f"{'db':9} {'contention':10} {'writers':>7} {'transfers/s':>11} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'refused':>7} {'errors':>6}")
    for kind in args.db.split(","):
        url, drop = make_database(kind)
        try:
            app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "RATELIMIT_ENABLED": False,
                              "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 20, "max_overflow": 5}
                              if kind == "postgres" else {}})
            with app.app_context():
                from flask_migrate import upgrade
                upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
                for label, n in (("low", 2000), ("high", 10)):
                    tb_id, ids = setup(app, n)
                    for w in writers:
                        tps, p50, p99, counts = run(db.engine, tb_id, ids, w, args.seconds)
                        print(f"{kind:9} {label:10} {w:>7} {tps:>11.0f} {p50:>7.1f} {p99:>7.1f} "
                              f"{counts['refused']:>7} {counts['error']:>6}", flush=True)
                db.session.remove()
                db.engine.dispose()
        finally:
            drop()


if __name__ == "__main__":
    main()
