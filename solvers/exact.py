"""The scaffold both exact engines (:mod:`~cosma.solvers.milp`, :mod:`~cosma.solvers.cpsat`)
run in, written once:

1. **precheck** — a budget below ``M_R`` is infeasible, with the operator that proves it;
2. **warm start** — the fixed order (if any) and the best baseline plan for it;
3. **shortcut** — a warm start with no extra traffic is optimal without a model;
4. the **engine** — builds its model, solves, decodes; it returns candidate plans (each
   replayed) and the best lower bound it proved;
5. **the answer** — the best of the engine's plans and the warm start, with the best valid
   bound anything proved (the engine, or :func:`traffic_floor`), built once as a new plan:
   the warm start's plan is never modified.

Statuses are always true for SPEC's problem (moves included): ``optimal`` only when the
plan meets a proven bound; ``infeasible`` only with a proof and never when a plan is known
(a contradiction is logged as a bug and the known plan is returned); a run that stops
early returns the best plan known as ``feasible`` with its bound and gap.

Every phase shares one :class:`~cosma.deadline.Deadline` and is timed in
``stats["phases"]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import networkx as nx

from cosma.deadline import Deadline
from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Plan, Status
from cosma.problem import Problem
from cosma.progress import report
from cosma.simulator import verify
from cosma.solvers import timeline
from cosma.solvers.baselines import Residency, starting_point

log = logging.getLogger(__name__)
T = TypeVar("T")


class OutOfTime(Exception):
    """Raised inside an engine when the deadline passes mid-phase (e.g. while building a
    model); :func:`run` turns it into a note and returns the best plan known."""


def ticking(items: Iterable[T], deadline: Deadline | None, every: int = 32) -> Iterator[T]:
    """``items``, raising :class:`OutOfTime` once ``deadline`` has passed (checked every
    ``every`` items): model builders loop with it so a big model stops at the limit."""
    for i, item in enumerate(items):
        if deadline is not None and i % every == 0 and deadline.expired():
            raise OutOfTime("the time limit ran out while building the model")
        yield item


@dataclass
class Context:
    """What an engine gets: the problem, the fixed order (None: free), the warm start, the
    shared deadline, and the user's options."""

    problem: Problem
    seq: list[str] | None
    warm: Plan | None
    deadline: Deadline
    method: str
    solver: str
    threads: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def make_plan(self, order: Sequence[str], blocks: Sequence[Residency]) -> Plan:
        """A replayed plan from an order and placed blocks (raises PlanError if invalid:
        that would be a bug in the engine)."""
        p = self.problem.new_plan(self.method, solver=self.solver)
        p.status = Status.FEASIBLE
        p.steps = timeline.plan_steps(self.problem, list(order), blocks)
        verify(self.problem.graph, p)
        report(self.method, seconds=self.deadline.elapsed(), objective=p.objective, phase="plan")
        return p


@dataclass
class EngineResult:
    """What an engine found: plans (replayed), a valid lower bound in bytes, a proof of
    infeasibility (a reason) if it has one, a note for the user, and model statistics."""

    plans: list[Plan] = field(default_factory=list)
    bound: int = 0
    infeasible: str | None = None
    note: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


Engine = Callable[[Context], EngineResult]


