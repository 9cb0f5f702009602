"""Placing fixed residencies in the scratchpad: dynamic storage allocation.

Given blocks with fixed lifetimes (which step each tensor becomes resident and leaves),
find addresses so that no two blocks alive at the same step overlap. The offline allocators
of :mod:`cosma.solvers.baselines` are tried first; if neither fits, CP-SAT decides exactly
with ``NoOverlap2D`` (time x address), which either places every block or proves that no
placement exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cosma.solvers.baselines import Residency, allocate_offline


@dataclass(frozen=True)
class Placement:
    """Outcome: ``placed`` (addresses set on the residencies), ``proven_impossible`` (no
    placement exists), or neither (the time limit ran out)."""

    placed: bool
    proven_impossible: bool
    method: str


def place(
    residencies: Sequence[Residency],
    budget: int,
    *,
    alignment: int = 1,
    time_limit: float = 10.0,
    seed: int = 0,
) -> Placement:
    """Give every residency an address inside ``[0, budget)``, if that is possible.

    >>> rs = [Residency("a", 0, 1, 4), Residency("b", 1, 2, 2), Residency("c", 2, 3, 4)]
    >>> place(rs, 6).placed, [r.address for r in rs]
    (True, [0, 4, 0])
    >>> place(rs, 5).proven_impossible  # b and a (or c) are alive together: 6 > 5
    True
    """
    if not residencies:
        return Placement(True, False, "empty")
    load = _max_load(residencies)
    for method in ("arena", "firstfit"):
        if allocate_offline(residencies, method=method, alignment=alignment) <= budget:
            return Placement(True, False, method)
    if load > budget:
        return Placement(False, True, "load exceeds budget")
    return _cp_sat(residencies, budget, alignment, time_limit, seed)


def _max_load(rs: Sequence[Residency]) -> int:
    events: dict[int, int] = {}
    for r in rs:
        events[r.start] = events.get(r.start, 0) + r.size
        events[r.end + 1] = events.get(r.end + 1, 0) - r.size
    cur = best = 0
    for t in sorted(events):
        cur += events[t]
        best = max(best, cur)
    return best


def _cp_sat(
    rs: Sequence[Residency], budget: int, alignment: int, time_limit: float, seed: int
) -> Placement:
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    xs, ys, addr = [], [], []
    for r in rs:
        if r.size == 0:
            addr.append(None)
            continue
        slots = (budget - r.size) // alignment
        if slots < 0:
            return Placement(False, True, "block larger than budget")
        k = m.new_int_var(0, slots, f"slot[{r.tensor},{r.start}]")
        a = k * alignment
        addr.append(k)
        xs.append(
            m.new_fixed_size_interval_var(
                r.start, r.end - r.start + 1, f"time[{r.tensor},{r.start}]"
            )
        )
        ys.append(m.new_interval_var(a, r.size, a + r.size, f"addr[{r.tensor},{r.start}]"))
    m.add_no_overlap_2d(xs, ys)
    solver = cp_model.CpSolver()
    # CP-SAT's own SIGINT handler would replace cosma's (cosma.interrupt) for good.
    solver.parameters.catch_sigint_signal = False
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        for r, k in zip(rs, addr, strict=True):
            r.address = 0 if k is None else solver.value(k) * alignment
        return Placement(True, False, "cp-sat")
    return Placement(False, status == cp_model.INFEASIBLE, "cp-sat")
