"""Batch plans are exactly optimal (checked by brute force) and respect capacities and places."""
import itertools

from hypothesis import given, settings, strategies as st

from timebank.matching.planner import Edge, objective, solve


@st.composite
def instances(draw):
    n_req = draw(st.integers(1, 4))
    n_vol = draw(st.integers(1, 4))
    pairs = [(r, v) for r in range(n_req) for v in range(n_vol)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=9))
    edges = [Edge(r, v, draw(st.floats(0, 6, allow_nan=False).map(lambda x: round(x, 2)))) for r, v in chosen]
    places = {r: draw(st.integers(0, 3)) for r in range(n_req)}
    capacity = {v: draw(st.integers(0, 3)) for v in range(n_vol)}
    load = {v: draw(st.integers(0, 4)) for v in range(n_vol)}
    weight = draw(st.floats(0, 5, allow_nan=False))
    return edges, places, capacity, load, weight


def brute_force(edges, places, capacity, load, weight):
    scores = {(e.request, e.volunteer): e.score for e in edges}
    best = 0.0
    for n in range(len(edges) + 1):
        for subset in itertools.combinations(list(scores), n):
            if all(sum(1 for r, _ in subset if r == req) <= p for req, p in places.items()) and \
                    all(sum(1 for _, v in subset if v == vol) <= c for vol, c in capacity.items()):
                best = max(best, objective(list(subset), scores, load, weight))
    return best


@settings(max_examples=150, deadline=None)
@given(instances())
def test_plan_is_optimal_and_feasible(instance):
    edges, places, capacity, load, weight = instance
    result = solve(edges, places, capacity, load, weight)  # the min-cost flow the app uses
    # The LP oracle agrees; keep=1 starts its column generation from very few edges, exercising the pricing loop.
    assert abs(result.total - solve(edges, places, capacity, load, weight, method="lp", keep=1).total) < 1e-5
    chosen = [(r, v) for r, v, _ in result.assignments]
    assert len(set(chosen)) == len(chosen)  # a pair at most once
    assert {(e.request, e.volunteer) for e in edges} >= set(chosen)
    for req, p in places.items():
        assert sum(1 for r, _ in chosen if r == req) <= p
    for vol, c in capacity.items():
        assert sum(1 for _, v in chosen if v == vol) <= c
    scores = {(e.request, e.volunteer): e.score for e in edges}
    assert abs(objective(chosen, scores, load, weight) - result.total) < 1e-6
    # Costs are integers of 10^-6 points: optimal up to that rounding on each pair and load step.
    assert abs(result.total - brute_force(edges, places, capacity, load, weight)) < 1e-5


def test_load_penalty_spreads_work():
    # One star volunteer is slightly better everywhere; the convex penalty gives the second job to someone else.
    edges = [Edge(1, 10, 5.0), Edge(2, 10, 5.0), Edge(1, 20, 4.6), Edge(2, 20, 4.6)]
    result = solve(edges, {1: 1, 2: 1}, {10: 2, 20: 2}, {10: 0, 20: 0}, load_weight=1.0)
    assert sorted(v for _, v, _ in result.assignments) == [10, 20]
    no_penalty = solve(edges, {1: 1, 2: 1}, {10: 2, 20: 2}, {10: 0, 20: 0}, load_weight=0.0)
    assert [v for _, v, _ in no_penalty.assignments] == [10, 10]


def test_opportunity_places_take_different_volunteers():
    edges = [Edge(1, 10, 3.0), Edge(1, 20, 2.0), Edge(1, 30, 1.0)]
    result = solve(edges, {1: 2}, {10: 2, 20: 2, 30: 2}, {}, load_weight=0.5)
    assert sorted(v for _, v, _ in result.assignments) == [10, 20]
