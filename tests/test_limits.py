"""Bounded memory: exact models are sized before they are built, and refused above a limit.

Calibration note (cosma.solvers.limits.COST): on zoo:transformer (M_R) the estimate was
26,229 rows / 13,382 columns / 408,829 nonzeros against 25,026 / 13,151 / 291,074 built,
and 89 MiB against 36 MiB of traced peak memory while building the PuLP model; on
zoo:densenet121 14,201 / 8,620 against 9,890 / 8,251 rows/columns, 28 MiB against 13 MiB.
So the counts are close and the bytes err on the high side (a solver's own memory comes on
top of the Python model's).
"""

from __future__ import annotations

import importlib

import pytest
from cases import skip
from click.testing import CliRunner

from cosma.app.cli import cli
from cosma.errors import ModelTooLargeError, UsageError
from cosma.graph import GraphBuilder
from cosma.problem import Problem
from cosma.solvers import limits, solve


def wide(branches: int = 40, depth: int = 12):
    """``branches`` parallel chains of ``depth`` operators between one input and a concat:
    481 operators by default, the shape that exhausted memory in issue 11."""
    b = GraphBuilder("wide").input("x", 64)
    ends = []
    for k in range(branches):
        prev = "x"
        for i in range(depth):
            b = b.op(f"b{k}_{i}", [prev], {f"t{k}_{i}": 32 + k})
            prev = f"t{k}_{i}"
        ends.append(prev)
    return b.op("cat", ends, {"y": 64}).output("y").build()


def test_estimate_counts_match_the_built_model():
    g = skip()
    p = Problem(g, 10**6)
    milp_mod = importlib.import_module("cosma.solvers.milp")
    m = milp_mod.build_model(p)
    est = limits.estimate(p, engine="milp")
    # Every variable family is counted exactly; rows are an upper bound.
    assert est.columns == m.stats["columns"]
    assert m.stats["rows"] <= est.rows <= 2 * m.stats["rows"]


def test_wide_graph_is_refused_with_its_estimate():
    g = wide()
    assert g.num_operators == 481
    est = limits.estimate(Problem(g, 10**6), engine="milp")
    # 40 branches of 12: every window spans ~470 steps, so the joint model has ~481^2 run
    # variables and the cumulative precedence rows ~481^3/2 nonzeros: far beyond 1 GiB.
    assert est.columns > 481 * 400 and est.bytes > 2**30
    with pytest.raises(ModelTooLargeError, match=r"would need about .* rows") as err:
        solve(Problem(g, 10**6), "milp", memory_limit=2**30, time_limit=5)
    assert "milp-fixed" in str(err.value) and "--memory-limit" in str(err.value)
    # The fixed-order model is small (one step per operator): it is built and solved.
    plan = solve(Problem(g, 10**6), "milp-fixed", memory_limit=2**30, time_limit=10)
    assert plan.status.has_plan


def test_cli_memory_limit(tmp_path):
    r = CliRunner().invoke(
        cli, ["plan", "zoo:transformer", "-s", "M_R", "-m", "cpsat", "--memory-limit", "1MiB"]
    )
    assert r.exit_code == 5 and "would need about" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["plan", "zoo:transformer", "-s", "M_R", "--memory-limit", "0"])
    assert r.exit_code == 2 and "memory limit must be" in r.output


def test_bad_memory_limit_values():
    g = skip()
    for bad in (0, -1, "lots", 1.5):
        with pytest.raises(UsageError):
            solve(Problem(g, 10**6), "milp", memory_limit=bad)


def test_absurdly_scaled_sizes_are_refused_by_milp_not_cpsat():
    # The skip graph with every size times 10^14 plus 3 bytes: the GCD is 1, so the
    # MILP coefficients reach 1.6e15, past 2^40. MILP refuses; CP-SAT solves it exactly.
    base = skip()
    b = GraphBuilder("scaled")
    for t in base.inputs:
        b = b.input(t, base.tensors[t].size * 10**14 + 3)
    for name, op in base.operators.items():
        b = b.op(name, list(op.inputs), {o: base.tensors[o].size * 10**14 + 3 for o in op.outputs})
    g = b.output(*base.outputs).build()
    budget = 16 * 10**14 + 9  # M_R of skip, scaled: at d, p + r + z = 16e14 + 9
    from cosma.errors import SolverError

    with pytest.raises(SolverError, match="use -m cpsat"):
        solve(Problem(g, budget), "milp", time_limit=5)
    plan = solve(Problem(g, budget), "cpsat", time_limit=20)
    # skip's optimum (20 bytes: store and reload p) scaled: 2 x (10e14 + 3).
    assert plan.status.value == "optimal" and plan.objective == 2 * (10 * 10**14 + 3)
