"""Rematerialization (checkpoint selection) under a memory budget, GPU style.

The problem (Chen et al. 2016; Checkmate; MOCCASIN): run every operator of a graph in a
fixed order; memory is a budget on the *sum* of resident bytes (a pooled allocator: no
addresses, no fragmentation), there is no host to spill to, and a tensor dropped while still
needed comes back only by recomputing its producer, whose inputs must then be resident. The
objective is the total compute (the ``cost`` of every operator run, first runs included);
minimising it minimises the recompute overhead.

The frame both exact engines solve (Checkmate's): the order ``o_0 .. o_{n-1}`` is split into
*stages*; stage ``t`` ends with the first run of ``o_t`` and may start by recomputing earlier
operators, each at most once and in order. A *position* ``(t, k)`` is the run of ``o_k`` in
stage ``t``; positions are numbered ``t(t+1)/2 + k``. While ``o_k`` runs, resident are its
inputs, its outputs, and whatever is kept for later (SPEC §3 — the same accounting as
MOCCASIN's: a node's output from its computation to its last use, plus the running node's).

Memory is counted per *value*: the tracked outputs of one operator that some operator reads
stay or go together; outputs nobody reads (e.g. parameter gradients, the loss) are resident
only while their operator runs. Graph inputs (and parameters, when tracked) are loaded once
at their first use and stay until their last use (no host traffic beyond the compulsory).
Given which operators run at which positions, the best memory is obtained by dropping each
tensor right after its last use before its producer runs again: :func:`remat_plan` builds the
plan that way, so a solver only chooses the computations.

>>> from cosma.graph import GraphBuilder
>>> g = (GraphBuilder("chain").input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
...      .op("c", ["q", "p"], {"z": 1}).output("z").build())
>>> inst = RematInstance.build(Problem(g, 100))
>>> inst.keep, inst.transient, inst.deps
((4, 4, 0), (0, 0, 1), ((), (0,), (1, 0)))
>>> no_remat_peak(inst)
9
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from cosma.cost import operator_cost
from cosma.errors import UsageError
from cosma.graph import Graph, Setting, TensorKind
from cosma.plan import Event, EventKind, Plan, Status, Step
from cosma.problem import Problem

#: Plan options that mark a compute-objective (rematerialization) plan for the simulator.
REMAT_OPTIONS = {"objective": "compute", "memory": "pooled", "recompute": True}


def position(t: int, k: int) -> int:
    """Number of position ``(t, k)``: the run of operator ``k`` in stage ``t`` (``k <= t``)."""
    return t * (t + 1) // 2 + k


def stage_of(p: int) -> tuple[int, int]:
    """Inverse of :func:`position`.

    >>> stage_of(position(7, 3))
    (7, 3)
    """
    t = (math.isqrt(8 * p + 1) - 1) // 2
    return t, p - t * (t + 1) // 2


@dataclass(frozen=True)
class RematInstance:
    """A rematerialization problem in index form, for a fixed order.

    Operator ``i`` is ``order[i]``; ``deps[i]`` are the operators whose values it reads,
    ``keep[i]`` the bytes of its value (outputs someone reads), ``transient[i]`` the bytes
    of its outputs nobody reads, ``cost[i]`` its compute. Graph inputs ``inputs[x]`` of
    ``input_size[x]`` bytes are read by ``input_users[x]`` (loaded at the first).
    ``max_computes[i]`` bounds how often operator ``i`` runs (first run included).
    """

    graph: Graph
    budget: int
    order: tuple[str, ...]
    cost: tuple[int, ...]
    keep: tuple[int, ...]
    transient: tuple[int, ...]
    deps: tuple[tuple[int, ...], ...]
    inputs: tuple[str, ...]
    input_size: tuple[int, ...]
    input_users: tuple[tuple[int, ...], ...]
    max_computes: tuple[int, ...]
    setting: object = None
    users: tuple[tuple[int, ...], ...] = field(default=(), compare=False)

    @property
    def n(self) -> int:
        return len(self.order)

    @property
    def base_cost(self) -> int:
        """Compute of running every operator once (the least any plan does)."""
        return sum(self.cost)

    def recomputable(self, i: int) -> bool:
        """Whether running operator ``i`` again can ever help (someone reads its value)."""
        return bool(self.users[i]) and self.max_computes[i] > 1

    @classmethod
    def build(
        cls,
        problem: Problem,
        *,
        order: Sequence[str] | None = None,
        max_computes: int | None = None,
    ) -> RematInstance:
        """Index form of ``problem`` for ``order`` (default: the graph's topological order
        closest to its file order). ``max_computes`` bounds runs per operator (None: no
        bound but the number of stages)."""
        g = problem.graph
        order = list(order) if order is not None else g.topological_order()
        if not g.is_schedule(order):
            raise UsageError(
                f"the order given for {g.name!r} is not a schedule: it must list every "
                "operator once, each after the operators whose outputs it reads"
            )
        if max_computes is not None and max_computes < 1:
            raise UsageError(f"max_computes must be at least 1 (got {max_computes})")
        tracked = set(g.tracked(problem.setting))
        idx = {v: i for i, v in enumerate(order)}
        n = len(order)
        keep, transient, deps = [], [], []
        for v in order:
            op = g.operators[v]
            outs = [t for t in op.outputs if t in tracked]
            keep.append(sum(g.tensors[t].size for t in outs if g.tensors[t].consumers))
            transient.append(sum(g.tensors[t].size for t in outs if not g.tensors[t].consumers))
            deps.append(
                tuple(
                    dict.fromkeys(
                        idx[g.tensors[t].producer]
                        for t in op.inputs
                        if t in tracked and g.tensors[t].producer is not None
                    )
                )
            )
        inputs = [t for t in g.tracked(problem.setting) if g.tensors[t].producer is None]
        input_users = [tuple(sorted({idx[c] for c in g.tensors[t].consumers})) for t in inputs]
        users: list[list[int]] = [[] for _ in range(n)]
        for j, ds in enumerate(deps):
            for i in ds:
                users[i].append(j)
        cap = n if max_computes is None else max_computes
        return cls(
            graph=g,
            budget=problem.budget,
            order=tuple(order),
            cost=tuple(operator_cost(g, v) for v in order),
            keep=tuple(keep),
            transient=tuple(transient),
            deps=tuple(deps),
            inputs=tuple(inputs),
            input_size=tuple(g.tensors[t].size for t in inputs),
            input_users=tuple(input_users),
            max_computes=tuple(min(cap, n - i) if users[i] else 1 for i in range(n)),
            setting=problem.setting,
            users=tuple(tuple(sorted(u)) for u in users),
        )


def _sequence(n: int, computations: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every run in execution order: the given recomputations plus each first run."""
    runs = {(t, t) for t in range(n)} | {(t, k) for t, k in computations if k <= t}
    return sorted(runs)


