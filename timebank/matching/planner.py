"""Exact batch plans: one-to-many, maximise total score under capacities, with a convex load penalty.

The problem is a min-cost flow: source -> request (capacity = places), request -> volunteer (capacity 1, gain = the
pair's base score), volunteer -> sink through unit arcs k = 0..capacity-1 whose cost is the marginal load penalty of a
volunteer's (open + k + 1)-th commitment. The penalty is convex, so its marginal costs increase in k and the cheap
arcs are always used first: the flow's cost equals the convex penalty exactly.

Two exact solvers:
- `solve_arrays` (used by the app): OR-tools' min-cost flow (cost scaling) on integer costs, scores in units of
  SCALE = 10^-6 points. The plan is exactly optimal for those scores; any plan better in unrounded scores would be
  better by less than 10^-6 per pair (scores are shown and stored to 10^-4). About 1 s for 2,000 x 5,000.
- `solve_arrays_lp`: the same flow as a linear programme with HiGHS. Its constraint matrix is the incidence matrix
  of a bipartite graph plus unit columns, which is totally unimodular, so the vertex optimum is integral. Kept as
  an independent oracle for tests and the benchmark; slower on large plans (column generation).
Tests check both against brute force.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from timebank.matching.scoring import marginal_load

_METHOD = "highs"


@dataclass(frozen=True)
class Edge:
    request: int
    volunteer: int
    score: float  # the pair's base score, before the load penalty


@dataclass
class PlanResult:
    assignments: list[tuple[int, int, float]] = field(default_factory=list)  # (request, volunteer, net score)
    total: float = 0.0
    used: dict[int, int] = field(default_factory=dict)


def solve(edges: list[Edge], places: dict[int, int], capacity: dict[int, int], open_load: dict[int, int],
          load_weight: float, *, method: str = "flow", keep: int = 8) -> PlanResult:
    """The exact optimum of: sum of chosen edges' scores - sum over volunteers of the convex load penalty increase.

    places[request] bounds how many volunteers a request takes; capacity[volunteer] bounds its new matches;
    open_load[volunteer] is its current commitments (the penalty continues from there). Edges with an unknown
    request or volunteer, or a volunteer with no capacity, are ignored. A pair is used at most once.

    method "flow" (default) uses the min-cost flow solver; "lp" the linear programme, which solves large plans by
    column generation: first on each request's and each volunteer's `keep` best edges,
    then every left-out edge is priced with the LP duals; edges that could improve the plan are added and the LP
    solved again, until none can. The result is then optimal for the full edge set (LP duality), not a heuristic.
    """
    best: dict[tuple[int, int], float] = {}
    for e in edges:
        key = (e.request, e.volunteer)
        if key not in best or e.score > best[key]:
            best[key] = e.score
    n = len(best)
    return solve_pairs(np.fromiter((r for r, _ in best), dtype=np.int64, count=n),
                       np.fromiter((v for _, v in best), dtype=np.int64, count=n),
                       np.fromiter(best.values(), dtype=float, count=n), places, capacity, open_load, load_weight,
                       method=method, keep=keep)


def solve_pairs(request_ids: np.ndarray, volunteer_ids: np.ndarray, scores: np.ndarray, places: dict[int, int],
                capacity: dict[int, int], open_load: dict[int, int], load_weight: float, *, method: str = "flow",
                keep: int = 8) -> PlanResult:
    """solve() on arrays of distinct (request id, volunteer id, base score) pairs: no Python object per pair, for
    plans with a million candidate pairs."""
    if not len(scores):
        return PlanResult()
    req_u, er = np.unique(request_ids, return_inverse=True)
    vol_u, ev = np.unique(volunteer_ids, return_inverse=True)
    place_u = np.array([places.get(int(r), 0) for r in req_u], dtype=np.int64)
    cap_u = np.array([capacity.get(int(v), 0) for v in vol_u], dtype=np.int64)
    load_u = np.array([open_load.get(int(v), 0) for v in vol_u], dtype=np.int64)
    # Only pairs that can gain anything even as the volunteer's first new commitment.
    useful = (place_u[er] > 0) & (cap_u[ev] > 0) & (scores > marginal_load(load_u[ev], load_weight))
    if not useful.any():
        return PlanResult()
    idx = np.flatnonzero(useful)
    requests, er = np.unique(er[idx], return_inverse=True)
    volunteers, ev = np.unique(ev[idx], return_inverse=True)
    ew = np.asarray(scores, dtype=float)[idx]
    solver = solve_arrays if method == "flow" else functools.partial(solve_arrays_lp, keep=keep)
    chosen_idx = solver(er, ev, ew, place_u[requests], cap_u[volunteers], load_u[volunteers], load_weight)
    # Report each assignment's net score: a volunteer's best pairs take its cheapest load slots.
    by_volunteer: dict[int, list[tuple[int, float]]] = {}
    for i in chosen_idx:
        v = int(vol_u[volunteers[ev[i]]])
        by_volunteer.setdefault(v, []).append((int(req_u[requests[er[i]]]), float(ew[i])))
    out = PlanResult()
    for v, items in by_volunteer.items():
        items.sort(key=lambda item: -item[1])
        for k, (r, score) in enumerate(items):
            out.assignments.append((r, v, score - marginal_load(open_load.get(v, 0) + k, load_weight)))
        out.used[v] = len(items)
    out.assignments.sort()
    out.total = sum(a[2] for a in out.assignments)
    return out


SCALE = 1_000_000  # integer cost units per score point for the flow solver


def solve_arrays(er: np.ndarray, ev: np.ndarray, ew: np.ndarray, places: np.ndarray, capacity: np.ndarray,
                 open_load: np.ndarray, load_weight: float) -> np.ndarray:
    """The exact plan on arrays with a min-cost flow: edge i joins request er[i] and volunteer ev[i] (0-based
    positions) with base score ew[i], no pair repeated. Returns the indices of the chosen edges."""
    from ortools.graph.python import min_cost_flow

    n_req, n_vol, n_edges = len(places), len(capacity), len(ew)
    if n_edges == 0:
        return np.zeros(0, dtype=np.int64)
    source, sink = n_req + n_vol, n_req + n_vol + 1
    total = int(places.sum())
    copy_v = np.repeat(np.arange(n_vol), capacity)
    offsets = np.arange(len(copy_v)) - np.repeat(np.cumsum(capacity) - capacity, capacity)
    base = open_load[copy_v] + offsets
    copy_cost = load_weight * ((base + 1) ** 2 - base ** 2) / 4.0  # scoring.marginal_load, vectorised
    tails = np.concatenate([np.full(n_req, source), er, n_req + copy_v, [source]])
    heads = np.concatenate([np.arange(n_req), n_req + ev, np.full(len(copy_v), sink), [sink]])
    caps = np.concatenate([places, np.ones(n_edges, dtype=np.int64), np.ones(len(copy_v), dtype=np.int64),
                           [total]])
    costs = np.concatenate([np.zeros(n_req), -ew, copy_cost, [0.0]])
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(tails.astype(np.int32), heads.astype(np.int32),
                                              caps.astype(np.int64), np.rint(costs * SCALE).astype(np.int64))
    supplies = np.zeros(n_req + n_vol + 2, dtype=np.int64)
    supplies[source], supplies[sink] = total, -total  # the source -> sink arc carries unfilled places
    flow.set_nodes_supplies(np.arange(len(supplies), dtype=np.int32), supplies)
    status = flow.solve()
    if status != flow.OPTIMAL:  # pragma: no cover - the bypass arc keeps the problem feasible
        raise RuntimeError(f"plan solver failed with status {status}")
    edge_flows = flow.flows(np.arange(n_req, n_req + n_edges, dtype=np.int32))
    return np.flatnonzero(edge_flows > 0)


def solve_arrays_lp(er: np.ndarray, ev: np.ndarray, ew: np.ndarray, places: np.ndarray, capacity: np.ndarray,
                    open_load: np.ndarray, load_weight: float, *, keep: int = 8, margin: float = 0.3) -> np.ndarray:
    """The same exact plan on arrays as a linear programme (the oracle): edge i joins request er[i] and volunteer ev[i] (0-based positions) with base
    score ew[i], no pair repeated. Returns the indices of the chosen edges.

    Column generation adds every edge whose reduced gain is above -margin (not only the violating ones): that
    anticipates the next round's violations and cuts the number of LP solves; optimality is still certified by
    the final round finding no edge with a positive reduced gain.
    """
    n_req, n_vol = len(places), len(capacity)
    copy_v = np.repeat(np.arange(n_vol), capacity)
    offsets = np.arange(len(copy_v)) - np.repeat(np.cumsum(capacity) - capacity, capacity)
    base = open_load[copy_v] + offsets
    copy_cost = load_weight * ((base + 1) ** 2 - base ** 2) / 4.0  # scoring.marginal_load, vectorised
    active = _top_edges(er, ev, ew, keep)
    place_arr = places.astype(float)
    while True:
        x, dual_r, dual_v = _solve_lp(er[active], ev[active], ew[active], place_arr, copy_v, copy_cost, n_req,
                                      n_vol)
        reduced = ew - dual_r[er] - dual_v[ev]
        reduced[active] = -np.inf
        if not np.any(reduced > 1e-9):
            return active[x > 0.5]
        active = np.union1d(active, np.flatnonzero(reduced > -margin))


def _top_edges(er, ev, ew, keep: int) -> np.ndarray:
    """Indices of each request's and each volunteer's `keep` best edges."""
    keep_mask = np.zeros(len(ew), dtype=bool)
    for group in (er, ev):
        order = np.lexsort((-ew, group))  # by group, best first
        sorted_group = group[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep_mask[order[rank < keep]] = True
    return np.flatnonzero(keep_mask)


def _solve_lp(er, ev, ew, places, copy_v, copy_cost, n_req, n_vol):
    """Solve the flow LP on these edges; return the edge values and the duals of request and volunteer rows."""
    n_edges, n_copies = len(ew), len(copy_cost)
    rows = np.concatenate([er, n_req + ev, n_req + copy_v])
    cols = np.concatenate([np.arange(n_edges), np.arange(n_edges), n_edges + np.arange(n_copies)])
    data = np.concatenate([np.ones(2 * n_edges), -np.ones(n_copies)])
    a_ub = coo_matrix((data, (rows, cols)), shape=(n_req + n_vol, n_edges + n_copies)).tocsr()
    b_ub = np.concatenate([places, np.zeros(n_vol)])
    c = np.concatenate([-ew, copy_cost])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method=_METHOD)
    x = None if result.status != 0 else result.x[:n_edges]
    if x is None or np.any(np.abs(x - np.round(x)) > 1e-6):
        # Total unimodularity makes every vertex integral; the dual simplex always returns a vertex.
        result = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs-ds")
        if result.status != 0:  # pragma: no cover - x = 0 is feasible and the objective is bounded
            raise RuntimeError(f"plan solver failed: {result.message}")
        x = result.x[:n_edges]
        if np.any(np.abs(x - np.round(x)) > 1e-6):  # pragma: no cover
            raise RuntimeError("plan solver returned a fractional flow")
    duals = -result.ineqlin.marginals  # >= 0: the value of one more place / one more unit through a volunteer
    return x, duals[:n_req], duals[n_req:]


def objective(assignments: list[tuple[int, int]], scores: dict[tuple[int, int], float], open_load: dict[int, int],
              load_weight: float) -> float:
    """The plan objective of a set of (request, volunteer) pairs; used by tests and the benchmark."""
    total = sum(scores[p] for p in assignments)
    counts: dict[int, int] = {}
    for _, v in assignments:
        counts[v] = counts.get(v, 0) + 1
    for v, n in counts.items():
        total -= sum(marginal_load(open_load.get(v, 0) + k, load_weight) for k in range(n))
    return total
