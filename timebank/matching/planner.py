"""Exact batch plans: one-to-many, maximise total score under capacities, with a convex load penalty.

The problem is a min-cost flow: source -> request (capacity = places), request -> volunteer (capacity 1, gain = the
pair's base score), volunteer -> sink through unit arcs k = 0..capacity-1 whose cost is the marginal load penalty of a
volunteer's (open + k + 1)-th commitment. The penalty is convex, so its marginal costs increase in k and the cheap
arcs are always used first: the flow's cost equals the convex penalty exactly. We solve the flow as a linear
programme with HiGHS (dual simplex). Its constraint matrix is the incidence matrix of a bipartite graph plus unit
columns, which is totally unimodular, so the vertex optimum the simplex returns is integral: an exact optimum, not a
heuristic. Tests check it against brute force.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from timebank.matching.scoring import marginal_load


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
          load_weight: float) -> PlanResult:
    """The exact optimum of: sum of chosen edges' scores - sum over volunteers of the convex load penalty increase.

    places[request] bounds how many volunteers a request takes; capacity[volunteer] bounds its new matches;
    open_load[volunteer] is its current commitments (the penalty continues from there). Edges with an unknown
    request or volunteer, or a volunteer with no capacity, are ignored. A pair is used at most once.
    """
    edges = [e for e in edges if places.get(e.request, 0) > 0 and capacity.get(e.volunteer, 0) > 0]
    # Deduplicate pairs, keeping the best score.
    best: dict[tuple[int, int], float] = {}
    for e in edges:
        key = (e.request, e.volunteer)
        if key not in best or e.score > best[key]:
            best[key] = e.score
    if not best:
        return PlanResult()
    pairs = list(best)
    requests = sorted({r for r, _ in pairs})
    volunteers = sorted({v for _, v in pairs})
    r_index = {r: i for i, r in enumerate(requests)}
    v_index = {v: len(requests) + i for i, v in enumerate(volunteers)}
    n_edges = len(pairs)
    # Copy arcs: one per unit of capacity, never more than the edges a volunteer has.
    degree: dict[int, int] = {}
    for _, v in pairs:
        degree[v] = degree.get(v, 0) + 1
    copy_rows, copy_cost = [], []
    for v in volunteers:
        base = open_load.get(v, 0)
        for k in range(min(capacity[v], degree[v])):
            copy_rows.append(v_index[v])
            copy_cost.append(marginal_load(base + k, load_weight))
    n_copies = len(copy_rows)

    gains = np.fromiter((best[p] for p in pairs), dtype=float, count=n_edges)
    c = np.concatenate([-gains, np.asarray(copy_cost, dtype=float)])
    # Rows: requests (sum x <= places), volunteers (sum x - sum y <= 0).
    edge_cols = np.arange(n_edges)
    rows = np.concatenate([
        np.fromiter((r_index[r] for r, _ in pairs), dtype=np.int64, count=n_edges),
        np.fromiter((v_index[v] for _, v in pairs), dtype=np.int64, count=n_edges),
        np.asarray(copy_rows, dtype=np.int64),
    ])
    cols = np.concatenate([edge_cols, edge_cols, n_edges + np.arange(n_copies)])
    data = np.concatenate([np.ones(2 * n_edges), -np.ones(n_copies)])
    n_rows = len(requests) + len(volunteers)
    a_ub = coo_matrix((data, (rows, cols)), shape=(n_rows, n_edges + n_copies)).tocsr()
    b_ub = np.concatenate([np.asarray([places[r] for r in requests], dtype=float), np.zeros(len(volunteers))])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs-ds")
    if result.status != 0:  # pragma: no cover - a feasible bounded LP (x = 0 is feasible)
        raise RuntimeError(f"plan solver failed: {result.message}")
    x = result.x[:n_edges]
    if np.any(np.abs(x - np.round(x)) > 1e-6):  # pragma: no cover - total unimodularity says this cannot happen
        raise RuntimeError("plan solver returned a fractional flow")
    chosen = [pairs[i] for i in np.flatnonzero(x > 0.5)]
    # Report each assignment's net score: a volunteer's best pairs take its cheapest load slots.
    by_volunteer: dict[int, list[tuple[int, float]]] = {}
    for r, v in chosen:
        by_volunteer.setdefault(v, []).append((r, best[(r, v)]))
    out = PlanResult()
    for v, items in by_volunteer.items():
        items.sort(key=lambda item: -item[1])
        for k, (r, score) in enumerate(items):
            net = score - marginal_load(open_load.get(v, 0) + k, load_weight)
            out.assignments.append((r, v, net))
        out.used[v] = len(items)
    out.assignments.sort()
    out.total = sum(a[2] for a in out.assignments)
    return out


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