def peak_of(inst: RematInstance, computations: Iterable[tuple[int, int]] = ()) -> int:
    """Peak bytes of the runs ``computations`` (recomputations; first runs are implied),
    dropping each value right after its last use before its producer runs again. Raises
    UsageError if a run reads a value that is not available.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q", "p"], {"z": 1}).output("z").build())
    >>> peak_of(RematInstance.build(Problem(g, 9)), [(2, 0)])  # recompute a before c
    9
    """
    return _memory_profile(inst, _sequence(inst.n, computations))[0]


def peak_state(
    inst: RematInstance, computations: Iterable[tuple[int, int]]
) -> tuple[int, list[tuple[int, int]], int, set[int]]:
    """(peak, the runs in order, the index of the first run at the peak, values resident
    then) — what a heuristic needs to decide what to drop."""
    seq = _sequence(inst.n, computations)
    state: list = [0, set()]
    peak = _memory_profile(inst, seq, state)[0]
    return peak, seq, state[0], state[1]


def no_remat_peak(inst: RematInstance) -> int:
    """Peak bytes of running the order once with nothing recomputed (checkpoint-all)."""
    return peak_of(inst)


def _memory_profile(
    inst: RematInstance, seq: list[tuple[int, int]], at_peak: list | None = None
) -> tuple[int, dict[int, list[int]], dict[int, list[int]]]:
    """(peak, drops of values after each run, drops of inputs after each run). With
    ``at_peak`` (a list), it receives the index in ``seq`` of the first run at the peak and
    the values resident then."""
    n = inst.n
    prods: dict[int, list[int]] = {i: [] for i in range(n)}
    uses: dict[int, list[int]] = {i: [] for i in range(n)}
    in_uses: dict[int, list[int]] = {x: [] for x in range(len(inst.inputs))}
    user_inputs: dict[int, list[int]] = {}
    for x, us in enumerate(inst.input_users):
        for j in us:
            user_inputs.setdefault(j, []).append(x)
    for p, (_, k) in enumerate(seq):
        prods[k].append(p)
        for i in inst.deps[k]:
            uses[i].append(p)
        for x in user_inputs.get(k, ()):
            in_uses[x].append(p)
    # Each value copy lives from a production to its last use before the next production.
    drop_after: dict[int, list[int]] = {}
    for i in range(n):
        ps, us = prods[i], uses[i]
        for a, start in enumerate(ps):
            nxt = ps[a + 1] if a + 1 < len(ps) else math.inf
            last = max((u for u in us if start < u < nxt), default=start)
            drop_after.setdefault(last, []).append(i)
    in_drop: dict[int, list[int]] = {}
    in_load: dict[int, list[int]] = {}
    for x, us in in_uses.items():
        if us:
            in_load.setdefault(us[0], []).append(x)
            in_drop.setdefault(us[-1], []).append(x)
    resident: set[int] = set()
    inputs_resident: set[int] = set()
    occupancy = peak = 0
    for p, (t, k) in enumerate(seq):
        for i in inst.deps[k]:
            if i not in resident:
                raise UsageError(
                    f"operator {inst.order[k]!r} runs in stage {t} but the value of "
                    f"{inst.order[i]!r} is not available: recompute it first"
                )
        for x in in_load.get(p, ()):
            inputs_resident.add(x)
            occupancy += inst.input_size[x]
        resident.add(k)
        occupancy += inst.keep[k] + inst.transient[k]
        if occupancy > peak:
            peak = occupancy
            if at_peak is not None:
                at_peak[:] = [p, set(resident)]
        occupancy -= inst.transient[k]
        for i in drop_after.get(p, ()):
            resident.discard(i)
            occupancy -= inst.keep[i]
        for x in in_drop.get(p, ()):
            inputs_resident.discard(x)
            occupancy -= inst.input_size[x]
    return peak, drop_after, in_drop


