"""Plan finders, installed as ``cosma.solvers``: baselines now; MILP, CP-SAT and
decomposition as they land. Every method takes a :class:`~cosma.problem.Problem` and returns
a replayed :class:`~cosma.plan.Plan`.

>>> from cosma import GraphBuilder
>>> from cosma.problem import Problem
>>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
>>> solve(Problem(g, 12), "baseline").status.value
'optimal'
"""

from __future__ import annotations

from collections.abc import Callable

from cosma import interrupt
from cosma import options as check
from cosma.errors import UsageError
from cosma.plan import Plan
from cosma.problem import Problem
from cosma.solvers import limits
from cosma.solvers.backends import BACKENDS
from cosma.solvers.baselines import (
    ALLOCATORS,
    ORDERS,
    PROTOCOL,
    REPLACEMENTS,
    baseline,
    best_baseline,
)
from cosma.solvers.cpsat import cpsat
from cosma.solvers.milp import milp

__all__ = [
    "BACKENDS",
    "METHODS",
    "PROTOCOL",
    "baseline",
    "best_baseline",
    "method_names",
    "milp",
    "solve",
]


def _baseline_method(o: str, a: str, r: str) -> Callable[..., Plan]:
    def run(problem: Problem, *, time_limit: float | None = 30.0, **_: object) -> Plan:
        return baseline(problem, order=o, allocator=a, replacement=r, time_limit=time_limit)

    run.__doc__ = f"Baseline: {o} order, {a} allocator, {r} replacement."
    return run


def _best(problem: Problem, *, time_limit: float | None = 30.0, **_: object) -> Plan:
    return best_baseline(problem, time_limit=time_limit)


_best.__doc__ = (
    "Best of the protocol's four baselines ({file, minpeak} x arena x {belady, greedy})."
)

#: Every method by name.
METHODS: dict[str, Callable[..., Plan]] = {"baseline": _best}
for _o in ORDERS:
    for _a in ALLOCATORS:
        for _r in REPLACEMENTS:
            METHODS[f"{_o}-{_a}-{_r}"] = _baseline_method(_o, _a, _r)


def _exact_method(
    engine: Callable[..., Plan], accepts: tuple[str, ...], fixed: bool, doc: str
) -> Callable[..., Plan]:
    """A registry entry for an exact engine: passes on the options it accepts, and the
    order only for its fixed-order form."""

    def run(
        problem: Problem,
        *,
        order: str = "minpeak",
        time_limit: float | None = 60.0,
        **options: object,
    ) -> Plan:
        # Bounded memory: refuse before building a model that would not fit (the fixed-order
        # size hardly depends on the order; the file's topological order stands in for it).
        limits.check(
            problem,
            engine=engine.__name__,
            order=problem.graph.topological_order() if fixed else None,
            memory_limit=options.pop("memory_limit", None),  # type: ignore[arg-type]
        )
        kw = {k: v for k, v in options.items() if k in accepts}
        return engine(problem, order=order if fixed else None, time_limit=time_limit or 60.0, **kw)

    run.__doc__ = doc
    return run


_COMMON = ("threads", "seed")
_MILP_OPTIONS = (*_COMMON, "solver", "write_model", "log_path")
_CPSAT_OPTIONS = (*_COMMON, "progress")
METHODS["milp"] = _exact_method(
    milp, _MILP_OPTIONS, False, "Exact MILP, schedule free (joint); --solver cbc|highs|gurobi."
)
METHODS["milp-fixed"] = _exact_method(
    milp, _MILP_OPTIONS, True, "Exact MILP for a fixed order (--order file|greedy|minpeak)."
)
METHODS["cpsat"] = _exact_method(
    cpsat, _CPSAT_OPTIONS, False, "Exact CP-SAT model with addresses, schedule free (joint)."
)
METHODS["cpsat-fixed"] = _exact_method(
    cpsat, _CPSAT_OPTIONS, True, "Exact CP-SAT model for a fixed order (--order ...)."
)


def method_names() -> list[str]:
    return list(METHODS)


def solve(problem: Problem, method: str = "baseline", **options: object) -> Plan:
    """Run the method called ``method`` on ``problem``; options go to the method.

    Option values are checked first (:mod:`cosma.options`). If a signal stopped the solver
    (:mod:`cosma.interrupt`), the plan is the best found and ``stats["interrupted"]`` names
    the signal.
    """
    try:
        fn = METHODS[method]
    except KeyError:
        raise UsageError(f"unknown method {method!r}; choose from: {', '.join(METHODS)}") from None
    _check_values(options)
    plan = fn(problem, **options)
    stopped = interrupt.requested()
    if stopped:
        plan.stats = {**plan.stats, "interrupted": stopped}
    return plan


def _check_values(options: dict[str, object]) -> None:
    """Refuse bad option values before any work (names are the registry's business)."""
    checks = {
        "time_limit": check.time_limit,
        "threads": check.threads,
        "seed": check.seed,
        "memory_limit": check.memory_limit,
    }
    for name, fn in checks.items():
        if options.get(name) is not None:
            options[name] = fn(options[name], option=name)
