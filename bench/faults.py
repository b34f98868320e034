"""Fault drill: writes keep their promises while gunicorn workers are killed and PostgreSQL restarts.

    make bench-faults                     # = python bench/faults.py  (about a minute and a half)

Runs against its own private PostgreSQL (bench/private_pg.py, port 55433 under /tmp/timebank-faults-pg), never
the shared server, so restarting it disturbs no one. A small community (one broker, 80 members) is made through
the app's services in a fresh database.

While 8 clients write (broker transfers through POST /api/v1/transfers and broker-recorded exchanges through
POST /api/v1/exchanges, each with its own Idempotency-Key, retrying the same key and body after a connection
error, a 5xx or 409 idempotency_key_in_progress):
  - a gunicorn worker is killed with SIGKILL (twice, some seconds apart);
  - PostgreSQL is restarted with `pg_ctl restart -m immediate` (a crash: no clean shutdown, WAL recovery on
    start), then once more with `-m fast` (an operator's restart).
Afterwards it checks, and exits 1 if any check fails:
  - every write a client saw acknowledged (201) is in the database exactly once, with the id it was told;
  - no key was acted on twice, acknowledged or not;
  - no partial transfer: every transfer has at least two postings summing to zero, every confirmed exchange
    has its transfer;
  - `flask ledger verify` passes (balances, zero sums, limits, reversals, hash chain);
  - the service answers again with no manual action (/healthz 200, 4 workers), and every client's write was
    eventually acknowledged.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

# Its own private cluster (not the load bench's): restarting it must not cut a seeding or a load run.
os.environ.setdefault("BENCH_PG_PORT", "55433")
os.environ.setdefault("BENCH_PG_DATA", "/tmp/timebank-faults-pg")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import loadlib  # noqa: E402
import private_pg  # noqa: E402

MARK = "fault drill"


def fresh_database(name: str = "timebank_faults") -> str:
    with loadlib.admin_engine().connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    loadlib.flask(name, "db", "upgrade")
    return name


def prepare(database: str, n_members: int = 80) -> dict:
    """A time bank with a broker and members (floor -10 hours), made through the app's services."""
    os.environ.update(loadlib.flask_env(database))
    from timebank import create_app
    from timebank.community.auth import issue_token
    from timebank.community.service import add_membership, create_timebank, create_user
    from timebank.extensions import db

    app = create_app()
    with app.app_context():
        session = db.session
        timebank = create_timebank(session, slug="faults", name="Fault Drill Time Bank")
        broker = create_user(session, email="broker@faults.example", display_name="Drill Broker")
        add_membership(session, user=broker, timebank=timebank, role="broker")
        members = []
        for i in range(n_members):
            user = create_user(session, email=f"m{i}@faults.example", display_name=f"Member {i}")
            membership = add_membership(session, user=user, timebank=timebank, role="member")
            members.append({"membership_id": membership.id, "account_id": membership.account_id})
        token = issue_token(session, broker, ttl_hours=2)[0]
        session.commit()
    return {"token": token, "members": members}


class Client:
    """One writer: a sequence of keyed writes, each retried with the same key and body until it is answered."""

    def __init__(self, n: int, base_url: str, setup: dict, log: dict, stop: asyncio.Event):
        self.n, self.base_url, self.setup, self.log, self.stop = n, base_url, setup, log, stop
        self.rng = random.Random(n)

    def next_write(self) -> tuple[str, str, dict]:
        key = f"fd-{self.n}-{uuid.uuid4().hex[:12]}"
        a, b = self.rng.sample(self.setup["members"], 2)
        minutes = self.rng.choice((5, 10, 15))
        today = dt.date.today().isoformat()
        if self.rng.random() < 0.6:
            return key, "/api/v1/transfers", {
                "kind": "adjustment", "effective_date": today, "memo": f"{MARK} {key}",
                "postings": [{"account_id": a["account_id"], "minutes": -minutes},
                             {"account_id": b["account_id"], "minutes": minutes}]}
        return key, "/api/v1/exchanges", {"provider_id": b["membership_id"], "recipient_id": a["membership_id"],
                                          "minutes": minutes, "date": today, "description": f"{MARK} {key}"}

    async def run(self):
        headers = {"Authorization": f"Bearer {self.setup['token']}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            while not self.stop.is_set():
                key, path, body = self.next_write()
                self.log["sent"][key] = path
                attempt, t0 = 0, time.monotonic()
                while True:
                    attempt += 1
                    try:
                        response = await client.post(path, json=body, headers={**headers, "Idempotency-Key": key})
                    except httpx.HTTPError as exc:
                        self.log["outcomes"][f"transport: {type(exc).__name__}"] += 1
                    else:
                        status = response.status_code
                        code = None
                        if status >= 400:
                            try:
                                code = response.json().get("code")
                            except ValueError:
                                pass
                        replayed = " (replayed: the write had committed before the answer was lost)" \
                            if response.headers.get("Idempotent-Replayed") else ""
                        self.log["outcomes"][f"{status} {code or ''}".strip() + replayed] += 1
                        if status == 201:
                            self.log["acked"][key] = (path, response.json()["id"])
                            if attempt > 1:
                                self.log["acked_after_retry"] += 1
                            break
                        if 400 <= status < 500 and code != "idempotency_key_in_progress":
                            self.log["refused"][key] = f"{status} {code}"
                            break
                    if time.monotonic() - t0 > 90:
                        self.log["gave_up"][key] = path
                        break
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))


