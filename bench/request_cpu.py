"""CPU per request, in process: the load mix's endpoints through the Flask test client, one at a time.

    .venv/bin/python bench/request_cpu.py                   # 40 requests per endpoint, S community
    .venv/bin/python bench/request_cpu.py -n 60 --profile "POST activity"   # and cProfile one endpoint

For each endpoint of bench/load.py's MIX it prints the median `time.process_time()` of one request (the app's
Python: Flask, SQLAlchemy, marshmallow, templates, psycopg's client side), the mean CPU the PostgreSQL backend
spent per request (from /proc: the server must run on this machine), the SQL statements the request sent (cursor
executions, savepoints included, BEGIN/COMMIT not), and the mix-weighted sum. CPU time depends far less than wall
time on how busy the machine is, but on a virtual machine its speed still moves by up to a fifth from one run to
the next: compare before and after in alternating runs.

The database: a demo community seeded once into a template database on the shared PostgreSQL (--template,
seeded with `flask seed demo --size S` when missing), copied afresh for each run (--database), so every run
sees the same rows. Tokens, cookies and requests come from bench/load.py (prepare_actors, Driver.request_for).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import load  # noqa: E402
import loadlib  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def fresh_database(admin_url: str, template: str, name: str, size: str) -> str:
    """`name` copied from the seeded `template` (seeding the template first when it is missing)."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    base = sa.make_url(admin_url)
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template}).scalar()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{template}"')
    template_url = base.set(database=template).render_as_string(hide_password=False)
    env = loadlib.flask_env(template, url=template_url)
    if not exists:
        print(f"seeding the {size} demo community into {template} (once)...", file=sys.stderr)
        for args in (["db", "upgrade"], ["seed", "demo", "--size", size]):
            subprocess.run([str(loadlib.BIN / "flask"), *args], cwd=loadlib.ROOT, env=env, check=True,
                           capture_output=True)
    else:  # a template seeded before a newer migration
        subprocess.run([str(loadlib.BIN / "flask"), "db", "upgrade"], cwd=loadlib.ROOT, env=env, check=True,
                       capture_output=True)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


class BackendCpu:
    """The CPU the app's PostgreSQL backends used (their utime + stime in /proc): the database's own work for the
    requests, which process_time() does not see. PostgreSQL must be on this machine (it is for the private one)."""

    def __init__(self, engine):
        self.pids: set[int] = set()
        sa.event.listen(engine, "connect", self._connected)
        engine.dispose()  # connections opened from now on are seen

    def _connected(self, dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        self.pids.add(cursor.fetchone()[0])
        cursor.close()

    def seconds(self) -> float:
        ticks = 0
        for pid in list(self.pids):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


class StatementCounter:
    def __init__(self, engine):
        self.count = 0
        self.echo = False
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement, parameters, *_args):
        self.count += 1
        if self.echo:
            text = " ".join(statement.split())
            if text.startswith("SELECT ") and " FROM " in text:  # the columns say little; the table and filter say more
                text = "SELECT … " + text[text.index(" FROM "):]
            print(f"  [{self.count}] {text[:200]}  {str(parameters)[:100]}")


