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
from collections.abc import Collection, Sequence
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


def _bytes(mask: int, size: list[int]) -> int:
    """Total size of the tensors in ``mask``."""
    total = 0
    while mask:
        low = mask & -mask
        total += size[low.bit_length() - 1]
        mask ^= low
    return total


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
        # Bytes one extra load moves: the tensor's real size. ``size`` is liveness's aligned
        # size, which counts only for memory.
        self.load = [g.tensors[t].size for t in lv.tensors]
        for t in lv.tensors:
            real = g.tensors[t]
            own = real.size * (2 if real.kind is TensorKind.ACTIVATION else 1)
            self.cost.append(own if costs is None else costs.get(t, own))
        # Tensors live through the whole problem (see window_bound): index m, m+1, ...
        for name, size, cost in through:
            self.names.append(name)
            self.size.append(size)
            self.cost.append(cost)
            self.load.append(g.tensors[name].size if name in g.tensors else size)
        self.through = range(self.m, self.m + len(through))
        self.budget = problem.budget
        self.operands = [sorted(set(lv.reads[v]) | set(lv.writes[v])) for v in range(self.n)]
        self.opmask = [sum(1 << t for t in ops) for ops in self.operands]
        self.opsize = [sum(self.size[t] for t in ops) for ops in self.operands]
        self.cmask = lv.consumer_mask
        self.pmask = lv.pred_mask
        self.succ = lv.succs
        self.sources = sum(1 << v for v in range(self.n) if not self.pmask[v])
        # Gaps between a tensor's consecutive uses here (creation, reads): the most times
        # it can be away and come back. Through tensors: one.
        self.gaps = [
            max(1, (lv.producer[t] >= 0) + len(lv.consumers[t]) - 1) for t in range(self.m)
        ] + [1] * len(through)

    def fits_levels(self, levels: dict[int, int], budget: _Budget) -> bool | None:
        """Like :meth:`fits`, where tensor ``t`` may be away in at most ``levels[t]`` of
        its gaps (all of them: spilled; 0 or absent: always resident where live)."""
        spilled = 0
        limited = {}
        for t, k in levels.items():
            if k >= self.gaps[t]:
                spilled |= 1 << t
            elif k > 0:
                limited[t] = k
        if not limited:
            return self.fits(spilled, budget)
        n, size, cmask = self.n, self.size, self.cmask
        cap = self.budget - sum(self.size[t] for t in self.through if not (spilled >> t) & 1)
        if cap < 0:
            return False
        order = sorted(limited)
        lim_mask = sum(1 << t for t in order)
        full = (1 << n) - 1
        start = (0, 0, 0, (0,) * len(order))  # done, live, away (limited), gaps used
        seen = {start}
        stack = [(*start, self.sources)]  # and the ready operators
        while stack:
            done, live, away, used, ready = stack.pop()
            left = ready
            if done == full:
                return True
            if not budget.spend():
                return None
            here = live & ~away
            held = _bytes(here, size)
            steps = []
            while ready:
                low = ready & -ready
                ready ^= low
                v = low.bit_length() - 1
                om = self.opmask[v]
                mem = self.opsize[v] + held
                for t in self.operands[v]:
                    if (here >> t) & 1:
                        mem -= size[t]  # counted once, as an operand
                if mem > cap:
                    continue
                after = done | (1 << v)
                steps.append(v)
                if not om & lim_mask:
                    grow = 0
                    for t in self.operands[v]:
                        if not (spilled >> t) & 1:
                            grow += size[t] * (bool(cmask[t] & ~after) - ((live >> t) & 1))
                    if grow <= 0:
                        steps = [v]  # runs first without loss (see spill_set_relaxation)
                        break
            for v in steps:
                after = done | (1 << v)
                om = self.opmask[v]
                nxt = (live | om) & ~spilled
                x = nxt
                while x:
                    low = x & -x
                    x ^= low
                    if not cmask[low.bit_length() - 1] & ~after:
                        nxt &= ~low
                base = away & ~om & nxt
                # A limited tensor used here and read again later may leave for the gap
                # that starts here (if it has gaps left).
                choices = [
                    k
                    for k, t in enumerate(order)
                    if (om >> t) & 1 and (nxt >> t) & 1 and used[k] < limited[t]
                ]
                for pick in range(1 << len(choices)):
                    a2, u2 = base, list(used)
                    for j, k in enumerate(choices):
                        if (pick >> j) & 1:
                            a2 |= 1 << order[k]
                            u2[k] += 1
                    state = (after, nxt, a2, tuple(u2))
                    if state not in seen:
                        seen.add(state)
                        stack.append((*state, self._next_ready(left, v, after)))
        return False

    def _next_ready(self, ready: int, v: int, after: int) -> int:
        """The ready operators once ``v`` (ready) has run, ``after`` the operators run."""
        ready &= ~(1 << v)
        for s in self.succ[v]:
            if not self.pmask[s] & ~after:
                ready |= 1 << s
        return ready

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
        stack = [(0, 0, self.sources)]  # (operators run, live tensors not spilled, ready)
        while stack:
            done, live, ready = stack.pop()
            left = ready
            if done == full:
                return True
            if not budget.spend():
                return None
            held = _bytes(live, size)
            steps = []  # (operator, bytes while it runs, growth of the live bytes)
            while ready:
                low = ready & -ready
                ready ^= low
                v = low.bit_length() - 1
                mem = self.opsize[v] + held
                for t in self.operands[v]:
                    if (live >> t) & 1:
                        mem -= size[t]  # counted once, as an operand
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
                stack.append((after, nxt, self._next_ready(left, v, after)))
        return False


