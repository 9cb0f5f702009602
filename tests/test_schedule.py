"""Schedules and budgets: the minimum-peak order against brute force, limits, M_P/M_H."""

from __future__ import annotations

import networkx as nx
import pytest
from helpers import light, random_dags, reference_peak
from hypothesis import given, settings
from hypothesis import strategies as st

from cosma import GraphBuilder, Setting, UsageError
from cosma.graphs import load_onnx
from cosma.memory import must_live_bound, schedule_peak
from cosma.problem import Problem, budgets, resolve_budget
from cosma.schedule import greedy_order, min_peak_order


@settings(max_examples=120, deadline=None)
@given(random_dags(max_ops=7), st.sampled_from(list(Setting)))
def test_min_peak_equals_brute_force(g, setting):
    # Brute force over every topological order, peaks from the definition read directly.
    brute = min(reference_peak(g, o, setting) for o in nx.all_topological_sorts(g.dag))
    r = min_peak_order(g, setting=setting)
    assert r.optimal and r.peak == brute == r.lower_bound
    assert g.is_schedule(r.order)
    assert schedule_peak(g, r.order, setting=setting)[0] == r.peak


@settings(max_examples=60, deadline=None)
@given(random_dags(max_ops=10))
def test_greedy_order_is_a_schedule(g):
    assert g.is_schedule(greedy_order(g))


def wide(n: int = 6):
    # n independent branches x -> a_i (size 10+i) -> b_i (size 1) -> join: orders matter.
    b = GraphBuilder("wide").input("x", 1)
    for i in range(n):
        b.op(f"a{i}", ["x"], {f"p{i}": 10 + i}).op(f"b{i}", [f"p{i}"], {f"q{i}": 1})
    return b.op("join", [f"q{i}" for i in range(n)], {"z": 1}).output("z").build()


def test_search_limit_reports_a_bound_not_optimality():
    g = wide()
    full = min_peak_order(g)
    assert full.optimal
    cut = min_peak_order(g, max_states=1)
    lb = must_live_bound(g)[0]
    if not cut.optimal:  # stopped by the limit: an honest bound, no claim
        assert lb <= cut.lower_bound <= full.peak <= cut.peak
    assert g.is_schedule(cut.order)


def test_light_models_min_peak_is_proven():
    for name in ("resnet50", "shufflenet", "densenet121"):
        g = load_onnx(light(name), element_bytes=1)
        for setting in Setting:
            r = min_peak_order(g, setting=setting, time_limit=60)
            assert r.optimal, (name, setting)
            assert r.peak == schedule_peak(g, r.order, setting=setting)[0]
            assert r.peak <= schedule_peak(g, g.file_order, setting=setting)[0]


def test_budget_names():
    g = wide(3)
    b = budgets(g)
    # M_R: join reads q0..q2 and writes z = 4; a2 reads x and writes p2 = 13 -> 13 (b2: 13).
    assert b.m_r == 13
    # At b2 either x is still live (some a_i remains): x + p2 + q2 = 14, or every a_i ran
    # before it: p2 + q2 + (a p or q of each other branch) >= 15. Largest branch first
    # reaches 14: a2 13, b2 14, a1 13, b1 14, a0 13, b0 13, join 4.
    assert b.m_p == 14 and b.min_peak.optimal
    assert b.m_h == (13 + 14) // 2
    assert resolve_budget(g, "M_H") == 13
    assert resolve_budget(g, "2KiB") == 2048
    with pytest.raises(UsageError, match="setting"):
        resolve_budget(g, "M_Rp")
    assert resolve_budget(g, "M_Rp", setting="activations+parameters") == 13
    with pytest.raises(UsageError, match="unknown budget name"):
        resolve_budget(g, "M_X")
    with pytest.raises(UsageError, match="cannot read"):
        resolve_budget(g, "lots")


def test_problem_shortfall_names_the_operator():
    g = wide(3)
    assert Problem(g, 13).shortfall() is None
    assert "operator 'a2'" in Problem(g, 12).shortfall()
