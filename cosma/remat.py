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

    Operator ``i`` is ``order[i]``; ``deps[i]`` are the operators whose outputs it reads,
    ``keep[i]`` the bytes of its outputs someone reads, ``transient[i]`` the bytes of its
    outputs nobody reads, ``cost[i]`` its compute. The outputs someone reads are grouped
    into *parts* (outputs of one operator with the same readers live and die together):
    part ``p`` belongs to operator ``part_op[p]``, has ``part_size[p]`` bytes, tensors
    ``part_tensors[p]`` and readers ``part_readers[p]``; ``op_parts[i]`` are operator i's
    parts and ``reads[j]`` the parts operator j reads. Graph inputs ``inputs[x]`` of
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
    part_op: tuple[int, ...] = field(default=(), compare=False)
    part_size: tuple[int, ...] = field(default=(), compare=False)
    part_tensors: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    part_readers: tuple[tuple[int, ...], ...] = field(default=(), compare=False)
    op_parts: tuple[tuple[int, ...], ...] = field(default=(), compare=False)
    reads: tuple[tuple[int, ...], ...] = field(default=(), compare=False)

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
        part_op: list[int] = []
        part_size: list[int] = []
        part_tensors: list[tuple[str, ...]] = []
        part_readers: list[tuple[int, ...]] = []
        op_parts: list[tuple[int, ...]] = []
        part_of: dict[str, int] = {}
        for i, v in enumerate(order):
            op = g.operators[v]
            outs = [t for t in op.outputs if t in tracked]
            groups: dict[tuple[int, ...], list[str]] = {}
            for t in outs:
                if g.tensors[t].consumers:
                    readers = tuple(sorted({idx[c] for c in g.tensors[t].consumers}))
                    groups.setdefault(readers, []).append(t)
            mine = []
            for readers, ts in groups.items():
                for t in ts:
                    part_of[t] = len(part_op)
                mine.append(len(part_op))
                part_op.append(i)
                part_size.append(sum(g.tensors[t].size for t in ts))
                part_tensors.append(tuple(ts))
                part_readers.append(readers)
            op_parts.append(tuple(mine))
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
        reads = [
            tuple(dict.fromkeys(part_of[t] for t in g.operators[v].inputs if t in part_of))
            for v in order
        ]
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
            part_op=tuple(part_op),
            part_size=tuple(part_size),
            part_tensors=tuple(part_tensors),
            part_readers=tuple(part_readers),
            op_parts=tuple(op_parts),
            reads=tuple(reads),
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


