"""Ledger write throughput through the service layer.

    python bench/ledger_bench.py [--seconds 3] [--runs 3] [--db sqlite,postgres] [--writers 1,4,16]
                                 [--clients process|thread]

For each database, contention (low: 2,000 accounts; high: 10 hot accounts) and
writer count, clients post two-leg transfers through `post_transfer` (each with
its own idempotency key and one commit) for a fixed time, and the script prints
the median over `--runs` runs of transfers/s, p50/p99 latency, refusals and
errors, and for PostgreSQL with 16 writers the ratio to the target.

Clients are worker processes by default, each with its own engine and one
connection, like separate web workers: the figure measures the service path
and the database, not one interpreter's GIL. `--clients thread` runs them as
threads of one process (the old way) for comparison.
Uses a throwaway database (a temp SQLite file; a new PostgreSQL database on
TEST_POSTGRES_URL, dropped afterwards).
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import queue
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

PG = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGETS = {("postgres", "low", 16): 1000, ("postgres", "high", 16): 300}
CONTENTION = (("low", 2000), ("high", 10))


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


def migrate(url):
    from flask_migrate import upgrade

    from timebank import create_app
    from timebank.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
        db.session.remove()
        db.engine.dispose()


def make_engine(url, pool_size=1):
    from timebank.database import configure_engine

    options = {"pool_size": pool_size, "max_overflow": 0} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, **options)
    configure_engine(engine)
    return engine


def setup(engine, n_accounts):
    from timebank.community.service import create_timebank
    from timebank.ledger.service import open_account

    with Session(engine) as s:
        tb = create_timebank(s, slug=f"b{uuid.uuid4().hex[:6]}", name="Bench")
        ids = [open_account(s, timebank_id=tb.id, kind="member", name=f"M{i}", floor_minutes=-10**8).id
               for i in range(n_accounts)]
        tb_id = tb.id
        s.commit()
    return tb_id, ids


def post_for(engine, tb_id, ids, seed, start_at, stop_at):
    """Post transfers between random accounts from start_at until stop_at (time.time()); returns the tallies."""
    from timebank.errors import DomainError
    from timebank.ledger.service import post_transfer

    rnd = random.Random(seed)
    latencies, counts = [], {"ok": 0, "refused": 0, "error": 0}

    def once(key):
        a, b = rnd.sample(ids, 2)
        with Session(engine) as s:
            try:
                post_transfer(s, timebank_id=tb_id, kind="exchange", effective_date=dt.date(2026, 11, 1),
                              postings=[(a, -30), (b, 30)], idempotency_key=key)
                s.commit()
                return "ok"
            except DomainError:
                s.rollback()
                return "refused"
            except Exception as exc:  # noqa: BLE001 - counted and shown
                s.rollback()
                if counts["error"] == 0:
                    print("  error:", type(exc).__name__, str(exc)[:200], file=sys.stderr)
                return "error"

    once(f"warm-{seed}-{uuid.uuid4().hex}")  # connect and compile before the clock starts
    while time.time() < start_at:
        time.sleep(0.001)
    while True:
        t0 = time.time()
        if t0 >= stop_at:
            break
        outcome = once(f"{seed}-{uuid.uuid4().hex}")
        t1 = time.time()
        if t1 > stop_at:
            break  # finished after the window closed: not counted
        counts[outcome] += 1
        if outcome == "ok":
            latencies.append(t1 - t0)
    return counts, latencies


def _process_worker(url, tasks, results):
    engine = make_engine(url)
    while True:
        task = tasks.get()
        if task is None:
            break
        results.put(post_for(engine, *task))
    engine.dispose()


class ProcessClients:
    """Long-lived worker processes, one connection each; a run hands a task to `writers` of them."""

    def __init__(self, url, n):
        ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=_process_worker, args=(url, q, self.results), daemon=True)
                      for q in self.tasks]
        for p in self.procs:
            p.start()

    def run(self, tb_id, ids, writers, start_at, stop_at):
        for n in range(writers):
            self.tasks[n].put((tb_id, ids, n + int(start_at * 1000), start_at, stop_at))
        return [self.results.get() for _ in range(writers)]

    def close(self):
        for q in self.tasks:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)


class ThreadClients:
    """Threads of this process sharing one engine (a pool of `n` connections): limited by the GIL."""

    def __init__(self, url, n):
        self.engine = make_engine(url, pool_size=n)

    def run(self, tb_id, ids, writers, start_at, stop_at):
        out: queue.Queue = queue.Queue()
        threads = [threading.Thread(target=lambda n=n: out.put(
            post_for(self.engine, tb_id, ids, n + int(start_at * 1000), start_at, stop_at))) for n in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [out.get() for _ in range(writers)]

    def close(self):
        self.engine.dispose()


def one_run(clients, tb_id, ids, writers, seconds):
    start_at = time.time() + 0.5 + 0.05 * writers  # time for every client to warm up and wait at the line
    results = clients.run(tb_id, ids, writers, start_at, start_at + seconds)
    counts = {k: sum(r[0][k] for r in results) for k in ("ok", "refused", "error")}
    latencies = sorted(x for r in results for x in r[1])

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    return counts["ok"] / seconds, pct(0.50), pct(0.99), counts


def deadlocks(url):
    """PostgreSQL's count of deadlocks detected in the bench database (retried or not); None on SQLite."""
    if not url.startswith("postgresql"):
        return None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        found = conn.exec_driver_sql("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                                     ).scalar()
    engine.dispose()
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--clients", choices=("process", "thread"), default="process")
    args = parser.parse_args()
    writers = [int(w) for w in args.writers.split(",")]
    load = os.getloadavg()
    print(f"clients: {args.clients} per writer, {args.runs} runs of {args.seconds:g} s per cell, medians shown; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'db':9} {'contention':10} {'writers':>7} {'transfers/s':>11} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'refused':>7} {'errors':>6}  runs (transfers/s)")
    summary = []
    for kind in args.db.split(","):
        url, drop = make_database(kind)
        clients = None
        try:
            migrate(url)
            engine = make_engine(url)
            cells = [(label, *setup(engine, n)) for label, n in CONTENTION]
            engine.dispose()
            clients = (ProcessClients if args.clients == "process" else ThreadClients)(url, max(writers))
            for label, tb_id, ids in cells:
                for w in writers:
                    runs = [one_run(clients, tb_id, ids, w, args.seconds) for _ in range(args.runs)]
                    tps = statistics.median(r[0] for r in runs)
                    p50 = statistics.median(r[1] for r in runs)
                    p99 = statistics.median(r[2] for r in runs)
                    refused = sum(r[3]["refused"] for r in runs)
                    errors = sum(r[3]["error"] for r in runs)
                    print(f"{kind:9} {label:10} {w:>7} {tps:>11.0f} {p50:>7.1f} {p99:>7.1f} {refused:>7} {errors:>6}"
                          f"  {' '.join(f'{r[0]:.0f}' for r in runs)}", flush=True)
                    target = TARGETS.get((kind, label, w))
                    if target:
                        summary.append((kind, label, w, tps, target, errors))
            clients.close()
            clients = None
            found = deadlocks(url)
            if found is not None:
                print(f"{kind}: deadlocks detected by the database during the runs: {found}")
        finally:
            if clients:
                clients.close()
            drop()
    for kind, label, w, tps, target, errors in summary:
        verdict = "met" if tps >= target else "missed"
        print(f"target {kind} {label} contention, {w} writers: {tps:.0f}/s against {target}/s = "
              f"{tps / target:.2f}x ({verdict}); errors {errors}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
