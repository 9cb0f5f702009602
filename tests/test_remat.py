"""Rematerialization: both exact engines agree with each other and with brute force; every
plan replays; baselines are never better than the optimum."""

from __future__ import annotations

import collections
import itertools
import math
import random

import networkx as nx
import pytest

from cosma.errors import PlanError, UsageError
from cosma.graph import Graph, GraphBuilder, from_networkx
from cosma.plan import Event, EventKind, Plan, Status, Step
from cosma.problem import Problem
from cosma.remat import REMAT_OPTIONS, RematInstance, no_remat_peak, peak_of
from cosma.simulator import replay, verify
from cosma.solvers import backends
from cosma.solvers.remat import (
    checkpoint_all,
    chen_greedy,
    chen_sqrtn,
    cut_bound,
    evict_greedy,
    remat_cpsat,
    remat_milp,
)


def brute_force(inst: RematInstance, max_computes: int | None = None) -> int | None:
    """Least total compute by trying every set of recomputations (tiny graphs only)."""
    cap = max_computes or inst.n
    slots = [(t, i) for i in range(inst.n) if inst.users[i] for t in range(i + 1, inst.n)]
    best = None
    for bits in itertools.product((0, 1), repeat=len(slots)):
        comps = [s for s, b in zip(slots, bits, strict=True) if b]
        counts: dict[int, int] = {}
        for _, i in comps:
            counts[i] = counts.get(i, 0) + 1
        if any(c + 1 > cap for c in counts.values()):
            continue
        try:
            peak = peak_of(inst, comps)
        except UsageError:
            continue  # a run reads a value that is not there
        if peak <= inst.budget:
            cost = inst.base_cost + sum(inst.cost[i] for _, i in comps)
            best = cost if best is None else min(best, cost)
    return best


def random_dag(seed: int, n: int) -> Graph:
    rng = random.Random(seed)
    d = nx.DiGraph()
    for v in range(n):
        d.add_node(f"n{v}", size=rng.randint(1, 6), cost=rng.randint(1, 5))
    for v in range(1, n):
        preds = rng.sample(range(v), k=min(v, rng.randint(1, 2)))
        for u in preds:
            d.add_edge(f"n{u}", f"n{v}")
    return from_networkx(d, name=f"rand{seed}")


def chain_training(n: int):
    # forward chain f0..f{n-1}, backward b{n-1}..b0; bk reads fk's output and the gradient
    b = GraphBuilder("chain").input("x", 1)
    prev = "x"
    for k in range(n):
        b = b.op(f"f{k}", [prev], {f"a{k}": 2})
        prev = f"a{k}"
    grad = prev
    for k in reversed(range(n)):
        reads = [grad, f"a{k - 1}"] if k else [grad]
        b = b.op(f"b{k}", reads, {f"g{k}": 2})
        grad = f"g{k}"
    return b.output(grad).build()


def engines():
    out = [("cpsat", lambda p, **kw: remat_cpsat(p, time_limit=30, **kw))]
    for name in ("cbc", "highs"):
        if backends.BACKENDS[name].available():
            out.append(
                (name, lambda p, name=name, **kw: remat_milp(p, solver=name, time_limit=30, **kw))
            )
    return out


CASES = [(random_dag, s, 5) for s in range(6)] + [(lambda s, n: chain_training(n), 0, 3)]


@pytest.mark.parametrize("make,seed,n", CASES)
def test_engines_agree_with_brute_force(make, seed, n):
    g = make(seed, n)
    inst0 = RematInstance.build(Problem(g, 10**9))
    peak = no_remat_peak(inst0)
    for frac in (1.0, 0.8, 0.6):
        budget = math.ceil(frac * peak)
        problem = Problem(g, budget)
        for cap in (2, None):
            inst = RematInstance.build(problem, max_computes=cap)
            expected = brute_force(inst, cap)
            for name, run in engines():
                plan = run(problem, max_computes=cap)
                if expected is None:
                    assert plan.status is Status.INFEASIBLE, (name, frac, cap)
                    continue
                assert plan.status is Status.OPTIMAL, (name, frac, cap, plan.reason)
                assert plan.objective == expected, (name, frac, cap)
                r = replay(g, plan)
                assert r.valid and r.peak <= budget and r.compute == plan.objective
                assert r.non_compulsory == 0


