"""Recompute versus reload (issue 13, deliverable 3): the exact engines with a recompute rate
against an independent exhaustive search; recompute off (the default) and a prohibitive
rate give today's optimum; the rate options; replay of the combined objective."""

from __future__ import annotations

import heapq
import itertools
import random
from fractions import Fraction

import networkx as nx
import pytest

from cosma import options
from cosma.cost import operator_cost
from cosma.errors import UsageError
from cosma.graph import Graph, GraphBuilder, Setting, TensorKind, from_networkx
from cosma.oracle import exact_search
from cosma.plan import Event, EventKind, Plan, Status, Step, create, drop, load, store
from cosma.problem import Problem
from cosma.simulator import replay, verify
from cosma.solvers.cpsat import cpsat
from cosma.solvers.milp import milp

# --- an independent exhaustive search ---------------------------------------------------


def search(g: Graph, budget: int, rate: Fraction, order: list[str]) -> Fraction | None:
    """Least ``non-compulsory traffic + rate x recomputed MACs`` over every sequence of
    events for ``order`` (Dijkstra over states ``(next step, resident set, host set)``).

    Memory is pooled (resident bytes <= budget, no addresses). With every tensor of the
    same size that is exact: any set of at most ``budget / size`` blocks has free slots, so
    no plan ever needs an address it cannot get. Events between two operators, in any
    order and number: drop (a graph output only once stored), load (with a host copy),
    store (once), re-run an operator that already ran (its inputs resident; all its outputs
    resident after). Every load and store is charged; the compulsory ones (first load of
    each input, store of each output) come off at the end.
    """
    tracked = list(g.tracked("activations"))
    size = {a: g.tensors[a].size for a in tracked}
    ins = {v: frozenset(a for a in g.operators[v].inputs if a in size) for v in g.operators}
    outs = {v: frozenset(a for a in g.operators[v].outputs if a in size) for v in g.operators}
    outputs = frozenset(a for a in tracked if g.tensors[a].kind is TensorKind.OUTPUT)
    start_host = frozenset(a for a in tracked if g.tensors[a].producer is None)
    compulsory = sum(size[a] for a in start_host) + sum(size[a] for a in outputs)
    n = len(order)

    def used(r):
        return sum(size[a] for a in r)

    start = (0, frozenset(), start_host)
    best = {start: Fraction(0)}
    heap = [(Fraction(0), 0, start)]
    tie = itertools.count(1)
    while heap:
        cost, _, state = heapq.heappop(heap)
        if best.get(state) != cost:
            continue
        t, res, host = state
        if t == n and outputs <= host:
            return cost - compulsory
        moves = []
        for a in res:  # drop
            if a not in outputs or a in host:
                moves.append((Fraction(0), (t, res - {a}, host)))
        for a in host - res:  # load
            if used(res) + size[a] <= budget:
                moves.append((Fraction(size[a]), (t, res | {a}, host)))
        for a in res - host:  # store
            moves.append((Fraction(size[a]), (t, res, host | {a})))
        for v in order[:t]:  # re-run
            new = outs[v] - res
            if new and ins[v] <= res and used(res | new) <= budget:
                moves.append((rate * operator_cost(g, v), (t, res | new, host)))
        if t < n:  # run the next operator
            v = order[t]
            if ins[v] <= res and used(res | outs[v]) <= budget:
                moves.append((Fraction(0), (t + 1, res | outs[v], host)))
        for c, nxt in moves:
            total = cost + c
            if total < best.get(nxt, total + 1):
                best[nxt] = total
                heapq.heappush(heap, (total, next(tie), nxt))
    return None


def unit_dag(seed: int, n: int) -> Graph:
    """A random DAG of ``n`` operators, every tensor 1 byte, costs 1..4 MACs."""
    rng = random.Random(seed)
    d = nx.DiGraph()
    for v in range(n):
        attrs = {"size": 1, "cost": rng.randint(1, 4)}
        if v == 0:
            attrs["inputs"] = {"x": 1}
        d.add_node(f"n{v}", **attrs)
    for v in range(1, n):
        for u in rng.sample(range(v), k=min(v, rng.randint(1, 2))):
            d.add_edge(f"n{u}", f"n{v}")
    return from_networkx(d, name=f"unit{seed}")


