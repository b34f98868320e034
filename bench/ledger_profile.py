"""Where one ledger write spends its time: statements per transfer and a Python profile.

    python bench/ledger_profile.py [--db postgres|sqlite] [--transfers 300] [--no-profile]

Posts two-leg transfers one after another through `post_transfer` (one commit each,
as `make bench-ledger` does) on a throwaway database and prints:
- the SQL round trips of one transfer, counted with SQLAlchemy event listeners
  (every cursor execute, plus BEGIN and COMMIT, which the driver sends itself);
- wall time split into time inside the driver (waiting on the database) and the rest;
- a pyinstrument profile of the whole loop (when pyinstrument is installed).
"""
from __future__ import annotations

import argparse
import os
import datetime as dt
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_bench import make_database, migrate, setup  # noqa: E402


class StatementCounter:
    """Counts and times what the engine sends to the database."""

    def __init__(self, engine):
        self.statements: list[str] = []
        self.db_seconds = 0.0
        self.by_kind: dict[str, float] = {}
        self._t0 = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "begin", lambda conn: self.statements.append("(transaction begins)"))
        event.listen(engine, "commit", lambda conn: self.statements.append("COMMIT"))
        event.listen(engine, "rollback", lambda conn: self.statements.append("ROLLBACK"))

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._t0 = time.perf_counter()
        first = " ".join(statement.split())[:110]
        self.statements.append(("executemany " if executemany else "") + first)

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        spent = time.perf_counter() - self._t0
        self.db_seconds += spent
        kind = " ".join(statement.split()[:3])[:40]
        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + spent


COMMIT_SECONDS = [0.0]


class StatementLog:
    """Every statement psycopg sends, also those sent in a pipeline (BEGIN and COMMIT shown as such), and the
    round trips: each time the client has to wait for the server to answer before it can go on."""

    def __init__(self):
        import psycopg
        from psycopg.waiting import Wait

        self.statements: list[str] = []
        self.round_trips = 0
        log, counter = self.statements, self
        original_execute, original_wait = psycopg.Cursor.execute, psycopg.Connection.wait
        original_command = psycopg.Connection._exec_command

        def counted(gen):
            try:
                state = next(gen)
                while True:
                    if state == Wait.R:
                        counter.round_trips += 1
                    ready = yield state
                    state = gen.send(ready)
            except StopIteration as stop:
                return stop.value

        def wait(conn, gen, *args, **kwargs):
            return original_wait(conn, counted(gen), *args, **kwargs)

        def execute(cursor, query, *args, **kwargs):
            log.append(" ".join(str(query).split())[:110])
            return original_execute(cursor, query, *args, **kwargs)

        def command(conn, command, *args, **kwargs):
            log.append(bytes(command).decode() if isinstance(command, (bytes, bytearray)) else str(command))
            return original_command(conn, command, *args, **kwargs)
        psycopg.Cursor.execute, psycopg.Connection.wait = execute, wait
        psycopg.Connection._exec_command = command


def backend_cpu_seconds(engine):
    """CPU time used so far by the PostgreSQL backend serving the pool's one connection (from /proc)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_transfer(engine, tb_id, a, b, n):
    from timebank.ledger.service import post_transfer

    with Session(engine) as s:
        post_transfer(s, timebank_id=tb_id, kind="exchange", effective_date=dt.date(2026, 11, 1),
                      postings=[(a, -30), (b, 30)], idempotency_key=f"p-{n}-{uuid.uuid4().hex}")
        t0 = time.perf_counter()
        s.commit()
        COMMIT_SECONDS[0] += time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="postgres")
    parser.add_argument("--transfers", type=int, default=300)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--cpu-profile", type=int, default=0, metavar="N",
                        help="print the N functions using the most client CPU (cProfile timed by process_time, "
                             "so waiting on the server does not count)")
    parser.add_argument("--cpu-profile-out", metavar="FILE", help="with --cpu-profile: also save the pstats there")
    args = parser.parse_args()
    url, drop = make_database(args.db)
    try:
        engine = sa.create_engine(url, pool_size=1, max_overflow=0)
        from timebank.database import configure_engine
        configure_engine(engine)
        migrate(url)
        tb_id, ids = setup(engine, 200)
        one_transfer(engine, tb_id, ids[0], ids[1], -1)  # warm caches and the pool

        counter = StatementCounter(engine)
        statements = proxy = StatementLog() if args.db == "postgres" else counter
        statements.statements.clear()
        one_transfer(engine, tb_id, ids[2], ids[3], 0)
        print(f"One transfer ({args.db}): {len(statements.statements)} statements")
        for i, statement in enumerate(statements.statements, 1):
            print(f"  {i:2}. {statement}")

        counter.statements.clear()
        statements.statements.clear()
        trips0 = proxy.round_trips if args.db == "postgres" else 0
        counter.db_seconds = 0.0
        counter.by_kind.clear()
        COMMIT_SECONDS[0] = 0.0
        profiler = None
        if not args.no_profile:
            try:
                from pyinstrument import Profiler
                profiler = Profiler(interval=0.0005)
            except ImportError:
                print("(pyinstrument not installed: no profile)")
        cpu_profiler = None
        if args.cpu_profile:
            import cProfile
            cpu_profiler = cProfile.Profile(time.process_time)
            profiler = None
        if profiler:
            profiler.start()
        if cpu_profiler:
            cpu_profiler.enable()
        server0 = backend_cpu_seconds(engine)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for n in range(args.transfers):
            one_transfer(engine, tb_id, ids[(2 * n) % 200], ids[(2 * n + 1) % 200], n + 1)
        wall = time.perf_counter() - t0
        client_cpu = (time.process_time() - cpu0) / args.transfers * 1000
        server_cpu = (backend_cpu_seconds(engine) - server0) / args.transfers * 1000
        if profiler:
            profiler.stop()
        if cpu_profiler:
            cpu_profiler.disable()
        per = wall / args.transfers * 1000
        in_driver = counter.db_seconds / args.transfers * 1000
        print(f"\n{args.transfers} transfers, one writer: {args.transfers / wall:.0f}/s, {per:.2f} ms each")
        if args.db == "postgres":
            print(f"  {len(statements.statements) / args.transfers:.1f} statements and "
                  f"{(proxy.round_trips - trips0) / args.transfers:.1f} round trips per transfer")
        print(f"  {in_driver:.2f} ms per transfer in statements sent through SQLAlchemy's cursor.execute "
              f"(pipelined statements are not timed here)")
        backend = f", PostgreSQL backend {server_cpu:.2f} ms" if args.db == "postgres" else " (SQLite runs in it)"
        print(f"  CPU per transfer: client {client_cpu:.2f} ms{backend} "
              f"(so 2 idle cores could do about {2000 / (client_cpu + server_cpu):.0f} transfers/s at best)")
        print(f"  session.commit() (COMMIT round trip, WAL flush): {COMMIT_SECONDS[0] / args.transfers * 1000:.2f} ms")
        for kind, spent in sorted(counter.by_kind.items(), key=lambda kv: -kv[1]):
            print(f"  {spent / args.transfers * 1000:6.2f} ms  {kind}")
        if cpu_profiler:
            import pstats
            print("\nClient CPU by function (cProfile, process_time; profiling overhead inflates the totals):")
            if args.cpu_profile_out:
                cpu_profiler.dump_stats(args.cpu_profile_out)
            stats = pstats.Stats(cpu_profiler).strip_dirs()
            stats.sort_stats("tottime").print_stats(args.cpu_profile)
            stats.sort_stats("cumulative").print_stats(args.cpu_profile)
        if profiler:
            print(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
        engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
