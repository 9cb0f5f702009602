"""The exact optimizer: one MILP for schedule and replacement, with exact placement.

The model (written once, solved by any backend of :mod:`cosma.solvers.backends`) is
time-indexed, one operator per step ``t = 0..n-1``:

- ``x[v,t]`` = 1 if operator ``v`` runs at step ``t`` (only inside its ASAP/ALAP window;
  fixed-order mode fixes the window to one step);
- ``r[a,t]`` = 1 if tensor ``a`` is resident while step ``t`` runs (only inside the window
  where it can be alive);
- ``l[a,t]`` = 1 if ``a`` becomes resident at step ``t`` other than by being made;
  ``s[a]`` = 1 if ``a`` is ever stored;
- ``mv`` >= 0: bytes loaded by *moves* (see the cuts below).

**Why the optimum is a lower bound (moves included).** Map any valid plan of SPEC §3 onto
the model: ``x`` its order, ``r[a,t]`` = 1 while ``a`` occupies some block during step
``t`` (through a move the tensor is resident on both sides, so ``r`` stays 1), ``l[a,t]``
= 1 where ``r`` goes from 0 to 1 other than at creation (each such step is a load in the
plan), ``s[a]`` its stores, ``mv`` the bytes its moves load. Every constraint holds:
operands are resident when their operator runs; a tensor is resident only once made; a
reloaded activation was stored; at every step the resident blocks are disjoint inside
``[0, S)``, so their (aligned) sizes sum to at most ``S``; nothing in the model asks a
tensor to keep its address. The objective counts each non-move load once (at its 0 -> 1
step), each store once and ``mv`` once, so it is at most the plan's traffic. Hence the
model's optimum, and any bound a solver proves on it, is a lower bound on every plan.

**Placement.** The residencies of a solution are given addresses exactly
(:func:`cosma.solvers.placement.place_with_moves`: the allocators, then CP-SAT with
``NoOverlap2D``), where a block may move at a price (a load, and a store if the tensor had
no host copy). The plan is replayed; if it needs no moves its traffic is at most the
solution's objective, so when the solver proved that objective optimal, the plan is.

**Cuts, and why each is valid.** Let ``P`` be a set of residencies (tensor, steps) whose
placement needs moves, and ``c`` a proven lower bound on what the moves cost when every
move pays a load and every moved activation pays its store (the placement's proven
optimum, or at least one move of the cheapest tensor of ``P`` with a block over two or
more steps). The cut is ``mv + sum_{a in act(P)} size[a] s[a] >= c * (1 - sum_{(a,t) in
P} (1 - r[a,t]))``, ``act(P)`` the activations of ``P``. It binds only for solutions
resident at every (a,t) of ``P``. Take a plan resident there: inside each block of ``P``
its tensor stays resident, so the plan's blocks restricted to ``P``'s steps are a
placement of ``P`` split only where the plan moves a tensor of ``P``; the plan's move loads
(its ``mv``) plus the stores of the activations it moves (each has ``s[a] = 1``, since a
move needs a host copy) are at least ``c``, so the plan satisfies the cut. A second cut of
the same form is added for a smaller subset of ``P`` that is still proven to need a move
(a deletion filter), with ``c`` the cheapest single move in it. (The cut of the first
version, "not all of ``P``, nor any superset", was valid only without moves, and is gone.)
So the bound after cuts is still a lower bound; tests/test_exact.py checks it on the
issue's example and an independent exhaustive search checks it on address puzzles.

**Rows every plan satisfies** (:func:`_forced`): each input and parameter is loaded at
least once, and a tensor that must leave and come back in every order
(:func:`cosma.solvers.exact.forced_reloads`) is loaded that many more times and, if an
activation, stored.

Loads happen at uses and blocks leave right after their last use in a residency (both
without loss of generality), so the plan never needs more than the model counts.

The prologue (precheck, warm start, the shortcut when the warm start has no extra
traffic) and the choice of the answer are shared with CP-SAT (:mod:`cosma.solvers.exact`).
A run that stops early returns the best plan found — never worse than the best baseline,
which also warm-starts the solver — as ``feasible`` with the best valid bound.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import pulp

from cosma import options as check
from cosma.deadline import Deadline
from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Plan
from cosma.problem import Problem
from cosma.progress import report
from cosma.solvers import backends, exact, recompute, timeline
from cosma.solvers.baselines import Residency
from cosma.solvers.placement import place, place_with_moves

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
    mv: pulp.LpVariable | None = None
    deadline: Deadline | None = None
    stats: dict[str, int] = field(default_factory=dict)
    #: Recompute versus reload (:mod:`cosma.solvers.recompute`); None: not enabled.
    rc: recompute.Vars | None = None

    def __post_init__(self) -> None:
        self.ti = {a: i for i, a in enumerate(self.tensors)}
        self.oi = {v: i for i, v in enumerate(self.ops)}


# --- data -----------------------------------------------------------------------------------


# --- the model ----------------------------------------------------------------------------


def build_model(
    problem: Problem,
    *,
    order: list[str] | None = None,
    deadline: Deadline | None = None,
    recompute_rate: Fraction | None = None,
    recompute_light: bool = True,
) -> Model:
    """Variables, then one function per constraint family, then the objective.
    ``recompute_rate`` (bytes per MAC) adds recompute (:mod:`cosma.solvers.recompute`);
    ``recompute_light=False`` makes its light re-runs strict (a restriction, for plans)."""
    g = problem.graph
    window = timeline.windows(problem, order)
    life = timeline.lifetimes(problem, window)
    rc_gaps: dict[str, tuple[int, int]] = {}
    rc_light: dict[str, tuple[int, int]] = {}
    if recompute_rate is not None:
        life, rc_gaps, rc_light = recompute.extend(problem, window, life)

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
        for v in exact.ticking(ops, deadline)
        for t in range(window[v][0], window[v][1] + 1)
    }
    nx_vars = 0 if order is not None else len(x)
    r = {
        (a, t): _var(prob, f"resident_{ti[a]}_{_safe(a)}_t{t}", cat=pulp.LpBinary)
        for a in exact.ticking(tensors, deadline)
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
        deadline=deadline,
    )
    if recompute_rate is not None:
        m.rc = recompute.build(
            problem,
            recompute.Builder(
                binary=lambda name: _var(prob, name, cat=pulp.LpBinary),
                unit=lambda name: _var(prob, name, lowBound=0, upBound=1),
                add=lambda row, name: prob.__iadd__((row, name)),
            ),
            rate=recompute_rate,
            gaps=rc_gaps,
            light=rc_light,
            x=x,
            r=r,
            loads=ld,
            s=s,
            window=window,
            life=life,
            relaxed=recompute_light,
        )
    families = [
        lambda: _operands_resident(m, problem),
        lambda: _created_before_resident(m, problem),
        lambda: _loads(m, problem),
        lambda: _stores(m),
        lambda: _capacity(m, problem, sizes),
        lambda: _forced(m, problem, sizes),
        lambda: _objective(m, problem, sizes),
    ]
    if order is None:
        families[:0] = [
            lambda: _one_step_per_operator(m),
            lambda: _one_operator_per_step(m, g.num_operators),
            lambda: _precedence(m, problem),
        ]
    for add in families:
        if deadline is not None and deadline.expired():
            raise exact.OutOfTime("the time limit ran out while building the MILP")
        add()
    m.stats |= {
        "rows": prob.numConstraints(),
        "columns": nx_vars + len(r) + len(ld) + len(s),
        "binaries": nx_vars + len(r),
        "scale": scale,
    }
    if m.rc is not None:
        m.stats |= {"recompute_vars": len(m.rc.y) + len(m.rc.tr), "transient_vars": len(m.rc.gl)}
    return m


def _one_step_per_operator(m: Model) -> None:
    """sum_t x[v,t] = 1: every operator runs once."""
    for v in exact.ticking(m.ops, m.deadline):
        lo, hi = m.window[v]
        m.prob += (
            pulp.lpSum(m.x[v, t] for t in range(lo, hi + 1)) == 1,
            f"runs_once_{m.oi[v]}",
        )


def _one_operator_per_step(m: Model, n: int) -> None:
    """sum_v x[v,t] = 1: one operator per step (the published form leaves this out)."""
    per_step: dict[int, list] = {t: [] for t in range(n)}
    for (_, t), var in exact.ticking(m.x.items(), m.deadline):
        per_step[t].append(var)
    for t, vs in exact.ticking(per_step.items(), m.deadline):
        m.prob += pulp.lpSum(vs) == 1, f"one_op_at_t{t}"


def _precedence(m: Model, problem: Problem) -> None:
    """sum_{t'<=t} x[v,t'] <= sum_{t'<t} x[u,t'] for each edge u->v: v runs after u.

    The cumulative form is tighter than comparing run steps; only the edges of the
    transitive reduction are needed.
    """
    import networkx as nx

    red = nx.transitive_reduction(problem.graph.dag)
    for u, v in exact.ticking(red.edges, m.deadline):
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
    for v in exact.ticking(m.ops, m.deadline):
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
    for a in exact.ticking(m.tensors, m.deadline):
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
    for a in exact.ticking(m.tensors, m.deadline):
        p = g.tensors[a].producer
        lo, hi = m.life[a]
        for t in range(lo, hi + 1):
            prev = m.r[a, t - 1] if t > lo else 0
            made = m.x.get((p, t), 0) if p is not None else 0
            if m.rc is not None:  # recompute versus reload: back by a re-run of p
                made = made + m.rc.made(a, t)
            if (a, t) in m.loads:
                m.prob += (
                    m.loads[a, t] >= m.r[a, t] - prev - made,
                    f"load_{m.ti[a]}_t{t}",
                )
            else:  # at the producer's earliest step nothing can be loaded: made there or absent
                m.prob += m.r[a, t] - prev - made <= 0, f"noload_{m.ti[a]}_t{t}"


def _stores(m: Model) -> None:
    """s[a] >= l[a,t]: an activation is reloaded only if it was stored (once)."""
    for (a, t), var in exact.ticking(m.loads.items(), m.deadline):
        if a in m.s:
            m.prob += m.s[a] >= var, f"stored_{m.ti[a]}_t{t}"


def _forced(m: Model, problem: Problem, sizes: dict[str, int]) -> None:
    """Rows every plan satisfies that the capacity rows alone leave weak:

    - every input and parameter is loaded at least once: ``sum_t l[a,t] >= 1``;
    - a tensor that must leave and come back ``k`` times in every order
      (:func:`cosma.solvers.exact.forced_reloads`) is loaded ``k`` more times
      (``sum_t l[a,t] >= k``, plus its compulsory first load for an input) and, if it is
      an activation, stored: ``s[a] = 1``;
    - with a fixed order, a tensor too big to stay while an operator runs is not resident
      at that step (``r[a,t] = 0``; see :func:`cosma.solvers.exact.too_big_to_stay`).
    """
    g = problem.graph
    fixed = all(isinstance(x, int) for x in m.x.values())
    seq = [v for (v, _t) in sorted(m.x, key=lambda k: k[1])] if fixed else None
    reloads = exact.forced_reloads(problem, seq)
    if m.rc is not None:  # an activation may come back by recompute instead of a load
        reloads = {a: k for a, k in reloads.items() if g.tensors[a].producer is None}
    for a in exact.ticking(m.tensors, m.deadline):
        first = 1 if g.tensors[a].producer is None else 0
        need = first + reloads.get(a, 0)
        if need:
            terms = [var for (b, _), var in m.loads.items() if b == a]
            m.prob += pulp.lpSum(terms) >= need, f"loaded_{m.ti[a]}"
        if reloads.get(a) and a in m.s:
            m.s[a].lowBound = 1
    fixings = 0
    if fixed:
        for v, tensors in exact.too_big_to_stay(problem).items():
            t = m.window[v][0]
            for a in tensors:
                if (a, t) in m.r:
                    m.r[a, t].upBound = 0
                    fixings += 1
    m.stats |= {"forced_reloads": sum(reloads.values()), "fixed_absent": fixings}


def _capacity(m: Model, problem: Problem, sizes: dict[str, int]) -> None:
    """sum_a size[a] r[a,t] <= S: what is resident fits (sizes in units of their GCD)."""
    per_step: dict[int, list] = {}
    for (a, t), var in exact.ticking(m.r.items(), m.deadline):
        if sizes[a]:
            per_step.setdefault(t, []).append((sizes[a] // m.scale) * var)
    if m.rc is not None:  # inputs kept past their lifetime for a light re-run
        for t, extra in m.rc.extra.items():
            per_step.setdefault(t, []).extend(
                -(-size // m.scale) * var for size, var in extra if size
            )
    cap = problem.budget // m.scale
    for t, terms in exact.ticking(sorted(per_step.items()), m.deadline):
        m.prob += pulp.lpSum(terms) <= cap, f"capacity_t{t}"


def _objective(m: Model, problem: Problem, sizes: dict[str, int]) -> None:
    """min sum size[a] (sum_t l[a,t] + s[a]) over loads and stores beyond the compulsory.

    In units of the GCD of (unaligned) sizes; the compulsory first load of each input and
    parameter is subtracted after solving.
    """
    g = problem.graph
    raw = {a: g.tensors[a].size for a in m.tensors}
    if m.rc is not None:  # den x bytes + num x MACs (recompute versus reload)
        den = m.rc.scale[1]
        terms = [(den * raw[a], var) for (a, _), var in m.loads.items()]
        terms += [(den * raw[a], var) for a, var in m.s.items()]
        terms += m.rc.objective_terms(raw)
        terms = [(c, v) for c, v in terms if c]
        unit = math.gcd(*[c for c, _ in terms]) if terms else 1
        m.stats["objective_unit"] = unit
        m.prob += pulp.lpSum((c // unit) * v for c, v in terms)
        return
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


def _recompute_plan(ctx: exact.Context, m: Model, problem: Problem, values: dict[str, float]):
    """A replayed plan from a solution of a model with recompute, or None."""
    assert m.rc is not None
    at = {}
    for (v, t), var in m.x.items():
        if (var if isinstance(var, int) else values.get(var.name, 0)) > 0.5:
            at[t] = v
    order = [at[t] for t in range(len(m.ops))]
    steps = {
        a: {t for t in range(m.life[a][0], m.life[a][1] + 1) if values.get(m.r[a, t].name, 0) > 0.5}
        for a in m.tensors
    }
    gaps: dict[int, set[str]] = {}
    for (a, u), var in m.rc.keep.items():  # kept past its lifetime for a re-run
        if values.get(var.name, 0) > 0.5:
            steps[a].add(u)
    for (p, t), var in m.rc.runs().items():
        if values.get(var.name, 0) > 0.5:
            gaps.setdefault(t, set()).add(p)
    return recompute.build_plan(
        problem,
        order,
        steps,
        gaps,
        rate=m.rc.rate,
        method=ctx.method,
        solver=ctx.solver,
        deadline=ctx.deadline,
        seed=ctx.seed,
    )


def bound_in_bytes(m: Model, objective_bound: float) -> int:
    """A solver's bound on the model objective as a bound on non-compulsory bytes.

    The objective counts loads and stores in units of ``objective_unit`` and includes every
    input's and parameter's compulsory first load; every objective value is a whole number
    of units, so the bound rounds up (less a tolerance).
    """
    if m.rc is not None:
        return recompute.value(
            recompute.to_bound(
                objective_bound, m.stats["objective_unit"], m.rc.scale[1], m.load_offset
            )
        )
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
    for (a, t), var in exact.ticking(m.r.items(), m.deadline):
        var.setInitialValue(1 if a in during.get(t, ()) else 0)
    for (a, t), var in exact.ticking(m.loads.items(), m.deadline):
        var.setInitialValue(1 if (a, t) in loads else 0)
    for a, var in m.s.items():
        var.setInitialValue(1 if a in stored else 0)
    return True


def _move_cut(m: Model, res: list[Residency], cost: int, problem: Problem) -> None:
    """Cut: ``mv + sum_{a in act(P)} size[a] s[a] >= cost * (1 - sum_{(a,t) in P} (1 -
    r[a,t]))`` for residencies ``P`` whose placement needs moves costing at least ``cost``
    bytes, counting a load per move and a store per moved activation (``act(P)``: the
    activations of ``P``, which must be stored to move). Validity: module docstring."""
    units = cost // m.stats["objective_unit"]
    if units <= 0:
        return
    unit = m.stats["objective_unit"]
    g = problem.graph
    terms = [
        m.r[r.tensor, t] for r in res for t in range(r.start, r.end + 1) if (r.tensor, t) in m.r
    ]
    acts = sorted({r.tensor for r in res if r.tensor in m.s}, key=m.ti.__getitem__)
    if m.mv is None:
        m.mv = _var(m.prob, "moved_bytes", lowBound=0)
        m.prob.setObjective(m.prob.objective + m.mv)
    m.cuts += 1
    lhs = m.mv + pulp.lpSum((g.tensors[a].size // unit) * m.s[a] for a in acts)
    m.prob += lhs >= units * (1 - pulp.lpSum(1 - v for v in terms)), f"moves_{m.cuts}"


def _move_costs(problem: Problem, res: list[Residency]) -> tuple[dict, dict]:
    """Per tensor of ``res``: bytes of one load, and of the store an activation needs to
    move (graph outputs are stored anyway; inputs and parameters are on host)."""
    g = problem.graph
    loads = {r.tensor: g.tensors[r.tensor].size for r in res}
    stores = {a: n for a, n in loads.items() if g.tensors[a].kind is TensorKind.ACTIVATION}
    return loads, stores


def _shrink(res: list[Residency], problem: Problem, deadline: Deadline, seed: int):
    """A smaller set of residencies that still cannot be placed without moves (deletion
    filter: drop a block when the rest is proven unplaceable), so its cut binds for many
    more solutions. Spends at most a few seconds; keeps a block whenever unsure."""
    budget_s = min(5.0, 0.2 * (deadline.left() or 25.0))
    stop = deadline.elapsed() + budget_s
    core = [r for r in res if r.size > 0]
    for r in sorted(core, key=lambda r: (r.size, r.end - r.start, r.tensor)):
        if deadline.elapsed() >= stop:
            break
        rest = [Residency(q.tensor, q.start, q.end, q.size) for q in core if q is not r]
        if place(
            rest,
            problem.budget,
            alignment=problem.alignment,
            time_limit=max(0.05, min(1.0, stop - deadline.elapsed())),
            seed=seed,
        ).proven_impossible:
            core = [q for q in core if q is not r]
    return core


def _cut_cost(res: list[Residency], problem: Problem, proven: int) -> int:
    """Bytes any plan resident at all of ``res`` pays for moves (loads, and stores of moved
    activations): the placement's proven bound, and at least one move of the cheapest
    tensor that has a block to split."""
    loads, stores = _move_costs(problem, res)
    splittable = [
        loads[r.tensor] + stores.get(r.tensor, 0)
        for r in res
        if r.end > r.start and loads[r.tensor] > 0
    ]
    return max(proven, min(splittable, default=0))


# --- the method -----------------------------------------------------------------------------


def milp(
    problem: Problem,
    *,
    solver: str = "cbc",
    order: str | list[str] | None = None,
    time_limit: float | Deadline | None = 60.0,
    threads: int = 1,
    seed: int = 0,
    write_model: str | None = None,
    log_path: str | None = None,
    max_cuts: int = 25,
    shortcut: bool = True,
    recompute_rate: object = None,
) -> Plan:
    """Minimum non-compulsory traffic for ``problem``, proven where the solver finishes.

    ``order=None`` leaves the schedule free (joint mode); a name (``file``, ``minpeak``,
    ``greedy``) or a list of operators fixes it. ``time_limit`` (seconds, or a shared
    :class:`~cosma.deadline.Deadline`) bounds the whole call. ``write_model`` saves the
    model as ``.lp`` or ``.mps`` for users who want to run their own solver. With
    ``shortcut`` (the default) a warm start with no extra traffic is returned at once as
    optimal, without a model. ``recompute_rate`` (bytes per MAC; None, the default: off)
    lets a dropped activation come back by re-running its producer, and the objective
    becomes traffic + rate x recomputed MACs (:mod:`cosma.solvers.recompute`).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> plan = milp(Problem(g, 16))   # p must be spilled around c: store 10 + reload 10
    >>> plan.status.value, plan.objective, plan.lower_bound
    ('optimal', 20, 20)
    """
    back = backends.backend(solver)
    method = (
        "milp" if order is None else f"milp-fixed({order if isinstance(order, str) else 'given'})"
    )
    rate = None if recompute_rate is None else check.recompute_rate(recompute_rate)

    def engine(ctx: exact.Context) -> exact.EngineResult:
        return _engine(ctx, back, write_model, log_path, max_cuts, rate)

    return exact.run(
        problem,
        engine,
        method=method,
        solver=solver,
        order=order,
        time_limit=time_limit,
        threads=threads,
        seed=seed,
        shortcut=shortcut and not write_model,
        extra=None if rate is None else {"recompute_rate": rate},
    )


def _engine(
    ctx: exact.Context,
    back: backends.Backend,
    write_model: str | None,
    log_path: str | None,
    max_cuts: int,
    rate: Fraction | None = None,
) -> exact.EngineResult:
    problem, deadline = ctx.problem, ctx.deadline
    g = problem.graph
    out = exact.EngineResult()
    warm = ctx.warm
    if ctx.seq is None and warm is not None and warm.objective > 0 and deadline.remaining() > 2:
        # Any fixed-order plan is a joint solution: the minimum-peak order's optimum, fast
        # to prove, is a better start than a baseline (its bound is not a joint bound).
        with deadline.phase("fixed_order_start"):
            fixed = milp(
                problem,
                solver=back.name,
                order="minpeak",
                threads=ctx.threads,
                seed=ctx.seed,
                time_limit=deadline.sub(0.25),
                max_cuts=max_cuts,
                recompute_rate=rate,
            )
        if fixed.status.has_plan and fixed.objective < warm.objective:
            warm = fixed
            out.plans.append(fixed)
            if fixed.objective <= ctx.floor:
                out.note = "the minimum-peak order's optimum meets the no-solver bound"
                out.bound = ctx.floor
                return out
    if rate is not None:
        return _recompute_engine(ctx, back, log_path, rate, warm, out)
    with deadline.phase("model"):
        built = deadline.elapsed()
        try:
            # Handing the model to the solver (CBC reads an MPS file, HiGHS its own copy)
            # takes about as long as building it, and cannot be interrupted: the build may
            # use half of what is left, so the rest can still hand it over and solve.
            m = build_model(problem, order=ctx.seq, deadline=deadline.sub(0.5))
            warm_ok = _warm_start(m, problem, warm) if warm is not None else False
        except exact.OutOfTime as e:
            out.note = f"{e} (half of the time left is kept for the solver)"
            return out
        if write_model:
            (m.prob.writeMPS if write_model.endswith(".mps") else m.prob.writeLP)(write_model)
        handoff = deadline.elapsed() - built
    out.stats = dict(m.stats)
    best = min((p.objective for p in out.plans), default=None)
    if warm is not None:
        best = warm.objective if best is None else min(best, warm.objective)
    notes: list[str] = []
    while True:
        remaining = deadline.remaining()
        if remaining <= 0.05:
            notes.append("time limit reached")
            break
        if remaining < handoff + 0.5:
            notes.append("time limit: too little left to hand the model to the solver again")
            break
        with deadline.phase("solve"):
            res_ = back.solve(
                m.prob,
                # A tenth of what is left stays for placement and the answer.
                time_limit=min(0.9 * remaining, 1e9),
                threads=ctx.threads,
                seed=ctx.seed,
                log_path=log_path,
                integral_gap=0.999,
                warm_start=warm_ok,
            )
        log.info(
            "%s %s: %s obj=%s bound=%s (%.2fs, %d cuts)",
            g.name,
            back.name,
            res_.status,
            res_.objective,
            res_.bound,
            res_.seconds,
            m.cuts,
        )
        if res_.bound is not None:
            out.bound = max(out.bound, bound_in_bytes(m, res_.bound))
        report(
            ctx.method,
            seconds=deadline.elapsed(),
            objective=best,
            bound=out.bound,
            phase=f"{back.name} {res_.status}",
            cuts=m.cuts,
        )
        if res_.status == backends.INFEASIBLE:
            # The model relaxes SPEC's problem and every cut is valid: no plan exists.
            out.infeasible = "the MILP relaxation (capacity at every step) is infeasible"
            break
        if not res_.values:
            notes.append(res_.note.splitlines()[0] if res_.note else "no incumbent")
            break
        with deadline.phase("placement"):
            seq_out, res = _decode(m, problem, res_.values)
            move_loads, move_stores = _move_costs(problem, res)
            pl = place_with_moves(
                res,
                problem.budget,
                alignment=problem.alignment,
                # Every activation that moves pays its store here, whether or not the
                # solution stores it anyway: then the proven optimum bounds the cut below.
                load_cost=move_loads,
                store_cost=move_stores,
                time_limit=max(0.1, min(deadline.left() or 30.0, 30.0)),
                seed=ctx.seed,
            )
            needs_moves = pl.needs_moves
            if pl.cost > 0 and not needs_moves:
                # Proving that moves are needed (feasibility) is easier than proving their
                # least cost: without that proof no cut is valid.
                trial = [Residency(r.tensor, r.start, r.end, r.size) for r in res]
                needs_moves = place(
                    trial,
                    problem.budget,
                    alignment=problem.alignment,
                    time_limit=max(0.1, min(deadline.left() or 10.0, 10.0)),
                    seed=ctx.seed,
                ).proven_impossible
            if pl.blocks is not None:
                cand = ctx.make_plan(seq_out, timeline.retrim(problem, seq_out, pl.blocks))
                out.plans.append(cand)
                best = cand.objective if best is None else min(best, cand.objective)
        notes.append(f"placed by {pl.method}" if pl.blocks is not None else pl.method)
        if best is not None and best <= max(out.bound, ctx.floor):
            break  # proven
        if res_.status == backends.OPTIMAL and pl.blocks is not None and pl.cost == 0:
            # The solver's optimum is placed without moves: it meets the bound.
            break
        if not needs_moves:
            notes.append("placement stopped unproven: no cut")
            break
        if m.cuts >= max_cuts:
            notes.append(f"{m.cuts} move cuts, limit reached")
            break
        _move_cut(m, res, _cut_cost(res, problem, pl.bound), problem)
        with deadline.phase("shrink"):
            core = _shrink(res, problem, deadline, ctx.seed)
        if len(core) < len(res):
            _move_cut(m, core, _cut_cost(core, problem, 0), problem)
        warm_ok = False
    out.note = "; ".join(dict.fromkeys(notes))
    out.stats |= {"cuts": m.cuts, "placement": out.note}
    return out


# --- recompute versus reload (cosma.solvers.recompute) ----------------------------------------


def _recompute_engine(
    ctx: exact.Context,
    back: backends.Backend,
    log_path: str | None,
    rate: Fraction,
    warm: Plan | None,
    out: exact.EngineResult,
) -> exact.EngineResult:
    """Two solves: the model without light re-runs (a restriction whose solutions decode to
    plans), then the full model (the relaxation: its bound is the valid one). When the
    graph has no light re-runs the first model is the relaxation and one solve does both.
    No move cuts: they assume a tensor changes address only by a load."""
    problem, deadline = ctx.problem, ctx.deadline
    # Today's optimum (no recompute) first: a plan of the combined objective too (no
    # re-runs), and a start for the larger models; never worse than recompute off.
    with deadline.phase("no_recompute_start"):
        base = milp(
            problem,
            solver=back.name,
            order=ctx.seq,
            threads=ctx.threads,
            seed=ctx.seed,
            time_limit=deadline.sub(0.25),
        )
    if base.status.has_plan:
        out.plans.append(base)
    window = timeline.windows(problem, ctx.seq)
    _, _, light = recompute.extend(problem, window, timeline.lifetimes(problem, window))
    phases = [("restricted", False), ("relaxed", True)] if light else [("relaxed", True)]
    notes: list[str] = []
    for k, (name, with_light) in enumerate(phases):
        best = min(
            [p.objective for p in out.plans] + ([warm.objective] if warm else []), default=None
        )
        if best is not None and best <= out.bound:
            break  # proven
        with deadline.phase("model"):
            try:
                m = build_model(
                    problem,
                    order=ctx.seq,
                    deadline=deadline,
                    recompute_rate=rate,
                    recompute_light=with_light,
                )
                start = min(
                    out.plans + ([warm] if warm else []), key=lambda p: p.objective, default=None
                )
                warm_ok = _warm_start(m, problem, start) if start is not None else False
            except exact.OutOfTime as e:
                notes.append(str(e))
                break
        out.stats = {**out.stats, **{f"{name}_{key}": v for key, v in m.stats.items()}}
        remaining = deadline.remaining()
        if remaining <= 0.05:
            notes.append("time limit reached")
            break
        share = 0.5 if k + 1 < len(phases) else 0.9
        with deadline.phase(f"solve_{name}"):
            res_ = back.solve(
                m.prob,
                time_limit=min(share * remaining, 1e9),
                threads=ctx.threads,
                seed=ctx.seed,
                log_path=log_path,
                integral_gap=0.999,
                warm_start=warm_ok,
            )
        log.info(
            "%s %s (%s): %s obj=%s bound=%s",
            problem.graph.name,
            back.name,
            name,
            res_.status,
            res_.objective,
            res_.bound,
        )
        if with_light and res_.bound is not None:
            out.bound = max(out.bound, bound_in_bytes(m, res_.bound))
        if with_light and res_.status == backends.INFEASIBLE:
            out.infeasible = "the MILP relaxation with recompute is infeasible"
            break
        if res_.values:
            with deadline.phase("placement"):
                cand = _recompute_plan(ctx, m, problem, res_.values)
            if cand is None:
                notes.append(f"{name}: the solution's blocks could not be placed")
            else:
                out.plans.append(cand)
        else:
            notes.append(f"{name}: " + (res_.note.splitlines()[0] if res_.note else "no incumbent"))
        report(
            ctx.method,
            seconds=deadline.elapsed(),
            objective=min([p.objective for p in out.plans], default=None),
            bound=out.bound,
            phase=f"{back.name} {name}",
        )
    out.note = "; ".join(dict.fromkeys(notes))
    return out