def m_r(g: Graph) -> int:
    return max(
        sum(g.tensors[a].size for a in set(g.operands(v, "activations"))) for v in g.operators
    )


def as_value(x: Fraction) -> int | float:
    return int(x) if x.denominator == 1 else float(x)


ENGINES = {
    "milp": lambda p, **kw: milp(p, solver="cbc", threads=1, time_limit=20, **kw),
    "cpsat": lambda p, **kw: cpsat(p, threads=1, time_limit=20, **kw),
}
RATES = [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(3)]


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("seed", range(4))
def test_fixed_order_against_exhaustive_search(engine, seed):
    g = unit_dag(seed, 6)
    order = list(g.file_order)
    budget = m_r(g) + seed % 2
    for rate in RATES:
        want = search(g, budget, rate, order)
        plan = ENGINES[engine](Problem(g, budget), order=order, recompute_rate=rate)
        assert want is not None and plan.status.has_plan
        # the replay, not the engine, measured the objective
        r = replay(g, plan)
        assert r.valid
        assert plan.objective == as_value(r.non_compulsory + rate * r.recompute)
        assert plan.objective >= as_value(want)  # no plan beats the exhaustive optimum
        assert plan.lower_bound <= as_value(want)  # the bound is a bound
        if plan.status is Status.OPTIMAL:
            assert plan.objective == as_value(want)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_joint_against_exhaustive_search(engine):
    g = unit_dag(7, 5)
    orders = [list(o) for o in nx.all_topological_sorts(g.dag)]
    budget = m_r(g)
    for rate in (Fraction(1, 2), Fraction(2)):
        found = [w for o in orders if (w := search(g, budget, rate, o)) is not None]
        want = min(found)
        plan = ENGINES[engine](Problem(g, budget), recompute_rate=rate)
        assert plan.status.has_plan
        assert plan.lower_bound <= as_value(want) <= plan.objective
        if plan.status is Status.OPTIMAL:
            assert plan.objective == as_value(want)


TINY_RATES = [Fraction(0), Fraction(1, 10**6), Fraction(1, 1000)]


def _check(plan, want: Fraction, g: Graph, rate: Fraction) -> None:
    assert plan.status.has_plan
    r = replay(g, plan)
    assert r.valid
    assert plan.objective == as_value(r.non_compulsory + rate * r.recompute)
    assert plan.lower_bound <= as_value(want) <= plan.objective
    if plan.status is Status.OPTIMAL:
        assert plan.objective == as_value(want)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("seed", [2, 9, 26, 38])
def test_rate_zero_and_tiny_rates_fixed_order(engine, seed):
    """Rate 0 (recomputation free: traffic alone is minimised) and tiny rates, where a
    solver sees many equally good solutions with spurious re-runs: bound <= exhaustive
    optimum <= replayed plan, equality when optimal. The seeds include the graphs where
    rate 0 once decoded to worse plans than tiny rates (unit_dag 2, 26 and 38)."""
    g = unit_dag(seed, 7)
    order = list(g.file_order)
    for budget in (m_r(g), m_r(g) + 1):
        for rate in TINY_RATES:
            want = search(g, budget, rate, order)
            plan = ENGINES[engine](Problem(g, budget), order=order, recompute_rate=rate)
            _check(plan, want, g, rate)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("seed", [3, 8])
def test_rate_zero_and_tiny_rates_joint(engine, seed):
    g = unit_dag(seed, 5 + seed % 2)
    orders = [list(o) for o in nx.all_topological_sorts(g.dag)]
    budget = m_r(g)
    for rate in TINY_RATES:
        want = min(w for o in orders if (w := search(g, budget, rate, o)) is not None)
        _check(ENGINES[engine](Problem(g, budget), recompute_rate=rate), want, g, rate)


