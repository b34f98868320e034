"""A private PostgreSQL 15 instance under /tmp for benchmarks and fault drills.

The shared server on 127.0.0.1:5432 is used by other people's test runs; a benchmark that loads it for
minutes, or a fault drill that restarts it, would disturb them. So the load and fault drivers run their
own cluster (initdb + pg_ctl) on another loopback port, created on first use and reused afterwards.

    python bench/private_pg.py start|stop|status|restart
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DATA_DIR = Path(os.environ.get("BENCH_PG_DATA", "/tmp/timebank-bench-pg"))
PORT = int(os.environ.get("BENCH_PG_PORT", "55432"))
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "port": str(PORT),
    "unix_socket_directories": f"'{DATA_DIR}'",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "fsync": "on",  # durability is what the fault drill checks: keep it on
    "synchronous_commit": "on",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=kwargs.pop("check", True), capture_output=True, text=True, **kwargs)


def url(database: str = "postgres") -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/{database}"


def is_running() -> bool:
    result = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(PORT)])
    return result.returncode == 0


def _init() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(DATA_DIR, entry.pw_uid, entry.pw_gid)
    DATA_DIR.chmod(0o700)
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(DATA_DIR), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8"])
    with open(DATA_DIR / "postgresql.auto.conf", "a") as conf:
        for name, value in SETTINGS.items():
            conf.write(f"{name} = {value}\n")
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(DATA_DIR / "postgresql.auto.conf", entry.pw_uid, entry.pw_gid)


def start() -> str:
    """Start the private cluster (initialising it the first time); return its admin URL."""
    if not (DATA_DIR / "PG_VERSION").exists():
        _init()
    if not is_running():
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(DATA_DIR), "-l", str(DATA_DIR / "server.log"),
                      "-w", "-t", "60", "start"])
    return url()


def stop(mode: str = "fast") -> None:
    if (DATA_DIR / "PG_VERSION").exists() and is_running():
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(DATA_DIR), "-m", mode, "-w", "stop"])


def restart(mode: str = "fast") -> float:
    """Restart the server (as an operator or a crash-restart would); return the seconds it was down."""
    t0 = time.monotonic()
    _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(DATA_DIR), "-m", mode, "-w", "-t", "60",
                  "-l", str(DATA_DIR / "server.log"), "restart"])
    return time.monotonic() - t0


def destroy() -> None:
    stop("immediate")
    shutil.rmtree(DATA_DIR, ignore_errors=True)


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "status"
    if action == "start":
        print(start())
    elif action == "stop":
        stop()
    elif action == "restart":
        print(f"restarted in {restart():.1f} s")
    elif action == "destroy":
        destroy()
    else:
        print(f"{url()} running={is_running()} data={DATA_DIR}")