def test_cut_bound_is_a_bound():
    """cut_bound (the stage cuts' lower bound on the recompute cost) never exceeds the
    brute-force optimum with any number of runs per operator, on random graphs at 0.8 to
    0.5 of the no-recomputation peak; None only where brute force finds no plan;
    and it is not vacuous (tight and positive on several of them)."""
    tight = 0
    for seed in range(8):
        g = random_dag(seed, 5)
        peak = no_remat_peak(RematInstance.build(Problem(g, 10**9)))
        for frac in (0.8, 0.7, 0.6, 0.5):
            inst = RematInstance.build(Problem(g, math.ceil(frac * peak)), max_computes=None)
            want = brute_force(inst)
            cut = cut_bound(inst, time_limit=10)
            if cut is None:
                assert want is None, (seed, frac)
                continue
            if want is not None:
                assert inst.base_cost + cut <= want, (seed, frac)
                tight += 0 < cut == want - inst.base_cost
    assert tight >= 3


def test_cut_bound_with_inputs_is_a_bound():
    """With its rows for the inputs of re-runs (any depth), cut_bound stays at or below the
    brute-force optimum (any number of runs per operator) on random graphs of 6 operators
    and on a training chain, is never below the bound without those rows, and is above
    it on several (the rows matter)."""
    stronger = 0
    # seeds 21, 26, 32 and 42: graphs where the rows raise the bound (found by a scan)
    seeds = [0, 1, 2, 3, 21, 26, 32, 42]
    graphs = [random_dag(seed, 6) for seed in seeds] + [chain_training(3)]
    for g in graphs:
        peak = no_remat_peak(RematInstance.build(Problem(g, 10**9)))
        for frac in (0.8, 0.65, 0.5):
            inst = RematInstance.build(Problem(g, math.ceil(frac * peak)), max_computes=None)
            want = brute_force(inst)
            small = cut_bound(inst, time_limit=10, depth=-1)
            for depth in (0, 1, 3):
                for solver in ("cbc", "highs"):
                    if not backends.BACKENDS[solver].available():
                        continue
                    cut = cut_bound(inst, time_limit=10, depth=depth, solver=solver)
                    if want is None:  # no plan: any value bounds it (None says so)
                        continue
                    assert cut is not None and small is not None, (g.name, frac)
                    assert small <= cut and inst.base_cost + cut <= want, (
                        g.name,
                        frac,
                        depth,
                        solver,
                    )
            if want is not None:  # with the small model's bound as its floor, as engines do
                floored = cut_bound(inst, time_limit=10, floor=small)
                assert small <= floored and inst.base_cost + floored <= want, (g.name, frac)
            stronger += want is not None and cut > small
    assert stronger >= 2


def test_chain_by_hand():
    # x(1) -f0-> a0 -f1-> a1 -f2-> a2 (2 bytes each); b2 reads a2, a1 -> g2; b1 reads g2, a0
    # -> g1; b0 reads g1 -> g0. Every operator costs 2 (its largest tensor, no shapes).
    # No recomputation: peak at b2 = a0 + a1 + a2 + g2 = 8.
    # Budget 7: drop a0 after f1 and recompute it (f0) before b1, keeping x (1 byte):
    #   b2 holds x, a1, a2, g2 = 7. Compute 6 x 2 + 2 = 14.
    # Budget 6: b2 alone needs a1 + a2 + g2 = 6, so nothing else may be kept, but a0 (or x to
    #   remake it) must survive until b1: infeasible.
    g = chain_training(3)
    inst = RematInstance.build(Problem(g, 100))
    assert no_remat_peak(inst) == 8 and inst.base_cost == 12
    for budget, expected in ((8, 12), (7, 14), (6, None)):
        problem = Problem(g, budget)
        assert brute_force(RematInstance.build(problem)) == expected
        for name, run in engines():
            plan = run(problem)
            if expected is None:
                assert plan.status is Status.INFEASIBLE, name
            else:
                assert (plan.status, plan.objective) == (Status.OPTIMAL, expected), name
                assert plan.lower_bound == expected


def test_baselines_replay_and_never_beat_the_optimum():
    g = chain_training(6)
    peak = no_remat_peak(RematInstance.build(Problem(g, 10**9)))
    for frac in (1.0, 0.8, 0.7):
        problem = Problem(g, math.ceil(frac * peak))
        best = remat_cpsat(problem, time_limit=30, max_computes=None)
        for fn in (checkpoint_all, chen_sqrtn, chen_greedy, evict_greedy):
            plan = fn(problem)
            if plan.status.has_plan:
                r = replay(g, plan)
                assert r.valid and r.peak <= problem.budget
                assert plan.objective >= best.objective
                assert plan.lower_bound <= best.objective
            else:
                assert plan.status is Status.NO_SOLUTION and plan.reason
    assert checkpoint_all(Problem(g, peak)).status is Status.OPTIMAL


