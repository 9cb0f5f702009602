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
  resident (to feed another re-run): it costs the same, makes the outputs resident, and has
  a gap row like ``y`` (row 3); its inputs' lifetimes do not grow for it (the model stays
  small), so they must be there as far as the model can say: inside an input's lifetime as
  for ``y``; after it, the input stayed from its last modelled step (``keep[i,u]`` = 1 at
  every step ``u`` in between, counted in those steps' capacity rows and in the gaps'
  memory, non-increasing in ``u``, and at most ``r[i, last step]``), was loaded for it (a
  transient load), or came back after that step (``late[i]``: by a re-run with a
  variable, or by a load or a re-run without one, ``other[i]``, charged once at the
  cheaper of the two);
- ``gl[i,t]`` = 1 if input ``i`` of a re-run is loaded only for it, inside the gap (a
  *transient* load: ``size(i)`` bytes; an activation must have been stored,
  ``gl[i,t] <= s[i]``);
- ``k[a,t]`` >= ``r[a,t-1] + r[a,t] - 1 - l[a,t] - made(a,t)``: ``a`` is kept through gap
  ``t`` (resident on both sides, neither reloaded nor re-made there), and ``g[t] = sum_a
  size[a] k[a,t] + sum_a size[a] keep[a,t]``; ``made(a,t)`` is ``y[prod(a),t]`` or
  ``tr[prod(a),t]``.

**Rows added**:

1. a tensor becomes resident by a load, by its creation, *or by a re-run*: the engines' load
   rows get ``- made(a,t)``;
2. inputs of a re-run are there: ``y[p,t] <= r[i,t-1] + r[i,t] + gl[i,t] + made(i,t)`` for
   every tracked input ``i`` of ``p``;
3. the gap holds each re-run (``y`` or ``tr``): ``g[t] - sum_{a in IO(p)} size[a] (k or
   keep)[a,t] + size(IO(p)) y[p,t] <= S``, ``IO(p)`` the tracked inputs and outputs of
   ``p``;
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
Row 3 (for ``y`` and ``tr`` alike): right after that re-run, ``IO(p)`` is resident, and so
is every ``a`` kept through the gap (``k[a,t]`` > 0 only for those) or held without a break
since before its last modelled step (``keep[a,t]``), all disjoint inside ``[0, S)``; in the
gaps where ``p`` does not re-run, ``g[t]`` counts only tensors resident at step ``t``, at
most ``S``. A light re-run's input past its lifetime was held without a break (``keep``), or
loaded in the gap (``gl``), or came back after its last modelled step (``late``).
The objective counts one re-run per ``(p,t)`` set to 1 (the plan runs at least one), each
transient load once, and the engines' loads and stores as before, so it is at most the
plan's objective. Several re-runs of one gap are charged separately in row 3 (each at its
own moment), never together, so no plan is cut off. Hence the model optimum, and any bound a
solver proves on it, bound every plan from below. ``tests/test_recompute.py`` checks this
against an independent exhaustive search over event sequences on tiny graphs.

**Two solves.** The engines solve the model above (the *relaxation*: its bound is the one
reported) after a *restriction* of it whose solutions decode to plans: a light re-run's
inputs must be resident (inside their lifetimes, or kept past them: ``keep``), loaded for it
or re-made in the gap, never ``late``; and the re-runs of one gap must fit together
(``g[t]`` plus every tensor some re-run of the gap holds, ``<= S``) instead of one at a
time. Before both, the traffic problem without recompute is solved: its plan has no
re-runs, so the answer is never worse than with recompute off.

