"""Rematerialization plan finders: two exact engines and Chen's baselines.

All of them solve :mod:`cosma.remat`'s problem (fixed order, pooled memory budget, minimum
total compute) and return a replayed :class:`~cosma.plan.Plan` whose ``objective`` is the
total compute and whose ``lower_bound`` is proven.

- :func:`remat_milp`: Checkmate's MILP (Jain et al. 2020) through PuLP, any backend of
  :mod:`cosma.solvers.backends` (CBC, HiGHS, Gurobi);
- :func:`remat_cpsat`: MOCCASIN's model (Bartan et al. 2023): a few retention intervals per
  operator under one cumulative memory constraint, OR-Tools CP-SAT;
- :func:`checkpoint_all`, :func:`chen_sqrtn`, :func:`chen_greedy`: keep everything; Chen et
  al.'s √n segments; Chen et al.'s greedy segments for a budget.

``max_computes`` bounds how often one operator runs (MOCCASIN's C; default 2, i.e. at most
one recomputation). Both engines honour it, so they solve the same problem and must agree
on its optimum; ``max_computes=None`` lifts the bound (exact for the stage frame, larger
models).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import random
import time
from collections.abc import Callable

import pulp

from cosma.deadline import Deadline
from cosma.errors import UsageError
from cosma.plan import Plan, Status
from cosma.problem import Problem
from cosma.remat import (
    REMAT_OPTIONS,
    RematInstance,
    excess,
    levels_of,
    no_remat_peak,
    peak_of,
    peak_state,
    position,
    remat_plan,
    retention,
)
from cosma.remat import stage_of as _stage_of
from cosma.simulator import verify
from cosma.solvers import backends, limits
from cosma.solvers.exact import OutOfTime, ticking

log = logging.getLogger(__name__)

DEFAULT_MAX_COMPUTES = 2


def _var(prob: pulp.LpProblem, name: str, **kw) -> pulp.LpVariable:
    """A variable of ``prob`` (PuLP >= 3.3 attaches it to the model; older ones cannot)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, **kw)
    return pulp.LpVariable(name, **kw)


def _empty(problem: Problem, method: str, solver: str | None, options: dict) -> Plan:
    p = problem.new_plan(method, solver=solver, options={**REMAT_OPTIONS, **options})
    return p


def _infeasible_reason(inst: RematInstance) -> str | None:
    """Why no plan can exist at all: an operator's own footprint (inputs, outputs) exceeds
    the budget."""
    worst, who = 0, None
    for j in range(inst.n):
        need = inst.keep[j] + inst.transient[j] + sum(inst.part_size[p] for p in inst.reads[j])
        need += sum(s for s, us in zip(inst.input_size, inst.input_users, strict=True) if j in us)
        if need > worst:
            worst, who = need, inst.order[j]
    if worst > inst.budget:
        return (
            f"needs at least {worst:,} bytes because of operator {who!r}, whose inputs and "
            f"outputs must be resident together; the budget is {inst.budget:,}"
        )
    return None


# --- time and memory limits (docs/remat.md, "Limits") ---------------------------------------


def _deadline(time_limit: float | Deadline | None, default: float | None = 60.0) -> Deadline:
    """A shared :class:`~cosma.deadline.Deadline` as it is (the CLI's covers the whole
    command; a signal makes it expire); seconds (None: ``default``) as one starting now."""
    if isinstance(time_limit, Deadline):
        return time_limit
    return Deadline(default if time_limit is None else float(time_limit))


def _limit_seconds(time_limit: float | Deadline | None) -> float | None:
    """The limit in seconds as the plan's options record it."""
    return time_limit.seconds if isinstance(time_limit, Deadline) else time_limit


def _expired(stop: Deadline | float | None) -> bool:
    """Whether ``stop`` (a Deadline, or a ``time.perf_counter()`` instant) has passed."""
    if stop is None:
        return False
    if isinstance(stop, Deadline):
        return stop.expired()
    return time.perf_counter() > stop


def _left(deadline: Deadline, share: float = 1.0) -> float:
    """Seconds left (``share`` of them); 1e9 without a limit."""
    left = deadline.left(share)
    return 1e9 if left is None else left


def _why_stopped(deadline: Deadline, where: str) -> str:
    from cosma import interrupt

    sig = interrupt.requested()
    if sig is not None:
        return f"stopped by {sig} {where}"
    return f"the time limit ({deadline.seconds:g} s) ran out {where}"


def milp_estimate(inst: RematInstance) -> limits.Estimate:
    """Columns, rows, nonzeros and bytes of the Checkmate MILP (:func:`_milp_model`) of
    ``inst``, counted from the instance alone (nothing is built; upper bounds where a count
    depends on the order of reads), priced with the traffic MILP's bytes per item
    (:data:`cosma.solvers.limits.COST`). The model has a variable per operator and later
    stage, so it grows with the square of the operator count: about 13 GB at 1,000.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> milp_estimate(RematInstance.build(Problem(g, 12))).columns
    2
    """
    n = inst.n
    stages = [n - 1 - i if inst.recomputable(i) else 0 for i in range(n)]
    in_of: list[list[int]] = [[] for _ in range(n)]
    for x, us in enumerate(inst.input_users):
        for j in set(us):
            in_of[j].append(x)
    s_cols = sum(n - 1 - i for i in inst.part_op)
    s_cols += sum(n - 1 - us[0] for us in inst.input_users if us)
    columns = sum(stages) + s_cols
    rows, nonzeros = s_cols + n, 3 * s_cols + sum(stages) + 2 * s_cols
    for k in range(n):
        runs = 1 + stages[k]
        parts = set(inst.op_parts[k]) | set(inst.reads[k])
        cands = len(parts) + len(in_of[k])
        later = sum(len(inst.part_readers[p]) for p in parts)
        later += sum(len(inst.input_users[x]) for x in in_of[k])
        deps = len(inst.reads[k]) + len(in_of[k])
        columns += runs * (1 + cands)  # A, and an F per candidate
        rows += runs * (deps + 2 + 2 * cands + later)  # dep, mem, acc, F rows
        nonzeros += runs * (3 * deps + 6 + 5 * cands + 2 * later)
    cost = limits.COST["milp"]
    size = cost["column"] * columns + cost["row"] * rows + cost["nonzero"] * nonzeros
    return limits.Estimate("milp", columns, rows, nonzeros, size)


def _too_large(est: limits.Estimate, memory_limit: int | None, what: str) -> str | None:
    """Why a model of estimate ``est`` is not built (over ``memory_limit`` bytes, default
    :func:`cosma.solvers.limits.default_limit`), or None if it fits."""
    from cosma.units import format_bytes

    limit = limits.default_limit() if memory_limit is None else memory_limit
    if limit is None or est.bytes <= limit:
        return None
    whence = (
        "the limit given"
        if memory_limit is not None
        else f"{int(limits.DEFAULT_FRACTION * 100)} % of this machine's memory"
    )
    return f"{what} would need {est.describe()}, above {format_bytes(limit)} ({whence})"


def _fallback(
    inst: RematInstance,
    plan: Plan,
    warm: list[tuple[int, int]] | None,
    why: str,
    t0: float,
    *,
    deadline: Deadline | None = None,
    bound: float | None = None,
) -> Plan:
    """The best baseline's plan as ``feasible`` (or ``no_solution``), with ``why`` as the
    reason: what an exact engine returns when it stops before (or instead of) solving.
    Without a warm start, the quick baselines are tried now, for half a second at most."""
    if warm is None:  # past the limit: the quick baselines, half a second at most
        warm = _warm_start(inst, 0.5)
    if warm is None:
        plan.reason = f"{why}; no baseline plan fits the budget either"
        return _finish(inst, plan, None, Status.NO_SOLUTION, bound, t0)
    plan.reason = f"{why}; best baseline kept"
    return _finish(inst, plan, warm, Status.FEASIBLE, bound, t0)


def _begin(
    problem: Problem,
    method: str,
    solver: str,
    order: list[str] | None,
    max_computes: int | None,
    time_limit: float | Deadline | None,
) -> tuple[float, Deadline, Plan, RematInstance]:
    """What an exact engine starts with: its clock, deadline, empty plan and instance; the
    plan's status is INFEASIBLE (with the reason) when no plan can fit at all."""
    t0 = time.perf_counter()
    deadline = _deadline(time_limit)
    options = {"max_computes": max_computes, "time_limit": _limit_seconds(time_limit)}
    plan = _empty(problem, method, solver, options)
    inst = RematInstance.build(problem, order=order, max_computes=max_computes)
    why = _infeasible_reason(inst)
    if why:
        plan.reason = why
        plan.status = Status.INFEASIBLE
    return t0, deadline, plan, inst


def _finish(
    inst: RematInstance,
    plan: Plan,
    computations: list[tuple[int, int]] | None,
    status: Status,
    bound: float | None,
    t0: float,
) -> Plan:
    """Turn computations into a replayed plan with status and bound."""
    if computations is None:
        plan.status = status
        plan.solve_time = time.perf_counter() - t0
        plan.lower_bound = None if bound is None else inst.base_cost + math.ceil(bound - 1e-6)
        return plan
    built = remat_plan(
        inst,
        computations,
        method=plan.method,
        status=status,
        solver=plan.solver,
        options=plan.options,
    )
    built.reason = plan.reason  # e.g. why a baseline was kept
    built.lower_bound = (
        inst.base_cost if bound is None else inst.base_cost + max(0, math.ceil(bound - 1e-6))
    )
    verify(inst.graph, built)
    if built.objective is not None and built.lower_bound >= built.objective:
        built.lower_bound = built.objective
        built.status = Status.OPTIMAL if status is not Status.INFEASIBLE else status
    built.solve_time = time.perf_counter() - t0
    if built.status is Status.OPTIMAL and built.objective > inst.base_cost:
        # The engines' optimum is over Checkmate's stage frame, a restriction of the
        # fixed-order problem the replay accepts (a gap may also re-run operators out of
        # order, or one operator twice): say so. Without recomputation nothing is cheaper.
        why = f"optimal among plans of the stage frame ({FRAME})"
        if inst.max_computes and max(inst.max_computes) < inst.n and any(inst.users):
            why += (
                f" that run each operator at most {plan.options.get('max_computes')} times "
                "(max_computes)"
            )
        # after a reason already given (e.g. why a baseline was kept)
        built.reason = f"{built.reason}; {why}" if built.reason else why
    return built


