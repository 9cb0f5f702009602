"""The exact engines' shared scaffold: moves (SPEC §3), statuses that are always true,
option names checked, phases timed."""

from __future__ import annotations

import pytest
from cases import fan_out
from helpers import SOLVERS, brute_force_traffic, check, skip

from cosma import GraphBuilder, UsageError
from cosma.conformance import issue_puzzle
from cosma.deadline import Deadline
from cosma.plan import Status, Step, create, drop, load, store
from cosma.problem import Problem
from cosma.simulator import replay
from cosma.solvers import cpsat, milp, solve
from cosma.solvers.exact import (
    EngineResult,
    crossing_floor,
    forced_reloads,
    no_solver_floor,
    run,
)


def move_puzzle():
    """Inputs t0 (3 B), t2 (1 B); op0(t0,t2)->t1(2), op1(t1,t2)->t3(1),t4(2),
    op2(t2,t3)->t5(1),t6(1), op3(t2,t4,t6)->t7(2), op4(t2,t7)->t8(3); outputs t5, t8.

    The order is forced (each operator reads the previous one's output) and at 6 B every
    step is exactly full with no spill: op0 t0+t2+t1 = 6, op1 t1+t2+t3+t4 = 6,
    op2 t2+t3+t4+t5+t6 = 6, op3 t2+t4+t6+t7 = 6, op4 t2+t7+t8 = 6. So 0 B of extra traffic
    would need one fixed address per tensor, and the exhaustive placement search of
    helpers.brute_force_traffic finds none; any extra traffic is at least 1 B (the smallest
    tensor), and :func:`hand_plan` below has exactly 1 B: the optimum is 1 B.
    """
    return issue_puzzle().graph


def hand_plan(g):
    """t2 at 0 until op3; before op4 it is dropped (host holds it) and loaded at 5, so t8
    gets [0, 3). Laid out by hand: op0 t2@0 t0@1-3 t1@4-5; op1 t4@1-2 t3@3; op2 t5@4 t6@5;
    op3 t7@3-4; op4 t8@0-2."""
    plan = Problem(g, 6).new_plan("by hand")
    plan.status = Status.FEASIBLE
    plan.steps = [
        Step("op0", (load("t2", 0), load("t0", 1), create("t1", 4)), (drop("t0"),)),
        Step("op1", (create("t4", 1), create("t3", 3)), (drop("t1"),)),
        Step("op2", (create("t5", 4), create("t6", 5)), (store("t5"), drop("t5"), drop("t3"))),
        Step("op3", (create("t7", 3),), (drop("t4"), drop("t6"))),
        Step("op4", (drop("t2"), load("t2", 5), create("t8", 0)), (store("t8"),)),
    ]
    return plan


def test_the_hand_plan_with_a_move_replays_at_one_byte():
    r = replay(move_puzzle(), hand_plan(move_puzzle()))
    assert r.valid, r.violations
    assert r.non_compulsory == 1


def test_exhaustive_search_with_moves_finds_one_byte():
    assert brute_force_traffic(move_puzzle(), 6) == 1


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("order", [None, "file"], ids=["joint", "fixed"])
def test_milp_moves_a_tensor(order, solver):
    g = move_puzzle()
    plan = milp(Problem(g, 6), solver=solver, order=order, time_limit=30)
    check(g, plan, 1)
    assert plan.status is Status.OPTIMAL and plan.lower_bound == 1


@pytest.mark.parametrize("order", [None, "file"], ids=["joint", "fixed"])
def test_cpsat_moves_a_tensor(order):
    g = move_puzzle()
    plan = cpsat(Problem(g, 6), order=order, time_limit=30, shortcut=False)
    check(g, plan, 1)
    assert plan.status is Status.OPTIMAL and plan.lower_bound == 1


def _run_stub(problem, result):
    # Not a solver mock: a stand-in *engine* to test the scaffold's choice of the answer.
    return run(
        problem,
        lambda ctx: result,
        method="test",
        solver="none",
        order=None,
        time_limit=10,
        threads=1,
        seed=0,
    )


def test_an_engine_claiming_infeasible_with_a_known_plan_is_overruled():
    # The scaffold never reports infeasible when a valid plan (here the warm start) exists,
    # and drops the claiming engine's bound: what is left is the no-solver bound, 6 here
    # (fan_out's docstring derives it: one earlier y leaves and comes back).
    g = fan_out()
    plan = _run_stub(Problem(g, 10), EngineResult(infeasible="made-up claim", bound=10**9))
    check(g, plan)
    assert plan.status is Status.FEASIBLE
    assert plan.lower_bound == no_solver_floor(Problem(g, 10)) == 6 < plan.objective
    assert "bug" in plan.stats


def test_stopped_engine_returns_the_warm_start():
    g = fan_out()  # optimum 6 (see test_milp); the no-solver bound proves 6 too
    plan = _run_stub(Problem(g, 10), EngineResult(note="stopped"))
    check(g, plan)
    assert plan.status is Status.FEASIBLE and plan.method == "test"
    assert plan.lower_bound == 6 and plan.objective > 6