def by_package(stats: pstats.Stats, requests: int) -> str:
    """Own CPU time (tottime) per library or per timebank sub-package, per request: where the time goes."""
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif "/timebank/" in filename:
            rest = filename.split("/timebank/")[1].split("/")
            key = "timebank/" + (rest[0] if len(rest) > 1 else rest[0])
        elif filename.startswith("~") or filename.startswith("<"):
            key = "builtins"
        else:
            key = "stdlib/other"
        totals[key] = totals.get(key, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    lines = [f"own CPU per request by package (profiled, so inflated; shares are what count):"]
    for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:18]:
        lines.append(f"  {key:<28}{seconds * 1000 / requests:>8.2f} ms {seconds * 100 / whole:>5.1f}%")
    return "\n".join(lines) + "\n\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="measured requests per endpoint")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per endpoint first")
    parser.add_argument("--pg", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG),
                        help="PostgreSQL URL of an administrative database (CREATE DATABASE)")
    parser.add_argument("--template", default="tb_cpu", help="the seeded demo database to copy")
    parser.add_argument("--database", default="tb_cpu_run", help="the copy each run works on")
    parser.add_argument("--size", default="S", help="demo size when the template has to be seeded")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated endpoint names (default: the whole MIX)")
    parser.add_argument("--profile", default="", help="cProfile the measured requests of this endpoint")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key for --profile")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--show-sql", default="", help="print the statements of one more request of this endpoint")
    args = parser.parse_args(argv)

    url = fresh_database(args.pg, args.template, args.database, args.size)
    os.environ.update(loadlib.flask_env(args.database, url=url))
    from timebank import create_app
    from timebank.extensions import db

    app = create_app()
    # The request log line is formatted and written as in production, to nowhere.
    for handler in logging.getLogger("timebank.request").handlers:
        handler.setStream(open(os.devnull, "w"))
    actors = load.prepare_actors(args.database, n_members=args.members, app=app)
    with app.app_context():
        counter = StatementCounter(db.engine)
        backend = BackendCpu(db.engine)
    driver = load.Driver("", actors)
    client = app.test_client(use_cookies=False)  # each request sends its own credentials, as in the load bench
    names = [n.strip() for n in args.only.split(",") if n.strip()] or driver.names
    if "POST confirm" in names and "POST exchange" not in names:
        names.insert(names.index("POST confirm"), "POST exchange")  # confirms need logged exchanges

    def one(name: str) -> tuple[float, int, int]:
        actual, method, path, kwargs, on_success = driver.request_for(name)
        assert actual == name, f"{name}: nothing to confirm"
        statements = counter.count
        t0 = time.process_time()
        response = client.open(path, method=method, **kwargs)
        cpu_ms = (time.process_time() - t0) * 1000
        if on_success is not None and response.status_code == 201:
            on_success(response.get_json())
        return cpu_ms, counter.count - statements, response.status_code

    for name in names:
        for _ in range(args.warmup):
            one(name)
    print(f"{len(actors['members'])} members, {args.n} requests per endpoint after {args.warmup} to warm up; "
          f"database {args.database} (copy of {args.template}); load average {loadlib.load_average()}")
    print(f"{'endpoint':<22}{'CPU ms p50':>11}{'p90':>8}{'PG ms mean':>11}{'statements':>12}{'statuses':>16}")
    weighted = {"app": 0.0, "pg": 0.0, "share": 0.0}
    profile_out = None
    for name in names:
        profiler = cProfile.Profile(time.process_time) if name == args.profile else None  # CPU, not wall
        samples = []
        if profiler:
            profiler.enable()
        pg_before = backend.seconds()
        for _ in range(args.n):
            samples.append(one(name))
        pg_ms = (backend.seconds() - pg_before) * 1000 / args.n
        if profiler:
            profiler.disable()
            buffer = io.StringIO()
            stats = pstats.Stats(profiler, stream=buffer)
            buffer.write(by_package(stats, args.n))
            stats.sort_stats(args.sort).print_stats(args.top)
            profile_out = buffer.getvalue()
        cpu = sorted(s[0] for s in samples)
        statements = sorted(s[1] for s in samples)
        statuses = {}
        for s in samples:
            statuses[s[2]] = statuses.get(s[2], 0) + 1
        stmt = f"{statements[0]}" if statements[0] == statements[-1] else f"{statements[0]}-{statements[-1]}"
        print(f"{name:<22}{statistics.median(cpu):>11.2f}{cpu[int(len(cpu) * 0.9) - 1]:>8.2f}{pg_ms:>11.2f}{stmt:>12}"
              f"{' '.join(f'{k}x{v}' for k, v in sorted(statuses.items())):>16}")
        share = load.MIX.get(name, 0) / sum(load.MIX.values())
        weighted["app"] += share * statistics.mean(cpu)
        weighted["pg"] += share * pg_ms
        weighted["share"] += share
    if abs(weighted["share"] - 1) < 1e-9:
        print(f"{'mix-weighted (means)':<22}{weighted['app']:>11.2f}{'':>8}{weighted['pg']:>11.2f}   "
              f"= {weighted['app'] + weighted['pg']:.2f} ms of CPU per request, app + PostgreSQL backend")
    if args.show_sql:
        if args.show_sql == "POST confirm" and not driver.pending:
            one("POST exchange")
        print(f"\nstatements of one {args.show_sql} request:")
        counter.echo, counter.count = True, 0
        one(args.show_sql)
        counter.echo = False
    if profile_out:
        print(f"\ncProfile of {args.profile} ({args.n} requests, profiler overhead included):")
        print(profile_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
