"""CPU per transfer of several versions of the ledger's write path, measured in the same minutes.

    python bench/ledger_cpu_ab.py [--chunk 250] [--rounds 5] VERSION [VERSION ...]

A VERSION is `REV`: timebank/ledger/service.py as of git revision REV (`.` for the working tree, or a path
ending in .py for a variant kept in a file), with the database triggers of this tree's migrations. (A variant
with a rewritten posting trigger, migration 0013_ledger_speed, was compared with it and dropped at merge: it
made bulk loads 4.5 times slower; see docs/performance/ledger.md.) The versions all run against this tree's
schema, so they must be compatible with it (the write path's SQL and the tables it touches).

On a shared machine, CPU time per transfer moves with the load (caches, SMT) by 10% or more from one minute to
the next, so versions measured one after the other cannot be compared at that precision. This script posts
two-leg transfers through each version's `post_transfer` (one Session and one commit each, as
`make bench-ledger` does) in alternating chunks on one throwaway PostgreSQL database, one connection, and sums
per version the client's CPU (process_time) and the backend's (from /proc). Chunks of every version see the
same load.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ledger_bench import make_database, migrate, setup  # noqa: E402
from ledger_profile import backend_cpu_seconds  # noqa: E402


def _module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_version(rev: str, workdir: Path):
    if rev == ".":
        path = ROOT / "timebank" / "ledger" / "service.py"
    elif rev.endswith(".py"):  # a variant kept in a file
        path = Path(rev)
    else:
        path = workdir / f"service_{rev.replace('/', '_')}.py"
        path.write_text(subprocess.run(["git", "show", f"{rev}:timebank/ledger/service.py"], cwd=ROOT,
                                       check=True, capture_output=True, text=True).stdout)
    return _module(f"ledger_service_{abs(hash(rev))}", path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("versions", nargs="+")
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp())
    versions = []
    for spec in args.versions:
        versions.append((spec, load_version(spec, workdir)))
    url, drop = make_database("postgres")
    try:
        migrate(url)
        engine = sa.create_engine(url, pool_size=1, max_overflow=0)
        tb_id, ids = setup(engine, 200)
        counter = [0]

        def post(service, count):
            for _ in range(count):
                n = counter[0]
                counter[0] += 1
                with Session(engine) as s:
                    service.post_transfer(s, timebank_id=tb_id, kind="exchange", effective_date=dt.date(2026, 11, 1),
                                          postings=[(ids[(2 * n) % 200], -30), (ids[(2 * n + 1) % 200], 30)],
                                          idempotency_key=f"ab-{n}-{uuid.uuid4().hex}")
                    s.commit()

        totals = {spec: [0.0, 0.0, 0] for spec, _ in versions}
        loads = []
        for rnd in range(args.rounds + 1):
            for spec, service in versions:
                post(service, 20 if rnd == 0 else 5)  # warm: plans, prepared statements
                if rnd == 0:
                    continue
                backend0, client0 = backend_cpu_seconds(engine), time.process_time()
                post(service, args.chunk)
                totals[spec][0] += time.process_time() - client0
                totals[spec][1] += backend_cpu_seconds(engine) - backend0
                totals[spec][2] += args.chunk
            loads.append(Path("/proc/loadavg").read_text().split()[0])
        print(f"load average (1 min) after each round: {', '.join(loads)}")
        for spec, (client, backend, n) in totals.items():
            print(f"  {spec:>24}: client {client / n * 1000:.3f} ms, backend {backend / n * 1000:.3f} ms, "
                  f"total {(client + backend) / n * 1000:.3f} ms per transfer ({n} transfers)")
        engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