def test_rate_zero_finds_what_tiny_rates_find():
    """unit_dag(2, 7) at 3 bytes: the exhaustive search's optimum at rate 0 is 1 byte (x
    loaded again to re-run n0, whose output then feeds re-runs of n1 and n3 before n6).
    Both engines once returned 3 bytes there (a free re-run of a tensor kept anyway cut its
    block and cost a store and a load; a re-run feeding a later gap's re-run was dropped);
    now both find and prove the optimum."""
    g = unit_dag(2, 7)
    order = list(g.file_order)
    assert search(g, 3, Fraction(0), order) == 1
    for name, run in ENGINES.items():
        plan = run(Problem(g, 3), order=order, recompute_rate=0)
        assert (plan.status, plan.objective) == (Status.OPTIMAL, 1), name


def test_engines_prove_the_exhaustive_optimum():
    """On these graphs the decoded plans meet the bound: both engines say optimal and agree
    with the search (so the tests above are not passing on weak bounds alone)."""
    for seed in (0, 1):
        g = unit_dag(seed, 6)
        order = list(g.file_order)
        budget = m_r(g)
        want = search(g, budget, Fraction(1, 3), order)
        for name, run in ENGINES.items():
            plan = run(Problem(g, budget), order=order, recompute_rate=Fraction(1, 3))
            assert plan.status is Status.OPTIMAL, (name, seed, plan.stats.get("note"))
            assert plan.objective == as_value(want)


def test_recompute_beats_reload_when_cheap():
    """skip: p (10 bytes) leaves around c; bringing it back costs 20 bytes (store + load) or
    a re-run of a (cost 10: p's 10 elements; x, 1 byte, stays). So at 1/100 byte per MAC the
    optimum is 10/100 = 0.1, at 1 byte per MAC 10, at 3 bytes per MAC the reload's 20."""
    from tests.cases import skip

    g = skip()
    assert operator_cost(g, "a") == 10
    for rate, want in ((Fraction(1, 100), 0.1), (Fraction(1), 10), (Fraction(3), 20)):
        for name, run in ENGINES.items():
            for order in (None, "file"):
                plan = run(Problem(g, 16), order=order, recompute_rate=rate)
                assert plan.status is Status.OPTIMAL, name
                assert plan.objective == want, (name, rate, order)
                assert plan.lower_bound == want
                assert plan.options["recompute_rate"] == str(rate)
                recomputed = plan.stats.get("compute", {}).get("recompute", 0)
                assert recomputed == (10 if rate < 2 else 0)


# --- recompute off, or too dear to use: today's optimum -------------------------------------


def _graphs():
    from tests.cases import diamond, skip

    return [(skip(), 16), (diamond(), 16), (unit_dag(3, 6), m_r(unit_dag(3, 6)))]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_default_is_todays_optimum(engine):
    """Recompute off (the default): the same optimum and status as the independent search of
    cosma.oracle (which knows nothing of recompute), and no recompute in the model."""
    for g, budget in _graphs():
        plan = ENGINES[engine](Problem(g, budget))
        want = exact_search(g, budget)
        assert (plan.status.value, plan.objective) == (want.status.value, want.objective)
        assert "recompute_rate" not in plan.options
        assert "recompute_vars" not in plan.stats
        assert not any(e.kind is EventKind.RECOMPUTE for _, _, e in plan.events())


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_prohibitive_rate_gives_todays_optimum(engine):
    """A rate so high that one MAC costs more than any traffic: the same traffic and status
    as without recompute, in both modes."""
    for g, budget in _graphs():
        for order in (None, "file"):
            off = ENGINES[engine](Problem(g, budget), order=order)
            on = ENGINES[engine](Problem(g, budget), order=order, recompute_rate=10**6)
            assert (on.status, on.objective) == (off.status, off.objective)
            assert on.stats.get("compute", {}).get("recompute", 0) == 0


