"""Time `seed demo` at the given sizes on a fresh SQLite database each, then run ledger verify.

    .venv/bin/python bench/demo_bench.py S M        (sizes: XS S M L XL; DEMO_VIA=services for the slow path)
    DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/demo_bench.py L   (an empty PostgreSQL database)

Prints wall-clock and CPU seconds; CPU is the fairer figure on a shared machine.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time


GIVEN_URL = os.environ.get("DATABASE_URL")
VIA = os.environ.get("DEMO_VIA", "bulk")


def _backend_pid(db) -> int | None:
    """The PostgreSQL server process serving the load (same machine), to count its CPU too."""
    if db.engine.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    return db.session.execute(text("SELECT pg_backend_pid()")).scalar()


def _pid_cpu(pid: int | None) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores): workers and their database backends included."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(size: str) -> None:
    url = GIVEN_URL or f"sqlite:///{tempfile.mkdtemp()}/demo-{size}.sqlite3"
    os.environ["DATABASE_URL"] = url
    from flask_migrate import upgrade

    from timebank import create_app, demo
    from timebank.extensions import db
    from timebank.ledger.verify import verify_ledger

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        backend = _backend_pid(db)
        backend_cpu = _pid_cpu(backend)
        commit_every = int(os.environ.get("DEMO_COMMIT_EVERY", 0)) or (2_000 if size in ("L", "XL") else None)
        # As `seed demo` does: banks built in worker processes on PostgreSQL (DEMO_JOBS=1 for one at a time).
        jobs = int(os.environ.get("DEMO_JOBS", 0)) or demo.default_jobs(db.session, commit_every)
        wall, cpu, busy = time.perf_counter(), time.process_time(), _machine_busy()
        summary = demo.load_demo(db.session, size=size, seed=1, echo=lambda *_: None, via=VIA,
                                 commit_every=commit_every, jobs=jobs)
        db.session.commit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        children = os.times().children_user + os.times().children_system
        busy = _machine_busy() - busy
        backend_cpu = _pid_cpu(backend) - backend_cpu if backend else None
        verify_wall = time.perf_counter()
        report = verify_ledger(db.session)
        verify_wall = time.perf_counter() - verify_wall
        load = os.getloadavg()[0]
        print(f"{size} ({VIA}, {db.engine.dialect.name}, {min(jobs, len(summary['timebanks']))} job(s)): "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU"
              f"{f' + {backend_cpu:.1f} s PostgreSQL backend CPU' if backend else ''}"
              f"{f' + {children:.1f} s in worker processes' if children else ''}; machine busy {busy:.1f} CPU-s; "
              f"{summary['members']:,} members, "
              f"{summary['organisations']:,} organisations, {summary['transfers']:,} transfers, "
              f"{summary['hours']:,.0f} hours; {report.summary()} ({verify_wall:.1f} s); load average {load:.1f}",
              flush=True)
        for slug, phases in summary["phases"].items():
            print(f"  {slug}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()), flush=True)


if __name__ == "__main__":
    for size in sys.argv[1:] or ["S"]:
        run(size.upper())