**From a solution to a plan** (:func:`build_plan`). Each gap gets one time slot per re-run
it holds, in an order that respects the re-runs feeding each other and holds the fewest
bytes (every order when there are at most six), then its step gets a slot. Each tensor's
residency is cut into blocks that start with a create, a recompute or a load (a tensor the
solution re-makes in a gap starts a new block there) and end at their last use; inputs of a
re-run are kept (or loaded, or recomputed, transiently) into its slot, and every output of a
re-run producer is resident there. The blocks are placed exactly
(:func:`cosma.solvers.placement.place_with_moves`, moves paid as loads) and turned into
events; the plan is replayed, which measures its objective. A solution of the relaxation may
not decode (it does not see the order inside a gap, nor addresses), and a decoded plan may
cost more than its solution (moves): the answer is then ``feasible`` with the relaxation's
bound; ``optimal`` only when a replayed plan meets the bound.
"""

from __future__ import annotations

import itertools
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
    num, den = V.scale
    # Light re-runs need their inputs too, where the model can say it: inside an input's
    # lifetime as for y; after it, the input stayed from its last modelled step (then, if
    # the gap is not the next one, it is resident at every step in between: keep[i,u],
    # counted in those steps' capacity and in the gaps' memory), was loaded for the re-run
    # (a transient load), or — relaxation only — came back after that step in some way
    # (late[i]: by a re-run with a variable, or by a load or a re-run without one,
    # other[i], charged once at the cheaper). ``relaxed=False`` (the restriction that
    # decodes) leaves late out.
    for (p, t), tv in V.tr.items():
        for i in inputs_of(problem, p):
            lo_i, hi_i = life[i]
            if t < lo_i:
                continue  # before the input exists: p cannot have run yet
            if (i, t) not in V.gl:
                V.gl[i, t] = b.unit(f"transient_load_{ti[i]}_{_safe(i)}_t{t}")
                if i in s:
                    b.add(V.gl[i, t] <= s[i], f"transient_stored_{ti[i]}_t{t}")
            if t <= hi_i:
                avail = [r.get((i, t - 1), 0), r[i, t], V.made(i, t), V.gl[i, t]]
            else:
                if t == hi_i + 1:  # kept from its last modelled step into this gap
                    avail = [r[i, hi_i], V.made(i, t), V.gl[i, t]]
                else:  # kept past its lifetime: resident at every step in between
                    for u in range(hi_i + 1, t):
                        if (i, u) not in V.keep:
                            kv = b.unit(f"kept_past_{ti[i]}_{_safe(i)}_t{u}")
                            V.keep[i, u] = kv
                            V.extra.setdefault(u, []).append((size[i], kv))
                            # held without a break since its last modelled step
                            prev = V.keep[i, u - 1] if u > hi_i + 1 else r[i, hi_i]
                            b.add(kv <= prev, f"kept_past_{ti[i]}_t{u}")
                    avail = [V.keep[i, t - 1], V.made(i, t), V.gl[i, t]]
                if relaxed:
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
                    avail.append(V.late[i])
            b.add(tv <= sum(avail), f"light_input_{oi[p]}_{ti[i]}_t{t}")
    # The gaps' memory: what is kept through gap t (k inside lifetimes, keep past them).
    gap_used = sorted({t for (_, t) in V.runs()})
    held_through: dict[int, dict[str, Any]] = {t: {} for t in gap_used}
    for t in gap_used:
        for a in sorted(size):
            if (a, t - 1) in r and (a, t) in r and size[a]:
                kv = b.unit(f"kept_{ti[a]}_{_safe(a)}_t{t}")
                V.k[a, t] = kv
                b.add(
                    kv >= r[a, t - 1] + r[a, t] - 1 - loads.get((a, t), 0) - V.made(a, t),
                    f"kept_{ti[a]}_t{t}",
                )
                held_through[t][a] = kv
    for (a, u), kv in V.keep.items():
        if u in held_through and size[a]:
            held_through[u][a] = kv  # resident at step u past its lifetime, so in gap u
    kept = {t: sum(size[a] * v for a, v in held.items()) for t, held in held_through.items()}
    together: dict[tuple[str, int], Any] = {}  # restriction: held in the gap by some re-run
    for (p, t), y in V.runs().items():
        ins = inputs_of(problem, p)
        for i in ins if (p, t) in V.y else ():
            if (i, t) not in V.gl:
                V.gl[i, t] = b.unit(f"transient_load_{ti[i]}_{_safe(i)}_t{t}")
                if i in s:
                    b.add(V.gl[i, t] <= s[i], f"transient_stored_{ti[i]}_t{t}")
            avail = [r.get((i, t - 1), 0), r.get((i, t), 0), V.made(i, t), V.gl[i, t]]
            b.add(y <= sum(avail), f"recompute_input_{oi[p]}_{ti[i]}_t{t}")
        io = list(dict.fromkeys([*ins, *outs[p]]))
        need = sum(size[a] for a in io)
        if need and relaxed:
            b.add(
                kept[t]
                - sum(size[a] * held_through[t][a] for a in io if a in held_through[t])
                + need * y
                <= problem.budget,
                f"recompute_gap_{oi[p]}_t{t}",
            )
        elif need:  # the restriction: every re-run of the gap at once (what decodes)
            for a in io:
                if not size[a]:
                    continue
                if (a, t) not in together:
                    together[a, t] = b.unit(f"gap_held_{ti[a]}_{_safe(a)}_t{t}")
                b.add(
                    together[a, t] >= y - held_through[t].get(a, 0),
                    f"gap_held_{oi[p]}_{ti[a]}_t{t}",
                )
    if not relaxed:
        for t in gap_used:
            held = [size[a] * v for (a, u), v in together.items() if u == t]
            if held:
                b.add(kept[t] + sum(held) <= problem.budget, f"recompute_gap_t{t}")
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


def _run_order(
    runs: list[str],
    fed: list[tuple[str, str, int | None, str]],
    prod: Mapping[str, str],
    size: Mapping[str, int],
    outs: Mapping[str, list[str]],
    persist: set[str],
) -> list[str]:
    """An order of one gap's re-runs: producers before the re-runs they feed; among the
    ready ones, the one whose moment holds the fewest bytes besides what stays through the
    gap anyway (its inputs and outputs, inputs kept from the step before that later re-runs
    still wait for, outputs made so far that stay to the step or feed a later re-run);
    ties in graph order."""
    deps: dict[str, set[str]] = {p: set() for p in runs}
    users: dict[str, set[str]] = {}  # tensor -> the re-runs of this gap that read it
    ins: dict[str, set[str]] = {p: set() for p in runs}
    for user, i, _k, kind in fed:
        ins[user].add(i)
        users.setdefault(i, set()).add(user)
        if kind == "remade" and prod.get(i) in deps:
            deps[user].add(prod[i])
    fed_before = {i for _u, i, _k, kind in fed if kind == "kept"}
    rank = {p: k for k, p in enumerate(runs)}

    def moment(p: str, done: set[str]) -> int:
        held = ins[p] | set(outs[p])
        held |= {i for i in fed_before if not users[i] <= done}
        for q in done:
            held |= {o for o in outs[q] if o in persist or not users.get(o, set()) <= done}
        return sum(size[x] for x in held)

    if len(runs) <= 6:  # every order that respects the dependencies: least highest moment
        best: tuple[tuple[int, list[int]], list[str]] | None = None
        for perm in itertools.permutations(runs):
            done: set[str] = set()
            peak, ok = 0, True
            for p in perm:
                if not deps[p] <= done:
                    ok = False
                    break
                peak = max(peak, moment(p, done))
                done.add(p)
            if ok:
                key = (peak, [rank[p] for p in perm])
                if best is None or key < best[0]:
                    best = (key, list(perm))
        if best is not None:
            return best[1]
    done = set()
    out: list[str] = []
    while len(out) < len(runs):
        ready = [p for p in runs if p not in done and deps[p] <= done]
        q = min(ready, key=lambda p: (moment(p, done), rank[p]))
        out.append(q)
        done.add(q)
    return out


def useful(
    problem: Problem,
    order: list[str],
    resident: Mapping[str, set[int]],
    recomputes: Mapping[int, set[str]],
) -> dict[int, set[str]]:
    """The re-runs of a solution that make something: an output that becomes resident at
    the gap's step (it was not resident at the step before), or an output that is not
    resident before and feeds another useful re-run of the same gap. The others only
    *refresh* tensors the solution keeps anyway, or make outputs nothing reads; at rate 0
    they cost nothing, and solvers return them among equally good solutions.

    >>> from cosma.graph import GraphBuilder
    >>> b = GraphBuilder("c").input("x", 1).op("a", ["x"], {"p": 1}).op("b", ["p"], {"q": 1})
    >>> g = b.op("c", ["p", "q"], {"z": 1}).output("z").build()
    >>> P, order = Problem(g, 4), ["a", "b", "c"]
    >>> useful(P, order, {"x": {0}, "p": {0, 2}, "q": {1, 2}}, {2: {"a"}})  # p comes back
    {2: {'a'}}
    >>> useful(P, order, {"x": {0, 1, 2}, "p": {0, 1, 2}, "q": {1, 2}}, {2: {"a"}})  # refresh
    {}
    """
    pos = {v: i for i, v in enumerate(order)}
    outs = producers(problem)
    out: dict[int, set[str]] = {}
    for t, ps in recomputes.items():
        cand = {p for p in ps if p in outs and pos[p] < t}

        def new(o: str) -> bool:
            return t - 1 not in resident.get(o, ())  # noqa: B023 (used in this iteration)

        keep = {p for p in cand if any(new(o) and t in resident.get(o, ()) for o in outs[p])}
        grew = True
        while grew:
            grew = False
            for p in sorted(cand - keep, key=pos.__getitem__):
                fed = {i for q in keep for i in inputs_of(problem, q)}
                if any(new(o) and o in fed for o in outs[p]):
                    keep.add(p)
                    grew = True
        if keep:
            out[t] = keep
    return out


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
    not be placed in time (or at all).

    The re-runs that make nothing (:func:`useful`) are left out first; if that changes the
    solution, it is decoded as it is too (a refresh may be how the solution fits a gap's
    memory), and the cheaper replayed plan is returned.
    """
    kept = useful(problem, order, resident, recomputes)
    whole = {t: set(ps) for t, ps in recomputes.items() if ps}
    kw = dict(rate=rate, method=method, solver=solver, deadline=deadline, seed=seed)
    plans = [_build_plan(problem, order, resident, kept, **kw)]  # type: ignore[arg-type]
    if kept != whole and not deadline.expired():
        plans.append(_build_plan(problem, order, resident, whole, **kw))  # type: ignore[arg-type]
    found = [p for p in plans if p is not None]
    return min(found, key=lambda p: p.objective, default=None)