def _solver_fault(
    inst: RematInstance, plan: Plan, warm: list, cut: int | None, t0: float, solver: str
) -> Plan:
    """A solver said "infeasible" while ``warm`` (a replayed plan within the budget) fits:
    the claim is false (seen once with CBC on a 100-node random layered graph, not
    reproduced), so the plan is kept without it, as the traffic engines do."""
    log.error(
        "%s reported the remat model infeasible but a replayed plan fits: a solver fault; "
        "the plan is kept without that claim",
        solver,
    )
    plan.reason = (
        f"{solver} reported the model infeasible although a plan fits (a solver fault); "
        "best baseline kept"
    )
    return _finish(inst, plan, warm, Status.FEASIBLE, cut, t0)


FRAME = (
    "before each operator's first run, re-runs of earlier operators in the fixed order, "
    "each at most once"
)


# --- a lower bound from the cuts ------------------------------------------------------------


def cut_bound(
    inst: RematInstance,
    *,
    time_limit: float = 5.0,
    deadline: Deadline | None = None,
    memory_limit: int | None = None,
    depth: int = 2,
    floor: int | None = None,
    solver: str | None = None,
    max_runs_in: int = 20_000,
    max_absent: int = 2_000,
) -> int | None:
    """A proven lower bound on the recompute cost (total compute minus ``base_cost``) of
    every plan of the stage frame, whatever ``max_computes`` allows beyond one run; None if
    no plan can fit (some stage cannot shed enough bytes).

    The argument: while ``o_t`` first runs, resident are its inputs, its outputs, the graph
    inputs between their first and last user, and every *live* part (made before ``t``,
    read after ``t``) unless it is absent. So the parts absent at stage ``t`` hold at least
    ``excess_t`` = (the no-recomputation bytes at ``t``) - budget. A part of operator ``i``
    absent at ``t`` and read next at ``j > t`` needs a run of ``i`` in a stage of
    ``(t, j]`` (a stage ends with its operator's first run, and the copy alive at ``t``, if
    any, is gone). Minimising ``sum_i cost_i x (runs of i in those stages)`` over
    ``e[q,t]`` (part absent) and ``z[i,s]`` (runs of ``i`` in stage ``s``):
    ``sum_q size_q e[q,t] >= excess_t`` and ``sum_{s in (t, j]} z[i,s] >= e[q,t]``. Every
    plan is a solution (with its absences and recomputations), so the model's optimum, and
    the bound the solver proves on it within ``time_limit``, bound every plan.

    With ``depth >= 0``, also the inputs of those runs, ``depth`` levels deep: the run of
    ``i`` in ``(t, j]`` reads each input ``v`` then, so ``v`` is resident while ``o_t``
    first runs (a live part not absent; a part nobody reads after ``t``, or a graph input
    past its last reader, held at ``t`` at the cost of its bytes there) or ``v``'s operator
    runs in a stage of ``(t, j]`` as well, before it (and then its inputs likewise). The
    memory of the runs themselves and the deeper levels are left out (hence a bound
    only). ``depth=-1`` leaves the inputs out entirely (a smaller, weaker model); ``0`` is
    the same as ``1`` (the re-runs' own inputs, one level).
    ``floor``: a value at most *this model's* optimum - the same instance's bound with
    fewer rows (``depth=-1``), which this model's optimum never falls below - added as a
    row on the objective to help the solver (a bound proven some other way may exceed the
    model's optimum, and the row would then lift the answer above the true optimum: it is
    not what this takes). ``solver``: ``"cbc"`` or
    ``"highs"`` (default: HiGHS for ``depth >= 0`` when installed, whose branching does
    better on these rows, else CBC). Input rows only while the model stays small: with more
    than ``max_absent`` absence variables they are left out (``floor`` is then returned
    when given). A model that would not fit ``memory_limit`` (default:
    half the machine's memory) is not built (bound 0); building it stops with
    :class:`~cosma.solvers.exact.OutOfTime` when ``deadline`` passes.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q"], {"r": 4}).op("d", ["r", "p"], {"z": 1}).output("z").build())
    >>> # at 9 bytes, p (4) must be absent while c runs (p, q, r: 12): a runs again (4)
    >>> cut_bound(RematInstance.build(Problem(g, 9)))
    4
    >>> # at 9 bytes, q (4) must be absent while c and e run (y, r, q: 10; r, s, q: 10), so
    >>> # b runs again before d; it reads p, which nobody reads after b: held while c runs
    >>> # (1 + 5 + 4 > 9) it does not fit, so a runs again too, reading x (held: 1 byte)
    >>> g = (GraphBuilder().input("x", 1).input("y", 1).op("a", ["x"], {"p": 4})
    ...      .op("b", ["p"], {"q": 4}).op("c", ["y"], {"r": 5}).op("e", ["r"], {"s": 1})
    ...      .op("d", ["q", "s"], {"z": 1}).output("z").build())
    >>> inst = RematInstance.build(Problem(g, 9))
    >>> cut_bound(inst, depth=-1), cut_bound(inst)  # b's cost; a's and b's (the optimum)
    (4, 8)
    """
    n = inst.n
    must = [inst.keep[t] + inst.transient[t] for t in range(n)]
    for x, us in enumerate(inst.input_users):
        for t in range(us[0], us[-1] + 1) if us else ():
            must[t] += inst.input_size[x]
    live: dict[int, list[int]] = {t: [] for t in range(n)}
    for q, i in enumerate(inst.part_op):
        readers = set(inst.part_readers[q])
        for t in range(i + 1, max(readers, default=i) + 1):
            if t in readers:
                must[t] += inst.part_size[q]  # o_t reads it
            else:
                live[t].append(q)
    # Runs counted by prefix: Z[i,u] = runs of i in stages (i, u], nondecreasing in u, so
    # "a run of i in a stage of (t, j]" is Z[i,j] - Z[i,t] >= e (the same model as per-stage
    # run counts z[i,s] = Z[i,s] - Z[i,s-1], with O(1) terms per row instead of O(j - t)).
    # Bounded memory: one binary per stage over the budget and value it could shed.
    absent = 0
    for t in ticking(range(n), deadline):
        if must[t] + sum(inst.part_size[q] for q in live[t]) > inst.budget:
            absent += sum(1 for q in live[t] if inst.recomputable(inst.part_op[q]))
    log.debug("cut_bound: %d absences", absent)
    if depth >= 0 and absent > max_absent:
        log.info("cut_bound: %d absences, input rows left out (max_absent)", absent)
        if floor is not None:
            return floor  # the caller has the small model's bound already
        depth = -1
    cost = limits.COST["milp"]
    grow = 1 + 2 * max(0, depth + 1)  # input rows per absence, roughly
    est = limits.Estimate(
        "milp",
        2 * absent * grow,
        3 * absent * grow,
        6 * absent * grow,
        absent * grow * (2 * cost["column"] + 3 * cost["row"]),
    )
    too_big = _too_large(est, memory_limit, "the cut bound's model")
    if too_big:
        log.info("%s: not built, no cut bound", too_big)
        return 0
    prob = pulp.LpProblem("cut_bound", pulp.LpMinimize)
    rows: list[tuple[int, int, int, object]] = []  # (i, t, j, e)
    # smaller numbers for the solver: sizes / mg (graph inputs too: they can be held)
    mg = math.gcd(*inst.part_size, *[b for b in inst.input_size if b]) or 1
    shed: dict[int, list] = {}
    over_at: dict[int, int] = {}
    absent_at: dict[tuple[int, int], object] = {}  # (part, stage) -> e
    for t in ticking(range(n), deadline, every=4):
        over = must[t] + sum(inst.part_size[q] for q in live[t]) - inst.budget
        if over <= 0:
            continue
        if over > sum(inst.part_size[q] for q in live[t] if inst.recomputable(inst.part_op[q])):
            return None
        over_at[t], shed[t] = over, []
        for q in live[t]:
            i = inst.part_op[q]
            if not inst.recomputable(i):
                continue
            nxt = min(r for r in inst.part_readers[q] if r > t)
            e = _var(prob, f"absent_{q}_{t}", lowBound=0, upBound=1, cat="Binary")
            shed[t].append((inst.part_size[q] // mg) * e)
            rows.append((i, t, nxt, e))
            absent_at[q, t] = e
    if not rows:
        return 0
    # Inputs of re-runs. A part q of i absent at t and read next at j needs a run of i in a
    # stage of (t, j], after o_t's first run; each value v the first such run reads is
    # resident then, so v is resident while o_t first runs or v's operator h runs in a stage
    # of (t, j] too (before it) - and then h's own inputs likewise, up to ``depth`` levels.
    # Resident at t: a live part unless absent; a part o_t reads always (nothing to add); a
    # part nobody reads after t, or a graph input past its last user, only if held (a
    # binary adding its bytes to what stage t keeps). w[h,t,j] (0..1) stands for "h runs in
    # a stage of (t, j]", at most its run count there. Every plan satisfies these rows with
    # its own absences, holdings and runs; deeper levels and the re-runs' outputs are left
    # out, so it stays a bound.
    held: dict[tuple[str, int, int], object] = {}  # (kind, part or input, stage) -> h
    chains: list[tuple[int, int, int, object, object]] = []  # (op or -1, t, j, if, resident)
    runs_in: dict[tuple[int, int, int], object] = {}  # (op, t, j) -> w
    work = [(i, t, j, e, 1) for i, t, j, e in rows] if depth >= 0 else []
    while work:
        i, t, j, trigger, level = work.pop()
        if deadline is not None and deadline.expired():
            raise OutOfTime("the time limit ran out while building the cut bound")
        for v in inst.reads[i]:
            h = inst.part_op[v]
            readers = inst.part_readers[v]
            if t in readers or (any(r > t for r in readers) and (v, t) not in absent_at):
                continue  # o_t reads it, or it cannot be absent at t: resident
            if any(r > t for r in readers):  # live at t
                resident = 1 - absent_at[v, t]
            else:
                key = ("part", v, t)
                if key not in held:
                    held[key] = _var(prob, f"held_{v}_{t}", lowBound=0, upBound=1, cat="Binary")
                    shed[t].append(-(inst.part_size[v] // mg) * held[key])
                resident = held[key]
            if not inst.recomputable(h):
                chains.append((-1, t, j, trigger, resident))
            elif level < depth and len(runs_in) < max_runs_in:
                w = runs_in.get((h, t, j))
                if w is None:
                    w = runs_in[h, t, j] = _var(prob, f"w_{h}_{t}_{j}", lowBound=0, upBound=1)
                    work.append((h, t, j, w, level + 1))
                chains.append((-2, t, j, trigger, resident + w))
            else:
                chains.append((h, t, j, trigger, resident))
        for x, us in enumerate(inst.input_users):
            if i not in us or us[-1] >= t or not inst.input_size[x]:
                continue  # not read, or held through t anyway (loaded by i < t at the latest)
            key = ("input", x, t)
            if key not in held:
                held[key] = _var(prob, f"held_in{x}_{t}", lowBound=0, upBound=1, cat="Binary")
                shed[t].append(-(inst.input_size[x] // mg) * held[key])
            chains.append((-1, t, j, trigger, held[key]))
    for (h, t, j), w in runs_in.items():
        chains.append((h, t, j, w, 0))
    for t, over in over_at.items():
        # sizes are multiples of mg, so the sum is too: round the excess up
        prob += pulp.lpSum(shed[t]) >= -(-over // mg), f"shed_{t}"
    points: dict[int, set[int]] = {}
    for i, t, j, *_ in (*rows, *chains):
        if i >= 0:
            points.setdefault(i, set()).update((t, j))
    Z: dict[tuple[int, int], pulp.LpVariable] = {}
    objective = []
    cg = math.gcd(*inst.cost) or 1
    for i in ticking(sorted(points), deadline, every=16):
        prev = None
        for u in sorted(points[i]):
            Z[i, u] = _var(prob, f"runs_{i}_{u}", lowBound=0, cat="Integer")
            if prev is not None:
                prob += Z[i, u] >= prev, f"mono_{i}_{u}"
            prev = Z[i, u]
        objective.append((inst.cost[i] // cg) * prev)
    for i, t, j, e in ticking(rows, deadline, every=256):
        prob += Z[i, j] - Z[i, t] >= e, f"back_{e.name}"
    for k, (h, t, j, trigger, resident) in enumerate(ticking(chains, deadline, every=256)):
        again = Z[h, j] - Z[h, t] if h >= 0 else 0
        prob += resident + again >= trigger, f"chain_{k}"
    prob += pulp.lpSum(objective)
    if floor:
        prob += pulp.lpSum(objective) >= -(-floor // cg), "floor"
    if deadline is not None:
        time_limit = min(time_limit, _left(deadline))
        if deadline.expired(0.1):
            raise OutOfTime("the time limit ran out while building the cut bound")
    if solver is None:
        solver = "highs" if depth >= 0 and backends.backend("highs").available() else "cbc"
    extra = {}
    if solver == "highs" and deadline is not None:  # a cancelled deadline ends the solve
        extra["stop_when"] = deadline.expired
    out = backends.backend(solver).solve(
        prob, time_limit=max(0.1, time_limit), integral_gap=0.999, **extra
    )
    if out.status == backends.INFEASIBLE:
        return None
    if out.bound is None:
        return 0
    return max(0, math.ceil(out.bound - 1e-6)) * cg


def _cuts(
    inst: RematInstance, deadline: Deadline, memory_limit: int | None, *, deep: bool = True
) -> int | None:
    """:func:`cut_bound` for an engine, in at most 10 % of what is left (at most 5 s or 5 %
    of it, whichever is more): first
    without the inputs' rows (small; often exact), then, in what remains of that share and
    when ``deep``, with them (stronger) above the first's value. None: no plan fits. A
    model too large to build and solve within the share is given up (bound 0): building a
    1,000-node graph's model and writing it for CBC took 3-13 s where the share was 1 s."""
    left = deadline.left()
    share = deadline.sub(0.1, at_most=5.0 if left is None else max(5.0, 0.05 * left))
    try:
        cut = cut_bound(
            inst, time_limit=_left(share), deadline=share, memory_limit=memory_limit, depth=-1
        )
    except OutOfTime:
        log.info("the cut bound's model did not fit its time share: no cut bound")
        return 0
    if cut is None or not deep or share.expired(0.2):
        return cut
    return max(cut, _deep_cut(inst, cut, share, memory_limit))


def _deep_cut(inst: RematInstance, floor: int, deadline: Deadline, memory_limit: int | None) -> int:
    """:func:`cut_bound` with the inputs' rows above ``floor`` (the same instance's bound
    with ``depth=-1``: never above this model's optimum) until ``deadline`` (which may be
    cancelled); ``floor`` if it cannot do better in time."""
    try:
        deep = cut_bound(
            inst,
            time_limit=_left(deadline),
            deadline=deadline,
            memory_limit=memory_limit,
            floor=floor,
        )
    except OutOfTime:
        return floor
    return floor if deep is None else max(floor, deep)


class _CutInBackground:
    """:func:`_deep_cut` in a thread beside CP-SAT: ``value`` once it ends (a proven bound
    on the recompute cost), else None. :meth:`stop` ends it (the bound HiGHS has when
    stopped still counts if it comes in time)."""

    def __init__(
        self, inst: RematInstance, floor: int, deadline: Deadline, memory_limit: int | None
    ) -> None:
        import threading

        self.value: int | None = None
        self._deadline = deadline.sub()
        self._thread = threading.Thread(
            target=self._run, args=(inst, floor, memory_limit), name="cut-bound", daemon=True
        )
        self._thread.start()

    def _run(self, inst: RematInstance, floor: int, memory_limit: int | None) -> None:
        try:
            self.value = _deep_cut(inst, floor, self._deadline, memory_limit)
        except Exception:  # the bound is optional: the engine goes on without it
            log.exception("the cut bound's thread failed; going on without its bound")

    def stop(self, wait: float = 0.5) -> int | None:
        """Cancel it and wait up to ``wait`` seconds (a model being handed to HiGHS, or
        HiGHS's presolve, does not stop at once: the thread then ends on its own soon
        after, the call does not wait for it)."""
        self._deadline.cancel()
        self._thread.join(wait)
        if self._thread.is_alive():
            log.debug("the cut bound's thread is still winding down")
        return self.value


def _best_bound(solver_bound: float | None, cut: int | None) -> float | None:
    """The larger of a solver's proven bound and :func:`cut_bound` (both on the recompute
    cost)."""
    known = [b for b in (solver_bound, cut) if b is not None]
    return max(known) if known else None


# --- Checkmate's MILP ------------------------------------------------------------------------


def _milp_model(
    inst: RematInstance, budget: int, deadline: Deadline | None = None
) -> tuple[pulp.LpProblem, dict, dict, int]:
    """Variables, constraint families, objective (Checkmate's formulation, stage frame).
    Building stops with :class:`~cosma.solvers.exact.OutOfTime` once ``deadline`` passes.

    - ``R[t,i]`` = 1 if operator i is recomputed in stage t (i < t; first runs are fixed);
    - ``S[t,p]`` = 1 if part p (outputs of one operator with the same readers) is kept from
      stage t-1 into stage t; graph inputs likewise after their first use;
    - ``F[t,p,k]`` (continuous) = 1 if p is freed right after position (t,k);
    - ``A[t,k]`` (continuous) = bytes resident after position (t,k) and its frees.
    """
    n = inst.n
    g = math.gcd(*[m for m in (*inst.part_size, *inst.transient, *inst.input_size) if m]) or 1
    psize = [m // g for m in inst.part_size]
    keep = [sum(psize[p] for p in inst.op_parts[i]) for i in range(n)]
    trans = [m // g for m in inst.transient]
    isize = [m // g for m in inst.input_size]
    cap = budget // g
    cg = math.gcd(*[c for c in inst.cost if c]) or 1
    prob = pulp.LpProblem("remat", pulp.LpMinimize)
    first_user = {x: us[0] for x, us in enumerate(inst.input_users) if us}
    in_users = {x: set(us) for x, us in enumerate(inst.input_users)}
    owner = inst.part_op

    # R: recompute i in stage t, any stage after its own. Not only from its first reader's
    # stage on: an early recomputation, while i's inputs are still resident for another
    # reader, can spare keeping those inputs (or re-running their producers) until then.
    R: dict[tuple[int, int], object] = {}
    for i in ticking(range(n), deadline):
        if not inst.recomputable(i):
            continue
        for t in range(i + 1, n):
            R[t, i] = _var(prob, f"R_{t}_{i}", cat=pulp.LpBinary)

    def r(t: int, i: int):
        return 1 if t == i else R.get((t, i), 0)

    # S: keep part p into stage t (after its operator's stage); inputs after first use.
    S: dict[tuple[int, object], object] = {}
    for p, i in ticking(enumerate(owner), deadline):
        for t in range(i + 1, n):
            S[t, p] = _var(prob, f"S_{t}_{p}", cat=pulp.LpBinary)
    for x, f in first_user.items():
        for t in range(f + 1, n):
            S[t, ("in", x)] = _var(prob, f"S_{t}_in{x}", cat=pulp.LpBinary)

    # carry: S[t+1,p] <= S[t,p] + R[t,op(p)]  (a part kept was there in stage t)
    for (t, p), var in ticking(S.items(), deadline, every=1024):
        if isinstance(p, tuple):
            x = p[1]
            if t - 1 > first_user[x]:
                prob += var <= S[t - 1, p], f"carry_{t}_in{x}"
        elif t - 1 > owner[p]:
            prob += var <= S[t - 1, p] + r(t - 1, owner[p]), f"carry_{t}_{p}"

    # available: R[t,j] <= R[t,op(p)] + S[t,p] for every part p j reads (inputs present)
    for j in ticking(range(n), deadline, every=1):
        for t in range(j, n):
            rj = r(t, j)
            if isinstance(rj, int) and rj == 0:
                continue
            for p in inst.reads[j]:
                prob += rj <= r(t, owner[p]) + S.get((t, p), 0), f"dep_{t}_{p}_{j}"
            for x in range(len(inst.inputs)):
                if j in in_users[x] and t > first_user[x]:
                    prob += rj <= S[t, ("in", x)], f"depin_{t}_{x}_{j}"

    # at most max_computes runs of each operator
    for i in range(n):
        rs = [R[t, i] for t in range(i + 1, n) if (t, i) in R]
        if rs and inst.max_computes[i] - 1 < len(rs):
            prob += pulp.lpSum(rs) <= inst.max_computes[i] - 1, f"cap_{i}"

    # memory: A[t,k] = A[t,k-1] + keep_k R[t,k] + loads - sum size_p F[t,p,k];
    #         A[t,k-1] + (keep_k + transient_k) R[t,k] + loads <= budget
    for t in ticking(range(n), deadline, every=1):
        carried = pulp.lpSum(
            psize[p] * S[t, p] for p in range(len(owner)) if (t, p) in S
        ) + pulp.lpSum(isize[x] * S[t, ("in", x)] for x in first_user if (t, ("in", x)) in S)
        prev = carried
        for k in range(t + 1):
            rk = r(t, k)
            if isinstance(rk, int) and rk == 0:
                continue
            loads = sum(isize[x] for x, f in first_user.items() if f == t == k)
            prob += prev + (keep[k] + trans[k]) * rk + loads <= cap, f"mem_{t}_{k}"
            # frees after (t,k): k's parts, or parts k reads; not if kept into t+1 or read
            # later in the stage
            frees = []
            cands: list[object] = [*inst.op_parts[k], *inst.reads[k]]
            cands += [("in", x) for x in range(len(inst.inputs)) if k in in_users[x]]
            for p in dict.fromkeys(cands):
                if isinstance(p, tuple):
                    size = isize[p[1]]
                    later = [j for j in inst.input_users[p[1]] if k < j <= t]
                    if t < first_user[p[1]]:
                        continue
                    label = f"in{p[1]}"
                else:
                    size = psize[p]
                    later = [j for j in inst.part_readers[p] if k < j <= t]
                    label = str(p)
                f = _var(prob, f"F_{t}_{label}_{k}", lowBound=0, upBound=1)
                prob += f <= rk, f"{f.name}_run"
                nxt = S.get((t + 1, p))
                if nxt is not None:
                    prob += f <= 1 - nxt, f"{f.name}_kept"
                for j in later:
                    rj = r(t, j)
                    if not (isinstance(rj, int) and rj == 0):
                        prob += f <= 1 - rj, f"{f.name}_read{j}"
                frees.append(size * f)
            nxt_a = _var(prob, f"A_{t}_{k}", lowBound=0)
            prob += nxt_a == prev + keep[k] * rk + loads - pulp.lpSum(frees), f"acc_{t}_{k}"
            prev = nxt_a
    if R:
        prob += pulp.lpSum((inst.cost[i] // cg) * v for (t, i), v in R.items())
    else:  # one objective only (a second one makes PuLP warn "Overwriting ...")
        prob += _var(prob, "zero", lowBound=0, upBound=0)
    return prob, R, S, cg


def remat_milp(
    problem: Problem,
    *,
    order: list[str] | None = None,
    max_computes: int | None = DEFAULT_MAX_COMPUTES,
    solver: str = "cbc",
    time_limit: float | Deadline = 60.0,
    threads: int = 1,
    seed: int = 0,
    log_path: str | None = None,
    memory_limit: int | None = None,
) -> Plan:
    """Least total compute under ``problem.budget`` by Checkmate's MILP (any PuLP backend).

    ``time_limit`` (seconds, or a shared :class:`~cosma.deadline.Deadline`) bounds the whole
    call. The best baseline is found first; a model whose estimate (:func:`milp_estimate`)
    exceeds ``memory_limit`` bytes (default: half the machine's memory) is not built, and
    that baseline is returned as ``feasible`` with the reason, as when the limit (or a
    signal) stops the call before the solver has a better plan.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q"], {"r": 4}).op("d", ["r", "p"], {"z": 1}).output("z").build())
    >>> # the no-remat peak is 12 (p, q, r while c runs); at 9, a runs again before d
    >>> # (x, r, p resident: 9 bytes): 4 operators of cost 4 (their largest tensor) plus 4
    >>> p = remat_milp(Problem(g, 9), time_limit=20)
    >>> p.status.value, p.objective, p.stats["recomputations"]
    ('optimal', 20, 1)
    """
    t0, deadline, plan, inst = _begin(
        problem, "remat-milp", solver, order, max_computes, time_limit
    )
    if plan.status is Status.INFEASIBLE:
        return _finish(inst, plan, None, Status.INFEASIBLE, None, t0)
    backend = backends.backend(solver)
    # The best baseline first (at most a third of the time): what is returned if the model
    # is too large, or the limit or a signal stops the call before the solver does better.
    stuck: list = []
    warm = _warm_start(inst, deadline.sub(1 / 3), tight=False, stuck=stuck)
    if warm is None:  # no baseline fits: the stage-wise greedy and phase 1, a third at most
        start = stuck[0] if stuck else None
        warm = _tight_start(inst, deadline.sub(1 / 3), threads=threads, seed=seed, start=start)[0]
    too_big = _too_large(milp_estimate(inst), memory_limit, "the Checkmate MILP")
    if too_big:
        log.warning("%s: not built", too_big)
        if warm is None:  # the rest of the time for the baselines
            warm = _warm_start(inst, deadline)
        return _fallback(
            inst, plan, warm, f"{too_big}: not built (use -m cpsat or --memory-limit)", t0
        )
    try:
        cut = _cuts(inst, deadline, memory_limit)
        built = time.perf_counter()
        prob, R, S, cg = _milp_model(inst, problem.budget, deadline)
        built = time.perf_counter() - built
        # Writing the model for the solver takes about as long as building it.
        if deadline.expired(0.5 * built):
            raise OutOfTime
    except OutOfTime:
        return _fallback(inst, plan, warm, _why_stopped(deadline, "while building the model"), t0)
    if warm is not None:
        _milp_warm(inst, warm, R, S)
    out = backend.solve(
        prob,
        # What is left, less a little for decoding and replaying the plan.
        time_limit=max(0.1, 0.95 * _left(deadline) - 0.5 * built),
        threads=threads,
        seed=seed,
        log_path=log_path,
        integral_gap=0.999,
        warm_start=warm is not None,
    )
    bound = _best_bound(None if out.bound is None else out.bound * cg, cut)
    if out.status == backends.INFEASIBLE and warm is not None:
        return _solver_fault(inst, plan, warm, cut, t0, solver)
    if out.status == backends.INFEASIBLE:
        plan.reason = (
            "no plan fits the budget in the stage frame with at most "
            f"{max_computes if max_computes else 'any number of'} runs per operator"
        )
        return _finish(inst, plan, None, Status.INFEASIBLE, None, t0)
    if out.status == backends.NO_SOLUTION:
        plan.reason = out.note.splitlines()[0] if out.note else "time limit, no plan found"
        if warm is not None:  # never worse than the best baseline
            plan.reason += "; best baseline kept"
            return _finish(inst, plan, warm, Status.FEASIBLE, bound, t0)
        return _finish(inst, plan, None, Status.NO_SOLUTION, bound, t0)
    comps = []
    for (t, i), v in R.items():
        val = out.values.get(v.name)
        if val is not None and val > 0.5:
            comps.append((t, i))
    status = Status.OPTIMAL if out.status == backends.OPTIMAL else Status.FEASIBLE
    return _finish(inst, plan, comps, status, bound, t0)


def _milp_warm(inst: RematInstance, warm: list, R: dict, S: dict) -> None:
    """Initial values of R and S from a baseline's computations (a MIP start)."""
    chosen = set(warm)
    for key, var in R.items():
        var.setInitialValue(1 if key in chosen else 0)
    held, in_ends, _ = retention(inst, warm)
    first = {x: us[0] for x, us in enumerate(inst.input_users) if us}
    for (t, p), var in S.items():
        edge = position(t, 0)
        if isinstance(p, tuple):
            x = p[1]
            on = position(first[x], first[x]) < edge <= in_ends.get(x, 0) - 1
        else:
            on = any(a < edge <= b - 1 for a, b in held[p])
        var.setInitialValue(1 if on else 0)


# --- MOCCASIN's CP-SAT model ------------------------------------------------------------------


def cpsat_estimate(inst: RematInstance) -> limits.Estimate:
    """Columns, rows, nonzeros and bytes of :func:`remat_cpsat`'s model of ``inst`` (upper
    bounds, nothing built), priced with :data:`cosma.solvers.limits.COST`. It grows with
    the edges times the squared number of copies, so linearly in the graph at the default
    ``max_computes`` of 2.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> cpsat_estimate(RematInstance.build(Problem(g, 12))).bytes < 10**6
    True
    """
    n = inst.n
    copies = [min(inst.max_computes[i], n - i) if inst.users[i] else 1 for i in range(n)]
    columns = rows = nonzeros = 0
    for i in range(n):
        per = 2 + 3 * len(inst.op_parts[i]) + (1 if inst.transient[i] else 0)
        columns += copies[i] * per
        rows += copies[i] * (2 + 2 * len(inst.op_parts[i]))
        nonzeros += copies[i] * (4 + 6 * len(inst.op_parts[i]))
        for q in inst.reads[i]:
            serves = copies[i] * copies[inst.part_op[q]]
            columns += serves
            rows += 3 * serves + copies[i]
            nonzeros += 9 * serves
    ins = sum(1 for us in inst.input_users if us)
    columns += 3 * ins
    rows += ins + sum(len(us) for us in inst.input_users)
    nonzeros += 3 * columns  # the cumulative constraint and the hints
    cost = limits.COST["cpsat"]
    size = cost["column"] * columns + cost["row"] * rows + cost["nonzero"] * nonzeros
    return limits.Estimate("cpsat", columns, rows, nonzeros, size)


def _stops_in_time(method: str, solver_name: str) -> Callable:
    """Wrap an exact engine so a limit (or signal) that stops it while it builds its model
    (:class:`~cosma.solvers.exact.OutOfTime`) still returns the best quick baseline as
    ``feasible``, or ``no_solution``, with the reason."""
    import functools

    def wrap(fn: Callable[..., Plan]) -> Callable[..., Plan]:
        @functools.wraps(fn)
        def run(
            problem: Problem,
            *,
            order: list[str] | None = None,
            max_computes: int | None = DEFAULT_MAX_COMPUTES,
            time_limit: float | Deadline = 60.0,
            **kw: object,
        ) -> Plan:
            t0 = time.perf_counter()
            deadline = _deadline(time_limit)
            try:
                return fn(
                    problem, order=order, max_computes=max_computes, time_limit=deadline, **kw
                )
            except OutOfTime:
                inst = RematInstance.build(problem, order=order, max_computes=max_computes)
                options = {"max_computes": max_computes, "time_limit": deadline.seconds}
                plan = _empty(problem, method, solver_name, options)
                why = _why_stopped(deadline, "while building the model")
                return _fallback(inst, plan, None, why, t0)

        return run

    return wrap


@dataclasses.dataclass
class _Moccasin:
    """:func:`remat_cpsat`'s model of an instance, with what is needed to hint it from
    computations and to read computations back from a solution."""

    inst: RematInstance
    model: object  # cp_model.CpModel
    objective: list  # the cost of each optional interval (present literal times cost)
    cg: int  # common factor taken out of the costs
    mg: int  # and out of the sizes
    capacity: object  # the cumulative's capacity: a constant, or phase 1's variable
    starts: dict
    present: dict
    stage_var: dict
    ends: dict
    lengths: dict
    serves: dict
    in_start: dict
    in_end: dict
    in_len: dict

    def at(self, t: int, k: int) -> int:
        return t * self.inst.n + k

    def axis(self, p: int) -> int:  # cosma.remat.position numbering -> this axis
        return self.at(*_stage_of(p))

    def hint(self, comps: list[tuple[int, int]]) -> bool:
        """Hint every variable from ``comps`` (a complete hint, so the search starts from
        that plan instead of repairing a partial one); False if some operator runs more
        often than the model allows (nothing hinted)."""
        inst, m, n = self.inst, self.model, self.inst.n
        held, in_ends, runs = retention(inst, comps)
        if any(len(runs[i]) > len(self.starts[i]) for i in range(n)):
            return False
        for i in range(n):
            for c in range(len(self.starts[i])):
                on = c < len(runs[i])
                a = (
                    self.axis(runs[i][c])
                    if on
                    else self.at(self.stage_var[i, c].proto.domain[0], i)
                    if c
                    else self.at(i, i)
                )
                if c:
                    m.add_hint(self.present[i][c], on)
                    m.add_hint(self.stage_var[i, c], a // n)
                for q in inst.op_parts[i]:
                    b = self.axis(held[q][c][1] - 1) + 1 if on else a + 1
                    m.add_hint(self.ends[q, c], b)
                    m.add_hint(self.lengths[q, c], b - a)
        for (q, c2, j, c), z in self.serves.items():
            i = inst.part_op[q]
            on = c < len(runs[j]) and c2 < len(runs[i])
            if on:
                sj = runs[j][c]  # (cosma.remat.position numbering, as held)
                a, b = held[q][c2]
                on = a < sj < b
            m.add_hint(z, on)
        for x, e in in_ends.items():
            if x in self.in_end:
                e = self.axis(e - 1) + 1
                m.add_hint(self.in_end[x], e)
                m.add_hint(self.in_len[x], e - self.in_start[x])
        if not isinstance(self.capacity, int):
            m.add_hint(
                self.capacity,
                max(self.capacity.proto.domain[0], -(-peak_of(inst, comps) // self.mg)),
            )
        return True

    def decode(self, solver) -> list[tuple[int, int]]:
        """The computations (stage, operator) of ``solver``'s solution."""
        comps = []
        for i in range(self.inst.n):
            for c in range(1, len(self.starts[i])):
                if solver.boolean_value(self.present[i][c]):
                    comps.append((solver.value(self.stage_var[i, c]), i))
        return comps


def _moccasin_model(
    inst: RematInstance, deadline: Deadline, *, capacity: int | None, dominance: bool = True
) -> _Moccasin:
    """MOCCASIN's retention-interval model of ``inst`` (:func:`remat_cpsat` describes it),
    without an objective. The cumulative's capacity is ``capacity`` bytes, or with None an
    integer variable from the budget up (phase 1 of :func:`_phase_one` minimises it)."""
    from ortools.sat.python import cp_model

    n = inst.n

    # The time axis: position (t, k) is t * n + k (stage t's runs in order, then a gap up to
    # the next stage). The order is that of cosma.remat.position, so the model is the same;
    # but a recomputation's start is then the affine n * stage + i of a stage variable with
    # an interval domain, where the triangular numbering needs an explicit list of values
    # (on the 353-node ResNet-50 those lists made CP-SAT's presolve take ~60 s, not 1 s).
    def at(t: int, k: int) -> int:
        return t * n + k

    horizon = at(n - 1, n - 1) + 1
    stage_var: dict[tuple[int, int], object] = {}
    # common factors out of costs and sizes (MOCCASIN does the same): smaller numbers
    cg = math.gcd(*inst.cost) or 1
    mg = math.gcd(*[b for b in (*inst.part_size, *inst.transient, *inst.input_size) if b]) or 1
    m = cp_model.CpModel()
    intervals, demands = [], []
    starts: dict[int, list] = {}
    present: dict[int, list] = {}
    ends: dict[tuple[int, int], object] = {}  # (part, copy) -> end
    lengths: dict[tuple[int, int], object] = {}
    serves: dict[tuple[int, int, int, int], object] = {}  # (part, copy, reader, copy)
    objective = []
    for i in ticking(range(n), deadline):
        # any stage after i's own (also before its first reader's: see remat_milp's R)
        lo = i + 1
        copies = min(inst.max_computes[i], 1 + max(0, n - lo)) if inst.users[i] else 1
        starts[i], present[i] = [], []
        for c in range(copies):
            if c == 0:
                s = m.new_constant(at(i, i))
                p = m.new_constant(1)
            else:
                stage_var[i, c] = m.new_int_var(lo, n - 1, f"stage_{i}_{c}")
                s = n * stage_var[i, c] + i
                p = m.new_bool_var(f"present_{i}_{c}")
                m.add_implication(p, present[i][c - 1])
                for q in inst.op_parts[i]:
                    m.add(ends[q, c - 1] <= s).only_enforce_if(p)
                objective.append((inst.cost[i] // cg) * p)
            starts[i].append(s)
            present[i].append(p)
            # one retention interval per part of i's outputs: [run, last read + 1)
            for q in inst.op_parts[i]:
                e = m.new_int_var(0, horizon, f"end_{q}_{c}")
                length = m.new_int_var(1, horizon, f"length_{q}_{c}")
                m.add(s + length == e)
                ends[q, c], lengths[q, c] = e, length
                intervals.append(m.new_optional_interval_var(s, length, e, p, f"hold_{q}_{c}"))
                demands.append(inst.part_size[q] // mg)
            if inst.transient[i]:
                intervals.append(m.new_optional_fixed_size_interval_var(s, 1, p, f"run_{i}_{c}"))
                demands.append(inst.transient[i] // mg)
    # inputs: one interval from the first use, ending after the last run that reads them
    in_start: dict[int, int] = {}
    in_end: dict[int, object] = {}
    in_len: dict[int, object] = {}
    for x, us in enumerate(inst.input_users):
        if not us:
            continue
        s0 = at(us[0], us[0])
        e = m.new_int_var(s0 + 1, horizon, f"end_in{x}")
        in_start[x], in_end[x] = s0, e
        length = m.new_int_var(1, horizon, f"length_in{x}")
        in_len[x] = length
        m.add(s0 + length == e)
        intervals.append(m.new_interval_var(s0, length, e, f"hold_in{x}"))
        demands.append(inst.input_size[x] // mg)
    # reads: every run of j lies inside some interval of each part it reads
    for j in ticking(range(n), deadline, every=8):
        for c, sj in enumerate(starts[j]):
            pj = present[j][c]
            for q in inst.reads[j]:
                i = inst.part_op[q]
                serve = []
                for c2 in range(len(starts[i])):
                    z = m.new_bool_var(f"serve_{q}_{c2}_{j}_{c}")
                    m.add_implication(z, present[i][c2])
                    m.add(starts[i][c2] < sj).only_enforce_if(z)
                    m.add(ends[q, c2] > sj).only_enforce_if(z)
                    serve.append(z)
                    serves[q, c2, j, c] = z
                m.add_bool_or(serve).only_enforce_if(pj)
            for x, us in enumerate(inst.input_users):
                if j in us:
                    m.add(in_end[x] > sj).only_enforce_if(pj)
    # dominance: a recomputed copy serves some run (one that serves nothing can be left out
    # at no cost and no memory), which prunes the search
    served_by: dict[tuple[int, int], list] = {}
    for (q, c2, _, _), z in serves.items():
        served_by.setdefault((inst.part_op[q], c2), []).append(z)
    for i in range(n) if dominance else ():
        for c in range(1, len(starts[i])):
            m.add_bool_or(served_by.get((i, c), [])).only_enforce_if(present[i][c])
    if capacity is None:
        cap = m.new_int_var(inst.budget // mg, max(inst.budget // mg, sum(demands)), "capacity")
    else:
        cap = capacity // mg
    m.add_cumulative(intervals, demands, cap)
    return _Moccasin(
        inst,
        m,
        objective,
        cg,
        mg,
        cap,
        starts,
        present,
        stage_var,
        ends,
        lengths,
        serves,
        in_start,
        in_end,
        in_len,
    )


@_stops_in_time("remat-cpsat", "cp-sat")
def remat_cpsat(
    problem: Problem,
    *,
    order: list[str] | None = None,
    max_computes: int | None = DEFAULT_MAX_COMPUTES,
    time_limit: float | Deadline = 60.0,
    threads: int = 1,
    seed: int = 0,
    hint: bool = True,
    params: dict | None = None,
    dominance: bool = True,
    memory_limit: int | None = None,
    deep_cut: bool = True,
) -> Plan:
    """Least total compute under ``problem.budget`` by retention intervals and CP-SAT.

    Each operator i has up to ``max_computes`` intervals ``[start, end)`` on the position
    axis: the first starts at its own position ``(i, i)``, the others (optional) at a
    position ``(t, i)`` of a later stage. An interval holds i's value; every run of a reader
    j must fall inside an interval of each value j reads; all intervals share one
    cumulative resource of capacity ``budget``. Objective: the cost of the optional
    intervals present. The bound of :func:`cut_bound` without its input rows is a
    constraint of the model; with them (``deep_cut``), it is computed by HiGHS in a thread
    beside CP-SAT, which stops as soon as its plan meets that bound (then proven optimal);
    the better bound is reported. ``params`` sets CP-SAT parameters by name (e.g.
    ``{"linearization_level": 2}``). ``time_limit`` (seconds or a shared
    :class:`~cosma.deadline.Deadline`) bounds the whole call, and a signal stops CP-SAT with
    its best plan; a model whose estimate (:func:`cpsat_estimate`) exceeds ``memory_limit``
    bytes (default: half the machine's memory) is not built: the best quick baseline is
    returned as ``feasible`` with the reason (docs/remat.md, "Limits").

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 4}).op("b", ["p"], {"q": 4})
    ...      .op("c", ["q"], {"r": 4}).op("d", ["r", "p"], {"z": 1}).output("z").build())
    >>> p = remat_cpsat(Problem(g, 9), time_limit=20)
    >>> p.status.value, p.objective, p.stats["recomputations"]
    ('optimal', 20, 1)
    """
    from ortools.sat.python import cp_model

    t0, deadline, plan, inst = _begin(
        problem, "remat-cpsat", "cp-sat", order, max_computes, time_limit
    )
    if plan.status is Status.INFEASIBLE:
        return _finish(inst, plan, None, Status.INFEASIBLE, None, t0)
    too_big = _too_large(cpsat_estimate(inst), memory_limit, "the CP-SAT model")
    if too_big:
        log.warning("%s: not built", too_big)
        warm = _warm_start(inst, deadline)  # the rest of the time for the baselines
        return _fallback(inst, plan, warm, f"{too_big}: not built (use --memory-limit)", t0)
    mod = _moccasin_model(inst, deadline, capacity=problem.budget, dominance=dominance)
    m, objective, cg = mod.model, mod.objective, mod.cg
    # The small cut model now (its bound helps CP-SAT close the gap); the stronger one in a
    # thread beside the rest, and CP-SAT stops once its plan meets that bound.
    cut = _cuts(inst, deadline, memory_limit, deep=False)
    if cut and objective:  # a proven bound (cut_bound) helps CP-SAT close the gap
        m.add(sum(objective) >= -(-cut // cg))
    m.minimize(sum(objective))
    # The stronger one from now on, beside the warm start and the search (HiGHS only: it
    # can be stopped when CP-SAT ends, where CBC's process runs to its limit).
    background = None
    if cut is not None and objective and deep_cut and backends.backend("highs").available():
        background = _CutInBackground(inst, cut, deadline.sub(0.97), memory_limit)
    try:
        warm = None
        if hint:
            stuck: list = []
            warm = _warm_start(inst, deadline.sub(0.5), tight=False, stuck=stuck)
            if warm is None:  # no baseline fits: phase 1, then the stage-wise greedy
                start = stuck[0] if stuck else None
                warm, near = _tight_start(inst, deadline, threads=threads, seed=seed, start=start)
                if warm is None and near is not None and _HINT_NEAR:
                    mod.hint(near)  # over the budget: a hint for CP-SAT to repair
        if warm is not None:
            # A complete hint (every variable), so the search starts from a feasible plan
            # instead of repairing a partial one.
            mod.hint(warm)
        solver = cp_model.CpSolver()
        # What is left, less a little for decoding and replaying the plan.
        solver.parameters.max_time_in_seconds = max(0.1, 0.95 * _left(deadline))
        solver.parameters.num_workers = max(1, threads)
        solver.parameters.random_seed = seed
        # CP-SAT's own SIGINT handler would replace cosma's (cosma.interrupt) for good.
        solver.parameters.catch_sigint_signal = False
        for key, value in (params or {}).items():
            setattr(solver.parameters, key, value)
        from cosma.solvers.cpsat import _solve_stoppable

        class Best(cp_model.CpSolverSolutionCallback):
            value: float | None = None

            def on_solution_callback(self) -> None:
                self.value = self.objective_value

        best = Best()

        def met() -> bool:  # CP-SAT's plan meets the stronger bound: proven optimal
            v = None if background is None else background.value
            return v is not None and best.value is not None and best.value * cg <= v

        if background is not None and background.value:  # known already: a row, as the cut's
            m.add(sum(objective) >= -(-background.value // cg))
        code = _solve_stoppable(solver, m, best, poll=met)
    finally:  # also when anything above raises: no thread left running
        deep = None if background is None else background.stop()
    if deep is not None and cut is not None:
        cut = max(cut, deep)
    bound = _best_bound(
        solver.best_objective_bound * cg if code in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None,
        cut,
    )
    if code == cp_model.INFEASIBLE and warm is not None:
        return _solver_fault(inst, plan, warm, cut, t0, "CP-SAT")
    if code == cp_model.INFEASIBLE:
        plan.reason = (
            "no plan fits the budget in the stage frame with at most "
            f"{max_computes if max_computes else 'any number of'} runs per operator"
        )
        return _finish(inst, plan, None, Status.INFEASIBLE, None, t0)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if warm is not None:  # never worse than the best baseline
            plan.reason = f"CP-SAT stopped ({solver.status_name(code)}); best baseline kept"
            return _finish(inst, plan, warm, Status.FEASIBLE, bound, t0)
        plan.reason = f"CP-SAT stopped ({solver.status_name(code)}) before finding a plan"
        return _finish(inst, plan, None, Status.NO_SOLUTION, bound, t0)
    status = Status.OPTIMAL if code == cp_model.OPTIMAL else Status.FEASIBLE
    return _finish(inst, plan, mod.decode(solver), status, bound, t0)


# --- baselines --------------------------------------------------------------------------------


def _warm_start(
    inst: RematInstance,
    seconds: float | Deadline | None = None,
    *,
    tight: bool = True,
    stuck: list | None = None,
) -> list[tuple[int, int]] | None:
    """The cheapest baseline's computations that fit (checkpoint-all, Chen's two, the
    eviction greedy — given at most ``seconds``, or until a Deadline passes), or when none
    fits and ``tight``, the stage-wise greedy's (:func:`_stagewise_search`, 40 % of the
    time left), or None. The eviction greedy's plan where it got stuck (over the budget)
    is appended to ``stuck`` if given."""
    best = None
    stop = seconds if isinstance(seconds, Deadline) else None
    if seconds is not None and stop is None:
        stop = time.perf_counter() + seconds
    for choose in (_choose_all, _choose_greedy, _choose_sqrtn, _choose_evict):
        try:
            timed = choose in (_choose_evict, _choose_greedy)
            comps, info = choose(inst, stop) if timed else choose(inst)
        except UsageError:
            continue
        if comps is None:
            if stuck is not None and info.get("partial") is not None:
                stuck.append(info["partial"])
            continue
        cost = sum(inst.cost[k] for _, k in comps)
        if best is None or cost < best[0]:
            best = (cost, comps)
    if best is None and tight:  # the stage-wise greedy, given at most 40 % of the rest
        share = None
        if isinstance(stop, Deadline):
            left = stop.left()
            share = None if left is None else time.perf_counter() + 0.4 * left
        elif stop is not None:
            share = time.perf_counter() + 0.4 * max(0.0, stop - time.perf_counter())
        return _stagewise_search(inst, (stop, share))[0]
    return None if best is None else best[1]


# Which tight-budget starts _tight_start tries, in order, and the share of the time left
# each may take; and whether phase 1's closest plan hints CP-SAT when both fail.
_TIGHT: tuple[tuple[str, float], ...] = (("phase1", 0.6), ("stagewise", 0.5))
_HINT_NEAR = True


def _tight_start(
    inst: RematInstance,
    deadline: Deadline,
    *,
    threads: int = 1,
    seed: int = 0,
    start: list[tuple[int, int]] | None = None,
) -> tuple[list[tuple[int, int]] | None, list[tuple[int, int]] | None]:
    """A start for the exact engines when no baseline fits the budget: MOCCASIN's phase 1
    alternating with the eviction greedy (:func:`_descend`, from ``start``) with 60 % of
    the time left, then the stage-wise
    greedy's first plan (:func:`_stagewise_search`) with half of the rest
    (:data:`_TIGHT`). Returns the first plan whose memory profile fits (or None) and,
    without one, phase 1's plan of least peak (over the budget: a hint to repair, or
    None). The engines replay whatever plan they return with the simulator."""
    near = None
    for how, share in _TIGHT:
        if deadline.expired():
            break
        sub = deadline.sub(share)
        if how == "phase1":
            comps, near = _descend(inst, sub, threads=threads, seed=seed, start=start)
        else:
            comps = _stagewise_search(inst, (sub,), first=True)[0]
        if comps is not None:
            log.info("tight budget: %s found a plan after %.2f s", how, deadline.elapsed())
            return comps, None
    return None, near


def _descend(
    inst: RematInstance,
    deadline: Deadline,
    *,
    threads: int = 1,
    seed: int = 0,
    start: list[tuple[int, int]] | None = None,
    rounds: int = 8,
) -> tuple[list[tuple[int, int]] | None, list[tuple[int, int]] | None]:
    """Phase 1 (:func:`_phase_one`) in rounds of a quarter of ``deadline`` (at least a
    second): after a round that ends above the budget, the eviction greedy continues from
    its plan of least capacity (:func:`_choose_evict` with ``start``), and the next round
    (another seed) starts from where the greedy got stuck. At most ``rounds`` rounds, and
    it stops when two rounds in a row do not lower the peak. Returns a plan that fits (or
    None) and the plan of least peak found (or None), as :func:`_phase_one`."""
    chunk = max(1.0, _left(deadline) / 4)
    near, best, idle = None, None, 0
    for r in range(rounds):
        if deadline.expired():
            break
        comps, near = _phase_one(
            inst, deadline.sub(at_most=chunk), threads=threads, seed=seed + r, start=start
        )
        if comps is not None:
            return comps, None
        if near is None:
            break
        peak = peak_of(inst, near)
        idle = 0 if best is None or peak < best[0] else idle + 1
        if best is None or peak < best[0]:
            best = (peak, near)
        if idle >= 2:
            break
        comps, info = _choose_evict(inst, deadline, start=near)
        if comps is not None and peak_of(inst, comps) <= inst.budget:
            return comps, None
        start = info.get("partial") or near
    return None, None if best is None else best[1]


def _phase_one(
    inst: RematInstance,
    deadline: Deadline,
    *,
    threads: int = 1,
    seed: int = 0,
    start: list[tuple[int, int]] | None = None,
) -> tuple[list[tuple[int, int]] | None, list[tuple[int, int]] | None]:
    """MOCCASIN's phase 1 (Bartan et al. 2023): the retention-interval model with the
    memory capacity an integer variable from the budget up, minimised, starting from
    ``start`` (e.g. where the eviction greedy got stuck; default: the plan without
    recomputation), which fits a capacity of its peak; CP-SAT stops as soon as
    the capacity reaches the budget (its lower bound). Returns that plan's computations
    (or None if ``deadline`` passes first) and the plan of least capacity found."""
    from ortools.sat.python import cp_model

    from cosma.solvers.cpsat import _solve_stoppable

    try:
        mod = _moccasin_model(inst, deadline, capacity=None)
    except OutOfTime:
        return None, None
    if deadline.expired():
        return None, None
    mod.model.minimize(mod.capacity)
    if not (start and mod.hint(start)):
        mod.hint([])
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, _left(deadline))
    solver.parameters.num_workers = max(1, threads)
    solver.parameters.random_seed = seed
    solver.parameters.catch_sigint_signal = False
    code = _solve_stoppable(solver, mod.model, None)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, None
    comps = mod.decode(solver)
    if solver.value(mod.capacity) > inst.budget // mod.mg or peak_of(inst, comps) > inst.budget:
        return None, comps
    return comps, None


def _forward_set(inst: RematInstance) -> list[int]:
    """Operators of the forward pass: by ``phase`` attribute when the graph has one (training
    graphs), else those before the no-remat memory peak (where training graphs peak)."""
    ops = inst.graph.operators
    phases = [ops[v].attributes.get("phase") for v in inst.order]
    if any(p is not None for p in phases):
        return [i for i, p in enumerate(phases) if p == "forward"]
    # peak position of the no-remat run
    occupancy, best, at = 0, -1, 0
    last = {i: max(inst.users[i], default=i) for i in range(inst.n)}
    for k in range(inst.n):
        occupancy += inst.keep[k]
        if occupancy > best:
            best, at = occupancy, k
        occupancy -= sum(inst.keep[i] for i in range(k + 1) if last[i] == k)
    return list(range(at + 1))


def _on_demand(inst: RematInstance, checkpoints: set[int], forward: list[int]) -> list:
    """Computations for a checkpoint set: forward values that are not checkpoints are
    recomputed, from the nearest kept ancestors, in the first stage after the forward pass
    that reads them; a recomputed value then stays until its last use (Chen et al.)."""
    fw = set(forward)
    end = max(forward, default=-1)
    dropped = {i for i in fw if i not in checkpoints and inst.users[i]}
    redone: set[int] = set()
    comps: list[tuple[int, int]] = []

    def need(t: int, i: int, stage_runs: set[int]) -> None:
        if i not in dropped or i in redone or i in stage_runs:
            return
        for d in inst.deps[i]:
            need(t, d, stage_runs)
        stage_runs.add(i)

    for t in range(end + 1, inst.n):
        runs: set[int] = set()
        for d in inst.deps[t]:
            need(t, d, runs)
        for i in sorted(runs):
            comps.append((t, i))
        redone |= runs
    return comps


def _baseline(
    problem: Problem,
    method: str,
    choose: Callable[[RematInstance], tuple[list, dict]],
    order: list[str] | None,
    time_limit: float | Deadline | None = None,
) -> Plan:
    t0 = time.perf_counter()
    inst = RematInstance.build(problem, order=order)
    plan = _empty(problem, method, None, {})
    why = _infeasible_reason(inst)
    if why:
        plan.reason = why
        return _finish(inst, plan, None, Status.INFEASIBLE, None, t0)
    if choose in (_choose_evict, _choose_greedy):  # the two whose search can take long
        comps, info = choose(inst, _deadline(time_limit, None))  # type: ignore[call-arg]
    else:
        comps, info = choose(inst)
    if comps is None:
        plan.reason = info.get("reason")
        plan.stats.update(info)
        return _finish(inst, plan, None, Status.NO_SOLUTION, None, t0)
    built = _finish(inst, plan, comps, Status.FEASIBLE, None, t0)
    built.stats.update(info)
    return built


def _fits(inst: RematInstance, comps: list) -> int:
    return peak_of(inst, comps)


def _choose_all(inst: RematInstance) -> tuple[list | None, dict]:
    peak = no_remat_peak(inst)
    if peak > inst.budget:
        return None, {"reason": f"the no-remat peak is {peak:,} bytes, over the budget"}
    return [], {"peak_estimate": peak}


def _choose_sqrtn(inst: RematInstance) -> tuple[list | None, dict]:
    fw = [i for i in _forward_set(inst) if inst.users[i]]
    seg = max(1, math.isqrt(max(1, len(fw) - 1)) + 1)
    cps = {fw[s] for s in range(seg - 1, len(fw), seg)} | ({fw[-1]} if fw else set())
    comps = _on_demand(inst, cps, _forward_set(inst))
    peak = _fits(inst, comps)
    info = {"checkpoints": len(cps), "segment": seg, "peak_estimate": peak}
    if peak > inst.budget:
        info["reason"] = f"the √n plan peaks at {peak:,} bytes, over the budget"
        return None, info
    return comps, info


def _choose_greedy(
    inst: RematInstance, stop: Deadline | float | None = None
) -> tuple[list | None, dict]:
    forward = _forward_set(inst)
    fw = [i for i in forward if inst.users[i]]
    total = sum(inst.keep[i] for i in fw) or 1
    smallest = min((inst.keep[i] for i in fw), default=1) or 1
    best = None
    tried = 0
    for s in range(41):
        if s and _expired(stop):  # (a warm start or fallback with little time left)
            break
        b = smallest * (total / smallest) ** (s / 40)
        cps, acc = set(), 0
        for i in fw:
            acc += inst.keep[i]
            if acc > b:
                cps.add(i)
                acc = 0
        if fw:
            cps.add(fw[-1])
        comps = _on_demand(inst, cps, forward)
        tried += 1
        peak = _fits(inst, comps)
        if peak <= inst.budget:
            cost = sum(inst.cost[k] for _, k in comps)
            key = (cost, peak, len(cps))
            if best is None or key < best[0]:
                best = (key, comps, len(cps), b)
    if best is None:
        why = "no threshold gives a plan within the budget"
        if tried < 41:
            why = f"no threshold of the {tried} tried in time gives a plan within the budget"
        return None, {"reason": why, "tried": tried}
    return best[1], {"checkpoints": best[2], "threshold": round(best[3]), "tried": tried}


def _choose_evict(
    inst: RematInstance, stop: Deadline | float | None = None, start: list | None = None
) -> tuple[list | None, dict]:
    """A greedy for any graph: while the peak is over the budget, take the values resident
    at the peak that are kept for a later run, and recompute the one that lowers (the peak,
    then the bytes over the budget summed over all runs) most per unit of compute right
    before that later run — together with the inputs of that recomputation that would
    otherwise have to be kept for it (a chain back to values alive anyway, at most 8 deep).
    It starts from the computations ``start`` if given (within ``max_computes``)."""
    comps: list[tuple[int, int]] = list(start or [])
    runs = [1] * inst.n
    for _, k in comps:
        runs[k] += 1
    for _ in range(4 * inst.n):
        if _expired(stop):
            return None, {"reason": _evict_late(stop)}
        peak, seq, at, resident = peak_state(inst, comps)
        if peak <= inst.budget:
            return comps, {"steps": len(comps)}
        over = excess(inst, comps)[1]
        t_p, k_p = seq[at]
        here = position(t_p, k_p)
        pos = [position(t, k) for t, k in seq]
        uses: dict[int, list[int]] = {}
        prods: dict[int, list[int]] = {}
        for q, (_, k) in enumerate(seq):
            prods.setdefault(k, []).append(pos[q])
            for d in inst.deps[k]:
                uses.setdefault(d, []).append(pos[q])

        def alive_after(d: int, p: int, uses=uses, prods=prods) -> bool:
            nu = next((u for u in uses.get(d, ()) if u > p), None)
            np_ = next((x for x in prods.get(d, ()) if x > p), None)
            return nu is not None and (np_ is None or nu < np_)

        def chain(t: int, i: int, depth: int, taken: set) -> list[tuple[int, int]]:
            adds = [(t, i)]
            taken.add(i)
            for d in inst.deps[i]:
                if d in taken or alive_after(d, position(t, i)) or depth == 0:
                    continue
                if runs[d] >= inst.max_computes[d] or (t, d) in comps:
                    continue
                adds += chain(t, d, depth - 1, taken)
            return adds

        next_use: dict[int, int] = {}
        for q in range(len(seq) - 1, at, -1):
            for d in inst.deps[seq[q][1]]:
                next_use[d] = q
        best = None
        for i in sorted(resident):
            if _expired(stop):
                return None, {"reason": _evict_late(stop)}
            if i == k_p or i in inst.deps[k_p] or runs[i] >= inst.max_computes[i]:
                continue
            if i not in next_use:
                continue
            t_q = seq[next_use[i]][0]
            if position(t_q, i) <= here or (t_q, i) in comps:
                continue
            for adds in ([(t_q, i)], chain(t_q, i, 8, set())):
                if any(position(t, k) <= here for t, k in adds):
                    continue
                try:
                    new_peak, new_over = excess(inst, [*comps, *adds])
                except UsageError:
                    continue
                if (new_peak, new_over) < (peak, over):
                    cost = max(1, sum(inst.cost[k] for _, k in adds))
                    score = ((peak - new_peak) / cost, (over - new_over) / cost)
                    if best is None or score > best[0]:
                        best = (score, adds)
        if _expired(stop):
            return None, {"reason": _evict_late(stop)}
        if best is None:
            return None, {
                "reason": f"the eviction greedy is stuck at a peak of {peak:,} bytes",
                "partial": list(comps),  # within max_computes, over the budget
            }
        for t, k in best[1]:
            comps.append((t, k))
            runs[k] += 1
    return None, {"reason": "the eviction greedy did not converge"}


def _choose_stagewise(
    inst: RematInstance,
    stop: tuple[Deadline | float | None, ...] = (),
    *,
    width: int = 8,
    look: bool = False,
    noise: float = 0.0,
    seed: int = 0,
    protect: frozenset[int] = frozenset(),
) -> tuple[list | None, dict]:
    """A primal heuristic for tight budgets, inside Checkmate's stage frame: walk the stages
    in order; while a run of stage ``t`` is over the budget, drop a value held across it (not
    read there) and re-run it just before its next reader, in that reader's stage — with,
    recursively, the inputs of that re-run that are gone by then (re-run in the same stage) —
    choosing the drop that removes the most bytes over the budget in stage ``t`` per unit of
    compute. Re-runs only go to stage ``t`` or later, so earlier stages keep fitting; each
    operator runs at most ``max_computes`` times. Operators in ``protect`` are never dropped;
    ``width`` candidates (by bytes per compute) are evaluated exactly; ``look`` scores a drop
    by the bytes over the budget it removes in all stages from ``t`` on; ``noise`` perturbs
    the costs (seeded by ``seed``). Returns None, with the operators whose ``max_computes``
    blocked a drop, if some stage cannot be made to fit (or one of the ``stop`` instants or
    Deadlines passes). The caller checks the plan's memory before using it."""
    n, budget = inst.n, inst.budget
    comps: list[tuple[int, int]] = []
    chosen: set[tuple[int, int]] = set()
    runs = [1] * n
    rng = random.Random(seed)

    def stage_over(seq: list, levels: list, t: int) -> tuple[int, int]:
        over = [max(0, levels[q] - budget) for q, (s, _) in enumerate(seq) if s == t]
        return sum(over), max(over, default=0)

    for t in range(n):
        while True:
            if any(_expired(x) for x in stop):
                return None, {"reason": "the stage-wise greedy ran out of time"}
            seq, levels = levels_of(inst, comps)
            over, top = stage_over(seq, levels, t)
            if over == 0:
                break
            here = [q for q, (s, _) in enumerate(seq) if s == t]
            worst = max(here, key=lambda q: (levels[q], -q))
            blockers: set[int] = set()  # operators whose max_computes blocked a re-run
            events: dict[int, list[tuple[int, bool]]] = {}  # op -> (index, is a production)
            for q, (_, k) in enumerate(seq):
                events.setdefault(k, []).append((q, True))
                for d in inst.deps[k]:
                    events.setdefault(d, []).append((q, False))

            def available(d: int, q: int, events=events, seq=seq, t=t) -> bool:
                """Whether d's value can be read by a run inserted before index q without
                holding it longer in a stage before t."""
                before = [e for e in events[d] if e[0] < q]
                after = [e for e in events[d] if e[0] >= q]
                if after and not after[0][1]:
                    return True  # held through q anyway (read next, not produced)
                return bool(before) and seq[before[-1][0]][0] >= t

            def chain(
                s: int, i: int, q: int, taken: set, blockers: set = blockers
            ) -> list[tuple[int, int]] | None:
                if (s, i) in chosen or runs[i] >= inst.max_computes[i]:
                    blockers.add(i)
                    return None
                taken.add(i)
                adds = [(s, i)]
                for d in inst.deps[i]:
                    if d in taken or available(d, q):
                        continue
                    more = chain(s, d, q, taken)
                    if more is None:
                        return None
                    adds += more
                return adds

            cands = []
            k_w = seq[worst][1]
            for i in range(n):
                if i == k_w or i in inst.deps[k_w] or not inst.recomputable(i) or i in protect:
                    continue
                evs = events.get(i, [])
                prev = [e for e in evs if e[0] < worst]
                nxt = [e for e in evs if e[0] > worst]
                if not prev or not nxt or nxt[0][1]:
                    continue  # not held across the worst run
                q_r = nxt[0][0]
                s = seq[q_r][0]
                if (s, i) <= seq[worst]:
                    continue
                # insert before the first run of stage s at or after operator i
                q_ins = next(q for q in range(worst + 1, q_r + 1) if seq[q] >= (s, i))
                adds = chain(s, i, q_ins, set())
                if adds is None:
                    continue
                cost = max(1, sum(inst.cost[k] for _, k in adds))
                if noise:
                    cost *= math.exp(noise * rng.gauss(0.0, 1.0))
                cands.append((-inst.keep[i] / cost, i, adds, cost))
            best = None
            for _, i, adds, cost in sorted(cands, key=lambda c: (c[0], c[1]))[:width]:
                try:
                    seq2, lev2 = levels_of(inst, [*comps, *adds])
                except UsageError:
                    continue
                if any(lv > budget for (s, _), lv in zip(seq2, lev2, strict=True) if s < t):
                    continue
                over2, _ = stage_over(seq2, lev2, t)
                if over2 < over:
                    gain = over - over2
                    if look:  # bytes over the budget removed in every stage from t on
                        gain = sum(max(0, x - budget) for x in levels) - sum(
                            max(0, x - budget) for x in lev2
                        )
                    score = (gain / cost, (over - over2) / cost, -i)
                    if best is None or score > best[0]:
                        best = (score, adds)
            if best is None:
                return None, {
                    "reason": f"the stage-wise greedy is stuck in stage {t} "
                    f"({top:,} bytes over the budget)",
                    "blockers": blockers,
                }
            for s, k in best[1]:
                comps.append((s, k))
                chosen.add((s, k))
                runs[k] += 1
    return sorted(comps), {"steps": len(comps)}


def _stagewise_search(
    inst: RematInstance,
    stop: tuple[Deadline | float | None, ...] = (),
    *,
    rounds: int = 4,
    first: bool = False,
) -> tuple[list | None, dict]:
    """The cheapest plan that fits among a few runs of :func:`_choose_stagewise`: scored on
    the stage (``look`` off) or on every later stage (on), each repeated while it gets stuck
    — protecting from eviction the operators whose ``max_computes`` blocked it (with the
    bound), or that ran too often (with no bound, a run that may then respect it) — then
    ``rounds`` more with random noise on the costs. A plan is kept only if its memory
    profile (:func:`cosma.remat.peak_of`) fits and each operator runs at most
    ``max_computes`` times; the engines replay it with the simulator before returning it.
    With ``first``, the first such plan."""
    free = dataclasses.replace(
        inst, max_computes=tuple(inst.n - i if inst.users[i] else 1 for i in range(inst.n))
    )
    best: tuple[int, list] | None = None
    tries = 0
    for r in range(rounds + 1):
        if first and best is not None:
            break
        for capped, look in itertools.product((True, False), (False, True)):
            if first and best is not None:
                break
            protect: frozenset[int] = frozenset()
            for _ in range(inst.n):
                if any(_expired(x) for x in stop):
                    break
                tries += 1
                comps, info = _choose_stagewise(
                    inst if capped else free,
                    stop,
                    width=inst.n,
                    look=look,
                    protect=protect,
                    noise=0.7 if r else 0.0,
                    seed=r,
                )
                if comps is None:
                    more = info.get("blockers", set()) if capped else set()
                else:
                    counts = collections.Counter(k for _, k in comps)
                    more = {k for k, c in counts.items() if c + 1 > inst.max_computes[k]}
                    if not more and peak_of(inst, comps) <= inst.budget:
                        cost = sum(inst.cost[k] for _, k in comps)
                        if best is None or cost < best[0]:
                            best = (cost, comps)
                        break
                if not more - protect:
                    break
                protect |= more
    if best is None:
        return None, {"reason": f"the stage-wise greedy found no plan ({tries} runs)"}
    return best[1], {"runs": tries}


def _evict_late(stop: Deadline | float | None) -> str:
    if isinstance(stop, Deadline):
        return _why_stopped(stop, "before the eviction greedy fitted the budget")
    return "the eviction greedy ran out of time"


def checkpoint_all(
    problem: Problem,
    *,
    order: list[str] | None = None,
    time_limit: float | Deadline | None = None,
    **_: object,
) -> Plan:
    """Rematerialization baseline: keep everything, recompute nothing.

    Fits iff the no-recomputation peak does."""

    return _baseline(problem, "remat-checkpoint-all", _choose_all, order, time_limit)


def chen_sqrtn(
    problem: Problem,
    *,
    order: list[str] | None = None,
    time_limit: float | Deadline | None = None,
    **_: object,
) -> Plan:
    """Rematerialization baseline: Chen et al.'s √n segments.

    Split the forward operators into ⌈√n⌉ segments, keep the last value of each, recompute
    each segment once during the backward pass."""

    return _baseline(problem, "remat-sqrtn", _choose_sqrtn, order, time_limit)


def chen_greedy(
    problem: Problem,
    *,
    order: list[str] | None = None,
    time_limit: float | Deadline | None = None,
    **_: object,
) -> Plan:
    """Rematerialization baseline: Chen et al.'s greedy segments for a budget.

    Walk the forward operators accumulating bytes, place a checkpoint when a threshold b is
    passed; try thresholds and keep the cheapest plan that fits."""

    return _baseline(problem, "remat-chen-greedy", _choose_greedy, order, time_limit)


def evict_greedy(
    problem: Problem,
    *,
    order: list[str] | None = None,
    time_limit: float | Deadline | None = None,
    **_: object,
) -> Plan:
    """Rematerialization heuristic: evict at the peak, recompute before the next use.

    While the peak is over the budget, recompute (with the chain of inputs it needs) the
    value kept across the peak that lowers it most per unit of compute."""
    return _baseline(problem, "remat-evict", _choose_evict, order, time_limit)


def remat_methods() -> dict[str, Callable[..., Plan]]:
    """Registry entries for :data:`cosma.solvers.REMAT_METHODS`; each declares the options
    it takes (``.options``)."""

    def keep(problem: Problem, kw: dict) -> dict:
        # an order may be named as for the traffic methods (file, greedy, minpeak)
        order = kw.get("order")
        if isinstance(order, str):
            from cosma.solvers.baselines import make_order

            kw = {**kw, "order": make_order(problem, order)}
        return kw

    # The shared deadline (the CLI's) goes down as it is: it covers the whole command, and
    # a signal makes it expire.
    def milp_entry(problem: Problem, *, time_limit: object = 60.0, **kw) -> Plan:
        return remat_milp(problem, time_limit=_deadline(time_limit), **keep(problem, kw))

    def cpsat_entry(problem: Problem, *, time_limit: object = 60.0, **kw) -> Plan:
        return remat_cpsat(problem, time_limit=_deadline(time_limit), **keep(problem, kw))

    def base(fn):
        def run(problem: Problem, *, time_limit: object = None, **kw) -> Plan:
            limit = time_limit if isinstance(time_limit, Deadline) else Deadline.of(time_limit)
            return fn(problem, time_limit=limit, **keep(problem, kw))

        run.__doc__ = fn.__doc__
        run.options = ("time_limit", "order")  # type: ignore[attr-defined]
        return run

    milp_entry.__doc__ = "Rematerialization, exact: Checkmate's MILP (--solver cbc|highs|gurobi)."
    milp_entry.options = (  # type: ignore[attr-defined]
        "time_limit",
        "order",
        "max_computes",
        "solver",
        "threads",
        "seed",
        "log_path",
        "memory_limit",
    )
    cpsat_entry.__doc__ = "Rematerialization, exact: MOCCASIN's retention intervals on CP-SAT."
    cpsat_entry.options = (  # type: ignore[attr-defined]
        "time_limit",
        "order",
        "max_computes",
        "threads",
        "seed",
        "memory_limit",
    )
    return {
        "remat-milp": milp_entry,
        "remat-cpsat": cpsat_entry,
        "remat-checkpoint-all": base(checkpoint_all),
        "remat-sqrtn": base(chen_sqrtn),
        "remat-chen-greedy": base(chen_greedy),
        "remat-evict": base(evict_greedy),
    }
