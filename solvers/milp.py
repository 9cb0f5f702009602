"""The exact optimizer: one MILP for schedule and replacement, with exact placement.

The model (written once, solved by any backend of :mod:`cosma.solvers.backends`) is
time-indexed, one operator per step ``t = 0..n-1``:

- ``x[v,t]`` = 1 if operator ``v`` runs at step ``t`` (only inside its ASAP/ALAP window;
  fixed-order mode fixes the window to one step);
- ``r[a,t]`` = 1 if tensor ``a`` is resident while step ``t`` runs (only inside the window
  where it can be alive);
- ``l[a,t]`` = 1 if ``a`` is loaded at step ``t``; ``s[a]`` = 1 if ``a`` is ever stored.

Without addresses this is a *relaxation* of SPEC §3: every real plan maps onto a solution
with no more traffic, so its optimum is a lower bound. The residencies it chooses are then
placed exactly (:mod:`cosma.solvers.placement`: allocators, then CP-SAT ``NoOverlap2D``).
If they fit, the plan's traffic equals the bound and is optimal. If placement is proven
impossible, a cut forbids that set of residencies (and every superset, which cannot fit
either) and the model is solved again; the bound stays valid after each cut. Loads happen
at uses and blocks leave right after their last use in a residency (both without loss of
generality), so the plan never needs more than the model counts.

A time-limited run returns the best plan found — never worse than the best baseline, which
also warm-starts the solver — as ``feasible`` with the solver's bound.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field

import pulp

from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Plan, Status
from cosma.problem import Problem
from cosma.progress import report
from cosma.simulator import verify
from cosma.solvers import backends, timeline
from cosma.solvers.baselines import Residency, starting_point
from cosma.solvers.placement import place

log = logging.getLogger(__name__)


def _var(prob: pulp.LpProblem, name: str, **kw) -> pulp.LpVariable:
    """A variable of ``prob`` (PuLP >= 3.3 attaches it to the model; older ones cannot)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, **kw)
    return pulp.LpVariable(name, **kw)


def _safe(name: str, limit: int = 32) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:limit]


@dataclass
class Model:
    """The MILP and what is needed to read a solution back."""

    prob: pulp.LpProblem
    ops: list[str]
    tensors: list[str]
    x: dict[tuple[str, int], pulp.LpVariable | int]
    r: dict[tuple[str, int], pulp.LpVariable]
    loads: dict[tuple[str, int], pulp.LpVariable]
    s: dict[str, pulp.LpVariable]
    window: dict[str, tuple[int, int]]
    life: dict[str, tuple[int, int]]
    scale: int
    load_offset: int  # bytes of compulsory first loads, which the objective includes
    cuts: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ti = {a: i for i, a in enumerate(self.tensors)}
        self.oi = {v: i for i, v in enumerate(self.ops)}


# --- data -----------------------------------------------------------------------------------


# --- the model ----------------------------------------------------------------------------


