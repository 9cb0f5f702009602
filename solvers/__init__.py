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

from collections.abc import Callable, Mapping

from cosma import interrupt
from cosma import options as check
from cosma.deadline import Deadline
from cosma.errors import UsageError
from cosma.plan import Plan
from cosma.problem import Problem
from cosma.progress import Progress, reporting
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
from cosma.solvers.dnc import dnc
from cosma.solvers.milp import milp

__all__ = [
    "BACKENDS",
    "METHODS",
    "PROTOCOL",
    "REMAT_METHODS",
    "baseline",
    "best_baseline",
    "check_options",
    "dnc",
    "method_names",
    "method_options",
    "milp",
    "solve",
]


def _baseline_method(o: str, a: str, r: str) -> Callable[..., Plan]:
    def run(problem: Problem, *, time_limit: float | Deadline | None = 30.0) -> Plan:
        limit = Deadline.of(time_limit).left()
        return baseline(problem, order=o, allocator=a, replacement=r, time_limit=limit)

    run.__doc__ = f"Baseline: {o} order, {a} allocator, {r} replacement."
    return run


def _best(problem: Problem, *, time_limit: float | Deadline | None = 30.0) -> Plan:
    return best_baseline(problem, time_limit=Deadline.of(time_limit).left())


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
    """A registry entry for an exact engine: the order only for its fixed-order form."""

    def run(problem: Problem, *, time_limit: float | Deadline | None = 60.0, **options) -> Plan:
        order = options.pop("order", "minpeak") if fixed else None
        # Bounded memory: refuse before building a model that would not fit (the fixed-order
        # size hardly depends on the order; the file's topological order stands in for it).
        limits.check(
            problem,
            engine=engine.__name__,
            order=problem.graph.topological_order() if fixed else None,
            memory_limit=options.pop("memory_limit", None),
        )
        return engine(problem, order=order, time_limit=time_limit, **options)

    run.__doc__ = doc
    run.options = ("time_limit", *accepts, *(("order",) if fixed else ()))  # type: ignore[attr-defined]
    return run


_COMMON = ("threads", "seed", "shortcut", "memory_limit")
#: Recompute versus reload (cosma.solvers.recompute): a rate in bytes per MAC, or an
#: accelerator description it is derived from (DRAM bandwidth / peak MAC rate).
_RECOMPUTE = ("recompute_rate", "accelerator")
_MILP_OPTIONS = (*_COMMON, "solver", "write_model", "log_path", *_RECOMPUTE)
_CPSAT_OPTIONS = (*_COMMON, *_RECOMPUTE)
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
for _name, _fn in METHODS.items():
    if not hasattr(_fn, "options"):
        _fn.options = ("time_limit",)  # type: ignore[attr-defined]

# Rematerialization (GPU style: memory budget, least total compute; see cosma.remat): a
# registry of its own, since these plans minimise compute, not traffic.
from cosma.solvers.remat import remat_methods  # noqa: E402

REMAT_METHODS: dict[str, Callable[..., Plan]] = remat_methods()


def _dnc(problem: Problem, *, time_limit: float | Deadline | None = 120.0, **options) -> Plan:
    return dnc(problem, time_limit=time_limit, **options)


_dnc.__doc__ = (
    "Divide and conquer for large graphs: exact pieces with the boundary state carried in, "
    "joint windows across the cuts, a bound from relaxed windows."
)
_dnc.options = ("time_limit", *_COMMON, "solver")  # type: ignore[attr-defined]
METHODS["dnc"] = _dnc


def method_names() -> list[str]:
    return list(METHODS)


def method_options(method: str) -> tuple[str, ...] | None:
    """The options ``method`` accepts (None if it does not declare them)."""
    return getattr(METHODS.get(method) or REMAT_METHODS.get(method), "options", None)


def check_options(method: str, options: Mapping[str, object]) -> None:
    """Raise UsageError for an option ``method`` does not take, or a choice it does not
    know (``solver``, ``order``), naming the valid ones.

    >>> check_options("milp", {"threds": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cosma.errors.UsageError: method 'milp' has no option 'threds'; it takes: time_limit, ...
    """
    if method not in METHODS and method not in REMAT_METHODS:
        known = ", ".join([*METHODS, *REMAT_METHODS])
        raise UsageError(f"unknown method {method!r}; choose from: {known}")
    accepted = method_options(method)
    if accepted is not None:
        for name in options:
            if name not in accepted:
                raise UsageError(
                    f"method {method!r} has no option {name!r}; it takes: {', '.join(accepted)}"
                )
    solver = options.get("solver")
    if solver is not None and solver not in BACKENDS:
        raise UsageError(f"unknown MILP solver {solver!r}; choose from: {', '.join(BACKENDS)}")
    order = options.get("order")
    if isinstance(order, str) and order not in ORDERS:
        raise UsageError(f"unknown order {order!r}; choose from: {', '.join(ORDERS)}")


def solve(
    problem: Problem,
    method: str = "baseline",
    *,
    progress: Progress | None = None,
    **options: object,
) -> Plan:
    """Run the method called ``method`` on ``problem``; options go to the method. An option
    the method does not take, an unknown solver or order, or a bad value (:mod:`cosma.options`)
    is a UsageError. Rematerialization methods (:data:`REMAT_METHODS`) are found here too.
    ``progress`` receives the engine's progress reports (see :mod:`cosma.progress`). If a
    signal stopped the solver (:mod:`cosma.interrupt`), the plan is the best found and
    ``stats["interrupted"]`` names the signal.

    >>> from cosma import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> solve(Problem(g, 12), "milp", solver="highs", threads=1).status.value
    'optimal'
    """
    check_options(method, options)
    _check_values(options)
    fn = METHODS.get(method) or REMAT_METHODS[method]
    with reporting(progress):
        plan = fn(problem, **options)
    stopped = interrupt.requested()
    if stopped:
        plan.stats = {**plan.stats, "interrupted": stopped}
    return plan


def _check_values(options: dict[str, object]) -> None:
    """Refuse bad option values before any work (:mod:`cosma.options`)."""
    checks = {
        "time_limit": check.time_limit,
        "threads": check.threads,
        "seed": check.seed,
        "memory_limit": check.memory_limit,
    }
    for name, fn in checks.items():
        value = options.get(name)
        if value is not None and not isinstance(value, Deadline):
            options[name] = fn(value, option=name)
    # Recompute versus reload: the accelerator description becomes the rate it implies.
    if options.get("accelerator") is not None:
        if options.get("recompute_rate") is not None:
            raise UsageError(
                "give one of recompute_rate (bytes per MAC) and accelerator (the DRAM "
                "bandwidth and MAC rate it is derived from), not both"
            )
        options["recompute_rate"] = check.accelerator_rate(
            options.pop("accelerator"), option="accelerator"
        )
    options.pop("accelerator", None)
    if options.get("recompute_rate") is not None:
        options["recompute_rate"] = check.recompute_rate(
            options["recompute_rate"], option="recompute_rate"
        )
