"""Bounded memory: estimate an exact model's size before building it, and refuse a model
that would not fit.

Both exact engines are time-indexed (see :mod:`cosma.solvers.timeline`): one ``run``
variable per operator and step of its window, one ``resident`` (and ``load``) variable per
tracked tensor and step of its lifetime. On wide graphs the windows of parallel branches
span most of the schedule, so the model grows with the square of the operator count, and
the cumulative precedence rows with its cube: 481 operators in 40 parallel branches asked
for more than 5 GB. :func:`estimate` counts rows, columns and nonzeros from the windows and
lifetimes alone (no model is built) and turns them into bytes; :func:`check` refuses a model
whose estimate exceeds the limit, naming the estimate and the ways out.

The bytes per column, row and nonzero were measured on PuLP and CP-SAT models of zoo
graphs (peak traced memory of building the model divided over its counts; see the note in
``tests/test_limits.py``) and rounded up; they are an estimate, not a bound.

>>> from cosma.graph import GraphBuilder
>>> from cosma.problem import Problem
>>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
>>> e = estimate(Problem(g, 12), engine="milp")
>>> e.columns, e.rows > 0, e.bytes < 10**6
(4, True, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from cosma.errors import ModelTooLargeError, SolverError
from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.problem import Problem
from cosma.units import format_bytes

#: Default share of the machine's physical memory an exact model may use.
DEFAULT_FRACTION = 0.5

#: Measured bytes per column / row / nonzero, rounded up (see the module docstring).
COST = {
    "milp": {"column": 1200, "row": 1100, "nonzero": 120},
    "cpsat": {"column": 600, "row": 300, "nonzero": 60},
}


@dataclass(frozen=True)
class Estimate:
    """The expected size of an exact model: counts, and the bytes they take to build."""

    engine: str
    columns: int
    rows: int
    nonzeros: int
    bytes: int

    def describe(self) -> str:
        return (
            f"about {format_bytes(self.bytes)} ({self.rows:,} rows, {self.columns:,} "
            f"columns, {self.nonzeros:,} nonzeros)"
        )


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes, or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def default_limit() -> int | None:
    """:data:`DEFAULT_FRACTION` of the machine's memory (None: no limit known)."""
    total = machine_memory()
    return None if total is None else int(total * DEFAULT_FRACTION)


def estimate(
    problem: Problem, *, engine: str = "milp", order: Sequence[str] | None = None
) -> Estimate:
    """Rows, columns, nonzeros and bytes of the ``engine`` model (``milp`` or ``cpsat``) of
    ``problem``, joint if ``order`` is None, else for that fixed order. Nothing is built."""
    from cosma.solvers import timeline

    g = problem.graph
    window = timeline.windows(problem, order)
    life = timeline.lifetimes(problem, window)
    n = g.num_operators
    fixed = order is not None
    wlen = {v: hi - lo + 1 for v, (lo, hi) in window.items()}
    llen = {a: hi - lo + 1 for a, (lo, hi) in life.items()}
    x = 0 if fixed else sum(wlen.values())
    r = sum(llen.values())
    made = sum(1 for a in life if g.tensors[a].producer is not None)
    stores = sum(1 for a in life if g.tensors[a].kind is TensorKind.ACTIVATION)
    # run, resident, load (none at a produced tensor's first step), stored
    columns = x + r + (r - made) + stores
    rows = 0
    nonzeros = 0
    if not fixed:
        rows += 2 * n  # each operator once; one operator per step
        nonzeros += 2 * x
        # cumulative precedence: for each edge of the transitive reduction and step t of
        # v's window, (t - lo_v + 1) terms of v and (t - lo_u) terms of u
        for u, v in nx.transitive_reduction(g.dag).edges:
            (lo, hi), (ulo, uhi) = window[v], window[u]
            for t in range(lo, hi + 1):
                if t - 1 >= uhi:
                    continue
                rows += 1
                nonzeros += (t - lo + 1) + max(0, t - ulo)
    operands = sum(wlen[v] * len(g.operands(v, problem.setting)) for v in g.file_order)
    rows += operands  # resident when run
    nonzeros += 2 * operands
    rows += 2 * r  # made-before-resident (at most), load definition
    nonzeros += 4 * r + sum(wlen.get(g.tensors[a].producer, 0) * llen[a] for a in life)
    rows += r  # a load needs a store (activations; an upper bound)
    nonzeros += 2 * r
    rows += n  # capacity per step
    nonzeros += r
    if engine == "cpsat":
        columns += r  # an address per residency
        rows += 2 * r  # two optional intervals per residency, address kept while resident
        nonzeros += 4 * r
    cost = COST["cpsat" if engine == "cpsat" else "milp"]
    size = cost["column"] * columns + cost["row"] * rows + cost["nonzero"] * nonzeros
    return Estimate(engine, columns, rows, nonzeros, size)


#: Largest coefficient (bytes divided by the sizes' GCD) a floating-point MILP solver is
#: trusted with: its tolerances (about 1e-6 relative, 1e-9 absolute) stop meaning anything
#: for integers much above 2^40, and past 2^53 doubles no longer hold them exactly.
MAX_MILP_COEFFICIENT = 2**40


def milp_coefficient(problem: Problem) -> int:
    """The largest coefficient of the MILP: budget or size over the GCD of the sizes."""
    g = problem.graph
    sizes = [aligned(g.tensors[a].size, problem.alignment) for a in g.tracked(problem.setting)]
    nonzero = [s for s in sizes if s]
    scale = math.gcd(*nonzero) if nonzero else 1
    return max([problem.budget, *sizes]) // scale


def check(
    problem: Problem,
    *,
    engine: str,
    order: Sequence[str] | None = None,
    memory_limit: int | None = None,
) -> Estimate:
    """Refuse (:class:`~cosma.errors.ModelTooLargeError`) a model whose estimate exceeds
    ``memory_limit`` bytes (default: :func:`default_limit`); return the estimate."""
    if engine == "milp":
        coef = milp_coefficient(problem)
        if coef > MAX_MILP_COEFFICIENT:
            raise SolverError(
                f"{problem.graph.name}: sizes and budget span {coef:.3g} units of their "
                f"greatest common divisor, beyond what a floating-point MILP solver handles "
                f"exactly (2^40); use -m cpsat (exact integers), or check the sizes' units"
            )
    est = estimate(problem, engine=engine, order=order)
    limit = default_limit() if memory_limit is None else memory_limit
    if limit is not None and est.bytes > limit:
        whence = (
            "the limit given"
            if memory_limit is not None
            else f"{int(DEFAULT_FRACTION * 100)} % of this machine's memory"
        )
        mode = "joint" if order is None else "fixed-order"
        ways = (
            "use a fixed order (-m milp-fixed / cpsat-fixed), a baseline, "
            if order is None
            else "use a baseline, "
        )
        raise ModelTooLargeError(
            f"the {mode} {engine} model of {problem.graph.name} would need "
            f"{est.describe()}, above {format_bytes(limit)} ({whence}); {ways}"
            "or raise the limit with --memory-limit SIZE (memory_limit= in Python)"
        )
    return est