def test_crossing_floor_proves_the_warm_start():
    # skip at 16 B: p (10) cannot stay beside c's q and r (6 B left) and is read after c:
    # stored and loaded again in every plan, 20 B, which the warm start meets.
    g = skip()
    assert crossing_floor(Problem(g, 16)) == 20
    plan = _run_stub(Problem(g, 16), EngineResult(note="stopped"))
    check(g, plan, 20)
    assert plan.status is Status.OPTIMAL and plan.lower_bound == 20


def test_forced_reloads_count_each_separate_crossing():
    # Parameter w (4 B) is read by a, c and e, which every order runs in that sequence;
    # b, b2 and d, d2 each hold 7 B. At 10 B they leave 3 B, too little for w: w leaves
    # before b and before d and comes back for c and for e, two loads = 8 B (a parameter
    # needs no store). At 11 B w fits beside them: nothing is forced.
    from cosma import Setting

    g = (
        GraphBuilder("crossings")
        .input("x", 1)
        .parameter("w", 4)
        .op("a", ["x", "w"], {"p": 1})
        .op("b", ["p"], {"q": 6})
        .op("b2", ["q"], {"q2": 1})
        .op("c", ["q2", "w"], {"r": 1})
        .op("d", ["r"], {"s": 6})
        .op("d2", ["s"], {"s2": 1})
        .op("e", ["s2", "w"], {"z": 1})
        .output("z")
        .build()
    )
    P = Setting.ACTIVATIONS_PARAMETERS
    assert forced_reloads(Problem(g, 10, P)) == {"w": 2}
    assert crossing_floor(Problem(g, 10, P)) == 8
    assert forced_reloads(Problem(g, 11, P)) == {}
    assert brute_force_traffic(g, 10, P) == 8
    plan = milp(Problem(g, 10, P), time_limit=30, shortcut=False)
    check(g, plan, 8)


def test_result_is_a_new_plan_with_phases():
    plan = milp(Problem(skip(), 21))  # the warm start has no extra traffic: shortcut
    assert plan.status is Status.OPTIMAL and plan.method == "milp"
    assert plan.options["mode"] == "joint"
    assert "warm_start" in plan.stats["phases"]
    plan = cpsat(Problem(skip(), 16), shortcut=False)
    assert {"warm_start", "model", "solve"} <= set(plan.stats["phases"])


def test_shared_deadline_spent_is_no_solution_or_the_warm_start():
    d = Deadline(0.0)
    plan = milp(Problem(skip(), 16), time_limit=d)
    assert plan.status in (Status.FEASIBLE, Status.OPTIMAL, Status.NO_SOLUTION)
    if plan.status.has_plan:
        check(skip(), plan)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("milp", {"threds": 4}, "has no option 'threds'; it takes: time_limit, threads"),
        ("milp", {"solver": "nope"}, "unknown MILP solver 'nope'; choose from: cbc"),
        ("milp-fixed", {"order": "bogus"}, "unknown order 'bogus'; choose from: file"),
        ("milp", {"order": "file"}, "has no option 'order'"),
        ("cpsat", {"solver": "cbc"}, "has no option 'solver'"),
        ("baseline", {"threads": 2}, "has no option 'threads'; it takes: time_limit"),
        ("nope", {}, "unknown method 'nope'"),
    ],
)
def test_unknown_or_inapplicable_options_are_errors(method, options, message):
    with pytest.raises(UsageError, match=message):
        solve(Problem(skip(), 16), method, **options)


def _least_left_out(items, capacity):
    """Independent brute force: least total value left out when the kept items fit."""
    best = None
    for mask in range(1 << len(items)):
        kept = [b for i, b in enumerate(items) if mask >> i & 1]
        if sum(b.space for b in kept) <= capacity:
            left = sum(b.value for b in items) - sum(b.value for b in kept)
            best = left if best is None else min(best, left)
    return best


@pytest.mark.parametrize("capacity", [0, 3, 7])
def test_left_out_relaxation_keeps_items_of_no_space(capacity):
    """The fractional branch (more than 10 items) is a lower bound of the exact knapsack,
    also when the capacity is 0 and several items take no space: those always fit. (It
    used to stop at the first item once the knapsack was full, leaving the other
    zero-space items out and overstating what must leave: 9 instead of 0 below.)"""
    from cosma.solvers.exact import _Branch, _left_out

    items = [_Branch(f"z{i}", 0, 0, 1, ()) for i in range(9)]
    items += [_Branch("a", 0, 4, 5, ()), _Branch("b", 0, 3, 2, ()), _Branch("c", 0, 6, 4, ())]
    exact = _least_left_out(items, capacity)
    got = _left_out(items, capacity)
    assert got <= exact
    if capacity == 0:
        # nothing with space fits; the nine free items stay: 5 + 2 + 4 = 11 must leave
        assert exact == 11 and got == 11
