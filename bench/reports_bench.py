"""Impact dashboard benchmark: server time of GET /reports/ for one year on a generated community.

    python bench/reports_bench.py [--sqlite-size M] [--pg-size XL] [--runs 5] [--skip-pg]

Generates its own bulk data (executemany on SQLite, COPY on PostgreSQL) into a scratch database,
then times the whole dashboard request (queries + template + SVG) with a logged-in broker.
Sizes (members / organisations / transfers / years, the dashboard reads the last year, 2025):
S 300 / 5 / 10k / 2, M 2,000 / 20 / 100k / 2, L 5,000 / 50 / 300k / 2, XL 100,000 / 3,000 / 1M / 5 (the shape of
the XL demo community the impact issue names: members join over the five years and only members who have joined
trade, a few very active and most rarely), XL-dense 20,000 / 200 / 1M / 2 (the bench's XL before: every member
trades about 50 times a year with a new partner each time, so the year read holds 500k transfers, not ~200k).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

# size -> (members, transfers, organisations, years ending 2025-12-31, realistic activity)
SIZES = {"S": (300, 10_000, 5, 2, False), "M": (2_000, 100_000, 20, 2, False), "L": (5_000, 300_000, 50, 2, False),
         "XL": (100_000, 1_000_000, 3_000, 5, True), "XL-dense": (20_000, 1_000_000, 200, 2, False)}
TYPES = ("co_commissioning", "co_design", "co_delivery", "co_assessment")
AREAS = ("community_safety", "local_environment", "public_health", "social_care", "education", "housing", "other")
WARDS = [f"Ward {i}" for i in range(1, 21)]
AGES = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS = ("female", "male", "non-binary", None)
END = dt.date(2025, 12, 31)


def _insert(raw, dialect, table, cols, rows):
    if not rows:
        return
    if dialect == "postgresql":
        with raw.cursor() as cur:
            with cur.copy(f'COPY "{table}" ({", ".join(cols)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in cols)
        raw.cursor().executemany(f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({marks})', rows)


def generate(app, size: str, seed: int = 7) -> dict:
    """Bulk-load a community into the app's (migrated, empty) database. Returns counts."""
    from timebank.community.models import Category
    from timebank.community.service import add_membership, create_timebank, create_user
    from timebank.extensions import db
    from timebank.ledger.service import system_account

    rng = random.Random(seed)
    n_members, n_transfers, n_orgs, years, realistic = SIZES[size]
    start = dt.date(END.year - years + 1, 1, 1)
    with app.app_context():
        tb = create_timebank(db.session, slug="bench", name="Bench Time Bank")
        tb.settings = {"impact": {"rates": [
            {"level": "low", "rate": "11.44", "currency": "GBP", "source": "National living wage", "year": 2024},
            {"level": "central", "rate": "12.60", "currency": "GBP", "source": "Real living wage", "year": 2025},
            {"level": "high", "rate": "18.00", "currency": "GBP", "source": "Median hourly pay", "year": 2024}]}}
        broker = create_user(db.session, email="bench-broker@example.test", display_name="Bench broker",
                             password="bench-password-1")
        add_membership(db.session, user=broker, timebank=tb, role="broker")
        pot_id = system_account(db.session, tb.id, "pot").id
        categories = [c.id for c in db.session.scalars(sa.select(Category).where(Category.timebank_id == tb.id))]
        logger_id = broker.id
        tb_id = tb.id
        db.session.commit()
        engine = db.engine
        dialect = engine.dialect.name

        def next_id(table):
            with engine.connect() as conn:
                return (conn.exec_driver_sql(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').scalar() or 0) + 1

        uid, aid, mid, oid, tid, pid, eid = (next_id(t) for t in (
            "user", "account", "membership", "organisation", "transfer", "posting", "exchange"))
        now = dt.datetime(2026, 1, 1)
        users, accounts, members, orgs = [], [], [], []
        member_accounts, member_ids, joined = [], [], {}
        for i in range(n_members):
            joined_on = start + dt.timedelta(days=rng.randrange((END - start).days))
            consent = rng.random() < 0.7
            users.append((uid + i, f"m{i}-{uuid.uuid4().hex[:6]}@bench.test", f"Member {i}", "email", True, now))
            accounts.append((aid + i, tb_id, "member", f"Member {i}", "open", 0, now))
            members.append((mid + i, uid + i, tb_id, "member", "active", aid + i, joined_on, rng.choice(WARDS),
                            0, consent, rng.choice(AGES), rng.choice(GENDERS), 0, "none", now))
            member_accounts.append(aid + i)
            member_ids.append(mid + i)
            joined[mid + i] = joined_on
        org_accounts = []
        for j in range(n_orgs):
            accounts.append((aid + n_members + j, tb_id, "organisation", f"Org {j}", "open", 0, now))
            orgs.append((oid + j, tb_id, f"Org {j}", "charity", "active", aid + n_members + j, now))
            org_accounts.append((oid + j, aid + n_members + j))
        from types import SimpleNamespace

        from timebank.ledger.service import GENESIS_HASH, posting_hash

        heads: dict[int, str] = {}
        transfers, postings, exchanges = [], [], []

        def add_posting(p_id, transfer_row, account, minutes):
            # The ledger's triggers check each account's hash chain, so links are computed in posting order.
            tr = SimpleNamespace(id=transfer_row[0], timebank_id=transfer_row[1], kind=transfer_row[2],
                                 memo=transfer_row[3], effective_date=transfer_row[4],
                                 reverses_transfer_id=transfer_row[6])
            prev = heads.get(account, GENESIS_HASH)
            link = posting_hash(prev, transfer=tr, account_id=account, minutes=minutes)
            heads[account] = link
            postings.append((p_id, transfer_row[0], account, minutes, prev, link))
        t, p, e = tid, pid, eid
        reversible = []
        # Realistic activity: members (in joining order) who have joined by the day, the earliest far more often
        # (a core of very active members, most trading rarely or never).
        by_joining = sorted(range(n_members), key=lambda i: joined[member_ids[i]])
        joined_days = [joined[member_ids[i]] for i in by_joining]

        def members_on(day, k):
            if not realistic:
                return rng.sample(range(n_members), k)
            import bisect
            n = max(k + 1, bisect.bisect_right(joined_days, day))
            chosen = set()
            while len(chosen) < k:
                chosen.add(by_joining[int(n * rng.random() ** 2.5)])
            return list(chosen)

        # Transfers are recorded in date order, as a ledger records them: ids grow with time (a reversal is dated
        # up to two months after its exchange). Before, each transfer had a random day of the whole span, so ids
        # and dates were unrelated, which no real ledger looks like.
        days = sorted(start + dt.timedelta(days=rng.randrange((END - start).days + 1)) for _ in range(n_transfers))
        for day in days:
            roll = rng.random()
            ctype, area, cat = rng.choice(TYPES), rng.choice(AREAS), rng.choice(categories)
            if roll < 0.86:  # person to person
                a, b = members_on(day, 2)
                minutes = rng.choice((30, 60, 60, 90, 120, 180))
                transfers.append((t, tb_id, "exchange", "", day, now, None, "{}"))
                add_posting(p, transfers[-1], member_accounts[b], -minutes)
                add_posting(p + 1, transfers[-1], member_accounts[a], minutes)
                exchanges.append((e, tb_id, "p2p", member_ids[a], member_ids[b], None, None, minutes, day, "", cat,
                                  ctype, area, rng.random() < 0.3, False, None, "confirmed", logger_id, t, now,
                                  False, "{}"))
                reversible.append((t, len(exchanges) - 1, [(member_accounts[b], -minutes),
                                                           (member_accounts[a], minutes)], day))
                p, e = p + 2, e + 1
            elif roll < 0.93:  # group activity with 3 participants
                org_id, org_account = rng.choice(org_accounts)
                people = members_on(day, 3)
                minutes = rng.choice((60, 120, 180))
                transfers.append((t, tb_id, "group_activity", "", day, now, None, "{}"))
                add_posting(p, transfers[-1], org_account, -3 * minutes)
                p += 1
                for person in people:
                    add_posting(p, transfers[-1], member_accounts[person], minutes)
                    exchanges.append((e, tb_id, "p2a", member_ids[person], None, None, org_id, minutes, day, "", cat,
                                      ctype, area, False, True, None, "confirmed", logger_id, t, now, False, "{}"))
                    p, e = p + 1, e + 1
            elif roll < 0.98:  # pot donation or grant
                a = member_accounts[members_on(day, 1)[0]]
                minutes = 60
                if roll < 0.955:
                    transfers.append((t, tb_id, "donation", "", day, now, None, "{}"))
                    legs = [(a, -minutes), (pot_id, minutes)]
                else:
                    transfers.append((t, tb_id, "adjustment", "", day, now, None, "{}"))
                    legs = [(a, -minutes), (pot_id, minutes)]
                for account, minutes_ in legs:
                    add_posting(p, transfers[-1], account, minutes_)
                    p += 1
            else:  # reversal of an earlier exchange
                if not reversible:
                    continue
                orig_t, index, legs, orig_day = reversible.pop(rng.randrange(len(reversible)))
                rev_day = min(END, orig_day + dt.timedelta(days=rng.randrange(1, 60)))
                transfers.append((t, tb_id, "reversal", "", rev_day, now, orig_t, "{}"))
                for account, minutes_ in legs:
                    add_posting(p, transfers[-1], account, -minutes_)
                    p += 1
                row = list(exchanges[index])
                row[16] = "reversed"
                exchanges[index] = tuple(row)
            t += 1
        raw = engine.raw_connection()
        try:
            if dialect == "sqlite":
                # One transaction: the ledger's zero-sum guard is a deferred foreign key checked at COMMIT.
                raw.cursor().execute("BEGIN")
            _insert(raw, dialect, "user", ("id", "email", "display_name", "preferred_contact", "is_active_user",
                                           "created_at"), users)
            _insert(raw, dialect, "account", ("id", "timebank_id", "kind", "name", "status", "balance_minutes",
                                              "created_at"), accounts)
            _insert(raw, dialect, "membership", (
                "id", "user_id", "timebank_id", "role", "status", "account_id", "joined_on", "ward", "availability",
                "demographics_consent", "age_band", "gender", "references_received", "safety_check_level",
                "created_at"), members)
            _insert(raw, dialect, "organisation", ("id", "timebank_id", "name", "kind", "status", "account_id",
                                                   "created_at"), orgs)
            transfer_columns = ("id", "timebank_id", "kind", "memo", "effective_date", "recorded_at",
                                "reverses_transfer_id", "metadata")
            posting_columns = ("id", "transfer_id", "account_id", "minutes", "prev_hash", "hash")
            if dialect == "postgresql":
                # In chunks of 10,000 transfers with their postings, each committed (a transfer must commit with
                # its postings: the zero-sum check is deferred to COMMIT). One transaction that moves a busy
                # account (the pot) thousands of times leaves a chain of row versions that every later update of
                # that row walks (nothing can be pruned before the commit), so one big COPY grew quadratically:
                # XL had not finished after 11 minutes.
                raw.commit()
                p = 0
                for t0 in range(0, len(transfers), 10_000):
                    chunk = transfers[t0:t0 + 10_000]
                    last_id = chunk[-1][0]
                    p1 = p
                    while p1 < len(postings) and postings[p1][1] <= last_id:
                        p1 += 1
                    _insert(raw, dialect, "transfer", transfer_columns, chunk)
                    _insert(raw, dialect, "posting", posting_columns, postings[p:p1])
                    raw.commit()
                    p = p1
                assert p == len(postings)
            else:
                _insert(raw, dialect, "transfer", transfer_columns, transfers)
                _insert(raw, dialect, "posting", posting_columns, postings)
            _insert(raw, dialect, "exchange", (
                "id", "timebank_id", "kind", "provider_membership_id", "recipient_membership_id",
                "provider_organisation_id", "recipient_organisation_id", "minutes", "happened_on", "description",
                "category_id", "coproduction_type", "outcome_area", "substitutive", "collective", "activity_id",
                "status", "logged_by_user_id", "transfer_id", "created_at", "auto_confirmed", "extra"), exchanges)
            cur = raw.cursor()
            # Balances and chain heads are moved by the ledger's posting trigger; bench accounts have no floor.
            if dialect == "postgresql":
                for table in ("user", "account", "membership", "organisation", "transfer", "posting", "exchange"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                f"(SELECT MAX(id) FROM \"{table}\"))")
                raw.commit()
                cur.execute("ANALYZE")
            raw.commit()
            if dialect == "sqlite":
                cur.execute("ANALYZE")
                raw.commit()
        finally:
            raw.close()
        # Rows loaded without the ORM: build the report roll-up from them, as the demo seeder's bulk path does.
        from timebank.impact.rollups import rebuild_rollups

        t0 = time.perf_counter()
        rebuild_rollups(db.session, tb_id)
        db.session.commit()
        print(f"  roll-up rebuilt in {time.perf_counter() - t0:.1f} s", flush=True)
        if dialect == "postgresql":
            # What autovacuum does soon after a load on a live server: the visibility map lets index-only scans
            # skip the heap, and the planner gets fresh statistics.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE)")
    return {"members": n_members, "transfers": len(transfers), "postings": len(postings),
            "exchanges": len(exchanges)}


def run(url: str, size: str, runs: int, label: str, reuse: bool = False) -> dict:
    from flask_migrate import upgrade

    from timebank import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SERVER_NAME": None,
                      "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    t0 = time.perf_counter()
    counts = existing_counts(app) if reuse else None
    if counts is None:
        counts = generate(app, size)
    load_s = time.perf_counter() - t0
    client = app.test_client()
    response = client.post("/login", data={"email": "bench-broker@example.test", "password": "bench-password-1"})
    assert response.status_code == 302, response.status_code
    query = {"timebank": "bench", "from": "2025-01-01", "to": "2025-12-31"}
    times, cpu = [], []
    for i in range(runs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get("/reports/", query_string=query)
        elapsed, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        assert response.status_code == 200, response.status_code
        if i:  # the first request warms caches and is not counted
            times.append(elapsed)
            cpu.append(cpu_s)
    from timebank.extensions import db
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()
    result = {"label": label, "size": size, **counts, "load_s": round(load_s, 1),
              "median_ms": round(statistics.median(times) * 1000), "min_ms": round(min(times) * 1000),
              "max_ms": round(max(times) * 1000), "runs": runs, "cpu_median_ms": round(statistics.median(cpu) * 1000)}
    print(f"{label:<11} size {size:<2} {counts['members']:>6} members {counts['transfers']:>8} transfers "
          f"{counts['exchanges']:>8} exchanges  dashboard (1 year) median {result['median_ms']} ms "
          f"(min {result['min_ms']}, max {result['max_ms']}, {runs} runs; load {result['load_s']} s); "
          f"this process's CPU per request median {result['cpu_median_ms']} ms "
          f"({'the whole request: SQLite runs in-process' if label == 'SQLite' else 'client side only'}); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return result


def existing_counts(app) -> dict | None:
    """The counts of a bench community already in the database (--pg-database reuses one), or None if empty."""
    from timebank.extensions import db

    with app.app_context():
        transfers = db.session.execute(sa.text("SELECT COUNT(*) FROM transfer")).scalar()
        if not transfers:
            return None
        return {"members": db.session.execute(sa.text("SELECT COUNT(*) FROM membership")).scalar(),
                "transfers": transfers,
                "exchanges": db.session.execute(sa.text("SELECT COUNT(*) FROM exchange")).scalar()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-size", default=os.environ.get("BENCH_SQLITE_SIZE", "M"), choices=SIZES)
    parser.add_argument("--pg-size", default=os.environ.get("BENCH_PG_SIZE", "XL"), choices=SIZES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--pg-database", help="a named PostgreSQL database to load once and keep; later runs with "
                        "the same name reuse its community (for profiling; the size must match)")
    args = parser.parse_args()
    os.environ.setdefault("TIMEBANK_INSTANCE", tempfile.mkdtemp(prefix="tb-bench-"))
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(f"sqlite:///{tmp}/bench.sqlite3", args.sqlite_size, args.runs, "SQLite")
            verdict = ("met" if r["median_ms"] < 500 else "NOT met") if args.sqlite_size == "M" else "not measured at M"
            print(f"  target M on SQLite < 500 ms: {verdict}")
    if not args.skip_pg:
        admin_url = sa.make_url(os.environ.get("TEST_POSTGRES_URL",
                                               "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
        name = args.pg_database or f"timebank_bench_reports_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first()
                if not exists:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            print(f"PostgreSQL not reachable, skipped: {exc.orig}")
            return
        try:
            r = run(admin_url.set(database=name).render_as_string(hide_password=False), args.pg_size, args.runs,
                    "PostgreSQL", reuse=bool(args.pg_database))
            verdict = ("met" if r["median_ms"] < 1000 else "NOT met") if args.pg_size == "XL" else "not measured at XL"
            print(f"  target XL on PostgreSQL < 1000 ms: {verdict}")
        finally:
            if not args.pg_database:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()


if __name__ == "__main__":
    main()