def spill_set_relaxation(
    problem: Problem,
    *,
    through: Sequence[tuple[str, int, int]] = (),
    costs: dict[str, int] | None = None,
    skip_if_fits: Collection[str] | None = None,
    work: int = 200_000,
    time_limit: float = math.inf,
    solver: str | None = None,
    _budget: _Budget | None = None,
) -> tuple[int, dict]:
    """A lower bound on the non-compulsory traffic of every plan of ``problem``, whatever
    its order: the optimum of the *spill-set relaxation*, or a proven bound on it.

    *The relaxation.* A tensor is *live across* step ``w`` of an order when it is not an
    operand of ``w``, it was made before ``w`` (graph inputs and parameters: read before
    ``w``), and an operator after ``w`` reads it. Its *gaps* are the stretches between its
    consecutive uses (creation, reads) in the order; it is live across exactly the steps
    inside them. Choose an order and, for each tensor, a *level* ``k >= 0``: the tensor
    may be away in ``k`` of its gaps (chosen with the order) and is counted at every other
    step it is live across; level ``k >= 1`` costs ``c(t) + (k - 1) size(t)``, where
    ``c(t)`` is ``2 size(t)`` for an activation and ``size(t)`` for a graph output, graph
    input or tracked parameter. The constraint: at every step, the (aligned) sizes of its
    operands plus those of the counted tensors sum to at most the budget. ``through``
    adds tensors live across every step (name, size, cost; one gap), and ``costs``
    replaces ``c(t)`` by name; both are for :func:`window_bound`, which argues them.
    ``skip_if_fits``: if some order fits with each of those tensors away in one gap,
    return 0 at once (the caller knows a solution that cheap already; 0 is valid).

    *Claim: every plan gives a solution that costs no more than its non-compulsory
    traffic.* Take its order, and as the level of ``t`` the number ``L(t)`` of gaps in
    which ``t`` is not resident at some step it is live across. (i) Cost: in each such
    gap a later reader (the gap's end) needs ``t`` resident again and it cannot be made
    again, so it is loaded inside that gap: ``L(t)`` different loads, none compulsory (a
    graph input or parameter was loaded for the read that opened the gap). An activation
    with a load needs a host copy, which only a store makes (graph outputs' store is
    compulsory). So the plan pays at least ``c(t) + (L(t) - 1) size(t)`` on ``t`` when
    ``L(t) >= 1``; events of different tensors are different. (ii) Memory: at each step
    the operands and every counted tensor (resident wherever live across, outside the
    ``L(t)`` gaps) are resident, in disjoint blocks of aligned size inside ``[0, S)``;
    the gaps where a tensor is away only at some steps are counted as away throughout,
    which only lowers the bytes. Moves (a tensor leaving and coming back elsewhere, even
    between two steps) change neither argument: at each step a tensor occupies a block or
    not. Multi-output operators: all outputs are operands of their step. Zero-size
    tensors cost and weigh nothing. Both settings: only tracked tensors appear
    (parameters are graph inputs when tracked). Recomputation is not part of the problem
    this bounds.

    *Solving it.* Fitting is monotone: higher levels only lower the bytes, for every
    order. A search over downsets (operator sets closed under predecessors; the live
    tensors are a function of the downset; with tensors at a level below their number of
    gaps, the state also holds which are away and how many gaps they used) decides
    whether some order fits with given levels (a tensor at its number of gaps is never
    counted). It runs first, without loss, any ready operator that fits, is no use of a
    tensor with such a partial level, and does not grow the live bytes (its outputs kept
    minus its inputs that die): moving it ahead of the steps that preceded it in a
    fitting order changes the bytes at each of them by that growth, at most zero, since
    none of them reads its outputs or the inputs that die with it, and no tensor's gaps
    change. Then combinatorial Benders: the master (a small MILP over binaries ``u(t, k)``
    = level at least ``k``) proposes the cheapest levels that meet every cut; if no order
    fits with them, they are raised to levels ``M`` with which still no order fits
    (tensors raised to all their gaps while that stays proven, then one gap at a time),
    and the cut "some ``t`` is above ``M(t)``" is added — every fitting choice meets it,
    since none at or below ``M`` fits. So the master's optimum (or its solver's proven
    bound) is a lower bound on the relaxation after every round; when an order fits with
    the proposed levels, it is the relaxation's optimum. ``work`` caps the search nodes
    (deterministic); the result is the master's bound when the effort ran out.

    Returns the bound and statistics: ``ssr_rounds``, ``ssr_work``, ``ssr_proven`` (the
    relaxation solved), ``ssr_spilled`` (tensors away somewhere in the fitting solution: a
    hint of what a good plan spills), ``ssr_cuts`` (the cuts, as lists of ``(tensor, k)``:
    every fitting choice has some tensor at level ``k`` or more).

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
    if skip_if_fits is not None:
        named = set(skip_if_fits)
        hint = {t: 1 for t in cand if fit.names[t] in named}  # each away in one gap
        if fit.fits_levels(hint, budget) is True:  # nothing to learn against that set
            stats["ssr_skipped"] = True
            stats["ssr_work"] = budget.used
            return 0, stats
    first = fit.fits(0, budget)
    if first is not False:
        stats["ssr_proven"] = first is True
        stats["ssr_work"] = budget.used
        return 0, stats
    if not cand:  # nothing can be spilled and nothing fits: no plan at all
        stats["ssr_work"] = budget.used
        stats["ssr_proven"] = True
        return 0, stats
    unit = math.gcd(*(fit.cost[t] for t in cand), *(fit.load[t] for t in cand))
    name = solver or ("highs" if backends.backend("highs").available() else "cbc")
    cuts: list[list[tuple[int, int]]] = []  # each: some (t, k) with t away in >= k gaps
    bound = 0
    while not budget.stopped:
        stats["ssr_rounds"] += 1
        limit = max(0.5, min(20.0, budget.until - time.perf_counter()))
        value, levels, exact = _hitting_set(cand, fit, unit, cuts, name, limit)
        if value is None:
            break
        bound = max(bound, value)
        answer = fit.fits_levels(levels, budget)
        if answer is not False:
            if answer is True and exact:
                stats["ssr_proven"] = True
                stats["ssr_spilled"] = [fit.names[t] for t in sorted(levels) if levels[t]]
            break
        grown = _grow(fit, levels, cand, budget)
        cut = [(t, grown.get(t, 0) + 1) for t in cand if grown.get(t, 0) < fit.gaps[t]]
        if not cut:  # no spill set fits: no plan (the caller's problem says why)
            stats["ssr_proven"] = True
            break
        cuts.append(cut)
    stats["ssr_work"] = budget.used
    stats["ssr_cuts"] = [[(fit.names[t], k) for t, k in c] for c in cuts]
    return bound, stats


def _grow(fit: _Fit, levels: dict[int, int], cand: list[int], budget: _Budget) -> dict:
    """Levels at or above ``levels`` with which no order fits (proven): tensors are raised
    to all their gaps in halves (cheapest first; a chunk is raised whole when that stays
    refuted), then the others one gap at a time."""
    levels = dict(levels)
    rest = sorted(
        (t for t in cand if levels.get(t, 0) < fit.gaps[t]), key=lambda t: (fit.cost[t], t)
    )
    todo = [rest]
    while todo and not budget.stopped:
        chunk = todo.pop()
        if not chunk:
            continue
        trial = {**levels, **{t: fit.gaps[t] for t in chunk}}
        if fit.fits_levels(trial, budget) is False:
            levels = trial
        elif len(chunk) > 1:
            half = len(chunk) // 2
            todo += [chunk[half:], chunk[:half]]  # the cheaper half is tried first
    for t in rest:
        while not budget.stopped and levels.get(t, 0) + 1 < fit.gaps[t]:
            trial = {**levels, t: levels.get(t, 0) + 1}
            if fit.fits_levels(trial, budget) is not False:
                break
            levels = trial
    return levels


def _hitting_set(
    cand: list[int],
    fit: _Fit,
    unit: int,
    cuts: list[list[tuple[int, int]]],
    solver: str,
    time_limit: float = 20.0,
) -> tuple[int | None, dict[int, int], bool]:
    """The cheapest levels meeting every cut (level ``k`` of ``t``: away in ``k`` gaps,
    costing ``c(t) + (k - 1) size(t)``): (proven lower bound on the cost, the levels found,
    whether they are proven cheapest). None if the solver proved nothing."""
    if not cuts:
        return 0, {}, True
    top: dict[int, int] = {}
    for cut in cuts:
        for t, k in cut:
            top[t] = max(top.get(t, 0), k)
    prob = pulp.LpProblem("spill_levels", pulp.LpMinimize)
    u = {
        (t, k): _var(prob, f"u{t}_{k}", cat=pulp.LpBinary)
        for t in sorted(top)
        for k in range(1, top[t] + 1)
    }
    prob += pulp.lpSum(
        ((fit.cost[t] if k == 1 else fit.load[t]) // unit) * var for (t, k), var in u.items()
    )
    for (t, k), var in u.items():
        if k > 1:
            prob += var <= u[t, k - 1]
    for j, cut in enumerate(cuts):
        prob += pulp.lpSum(u[t, k] for t, k in cut) >= 1, f"cut{j}"
    out = backends.backend(solver).solve(prob, time_limit=time_limit, threads=1, integral_gap=0.999)
    levels: dict[int, int] = {}
    for (t, k), var in u.items():
        if out.values.get(var.name, 0) > 0.5:
            levels[t] = max(levels.get(t, 0), k)
    if out.status == backends.OPTIMAL and out.objective is not None:
        return round(out.objective) * unit, levels, True
    if out.bound is not None:
        return max(0, math.ceil(out.bound - 1e-6)) * unit, levels, False
    return None, levels, False


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
    contained in an earlier one are skipped, and so is a window with which the cut
    bound's own spill set fits (each of its tensors away in one gap): its cuts could not
    exclude that solution (skipping a window only weakens the bound). The orders only
    choose operator sets: any
    set gives a valid bound.

    *Why a window's cuts hold for every plan.* For a plan, let ``L(t)`` count the loads of
    ``t`` that follow an operator at which ``t`` was live across (in the whole order) and
    not resident — the first such load after each such operator; ``y(t) = [L(t) >= 1]`` is
    the ``y`` of :func:`~cosma.solvers.dnc.cut_bound` (for graph inputs and parameters,
    live across = between two of its reads), and the plan pays at least ``c(t) + (L(t) -
    1) size(t)`` on ``t`` when ``L(t) >= 1`` (those loads are not compulsory; an
    activation's reload needs its store). The window is posed as
    :func:`~cosma.solvers.dnc.relaxed_problem` (tensors made outside become graph inputs,
    tensors read outside graph outputs) with the whole problem's ``c``, plus the tensors
    ``H`` does not touch that are live across every operator of ``H`` in every order
    (must-live there, see :func:`~cosma.solvers.dnc.spill_bound`) as ``through`` tensors
    (one gap). Restrict the plan to ``H`` (its order of ``H``'s operators) and take as
    level of ``t`` the number ``l(t)`` of its gaps within ``H`` in which it is not
    resident at some step it is live across within ``H``. A tensor live across ``w``
    within ``H`` (made, or for an outside tensor read, before ``w``, and read after ``w``
    by ``H``) is live across ``w`` in the whole order too; a through tensor is, by
    definition. Each such gap ends with a read in ``H``, so it holds a load counted by
    ``L(t)``, and gaps are disjoint in time: ``l(t) <= L(t)``. At each step of ``H`` its
    operands and the counted tensors (through tensors included) are resident, disjoint,
    within the budget: the restricted order fits with levels ``l``. So every cut of the
    window ("some ``t`` has level ``k`` or more", found when no order of ``H`` fits with
    lower levels) holds with ``L``, and the window's value is at most the plan's traffic.
    The cuts of all windows hold together, whether windows overlap or not: they are added
    as rows to the cut bound's program (entry ``(t, k)`` as ``L(t) >= k``), whose minimum
    is then a bound for every plan.

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
    budget = _Budget(work, t0 + 0.8 * time_limit)  # the rest for the final program
    order = list(order)
    pos = {v: i for i, v in enumerate(order)}
    g = problem.graph
    lv = liveness(g, setting=problem.setting, alignment=problem.alignment)
    found = _cut_rows(problem, t0 + 0.2 * time_limit, [order])
    rows = found[0]

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
    # The cut bound alone, and its spill set: a window with which that set fits cannot cut
    # that solution off, and is skipped (skipping a window only weakens the bound).
    best, base = cut_bound(
        problem, time_limit=max(0.5, min(10.0, 0.1 * time_limit)), solver=solver, rows=found
    )
    hint = base["cut_spilled"]
    stats["window_skipped"] = 0
    cuts: list[list[str]] = []
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
            skip_if_fits=hint,
            _budget=budget,
        )
        stats["window_skipped"] += st.get("ssr_skipped", False)
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
        left = max(1.0, min(20.0, until - time.perf_counter()))
        combined, _ = cut_bound(
            problem, time_limit=left, solver=solver, orders=[order], cuts=cuts, rows=found
        )
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