def remat_plan(
    inst: RematInstance,
    computations: Iterable[tuple[int, int]],
    *,
    method: str,
    status: Status,
    solver: str | None = None,
    options: dict | None = None,
) -> Plan:
    """The plan that runs ``computations`` (recomputations ``(stage, operator index)``;
    first runs implied) with each tensor dropped as early as possible. Not yet replayed:
    pass it to :func:`cosma.simulator.verify`."""
    g = inst.graph
    tracked = set(g.tracked(inst.setting))
    seq = _sequence(inst.n, computations)
    _, drop_after, in_drop = _memory_profile(inst, seq)
    first_use = {us[0]: [] for us in inst.input_users if us}
    for x, us in enumerate(inst.input_users):
        if us:
            first_use[us[0]].append(x)
    before: dict[int, list[Event]] = {}
    after: dict[int, list[Event]] = {}
    for p, (t, k) in enumerate(seq):
        v = inst.order[k]
        outs = [o for o in g.operators[v].outputs if o in tracked]
        drops = [
            Event(EventKind.DROP, o)
            for i in drop_after.get(p, ())
            for o in g.operators[inst.order[i]].outputs
            if o in tracked and g.tensors[o].consumers
        ]
        drops += [Event(EventKind.DROP, o) for o in outs if not g.tensors[o].consumers]
        drops += [Event(EventKind.DROP, inst.inputs[x]) for x in in_drop.get(p, ())]
        if k < t:  # a recomputation, before stage t's own operator
            ev = before.setdefault(t, [])
            ev += [Event(EventKind.RECOMPUTE, o) for o in outs]
            ev += drops
            continue
        ev = before.setdefault(t, [])
        ev += [Event(EventKind.LOAD, inst.inputs[x]) for x in first_use.get(k, ())]
        ev += [Event(EventKind.CREATE, o) for o in outs]
        stores = [Event(EventKind.STORE, o) for o in outs if g.tensors[o].kind is TensorKind.OUTPUT]
        after.setdefault(t, []).extend(stores + drops)
    steps = [
        Step(v, tuple(before.get(t, ())), tuple(after.get(t, ()))) for t, v in enumerate(inst.order)
    ]
    recomputed = sorted((t, k) for t, k in seq if k < t)
    opts = {**REMAT_OPTIONS, **(options or {})}
    return Plan(
        g.name,
        g.identity(),
        inst.budget,
        inst.setting,
        1,
        method,
        status,
        steps=steps,
        solver=solver,
        options=opts,
        stats={
            "recomputations": len(recomputed),
            "base_compute": inst.base_cost,
            "order": "given" if options and options.get("order") else "topological",
        },
    )


