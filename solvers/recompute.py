"""Recompute versus reload on the accelerator (issue 13, deliverable 3): the part of the two
exact engines (:mod:`~cosma.solvers.milp`, :mod:`~cosma.solvers.cpsat`) that lets a dropped
activation come back by re-running its producer instead of by a load.

**Objective.** ``non-compulsory traffic + rate x recomputed MACs``: ``rate`` is bytes per MAC
(:func:`cosma.options.recompute_rate`, or DRAM bandwidth / peak MAC rate,
:func:`cosma.options.accelerator_rate`); MACs come from :mod:`cosma.cost`. With the rate as
an exact fraction ``num/den``, the engines minimise the whole number ``den x traffic + num x
MACs`` (over the GCD of the coefficients), so bounds round up exactly as without recompute.
Nothing here is built unless a rate is given: the default models are unchanged.

**Variables added** (time-indexed like the engines; the *gap* ``t`` is the moment after step
``t-1``'s operator and before step ``t``'s):

- ``y[p,t]`` = 1 if producer ``p`` is re-run in gap ``t``, for ``t`` from ``p``'s first
  possible step + 1 to the last step its outputs may be read at (in joint mode, only after
  ``p`` first ran: ``y[p,t] <= sum_{k<t} x[p,k]``); it costs ``rate x cost(p)``;
- ``tr[p,t]``, a *light* re-run, in the later gaps where an output of ``p`` may still be
  resident (to feed another re-run): it costs the same and makes the outputs resident; its
  gap memory is not checked (a relaxation: the model stays small), and its inputs must be
  there as far as the model can say: inside an input's lifetime as for ``y``; after it,
  the input stayed from its last modelled step (``keep[i,u]`` = 1 at every step ``u`` in
  between, counted in those steps' capacity rows, non-increasing in ``u``) or came back
  after that step (``late[i]``: by a re-run with a variable, or by a load or a re-run
  without one, ``other[i]``, charged once at the cheaper of the two);
- ``gl[i,t]`` = 1 if input ``i`` of a re-run is loaded only for it, inside the gap (a
  *transient* load: ``size(i)`` bytes; an activation must have been stored,
  ``gl[i,t] <= s[i]``);
- ``k[a,t]`` >= ``r[a,t-1] + r[a,t] - 1 - l[a,t] - made(a,t)``: ``a`` is kept through gap
  ``t`` (resident on both sides, neither reloaded nor re-made there), and ``g[t] = sum_a
  size[a] k[a,t]``; ``made(a,t)`` is ``y[prod(a),t]`` or ``tr[prod(a),t]``.

**Rows added**:

1. a tensor becomes resident by a load, by its creation, *or by a re-run*: the engines' load
   rows get ``- made(a,t)``;
2. inputs of a re-run are there: ``y[p,t] <= r[i,t-1] + r[i,t] + gl[i,t] + made(i,t)`` for
   every tracked input ``i`` of ``p``;
3. the gap holds the re-run: ``g[t] - sum_{a in IO(p)} size[a] k[a,t] + size(IO(p))
   y[p,t] <= S``, ``IO(p)`` the tracked inputs and outputs of ``p``;
4. lifetimes grow one level: an input of a producer may stay resident as long as that
   producer's outputs may be read (so that ``r[i,t-1]``, ``r[i,t]`` exist wherever
   ``y[p,t]`` does).

The engines' move cuts (MILP) and forced-reload rows are left out with recompute (both
assume a tensor comes back only by a load), and the CP-SAT model lets an address change at a
re-run as at a load.

**Why the optimum is still a lower bound.** Map any valid plan (SPEC §3 with recompute
events, addresses and moves) onto the model as the engines' docstrings do (``r[a,t]`` = 1
while ``a`` is resident during step ``t``, inside the model's lifetimes), and for each
re-run of ``p`` after step ``t-1`` and before step ``t`` set ``y[p,t]`` = 1 if that variable
exists, else ``tr[p,t]`` = 1 if that one does (else the re-run makes outputs that nothing in
the model reads again: leave it out); for an input ``i`` of a light re-run at gap ``t`` past
its lifetime, ``keep[i,u]`` = 1 while the plan holds ``i`` without a break since its last
modelled step, ``late[i]`` = 1 if it brings ``i`` back after that step, ``other[i]`` = 1 if
it does so by a load or by a re-run that has no variable (at least one such event, which
costs at least the cheaper of the two); ``gl[i,t]`` = 1 if the plan loads ``i`` in that gap
and ``i`` is resident neither at step ``t-1`` nor at ``t``; ``k`` at its lower bound
(clipped at 0), ``g`` accordingly. Row 1: a 0 -> 1 change of ``r[a,t]`` in the plan is a
creation, a load or a re-run in gap ``t`` (a re-run after the last gap of ``tr`` cannot make
``a`` resident inside its lifetime). Row 2: when ``p`` re-runs in gap ``t`` (``y``) each
tracked input ``i`` is resident, and ``(i,t-1)``, ``(i,t)`` are in ``i``'s grown lifetime
(row 4); ``i`` was resident at the end of step ``t-1``, or arrived in the gap by a load
(then it is resident at ``t``, or that load is transient) or by a re-run in the same gap.
Row 3: right after that re-run, ``IO(p)`` is resident, and so is every ``a`` kept through
the gap (``k[a,t]`` > 0 only for those), all disjoint inside ``[0, S)``; in the gaps where
``p`` does not re-run, ``g[t]`` counts only tensors resident at step ``t``, at most ``S``.
The objective counts one re-run per ``(p,t)`` set to 1 (the plan runs at least one), each
transient load once, and the engines' loads and stores as before, so it is at most the
plan's objective. Several re-runs of one gap are charged separately in row 3 (each at its
own moment), never together, so no plan is cut off. Hence the model optimum, and any bound a
solver proves on it, bound every plan from below. ``tests/test_recompute.py`` checks this
against an independent exhaustive search over event sequences on tiny graphs.

**From a solution to a plan** (:func:`build_plan`). Gaps are given their own time slots
(slot ``2t`` is gap ``t``, slot ``2t+1`` is step ``t``); each tensor's residency is cut into
blocks that start with a create, a recompute or a load and end at their last use; inputs of
a recompute are kept (or loaded, or recomputed, transiently) into its gap slot, and every
output of a recomputed producer is resident in that slot. The blocks are placed exactly
(:func:`cosma.solvers.placement.place_with_moves`, moves paid as loads) and turned into
events; the plan is replayed, which measures its objective. The model does not see the
order of several recomputes inside one gap, nor addresses in gaps, so a decoded plan can
cost more than the solution (or fail to place): then the answer is ``feasible`` with the
solver's bound, never ``optimal`` unless the replayed plan meets the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from cosma.cost import operator_cost
from cosma.deadline import Deadline
from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Event, EventKind, Plan, Status, Step, create, drop, load, store
from cosma.problem import Problem
from cosma.simulator import verify
from cosma.solvers.baselines import Residency
from cosma.solvers.placement import place_with_moves


def value(x: Fraction) -> int | float:
    """A combined objective as plans carry it: whole when it is, else the nearest float."""
    return int(x) if x.denominator == 1 else float(x)


def producers(problem: Problem) -> dict[str, list[str]]:
    """Operators whose re-run brings back a tracked activation or graph output, with their
    tracked outputs."""
    g = problem.graph
    tracked = set(g.tracked(problem.setting))
    out: dict[str, list[str]] = {}
    for v in g.file_order:
        outs = [o for o in g.operators[v].outputs if o in tracked]
        if any(g.tensors[o].kind in (TensorKind.ACTIVATION, TensorKind.OUTPUT) for o in outs):
            out[v] = outs
    return out


def inputs_of(problem: Problem, p: str) -> list[str]:
    """Tracked inputs of ``p`` (what a re-run of ``p`` needs resident), each once."""
    g = problem.graph
    tracked = set(g.tracked(problem.setting))
    return list(dict.fromkeys(i for i in g.operators[p].inputs if i in tracked))


def extend(
    problem: Problem,
    window: Mapping[str, tuple[int, int]],
    life: Mapping[str, tuple[int, int]],
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Lifetimes grown for recompute (row 4), the gaps each producer may re-run in (until
    its outputs' last reads), and the later gaps where a re-run is *light* (only to feed
    another re-run, or to keep an output for one): ``(life, gaps, light)``, gaps as
    ``(first, last)`` per producer (empty ranges left out)."""
    outs = producers(problem)
    grown = dict(life)
    gaps: dict[str, tuple[int, int]] = {}
    for p, os_ in outs.items():
        hi = max(life[o][1] for o in os_)
        if window[p][0] + 1 <= hi:
            gaps[p] = (window[p][0] + 1, hi)
        for i in inputs_of(problem, p):
            grown[i] = (grown[i][0], max(grown[i][1], hi))
    light: dict[str, tuple[int, int]] = {}
    for p, os_ in outs.items():
        lo = gaps[p][1] + 1 if p in gaps else window[p][0] + 1
        hi = max(grown[o][1] for o in os_)
        if lo <= hi:
            light[p] = (lo, hi)
    return grown, gaps, light


