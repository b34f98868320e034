"""Matching benchmark: batch-plan quality and speed, and suggestion latency, on synthetic communities.

    make bench-matching            (or: .venv/bin/python bench/matching_bench.py [--quick] [--db URL])

Plans: volunteers and requests in a city 20 km across, 20 leaf categories under 6 parents, random availability.
Candidate edges come from the same hard filters as the app (category family, availability overlap, distance
within the radius), vectorised with numpy; base scores use the app's scoring weights. The plan is solved exactly
with the app's min-cost flow (timebank.matching.planner.solve_arrays); the independent LP solver
(solve_arrays_lp, HiGHS) is the oracle for score/optimum up to 2 M edges; a greedy heuristic is reported too.
Suggestions: the same community is written to a real database (SQLite file by default) and the app's
queries.suggestions() is timed for the top 10 of many requests.
App plan (--only app-plan): the app's service.create_plan end to end on a real database of --plan-size
volunteers x requests (candidate pairs, exact solve, proposals written), with the old per-request path for
comparison. --only plans|suggestions runs one part; --sizes picks member counts; every table prints load averages.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from timebank.matching import planner, scoring  # noqa: E402

CENTRE = (53.80, -1.55)
RADIUS_KM = 10.0
N_LEAVES, N_PARENTS = 20, 6


def community(n_vol, n_req, seed):
    rng = np.random.default_rng(seed)
    leaf_parent = rng.integers(0, N_PARENTS, N_LEAVES)
    vol_skills = rng.integers(0, N_LEAVES, (n_vol, 2))
    vol_xy = rng.uniform(-10, 10, (n_vol, 2))  # km
    vol_slots = rng.integers(0, 1 << 21, n_vol) & rng.integers(0, 1 << 21, n_vol)  # about a quarter of slots
    vol_balance = rng.normal(0, 600, n_vol).astype(int)
    vol_rel = rng.uniform(0.4, 1.0, n_vol)
    vol_open = rng.poisson(0.5, n_vol)
    req_cat = rng.integers(0, N_LEAVES, n_req)
    req_xy = rng.uniform(-10, 10, (n_req, 2))
    req_slots = rng.integers(0, 1 << 21, n_req) & rng.integers(0, 1 << 21, n_req) & rng.integers(0, 1 << 21, n_req)
    req_remote = rng.random(n_req) < 0.1
    req_places = np.where(rng.random(n_req) < 0.1, rng.integers(2, 6, n_req), 1)
    req_wait = rng.uniform(0, 1, n_req)
    return dict(leaf_parent=leaf_parent, vol_skills=vol_skills, vol_xy=vol_xy, vol_slots=vol_slots,
                vol_balance=vol_balance, vol_rel=vol_rel, vol_open=vol_open, req_cat=req_cat, req_xy=req_xy,
                req_slots=req_slots, req_remote=req_remote, req_places=req_places, req_wait=req_wait)


def popcount(a):
    a = a.astype(np.int64)
    c = np.zeros_like(a)
    for bit in range(21):
        c += (a >> bit) & 1
    return c


def candidate_edges(c, weights):
    """(req index, vol index, base score) arrays for every pair passing the hard filters."""
    reqs, vols, scores = [], [], []
    vol_pop = None
    for r in range(len(c["req_cat"])):
        cat = c["req_cat"][r]
        exact = (c["vol_skills"] == cat).any(axis=1)
        sibling = (c["leaf_parent"][c["vol_skills"]] == c["leaf_parent"][cat]).any(axis=1) & ~exact
        fit = np.where(exact, 1.0, np.where(sibling, 0.6, 0.0))  # parent-level skill stands in for "broader"
        ok = fit > 0
        overlap = c["vol_slots"] & c["req_slots"][r]
        if c["req_slots"][r]:
            ok &= overlap != 0
        d = np.hypot(*(c["vol_xy"] - c["req_xy"][r]).T)
        if not c["req_remote"][r]:
            ok &= d <= RADIUS_KM
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        req_pop = bin(int(c["req_slots"][r])).count("1") or 1
        feats = (weights["category"] * fit[idx]
                 + weights["distance"] * (1.0 if c["req_remote"][r] else np.maximum(0, 1 - d[idx] / RADIUS_KM))
                 + weights["availability"] * (popcount(overlap[idx]) / req_pop if c["req_slots"][r] else 1.0)
                 + weights["reliability"] * c["vol_rel"][idx]
                 + weights["reciprocity"] * np.clip(0.5 - c["vol_balance"][idx] / 1200.0, 0, 1)
                 + weights["waiting"] * c["req_wait"][r])
        reqs.append(np.full(len(idx), r))
        vols.append(idx)
        scores.append(feats)
    return np.concatenate(reqs), np.concatenate(vols), np.concatenate(scores)


def greedy(edges, places, capacity, open_load, w):
    """Best marginal edge first: a fast heuristic, measured against the exact optimum."""
    order = sorted(edges, key=lambda e: -e.score)
    left_p, left_c, load, chosen = dict(places), dict(capacity), dict(open_load), []
    for e in order:
        if left_p.get(e.request, 0) > 0 and left_c.get(e.volunteer, 0) > 0:
            gain = e.score - scoring.marginal_load(load.get(e.volunteer, 0), w)
            if gain > 0:
                chosen.append((e.request, e.volunteer))
                left_p[e.request] -= 1
                left_c[e.volunteer] -= 1
                load[e.volunteer] = load.get(e.volunteer, 0) + 1
    return chosen


def gini(values):
    v = np.sort(np.asarray(values, dtype=float))
    if not len(v) or v.sum() == 0:
        return 0.0
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(v) / (n * v.sum()))


def plan_case(n_vol, n_req, seed, cap=2, repeats=1, lp_oracle_max_edges=2_000_000):
    weights = scoring.weights_for({})
    c = community(n_vol, n_req, seed)
    t0 = time.perf_counter()
    r_idx, v_idx, s = candidate_edges(c, weights)
    t_edges = time.perf_counter() - t0
    places_arr = c["req_places"].astype(np.int64)
    capacity_arr = np.full(n_vol, cap, dtype=np.int64)
    open_arr = c["vol_open"].astype(np.int64)
    # Pairs that cannot gain even as a volunteer's first new commitment never enter a plan.
    useful = s > weights["load"] * ((open_arr[v_idx] + 1) ** 2 - open_arr[v_idx] ** 2) / 4.0
    r_idx, v_idx, s = r_idx[useful], v_idx[useful], s[useful]
    solve_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        chosen = planner.solve_arrays(r_idx, v_idx, s, places_arr, capacity_arr, open_arr, weights["load"])
        solve_times.append(time.perf_counter() - t0)
    t_solve = statistics.median(solve_times)
    pairs = list(zip(r_idx[chosen].tolist(), v_idx[chosen].tolist()))
    scores = dict(zip(zip(r_idx.tolist(), v_idx.tolist()), s.tolist()))
    open_load = dict(enumerate(open_arr.tolist()))
    total = planner.objective(pairs, scores, open_load, weights["load"])
    edges = [planner.Edge(r, v, w) for (r, v), w in scores.items()]
    t0 = time.perf_counter()
    g = greedy(edges, dict(enumerate(places_arr.tolist())), dict(enumerate(capacity_arr.tolist())), open_load,
               weights["load"])
    t_greedy = time.perf_counter() - t0
    g_total = planner.objective(g, scores, open_load, weights["load"])
    # The LP (HiGHS, column generation) is an independent exact solver: the oracle for the flow's optimality.
    t_lp, lp_total = None, None
    if len(s) <= lp_oracle_max_edges:
        t0 = time.perf_counter()
        lp_chosen = planner.solve_arrays_lp(r_idx, v_idx, s, places_arr, capacity_arr, open_arr, weights["load"])
        t_lp = time.perf_counter() - t0
        lp_total = planner.objective(list(zip(r_idx[lp_chosen].tolist(), v_idx[lp_chosen].tolist())), scores,
                                     open_load, weights["load"])
    used = np.bincount(v_idx[chosen], minlength=n_vol)
    eligible = np.unique(v_idx)
    load = used[eligible]
    matched_requests = set(r_idx[chosen].tolist())
    # Check the plan is feasible: places, capacities, each pair once.
    assert np.all(np.bincount(r_idx[chosen], minlength=n_req) <= places_arr) and np.all(used <= cap)
    assert len(set(pairs)) == len(pairs)
    return {
        "volunteers": n_vol, "requests": n_req, "places": int(places_arr.sum()), "edges": len(edges),
        "coverage": len(matched_requests) / n_req,
        "places_filled": len(pairs) / places_arr.sum(),
        "score_ratio": (total / lp_total if lp_total else 1.0) if lp_total is not None else None,
        "greedy_ratio": g_total / total if total else 1.0, "t_lp": t_lp,
        "gini": gini(load), "max_load": int(load.max()) if len(load) else 0,
        "eligible_used": float((load > 0).mean()) if len(load) else 0.0,
        "t_edges": t_edges, "t_solve": t_solve, "t_greedy": t_greedy,
    }


# --- suggestions on a real database -------------------------------------------------------------------------------

def build_db(url, n_members, seed, n_requests=60):
    from sqlalchemy import insert, select

    from timebank import create_app
    from timebank.community.models import Category, Membership, MemberSkill, User
    from timebank.community.service import create_timebank
    from timebank.extensions import db
    from timebank.ledger.models import Account
    from timebank.matching.models import HelpRequest, Offer

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    ctx = app.app_context()
    ctx.push()
    from flask_migrate import upgrade
    upgrade(directory=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations"))
    rng = np.random.default_rng(seed)
    tb = create_timebank(db.session, slug=f"bench{n_members}", name="Bench")
    leaves = [c for c in db.session.scalars(select(Category).where(Category.timebank_id == tb.id,
                                                                   Category.parent_id.is_not(None)))]
    now = dt.datetime.utcnow()
    db.session.execute(insert(User), [{"email": f"u{i}@bench.test", "display_name": f"Member {i}",
                                       "preferred_contact": "email", "is_active_user": True, "created_at": now}
                                      for i in range(n_members)])
    user_ids = list(db.session.scalars(select(User.id).order_by(User.id)))
    db.session.execute(insert(Account), [{"timebank_id": tb.id, "kind": "member", "name": f"M{i}",
                                          "status": "open", "floor_minutes": -600,
                                          "balance_minutes": int(rng.integers(-600, 600)), "created_at": now}
                                         for i in range(n_members)])
    account_ids = list(db.session.scalars(select(Account.id).where(Account.kind == "member",
                                                                   Account.timebank_id == tb.id)
                                          .order_by(Account.id)))
    xy = rng.uniform(-10, 10, (n_members, 2))
    slots = rng.integers(0, 1 << 21, n_members) & rng.integers(0, 1 << 21, n_members)
    db.session.execute(insert(Membership), [{
        "user_id": uid, "timebank_id": tb.id, "role": "member", "status": "active", "account_id": aid,
        "latitude": CENTRE[0] + y / 111.0, "longitude": CENTRE[1] + x / (111.0 * math.cos(math.radians(53.8))),
        "availability": int(sl), "safety_check_level": "basic", "references_received": 2,
        "demographics_consent": False, "created_at": now}
        for uid, aid, (x, y), sl in zip(user_ids, account_ids, xy, slots)])
    mids = list(db.session.scalars(select(Membership.id).where(Membership.timebank_id == tb.id)
                                   .order_by(Membership.id)))
    skills = set()
    for mid in mids:
        for k in rng.choice(len(leaves), 2, replace=False):
            skills.add((mid, leaves[int(k)].id))
    db.session.execute(insert(MemberSkill), [{"membership_id": m, "category_id": c} for m, c in skills])
    offers = [{"timebank_id": tb.id, "membership_id": m, "category_id": c, "title": "Happy to help with this",
               "description": "weekday mornings, tools provided", "remote": False, "availability": 0,
               "status": "open", "created_at": now, "expires_at": now + dt.timedelta(days=60)}
              for m, c in list(skills)[: n_members // 2]]
    today = now.date()
    if DATED:  # half the offers for a stretch of days in the next three months
        for offer in offers[::2]:
            offer["starts_on"] = today + dt.timedelta(days=int(rng.integers(0, 90)))
            offer["ends_on"] = offer["starts_on"] + dt.timedelta(days=int(rng.integers(0, 30)))
    db.session.execute(insert(Offer), offers)
    requests = []
    organisation = None
    if n_requests > 60:  # the plan case: opportunities with several places, some remote requests
        from timebank.community.models import Organisation
        organisation = Organisation(timebank_id=tb.id, name="Bench trust", status="active")
        db.session.add(organisation)
        db.session.flush()
    for i in range(n_requests):
        x, y = rng.uniform(-8, 8, 2)
        opportunity = organisation is not None and rng.random() < 0.1
        owner = i % n_members
        requests.append(HelpRequest(
            timebank_id=tb.id, membership_id=None if opportunity else mids[owner],
            organisation_id=organisation.id if opportunity else None, created_by_user_id=user_ids[owner],
            volunteers_needed=int(rng.integers(2, 6)) if opportunity else 1,
            remote=bool(organisation is not None and rng.random() < 0.1),
            category_id=leaves[int(rng.integers(len(leaves)))].id, title="Need a hand with the garden",
            description="weeding and tidying", latitude=CENTRE[0] + y / 111.0,
            longitude=CENTRE[1] + x / (111.0 * math.cos(math.radians(53.8))),
            availability=int(rng.integers(0, 1 << 21) & rng.integers(0, 1 << 21)), created_at=now,
            expires_at=now + dt.timedelta(days=60), **_dates(rng, today)))
    db.session.add_all(requests)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load; without it the planner guesses the new tables' sizes.
        from sqlalchemy import text
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return app, ctx, requests


DATED = False  # --dated: requests for a day or a few days in the next two months, as real ones mostly are


def _dates(rng, today: dt.date) -> dict:
    """A request's dates with --dated (about 400 distinct date ranges among 5,000 requests), else none."""
    if not DATED:
        return {}
    starts_on = today + dt.timedelta(days=int(rng.integers(1, 60)))
    return {"starts_on": starts_on, "ends_on": starts_on + dt.timedelta(days=int(rng.choice((0, 0, 1, 2, 6))))}


