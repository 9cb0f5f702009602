"""Baselines (SPEC §6): an order × an allocator × a replacement policy.

- **Orders**: ``file`` (the ONNX node order), ``greedy`` (a memory-aware list schedule),
  ``minpeak`` (the minimum-peak order of :mod:`cosma.schedule`).
- **Allocators**: ``arena`` (TFLite-style: tensors by size descending, each in the
  best-fitting gap among the blocks alive at the same time) and ``firstfit`` (by start time,
  lowest address that fits). Both are offline: they place fixed residency intervals.
- **Replacement**: ``belady`` (evict the tensor whose next use is furthest) and ``greedy``
  (evict the set of resident tensors that frees a contiguous window at the least traffic,
  chosen exactly for that one decision).

How they combine, as a compiler would: first the allocator places the no-spill live
intervals of the order; if that arena fits the budget, the plan needs no spills. Otherwise
the replacement policy runs online over the order, placing blocks in free gaps the way the
allocator would (best fit or first fit) and evicting when no gap fits; the allocator then
re-places the resulting residencies offline and its addresses are kept if they fit. When
even evicting every other tensor leaves no contiguous room (the operands themselves are
scattered), the operands are evicted and reloaded packed from address 0, so every budget
at or above ``M_R`` gets a plan.

Every plan is replayed by the simulator before it is returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from cosma.graph import TensorKind
from cosma.memory import aligned, check_schedule, live_intervals
from cosma.plan import Event, Plan, Status, create, drop, load, steps_from_events, store
from cosma.problem import Problem, min_peak
from cosma.progress import report
from cosma.schedule import greedy_order
from cosma.simulator import verify

ORDERS = ("file", "greedy", "minpeak")
ALLOCATORS = ("arena", "firstfit")
REPLACEMENTS = ("belady", "greedy")
#: The four combinations of the reference evaluation.
PROTOCOL = tuple((o, "arena", r) for o in ("file", "minpeak") for r in REPLACEMENTS)


@dataclass
class Residency:
    """A block held by ``tensor`` from step ``start`` to step ``end`` (inclusive)."""

    tensor: str
    start: int
    end: int
    size: int
    address: int = -1


# --- offline allocators ------------------------------------------------------------------


def _gaps(busy: list[tuple[int, int]], limit: int | None = None) -> list[tuple[int, int]]:
    """Free ``(start, length)`` gaps between sorted-or-not busy ``(address, size)`` blocks;
    the last gap is open-ended (length None-like: a large number) unless ``limit`` is set."""
    gaps = []
    cur = 0
    for a, s in sorted(busy):
        if s == 0:
            continue
        if a > cur:
            gaps.append((cur, a - cur))
        cur = max(cur, a + s)
    top = (limit - cur) if limit is not None else 1 << 62
    if top > 0:
        gaps.append((cur, top))
    return gaps


def allocate_offline(
    residencies: Sequence[Residency], *, method: str = "arena", alignment: int = 1
) -> int:
    """Give each residency an address (in place); return the arena size used.

    ``arena``: by size descending, each in the smallest gap that fits among the blocks
    overlapping it in time (TFLite's greedy-by-size). ``firstfit``: by start, the lowest
    address that fits. Neither is limited by a budget; compare the result with one.

    >>> rs = [Residency("a", 0, 1, 4), Residency("b", 1, 2, 2), Residency("c", 2, 3, 4)]
    >>> allocate_offline(rs), [r.address for r in rs]
    (6, [0, 4, 0])
    """
    if method == "arena":
        todo = sorted(residencies, key=lambda r: (-r.size, r.start, r.tensor))
    elif method == "firstfit":
        todo = sorted(residencies, key=lambda r: (r.start, -r.size, r.tensor))
    else:
        raise ValueError(f"unknown allocator {method!r}")
    placed: list[Residency] = []
    top = 0
    for r in todo:
        busy = [(p.address, p.size) for p in placed if p.start <= r.end and r.start <= p.end]
        fits = []
        for start, length in _gaps(busy):
            a = aligned(start, alignment)
            if length - (a - start) >= r.size:
                fits.append((length, a))
        if method == "arena":
            _, r.address = min(fits)  # smallest gap; the open top gap is the largest
        else:
            r.address = min(a for _, a in fits)
        placed.append(r)
        top = max(top, r.address + r.size)
    return top


# --- the online replacement engine --------------------------------------------------------


class _Online:
    """Run ``order`` under ``budget`` with a replacement policy and online gap placement."""

    def __init__(self, problem: Problem, order: list[str], replacement: str, fit: str):
        self.p = problem
        self.g = problem.graph
        self.order = order
        self.replacement = replacement
        self.fit = fit
        self.S = problem.budget
        A = problem.alignment
        self.A = A
        self.tracked = set(self.g.tracked(problem.setting))
        self.size = {t: aligned(self.g.tensors[t].size, A) for t in self.tracked}
        pos = {op: i for i, op in enumerate(order)}
        self.uses = {t: sorted(pos[c] for c in self.g.tensors[t].consumers) for t in self.tracked}
        self.resident: dict[str, Residency] = {}
        self.on_host = {
            t
            for t in self.tracked
            if self.g.tensors[t].kind in (TensorKind.INPUT, TensorKind.PARAMETER)
        }
        self.residencies: list[Residency] = []
        # Per step: event templates; loads/creates refer to residencies for their address.
        self.before: dict[int, list[tuple[str, object]]] = {}
        self.after: dict[int, list[tuple[str, object]]] = {}

    def next_use(self, t: str, step: int) -> int | None:
        for u in self.uses[t]:
            if u >= step:
                return u
        return None

    def evict_cost(self, t: str, step: int) -> int:
        """Traffic caused by evicting ``t`` before ``step``: a store if host lacks it, and
        the reload at its next use."""
        if self.next_use(t, step) is None and self.g.tensors[t].kind is not TensorKind.OUTPUT:
            return 0
        cost = 0 if t in self.on_host else self.g.tensors[t].size
        if self.next_use(t, step) is not None:
            cost += self.g.tensors[t].size
        return cost

    def evict(self, t: str, step: int) -> None:
        r = self.resident.pop(t)
        r.end = step - 1
        needed = self.next_use(t, step) is not None or self.g.tensors[t].kind is TensorKind.OUTPUT
        ev = self.before.setdefault(step, [])
        if needed and t not in self.on_host:
            ev.append(("store", t))
            self.on_host.add(t)
        ev.append(("drop", t))

    def find_gap(self, size: int) -> int | None:
        busy = [(r.address, r.size) for r in self.resident.values()]
        best = None
        for start, length in _gaps(busy, self.S):
            a = aligned(start, self.A)
            if length - (a - start) < size:
                continue
            key = (length, a) if self.fit == "best" else (a,)
            if best is None or key < best[0]:
                best = (key, a)
        return None if best is None else best[1]

    def make_room(self, t: str, step: int, pinned: set[str]) -> int | None:
        """Evict by the policy until ``t`` fits; return its address, or None if it cannot."""
        size = self.size[t]
        a = self.find_gap(size)
        if a is not None:
            return a
        if self.replacement == "belady":
            while True:
                victims = [u for u in self.resident if u not in pinned]
                if not victims:
                    return None
                far = 1 << 60
                victim = max(
                    victims,
                    key=lambda u: (
                        self.next_use(u, step) if self.next_use(u, step) is not None else far,
                        self.size[u],
                        u,
                    ),
                )
                self.evict(victim, step)
                a = self.find_gap(size)
                if a is not None:
                    return a
        # greedy: the cheapest contiguous window, exactly, for this one decision.
        starts = {0, self.S - size}
        for r in self.resident.values():
            starts.add(r.address + r.size)
            starts.add(r.address - size)
        best = None
        for s0 in sorted(starts):
            a = aligned(s0, self.A)
            if a < 0 or a + size > self.S:
                continue
            blocking = [
                u
                for u, r in self.resident.items()
                if r.size and size and r.address < a + size and a < r.address + r.size
            ]
            if any(u in pinned for u in blocking):
                continue
            cost = sum(self.evict_cost(u, step) for u in blocking)
            freed = sum(self.size[u] for u in blocking)
            key = (cost, freed, a)
            if best is None or key < best[0]:
                best = (key, a, blocking)
        if best is None:
            return None
        for u in sorted(best[2]):
            self.evict(u, step)
        return best[1]

    def place(self, t: str, step: int, address: int, kind: str) -> Residency:
        r = Residency(t, step, len(self.order) - 1, self.size[t], address)
        self.residencies.append(r)
        self.resident[t] = r
        self.before.setdefault(step, []).append((kind, r))
        return r

    def run(self) -> None:
        g, setting = self.g, self.p.setting
        for i, op in enumerate(self.order):
            operands = g.operands(op, setting)
            pinned = set(operands)
            outputs = set(g.operators[op].outputs)
            # Larger blocks first: they are the hardest to fit.
            todo = sorted(
                (t for t in operands if t not in self.resident), key=lambda t: (-self.size[t], t)
            )
            placed_here: list[Residency] = []
            for t in todo:
                a = self.make_room(t, i, pinned)
                if a is None:
                    self.compact(i, operands, placed_here)
                    break
                placed_here.append(self.place(t, i, a, "create" if t in outputs else "load"))
            # After the run: drop what is no longer needed; store outputs at their last use.
            aft = self.after.setdefault(i, [])
            for t in operands:
                if self.next_use(t, i + 1) is None:
                    if g.tensors[t].kind is TensorKind.OUTPUT and t not in self.on_host:
                        aft.append(("store", t))
                        self.on_host.add(t)
                    aft.append(("drop", t))
                    self.resident.pop(t).end = i

    def compact(self, step: int, operands: list[str], placed_here: list[Residency]) -> None:
        """Evict everything, operands included, and place the operands packed from 0.

        Only reached when the operands already resident leave no contiguous room; their
        total is at most ``M_R`` <= budget, so packing them always fits.
        """
        undone = {id(r) for r in placed_here}
        self.residencies = [r for r in self.residencies if id(r) not in undone]
        self.before[step] = [
            e
            for e in self.before.get(step, [])
            if not (e[0] in ("load", "create") and id(e[1]) in undone)
        ]
        for r in placed_here:
            del self.resident[r.tensor]
        for u in sorted(self.resident):
            self.evict(u, step)
        outputs = set(self.g.operators[self.order[step]].outputs)
        a = 0
        for t in sorted(operands, key=lambda t: (-self.size[t], t)):
            self.place(t, step, a, "create" if t in outputs else "load")
            a = aligned(a + self.size[t], self.A)

    def events(self) -> tuple[dict[int, list[Event]], dict[int, list[Event]]]:
        def make(item: tuple[str, object]) -> Event:
            kind, x = item
            if kind == "load":
                return load(x.tensor, x.address)  # type: ignore[union-attr]
            if kind == "create":
                return create(x.tensor, x.address)  # type: ignore[union-attr]
            return store(x) if kind == "store" else drop(x)  # type: ignore[arg-type]

        # Within a step, evictions come before placements: blocks may be re-addressed
        # offline, and a freed block is free for the whole step.
        before = {
            i: [make(e) for e in evs if e[0] in ("store", "drop")]
            + [make(e) for e in evs if e[0] in ("load", "create")]
            for i, evs in self.before.items()
        }
        after = {i: [make(e) for e in evs] for i, evs in self.after.items()}
        return before, after


def _no_spill_residencies(problem: Problem, order: list[str]) -> list[Residency]:
    iv = live_intervals(problem.graph, order, setting=problem.setting)
    return [
        Residency(t, s, e, aligned(problem.graph.tensors[t].size, problem.alignment))
        for t, (s, e) in iv.items()
    ]


def _no_spill_plan_events(problem: Problem, rs: list[Residency]):
    g = problem.graph
    before: dict[int, list[Event]] = {}
    after: dict[int, list[Event]] = {}
    for r in sorted(rs, key=lambda r: r.tensor):
        t = g.tensors[r.tensor]
        ev = create(r.tensor, r.address) if t.producer is not None else load(r.tensor, r.address)
        before.setdefault(r.start, []).append(ev)
        if t.kind is TensorKind.OUTPUT:
            after.setdefault(r.end, []).append(store(r.tensor))
        after.setdefault(r.end, []).append(drop(r.tensor))
    return before, after


def make_order(problem: Problem, name: str, *, time_limit: float | None = 30.0) -> list[str]:
    """The schedule called ``name`` (``file``, ``greedy``, ``minpeak``)."""
    g = problem.graph
    if name == "file":
        return list(g.file_order) if g.is_schedule(g.file_order) else g.topological_order()
    if name == "greedy":
        return greedy_order(g, setting=problem.setting, alignment=problem.alignment)
    if name == "minpeak":
        return list(
            min_peak(
                g, setting=problem.setting, alignment=problem.alignment, time_limit=time_limit
            ).order
        )
    raise ValueError(f"unknown order {name!r}; choose from {', '.join(ORDERS)}")


def baseline(
    problem: Problem,
    *,
    order: str | Sequence[str] = "file",
    allocator: str = "arena",
    replacement: str = "belady",
    time_limit: float | None = 30.0,
) -> Plan:
    """One baseline plan: ``order`` (a name or an explicit schedule) × ``allocator`` ×
    ``replacement``. Returns a replayed :class:`~cosma.plan.Plan`; ``infeasible`` below
    ``M_R``.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 10).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 10})
    ...      .op("c", ["p", "q"], {"z": 10}).output("z").build())
    >>> baseline(Problem(g, 30)).objective  # p, q, z at c: 30 bytes, no spill needed
    0
    >>> baseline(Problem(g, 29)).status.value
    'infeasible'
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator {allocator!r}; choose from {ALLOCATORS}")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"unknown replacement {replacement!r}; choose from {REPLACEMENTS}")
    t0 = time.perf_counter()
    g = problem.graph
    order_name = order if isinstance(order, str) else "given"
    method = f"{order_name}-{allocator}-{replacement}"
    plan = problem.new_plan(
        method,
        options={"order": order_name, "allocator": allocator, "replacement": replacement},
    )
    why = problem.shortfall()
    if why:
        plan.status, plan.reason = Status.INFEASIBLE, why
        plan.solve_time = time.perf_counter() - t0
        return plan
    seq = (
        make_order(problem, order, time_limit=time_limit)
        if isinstance(order, str)
        else check_schedule(g, order)
    )

    rs = _no_spill_residencies(problem, seq)
    arena = allocate_offline(rs, method=allocator, alignment=problem.alignment)
    if arena <= problem.budget:
        before, after = _no_spill_plan_events(problem, rs)
        plan.stats = {"path": "arena fits with no spills", "arena": arena}
    else:
        eng = _Online(problem, seq, replacement, "best" if allocator == "arena" else "first")
        eng.run()
        online = {id(r): r.address for r in eng.residencies}
        top = allocate_offline(eng.residencies, method=allocator, alignment=problem.alignment)
        if top > problem.budget:  # keep the online addresses
            for r in eng.residencies:
                r.address = online[id(r)]
            path = "online placement with replacement"
        else:
            path = "replacement, then offline placement"
        before, after = eng.events()
        plan.stats = {"path": path, "no_spill_arena": arena}
    plan.steps = steps_from_events(seq, before, after)
    plan.status = Status.FEASIBLE
    verify(g, plan)
    plan.lower_bound = 0
    if plan.objective == 0:
        plan.status = Status.OPTIMAL  # no traffic beyond the compulsory: nothing can do better
    plan.solve_time = time.perf_counter() - t0
    report(method, seconds=plan.solve_time, objective=plan.objective, bound=0, phase="done")
    return plan


