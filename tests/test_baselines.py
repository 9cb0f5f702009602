"""Baselines: hand-derived conformance cases, random DAGs, and the light models."""

from __future__ import annotations

import pytest
from cases import chain, skip
from helpers import LIGHT_MODELS, random_dags
from hypothesis import given, settings
from hypothesis import strategies as st

from cosma import GraphBuilder, Setting
from cosma.graphs import load_onnx
from cosma.memory import min_required
from cosma.plan import Status
from cosma.problem import Problem, budgets
from cosma.simulator import replay
from cosma.solvers import METHODS, PROTOCOL, baseline, best_baseline, solve
from cosma.solvers.baselines import (
    ALLOCATORS,
    ORDERS,
    REPLACEMENTS,
    Residency,
    _no_spill_residencies,
    allocate_offline,
    make_order,
)

ALL = [(o, a, r) for o in ORDERS for a in ALLOCATORS for r in REPLACEMENTS]


def check(g, plan):
    """The simulator agrees with the plan, independently of verify()."""
    r = replay(g, plan)
    assert r.valid, r.violations
    assert r.non_compulsory == plan.objective
    assert r.peak <= plan.budget


@pytest.mark.parametrize("combo", ALL, ids="-".join)
def test_chain_fits_at_m_r_without_spills(combo):
    g = chain()
    # M_R = 60 (y1 + y2 at b); the arena reuses x's slot: no traffic beyond compulsory.
    p = baseline(Problem(g, 60), order=combo[0], allocator=combo[1], replacement=combo[2])
    check(g, p)
    assert p.objective == 0 and p.status is Status.OPTIMAL


@pytest.mark.parametrize("combo", ALL, ids="-".join)
def test_skip_must_spill_p(combo):
    g = skip()
    # At c, q and r (10 bytes) are operands and p (10) waits for d: 20 > 16, so p is
    # stored (10) and reloaded (10) by every plan; no plan does better than 20.
    p = baseline(Problem(g, 16), order=combo[0], allocator=combo[1], replacement=combo[2])
    check(g, p)
    assert p.objective == 20 and p.status is Status.FEASIBLE and p.lower_bound == 0


def test_below_m_r_is_infeasible_with_reason():
    p = baseline(Problem(skip(), 15))
    assert p.status is Status.INFEASIBLE and not p.steps
    assert "operator 'd'" in p.reason and "16 B" in p.reason


def test_fragmentation_forces_compaction():
    # At c the 6-byte output needs a contiguous block; a (3) and b (3) were placed apart
    # with a 2-byte tensor between them, which dies before c. Budget 12 = M_R.
    g = (
        GraphBuilder("frag")
        .input("x", 2)
        .op("a", ["x"], {"ya": 3})
        .op("m", ["x"], {"mid": 2})
        .op("b", ["mid"], {"yb": 3})
        .op("c", ["ya", "yb"], {"z": 6})
        .output("z")
        .build()
    )
    for combo in ALL:
        p = baseline(Problem(g, 12), order=combo[0], allocator=combo[1], replacement=combo[2])
        check(g, p)


def test_best_baseline_is_the_minimum():
    g = load_onnx(LIGHT_MODELS[5], element_bytes=1)  # shufflenet
    prob = Problem(g, budgets(g).m_r)
    best = best_baseline(prob)
    each = [baseline(prob, order=o, allocator=a, replacement=r).objective for o, a, r in PROTOCOL]
    assert best.objective == min(each)
    assert set(best.stats["candidates"].values()) == set(each)
    check(g, best)


def test_offline_allocators():
    # a [0,1] 4 bytes, b [1,2] 2 bytes, c [2,3] 4 bytes: c reuses a's block after it dies.
    for method in ALLOCATORS:
        rs = [Residency("a", 0, 1, 4), Residency("b", 1, 2, 2), Residency("c", 2, 3, 4)]
        assert allocate_offline(rs, method=method) == 6
        assert [r.address for r in rs] == [0, 4, 0]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 4), st.integers(0, 9)), min_size=1, max_size=12
    ),
    st.sampled_from(ALLOCATORS),
    st.sampled_from([1, 4]),
)
def test_offline_allocators_never_overlap(items, method, alignment):
    rs = [Residency(f"t{i}", s, s + d, sz) for i, (s, d, sz) in enumerate(items)]
    top = allocate_offline(rs, method=method, alignment=alignment)
    for i, r in enumerate(rs):
        assert r.address % alignment == 0 and r.address + r.size <= top
        for q in rs[i + 1 :]:
            if r.start <= q.end and q.start <= r.end and r.size and q.size:
                assert r.address + r.size <= q.address or q.address + q.size <= r.address
    # No arena is smaller than the largest set of blocks alive at once.
    busiest = max(sum(r.size for r in rs if r.start <= t <= r.end) for t in range(13))
    assert top >= busiest


@settings(max_examples=60, deadline=None)
@given(
    random_dags(max_ops=8),
    st.integers(0, 30),
    st.sampled_from(list(Setting)),
    st.sampled_from(ALL),
    st.sampled_from([1, 4]),
)
def test_random_dags_every_baseline_replays(g, extra, setting, combo, alignment):
    m_r, _ = min_required(g, setting=setting, alignment=alignment)
    prob = Problem(g, m_r + extra * alignment, setting, alignment)
    p = baseline(prob, order=combo[0], allocator=combo[1], replacement=combo[2])
    check(g, p)
    # If the allocator fits the no-spill intervals in the budget, there is no spill.
    order = make_order(prob, combo[0])
    arena = allocate_offline(
        _no_spill_residencies(prob, order), method=combo[1], alignment=alignment
    )
    if arena <= prob.budget:
        assert p.objective == 0


#: Light models cheap enough for the default run (every method still runs on them);
#: the others, up to minutes each on a shared 2-core machine, run in the slow job.
FAST_LIGHT = {"squeezenet", "zfnet512", "bvlc_alexnet"}


def _light_cases():
    for path in LIGHT_MODELS:
        name = path.split("light_")[-1][:-5]
        for budget in ("M_R", "M_H", "M_P"):
            marks = () if name in FAST_LIGHT else (pytest.mark.slow,)
            yield pytest.param(path, budget, id=f"{name}-{budget}", marks=marks)


@pytest.fixture(scope="module")
def _light_budgets():
    cache: dict[str, tuple] = {}

    def get(path: str):
        if path not in cache:
            g = load_onnx(path, element_bytes=1)
            cache[path] = (g, budgets(g))
        return cache[path]

    return get


@pytest.mark.parametrize("path, budget_name", list(_light_cases()))
def test_light_models_all_methods_all_budgets(path, budget_name, _light_budgets):
    g, b = _light_budgets(path)
    prob = Problem(g, b.by_name(budget_name))
    for name in METHODS:
        check(g, solve(prob, name))
