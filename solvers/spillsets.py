"""A lower bound for the whole graph from *spill sets with one consistent order*.

:func:`~cosma.solvers.dnc.cut_bound` lets every operator pick its own "ran before" set, so
it cannot see that the sets of all operators come from one order. This module solves, on
windows of the graph, the relaxation in which a tensor is either resident wherever it is
live or paid for once, with the order of the window free but one order for all its steps:

- :func:`spill_set_relaxation` — the exact optimum of that relaxation on a (sub)problem,
  by combinatorial Benders: a small hitting-set MILP proposes the cheapest spill set not
  yet refuted, a search over downsets decides whether some order fits with it, and a
  refuted set is grown to a maximal refuted set whose complement becomes a cut. The
  master's optimum is a valid bound after every round, so a stopped run still counts.
- :func:`window_bound` — the relaxation on windows of an order around the operators where
  the cut bound has rows (and where a plan spills), packed so that no two windows share a
  tensor, plus the cut bound on every tensor the windows do not touch.

Effort is counted in search nodes (``work``), not seconds, so the same call gives the same
bound whatever the load of the machine; a wall-clock ``time_limit`` only guards the caller's
own limit (when it ends a run early, the bound is still valid, only possibly lower).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulp

from cosma.graph import TensorKind
from cosma.plan import EventKind, Plan
from cosma.problem import Problem
from cosma.solvers import backends


@dataclass
class _Budget:
    """Search nodes left (deterministic effort) and a wall-clock guard."""

    work: int
    until: float = math.inf
    used: int = 0
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    def spend(self, k: int = 1) -> bool:
        """Count ``k`` nodes; False once the effort or the time is used up."""
        self.used += k
        if self.used > self.work or (self.used & 1023 == 0 and time.perf_counter() > self.until):
            self.stopped = True
        return not self.stopped


class _Fit:
    """Whether some order of a problem fits with a given set of tensors spilled (see
    :func:`spill_set_relaxation` for the model). Operators are numbered in the liveness
    topological order, tensors by the liveness index; sets are int bitmasks."""

    def __init__(
        self,
        problem: Problem,
        through: Sequence[tuple[str, int, int]] = (),
        costs: dict[str, int] | None = None,
    ):
        from cosma.liveness import liveness

        g = problem.graph
        lv = self.lv = liveness(g, setting=problem.setting, alignment=problem.alignment)
        self.n = lv.n
        self.m = len(lv.tensors)
        self.size = list(lv.size)
        self.names = list(lv.tensors)
        self.cost = []
        for t in lv.tensors:
            real = g.tensors[t]
            own = real.size * (2 if real.kind is TensorKind.ACTIVATION else 1)
            self.cost.append(own if costs is None else costs.get(t, own))
        # Tensors live through the whole problem (see window_bound): index m, m+1, ...
        for name, size, cost in through:
            self.names.append(name)
            self.size.append(size)
            self.cost.append(cost)
        self.through = range(self.m, self.m + len(through))
        self.budget = problem.budget
        self.operands = [sorted(set(lv.reads[v]) | set(lv.writes[v])) for v in range(self.n)]
        self.opmask = [sum(1 << t for t in ops) for ops in self.operands]
        self.opsize = [sum(self.size[t] for t in ops) for ops in self.operands]
        self.cmask = lv.consumer_mask
        self.pmask = lv.pred_mask

    def candidates(self) -> list[int]:
        """Tensors whose spilling can change anything: non-empty, and live across some
        step in some order (made and read; or read by two operators)."""
        lv = self.lv
        out = [
            t
            for t in range(self.m)
            if self.size[t] > 0
            and ((lv.producer[t] >= 0 and lv.consumers[t]) or len(lv.consumers[t]) >= 2)
        ]
        out += [t for t in self.through if self.size[t] > 0]
        return out

    def fits(self, spilled: int, budget: _Budget) -> bool | None:
        """True if some order fits with ``spilled`` out, False if none does (proven),
        None if the effort ran out first."""
        n, size, cmask = self.n, self.size, self.cmask
        cap = self.budget - sum(self.size[t] for t in self.through if not (spilled >> t) & 1)
        if cap < 0:
            return False
        full = (1 << n) - 1
        seen = {0}
        stack = [(0, 0)]  # (operators run, live tensors not spilled)
        while stack:
            done, live = stack.pop()
            if done == full:
                return True
            if not budget.spend():
                return None
            steps = []  # (operator, bytes while it runs, growth of the live bytes)
            for v in range(n):
                if (done >> v) & 1 or self.pmask[v] & ~done:
                    continue
                om = self.opmask[v]
                mem = self.opsize[v]
                x = live & ~om
                while x:
                    low = x & -x
                    mem += size[low.bit_length() - 1]
                    x ^= low
                if mem > cap:
                    continue
                after = done | (1 << v)
                grow = 0
                for t in self.operands[v]:
                    if not (spilled >> t) & 1:
                        grow += size[t] * (bool(cmask[t] & ~after) - ((live >> t) & 1))
                steps.append((v, grow))
                if grow <= 0:
                    steps = [(v, grow)]  # runs first without loss (see the docstring)
                    break
            for v, _ in steps:
                after = done | (1 << v)
                if after in seen:
                    continue
                seen.add(after)
                nxt = (live | self.opmask[v]) & ~spilled
                x = nxt
                while x:
                    low = x & -x
                    x ^= low
                    if not cmask[low.bit_length() - 1] & ~after:
                        nxt &= ~low
                stack.append((after, nxt))
        return False


def spill_set_relaxation(
    problem: Problem,
    *,
    through: Sequence[tuple[str, int, int]] = (),
    costs: dict[str, int] | None = None,
    work: int = 200_000,
    time_limit: float = math.inf,
    solver: str | None = None,
    _budget: _Budget | None = None,
) -> tuple[int, dict]:
    """A lower bound on the non-compulsory traffic of every plan of ``problem``, whatever
    its order: the optimum of the *spill-set relaxation*, or a proven bound on it.

    *The relaxation.* Choose an order ``sigma`` of the operators and a set ``Y`` of
    tracked tensors, paying ``c(t)`` for each ``t`` in ``Y``: ``2 size(t)`` for an
    activation, ``size(t)`` for a graph output, graph input or tracked parameter. A tensor
    is *live across* step ``w`` of ``sigma`` when it is not an operand of ``w``, it was made
    before ``w`` (graph inputs and parameters: read before ``w``), and an operator after
    ``w`` reads it. The constraint: at every step ``w``, the (aligned) sizes of the operands
    of ``w`` plus those of the tensors live across ``w`` and not in ``Y`` sum to at most the
    budget. ``through`` adds tensors that are live across every step (name, size, cost),
    and ``costs`` replaces ``c(t)`` by name; both are for :func:`window_bound`, which
    argues their validity.

    *Claim: every plan gives a solution that costs no more than its non-compulsory
    traffic.* Take its order and ``Y`` = the tensors not resident at some step they are
    live across. (i) Cost: if ``t`` is not resident at a step ``w`` it is live across, a
    later reader needs it resident again and it cannot be made again, so it is loaded: an
    activation needs a host copy, which only a store makes (graph outputs' store is
    compulsory), and a graph input or parameter was already loaded once before ``w`` (only
    the first load is compulsory): at least ``c(t)`` for ``t``, and events of different
    tensors are different. (ii) Memory: at step ``w`` the operands of ``w`` and every
    tensor live across ``w`` outside ``Y`` are resident, in disjoint blocks of aligned size
    inside ``[0, S)``. Moves (a tensor leaving and coming back elsewhere, even between two
    steps) change neither argument: at each step a tensor either occupies a block or not.
    Multi-output operators: all outputs are operands of their step. Zero-size tensors cost
    and weigh nothing. Both settings: only tracked tensors appear (parameters are graph
    inputs when tracked). Recomputation is not part of the problem this bounds.

    *Solving it.* Fitting is monotone: spilling more only lowers every step's bytes, for
    every order. A search over downsets (operator sets closed under predecessors; the live
    tensors are a function of the downset, so each is visited once) decides whether some
    order fits with ``Y`` out. It runs first, without loss, any ready operator that fits
    and does not grow the live bytes (its outputs kept minus its inputs that die): moving
    it ahead of the steps that preceded it in a fitting order changes the bytes at each of
    them by that growth, at most zero, since none of them reads its outputs or the inputs
    that die with it. Then combinatorial Benders: the master (a hitting-set MILP) proposes
    the cheapest ``Y`` that meets every cut; if no order fits with it, ``Y`` is grown to a
    set ``M`` with which still no order fits (adding tensors while that stays proven), and
    the cut "spill some tensor outside ``M``" is added — every fitting spill set meets it,
    since no subset of ``M`` fits. So the master's optimum (or its solver's proven bound)
    is a lower bound on the relaxation after every round; when an order fits with the
    proposed ``Y``, the bound is the relaxation's optimum. ``work`` caps the search nodes
    (deterministic); the result is the master's bound at the point the effort ran out.

    Returns the bound and statistics: ``ssr_rounds``, ``ssr_work``, ``ssr_proven`` (the
    relaxation solved), ``ssr_spilled`` (the fitting ``Y`` when found: a hint of what a good
    plan spills), ``ssr_cuts`` (the cuts, as lists of tensor names: every fitting spill
    set holds a tensor of each).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> spill_set_relaxation(Problem(g, 16))[0]  # at c: q, r and p need 20 > 16: spill p
    20
    """
    budget = _budget or _Budget(work, time.perf_counter() + time_limit)
    fit = _Fit(problem, through, costs)
    cand = fit.candidates()
    stats: dict = {"ssr_rounds": 0, "ssr_proven": False, "ssr_spilled": [], "ssr_cuts": []}
    first = fit.fits(0, budget)
    if first is not False:
        stats["ssr_proven"] = first is True
        stats["ssr_work"] = budget.used
        return 0, stats
    if not cand:  # nothing can be spilled and nothing fits: no plan at all
        stats["ssr_work"] = budget.used
        stats["ssr_proven"] = True
        return 0, stats
    unit = math.gcd(*(fit.cost[t] for t in cand))
    name = solver or ("highs" if backends.backend("highs").available() else "cbc")
    cuts: list[list[int]] = []
    bound = 0
    while not budget.stopped:
        stats["ssr_rounds"] += 1
        value, chosen, exact = _hitting_set(cand, fit.cost, unit, cuts, name)
        if value is None:
            break
        bound = max(bound, value)
        spilled = sum(1 << t for t in chosen)
        answer = fit.fits(spilled, budget)
        if answer is not False:
            if answer is True and exact:
                stats["ssr_proven"] = True
                stats["ssr_spilled"] = [fit.names[t] for t in chosen]
            break
        grown = _grow(fit, spilled, [t for t in cand if not (spilled >> t) & 1], budget)
        cut = [t for t in cand if not (grown >> t) & 1]
        if not cut:  # no spill set fits: no plan (the caller's problem says why)
            stats["ssr_proven"] = True
            break
        cuts.append(cut)
    stats["ssr_work"] = budget.used
    stats["ssr_cuts"] = [[fit.names[t] for t in c] for c in cuts]
    return bound, stats


def _grow(fit: _Fit, spilled: int, rest: list[int], budget: _Budget) -> int:
    """A superset of ``spilled`` with which no order fits (proven), adding the tensors of
    ``rest`` (cheapest first) in halves: a chunk is added whole when that stays refuted."""
    rest = sorted(rest, key=lambda t: (fit.cost[t], t))
    todo = [rest]
    while todo and not budget.stopped:
        chunk = todo.pop()
        if not chunk:
            continue
        mask = sum(1 << t for t in chunk)
        if fit.fits(spilled | mask, budget) is False:
            spilled |= mask
        elif len(chunk) > 1:
            half = len(chunk) // 2
            todo += [chunk[half:], chunk[:half]]  # the cheaper half is tried first
    return spilled


def _hitting_set(
    cand: list[int], cost: list[int], unit: int, cuts: list[list[int]], solver: str
) -> tuple[int | None, list[int], bool]:
    """The cheapest set of candidates meeting every cut: (proven lower bound on its cost,
    the set found, whether it is proven cheapest). None if the solver proved nothing."""
    if not cuts:
        return 0, [], True
    used = sorted({t for c in cuts for t in c})
    prob = pulp.LpProblem("spill_sets", pulp.LpMinimize)
    y = {t: _var(prob, f"y{t}", cat=pulp.LpBinary) for t in used}
    prob += pulp.lpSum((cost[t] // unit) * y[t] for t in used)
    for k, cut in enumerate(cuts):
        prob += pulp.lpSum(y[t] for t in cut) >= 1, f"cut{k}"
    out = backends.backend(solver).solve(prob, time_limit=20.0, threads=1, integral_gap=0.999)
    chosen = [t for t in used if out.values.get(y[t].name, 0) > 0.5]
    if out.status == backends.OPTIMAL and out.objective is not None:
        return round(out.objective) * unit, chosen, True
    if out.bound is not None:
        return max(0, math.ceil(out.bound - 1e-6)) * unit, chosen, False
    return None, chosen, False


def _var(prob: pulp.LpProblem, name: str, **kw) -> pulp.LpVariable:
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, **kw)
    return pulp.LpVariable(name, **kw)


# --- windows of the whole graph ---------------------------------------------------------------


def window_bound(
    problem: Problem,
    order: Sequence[str],
    *,
    plans: Sequence[Plan] = (),
    orders: Sequence[Sequence[str]] = (),
    max_ops: int = 120,
    work: int = 1_500_000,
    time_limit: float = 30.0,
    solver: str | None = None,
) -> tuple[int, dict]:
    """A lower bound on the non-compulsory traffic of every plan of ``problem``, whatever
    its order: :func:`spill_set_relaxation` on windows of ``order``, its cuts added to
    :func:`~cosma.solvers.dnc.cut_bound`.

    *Windows.* First, operator sets around the cut bound's rows taken from the graph
    itself (:func:`_dag_windows`); then spans of ``order`` (at most ``max_ops`` operators)
    around each operator
    where the cut bound has a row (from the first producer to the last reader of the
    tensors its row counts), then around each reload in ``plans`` (from the tensor's
    creation or previous use to the reload), or if neither gives one, around each step
    where ``order`` without spills holds more than the budget; overlapping spans are
    merged while the union stays within ``max_ops``; windows are solved in that order
    while effort lasts; then the same row windows in each of ``orders`` (other schedules
    cut the graph differently: a window's operator set decides what it sees); windows
    contained in an earlier one are skipped. The orders only choose operator sets: any
    set gives a valid bound.

    *Why a window's cuts hold for every plan.* Let ``H`` be the window's operators and
    ``y(t) = 1`` when a plan does not keep ``t`` resident at some operator it is live
    across (the ``y`` of :func:`~cosma.solvers.dnc.cut_bound`; for graph inputs and
    parameters, an operator between two of its reads): the plan then pays at least
    ``c(t)`` on ``t`` (2 ``size`` for an activation, ``size`` otherwise, see
    :func:`spill_set_relaxation`). The window is posed as
    :func:`~cosma.solvers.dnc.relaxed_problem` (tensors made outside become graph inputs,
    tensors read outside graph outputs) with the whole problem's ``c``, plus the tensors
    ``H`` does not touch that are live across every operator of ``H`` in every order
    (must-live there, see :func:`~cosma.solvers.dnc.spill_bound`) as ``through`` tensors.
    Restrict a plan to ``H``: its order, and ``Y_H`` = the tensors not resident at some
    step of ``H`` they are live across within ``H``. A tensor live across ``w`` within
    ``H`` (made, or for an outside tensor read, before ``w``, and read after ``w`` by
    ``H``) is live across ``w`` in the whole order too, so ``Y_H`` is inside the plan's
    ``{y = 1}``; and at each step of ``H`` its operands and the tensors live across it
    outside ``Y_H`` (through tensors included) are resident, disjoint, within the budget:
    the restricted order fits with ``Y_H`` out. So every cut of the window ("some tensor
    outside ``M`` is spilled", no order of ``H`` fitting with ``M`` out) holds for the
    plan's ``y``, and so does the window's value (at most ``sum c(t) y(t)``). The cuts of
    all windows hold together, whether windows overlap or not: they are added as rows to
    the cut bound's program, whose minimum is then a bound for every plan.

    Effort: ``work`` search nodes in all (deterministic); ``time_limit`` seconds only as a
    guard (a guarded stop keeps a valid, possibly lower, bound). Statistics:
    ``window_windows``, ``window_values`` (per window), ``window_cuts``,
    ``window_spilled`` (fitting spill sets found), ``window_work``, ``window_stopped``,
    ``window_bound``.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> window_bound(Problem(g, 16), ["a", "b", "c", "d"])[0]
    20
    """
    from cosma.liveness import liveness
    from cosma.solvers.dnc import _cut_rows, _must_live, cut_bound, relaxed_problem

    t0 = time.perf_counter()
    until = t0 + time_limit
    budget = _Budget(work, until)
    order = list(order)
    pos = {v: i for i, v in enumerate(order)}
    g = problem.graph
    lv = liveness(g, setting=problem.setting, alignment=problem.alignment)
    rows, _ = _cut_rows(problem, t0 + 0.2 * time_limit, [order])

    def row_windows(seq: list[str]) -> list[list[str]]:
        at_ = {v: i for i, v in enumerate(seq)}
        spans: list[tuple[int, int]] = []
        half = max(1, max_ops // 2)
        for v, _cap, local, _free in rows:
            at = at_[lv.ops[v]]
            lo = min([at, *(at_[lv.ops[lv.producer[t]]] for t in local)])
            hi = max([at, *(at_[lv.ops[c]] for t in local for c in lv.consumers[t])]) + 1
            if hi - lo > max_ops:
                lo, hi = max(lo, at - half), min(hi, at + half + 1)
                if hi - lo > max_ops:
                    hi = lo + max_ops
            spans.append((lo, hi))
        return [seq[a:b] for a, b in _merge(spans, max_ops)]

    windows = _dag_windows(lv, rows, max_ops) + row_windows(order)
    reloads = [w for p in plans for w in _reload_spans(problem, p, pos, max_ops)]
    if not windows and not reloads:
        reloads = _overload_spans(problem, order, max_ops)
    for extra in orders:
        if sorted(extra) == sorted(order):
            windows += row_windows(list(extra))
    windows += [order[a:b] for a, b in _merge(reloads, max_ops)]
    seen: list[frozenset[str]] = []
    for ops in windows:
        key = frozenset(ops)
        if not any(key <= other for other in seen):
            seen.append(key)
    windows = [[v for v in order if v in key] for key in seen]
    stats: dict = {"window_windows": len(windows), "window_values": {}, "window_spilled": {}}
    _, idx, both, ml_cost = _must_live(problem)
    costs = {}
    for t in lv.tensors:
        real = g.tensors[t]
        costs[t] = real.size * (2 if real.kind is TensorKind.ACTIVATION else 1)
    cuts: list[list[str]] = []
    best = 0
    for k, ops in enumerate(windows):
        if budget.stopped:
            break
        own = {t for v in ops for t in (*g.operators[v].inputs, *g.operators[v].outputs)}
        mask = sum(1 << idx[v] for v in ops)
        through = sorted(t for t, m in both.items() if m & mask == mask and t not in own)
        value, st = spill_set_relaxation(
            relaxed_problem(problem, ops),
            through=[(t, lv.size[lv.tensor_index[t]], ml_cost[t]) for t in through],
            costs=costs,
            solver=solver,
            _budget=budget,
        )
        label = f"{k}: {ops[0]} .. {ops[-1]} ({len(ops)} operators)"
        stats["window_values"][label] = value
        if st["ssr_spilled"]:
            stats["window_spilled"][label] = st["ssr_spilled"]
        cuts += st["ssr_cuts"]
        best = max(best, value)
    stats["window_cuts"] = len(cuts)
    stats["window_work"] = budget.used
    stats["window_stopped"] = budget.stopped
    if cuts:
        left = max(0.5, min(20.0, until - time.perf_counter()))
        combined, _ = cut_bound(problem, time_limit=left, solver=solver, orders=[order], cuts=cuts)
        best = max(best, combined)
    stats["window_bound"] = best
    return best, stats


def _reload_spans(
    problem: Problem, plan: Plan, pos: dict[str, int], max_ops: int
) -> list[tuple[int, int]]:
    """Spans of the order (positions of ``pos``) from a reloaded tensor's creation or
    previous use in ``plan`` to the reload, at most ``max_ops`` long (cut at the reload)."""
    g = problem.graph
    last: dict[str, int] = {}
    spans = []
    for step in plan.steps:
        at = pos.get(step.operator)
        if at is None:
            continue
        op = g.operators[step.operator]
        for e in step.before:
            if e.kind is EventKind.LOAD and e.tensor in last:
                spans.append((max(last[e.tensor], at + 1 - max_ops), at + 1))
        for t in (*op.inputs, *op.outputs):
            last[t] = at
    return spans


def _dag_windows(lv, rows, max_ops: int) -> list[list[str]]:
    """Operator sets around the cut bound's rows, whatever the order: for a row at ``v``,
    the operators between the tensors its row counts (descendants of their producers that
    are ancestors of their readers or of ``v``); overlapping sets are merged while the
    union has at most ``max_ops`` operators; then operators whose predecessors are all in
    the set join it (in topological order) up to ``max_ops``, so that a window also holds
    the work that can run beside it (e.g. another cell's preprocessing of its tensors)."""
    anc, desc = lv.reach()
    sets: list[int] = []
    for v, _cap, local, _free in rows:
        down, up = 0, (1 << v) | anc[v]
        for t in local:
            down |= (1 << lv.producer[t]) | desc[lv.producer[t]]
            for c in lv.consumers[t]:
                up |= (1 << c) | anc[c]
        w = down & up | (1 << v)
        if w.bit_count() > max_ops:
            continue
        for k, other in enumerate(sets):
            if other & w and (other | w).bit_count() <= max_ops:
                sets[k] = other | w
                break
        else:
            sets.append(w)
    out = []
    for w in sets:
        grown = True
        while grown and w.bit_count() < max_ops:
            grown = False
            for u in range(lv.n):
                if not (w >> u) & 1 and lv.pred_mask[u] and not lv.pred_mask[u] & ~w:
                    w |= 1 << u
                    grown = True
                    if w.bit_count() >= max_ops:
                        break
        out.append([lv.ops[u] for u in range(lv.n) if (w >> u) & 1])
    return out


def _overload_spans(problem: Problem, order: list[str], max_ops: int) -> list[tuple[int, int]]:
    """Spans of ``order`` around each step where its no-spill live bytes exceed the budget:
    from the first step of a tensor live there to its last (at most ``max_ops`` long)."""
    from cosma.liveness import liveness

    lv = liveness(problem.graph, setting=problem.setting, alignment=problem.alignment)
    idx = lv.indices(order)
    spans = []
    live = lv.intervals(idx)
    for i, total in enumerate(lv.profile(idx)):
        if total <= problem.budget:
            continue
        lo = min([i, *(s for s, e in live if s <= i <= e)])
        hi = max([i, *(e for s, e in live if s <= i <= e)]) + 1
        lo, hi = max(lo, i - max_ops // 2), min(hi, i + max_ops // 2 + 1)
        spans.append((lo, min(hi, lo + max_ops)))
    return spans


def _merge(spans: list[tuple[int, int]], max_ops: int) -> list[tuple[int, int]]:
    """Overlapping spans merged while the union stays within ``max_ops``."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(set(spans)):
        if out and a < out[-1][1] and max(b, out[-1][1]) - out[-1][0] <= max_ops:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        elif not out or (a, b) != out[-1]:
            out.append((a, b))
    return out