def test_simulator_checks_recompute_inputs_and_budget():
    g = chain_training(2)
    problem = Problem(g, 100)
    plan = checkpoint_all(problem)
    steps = list(plan.steps)
    # recompute f1 (reads a0) in the last step after a0 has been dropped: a violation
    last = steps[-1]
    steps[-1] = Step(last.operator, (Event(EventKind.RECOMPUTE, "a1"), *last.before), last.after)
    bad = Plan(**{**plan.__dict__, "steps": steps, "objective": None})
    r = replay(g, bad)
    assert any("not resident" in v.message for v in r.violations)
    # the same plan over a budget below its peak
    tight = Plan(**{**plan.__dict__, "budget": plan.peak - 1, "objective": None})
    assert any(v.kind == "over budget" for v in replay(g, tight).violations)
    with pytest.raises(PlanError):
        verify(g, tight)
    assert plan.options["objective"] == REMAT_OPTIONS["objective"]


def test_cli_objective_compute(tmp_path):
    from click.testing import CliRunner

    from cosma.app.cli import cli

    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "plan",
            "zoo:resnet50:training",
            "-s",
            "0.9xpeak",
            "--objective",
            "compute",
            "-m",
            "sqrtn",
            "-o",
            str(tmp_path / "p.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "total compute" in r.output
    r2 = runner.invoke(cli, ["replay", "zoo:resnet50", "--training", str(tmp_path / "p.json")])
    assert r2.exit_code == 0 and "valid" in r2.output, r2.output
    bad = runner.invoke(
        cli,
        [
            "plan",
            "zoo:resnet50:training",
            "-s",
            "0.9xpeak",
            "--objective",
            "compute",
            "-m",
            "file-arena-belady",
        ],
    )
    assert bad.exit_code != 0 and "does not minimise compute" in bad.output
    assert "Traceback" not in bad.output
    traffic = runner.invoke(cli, ["plan", "zoo:resnet50:training", "-s", "0.9xpeak"])
    assert traffic.exit_code != 0 and "--objective compute" in traffic.output
    named = runner.invoke(
        cli,
        [
            "plan",
            "zoo:resnet50:training",
            "-s",
            "0.9xpeak",
            "--objective",
            "compute",
            "-m",
            "evict",
            "--order",
            "greedy",
        ],
    )
    assert named.exit_code == 0, named.output


@pytest.mark.parametrize("seed", range(4))
def test_eviction_greedy_and_milp_fallback_give_valid_plans(seed):
    from cosma.graphs.nodelink import random_layered
    from cosma.solvers.remat import _choose_evict

    g = random_layered(24, seed=seed)
    peak = no_remat_peak(RematInstance.build(Problem(g, 0)))
    problem = Problem(g, math.ceil(0.85 * peak))
    inst = RematInstance.build(problem, max_computes=2)
    comps, info = _choose_evict(inst)
    if comps is None:
        assert info["reason"]
        return
    assert peak_of(inst, comps) <= problem.budget
    counts: dict[int, int] = {}
    for _, i in comps:
        counts[i] = counts.get(i, 0) + 1
    assert max(counts.values(), default=0) <= 1  # at most one recomputation each (C=2)
    # a MILP stopped at once still returns a replayed plan (the warm start) or none
    plan = remat_milp(problem, solver="highs", time_limit=0.1)
    if plan.status.has_plan:
        r = replay(g, plan)
        assert r.valid and r.peak <= problem.budget
        assert plan.lower_bound <= plan.objective


def test_engines_agree_on_a_generated_training_graph():
    # a two-layer forward net; its training graph has multi-output backward operators
    # (input and weight gradients) and a graph input read forward and backward
    from cosma.graphs.training import training_graph

    fwd = (
        GraphBuilder("two")
        .input("x", 3, shape=(1, 3))
        .parameter("w", 6, shape=(3, 2))
        .op("mm", ["x", "w"], {"h": 2}, "MatMul", shapes={"h": (1, 2)})
        .op("act", ["h"], {"y": 2}, "Tanh", shapes={"y": (1, 2)})
        .output("y")
        .build()
    )
    g = training_graph(fwd)
    peak = no_remat_peak(RematInstance.build(Problem(g, 0)))
    for frac in (1.0, 0.8):
        problem = Problem(g, math.ceil(frac * peak))
        expected = brute_force(RematInstance.build(problem, max_computes=None))
        for name, run in engines():
            plan = run(problem, max_computes=None)
            if expected is None:
                assert plan.status is Status.INFEASIBLE, name
            else:
                assert (plan.status, plan.objective) == (Status.OPTIMAL, expected), name
                assert replay(g, plan).valid


def test_recompute_before_the_first_readers_stage():
    """A recomputation may run in a stage before its output's first reader's stage.

    Order p, k, m, r, s, j (sizes in bytes, costs in brackets): p[10]: x(1) -> a(4);
    k[1]: a -> b(3); m[1]: x -> c(5, graph output nobody reads); r[1]: a -> d(1);
    s[1]: d -> e(1), f(6, graph output); j[1]: b, e -> z(1). Budget 11 (no-remat peak 13,
    at m). By hand: drop b after k and re-run k in stage r (before r runs, a still resident
    for r): m holds x+a+c = 10, the re-run a+b = 7, r a+b+d = 8, s b+d+e+f = 11, j b+e+z = 5;
    compute 15 + 1 = 16. Re-running k only in j's stage needs a kept through s
    (a+d+e+f = 12 > 11), so p would run again too (15 + 10 + 1 = 26 at best). The engines
    once allowed re-runs only from the first reader's stage on and proved 25 "optimal".
    Found by the session-5 review.
    """
    d = nx.DiGraph(name="early", outputs=["j", "c", "f"])
    d.add_node("p", size=4, inputs={"x": 1}, cost=10)
    d.add_node("k", size=3, cost=1)
    d.add_node("m", outputs={"c": 5}, inputs={"x": 1}, cost=1)
    d.add_node("r", size=1, cost=1)
    d.add_node("s", outputs={"e": 1, "f": 6}, cost=1)
    d.add_node("j", size=1, cost=1)
    d.add_edge("p", "k")
    d.add_edge("p", "r")
    d.add_edge("r", "s", tensors=["r"])
    d.add_edge("k", "j")
    d.add_edge("s", "j", tensors=["e"])
    g = from_networkx(d)
    problem = Problem(g, 11)
    inst = RematInstance.build(problem)
    assert inst.order == ("p", "k", "m", "r", "s", "j")
    assert no_remat_peak(inst) == 13
    assert brute_force(inst, 2) == 16
    for name, run in engines():
        plan = run(problem)
        assert plan.status is Status.OPTIMAL, (name, plan.reason)
        assert plan.objective == 16 and plan.lower_bound == 16, name
        assert replay(g, plan).compute == 16


def test_optimal_says_it_is_optimal_in_the_stage_frame():
    """The engines' optimum is over Checkmate's stage frame, which a plan re-running
    operators out of order inside a gap can beat (docs/remat.md): an `optimal` that
    recomputes says "stage frame"; one that recomputes nothing is optimal outright."""
    g = chain_training(3)
    peak = no_remat_peak(RematInstance.build(Problem(g, 10**9)))
    # the largest budget where the optimum (brute force) recomputes something
    tight = next(
        b
        for b in range(peak - 1, 0, -1)
        if (best := brute_force(RematInstance.build(Problem(g, b)))) is not None
        and best > RematInstance.build(Problem(g, b)).base_cost
    )
    for budget, recomputes in ((peak, False), (tight, True)):
        problem = Problem(g, budget)
        inst = RematInstance.build(problem)
        for name, run in engines():
            plan = run(problem)
            assert plan.status is Status.OPTIMAL, (name, budget)
            assert (plan.objective > inst.base_cost) is recomputes, (name, budget)
            assert ("stage frame" in (plan.reason or "")) is recomputes, (name, plan.reason)


@pytest.mark.parametrize(("n", "seed", "frac"), [(20, 3, "0.7"), (30, 0, "0.7"), (30, 6, "0.8")])
def test_stagewise_heuristic_fits_where_no_baseline_does(n, seed, frac):
    # Cases found by a search over random_layered(20|30, seeds 0-11) at 0.8x/0.7x (the
    # generator following Gagrani et al.): the only ones where no baseline (checkpoint-all,
    # Chen's two, the eviction greedy) fits and the stage-wise greedy does. Its plan must
    # replay within the budget with at most one recomputation per operator.
    from cosma.graphs.nodelink import random_layered
    from cosma.remat import remat_plan, resolve_remat_budget
    from cosma.solvers import remat as engines

    g = random_layered(n, seed=seed)
    problem = Problem(g, resolve_remat_budget(g, f"{frac}xpeak"))
    inst = RematInstance.build(problem, max_computes=2)
    assert no_remat_peak(inst) > problem.budget  # checkpoint-all does not fit
    for choose in (engines._choose_all, engines._choose_greedy, engines._choose_sqrtn):
        assert choose(inst)[0] is None
    assert engines._choose_evict(inst)[0] is None
    comps, _ = engines._stagewise_search(inst)
    assert comps is not None
    assert max(collections.Counter(k for _, k in comps).values()) == 1  # C = 2
    plan = remat_plan(inst, comps, method="remat-stagewise", status=Status.FEASIBLE)
    r = replay(g, plan)
    assert r.valid and r.peak <= problem.budget
    heuristic = r.compute
    assert heuristic == inst.base_cost + sum(inst.cost[k] for _, k in comps)
    # CP-SAT (hinted with the search's best plan, found in its time share, or proving
    # the optimum itself) is never worse. (The MILP is not compared: with its third of a
    # short limit the search may stop after fewer runs than here, so a worse warm start.)
    got = remat_cpsat(problem, time_limit=2, threads=1)
    assert got.status.has_plan
    assert replay(g, got).peak <= problem.budget
    assert got.objective <= heuristic


def test_phase_one_on_a_small_hand_built_graph(tmp_path, caplog):
    """Eight operators (node-link JSON, run in file order), budget 9,200 bytes; no baseline
    and not the stage-wise greedy fit, phase 1 does, and both engines find the optimum
    derived here by hand. Sizes (bytes) / costs: o0 1390/0, o1 730/63 (reads o0), o2
    3290/449 (o1), o3 4110/847 (o1, o2), o4 2090/128 (o0), o5 5190/518 (o4), o6 110/218
    (o4, o5), o7 2200/0 (o3, o6; the graph output). No-recompute peak 11,500 (while o6
    runs: o3 + o4 + o5 + o6). By hand:
    - o3 must be re-run: held across o5 it costs o4 + o5 + o3 = 11,390 > 9,200; its only
      later reader is o7, so the re-run is in stage 7 and needs o1 and o2 resident there;
    - o2 is not held across o5 either (o4 + o5 + o2 = 10,570), and a re-run in stage 6
      (before o6, which needs o4 and o5) is over too (o4 + o5 + o2 + o1 = 11,300): o2 is
      re-run in stage 7;
    - o1 (730) can be held from its run to stage 7 (at o5: 2090 + 5190 + 730 = 8,010; at
      o6: 8,120) but o0 cannot be held across o3's first run (o1 + o2 + o3 + o0 = 9,520):
      o0 (cost 0) is re-run before o4 in stage 4;
    - then every run fits (largest: o3's re-run, 730 + 3290 + 4110 + 110 = 8,240), so the
      least recompute cost is 449 + 847 = 1,296 over the base 2,223: 3,519.
    """
    import json
    import logging

    from cosma.deadline import Deadline
    from cosma.graphs.nodelink import load_nodelink
    from cosma.remat import remat_plan
    from cosma.solvers import remat as engines

    nodes = [(1390, 0), (730, 63), (3290, 449), (4110, 847), (2090, 128), (5190, 518)]
    nodes += [(110, 218), (2200, 0)]
    links = [(0, 1), (1, 2), (1, 3), (2, 3), (0, 4), (4, 5), (4, 6), (5, 6), (3, 7), (6, 7)]
    doc = {
        "directed": True,
        "multigraph": False,
        "graph": {"name": "trap8"},
        "nodes": [{"id": i, "cost_ram": r, "cost_cpu": c} for i, (r, c) in enumerate(nodes)],
        "links": [{"source": a, "target": b} for a, b in links],
    }
    path = tmp_path / "trap8.json"
    path.write_text(json.dumps(doc))
    g = load_nodelink(path)
    problem = Problem(g, 9200)
    inst = RematInstance.build(problem, max_computes=2)
    assert no_remat_peak(inst) == 11500 and inst.base_cost == 2223
    assert engines._warm_start(inst, tight=False) is None  # no baseline fits
    assert engines._stagewise_search(inst)[0] is None
    comps, _ = engines._phase_one(inst, Deadline(10), threads=1)
    assert comps is not None
    r = replay(g, remat_plan(inst, comps, method="remat-phase1", status=Status.FEASIBLE))
    assert r.valid and r.peak <= 9200 and r.compute >= 3519
    with caplog.at_level(logging.INFO, logger="cosma.solvers.remat"):
        a = remat_cpsat(problem, time_limit=10, threads=1)
    assert "phase1 found a plan" in caplog.text  # the engine started from phase 1
    b = remat_milp(problem, time_limit=10)
    for got in (a, b):
        assert got.status is Status.OPTIMAL and got.objective == 3519, got.reason
        verify(g, got)


@pytest.mark.parametrize(("n", "seed"), [(12, 21), (15, 19)])
def test_phase_one_fits_where_no_baseline_nor_the_greedy_does(n, seed, caplog):
    # Cases found by a search over random_layered(10-25, seeds 0-29) at 0.8x/0.7x/0.6x where
    # no baseline (checkpoint-all, Chen's two, the eviction greedy) fits, the stage-wise
    # greedy finds nothing either, and MOCCASIN's phase 1 (capacity minimised) reaches
    # the budget. Its plan must replay within the budget with at most one recomputation
    # per operator; CP-SAT, started from it, proves an optimum no worse (and the MILP
    # agrees on it).
    import logging

    from cosma.deadline import Deadline
    from cosma.graphs.nodelink import random_layered
    from cosma.remat import remat_plan, resolve_remat_budget
    from cosma.solvers import remat as engines

    g = random_layered(n, seed=seed)
    problem = Problem(g, resolve_remat_budget(g, "0.8xpeak"))
    inst = RematInstance.build(problem, max_computes=2)
    assert no_remat_peak(inst) > problem.budget
    assert engines._warm_start(inst, tight=False) is None  # no baseline fits
    assert engines._stagewise_search(inst)[0] is None
    comps, near = engines._phase_one(inst, Deadline(20), threads=1)
    assert comps is not None and near is None
    assert max(collections.Counter(k for _, k in comps).values()) == 1  # C = 2
    plan = remat_plan(inst, comps, method="remat-phase1", status=Status.FEASIBLE)
    r = replay(g, plan)
    assert r.valid and r.peak <= problem.budget
    assert r.compute == inst.base_cost + sum(inst.cost[k] for _, k in comps)
    with caplog.at_level(logging.INFO, logger="cosma.solvers.remat"):
        a = remat_cpsat(problem, time_limit=10, threads=1)
    assert "phase1 found a plan" in caplog.text  # the engine took this path
    # The MILP (CBC), started from phase 1 too, as the independent check of the optimum.
    b = remat_milp(problem, time_limit=20)
    for got in (a, b):
        assert got.status is Status.OPTIMAL, got.reason
        verify(g, got)
        assert replay(g, got).peak <= problem.budget
    assert a.objective == b.objective <= r.compute


def test_cbc_presolve_infeasibility_is_infeasible(tmp_path):
    """CBC's presolve reports "infeasible or unbounded"; remat models are bounded (costs
    >= 0), so that is `infeasible`, as HiGHS and CP-SAT say on the same model (it was read
    as no_solution: a limit reached). A 9-node MOCCASIN-style file at 0.7 x its peak, where
    no plan fits (found by the session-5 review; CP-SAT's proof is the independent check)."""
    from cosma.graphs.nodelink import load_nodelink
    from cosma.remat import resolve_remat_budget

    doc = {
        "directed": True,
        "multigraph": False,
        "graph": {"name": "ly925"},
        "nodes": [
            {"id": i, "cost_ram": ram, "cost_cpu": cpu}
            for i, (ram, cpu) in enumerate(
                [
                    (130, 3),
                    (50, 10),
                    (80, 100),
                    (50, 0),
                    (0, 3),
                    (80, 0),
                    (20, 100),
                    (10, 10),
                    (30, 100),
                ]
            )
        ],
        "links": [
            {"source": s, "target": t}
            for s, t in [
                (0, 1),
                (0, 2),
                (1, 3),
                (1, 4),
                (2, 4),
                (4, 5),
                (0, 6),
                (3, 6),
                (4, 6),
                (3, 7),
                (6, 8),
                (7, 8),
                (5, 8),
            ]
        ],
    }
    path = tmp_path / "ly925.json"
    path.write_text(__import__("json").dumps(doc))
    g = load_nodelink(path)
    budget = resolve_remat_budget(g, "0.7xpeak")
    problem = Problem(g, budget)
    assert remat_cpsat(problem, max_computes=None, time_limit=30).status is Status.INFEASIBLE
    plan = remat_milp(problem, solver="cbc", max_computes=None, time_limit=30)
    assert plan.status is Status.INFEASIBLE, plan.reason