def suggestion_case(url, n_members, seed):
    from timebank.extensions import db
    from timebank.matching import queries

    t0 = time.perf_counter()
    app, ctx, requests = build_db(url, n_members, seed)
    t_build = time.perf_counter() - t0
    times, found = [], []
    load = os.getloadavg()[0]
    for req in requests[:10]:  # warm up
        queries.suggestions(db.session, req)
    for req in requests:
        t0 = time.perf_counter()
        top = queries.suggestions(db.session, req, limit=10)
        times.append((time.perf_counter() - t0) * 1000)
        found.append(len(top))
    ctx.pop()
    times.sort()
    return {"members": n_members, "build_s": t_build, "p50_ms": statistics.median(times),
            "p95_ms": times[int(0.95 * (len(times) - 1))], "mean_found": statistics.mean(found),
            "load": load}


def app_plan_case(url, n_vol, n_req, seed, repeats=3, old_sample=100):
    """The app's create_plan end to end (load requests, candidate pairs, solve, write the proposals) on a real
    database of n_vol members and n_req requests; each run rolled back. Also the old per-request path
    (one suggestions() query per request) on the first old_sample requests, for comparison."""
    from timebank.community.models import TimeBank
    from timebank.extensions import db
    from timebank.matching import candidates, planner, queries, service

    t0 = time.perf_counter()
    app, ctx, requests = build_db(url, n_vol, seed, n_requests=n_req)
    t_build = time.perf_counter() - t0
    request_ids = [r.id for r in requests]
    tb_id = requests[0].timebank_id
    broker = requests[0].created_by_user_id
    runs = []
    for _ in range(repeats):
        db.session.expunge_all()  # each run starts from a cold session, as a request does
        tb = db.session.get(TimeBank, tb_id)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        plan = service.create_plan(db.session, timebank=tb, request_ids=request_ids, by_user_id=broker)
        db.session.flush()
        runs.append((time.perf_counter() - t0, load))
        summary = dict(plan.capacity, total=plan.total_score)
        db.session.rollback()
    # The phases, once more: candidate pairs alone, then the solver alone on them.
    db.session.expunge_all()
    tb = db.session.get(TimeBank, tb_id)
    reqs = [db.session.get(queries.HelpRequest, rid) for rid in request_ids]
    weights = queries.scoring.weights_for(tb.settings)
    t0 = time.perf_counter()
    found = candidates.plan_candidates(db.session, reqs, timebank=tb, weights=weights)
    t_candidates = time.perf_counter() - t0
    capacity = {m: max(0, 2 - st["week"]) for m, st in found.stats.items()}
    t0 = time.perf_counter()
    planner.solve_pairs(found.request_id, found.member_id, found.base_score,
                        {r.id: r.volunteers_needed for r in reqs}, capacity,
                        {m: st["open"] for m, st in found.stats.items()}, weights["load"])
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in reqs[:old_sample]:
        queries.suggestions(db.session, r, limit=100_000, weights=weights)
    t_old = (time.perf_counter() - t0) / old_sample
    db.session.rollback()
    ctx.pop()
    times = sorted(t for t, _ in runs)
    return {"volunteers": n_vol, "requests": n_req, "edges": len(found), "build_s": t_build,
            "runs": runs, "median_s": times[len(times) // 2], "candidates_s": t_candidates, "solve_s": t_solve,
            "old_per_request_ms": t_old * 1000, "summary": summary}


def print_app_plan(label, row):
    s = row["summary"]
    runs = ", ".join(f"{t:.2f} s (load {load:.1f})" for t, load in row["runs"])
    print(f"| {row['volunteers']} | {row['requests']} | {label} | {row['edges']} | {s['places']} "
          f"| {s['places_filled']} | {s['volunteers_used']} | {row['median_s']:.2f} | {runs} "
          f"| {row['candidates_s']:.2f} | {row['solve_s']:.2f} | {row['old_per_request_ms']:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--pg", default=None, metavar="ADMIN_URL",
                        help="also time suggestions on PostgreSQL: a throwaway database is created through this "
                             "admin URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and dropped")
    parser.add_argument("--only", choices=("plans", "suggestions", "app-plan"), default=None,
                        help="run one part: the solver on generated edges (plans), suggestion latency "
                             "(suggestions), or the app's create_plan end to end on a database (app-plan)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated member counts for plans and suggestions (default 300,1000,5000,20000)")
    parser.add_argument("--plan-size", default="2000x5000", metavar="VOLUNTEERSxREQUESTS",
                        help="size of the app-plan case (default 2000x5000)")
    parser.add_argument("--pg-only", action="store_true", help="with --pg: skip SQLite")
    parser.add_argument("--dated", action="store_true",
                        help="requests and half the offers have dates (many distinct date ranges), as real ones do")
    args = parser.parse_args()
    global DATED
    DATED = args.dated
    sizes = [300, 1000] if args.quick else [300, 1000, 5000, 20000]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    print(f"# Matching benchmark, {dt.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.only == "app-plan":
        n_vol, n_req = (int(x) for x in args.plan_size.lower().split("x"))
        print("\n## The app's create_plan end to end (requests, candidate pairs, exact solve, proposals written)\n")
        print("| volunteers | requests | database | candidate pairs | places | filled | volunteers used "
              "| median s | runs | candidates s | solve s | old path ms per request |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for label, row in on_databases(args, n_vol, lambda url: app_plan_case(url, n_vol, n_req, seed=n_vol + n_req)):
            print_app_plan(label, row)
        return
    if args.only == "suggestions":
        return suggestions_table(sizes, args)
    print("\n## Batch plans (exact min-cost flow; score/optimum against the LP oracle; greedy measured too)\n")
    print("| volunteers | requests | regime | places | edges | coverage | places filled | score/optimum "
          "| greedy/optimum | Gini load | max load | eligible used | edges s | solve s | LP oracle s | greedy s |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = []
    for n in sizes:
        # Volunteers are a fifth of members; scarce: places far above 2 x volunteers; abundant: far below.
        vols = max(60, n // 5)
        cases += [(vols, int(vols * 2.5), "scarce"), (vols, max(10, vols // 4), "abundant")]
    if not args.quick and not args.sizes:
        cases.append((2000, 5000, "target 2,000 x 5,000 (median of 5 solves)"))
    for vols, reqs, regime in cases:
        row = plan_case(vols, reqs, seed=vols * 7 + reqs, repeats=5 if regime.startswith("target") else 1)
        print(f"| {row['volunteers']} | {row['requests']} | {regime} | {row['places']} | {row['edges']} "
              f"| {row['coverage']:.2f} | {row['places_filled']:.2f} "
              f"| {'n/a' if row['score_ratio'] is None else format(row['score_ratio'], '.6f')} "
              f"| {row['greedy_ratio']:.3f} | {row['gini']:.2f} | {row['max_load']} | {row['eligible_used']:.2f} "
              f"| {row['t_edges']:.2f} | {row['t_solve']:.2f} "
              f"| {'n/a' if row['t_lp'] is None else format(row['t_lp'], '.2f')} | {row['t_greedy']:.2f} |",
              flush=True)
    if args.only == "plans":
        return
    suggestions_table(sizes, args)


def suggestions_table(sizes, args):
    print("\n## Suggestions: one request's top 10 (60 requests timed after 10 warm-ups)\n")
    print("| members | database | build s | p50 ms | p95 ms | mean found | load (1 min) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for label, row in on_databases(args, n, lambda url, n=n: suggestion_case(url, n, seed=n)):
            print(f"| {n} | {label} | {row['build_s']:.1f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} "
                  f"| {row['mean_found']:.1f} | {row['load']:.2f} |", flush=True)


def on_databases(args, n, case):
    """(label, case(url)) on a fresh SQLite file and, with --pg, on a throwaway PostgreSQL database."""
    if not args.pg_only:
        yield "sqlite", case(f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
    if args.pg:
        url, drop = throwaway_postgres(args.pg, n)
        try:
            row = case(url)
        finally:
            drop()
        yield "postgresql", row


def throwaway_postgres(admin_url, n):
    """Create a fresh database for one run; never write into the admin database itself."""
    import sqlalchemy as sa

    name = f"matching_bench_{os.getpid()}_{n}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop():
        from timebank.extensions import db  # noqa: F401 - engines were disposed with the app context
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop

if __name__ == "__main__":
    main()