@dataclass
class Builder:
    """How an engine makes variables and rows: ``binary(name)``, ``unit(name)`` (a variable
    in [0, 1]: continuous for the MILP, boolean for CP-SAT), ``add(row, name)``."""

    binary: Callable[[str], Any]
    unit: Callable[[str], Any]
    add: Callable[[Any, str], None]


@dataclass
class Vars:
    """The recompute part of a model (see the module docstring)."""

    rate: Fraction
    gaps: dict[str, tuple[int, int]]
    light: dict[str, tuple[int, int]] = field(default_factory=dict)
    y: dict[tuple[str, int], Any] = field(default_factory=dict)
    tr: dict[tuple[str, int], Any] = field(default_factory=dict)
    late: dict[str, Any] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    late_cost: dict[str, int] = field(default_factory=dict)  #: of ``other``, in 1/den byte
    keep: dict[tuple[str, int], Any] = field(default_factory=dict)
    #: Capacity terms the engines add per step: ``(bytes, variable)``.
    extra: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    gl: dict[tuple[str, int], Any] = field(default_factory=dict)
    k: dict[tuple[str, int], Any] = field(default_factory=dict)
    cost: dict[str, int] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)

    def made(self, a: str, t: int) -> Any:
        """``y[prod(a), t]`` or its light form (0 if ``a`` cannot be recomputed there)."""
        p = self.producer.get(a)
        if p is None:
            return 0
        return self.y.get((p, t), 0) if (p, t) in self.y else self.tr.get((p, t), 0)

    def runs(self) -> dict[tuple[str, int], Any]:
        """Every re-run variable, full and light."""
        return {**self.y, **self.tr}

    @property
    def scale(self) -> tuple[int, int]:
        """``(num, den)`` of the rate: objectives are ``den x bytes + num x MACs``."""
        return self.rate.numerator, self.rate.denominator

    def objective_terms(self, size: Mapping[str, int]) -> list[tuple[int, Any]]:
        """``(coefficient, variable)`` for recomputes and transient loads, in units of
        ``1/den`` byte (``size``: unaligned bytes)."""
        num, den = self.scale
        out = [(num * self.cost[p], v) for (p, _), v in self.runs().items() if num * self.cost[p]]
        out += [(den * size[i], v) for (i, _), v in self.gl.items() if size[i]]
        out += [(self.late_cost[i], v) for i, v in self.other.items() if self.late_cost[i]]
        return out