def build_model(problem: Problem, *, order: list[str] | None = None) -> Model:
    """Variables, then one function per constraint family, then the objective."""
    g = problem.graph
    window = timeline.windows(problem, order)
    life = timeline.lifetimes(problem, window)
    sizes = {a: aligned(g.tensors[a].size, problem.alignment) for a in life}
    nonzero = [s for s in sizes.values() if s]
    scale = math.gcd(*nonzero) if nonzero else 1
    prob = pulp.LpProblem(_safe(g.name, 60) or "cosma", pulp.LpMinimize)
    ops = list(g.file_order)
    tensors = list(life)
    oi = {v: i for i, v in enumerate(ops)}
    ti = {a: i for i, a in enumerate(tensors)}

    # Fixed order: x is a constant 1 at each operator's step, not a variable.
    x = {
        (v, t): 1
        if order is not None
        else _var(prob, f"run_{oi[v]}_{_safe(v)}_t{t}", cat=pulp.LpBinary)
        for v in ops
        for t in range(window[v][0], window[v][1] + 1)
    }
    nx_vars = 0 if order is not None else len(x)
    r = {
        (a, t): _var(prob, f"resident_{ti[a]}_{_safe(a)}_t{t}", cat=pulp.LpBinary)
        for a in tensors
        for t in range(life[a][0], life[a][1] + 1)
    }
    ld = {
        (a, t): _var(prob, f"load_{ti[a]}_{_safe(a)}_t{t}", lowBound=0, upBound=1)
        for a in tensors
        for t in range(life[a][0], life[a][1] + 1)
        if g.tensors[a].producer is None or t > life[a][0]
    }
    s = {
        a: _var(prob, f"stored_{ti[a]}_{_safe(a)}", lowBound=0, upBound=1)
        for a in tensors
        if g.tensors[a].kind is TensorKind.ACTIVATION
    }
    m = Model(
        prob,
        ops,
        tensors,
        x,
        r,
        ld,
        s,
        window,
        life,
        scale,
        # Every input and parameter is loaded at least once: those first loads are in the
        # objective (it counts every load) but are compulsory, so they come off the bound.
        load_offset=sum(g.tensors[a].size for a in tensors if g.tensors[a].producer is None),
    )
    if order is None:
        _one_step_per_operator(m)
        _one_operator_per_step(m, g.num_operators)
        _precedence(m, problem)
    _operands_resident(m, problem)
    _created_before_resident(m, problem)
    _loads(m, problem)
    _stores(m)
    _capacity(m, problem, sizes)
    _objective(m, problem, sizes)
    m.stats |= {
        "rows": prob.numConstraints(),
        "columns": nx_vars + len(r) + len(ld) + len(s),
        "binaries": nx_vars + len(r),
        "scale": scale,
    }
    return m


def _one_step_per_operator(m: Model) -> None:
    """sum_t x[v,t] = 1: every operator runs once."""
    for v in m.ops:
        lo, hi = m.window[v]
        m.prob += (
            pulp.lpSum(m.x[v, t] for t in range(lo, hi + 1)) == 1,
            f"runs_once_{m.oi[v]}",
        )


def _one_operator_per_step(m: Model, n: int) -> None:
    """sum_v x[v,t] = 1: one operator per step (the published form leaves this out)."""
    per_step: dict[int, list] = {t: [] for t in range(n)}
    for (_, t), var in m.x.items():
        per_step[t].append(var)
    for t, vs in per_step.items():
        m.prob += pulp.lpSum(vs) == 1, f"one_op_at_t{t}"


def _precedence(m: Model, problem: Problem) -> None:
    """sum_{t'<=t} x[v,t'] <= sum_{t'<t} x[u,t'] for each edge u->v: v runs after u.

    The cumulative form is tighter than comparing run steps; only the edges of the
    transitive reduction are needed.
    """
    import networkx as nx

    red = nx.transitive_reduction(problem.graph.dag)
    for u, v in red.edges:
        lo, hi = m.window[v]
        for t in range(lo, hi + 1):
            if t - 1 >= m.window[u][1]:
                continue  # u has certainly run by then
            lhs = pulp.lpSum(m.x[v, k] for k in range(lo, t + 1))
            rhs = pulp.lpSum(m.x[u, k] for k in range(m.window[u][0], t))
            m.prob += lhs <= rhs, f"after_{m.oi[u]}_{m.oi[v]}_t{t}"


def _operands_resident(m: Model, problem: Problem) -> None:
    """r[a,t] >= x[v,t] for every tracked operand a of v: operands are resident when v runs."""
    g = problem.graph
    for v in m.ops:
        lo, hi = m.window[v]
        for a in g.operands(v, problem.setting):
            for t in range(lo, hi + 1):
                m.prob += (
                    m.r[a, t] >= m.x[v, t],
                    f"operand_{m.ti[a]}_{m.oi[v]}_t{t}",
                )


