"""CP-SAT engine: the whole problem of SPEC §3-§5 as one constraint program, addresses and
moves included (not a relaxation).

Time-indexed like the MILP (one operator per step; ``run[v,t]``, ``resident[a,t]``,
``load[a,t]``, ``stored[a]``), plus, for every step a tensor may be resident at, an
address and an *optional* block ``[address, address + size)`` present exactly when the
tensor is resident. Blocks of one step may not overlap (``NoOverlap2D`` over unit-width time
boxes). A tensor resident at two consecutive steps keeps its address unless it is loaded
again at the second (``load[a,t]`` with ``resident[a,t-1]``): that is a *move* (SPEC §3:
dropped and loaded elsewhere between two operators, paid as a load, possible only with a
host copy, so an activation that moves must be stored). Any plan maps onto a solution of
equal traffic (its blocks give ``resident``/``address``, its loads ``load``), and every
solution decodes to a plan, so the optimum is the true minimum and ``infeasible`` is a
proof.

With a recompute rate (:mod:`cosma.solvers.recompute`) the model gains re-runs of producers
between steps; it does not give addresses inside those gaps, so it is then a relaxation: its
bound stays valid, and each solution is placed again on a time line with the gaps before it
is replayed (``optimal`` only when the replayed plan meets the bound).

Hints come from the warm start; a solution callback reports incumbent, bound and gap as
they improve; one worker with a fixed seed gives repeatable results. The prologue and the
choice of the answer are shared with the MILP (:mod:`cosma.solvers.exact`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from fractions import Fraction

from cosma import interrupt
from cosma import options as check
from cosma import progress as progress_hook
from cosma.deadline import Deadline
from cosma.errors import SolverError
from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Plan
from cosma.problem import Problem
from cosma.progress import report
from cosma.solvers import exact, recompute, timeline

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


class _Model:
    """Variables of the CP-SAT model, by family."""

    def __init__(
        self,
        problem: Problem,
        order: list[str] | None,
        deadline: Deadline | None = None,
        rate: Fraction | None = None,
        light: bool = True,
    ):
        from ortools.sat.python import cp_model

        self.cp = cp_model
        self.m = cp_model.CpModel()
        self.problem = problem
        g = problem.graph
        self.window = timeline.windows(problem, order)
        self.life = timeline.lifetimes(problem, self.window)
        rc_gaps: dict[str, tuple[int, int]] = {}
        rc_light: dict[str, tuple[int, int]] = {}
        if rate is not None:  # recompute versus reload: inputs may stay for a re-run
            self.life, rc_gaps, rc_light = recompute.extend(problem, self.window, self.life)

        self.ops = list(g.file_order)
        self.tensors = list(self.life)
        A = problem.alignment
        self.size = {a: aligned(g.tensors[a].size, A) for a in self.tensors}
        raw = [g.tensors[a].size for a in self.tensors if g.tensors[a].size]
        self.unit = math.gcd(*raw) if raw else 1
        self.load_offset = sum(
            g.tensors[a].size for a in self.tensors if g.tensors[a].producer is None
        )
        m = self.m
        fixed = order is not None
        self.x = {}
        self.deadline = deadline
        for v in exact.ticking(self.ops, deadline):
            lo, hi = self.window[v]
            for t in range(lo, hi + 1):
                self.x[v, t] = 1 if fixed else m.new_bool_var(f"run[{v},t={t}]")
        self.r = {
            (a, t): m.new_bool_var(f"resident[{a},t={t}]")
            for a in self.tensors
            for t in range(self.life[a][0], self.life[a][1] + 1)
        }
        self.ld = {(a, t): m.new_bool_var(f"load[{a},t={t}]") for (a, t) in self.r}
        self.s = {
            a: m.new_bool_var(f"stored[{a}]")
            for a in self.tensors
            if g.tensors[a].kind is TensorKind.ACTIVATION
        }
        self.slot = {}
        for a, t in exact.ticking(self.r, deadline):
            slots = (problem.budget - self.size[a]) // A
            self.slot[a, t] = m.new_int_var(0, max(slots, 0), f"slot[{a},t={t}]")
            if slots < 0:
                m.add(self.r[a, t] == 0)
        self.stats = {
            "booleans": len(self.r) + len(self.ld) + len(self.s) + (0 if fixed else len(self.x)),
            "integers": len(self.slot),
        }
        #: Recompute versus reload (:mod:`cosma.solvers.recompute`); None: not enabled.
        self.rc: recompute.Vars | None = None
        if rate is not None:
            self.rc = recompute.build(
                problem,
                recompute.Builder(
                    binary=m.new_bool_var,
                    unit=m.new_bool_var,
                    add=lambda row, name: m.add(row),
                ),
                rate=rate,
                gaps=rc_gaps,
                light=rc_light,
                x=self.x,
                r=self.r,
                loads=self.ld,
                s=self.s,
                window=self.window,
                life=self.life,
                relaxed=light,
            )
            self.stats["recompute_vars"] = len(self.rc.y) + len(self.rc.tr)

    def made(self, a: str, t: int):
        """``y[prod(a), t]``: ``a`` comes back by a re-run at step ``t`` (0 if off)."""
        return 0 if self.rc is None else self.rc.made(a, t)


def _schedule(M: _Model) -> None:
    """One step per operator, one operator per step, and v after u for every edge u -> v
    (cumulative form, on the transitive reduction)."""
    import networkx as nx

    m, g = M.m, M.problem.graph
    if all(isinstance(v, int) for v in M.x.values()):
        return
    for v in exact.ticking(M.ops, M.deadline):
        lo, hi = M.window[v]
        m.add_exactly_one(M.x[v, t] for t in range(lo, hi + 1))
    per_step: dict[int, list] = {}
    for (_, t), var in M.x.items():
        per_step.setdefault(t, []).append(var)
    for vs in per_step.values():
        m.add_exactly_one(vs)
    for u, v in exact.ticking(nx.transitive_reduction(g.dag).edges, M.deadline):
        lo, hi = M.window[v]
        for t in range(lo, hi + 1):
            if t - 1 >= M.window[u][1]:
                continue
            m.add(
                sum(M.x[v, k] for k in range(lo, t + 1))
                <= sum(M.x[u, k] for k in range(M.window[u][0], t))
            )


def _residency(M: _Model) -> None:
    """Operands are resident when their operator runs; activations only once made; a new
    residency is a load unless the tensor is made at that step; loads of activations need
    a store."""
    m, g, st = M.m, M.problem.graph, M.problem.setting
    for v in exact.ticking(M.ops, M.deadline):
        lo, hi = M.window[v]
        for a in g.operands(v, st):
            for t in range(lo, hi + 1):
                x = M.x[v, t]
                if isinstance(x, int):
                    m.add(M.r[a, t] == 1)
                else:
                    m.add_implication(x, M.r[a, t])
    for a in exact.ticking(M.tensors, M.deadline):
        p = g.tensors[a].producer
        lo, hi = M.life[a]
        for t in range(lo, hi + 1):
            if p is not None:
                plo, phi = M.window[p]
                if t < phi:
                    m.add(M.r[a, t] <= sum(M.x[p, k] for k in range(plo, t + 1)))
            prev = M.r[a, t - 1] if t > lo else 0
            made = M.x.get((p, t), 0) if p is not None else 0
            m.add(M.ld[a, t] >= M.r[a, t] - prev - made - M.made(a, t))
            if a in M.s:
                m.add_implication(M.ld[a, t], M.s[a])


def _addresses(M: _Model) -> None:
    """Blocks resident at the same step do not overlap; a tensor keeps its address from one
    step to the next unless it is loaded again there (a move); the resident bytes of a
    step fit the budget."""
    m, A = M.m, M.problem.alignment
    xs, ys = [], []
    per_step: dict[int, list] = {}
    for (a, t), present in exact.ticking(M.r.items(), M.deadline, every=256):
        size = M.size[a]
        if size == 0:
            continue
        xs.append(m.new_optional_fixed_size_interval_var(t, 1, present, f"when[{a},t={t}]"))
        ys.append(
            m.new_optional_fixed_size_interval_var(
                M.slot[a, t] * A, size, present, f"where[{a},t={t}]"
            )
        )
        per_step.setdefault(t, []).append(size * present)
        if (a, t + 1) in M.r:
            keep = [present, M.r[a, t + 1], ~M.ld[a, t + 1]]
            again = M.made(a, t + 1)
            if not isinstance(again, int):  # a recompute may place it elsewhere too
                keep.append(~again)
            m.add(M.slot[a, t] == M.slot[a, t + 1]).only_enforce_if(keep)
    if xs:
        m.add_no_overlap_2d(xs, ys)
    if M.rc is not None:  # inputs kept past their lifetime for a light re-run
        for t, extra in M.rc.extra.items():
            per_step.setdefault(t, []).extend(size * var for size, var in extra if size)
    for terms in per_step.values():
        m.add(sum(terms) <= M.problem.budget)


def _objective(M: _Model) -> None:
    """min sum size[a] (loads + store), in units of the sizes' GCD; first loads of inputs
    and parameters are compulsory and come off after solving."""
    g = M.problem.graph
    if M.rc is not None:  # den x bytes + num x MACs (recompute versus reload)
        den = M.rc.scale[1]
        raw = {a: g.tensors[a].size for a in M.tensors}
        terms = [(den * raw[a], v) for (a, _), v in M.ld.items()]
        terms += [(den * raw[a], v) for a, v in M.s.items()]
        terms += M.rc.objective_terms(raw)
        terms = [(c, v) for c, v in terms if c]
        M.unit = math.gcd(*[c for c, _ in terms]) if terms else 1
        M.m.minimize(sum((c // M.unit) * v for c, v in terms))
        return
    M.m.minimize(
        sum((g.tensors[a].size // M.unit) * v for (a, _), v in M.ld.items())
        + sum((g.tensors[a].size // M.unit) * v for a, v in M.s.items())
    )


def _hint(M: _Model, plan: Plan) -> None:
    pos = {v: i for i, v in enumerate(plan.order)}
    if any(not (M.window[v][0] <= pos[v] <= M.window[v][1]) for v in M.ops):
        return
    during, loads, stored = timeline.plan_state(plan)
    m, A = M.m, M.problem.alignment
    for (v, t), var in M.x.items():
        if not isinstance(var, int):
            m.add_hint(var, pos[v] == t)
    for (a, t), var in M.r.items():
        here = a in during.get(t, {})
        m.add_hint(var, here)
        m.add_hint(M.slot[a, t], during[t][a] // A if here else 0)
        m.add_hint(M.ld[a, t], (a, t) in loads)
    for a, var in M.s.items():
        m.add_hint(var, a in stored)


def _solve_stoppable(solver, model, callback, poll=None) -> int:
    """``solver.solve`` in a worker thread, so a signal handled in the main thread can call
    ``StopSearch``: CP-SAT then returns its best solution (:mod:`cosma.interrupt`). So does
    ``poll()`` (checked every 0.1 s) returning True."""
    import threading

    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["status"] = solver.solve(model, callback)
        except BaseException as e:  # handed to the main thread below
            result["error"] = e

    worker = threading.Thread(target=work, name="cp-sat", daemon=True)
    worker.start()

    def finished(timeout: float) -> bool:
        worker.join(timeout)
        if poll is not None and worker.is_alive() and poll():
            solver.stop_search()
        return not worker.is_alive()

    try:
        interrupt.wait_stoppable(finished, solver.stop_search)
    finally:
        if worker.is_alive():
            solver.stop_search()
            worker.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["status"]  # type: ignore[return-value]


def cpsat(
    problem: Problem,
    *,
    order: str | list[str] | None = None,
    time_limit: float | Deadline | None = 60.0,
    threads: int = 1,
    seed: int = 0,
    progress: Progress | None = None,
    shortcut: bool = True,
    recompute_rate: object = None,
    hint: Plan | None = None,
) -> Plan:
    """Minimum non-compulsory traffic with CP-SAT, proven where it finishes.

    ``order=None`` leaves the schedule free; a name (``file``, ``greedy``, ``minpeak``) or a
    list fixes it. ``time_limit`` (seconds or a shared :class:`~cosma.deadline.Deadline`)
    bounds the whole call. ``progress`` receives ``{"seconds", "objective", "bound",
    "gap"}`` (bytes) at each improving solution. ``recompute_rate`` (bytes per MAC; None,
    the default: off) lets a dropped activation come back by re-running its producer, and
    the objective becomes traffic + rate x recomputed MACs (:mod:`cosma.solvers.recompute`).
    ``hint``: a replayed plan of this problem to start from when it beats the baseline
    (used as the warm start and the solver's hint).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> plan = cpsat(Problem(g, 16))
    >>> plan.status.value, plan.objective, plan.lower_bound
    ('optimal', 20, 20)
    """
    method = (
        "cpsat" if order is None else f"cpsat-fixed({order if isinstance(order, str) else 'given'})"
    )
    rate = None if recompute_rate is None else check.recompute_rate(recompute_rate)
    return exact.run(
        problem,
        lambda ctx: _engine(ctx, progress, rate),
        method=method,
        solver="cp-sat",
        order=order,
        time_limit=time_limit,
        threads=threads,
        seed=seed,
        shortcut=shortcut,
        extra=None if rate is None else {"recompute_rate": rate},
        hint=hint,
    )


def _fixed_order_start(ctx: exact.Context) -> Plan | None:
    """Joint mode: the minimum-peak order's optimum with CP-SAT (a quarter of the time
    left), a better hint than a baseline; None if it is not better than the warm start.
    Any fixed-order plan is a joint plan; its bound is not a joint bound and is not used."""
    warm, deadline = ctx.warm, ctx.deadline
    if ctx.seq is not None or warm is None or warm.objective <= ctx.floor:
        return None
    if deadline.remaining() <= 4:
        return None
    with deadline.phase("fixed_order_start"):
        fixed = cpsat(
            ctx.problem,
            order="minpeak",
            threads=ctx.threads,
            seed=ctx.seed,
            time_limit=deadline.sub(0.25),
        )
    return fixed if fixed.status.has_plan and fixed.objective < warm.objective else None


def _engine(
    ctx: exact.Context, progress: Progress | None, rate: Fraction | None = None
) -> exact.EngineResult:
    if rate is not None:
        return _recompute_engine(ctx, progress, rate)
    start = _fixed_order_start(ctx)
    if start is not None:
        ctx = dataclasses.replace(ctx, warm=start)
        if start.objective <= ctx.floor:
            return exact.EngineResult(
                plans=[start],
                bound=ctx.floor,
                note="the minimum-peak order's optimum meets the no-solver bound",
            )
    try:
        out = _solve(ctx, progress)
    except exact.OutOfTime as e:
        out = exact.EngineResult(note=str(e))
    if start is not None:
        out.plans.append(start)
    return out


def _solve(ctx: exact.Context, progress: Progress | None) -> exact.EngineResult:
    """Build, solve and decode the CP-SAT model."""
    problem, deadline = ctx.problem, ctx.deadline
    with deadline.phase("import"):  # OR-Tools takes a second or more to import
        from ortools.sat.python import cp_model

    with deadline.phase("model"):
        M = _Model(problem, ctx.seq, deadline)
        for add in (_schedule, _residency, _addresses, _objective):
            if deadline.expired():
                raise exact.OutOfTime("the time limit ran out while building the CP-SAT model")
            add(M)
        M.stats |= {"rows": len(M.m.proto.constraints), "columns": len(M.m.proto.variables)}
        if ctx.warm is not None:
            _hint(M, ctx.warm)

    def to_bytes(units: float) -> int:
        return max(0, math.ceil(units - 1e-6) * M.unit - M.load_offset)

    solver = cp_model.CpSolver()
    # CP-SAT's own SIGINT handler would replace cosma's (cosma.interrupt) for good.
    solver.parameters.catch_sigint_signal = False
    left = deadline.left()
    # A little of what is left stays for decoding and replaying the plan.
    solver.parameters.max_time_in_seconds = 1e9 if left is None else max(0.05, 0.95 * left)
    solver.parameters.num_workers = ctx.threads
    solver.parameters.random_seed = ctx.seed

    emit = progress or progress_hook.current()  # CP-SAT calls back from its own thread

    class _Callback(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            report(
                "cpsat",
                seconds=deadline.elapsed(),
                objective=to_bytes(self.objective_value),
                bound=to_bytes(self.best_objective_bound),
                callback=emit,
            )
            if to_bytes(self.objective_value) <= ctx.floor:
                self.stop_search()  # meets the no-solver bound: proven

    with deadline.phase("solve"):
        status = _solve_stoppable(solver, M.m, _Callback())
    if status == cp_model.MODEL_INVALID:
        raise SolverError(
            "CP-SAT rejected the model (MODEL_INVALID): "
            f"{solver.solution_info() or M.m.validate() or 'no reason given'}; "
            "check --threads and the graph's sizes"
        )
    out = exact.EngineResult(stats={**M.stats, "cp_sat_status": solver.status_name(status)})
    if status == cp_model.INFEASIBLE:
        out.infeasible = "no schedule and placement fits the budget (proven by CP-SAT)"
        return out
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
        out.bound = to_bytes(solver.best_objective_bound)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out.note = f"CP-SAT stopped with {solver.status_name(status)} before a plan"
        return out
    with deadline.phase("decode"):
        at = {
            t: v
            for (v, t), var in M.x.items()
            if (var if isinstance(var, int) else solver.value(var))
        }
        seq_out = [at[t] for t in range(len(M.ops))]
        steps = {
            a: [t for t in range(M.life[a][0], M.life[a][1] + 1) if solver.value(M.r[a, t])]
            for a in M.tensors
        }
        moves = {
            (a, t)
            for (a, t), var in M.ld.items()
            if (a, t - 1) in M.r and solver.value(var) and solver.value(M.r[a, t - 1])
        }
        res = timeline.residencies(
            problem,
            seq_out,
            steps,
            address=lambda a, t: solver.value(M.slot[a, t]) * problem.alignment,
            breaks=moves,
        )
        out.plans.append(ctx.make_plan(seq_out, res))
    out.stats["moves"] = len(moves)
    if status == cp_model.OPTIMAL:
        out.bound = max(out.bound, out.plans[0].objective)
    return out


def _recompute_plan(ctx: exact.Context, M: _Model, solver) -> Plan | None:
    """A replayed plan from a CP-SAT solution with recompute (addresses are placed again on
    the time line with gaps, :func:`cosma.solvers.recompute.build_plan`), or None."""
    assert M.rc is not None
    at = {
        t: v for (v, t), var in M.x.items() if (var if isinstance(var, int) else solver.value(var))
    }
    order = [at[t] for t in range(len(M.ops))]
    steps = {
        a: {t for t in range(M.life[a][0], M.life[a][1] + 1) if solver.value(M.r[a, t])}
        for a in M.tensors
    }
    gaps: dict[int, set[str]] = {}
    for (a, u), var in M.rc.keep.items():  # kept past its lifetime for a re-run
        if solver.value(var):
            steps[a].add(u)
    for (p, t), var in M.rc.runs().items():
        if solver.value(var):
            gaps.setdefault(t, set()).add(p)
    return recompute.build_plan(
        M.problem,
        order,
        steps,
        gaps,
        rate=M.rc.rate,
        method=ctx.method,
        solver=ctx.solver,
        deadline=ctx.deadline,
        seed=ctx.seed,
    )


def _recompute_engine(
    ctx: exact.Context, progress: Progress | None, rate: Fraction
) -> exact.EngineResult:
    """Recompute versus reload: the model without light re-runs (a restriction whose
    solutions decode to plans), then the full model (the relaxation, whose bound is the
    valid one); one solve when there are no light re-runs. Each solution is placed again
    and replayed (:func:`cosma.solvers.recompute.build_plan`)."""
    from ortools.sat.python import cp_model

    problem, deadline = ctx.problem, ctx.deadline
    window = timeline.windows(problem, ctx.seq)
    _, _, light = recompute.extend(problem, window, timeline.lifetimes(problem, window))
    phases = [("restricted", False), ("relaxed", True)] if light else [("relaxed", True)]
    out = exact.EngineResult()
    # Today's optimum (no recompute) first: a plan of the combined objective too (no
    # re-runs), and a hint for the larger models; never worse than recompute off.
    with deadline.phase("no_recompute_start"):
        base = cpsat(
            problem,
            order=ctx.seq,
            threads=ctx.threads,
            seed=ctx.seed,
            time_limit=deadline.sub(0.25),
        )
    if base.status.has_plan:
        out.plans.append(base)
    if ctx.seq is None and deadline.remaining() > 4:
        # Joint mode: the minimum-peak order with recompute is a joint plan too, and its
        # (smaller) models find recomputations the joint ones miss within the limit.
        with deadline.phase("fixed_order_start"):
            fixed = cpsat(
                problem,
                order="minpeak",
                threads=ctx.threads,
                seed=ctx.seed,
                time_limit=deadline.sub(0.3),
                recompute_rate=rate,
            )
        if fixed.status.has_plan:
            out.plans.append(fixed)
    notes: list[str] = []
    emit = progress or progress_hook.current()
    for k, (name, with_light) in enumerate(phases):
        known = out.plans + ([ctx.warm] if ctx.warm is not None else [])
        best = min(known, key=lambda p: p.objective, default=None)
        if best is not None and best.objective <= out.bound:
            break  # proven
        with deadline.phase("model"):
            M = _Model(problem, ctx.seq, deadline, rate, light=with_light)
            for add in (_schedule, _residency, _addresses, _objective):
                if deadline.expired():
                    raise exact.OutOfTime("the time limit ran out while building the CP-SAT model")
                add(M)
            if best is not None:
                _hint(M, best)
        assert M.rc is not None
        den = M.rc.scale[1]

        def to_value(units: float, M: _Model = M, den: int = den) -> int | float:
            return recompute.value(recompute.to_bound(units, M.unit, den, M.load_offset))

        solver = cp_model.CpSolver()
        solver.parameters.catch_sigint_signal = False
        left = deadline.left()
        share = 0.5 if k + 1 < len(phases) else 0.95
        solver.parameters.max_time_in_seconds = 1e9 if left is None else max(0.05, share * left)
        solver.parameters.num_workers = ctx.threads
        solver.parameters.random_seed = ctx.seed

        class _Callback(cp_model.CpSolverSolutionCallback):
            def on_solution_callback(self, to_value=to_value, label=f"cpsat {name}") -> None:
                report(
                    label,
                    seconds=deadline.elapsed(),
                    objective=to_value(self.objective_value),
                    bound=to_value(self.best_objective_bound),
                    callback=emit,
                )

        with deadline.phase(f"solve_{name}"):
            status = _solve_stoppable(solver, M.m, _Callback())
        if status == cp_model.MODEL_INVALID:
            raise SolverError(
                "CP-SAT rejected the model (MODEL_INVALID): "
                f"{solver.solution_info() or M.m.validate() or 'no reason given'}"
            )
        out.stats[f"{name}_status"] = solver.status_name(status)
        if with_light and status == cp_model.INFEASIBLE:
            out.infeasible = "the CP-SAT relaxation with recompute is infeasible"
            break
        if with_light and status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
            out.bound = max(out.bound, to_value(solver.best_objective_bound))
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            with deadline.phase("decode"):
                cand = _recompute_plan(ctx, M, solver)
            if cand is None:
                notes.append(f"{name}: the solution's blocks could not be placed")
            else:
                out.plans.append(cand)
        else:
            notes.append(f"{name}: CP-SAT stopped with {solver.status_name(status)}")
    out.note = "; ".join(notes)
    return out
