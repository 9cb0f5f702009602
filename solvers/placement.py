"""Placing fixed residencies in the scratchpad: dynamic storage allocation.

Given blocks with fixed lifetimes (which step each tensor becomes resident and leaves),
find addresses so that no two blocks alive at the same step overlap. The offline allocators
of :mod:`cosma.solvers.baselines` are tried first; if neither fits, CP-SAT decides exactly
with ``NoOverlap2D`` (time x address), which either places every block or proves that no
placement exists.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class MovePlacement:
    """Outcome of :func:`place_with_moves`.

    ``blocks``: the residencies, split where a tensor moves (each piece with its address),
    or None if nothing was found in time. ``cost``: bytes the moves add (a load per move,
    plus a store for an activation that had no host copy). ``proven``: ``cost`` is the least
    possible for these residencies. ``needs_moves``: proven that no placement without moves
    exists. ``move_bound``: a proven lower bound on the bytes *loaded* by moves.
    """

    blocks: list[Residency] | None
    cost: int
    proven: bool
    needs_moves: bool
    move_bound: int
    method: str
    bound: int = 0  #: a proven lower bound on ``cost`` (loads and stores of moves)


def place_with_moves(
    residencies: Sequence[Residency],
    budget: int,
    *,
    alignment: int = 1,
    load_cost: Mapping[str, int],
    store_cost: Mapping[str, int] | None = None,
    time_limit: float = 10.0,
    seed: int = 0,
) -> MovePlacement:
    """Addresses for residencies with fixed lifetimes, where a block may *move* (SPEC §3:
    leave and be loaded again at another address between two steps) at a price:
    ``load_cost[tensor]`` per move, plus ``store_cost[tensor]`` once if it moves at all.
    Minimises that price.

    A block only needs to move at a step where some block starts: between two such steps
    the set of resident blocks only shrinks, so the arrangement of the earlier step stays
    valid, and moving later never costs more. The model has one address per block and such
    step (``NoOverlap2D``) and a move wherever a block's address changes.

    At 6 bytes, every step of these blocks is full and no fixed addresses fit them; moving
    ``t2`` (1 byte) once does:

    >>> spans = [("t0", 0, 0, 3), ("t2", 0, 4, 1), ("t1", 0, 1, 2), ("t3", 1, 2, 1),
    ...          ("t4", 1, 3, 2), ("t5", 2, 2, 1), ("t6", 2, 3, 1), ("t7", 3, 4, 2),
    ...          ("t8", 4, 4, 3)]
    >>> out = place_with_moves([Residency(*s) for s in spans], 6,
    ...                        load_cost={s[0]: s[3] for s in spans})
    >>> out.cost, out.needs_moves, sum(b.tensor == "t2" for b in out.blocks)
    (1, True, 2)
    """
    store_cost = store_cost or {}
    rs = list(residencies)
    if not rs:
        return MovePlacement([], 0, True, False, 0, "empty")
    for method in ("arena", "firstfit"):
        if allocate_offline(rs, method=method, alignment=alignment) <= budget:
            return MovePlacement(rs, 0, True, False, 0, method)
    if _max_load(rs) > budget:
        return MovePlacement(None, 0, True, True, 0, "load exceeds budget")
    # Most sets fit at fixed addresses, and that feasibility model (one box per block) is
    # much smaller than the one with moves: try it first, with part of the time.
    t0 = time.perf_counter()
    fixed = _cp_sat(rs, budget, alignment, time_limit / 2, seed)
    if fixed.placed:
        return MovePlacement(rs, 0, True, False, 0, "cp-sat")
    left = max(0.05, time_limit - (time.perf_counter() - t0))
    out = _cp_sat_moves(rs, budget, alignment, load_cost, store_cost, left, seed)
    if fixed.proven_impossible and not out.needs_moves:
        return dataclasses.replace(out, needs_moves=True)
    return out


def _cp_sat_moves(
    rs: list[Residency],
    budget: int,
    alignment: int,
    load_cost: Mapping[str, int],
    store_cost: Mapping[str, int],
    time_limit: float,
    seed: int,
) -> MovePlacement:
    from ortools.sat.python import cp_model

    points = sorted({r.start for r in rs})
    m = cp_model.CpModel()
    xs, ys = [], []
    pieces: list[list[tuple[int, int, object]]] = []  # per block: (from, to, slot var)
    moves: list[tuple[int, object]] = []  # (block index, move var)
    moved_tensor: dict[str, list] = {}
    load_terms, store_terms = [], []
    for i, r in enumerate(rs):
        starts = [p for p in points if r.start <= p <= r.end]
        ps = []
        slots = (budget - r.size) // alignment
        if r.size and slots < 0:
            return MovePlacement(None, 0, True, True, 0, "block larger than budget")
        for k, p in enumerate(starts):
            end = starts[k + 1] - 1 if k + 1 < len(starts) else r.end
            if r.size == 0:
                ps.append((p, end, None))
                continue
            slot = m.new_int_var(0, slots, f"slot[{r.tensor},{r.start},{p}]")
            xs.append(m.new_fixed_size_interval_var(p, end - p + 1, f"time[{r.tensor},{p}]"))
            ys.append(
                m.new_interval_var(
                    slot * alignment,
                    r.size,
                    slot * alignment + r.size,
                    f"addr[{r.tensor},{p}]",
                )
            )
            if ps:
                mv = m.new_bool_var(f"move[{r.tensor},{p}]")
                m.add(ps[-1][2] == slot).only_enforce_if(~mv)
                moves.append((i, mv))
                load_terms.append(load_cost.get(r.tensor, r.size) * mv)
                moved_tensor.setdefault(r.tensor, []).append(mv)
            ps.append((p, end, slot))
        pieces.append(ps)
    for t, mvs in moved_tensor.items():
        c = store_cost.get(t, 0)
        if c:
            any_move = m.new_bool_var(f"stored_for_move[{t}]")
            for mv in mvs:
                m.add_implication(mv, any_move)
            store_terms.append(c * any_move)
    if xs:
        m.add_no_overlap_2d(xs, ys)
    m.minimize(sum(load_terms) + sum(store_terms))
    solver = cp_model.CpSolver()
    # CP-SAT's own SIGINT handler would replace cosma's (cosma.interrupt) for good.
    solver.parameters.catch_sigint_signal = False
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    if status == cp_model.INFEASIBLE:  # cannot happen when the load fits: a bug guard
        return MovePlacement(None, 0, True, True, 0, "cp-sat: infeasible even with moves")
    bound = max(0, math.ceil(solver.best_objective_bound - 1e-6))
    # The store part of the objective is at most the sum of the store costs: what is left
    # of the bound is a bound on the loads.
    load_bound = max(0, bound - sum(store_cost.get(t, 0) for t in moved_tensor))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return MovePlacement(None, 0, False, bound > 0, load_bound, "cp-sat: time limit", bound)
    out: list[Residency] = []
    for r, ps in zip(rs, pieces, strict=True):
        cur: Residency | None = None
        for p, end, slot in ps:
            addr = 0 if slot is None else solver.value(slot) * alignment
            if cur is not None and cur.address == addr:
                cur.end = end
                continue
            cur = Residency(r.tensor, p, end, r.size, addr)
            out.append(cur)
    cost = round(solver.objective_value)
    return MovePlacement(
        out,
        cost,
        status == cp_model.OPTIMAL,
        bound > 0,
        load_bound,
        "cp-sat with moves" if cost else "cp-sat",
        cost if status == cp_model.OPTIMAL else bound,
    )