def _created_before_resident(m: Model, problem: Problem) -> None:
    """r[a,t] <= sum_{t'<=t} x[p,t']: an activation is resident only once produced."""
    g = problem.graph
    for a in m.tensors:
        p = g.tensors[a].producer
        if p is None:
            continue
        plo, phi = m.window[p]
        for t in range(m.life[a][0], min(phi, m.life[a][1] + 1)):
            if (p, t) in m.x and t < phi:
                m.prob += (
                    m.r[a, t] <= pulp.lpSum(m.x[p, k] for k in range(plo, t + 1)),
                    f"made_{m.ti[a]}_t{t}",
                )


def _loads(m: Model, problem: Problem) -> None:
    """l[a,t] >= r[a,t] - r[a,t-1] - x[p,t]: becoming resident other than by being made is
    a load (the first step of a lifetime has no predecessor: r[a,t-1] = 0 there)."""
    g = problem.graph
    for a in m.tensors:
        p = g.tensors[a].producer
        lo, hi = m.life[a]
        for t in range(lo, hi + 1):
            prev = m.r[a, t - 1] if t > lo else 0
            made = m.x.get((p, t), 0) if p is not None else 0
            if (a, t) in m.loads:
                m.prob += (
                    m.loads[a, t] >= m.r[a, t] - prev - made,
                    f"load_{m.ti[a]}_t{t}",
                )
            else:  # at the producer's earliest step nothing can be loaded: made there or absent
                m.prob += m.r[a, t] - prev - made <= 0, f"noload_{m.ti[a]}_t{t}"


def _stores(m: Model) -> None:
    """s[a] >= l[a,t]: an activation is reloaded only if it was stored (once)."""
    for (a, t), var in m.loads.items():
        if a in m.s:
            m.prob += m.s[a] >= var, f"stored_{m.ti[a]}_t{t}"