def run(
    problem: Problem,
    engine: Engine,
    *,
    method: str,
    solver: str,
    order: str | Sequence[str] | None,
    time_limit: float | Deadline | None,
    threads: int,
    seed: int,
    shortcut: bool = True,
    extra: dict[str, Any] | None = None,
) -> Plan:
    """Run ``engine`` inside the shared prologue and epilogue (see the module docstring).

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> p = run(Problem(g, 12), lambda ctx: EngineResult(), method="demo", solver="none",
    ...         order=None, time_limit=5, threads=1, seed=0)
    >>> p.status.value, p.method, p.lower_bound
    ('optimal', 'demo', 0)
    """
    deadline = Deadline.of(time_limit)
    options = {
        "mode": "joint" if order is None else "fixed",
        "time_limit": deadline.seconds,
        "threads": threads,
        "seed": seed,
    }
    # Recompute versus reload (cosma.solvers.recompute): the objective adds rate x MACs.
    rate = (extra or {}).get("recompute_rate")
    if rate is not None:
        options["recompute_rate"] = str(rate)

    def answer(
        chosen: Plan | None,
        status: Status,
        *,
        lower: int | None,
        reason: str | None = None,
        stats: dict | None = None,
    ) -> Plan:
        base = chosen if chosen is not None else problem.new_plan(method)
        return dataclasses.replace(
            base,
            method=method,
            solver=solver,
            options=dict(options),
            status=status,
            lower_bound=lower,
            reason=reason,
            steps=list(base.steps) if chosen is not None else [],
            stats={
                **(stats or {}),
                # what the replay measured of recomputation (recompute versus reload)
                **({"compute": base.stats["compute"]} if "compute" in base.stats else {}),
                "phases": dict(deadline.phases),
            },
            solve_time=deadline.elapsed(),
        )

    with deadline.phase("precheck"):
        why = problem.shortfall()
    if why:
        return answer(None, Status.INFEASIBLE, lower=None, reason=why)
    with deadline.phase("warm_start"):
        seq, warm = starting_point(problem, order, time_limit=deadline.left(0.3))
        if not warm.status.has_plan:
            warm = None
    report(
        method,
        seconds=deadline.elapsed(),
        objective=None if warm is None else warm.objective,
        bound=0,
        phase="warm start",
    )
    if shortcut and warm is not None and warm.objective == 0:
        return answer(
            warm, Status.OPTIMAL, lower=0, stats={"note": "the warm start has no extra traffic"}
        )
    with deadline.phase("floor"):
        # Both floors count loads that a recompute could replace: none with recompute.
        floor = 0 if rate is not None else max(traffic_floor(problem), crossing_floor(problem, seq))
    ctx = Context(problem, seq, warm, deadline, method, solver, threads, seed, dict(extra or {}))
    try:
        out = engine(ctx)
    except OutOfTime as e:
        out = EngineResult(note=str(e))
    stats = {
        **out.stats,
        "note": out.note,
        "warm_start": warm.objective if warm is not None else None,
        "bounds": {"engine": out.bound, "floor": floor},
    }
    plans = [p for p in out.plans if p.status.has_plan]
    if warm is not None:
        plans.append(warm)
    best = min(plans, key=lambda p: p.objective, default=None)
    if out.infeasible is not None:
        if best is None:
            return answer(None, Status.INFEASIBLE, lower=None, reason=out.infeasible, stats=stats)
        log.error(
            "%s on %s claims infeasible (%s) but a valid plan is known: a bug; "
            "returning the plan without that claim",
            method,
            problem.graph.name,
            out.infeasible,
        )
        stats["bug"] = f"engine claimed infeasible: {out.infeasible}"
        out.bound = 0
    bound = max(out.bound, floor)
    if best is None:
        return answer(
            None,
            Status.NO_SOLUTION,
            lower=bound,
            reason=out.note or "time limit reached before any plan",
            stats=stats,
        )
    lower = min(bound, best.objective)
    status = Status.OPTIMAL if best.objective <= lower else Status.FEASIBLE
    report(method, seconds=deadline.elapsed(), objective=best.objective, bound=lower, phase="done")
    return answer(best, status, lower=lower, stats=stats)


def traffic_floor(problem: Problem) -> int:
    """A lower bound on non-compulsory traffic that needs no solver (0 or the smallest
    tracked tensor).

    A plan with no extra traffic creates each activation once and never reloads it, and
    loads each input and parameter once, so every tracked tensor is resident from its
    creation (or load) to its last use, and an output from creation until stored. At
    operator ``v`` that includes ``v``'s operands and every tensor certainly live across
    ``v`` in every order: made (or first read) by a strict ancestor and read by a strict
    descendant. If those bytes exceed the budget at some ``v``, every plan has some extra
    traffic, and the least possible is one load or store of the smallest tensor.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> traffic_floor(Problem(g, 16)), traffic_floor(Problem(g, 20))  # p, q, r live at c
    (1, 0)
    """
    g = problem.graph
    setting = problem.setting
    tracked = list(g.tracked(setting))
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    positive = [g.tensors[a].size for a in tracked if g.tensors[a].size > 0]
    if not positive:
        return 0
    desc, anc = timeline.reach(g)
    total = {v: sum(size[a] for a in set(g.operands(v, setting))) for v in g.file_order}
    for a in tracked:
        t = g.tensors[a]
        if not size[a]:
            continue
        if t.producer is not None:
            before = set(desc[t.producer])
        else:
            before = set().union(*(desc[c] for c in t.consumers))
        after = set().union(*(anc[c] for c in t.consumers))
        for v in (before & after) - set(t.consumers) - {t.producer}:
            total[v] += size[a]
    worst = max(total.values(), default=0)
    return min(positive) if worst > problem.budget else 0