# --- the simulator and the options ----------------------------------------------------------


def test_replay_of_a_hand_written_recompute_plan():
    """skip at 16 bytes: p is dropped after b and re-made before d by re-running a (x stays
    resident). Replay: no non-compulsory traffic, 10 recomputed MACs; at 1/100 byte per MAC
    the objective is 0.1, and an address clash in the gap is caught."""
    from tests.cases import skip

    g = skip()
    steps = [
        Step("a", (load("x", 15), create("p", 0))),
        Step("b", (create("q", 10),), (drop("p"),)),
        Step("c", (create("r", 0),), (drop("q"),)),
        Step(
            "d",
            (Event(EventKind.RECOMPUTE, "p", 5), drop("x"), create("z", 15)),
            (store("z"), drop("p"), drop("r"), drop("z")),
        ),
    ]
    plan = Plan(g.name, g.identity(), 16, Setting.ACTIVATIONS, 1, "hand", Status.FEASIBLE, steps)
    plan.options["recompute_rate"] = "1/100"
    verify(g, plan)
    assert plan.objective == 0.1 and plan.traffic["non_compulsory"] == 0
    assert plan.stats["compute"]["recompute"] == 10
    bad = list(steps)
    bad[3] = Step("d", (Event(EventKind.RECOMPUTE, "p", 0), *steps[3].before[1:]), steps[3].after)
    clash = Plan(g.name, g.identity(), 16, Setting.ACTIVATIONS, 1, "hand", Status.FEASIBLE, bad)
    assert any(v.kind == "overlap" for v in replay(g, clash).violations)


def test_rate_options():
    assert options.recompute_rate("0.0064") == Fraction(4, 625)
    assert options.recompute_rate(0) == 0
    assert options.accelerator_rate("dram=25.6GB/s,macs=4T/s") == Fraction(4, 625)
    assert options.accelerator_rate("macs=1e12, dram=100GB/s") == Fraction(1, 10)
    assert options.accelerator_rate("dram=1GiB/s,macs=1Gi/s") == 1
    for bad in ("-1", "fast", float("nan"), True):
        with pytest.raises(UsageError, match="recompute rate"):
            options.recompute_rate(bad)
    for bad in ("dram=25.6GB/s", "dram=fast,macs=4T/s", "dram=1GB/s,macs=0", "25.6"):
        with pytest.raises(UsageError, match=r"accelerator|dram|macs"):
            options.accelerator_rate(bad)


def test_registry_takes_the_rate_and_the_accelerator():
    from cosma.solvers import solve
    from tests.cases import skip

    g = skip()
    a = solve(Problem(g, 16), "milp-fixed", order="file", recompute_rate="1/100", threads=1)
    b = solve(Problem(g, 16), "cpsat", accelerator="dram=1GB/s,macs=100G/s", threads=1)
    assert a.objective == b.objective == 0.1
    assert b.options["recompute_rate"] == "1/100"
    with pytest.raises(UsageError, match="one of"):
        solve(Problem(g, 16), "cpsat", accelerator="dram=1GB/s,macs=1G/s", recompute_rate=1)
    with pytest.raises(UsageError, match="no option"):
        solve(Problem(g, 16), "baseline", recompute_rate=1)


def test_search_sanity():
    """The search on a hand-derived case: x(1) -a-> p(1) -b-> q(2) -c-> r(1); d reads p and
    r -> z(1). M_R = 3. At 3 bytes p cannot stay across c (q and r fill it): bring it back
    by a store and a reload (2 bytes), or re-run a (1 MAC: 1 element), which needs x again
    (1 byte: x could not stay either, b and c fill the budget). So rate 1/2 costs 1 + 1/2,
    rate 5 costs the reload's 2; at 4 bytes p stays: 0."""
    g = (
        GraphBuilder("u")
        .input("x", 1)
        .op("a", ["x"], {"p": 1})
        .op("b", ["p"], {"q": 2})
        .op("c", ["q"], {"r": 1})
        .op("d", ["p", "r"], {"z": 1})
        .output("z")
        .build()
    )
    order = ["a", "b", "c", "d"]
    assert operator_cost(g, "a") == 1
    assert search(g, 4, Fraction(1), order) == 0
    assert search(g, 3, Fraction(1, 2), order) == Fraction(3, 2)
    assert search(g, 3, Fraction(5), order) == 2
    for name, run in ENGINES.items():
        plan = run(Problem(g, 3), order=order, recompute_rate=Fraction(1, 2))
        assert (plan.status, plan.objective) == (Status.OPTIMAL, 1.5), name