def build(
    problem: Problem,
    b: Builder,
    *,
    rate: Fraction,
    gaps: dict[str, tuple[int, int]],
    light: dict[str, tuple[int, int]],
    x: Mapping[tuple[str, int], Any],
    r: Mapping[tuple[str, int], Any],
    loads: Mapping[tuple[str, int], Any],
    s: Mapping[str, Any],
    window: Mapping[str, tuple[int, int]],
    life: Mapping[str, tuple[int, int]],
    relaxed: bool = True,
) -> Vars:
    """Add the variables and rows 2 and 3 (row 1 goes into the engines' load rows through
    :meth:`Vars.made`; row 4 is :func:`extend`)."""
    g = problem.graph
    V = Vars(rate, gaps, light)
    outs = producers(problem)
    for p, os_ in outs.items():
        for o in os_:
            V.producer[o] = p
    V.cost = {p: operator_cost(g, p) for p in {*gaps, *light}}
    oi = {v: k for k, v in enumerate(g.file_order)}  # unique row names
    ti = {a: k for k, a in enumerate(g.tensors)}
    for p, (lo, hi) in gaps.items():
        for t in range(lo, hi + 1):
            V.y[p, t] = b.binary(f"recompute_{oi[p]}_{_safe(p)}_t{t}")
            if t - 1 < window[p][1]:  # p has not certainly run before gap t
                b.add(
                    V.y[p, t] <= sum(x[p, k] for k in range(window[p][0], t)),
                    f"recompute_after_{oi[p]}_t{t}",
                )
    for p, (lo, hi) in light.items():
        for t in range(lo, hi + 1):
            V.tr[p, t] = b.binary(f"light_recompute_{oi[p]}_{_safe(p)}_t{t}")
            if t - 1 < window[p][1]:
                b.add(
                    V.tr[p, t] <= sum(x[p, k] for k in range(window[p][0], t)),
                    f"light_after_{oi[p]}_t{t}",
                )
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in g.tracked(problem.setting)}
    # Strict re-runs: their inputs are there and their gap holds them. ``relaxed=False``
    # makes the light ones strict too (a restriction: only what the decoder can build).
    strict = dict(V.y) if relaxed else V.runs()
    gap_used = sorted({t for (_, t) in V.runs()})
    kept: dict[int, Any] = {}
    for t in gap_used:
        terms = []
        for a in sorted(size):
            if (a, t - 1) in r and (a, t) in r and size[a]:
                kv = b.unit(f"kept_{ti[a]}_{_safe(a)}_t{t}")
                V.k[a, t] = kv
                b.add(
                    kv >= r[a, t - 1] + r[a, t] - 1 - loads.get((a, t), 0) - V.made(a, t),
                    f"kept_{ti[a]}_t{t}",
                )
                terms.append(size[a] * kv)
        kept[t] = sum(terms)
    for (p, t), y in V.runs().items():
        ins = inputs_of(problem, p)
        for i in ins if (p, t) in strict else ():
            if (i, t) not in V.gl:
                V.gl[i, t] = b.unit(f"transient_load_{ti[i]}_{_safe(i)}_t{t}")
                if i in s:
                    b.add(V.gl[i, t] <= s[i], f"transient_stored_{ti[i]}_t{t}")
            avail = [r.get((i, t - 1), 0), r.get((i, t), 0), V.made(i, t), V.gl[i, t]]
            b.add(y <= sum(avail), f"recompute_input_{oi[p]}_{ti[i]}_t{t}")
        io = list(dict.fromkeys([*ins, *outs[p]]))
        need = sum(size[a] for a in io)
        if need:
            b.add(
                kept[t] - sum(size[a] * V.k[a, t] for a in io if (a, t) in V.k) + need * y
                <= problem.budget,
                f"recompute_gap_{oi[p]}_t{t}",
            )
    # Light re-runs need their inputs too, where the model can say it: inside an input's
    # lifetime as for y; after it, the input stayed from its last modelled step (then, if
    # the gap is not the next one, it is resident at every step in between: keep[i,u],
    # counted in those steps' capacity), or came back after that step (late[i]: by a re-run with a
    # variable, or by a load or a re-run without one, other[i], charged once: the cheaper).
    num, den = V.scale
    for (p, t), tv in V.tr.items() if relaxed else ():
        for i in inputs_of(problem, p):
            lo_i, hi_i = life[i]
            if lo_i <= t <= hi_i:
                if (i, t) not in V.gl:
                    V.gl[i, t] = b.unit(f"transient_load_{ti[i]}_{_safe(i)}_t{t}")
                    if i in s:
                        b.add(V.gl[i, t] <= s[i], f"transient_stored_{ti[i]}_t{t}")
                avail = [r.get((i, t - 1), 0), r[i, t], V.made(i, t), V.gl[i, t]]
            elif t > hi_i:
                if i not in V.late:
                    V.late[i] = b.unit(f"late_{ti[i]}_{_safe(i)}")
                    other = b.unit(f"late_other_{ti[i]}_{_safe(i)}")
                    q = V.producer.get(i)
                    costs = [den * g.tensors[i].size]
                    if q is not None:
                        costs.append(num * operator_cost(g, q))
                    V.other[i] = other
                    V.late_cost[i] = min(costs)
                    reruns = [v for (q2, t2), v in V.runs().items() if q2 == q and t2 > hi_i]
                    b.add(V.late[i] <= other + sum(reruns), f"late_{ti[i]}")
                if t == hi_i + 1:  # kept from its last modelled step into this gap
                    avail = [r[i, hi_i], V.late[i], V.made(i, t)]
                else:  # kept past its lifetime: resident at every step in between
                    for u in range(hi_i + 1, t):
                        if (i, u) not in V.keep:
                            kv = b.unit(f"kept_past_{ti[i]}_{_safe(i)}_t{u}")
                            V.keep[i, u] = kv
                            V.extra.setdefault(u, []).append((size[i], kv))
                            if u > hi_i + 1:
                                b.add(kv <= V.keep[i, u - 1], f"kept_past_{ti[i]}_t{u}")
                    avail = [V.keep[i, t - 1], V.late[i], V.made(i, t)]
            else:
                continue  # before the input exists: p cannot have run yet
            b.add(tv <= sum(avail), f"light_input_{oi[p]}_{ti[i]}_t{t}")
    return V