def too_big_to_stay(problem: Problem) -> dict[str, list[str]]:
    """For each operator ``v``, the tracked tensors that cannot be resident while ``v``
    runs: not operands of ``v`` and bigger than what ``v``'s operands leave of the budget.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> too_big_to_stay(Problem(g, 16))["c"]  # c holds q, r: 6 bytes left, p needs 10
    ['p']
    """
    g = problem.graph
    tracked = list(g.tracked(problem.setting))
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    by_size = sorted(tracked, key=lambda a: (-size[a], a))
    out: dict[str, list[str]] = {}
    for v in g.file_order:
        ops = set(g.operands(v, problem.setting))
        slack = problem.budget - sum(size[a] for a in ops)
        big = []
        for a in by_size:
            if size[a] <= slack:
                break
            if a not in ops:
                big.append(a)
        out[v] = big
    return out


def forced_reloads(problem: Problem, order: Sequence[str] | None = None) -> dict[str, int]:
    """How many times each tracked tensor must be loaded again in *every* plan (for the
    given order, or for every order when ``order`` is None).

    Walk a chain of the tensor's use points that every order runs in sequence: its
    creation (or, for an input or parameter, a first read), then reads ``c_1, c_2, ...``.
    If some operator ``v`` that the tensor is too big to stay beside
    (:func:`too_big_to_stay`) certainly runs strictly between two consecutive points, the
    tensor is absent while ``v`` runs and present at the later read: one load after ``v``.
    The intervals are disjoint, so the loads are distinct.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> forced_reloads(Problem(g, 16))   # p leaves for c and comes back for d
    {'p': 1}
    """
    g = problem.graph
    big = too_big_to_stay(problem)
    if order is not None:
        pos = {v: i for i, v in enumerate(order)}

        def between(u: str, w: str) -> list[str]:
            return list(order[pos[u] + 1 : pos[w]])

        def chain(points: list[str]) -> list[str]:
            return sorted(points, key=pos.__getitem__)
    else:
        desc, anc = timeline.reach(g)
        index = {v: i for i, v in enumerate(nx.topological_sort(g.dag))}

        def between(u: str, w: str) -> list[str]:
            return list(desc[u] & anc[w])

        def chain(points: list[str]) -> list[str]:
            out: list[str] = []
            for v in sorted(points, key=index.__getitem__):
                if not out or v in desc[out[-1]]:
                    out.append(v)
            return out

    blocked: dict[str, set[str]] = {}
    for v, tensors in big.items():
        for a in tensors:
            blocked.setdefault(a, set()).add(v)
    out: dict[str, int] = {}
    for a in sorted(blocked):
        t = g.tensors[a]
        head = [t.producer] if t.producer is not None else []
        points = chain(head + list(dict.fromkeys(t.consumers)))
        if t.producer is not None and points[:1] != [t.producer]:
            continue  # cannot happen (the producer precedes its readers); be safe
        k = sum(
            1 for u, w in itertools.pairwise(points) if any(v in blocked[a] for v in between(u, w))
        )
        if k:
            out[a] = k
    return out


def crossing_floor(problem: Problem, order: Sequence[str] | None = None) -> int:
    """Bytes every plan (for ``order``, or any order) moves because of
    :func:`forced_reloads`: each forced load, and one store for an activation that is
    not a graph output (an output is stored anyway; inputs and parameters are on host).
    Tensors' traffic is disjoint, so the sum is a lower bound.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> crossing_floor(Problem(g, 16))   # store p, load it again
    20
    """
    g = problem.graph
    total = 0
    for a, k in forced_reloads(problem, order).items():
        t = g.tensors[a]
        total += k * t.size + (t.size if t.kind is TensorKind.ACTIVATION else 0)
    return total


def tensor_costs(problem: Problem) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes of one load of each tracked tensor, and of its store if it had none otherwise
    (activations; outputs are stored anyway and inputs/parameters are on host)."""
    g = problem.graph
    loads = {a: g.tensors[a].size for a in g.tracked(problem.setting)}
    stores = {a: n for a, n in loads.items() if g.tensors[a].kind is TensorKind.ACTIVATION}
    return loads, stores