def _capacity(m: Model, problem: Problem, sizes: dict[str, int]) -> None:
    """sum_a size[a] r[a,t] <= S: what is resident fits (sizes in units of their GCD)."""
    per_step: dict[int, list] = {}
    for (a, t), var in m.r.items():
        if sizes[a]:
            per_step.setdefault(t, []).append((sizes[a] // m.scale) * var)
    cap = problem.budget // m.scale
    for t, terms in sorted(per_step.items()):
        m.prob += pulp.lpSum(terms) <= cap, f"capacity_t{t}"


def _objective(m: Model, problem: Problem, sizes: dict[str, int]) -> None:
    """min sum size[a] (sum_t l[a,t] + s[a]) over loads and stores beyond the compulsory.

    In units of the GCD of (unaligned) sizes; the compulsory first load of each input and
    parameter is subtracted after solving.
    """
    g = problem.graph
    raw = {a: g.tensors[a].size for a in m.tensors}
    unit = math.gcd(*[v for v in raw.values() if v]) if any(raw.values()) else 1
    m.stats["objective_unit"] = unit
    m.prob += pulp.lpSum((raw[a] // unit) * var for (a, _), var in m.loads.items()) + pulp.lpSum(
        (raw[a] // unit) * var for a, var in m.s.items()
    )


# --- reading a solution back --------------------------------------------------------------


def _decode(m: Model, problem: Problem, values: dict[str, float]):
    """Order and residencies of a solution (see :func:`timeline.residencies`)."""
    at = {}
    for (v, t), var in m.x.items():
        if (var if isinstance(var, int) else values.get(var.name, 0)) > 0.5:
            at[t] = v
    order = [at[t] for t in range(len(m.ops))]
    steps = {
        a: [t for t in range(m.life[a][0], m.life[a][1] + 1) if values.get(m.r[a, t].name, 0) > 0.5]
        for a in m.tensors
    }
    return order, timeline.residencies(problem, order, steps)


def bound_in_bytes(m: Model, objective_bound: float) -> int:
    """A solver's bound on the model objective as a bound on non-compulsory bytes.

    The objective counts loads and stores in units of ``objective_unit`` and includes every
    input's and parameter's compulsory first load; every objective value is a whole number
    of units, so the bound rounds up (less a tolerance).
    """
    units = math.ceil(objective_bound - 1e-6)
    return max(0, units * m.stats["objective_unit"] - m.load_offset)


def _warm_start(m: Model, problem: Problem, plan: Plan) -> bool:
    """Set initial values from a baseline plan; False if its order does not fit the model."""
    pos = {v: i for i, v in enumerate(plan.order)}
    if any(not (m.window[v][0] <= pos[v] <= m.window[v][1]) for v in m.ops):
        return False
    for (v, t), var in m.x.items():
        if not isinstance(var, int):
            var.setInitialValue(1 if pos[v] == t else 0)
    during, loads, stored = timeline.plan_state(plan)
    for (a, t), var in m.r.items():
        var.setInitialValue(1 if a in during.get(t, ()) else 0)
    for (a, t), var in m.loads.items():
        var.setInitialValue(1 if (a, t) in loads else 0)
    for a, var in m.s.items():
        var.setInitialValue(1 if a in stored else 0)
    return True


def _forbid(m: Model, res: list[Residency]) -> None:
    """Cut: not all of these residencies at once (they cannot be placed together, nor can
    any superset of them)."""
    terms = [
        m.r[r.tensor, t] for r in res for t in range(r.start, r.end + 1) if (r.tensor, t) in m.r
    ]
    m.cuts += 1
    m.prob += pulp.lpSum(1 - v for v in terms) >= 1, f"unplaceable_{m.cuts}"


# --- the method -----------------------------------------------------------------------------


def milp(
    problem: Problem,
    *,
    solver: str = "cbc",
    order: str | list[str] | None = None,
    time_limit: float = 60.0,
    threads: int = 1,
    seed: int = 0,
    write_model: str | None = None,
    log_path: str | None = None,
    max_cuts: int = 25,
    shortcut: bool = True,
) -> Plan:
    """Minimum non-compulsory traffic for ``problem``, proven where the solver finishes.

    ``order=None`` leaves the schedule free (joint mode); a name (``file``, ``minpeak``,
    ``greedy``) or a list of operators fixes it. ``write_model`` saves the model as ``.lp``
    or ``.mps`` for users who want to run their own solver. With ``shortcut`` (the default)
    a warm start with no extra traffic is returned at once as optimal, without a model.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> plan = milp(Problem(g, 16))   # p must be spilled around c: store 10 + reload 10
    >>> plan.status.value, plan.objective, plan.lower_bound
    ('optimal', 20, 20)
    """
    t0 = time.perf_counter()
    g = problem.graph
    back = backends.backend(solver)
    mode = "joint" if order is None else "fixed"
    method = (
        "milp" if order is None else f"milp-fixed({order if isinstance(order, str) else 'given'})"
    )
    plan = problem.new_plan(
        method,
        solver=solver,
        options={"mode": mode, "time_limit": time_limit, "threads": threads, "seed": seed},
    )
    why = problem.shortfall()
    if why:
        plan.status, plan.reason = Status.INFEASIBLE, why
        plan.lower_bound = None
        plan.solve_time = time.perf_counter() - t0
        return plan

    seq, warm = starting_point(problem, order, time_limit=time_limit)
    if (
        seq is None
        and warm.status.has_plan
        and warm.objective > 0
        and time.perf_counter() - t0 < time_limit / 2
    ):
        # Any fixed-order plan is a joint solution: the minimum-peak order's optimum, fast
        # to prove, is a better start than a baseline and an upper bound for the joint run.
        fixed = milp(
            problem,
            solver=solver,
            order="minpeak",
            threads=threads,
            seed=seed,
            time_limit=max(1.0, time_limit / 4),
            max_cuts=max_cuts,
        )
        if fixed.status.has_plan and fixed.objective < warm.objective:
            warm = fixed
    if shortcut and not write_model and warm.status.has_plan and warm.objective == 0:
        # Nothing beyond the compulsory traffic: optimal without a model.
        warm.method, warm.solver, warm.options = method, solver, plan.options
        warm.status, warm.lower_bound = Status.OPTIMAL, 0
        warm.stats = {"placement": "the warm start already has no extra traffic"}
        warm.solve_time = time.perf_counter() - t0
        return warm
    report(
        "milp",
        seconds=time.perf_counter() - t0,
        objective=warm.objective if warm.status.has_plan else None,
        bound=0,
        phase="warm start",
    )
    m = build_model(problem, order=seq)
    plan.stats = dict(m.stats)
    if write_model:
        (m.prob.writeMPS if write_model.endswith(".mps") else m.prob.writeLP)(write_model)
    warm_ok = _warm_start(m, problem, warm) if warm.status.has_plan else False

    best_plan: Plan | None = None
    bound_bytes = 0
    proven = False
    placement_note = ""
    while True:
        remaining = time_limit - (time.perf_counter() - t0)
        if remaining <= 0.05:
            break
        out = back.solve(
            m.prob,
            time_limit=remaining,
            threads=threads,
            seed=seed,
            log_path=log_path,
            integral_gap=0.999,
            warm_start=warm_ok,
        )
        log.info(
            "%s %s: %s obj=%s bound=%s (%.2fs, %d cuts)",
            g.name,
            solver,
            out.status,
            out.objective,
            out.bound,
            out.seconds,
            m.cuts,
        )
        if out.bound is not None:
            bound_bytes = max(bound_bytes, bound_in_bytes(m, out.bound))
        report(
            "milp",
            seconds=time.perf_counter() - t0,
            objective=warm.objective if warm.status.has_plan else None,
            bound=bound_bytes,
            phase=f"{solver} {out.status}",
            cuts=m.cuts,
        )
        if out.status == backends.INFEASIBLE:
            placement_note = "every residency set that fits the capacity was unplaceable"
            proven = True
            break
        if not out.values:
            placement_note = out.note.splitlines()[0] if out.note else "no incumbent"
            break
        seq_out, res = _decode(m, problem, out.values)
        left = max(1.0, time_limit - (time.perf_counter() - t0))
        pl = place(
            res, problem.budget, alignment=problem.alignment, time_limit=min(left, 30.0), seed=seed
        )
        if pl.placed:
            cand = problem.new_plan(method, solver=solver, options=plan.options)
            cand.status = Status.FEASIBLE
            cand.steps = timeline.plan_steps(problem, seq_out, res)
            verify(g, cand)
            best_plan = cand
            report(
                "milp",
                seconds=time.perf_counter() - t0,
                objective=cand.objective,
                bound=min(bound_bytes, cand.objective),
                phase=f"placed by {pl.method}",
            )
            proven = out.status == backends.OPTIMAL
            placement_note = f"placed by {pl.method}"
            break
        if not pl.proven_impossible or m.cuts >= max_cuts:
            placement_note = (
                "placement timed out"
                if not pl.proven_impossible
                else f"{m.cuts} placement cuts, limit reached"
            )
            break
        _forbid(m, res)
        warm_ok = False

    # The answer: the better of the MILP's plan and the warm start.
    chosen = best_plan
    if warm.status.has_plan and (chosen is None or warm.objective < chosen.objective):
        chosen = warm
        chosen.method = method
        chosen.solver = solver
        chosen.options = plan.options
    if chosen is None:
        plan.reason = placement_note
        plan.lower_bound = bound_bytes
        plan.solve_time = time.perf_counter() - t0
        return plan
    if proven and best_plan is not None and chosen is best_plan:
        bound_bytes = max(bound_bytes, chosen.objective)
    chosen.lower_bound = min(bound_bytes, chosen.objective)
    chosen.status = Status.OPTIMAL if chosen.objective <= chosen.lower_bound else Status.FEASIBLE
    chosen.stats = {
        **m.stats,
        "cuts": m.cuts,
        "placement": placement_note,
        "warm_start": warm.objective if warm.status.has_plan else None,
    }
    chosen.solve_time = time.perf_counter() - t0
    return chosen