def _safe(name: str, limit: int = 32) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:limit]


def to_bound(units: float, unit: int, den: int, load_offset: int) -> Fraction:
    """A solver's bound on ``den x (bytes + load_offset) + num x MACs`` (in units of
    ``unit``) as a bound on the combined objective: whole units, rounded up."""
    whole = math.ceil(units - 1e-6)
    return max(Fraction(0), Fraction(whole * unit - den * load_offset, den))


# --- from a solution to a plan ---------------------------------------------------------


@dataclass
class _Block:
    tensor: str
    start: int  # slot
    end: int  # slot
    how: str  # create | recompute | load


def build_plan(
    problem: Problem,
    order: list[str],
    resident: Mapping[str, set[int]],
    recomputes: Mapping[int, set[str]],
    *,
    rate: Fraction,
    method: str,
    solver: str,
    deadline: Deadline,
    seed: int = 0,
) -> Plan | None:
    """A replayed plan from a solution: the order, the steps each tensor is resident at, and
    the producers re-run in each gap (see the module docstring). None if the blocks could
    not be placed in time (or at all)."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    tracked = list(g.tracked(problem.setting))
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    outs = producers(problem)
    prod = {o: p for p, os_ in outs.items() for o in os_}
    uses: dict[str, list[int]] = {
        a: sorted(2 * pos[c] + 1 for c in g.tensors[a].consumers) for a in tracked
    }

    # Segments of consecutive resident steps, each with how it starts.
    segs: dict[str, list[list[int]]] = {}
    for a in tracked:
        steps = set(resident.get(a, ()))
        p = g.tensors[a].producer
        if p is not None:
            steps.add(pos[p])
        cur: list[list[int]] = []
        for t in sorted(steps):
            if cur and cur[-1][-1] == t - 1:
                cur[-1].append(t)
            else:
                cur.append([t])
        segs[a] = cur

    def how(a: str, seg: list[int]) -> str:
        p = g.tensors[a].producer
        if p is not None and seg[0] == pos[p]:
            return "create"
        if p is not None and p in recomputes.get(seg[0], ()) and pos[p] < seg[0]:
            return "recompute"
        return "load"

    def covering(a: str, t: int) -> list[int] | None:
        for seg in segs[a]:
            if seg[0] <= t <= seg[-1]:
                return seg
        return None

    # Which re-runs are emitted, per gap, and the gap uses they add.
    gap_use: dict[str, list[int]] = {a: [] for a in tracked}
    transient: dict[int, dict[str, str]] = {}  # gap -> tensor -> load | recompute
    emitted: dict[int, list[str]] = {}
    for t, ps in recomputes.items():
        cand = {p for p in ps if p in outs and pos[p] < t}
        need: set[str] = set()
        for p in cand:
            for o in outs[p]:
                seg = covering(o, t)
                if (
                    seg is not None
                    and seg[0] == t
                    and how(o, seg) == "recompute"
                    and any(2 * seg[0] <= u <= 2 * seg[-1] + 1 for u in uses[o])
                ):
                    need.add(p)
        trans: dict[str, str] = {}
        for p in sorted(cand, key=pos.__getitem__, reverse=True):
            if p not in need:
                continue
            for i in inputs_of(problem, p):
                gap_use[i].append(2 * t)
                before, here = covering(i, t - 1), covering(i, t)
                if before is not None:
                    continue
                if here is not None and how(i, here) != "recompute":
                    continue
                q = prod.get(i)
                if q is not None and q in cand:
                    need.add(q)
                    if here is None:
                        trans[i] = "recompute"
                else:
                    trans[i] = "load"
        emitted[t] = sorted(need, key=pos.__getitem__)
        transient[t] = trans

    blocks: list[_Block] = []
    for a in tracked:
        for seg in segs[a]:
            kind = how(a, seg)
            lo, hi = 2 * seg[0], 2 * seg[-1] + 2  # the gap after the segment: a gap use
            used = [u for u in uses[a] + gap_use[a] if lo <= u <= hi]
            if kind == "recompute" and prod[a] not in emitted.get(seg[0], ()):
                kind = "load"
            if kind == "create":
                start = 2 * seg[0] + 1
            elif kind == "recompute":
                start = 2 * seg[0]
            else:
                if not used:
                    continue
                start = min(used)
            if not used and kind == "recompute":
                continue
            end = max([start, *used])
            blocks.append(_Block(a, start, end, kind))
    covered = {(b.tensor, s) for b in blocks for s in range(b.start, b.end + 1)}
    for t, ps in emitted.items():
        for i, kind in transient[t].items():
            if (i, 2 * t) not in covered:
                blocks.append(_Block(i, 2 * t, 2 * t, kind))
                covered.add((i, 2 * t))
        for p in ps:
            for o in outs[p]:
                if (o, 2 * t) not in covered:
                    blocks.append(_Block(o, 2 * t, 2 * t, "recompute"))
                    covered.add((o, 2 * t))

    # Place (a block may move: paid as a load, and a store for an activation).
    res = [Residency(b.tensor, b.start, b.end, size[b.tensor]) for b in blocks]
    loads = {a: g.tensors[a].size for a in tracked}
    stores = {a: n for a, n in loads.items() if g.tensors[a].kind is TensorKind.ACTIVATION}
    left = deadline.left()
    pl = place_with_moves(
        res,
        problem.budget,
        alignment=problem.alignment,
        load_cost=loads,
        store_cost=stores,
        time_limit=max(0.1, min(30.0, left if left is not None else 30.0)),
        seed=seed,
    )
    if pl.blocks is None:
        return None
    first = {}
    for b, r in zip(blocks, res, strict=True):
        first[r.tensor, r.start] = b.how
    pieces = sorted(pl.blocks, key=lambda r: (r.start, r.tensor))

    n = len(order)
    gap_loads: dict[int, list[Event]] = {}
    gap_made: dict[int, list[tuple[int, Event]]] = {}
    gap_drops: dict[int, list[Event]] = {}
    step_in: dict[int, list[Event]] = {}
    step_out: dict[int, list[Event]] = {}
    needs_store: set[str] = set()
    for r in pieces:
        kind = first.get((r.tensor, r.start), "load")  # a moved piece starts with a load
        if r.start % 2 == 0:
            t = r.start // 2
            if kind == "recompute":
                p = prod[r.tensor]
                gap_made.setdefault(t, []).append(
                    (pos[p], Event(EventKind.RECOMPUTE, r.tensor, r.address))
                )
            else:
                gap_loads.setdefault(t, []).append(load(r.tensor, r.address))
        else:
            t = r.start // 2
            step_in.setdefault(t, []).append(
                create(r.tensor, r.address) if kind == "create" else load(r.tensor, r.address)
            )
        if kind == "load" and g.tensors[r.tensor].kind is TensorKind.ACTIVATION:
            needs_store.add(r.tensor)
        if r.end % 2 == 0:
            gap_drops.setdefault(r.end // 2, []).append(drop(r.tensor))
        else:
            step_out.setdefault(r.end // 2, []).append(drop(r.tensor))
    steps = []
    for t in range(n):
        op = order[t]
        made = [e for _, e in sorted(gap_made.get(t, []), key=lambda x: (x[0], x[1].tensor))]
        before = (
            sorted(gap_loads.get(t, []), key=lambda e: e.tensor)
            + made
            + sorted(gap_drops.get(t, []), key=lambda e: e.tensor)
            + sorted(step_in.get(t, []), key=lambda e: e.tensor)
        )
        stores = [
            store(o)
            for o in g.operators[op].outputs
            if o in size and (g.tensors[o].kind is TensorKind.OUTPUT or o in needs_store)
        ]
        after = sorted(stores, key=lambda e: e.tensor) + sorted(
            step_out.get(t, []), key=lambda e: e.tensor
        )
        steps.append(Step(op, tuple(before), tuple(after)))
    plan = problem.new_plan(method, solver=solver, options={"recompute_rate": str(rate)})
    plan.status = Status.FEASIBLE
    plan.steps = steps
    return verify(g, plan)
