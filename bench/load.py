"""Load driver: the real service (gunicorn, 4 workers, PostgreSQL on loopback) under a realistic mix.

    make bench-load                       # = python bench/load.py
    python bench/load.py --rate 200 --seconds 60 --knee 100,150,200,250,300 --step-seconds 20

What it does:
1. A private PostgreSQL (bench/private_pg.py, port 55432, under /tmp) so the shared server is not loaded.
   The L demo community is seeded once into a template database and copied for each run with
   CREATE DATABASE ... TEMPLATE (seconds instead of the ~10 minutes seeding L takes).
2. Setup: API tokens for members, brokers, organisation representatives and a commissioner, made through
   the app's own service (community.auth.issue_token); signed session cookies for the member dashboard page.
3. gunicorn wsgi:app --workers 4 on 127.0.0.1.
4. An open-loop asyncio driver (bench/rawhttp.py, a small HTTP/1.1 client: httpx cost 2-3 ms of CPU per request on
   the cores the service needs): requests are started on a fixed schedule (rate per second), not when
   the previous one returns, so a slow server shows as latency, not as a politely lower rate. Every write
   carries an Idempotency-Key. Bounded by time and by a request cap.
5. Per endpoint: count, throughput, p50/p95/p99, 4xx and 5xx; then the rate is stepped to find the knee
   (the highest rate where p99 < 250 ms and zero 5xx still hold).
6. `flask ledger verify` on the database afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import loadlib  # noqa: E402
import rawhttp  # noqa: E402
import private_pg  # noqa: E402

P99_TARGET_MS = 250.0

# name: (weight, who) — the mix, in percent of requests.
MIX = {
    "GET statement": 22,          # member reads their statement (API)
    "GET dashboard page": 14,     # member opens their dashboard page (/exchanges/, session cookie)
    "GET exchanges": 8,           # member lists their exchanges (API)
    "GET me": 5,                  # app start-up: who am I
    "GET account": 5,             # balance check
    "POST exchange": 15,          # member logs hours they gave (waits for the other side)
    "POST confirm": 15,           # the other side confirms a logged exchange (posts the transfer)
    "GET suggestions": 12,        # broker asks for ranked volunteers for an open request
    "POST activity": 4,           # organisation representative credits a group activity (5 people)
}


# --- setup: tokens and the people taking part -------------------------------------------------------------------

def prepare_actors(database: str, n_members: int = 400, seed: int = 7, app=None) -> dict:
    """Tokens and ids for the driver, written through the app's services into the load database (or into the
    database of `app`, when given: bench/request_cpu.py drives the app in process)."""
    if app is None:
        os.environ.update(loadlib.flask_env(database))
    from sqlalchemy import select

    from timebank import create_app
    from timebank.community.auth import issue_token
    from timebank.community.models import Membership, Organisation, OrganisationRepresentative, TimeBank, User
    from timebank.extensions import db
    from timebank.ledger.models import Account
    from timebank.matching.models import HelpRequest

    rng = random.Random(seed)
    if app is None:
        app = create_app()
    with app.app_context():
        session = db.session
        timebank = session.scalar(select(TimeBank).order_by(TimeBank.id))
        rows = session.execute(
            select(Membership, User, Account).join(User, User.id == Membership.user_id)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.timebank_id == timebank.id, Membership.status == "active",
                   Membership.role == "member", User.is_active_user.is_(True), User.erased_at.is_(None))
            .where(~User.id.in_(select(OrganisationRepresentative.user_id)))).all()
        rng.shuffle(rows)
        rows = rows[:n_members]
        serializer = app.session_interface.get_signing_serializer(app)
        members = []
        for membership, user, account in rows:
            token, _ = issue_token(session, user, ttl_hours=12)
            members.append({"membership_id": membership.id, "account_id": account.id, "token": token,
                            "balance": account.balance_minutes, "floor": account.floor_minutes,
                            "cookie": serializer.dumps({"_user_id": user.get_id(), "_fresh": True})})
        brokers = []
        for user in session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
                Membership.timebank_id == timebank.id, Membership.role == "broker", Membership.status == "active")):
            brokers.append(issue_token(session, user, ttl_hours=12)[0])
        orgs = []
        for org, account, rep_id in session.execute(
                select(Organisation, Account, OrganisationRepresentative.user_id)
                .join(Account, Account.id == Organisation.account_id)
                .join(OrganisationRepresentative, OrganisationRepresentative.organisation_id == Organisation.id)
                .where(Organisation.timebank_id == timebank.id, Organisation.status == "active")
                .order_by(Account.balance_minutes.desc()).limit(60)):
            rep = session.get(User, rep_id)
            if rep.is_active:
                orgs.append({"organisation_id": org.id, "token": issue_token(session, rep, ttl_hours=12)[0]})
        requests_open = list(session.scalars(select(HelpRequest.id).where(
            HelpRequest.timebank_id == timebank.id, HelpRequest.status == "open",
            HelpRequest.membership_id.is_not(None)).limit(300)))
        slug = timebank.slug
        session.commit()
    return {"timebank": slug, "members": members, "brokers": brokers, "orgs": orgs,
            "requests": requests_open}


# --- the driver ------------------------------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.samples = collections.defaultdict(list)   # name -> [ms]
        self.status = collections.defaultdict(collections.Counter)  # name -> Counter(status class)
        self.transport_errors = collections.Counter()
        self.codes_4xx = collections.Counter()
        self.codes_5xx = collections.Counter()
        self.late = 0

    def add(self, name: str, status: int, ms: float, code: str | None = None):
        self.samples[name].append(ms)
        self.status[name][f"{status // 100}xx"] += 1
        if 400 <= status < 500 and code:
            self.codes_4xx[f"{name}: {status} {code}"] += 1
        if status >= 500:
            self.codes_5xx[f"{name}: {status} {code or '-'}"] += 1


class Driver:
    def __init__(self, base_url: str, actors: dict, seed: int = 11):
        self.base_url, self.actors = base_url, actors
        self.rng = random.Random(seed)
        self.pending: collections.deque = collections.deque()  # (exchange_id, confirming member)
        members = actors["members"]
        # Payers are members with room above their floor; anyone can be the provider.
        self.payers = [m for m in members if m["balance"] - (m["floor"] or -600) > 240] or members
        self.today = dt.date.today().isoformat()
        names, weights = zip(*MIX.items())
        self.names, self.weights = list(names), list(weights)

    def headers(self, token: str, write: bool = False) -> dict:
        headers = {"Authorization": f"Bearer {token}"}
        if write:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return headers

    def request_for(self, name: str):
        """(name, method, path, kwargs, on_success) for one action."""
        rng, a = self.rng, self.actors
        member = rng.choice(a["members"])
        if name == "POST confirm":
            if not self.pending:
                name = "POST exchange"
            else:
                exchange_id, confirmer = self.pending.popleft()
                return name, "POST", f"/api/v1/exchanges/{exchange_id}/confirm", \
                    {"headers": self.headers(confirmer["token"], write=True), "json": {}}, None
        if name == "POST exchange":
            recipient = rng.choice(self.payers)
            while recipient is member:
                recipient = rng.choice(self.payers)
            body = {"provider_id": member["membership_id"], "recipient_id": recipient["membership_id"],
                    "minutes": rng.choice((15, 30, 30, 45, 60)), "date": self.today,
                    "description": "Load test: help with shopping"}

            def on_success(payload, recipient=recipient):
                self.pending.append((payload["id"], recipient))

            return name, "POST", "/api/v1/exchanges", \
                {"headers": self.headers(member["token"], write=True), "json": body}, on_success
        if name == "GET statement":
            return name, "GET", f"/api/v1/accounts/{member['account_id']}/statement", \
                {"headers": self.headers(member["token"])}, None
        if name == "GET account":
            return name, "GET", f"/api/v1/accounts/{member['account_id']}", {"headers": self.headers(member["token"])}, None
        if name == "GET exchanges":
            return name, "GET", "/api/v1/exchanges?limit=20", {"headers": self.headers(member["token"])}, None
        if name == "GET me":
            return name, "GET", "/api/v1/me", {"headers": self.headers(member["token"])}, None
        if name == "GET dashboard page":
            return name, "GET", "/exchanges/", {"headers": {"Cookie": f"session={member['cookie']}"}}, None
        if name == "GET suggestions":
            request_id = rng.choice(a["requests"])
            return name, "GET", f"/api/v1/requests/{request_id}/suggestions?limit=10", \
                {"headers": self.headers(rng.choice(a["brokers"]))}, None
        if name == "POST activity":
            org = rng.choice(a["orgs"])
            people = rng.sample(a["members"], 5)
            body = {"organisation_id": org["organisation_id"], "title": "Load test: litter pick", "date": self.today,
                    "participants": [{"member_id": p["membership_id"], "minutes": 60} for p in people]}
            return name, "POST", "/api/v1/activities", {"headers": self.headers(org["token"], write=True),
                                                         "json": body}, None
        raise ValueError(name)

    async def one(self, client: rawhttp.RawClient, rec: Recorder, spec):
        name, method, path, kwargs, on_success = spec
        t0 = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except rawhttp.TransportError as exc:
            rec.transport_errors[f"{name}: {exc}"] += 1
            return
        ms = (time.perf_counter() - t0) * 1000
        code = None
        if response.status_code >= 400:
            try:
                code = response.json().get("code")
            except ValueError:
                code = None
        rec.add(name, response.status_code, ms, code)
        if 300 <= response.status_code < 400:  # e.g. a page bouncing to /login: the request did not do its job
            rec.transport_errors[f"{name}: unexpected {response.status_code}"] += 1
        if on_success is not None and response.status_code == 201:
            on_success(response.json())

    async def serial(self, per_endpoint: int = 15, cpu=None) -> Recorder:
        """One request at a time per endpoint: the service time without queueing (what each request costs).

        With `cpu` (a function returning the server's (gunicorn, PostgreSQL) CPU seconds so far), the recorder's
        `cpu_ms` holds each endpoint's server CPU per request: gunicorn's HTTP handling and PostgreSQL's own work
        included, which the in-process bench/request_cpu.py does not see."""
        rec = Recorder()
        rec.cpu_ms = {}
        async with rawhttp.RawClient(self.base_url, timeout=30.0) as client:
            for name in self.names:
                before = cpu() if cpu else None
                for _ in range(per_endpoint):
                    await self.one(client, rec, self.request_for(name))
                if cpu:
                    after = cpu()
                    rec.cpu_ms[name] = tuple((a - b) * 1000 / per_endpoint for a, b in zip(after, before))
        return rec

    async def run(self, rate: float, seconds: float, max_requests: int, max_in_flight: int = 400) -> tuple[Recorder, float]:
        rec = Recorder()
        async with rawhttp.RawClient(self.base_url, timeout=30.0) as client:
            tasks: set[asyncio.Task] = set()
            start = time.perf_counter()
            n = 0
            interval = 1.0 / rate
            while n < max_requests:
                due = start + n * interval
                if due - start >= seconds:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    rec.late += 1
                if len(tasks) >= max_in_flight:  # the server is far behind: count it, do not pile on more
                    rec.transport_errors["skipped: too many in flight"] += 1
                    n += 1
                    continue
                name = self.rng.choices(self.names, self.weights)[0]
                task = asyncio.create_task(self.one(client, rec, self.request_for(name)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            sent_for = time.perf_counter() - start
            if tasks:
                await asyncio.wait(tasks, timeout=35)
            elapsed = time.perf_counter() - start
        return rec, max(sent_for, elapsed if not tasks else sent_for)


def summarise(rec: Recorder, seconds: float, rate: float) -> dict:
    rows, all_ms = [], []
    total = collections.Counter()
    for name in sorted(rec.samples, key=lambda n: -len(rec.samples[n])):
        values = sorted(rec.samples[name])
        all_ms.extend(values)
        total.update(rec.status[name])
        rows.append({"endpoint": name, "count": len(values), "rps": len(values) / seconds,
                     "p50": loadlib.percentile(values, 50), "p95": loadlib.percentile(values, 95),
                     "p99": loadlib.percentile(values, 99), "max": values[-1],
                     "4xx": rec.status[name]["4xx"], "5xx": rec.status[name]["5xx"]})
    all_ms.sort()
    overall = {"endpoint": "ALL", "count": len(all_ms), "rps": len(all_ms) / seconds,
               "p50": loadlib.percentile(all_ms, 50), "p95": loadlib.percentile(all_ms, 95),
               "p99": loadlib.percentile(all_ms, 99), "max": all_ms[-1] if all_ms else float("nan"),
               "4xx": total["4xx"], "5xx": total["5xx"]}
    transport = sum(rec.transport_errors.values())
    ok = overall["p99"] < P99_TARGET_MS and overall["5xx"] == 0 and transport == 0 and \
        overall["rps"] >= 0.95 * rate
    return {"rate": rate, "seconds": seconds, "rows": rows, "overall": overall, "ok": ok,
            "transport_errors": dict(rec.transport_errors), "codes_4xx": dict(rec.codes_4xx),
            "codes_5xx": dict(rec.codes_5xx), "late": rec.late}


def measure(server, driver, kind: str, rate: float, seconds: float, max_requests: int) -> dict:
    """One phase at an offered rate, with the CPU the server side used per request."""
    drain(server)
    before = loadlib.load_average()
    app_pids, db_pids = loadlib.server_pids(server)
    app_cpu0, db_cpu0 = loadlib.cpu_seconds(app_pids), loadlib.cpu_seconds(db_pids)
    client_cpu0 = time.process_time()
    rec, elapsed = asyncio.run(driver.run(rate=rate, seconds=seconds, max_requests=max_requests))
    result = summarise(rec, elapsed, rate)
    # CPU per request does not depend much on how busy the machine is: it says what an idle one could do.
    # Requests the client gave up waiting for were still served: count them too.
    done = max(1, result["overall"]["count"] + sum(n for k, n in rec.transport_errors.items() if k.endswith("Timeout")))
    result["app_cpu_ms_per_request"] = (loadlib.cpu_seconds(app_pids) - app_cpu0) * 1000 / done
    result["db_cpu_ms_per_request"] = (loadlib.cpu_seconds(db_pids) - db_cpu0) * 1000 / done
    result["server_cpu_ms_per_request"] = result["app_cpu_ms_per_request"] + result["db_cpu_ms_per_request"]
    result["client_cpu_ms_per_request"] = (time.process_time() - client_cpu0) * 1000 / done
    result["phase"] = kind
    result["load_before"], result["load_after"] = before, loadlib.load_average()
    print_table(result, before, result["load_after"])
    return result


def drain(server, limit: float = 90) -> None:
    """Wait until the server answers promptly again: a saturated phase leaves abandoned requests queued."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            httpx.get(server.base_url + "/healthz", timeout=30)
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 < 0.2:
            return
        time.sleep(1)


def print_table(result: dict, load_before: str, load_after: str) -> None:
    print(f"\n== offered {result['rate']:.0f} req/s for {result['seconds']:.0f} s "
          f"(load average before {load_before}, after {load_after}) ==")
    print(f"{'endpoint':<22}{'count':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'4xx':>6}{'5xx':>6}")
    for row in result["rows"] + [result["overall"]]:
        print(f"{row['endpoint']:<22}{row['count']:>7}{row['rps']:>8.1f}{row['p50']:>9.1f}{row['p95']:>9.1f}"
              f"{row['p99']:>9.1f}{row['max']:>9.1f}{row['4xx']:>6}{row['5xx']:>6}")
    if result["transport_errors"]:
        print("transport errors:", result["transport_errors"])
    if result["codes_4xx"]:
        print("4xx answers (refused by a rule, not failures):", result["codes_4xx"])
    if result.get("codes_5xx"):
        print("5xx answers (failures):", result["codes_5xx"])
    if "server_cpu_ms_per_request" in result:
        server_ms, client_ms = result["server_cpu_ms_per_request"], result["client_cpu_ms_per_request"]
        cores = os.cpu_count() or 1
        print(f"CPU per request: server {server_ms:.1f} ms (gunicorn {result['app_cpu_ms_per_request']:.1f} + "
              f"PostgreSQL {result['db_cpu_ms_per_request']:.1f}), client {client_ms:.1f} ms; "
              f"so {cores} idle cores could serve at most ~{cores * 1000 / (server_ms + client_ms):.0f} req/s "
              f"with this client on the same machine, ~{cores * 1000 / server_ms:.0f} req/s without it")
    verdict = "HOLDS" if result["ok"] else "DOES NOT HOLD"
    print(f"target (p99 < {P99_TARGET_MS:.0f} ms, zero 5xx, zero transport errors, throughput ≥ 95% of offered): "
          f"{verdict}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="L", choices=["S", "M", "L", "XL"])
    parser.add_argument("--rate", type=float, default=200, help="offered requests per second for the main run")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=50_000, help="hard cap per phase")
    parser.add_argument("--knee", default="10,20,40,60,80,100,150,200,250",
                        help="rates to step through (stops after the first that fails); empty to skip")
    parser.add_argument("--step-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="gunicorn --threads (1 = sync workers)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the client's event loop: uvloop (libuv) spends less of the shared cores per request")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--serial", type=int, default=15, help="requests per endpoint in the one-at-a-time pass")
    parser.add_argument("--serial-only", action="store_true", help="stop after the one-at-a-time pass")
    parser.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)

    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    private_pg.start()
    template = loadlib.seeded_template(args.size)
    database = loadlib.fresh_copy(template, "timebank_load")
    actors = prepare_actors(database, n_members=args.members)
    print(f"database {database} (copy of {template}); {len(actors['members'])} members, "
          f"{len(actors['brokers'])} brokers, {len(actors['orgs'])} organisations, {len(actors['requests'])} open "
          f"requests; gunicorn --workers {args.workers} --threads {args.threads}; {os.cpu_count()} CPUs; "
          f"client event loop {args.loop}")
    results = {"machine": {"cpus": os.cpu_count(), "size": args.size, "workers": args.workers,
                           "threads": args.threads}, "phases": []}
    with loadlib.Gunicorn(database, args.port, workers=args.workers, threads=args.threads) as server:
        driver = Driver(server.base_url, actors)
        # Warm up: every worker imports, connects and fills its caches.
        asyncio.run(driver.run(rate=20, seconds=5, max_requests=200))
        before = loadlib.load_average()
        if args.serial:  # 0 skips the pass
            app_pids, db_pids = loadlib.server_pids(server)
            serial_rec = asyncio.run(driver.serial(args.serial, cpu=lambda: (
                loadlib.cpu_seconds(app_pids), loadlib.cpu_seconds(db_pids))))
            serial = summarise(serial_rec, 1.0, 0)
            serial["cpu_ms"] = serial_rec.cpu_ms
            print(f"\n== one request at a time ({args.serial} per endpoint): service time without queueing "
                  f"(load average {before}) ==")
            print(f"{'endpoint':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'4xx':>6}{'5xx':>6}"
                  f"{'CPU ms: gunicorn':>18}{'+ PG':>7}{'= server':>10}")
            weighted = [0.0, 0.0]
            for row in serial["rows"]:
                app_ms, db_ms = serial_rec.cpu_ms.get(row["endpoint"], (float("nan"),) * 2)
                weighted[0] += MIX[row["endpoint"]] / 100 * app_ms
                weighted[1] += MIX[row["endpoint"]] / 100 * db_ms
                print(f"{row['endpoint']:<22}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['max']:>9.1f}{row['4xx']:>6}"
                      f"{row['5xx']:>6}{app_ms:>18.1f}{db_ms:>7.1f}{app_ms + db_ms:>10.1f}")
            print(f"{'mix-weighted':<22}{'':>42}{weighted[0]:>18.1f}{weighted[1]:>7.1f}{sum(weighted):>10.1f}")
            results["serial"] = serial
        if args.serial_only:
            return 0
        # The knee first, rising, stopping at the first rate that fails; then the main run at the target rate.
        knee_rates = [float(r) for r in args.knee.split(",") if r.strip()]
        phases = [("knee", r, args.step_seconds) for r in knee_rates] + [("main", args.rate, args.seconds)]
        for kind, rate, seconds in phases:
            result = measure(server, driver, kind, rate, seconds, args.max_requests)
            results["phases"].append(result)
            if kind == "knee" and not result["ok"]:  # past the knee: skip the higher steps, still do the main run
                main_run = [p for p in phases if p[0] == "main"][0]
                results["phases"].append(measure(server, driver, *main_run, args.max_requests))
                break
    knee = [p for p in results["phases"] if p["phase"] == "knee"]
    held = [p["rate"] for p in knee if p["ok"]]
    failed = [p["rate"] for p in knee if not p["ok"]]
    if knee:
        print(f"\nknee: holds up to {max(held):.0f} req/s" if held else "\nknee: does not hold at any stepped rate",
              f"; first failing step {failed[0]:.0f} req/s" if failed else "; never failed in the stepped range")
    ok, report = loadlib.ledger_verify(database)
    print(f"\nflask ledger verify after the run: {'OK' if ok else 'FAILED'}\n{report}")
    results["ledger_verify"] = {"ok": ok, "report": report}
    results["knee"] = {"holds_up_to": max(held) if held else None, "first_failing": failed[0] if failed else None}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