def test_recompute_plan_round_trips_through_json():
    """A plan with recompute events and a fractional objective is written, read back against
    its graph, and replays to the same objective."""
    from tests.cases import skip

    g = skip()
    plan = cpsat(Problem(g, 16), order="file", recompute_rate="1/100", threads=1, time_limit=20)
    assert any(e.kind is EventKind.RECOMPUTE for _, _, e in plan.events())
    back = Plan.from_json(plan.to_json(), g)
    assert back.objective == plan.objective == 0.1
    assert back.lower_bound == plan.lower_bound
    assert verify(g, back).objective == 0.1


def test_cli(tmp_path):
    """cosma plan with --recompute-rate / --accelerator on a node-link file: a(10 bytes, 10
    MACs, no inputs) -> b(5) -> c(5) -> d(1), d also reads a. At 16 bytes a's output must
    leave around c (b's and c's outputs fill 10 of 16): a reload costs 20 bytes (store +
    load), a re-run of a 10 MACs: 0.1 at 1/100 B/MAC, 20 (the reload) at 10 B/MAC."""
    import json

    from click.testing import CliRunner

    from cosma.app.cli import cli

    doc = {
        "directed": True,
        "multigraph": False,
        "graph": {"name": "skipnl"},
        "nodes": [
            {"id": 0, "cost_ram": 10, "cost_cpu": 10},
            {"id": 1, "cost_ram": 5, "cost_cpu": 5},
            {"id": 2, "cost_ram": 5, "cost_cpu": 5},
            {"id": 3, "cost_ram": 1, "cost_cpu": 1},
        ],
        "links": [
            {"source": 0, "target": 1},
            {"source": 1, "target": 2},
            {"source": 2, "target": 3},
            {"source": 0, "target": 3},
        ],
    }
    path = tmp_path / "skip.json"
    path.write_text(json.dumps(doc))
    base = ["plan", str(path), "-s", "16", "-m", "cpsat-fixed", "--order", "file", "--json"]
    for extra, want, macs in (
        (["--recompute-rate", "1/100"], 0.1, 10),
        (["--accelerator", "dram=1GB/s,macs=100G/s"], 0.1, 10),
        (["--recompute-rate", "10"], 20, 0),
    ):
        r = CliRunner().invoke(cli, base + extra)
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert (out["status"], out["objective"]) == ("optimal", want)
        assert out["stats"].get("compute", {}).get("recompute", 0) == macs
    r = CliRunner().invoke(cli, [*base, "--recompute-rate", "1", "--accelerator", "dram=1,macs=1"])
    assert r.exit_code != 0 and "one of" in r.output
    r = CliRunner().invoke(cli, [*base, "--recompute-rate", "-1"])
    assert r.exit_code != 0 and "recompute rate" in r.output
    r = CliRunner().invoke(cli, ["plan", str(path), "-s", "16", "--recompute-rate", "1"])
    assert r.exit_code != 0 and "no option" in r.output  # the baseline has no recompute
    out_plan = tmp_path / "plan.json"
    r = CliRunner().invoke(cli, [*base[:-1], "--recompute-rate", "1/100", "-o", str(out_plan)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["replay", str(path), str(out_plan)])
    assert r.exit_code == 0 and "recomputed 10 MACs" in r.output, r.output
