"""The CP-SAT engine: the MILP's conformance suite, agreement with the MILP (and so with
exhaustive search) on random graphs, determinism, progress reports."""

from __future__ import annotations

import pytest
from cases import CASES, skip
from helpers import brute_force_traffic, check, random_dags
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cosma import Setting
from cosma.memory import min_required, must_live_bound
from cosma.plan import Status
from cosma.problem import Problem
from cosma.solvers import cpsat, milp


@pytest.mark.parametrize("order", [None, "minpeak", "file"], ids=["joint", "minpeak", "file"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conformance(case, order):
    _, make, budget, setting, expected = case
    g = make()
    plan = cpsat(Problem(g, budget, setting), order=order, time_limit=30, shortcut=False)
    assert plan.status is Status.OPTIMAL
    check(g, plan, expected)


def test_infeasible_budget():
    plan = cpsat(Problem(skip(), 15))
    assert plan.status is Status.INFEASIBLE and "needs at least 16 B" in plan.reason


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(random_dags(max_ops=6, max_size=6), st.data(), st.sampled_from(list(Setting)))
def test_cpsat_agrees_with_milp(g, data, setting):
    m_r = min_required(g, setting=setting)[0]
    must = must_live_bound(g, setting=setting)[0]
    assume(must > m_r)
    budget = data.draw(st.integers(m_r, must - 1))
    problem = Problem(g, budget, setting)
    a = cpsat(problem, time_limit=30, shortcut=False)
    b = milp(problem, time_limit=30, shortcut=False)
    check(g, a)
    assert a.status is Status.OPTIMAL and b.status is Status.OPTIMAL
    assert a.objective == b.objective
    if len(g.tracked(setting)) <= 7:
        assert a.objective == brute_force_traffic(g, budget, setting)


def test_deterministic_with_one_worker_and_a_seed():
    problem = Problem(skip(), 16)
    a = cpsat(problem, seed=3, threads=1, shortcut=False)
    b = cpsat(problem, seed=3, threads=1, shortcut=False)
    assert [s.__dict__ for s in a.steps] == [s.__dict__ for s in b.steps]


def test_progress_reports_incumbents():
    seen = []
    plan = cpsat(Problem(skip(), 16), progress=seen.append, shortcut=False)
    assert seen and seen[-1]["objective"] == plan.objective == 20
    assert all(s["bound"] <= s["objective"] for s in seen)