def excess(inst: RematInstance, computations: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(peak, bytes over the budget summed over every run) of ``computations``."""
    levels: list[int] = []
    peak = _memory_profile(inst, _sequence(inst.n, computations), None, levels)[0]
    return peak, sum(max(0, x - inst.budget) for x in levels)


def levels_of(
    inst: RematInstance, computations: Iterable[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[int]]:
    """(the runs in order, the bytes resident at each run) of ``computations``. Raises
    UsageError if a run reads a value that is not available.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q", "p"], {"z": 1}).output("z").build())
    >>> levels_of(RematInstance.build(Problem(g, 9)), [])
    ([(0, 0), (1, 1), (2, 2)], [5, 8, 9])
    """
    seq = _sequence(inst.n, computations)
    levels: list[int] = []
    _memory_profile(inst, seq, None, levels)
    return seq, levels


def no_remat_peak(inst: RematInstance) -> int:
    """Peak bytes of running the order once with nothing recomputed (checkpoint-all)."""
    return peak_of(inst)


def _memory_profile(
    inst: RematInstance,
    seq: list[tuple[int, int]],
    at_peak: list | None = None,
    levels: list | None = None,
) -> tuple[int, dict[int, list[int]], dict[int, list[int]]]:
    """(peak, drops of parts after each run, drops of inputs after each run). With
    ``at_peak`` (a list), it receives the index in ``seq`` of the first run at the peak and
    the operators with a part resident then; with ``levels`` (a list), the bytes resident
    at each run."""
    n = inst.n
    prods: dict[int, list[int]] = {i: [] for i in range(n)}
    uses: dict[int, list[int]] = {p: [] for p in range(len(inst.part_op))}
    in_uses: dict[int, list[int]] = {x: [] for x in range(len(inst.inputs))}
    user_inputs: dict[int, list[int]] = {}
    for x, us in enumerate(inst.input_users):
        for j in us:
            user_inputs.setdefault(j, []).append(x)
    for q, (_, k) in enumerate(seq):
        prods[k].append(q)
        for p in inst.reads[k]:
            uses[p].append(q)
        for x in user_inputs.get(k, ()):
            in_uses[x].append(q)
    # Each copy of a part lives from a run of its operator to its last use before the next.
    drop_after: dict[int, list[int]] = {}
    for p, us in uses.items():
        ps = prods[inst.part_op[p]]
        for a, start in enumerate(ps):
            nxt = ps[a + 1] if a + 1 < len(ps) else math.inf
            last = max((u for u in us if start < u < nxt), default=start)
            drop_after.setdefault(last, []).append(p)
    in_drop: dict[int, list[int]] = {}
    in_load: dict[int, list[int]] = {}
    for x, us in in_uses.items():
        if us:
            in_load.setdefault(us[0], []).append(x)
            in_drop.setdefault(us[-1], []).append(x)
    resident: set[int] = set()
    occupancy = peak = 0
    for q, (t, k) in enumerate(seq):
        for p in inst.reads[k]:
            if p not in resident:
                raise UsageError(
                    f"operator {inst.order[k]!r} runs in stage {t} but "
                    f"{', '.join(inst.part_tensors[p])} (of {inst.order[inst.part_op[p]]!r}) "
                    "is not available: recompute it first"
                )
        for x in in_load.get(q, ()):
            occupancy += inst.input_size[x]
        resident.update(inst.op_parts[k])
        occupancy += inst.keep[k] + inst.transient[k]
        if levels is not None:
            levels.append(occupancy)
        if occupancy > peak:
            peak = occupancy
            if at_peak is not None:
                at_peak[:] = [q, {inst.part_op[p] for p in resident}]
        occupancy -= inst.transient[k]
        for p in drop_after.get(q, ()):
            resident.discard(p)
            occupancy -= inst.part_size[p]
        for x in in_drop.get(q, ()):
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
            for part in drop_after.get(p, ())
            for o in inst.part_tensors[part]
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
) -> tuple[dict[int, list[tuple[int, int]]], dict[int, int], dict[int, list[int]]]:
    """Where each part is held, as position intervals ``[start, end)`` (one per run of its
    operator), the end position (exclusive) of each graph input's interval, and the
    positions each operator runs at — the form of
    :func:`cosma.solvers.remat.remat_cpsat`, e.g. to warm-start it from a baseline."""
    seq = _sequence(inst.n, computations)
    _, drop_after, in_drop = _memory_profile(inst, seq)
    numbered = [position(t, k) for t, k in seq]
    runs: dict[int, list[int]] = {i: [] for i in range(inst.n)}
    held: dict[int, list[tuple[int, int]]] = {p: [] for p in range(len(inst.part_op))}
    open_at: dict[int, int] = {}
    for q, (_, k) in enumerate(seq):
        runs[k].append(numbered[q])
        for p in inst.op_parts[k]:
            open_at[p] = numbered[q]
        for p in drop_after.get(q, ()):
            held[p].append((open_at.pop(p), numbered[q] + 1))
    ends = {x: numbered[q] + 1 for q, xs in in_drop.items() for x in xs}
    return held, ends, runs


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
        if "peak" in str(budget).lower():  # 90%peak, 1/2xpeak, -0.5xpeak, 0.9xpeek...
            raise UsageError(
                f"cannot read budget {budget!r}: write a fraction of the no-recomputation "
                "peak as a decimal followed by xpeak, e.g. 0.9xpeak (or bytes, or M_R...)"
            )
        return resolve_budget(graph, budget, setting=setting)
    frac = Fraction(m.group(1))  # exact: 0.9 x 10 is 9, not 9.000000000000002
    if frac <= 0:
        raise UsageError(f"budget {budget!r}: the fraction of the peak must be positive")
    inst = RematInstance.build(Problem(graph, 0, Setting.parse(setting)), order=order)
    return math.ceil(frac * no_remat_peak(inst))
