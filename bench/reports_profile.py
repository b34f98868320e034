"""Per-statement timing of the impact dashboard on a bench database loaded by reports_bench.py --pg-database.

    python bench/reports_profile.py DATABASE [RUNS]        # DATABASE: a PostgreSQL name or a full URL
    TB_ROOT=/path/to/other/checkout python bench/reports_profile.py DATABASE   # time another version's code

Times GET /reports/ for 2025 through the Flask test client (the first request is a warm-up), prints the median
and the slowest statements of the last run. TB_ROOT runs another checkout's code on the same data, so a change
can be measured back to back (that checkout must understand the database's schema). Also prints the CPU time per
dashboard of this process and of the PostgreSQL server processes serving the database (read from /proc when the
server runs on this machine): CPU time depends much less than wall time on what else the machine is running.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("TB_ROOT", str(Path(__file__).resolve().parent.parent)))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event  # noqa: E402


def _database_cpu(database: str) -> float | None:
    """CPU seconds used so far by this machine's PostgreSQL processes connected to `database` (None: none seen)."""
    total, seen = 0.0, False
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if not title.startswith("postgres:") or f" {database} " not in title:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total, seen = total + (int(fields[11]) + int(fields[12])) / tick, True
    return total if seen else None


def main() -> None:
    from timebank import create_app

    target = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    url = target if "://" in target else f"postgresql+psycopg://postgres@127.0.0.1:5432/{target}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SERVER_NAME": None,
                      "RATELIMIT_ENABLED": False})
    stats: list[tuple[float, str]] = []

    @event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def _before(conn, _cursor, _statement, _params, _context, _many):
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(sa.engine.Engine, "after_cursor_execute")
    def _after(conn, _cursor, statement, _params, _context, _many):
        stats.append((time.perf_counter() - conn.info["t0"], " ".join(statement.split())[:140]))

    client = app.test_client()
    client.post("/login", data={"email": "bench-broker@example.test", "password": "bench-password-1"})
    query = {"timebank": "bench", "from": "2025-01-01", "to": "2025-12-31"}
    assert client.get("/reports/", query_string=query).status_code == 200
    database = url.rsplit("/", 1)[1].split("?")[0]
    totals, cpu, db_cpu = [], [], []
    for _ in range(runs):
        stats.clear()
        c0, d0 = time.process_time(), _database_cpu(database)
        t0 = time.perf_counter()
        assert client.get("/reports/", query_string=query).status_code == 200
        totals.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        d1 = _database_cpu(database)
        if d0 is not None and d1 is not None:
            db_cpu.append(d1 - d0)
    server = f"{round(statistics.median(db_cpu) * 1000)} ms" if db_cpu else "not seen (another machine?)"
    print(f"dashboard ms {[round(t * 1000) for t in totals]} median {round(statistics.median(totals) * 1000)}; "
          f"CPU per dashboard: this process {round(statistics.median(cpu) * 1000)} ms, PostgreSQL {server}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"last run: {round(sum(s for s, _ in stats) * 1000)} ms in {len(stats)} statements "
          "(SQLite computes rows while they are fetched, so its statement times are partial)")
    for seconds, statement in sorted(stats, reverse=True)[:10]:
        print(f"{seconds * 1000:8.1f} ms  {statement}")


if __name__ == "__main__":
    main()