async def drill(server: loadlib.Gunicorn, setup: dict, seconds: float, clients: int, events: list) -> dict:
    log = {"sent": {}, "acked": {}, "refused": {}, "gave_up": {}, "outcomes": collections.Counter(),
           "acked_after_retry": 0}
    stop = asyncio.Event()
    writers = [asyncio.create_task(Client(n, server.base_url, setup, log, stop).run()) for n in range(clients)]
    start = time.monotonic()

    async def at(t):
        await asyncio.sleep(max(0.0, start + t - time.monotonic()))

    def note(text):
        events.append(f"t={time.monotonic() - start:5.1f}s {text}")
        print(events[-1], flush=True)

    loop = asyncio.get_running_loop()
    for t, action in [(0.2 * seconds, "kill"), (0.35 * seconds, "kill"), (0.5 * seconds, "pg immediate"),
                      (0.75 * seconds, "pg fast")]:
        await at(t)
        if action == "kill":
            victim = random.choice(server.worker_pids())
            os.kill(victim, signal.SIGKILL)
            note(f"SIGKILL gunicorn worker {victim} (acknowledged so far: {len(log['acked'])})")
        else:
            mode = action.split()[1]
            note(f"PostgreSQL restart -m {mode} begins (acknowledged so far: {len(log['acked'])})")
            down = await loop.run_in_executor(None, private_pg.restart, mode)
            note(f"PostgreSQL back after {down:.1f} s")
    await at(seconds)
    stop.set()
    note("writers stop starting new writes; finishing retries")
    await asyncio.wait(writers, timeout=120)
    note("all writers done")
    return log


def check(database: str, log: dict) -> list[tuple[str, bool, str]]:
    engine = sa.create_engine(private_pg.url(database))
    results = []
    with engine.connect() as conn:
        transfers = collections.defaultdict(list)
        for tid, key in conn.execute(sa.text("SELECT id, idempotency_key FROM transfer WHERE memo LIKE :m"),
                                     {"m": f"{MARK} %"}):
            transfers[key].append(tid)
        exchanges = collections.defaultdict(list)
        for eid, desc in conn.execute(sa.text("SELECT id, description FROM exchange WHERE description LIKE :m"),
                                      {"m": f"{MARK} %"}):
            exchanges[desc[len(MARK) + 1:]].append(eid)
        missing, wrong_id = [], []
        for key, (path, rid) in log["acked"].items():
            found = transfers.get(key) if path.endswith("transfers") else exchanges.get(key)
            if not found or len(found) != 1:
                missing.append(key)
            elif found[0] != rid:
                wrong_id.append(key)
        results.append(("every acknowledged write is present exactly once, with the id the client was told",
                        not missing and not wrong_id,
                        f"{len(log['acked'])} acknowledged; missing or duplicated {len(missing)}; other id "
                        f"{len(wrong_id)}"))
        doubles = [k for k, v in list(transfers.items()) + list(exchanges.items()) if len(v) > 1]
        results.append(("no key acted on twice", not doubles, f"{len(doubles)} keys with more than one row"))
        unacked_present = [k for k in log["sent"] if k not in log["acked"] and (k in transfers or k in exchanges)]
        results.append(("writes never acknowledged are absent (rolled back) or were retried to an answer",
                        not unacked_present, f"{len(unacked_present)} present without an acknowledgement"))
        partial = conn.execute(sa.text(
            "SELECT count(*) FROM transfer t WHERE (SELECT count(*) FROM posting p WHERE p.transfer_id = t.id) < 2 "
            "OR (SELECT coalesce(sum(minutes), 0) FROM posting p WHERE p.transfer_id = t.id) <> 0")).scalar()
        orphans = conn.execute(sa.text(
            "SELECT count(*) FROM exchange e WHERE e.status = 'confirmed' AND (e.transfer_id IS NULL OR NOT EXISTS "
            "(SELECT 1 FROM transfer t WHERE t.id = e.transfer_id))")).scalar()
        results.append(("no partial transfer, no confirmed exchange without its transfer", partial == 0 and orphans == 0,
                        f"{partial} unbalanced or one-legged transfers; {orphans} confirmed exchanges without one"))
    engine.dispose()
    ok, report = loadlib.ledger_verify(database)
    results.append(("flask ledger verify", ok, report.splitlines()[0] if report else ""))
    results.append(("every write was eventually acknowledged (clients retried through the faults)",
                    not log["gave_up"] and len(log["acked"]) + len(log["refused"]) == len(log["sent"]),
                    f"sent {len(log['sent'])}, acknowledged {len(log['acked'])} ({log['acked_after_retry']} after a "
                    f"retry), refused {len(log['refused'])}, gave up {len(log['gave_up'])}"))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)

    private_pg.start()
    database = fresh_database()
    setup = prepare(database)
    print(f"fault drill on {database} (private PostgreSQL {private_pg.url(database)}), {args.clients} writers, "
          f"{args.seconds:.0f} s; load average {loadlib.load_average()}")
    events: list[str] = []
    with loadlib.Gunicorn(database, args.port, workers=4) as server:
        log = asyncio.run(drill(server, setup, args.seconds, args.clients, events))
        t0 = time.monotonic()
        healthy = False
        while time.monotonic() - t0 < 30:
            try:
                healthy = httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and len(server.worker_pids()) == server.workers:
                break
            time.sleep(0.5)
        workers = len(server.worker_pids())
    print("\nanswers seen by the clients (including retries):")
    for outcome, count in sorted(log["outcomes"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:6d}  {outcome}")
    results = check(database, log)
    results.append(("the service answers again without manual action", healthy and workers == 4,
                    f"/healthz {'200' if healthy else 'not 200'}, {workers} workers running"))
    results.append(("no 500 (a fault shows as 503 or a dropped connection, never as a server bug)",
                    not any(o.startswith("500") for o in log["outcomes"]),
                    f"{sum(c for o, c in log['outcomes'].items() if o.startswith('500'))} answers with 500"))
    print("\nchecks:")
    for name, ok, detail in results:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    print(f"load average after: {loadlib.load_average()}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