def _build_plan(
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
    """:func:`build_plan` for one set of re-runs.

    Time line: every gap gets one slot per re-run it holds (in topological order), then its
    step gets a slot. A tensor re-made in a gap starts a new block there even if the model
    keeps it resident on both sides (that is how the model counts the gap's memory)."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    tracked = list(g.tracked(problem.setting))
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    outs = producers(problem)
    prod = {o: p for p, os_ in outs.items() for o in os_}
    n = len(order)

    def remade(a: str, t: int) -> bool:
        p = prod.get(a)
        return p is not None and p in recomputes.get(t, ()) and pos[p] < t

    # Segments of consecutive resident steps (cut where the tensor is re-made), with how
    # each starts.
    segs: dict[str, list[list[int]]] = {}
    for a in tracked:
        steps = set(resident.get(a, ()))
        p = g.tensors[a].producer
        if p is not None:
            steps.add(pos[p])
        cur: list[list[int]] = []
        for t in sorted(steps):
            if cur and cur[-1][-1] == t - 1 and not remade(a, t):
                cur[-1].append(t)
            else:
                cur.append([t])
        segs[a] = cur

    def how(a: str, seg: list[int]) -> str:
        p = g.tensors[a].producer
        if p is not None and seg[0] == pos[p]:
            return "create"
        return "recompute" if remade(a, seg[0]) else "load"

    def covering(a: str, t: int) -> int | None:
        for k, seg in enumerate(segs[a]):
            if seg[0] <= t <= seg[-1]:
                return k
        return None

    # Which re-runs are emitted per gap, and where each input of each comes from.
    # Gaps from last to first: a segment a re-run starts is needed if a step in it reads
    # the tensor or a later gap's re-run is fed from it.
    emitted: dict[int, list[str]] = {}
    feeds: dict[int, list[tuple[str, str, int | None, str]]] = {}  # (user, input, seg, how)
    fed_later: set[tuple[str, int]] = set()  # (tensor, segment) read by a later gap's re-run
    for t in sorted(recomputes, reverse=True):
        ps = recomputes[t]
        cand = {p for p in ps if p in outs and pos[p] < t}
        need: set[str] = set()
        for p in cand:
            for o in outs[p]:
                k = covering(o, t)
                if k is not None and segs[o][k][0] == t and how(o, segs[o][k]) == "recompute":
                    seg = segs[o][k]
                    if (o, k) in fed_later or any(
                        seg[0] <= pos[c] <= seg[-1] for c in g.tensors[o].consumers
                    ):
                        need.add(p)
        fed: list[tuple[str, str, int | None, str]] = []
        for p in sorted(cand, key=pos.__getitem__, reverse=True):
            if p not in need:
                continue
            for i in inputs_of(problem, p):
                before, here = covering(i, t - 1), covering(i, t)
                if before is not None and not remade(i, t):
                    fed.append((p, i, before, "kept"))
                elif here is not None and how(i, segs[i][here]) == "load":
                    fed.append((p, i, here, "loaded"))
                elif prod.get(i) in cand:
                    need.add(prod[i])
                    fed.append((p, i, here, "remade"))
                else:
                    fed.append((p, i, None, "transient load"))
        persist = {
            o
            for p in need
            for o in outs[p]
            if (k := covering(o, t)) is not None
            and segs[o][k][0] == t
            and how(o, segs[o][k]) == "recompute"
        }
        emitted[t] = _run_order(sorted(need, key=pos.__getitem__), fed, prod, size, outs, persist)
        feeds[t] = fed
        fed_later |= {(i, k) for _u, i, k, kind in fed if kind == "kept" and k is not None}

    # Slots: per step t, one per re-run of gap t, then the step itself.
    slot_of_run: dict[tuple[int, str], int] = {}
    step_slot: dict[int, int] = {}
    kind_of_slot: list[tuple[str, int, str | None]] = []  # ("gap", t, p) | ("step", t, None)
    for t in range(n):
        for p in emitted.get(t, []):
            slot_of_run[t, p] = len(kind_of_slot)
            kind_of_slot.append(("gap", t, p))
        step_slot[t] = len(kind_of_slot)
        kind_of_slot.append(("step", t, None))

    gap_uses: dict[tuple[str, int], list[int]] = {}  # (tensor, segment) -> slots
    transient_uses: dict[tuple[str, int], list[int]] = {}  # (tensor, gap) -> slots
    transient_how: dict[tuple[str, int], str] = {}
    for t, fed in feeds.items():
        for user, i, k, kind in fed:
            at = slot_of_run[t, user]
            if k is not None and kind in ("kept", "loaded", "remade"):
                gap_uses.setdefault((i, k), []).append(at)
            else:
                transient_uses.setdefault((i, t), []).append(at)
                transient_how[i, t] = "recompute" if kind == "remade" else "load"

    blocks: list[_Block] = []
    for a in tracked:
        for k, seg in enumerate(segs[a]):
            kind = how(a, seg)
            if kind == "recompute" and prod[a] not in emitted.get(seg[0], ()):
                kind = "load"
            used = [
                step_slot[pos[c]] for c in g.tensors[a].consumers if seg[0] <= pos[c] <= seg[-1]
            ]
            used += gap_uses.get((a, k), [])
            if kind == "create":
                start = step_slot[seg[0]]
            elif kind == "recompute":
                start = slot_of_run[seg[0], prod[a]]
            elif used:
                start = min(used)
            else:
                continue
            if not used and kind == "recompute":
                continue
            blocks.append(_Block(a, start, max([start, *used]), kind))
    for (i, t), used in transient_uses.items():
        kind = transient_how[i, t]
        start = slot_of_run[t, prod[i]] if kind == "recompute" else min(used)
        blocks.append(_Block(i, start, max(used), kind))
    covered = {(b.tensor, x) for b in blocks for x in range(b.start, b.end + 1)}
    for t, ps in emitted.items():
        for p in ps:
            at = slot_of_run[t, p]
            for o in outs[p]:
                if (o, at) not in covered:
                    blocks.append(_Block(o, at, at, "recompute"))
                    covered.add((o, at))

    # Place (a block may move: paid as a load, and a store for an activation).
    res = [Residency(b.tensor, b.start, b.end, size[b.tensor]) for b in blocks]
    loads = {a: g.tensors[a].size for a in tracked}
    stores = {a: k for a, k in loads.items() if g.tensors[a].kind is TensorKind.ACTIVATION}
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
    first = {(b.tensor, b.start): b.how for b in blocks}
    starting: dict[int, list[Residency]] = {}
    ending: dict[int, list[Residency]] = {}
    for r in pl.blocks:
        starting.setdefault(r.start, []).append(r)
        ending.setdefault(r.end, []).append(r)
    needs_store: set[str] = set()
    before: dict[int, list[Event]] = {t: [] for t in range(n)}
    after: dict[int, list[Event]] = {t: [] for t in range(n)}
    for x, (kind, t, _p) in enumerate(kind_of_slot):
        here = sorted(starting.get(x, []), key=lambda r: r.tensor)
        gone = sorted(ending.get(x, []), key=lambda r: r.tensor)
        made = []
        for r in here:
            how_ = first.get((r.tensor, r.start), "load")  # a moved piece starts with a load
            if how_ == "load" and g.tensors[r.tensor].kind is TensorKind.ACTIVATION:
                needs_store.add(r.tensor)
            if how_ == "recompute":
                made.append(Event(EventKind.RECOMPUTE, r.tensor, r.address))
            elif how_ == "create":
                made.append(create(r.tensor, r.address))
            else:
                before[t].append(load(r.tensor, r.address))
        before[t].extend(made)
        if kind == "gap":
            before[t].extend(drop(r.tensor) for r in gone)
        else:
            after[t].extend(drop(r.tensor) for r in gone)
    steps = []
    for t in range(n):
        op = order[t]
        stores_ = [
            store(o)
            for o in sorted(g.operators[op].outputs)
            if o in size and (g.tensors[o].kind is TensorKind.OUTPUT or o in needs_store)
        ]
        steps.append(Step(op, tuple(before[t]), tuple(stores_ + after[t])))
    plan = problem.new_plan(method, solver=solver, options={"recompute_rate": str(rate)})
    plan.status = Status.FEASIBLE
    plan.steps = steps
    return verify(g, plan)
