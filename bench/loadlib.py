"""Shared pieces of the load and fault drivers: the database copy, the gunicorn server, tokens, latency maths."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import private_pg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET_KEY = "bench-only-secret-key"
INSTANCE = Path(os.environ.get("BENCH_INSTANCE", "/tmp/timebank-bench-instance"))


def admin_engine() -> sa.Engine:
    return sa.create_engine(private_pg.url("postgres"), isolation_level="AUTOCOMMIT")


def database_exists(name: str) -> bool:
    with admin_engine().connect() as conn:
        return bool(conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())


def template_ready(name: str) -> bool:
    """A template is ready once its seeding finished (marked by a comment on the database)."""
    with admin_engine().connect() as conn:
        comment = conn.execute(sa.text(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
    return comment == "seeded"


def flask_env(database: str, url: str | None = None) -> dict:
    """The environment the app runs with in a bench: `database` on the private PostgreSQL, or the given `url`."""
    env = dict(os.environ)
    env.update(DATABASE_URL=url or private_pg.url(database), FLASK_APP="timebank", SECRET_KEY=SECRET_KEY,
               TIMEBANK_INSTANCE=str(INSTANCE), LOGIN_RATE_LIMIT="100000 per minute")
    env.pop("REPORTS_DATABASE_URL", None)
    env.pop("RATELIMIT_STORAGE_URI", None)
    return env


def flask(database: str, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=flask_env(database), check=check,
                          capture_output=capture, text=True)


def seeded_template(size: str, echo=print) -> str:
    """The migrated, seeded demo community of this size, built once and kept as a template database."""
    name = f"timebank_load_template_{size.lower()}"
    if database_exists(name) and template_ready(name):
        echo(f"reusing the seeded {size} community (template database {name})")
        return name
    with admin_engine().connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    echo(f"seeding the {size} demo community into {name} (once; later runs copy it)...")
    t0 = time.monotonic()
    flask(name, "db", "upgrade")
    flask(name, "seed", "demo", "--size", size)
    with admin_engine().connect() as conn:
        conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS 'seeded'")
    echo(f"seeded {size} in {time.monotonic() - t0:.0f} s")
    return name


def fresh_copy(template: str, name: str) -> str:
    """A throwaway database copied from the template (CREATE DATABASE ... TEMPLATE: seconds, not minutes)."""
    with admin_engine().connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    flask(name, "db", "upgrade")  # a template seeded before a newer migration
    return name


class Gunicorn:
    """gunicorn wsgi:app on loopback, its workers' pids readable, stopped on exit."""

    def __init__(self, database: str, port: int, workers: int = 4, threads: int = 1, log_path: str | None = None):
        self.database, self.port, self.workers, self.threads = database, port, workers, threads
        self.log_path = log_path or f"/tmp/timebank-bench-gunicorn-{port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        cmd = [str(BIN / "gunicorn"), "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
               "--backlog", "2048", "--timeout", "30", "--graceful-timeout", "5",
               # Load the app once in the master, then fork: workers answer at once instead of each importing
               # for seconds. No database connection is opened before the fork (engines connect lazily).
               "--preload", "wsgi:app"]
        if self.threads > 1:
            cmd[1:1] = ["--threads", str(self.threads)]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=flask_env(self.database), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200 and \
                        len(self.worker_pids()) >= self.workers:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not answer in {timeout} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ledger_verify(database: str) -> tuple[bool, str]:
    result = flask(database, "ledger", "verify", check=False)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (from /proc; vanished ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def server_pids(server: Gunicorn) -> tuple[list[int], list[int]]:
    """(the gunicorn master and workers, the private PostgreSQL's postmaster and backends)."""
    app, database = [], []
    if server.process is not None:
        app += [server.process.pid] + server.worker_pids()
    pid_file = private_pg.DATA_DIR / "postmaster.pid"
    if pid_file.exists():
        postmaster = int(pid_file.read_text().split()[0])
        database += [postmaster] + _children(postmaster)
    return app, database