def best_baseline(
    problem: Problem,
    *,
    combinations: Sequence[tuple[str, str, str]] = PROTOCOL,
    time_limit: float | None = 30.0,
) -> Plan:
    """The best of several baselines (by default the protocol's four); ``stats`` lists all.

    Ties go to the first combination listed.
    """
    t0 = time.perf_counter()
    plans = [
        baseline(problem, order=o, allocator=a, replacement=r, time_limit=time_limit)
        for o, a, r in combinations
    ]
    with_plan = [p for p in plans if p.status.has_plan]
    best = min(with_plan, key=lambda p: p.objective) if with_plan else plans[0]
    best.stats = dict(best.stats)
    best.stats["candidates"] = {p.method: p.objective for p in plans}
    best.options = dict(best.options, best_of=[p.method for p in plans])
    best.method = f"baseline ({best.method})"
    best.solve_time = time.perf_counter() - t0
    return best


def starting_point(
    problem: Problem, order: str | Sequence[str] | None, *, time_limit: float | None = 30.0
) -> tuple[list[str] | None, Plan]:
    """What an exact engine starts from: the fixed schedule (None when the order is free)
    and the best baseline plan for it (the protocol's four when the order is free; both
    replacements with the arena allocator for a fixed order)."""
    if order is None:
        return None, best_baseline(problem, time_limit=time_limit)
    seq = (
        make_order(problem, order, time_limit=time_limit)
        if isinstance(order, str)
        else check_schedule(problem.graph, order)
    )
    plans = [
        baseline(problem, order=seq, replacement=r, time_limit=time_limit) for r in REPLACEMENTS
    ]
    return seq, min(
        (p for p in plans if p.status.has_plan), key=lambda p: p.objective, default=plans[0]
    )