def retention(
    inst: RematInstance, computations: Iterable[tuple[int, int]]
) -> tuple[dict[int, list[tuple[int, int]]], dict[int, int]]:
    """Where each value is held, as position intervals ``[start, end)`` per operator (one
    per run), and the end position (exclusive) of each graph input's interval — the form
    of :func:`cosma.solvers.remat.remat_cpsat`, e.g. to warm-start it from a baseline."""
    seq = _sequence(inst.n, computations)
    _, drop_after, in_drop = _memory_profile(inst, seq)
    numbered = [position(t, k) for t, k in seq]
    held: dict[int, list[tuple[int, int]]] = {i: [] for i in range(inst.n)}
    open_at: dict[int, int] = {}
    for p, (_, k) in enumerate(seq):
        open_at[k] = numbered[p]
        for i in drop_after.get(p, ()):
            held[i].append((open_at.pop(i), numbered[p] + 1))
    ends = {x: numbered[p] + 1 for p, xs in in_drop.items() for x in xs}
    return held, ends


_PEAK_FRACTION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*[x×*]\s*peak\s*$", re.I)


def resolve_remat_budget(
    graph: Graph,
    budget: str | int,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    order: Sequence[str] | None = None,
) -> int:
    """A rematerialization budget in bytes: a size (``256KiB``), a name (``M_R``...) or a
    fraction of the no-remat peak of the order, ``0.9xpeak`` = ⌈0.9 × peak⌉ (MOCCASIN's way
    of stating budgets).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q", "p"], {"z": 1}).output("z").build())
    >>> resolve_remat_budget(g, "0.9xpeak"), resolve_remat_budget(g, "1KiB")
    (9, 1024)
    """
    from cosma.problem import resolve_budget

    m = _PEAK_FRACTION.match(str(budget))
    if m is None:
        return resolve_budget(graph, budget, setting=setting)
    frac = Fraction(m.group(1))  # exact: 0.9 x 10 is 9, not 9.000000000000002
    if frac <= 0:
        raise UsageError(f"budget {budget!r}: the fraction of the peak must be positive")
    inst = RematInstance.build(Problem(graph, 0, Setting.parse(setting)), order=order)
    return math.ceil(frac * no_remat_peak(inst))
