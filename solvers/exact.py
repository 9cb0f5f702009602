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

import bisect
import dataclasses
import itertools
import logging
import math
import time
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
    #: the no-solver lower bound (:func:`no_solver_floor`): an engine may stop once a plan
    #: meets it
    floor: int = 0

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
    hint: Plan | None = None,
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
    # The solve's own time: a shared deadline (the CLI's) may have started long before,
    # at interpreter start, and its clock includes loading the model.
    started = deadline.elapsed()
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
            solve_time=deadline.elapsed() - started,
        )

    with deadline.phase("precheck"):
        why = problem.shortfall()
    if why:
        return answer(None, Status.INFEASIBLE, lower=None, reason=why)
    with deadline.phase("warm_start"):
        seq, warm = starting_point(problem, order, time_limit=deadline.left(0.3))
        if not warm.status.has_plan:
            warm = None
        # A caller's plan (e.g. the incumbent of a window, cosma.solvers.dnc) when better.
        if (
            hint is not None
            and hint.status.has_plan
            and (seq is None or hint.order == seq)
            and (warm is None or hint.objective < warm.objective)
        ):
            warm = hint
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
        # The floors count loads that a recompute could replace: none with recompute.
        until = time.perf_counter() + max(0.5, 0.1 * (deadline.remaining()))
        floor = 0 if rate is not None else no_solver_floor(problem, seq, until=until)
    if shortcut and warm is not None and warm.objective <= floor:
        return answer(
            warm,
            Status.OPTIMAL,
            lower=warm.objective,
            stats={
                "note": "the warm start meets the no-solver lower bound",
                "bounds": {"floor": floor},
            },
        )
    ctx = Context(
        problem, seq, warm, deadline, method, solver, threads, seed, dict(extra or {}), floor
    )
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


def traffic_floor(
    problem: Problem,
    order: Sequence[str] | None = None,
    *,
    live: dict[str, set[str]] | None = None,
) -> int:
    """A lower bound on non-compulsory traffic that needs no solver (0 or the smallest
    tracked tensor), for every order (or for ``order``).

    A plan with no extra traffic creates each activation once and never reloads it, and
    loads each input and parameter once, so every tracked tensor is resident from its
    creation (or load) to its last use, and an output from creation until stored. At
    operator ``v`` that includes ``v``'s operands and every tensor certainly live across
    ``v`` (:func:`certainly_live`: made or first read before ``v``, read after it). If
    those bytes exceed the budget at some ``v``, every plan has some extra traffic, and
    the least possible is one load or store of the smallest tensor.

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
    if live is None:
        live = certainly_live(problem, order)
    worst = max(
        (
            sum(size[a] for a in set(g.operands(v, setting))) + sum(size[a] for a in live[v])
            for v in g.file_order
        ),
        default=0,
    )
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


@dataclass(frozen=True)
class Charge:
    """A lower bound (``bytes``) on the extra traffic of the tensors in ``tensors`` alone,
    in every plan (for the order it was computed for). Charges on disjoint tensor sets add
    up (:func:`floor`)."""

    bytes: int
    tensors: frozenset[str]
    why: str


@dataclass(frozen=True)
class _Branch:
    full: str  # the branch's fullest operator
    slack: int  # bytes its operands leave of the budget
    space: int  # least (aligned) bytes of a tensor on the branch's path
    value: int  # least traffic of a tensor on the path that leaves and comes back
    path: tuple[str, ...]  # the path's tensors


def join_charges(problem: Problem, order: Sequence[str] | None = None) -> list[Charge]:
    """Traffic forced where several branches meet, each with an operator that (nearly)
    fills the scratchpad (DeepLabV3's ASPP: four 3x3 convolutions, each needing the whole
    budget, whose outputs wait for one concatenation).

    **The argument.** Let ``c`` be an operator (the *join*) and ``B_1 .. B_k`` the
    *private* ancestor sets of distinct producers of ``c``'s inputs: ``B_i`` holds the
    producer ``p_i`` and its ancestors that are not ``p_j`` or an ancestor of ``p_j`` for
    any other ``j``. Pick in each ``B_i`` an operator ``f_i`` and a path ``P_i`` from
    ``f_i`` to ``c`` through operators of ``B_i``; its tensors are made in ``B_i``. Then:

    1. the ``f_i`` are mutually unordered, and no tensor of ``P_i`` is an operand of
       ``f_j`` (``j != i``) — otherwise an operator of ``B_i`` would be an ancestor of
       ``p_j``, or ``f_j`` (in ``B_j``) would make a tensor of ``B_i``;
    2. while ``f_i`` has run and ``c`` has not, some tensor of ``P_i`` is made and still
       awaited by its next operator on the path (the first operator of ``P_i`` not yet
       run reads it);
    3. the paths share no tensor (each tensor has one producer; the ``B_i`` are disjoint).

    In any order let ``f_l`` be the last of the chosen ``f_i`` to run. While it runs, each
    other branch ``i`` has an awaited tensor ``a_i`` of ``P_i`` (2.); the ones resident sit
    beside ``f_l``'s operands (1.), so their sizes sum to at most ``slack(f_l)`` = budget
    minus ``f_l``'s operand bytes. Every ``a_i`` not resident was made, left and must come
    back: one load of ``a_i`` and, for an activation that is not a graph output, its store
    — at least ``value_i``, the least such cost over ``P_i``; and ``a_i`` is at least
    ``space_i`` bytes, the least over ``P_i``. So the traffic of these tensors is at least
    the least total ``value`` of branches left out when branches whose ``space`` fits in
    ``slack(f_l)`` stay (a knapsack; its fractional relaxation when there are many
    branches, still a lower bound), minimised over which ``f_l`` runs last (with a fixed
    order: the one that does). Each ``a_i`` pays once, so the charge is on the union of the
    paths' tensors.

    Here ``f_i`` is the fullest operator of ``B_i`` (least slack, ties by file order) and
    ``P_i`` the path from it that maximises ``value_i``; the branches taken are the ``m``
    fullest for the best ``m >= 2``.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 4).op("a", ["x"], {"p": 2}).op("b", ["x"], {"q": 2})
    ...      .op("c", ["p", "q"], {"z": 1}).output("z").build())
    >>> [(ch.bytes, sorted(ch.tensors)) for ch in join_charges(Problem(g, 6))]  # a, b full
    [(4, ['p', 'q'])]
    """
    g = problem.graph
    setting = problem.setting
    tracked = set(g.tracked(setting))
    loads, stores = tensor_costs(problem)
    cost = {a: loads[a] + stores.get(a, 0) for a in loads}
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    slack = {
        v: problem.budget - sum(size[a] for a in set(g.operands(v, setting))) for v in g.file_order
    }
    _, anc = timeline.reach(g)
    topo = {v: i for i, v in enumerate(nx.topological_sort(g.dag))}
    pos = {v: i for i, v in enumerate(order)} if order is not None else None
    out: list[Charge] = []
    for c in g.file_order:
        producers = sorted(
            {
                g.tensors[a].producer
                for a in g.operators[c].inputs
                if a in tracked and g.tensors[a].producer is not None
            },
            key=g.position,
        )
        if len(producers) < 2:
            continue
        count: dict[str, int] = {}
        for p in producers:
            for v in (p, *anc[p]):
                count[v] = count.get(v, 0) + 1
        branches: list[_Branch] = []
        for p in producers:
            private = {v for v in (p, *anc[p]) if count[v] == 1}
            widest: dict[str, tuple[int, tuple[str, ...]]] = {}
            for v in sorted(private, key=topo.__getitem__, reverse=True):
                best: tuple[int, tuple[str, ...]] | None = None
                for a in g.operators[v].outputs:
                    if a not in tracked:
                        continue
                    for u in sorted(set(g.tensors[a].consumers), key=g.position):
                        if u == c:
                            val, rest = cost[a], ()
                        elif u in widest:
                            val, rest = min(cost[a], widest[u][0]), widest[u][1]
                        else:
                            continue
                        if best is None or val > best[0]:
                            best = (val, (a, *rest))
                if best is not None:
                    widest[v] = best
            if not widest:
                continue
            f = min(widest, key=lambda v: (slack[v], g.position(v)))
            val, path = widest[f]
            space = min(size[a] for a in path)
            branches.append(_Branch(f, max(0, slack[f]), space, val, path))
        branches.sort(key=lambda b: (b.slack, g.position(b.full)))
        best_charge: Charge | None = None
        for m in range(2, len(branches) + 1):
            chosen = branches[:m]
            lasts = [max(chosen, key=lambda b: pos[b.full])] if pos is not None else chosen
            paid = min(
                _left_out([b for b in chosen if b is not last], last.slack) for last in lasts
            )
            if paid > 0 and (best_charge is None or paid > best_charge.bytes):
                tensors = frozenset(a for b in chosen for a in b.path)
                best_charge = Charge(paid, tensors, f"branches of {c} meeting full operators")
        if best_charge is not None:
            out.append(best_charge)
    return out


def _left_out(items: Sequence[_Branch], capacity: int) -> int:
    """Least total ``value`` of the items left out when those kept fit in ``capacity``
    (exact for up to 10 items, else the fractional relaxation: never more than exact)."""
    total = sum(b.value for b in items)
    if sum(b.space for b in items) <= capacity:
        return 0
    if len(items) <= 10:
        kept = 0
        for mask in range(1 << len(items)):
            space = value = 0
            for i, b in enumerate(items):
                if mask >> i & 1:
                    space += b.space
                    value += b.value
            if space <= capacity:
                kept = max(kept, value)
        return total - kept
    kept_f = 0.0
    room = capacity
    # Best value per byte first; items of no space come first and always fit, even when
    # the capacity is 0 (stopping at a full knapsack would leave them out: too high).
    for b in sorted(items, key=lambda b: -(b.value / b.space) if b.space else -math.inf):
        if b.space <= room:
            take = 1.0
        elif room > 0:
            take = room / b.space
        else:
            continue
        kept_f += take * b.value
        room -= take * b.space
    return max(0, total - math.ceil(kept_f))


def _cover(items: Sequence[tuple[int, int]], need: int) -> float:
    """Least total cost of items (size, cost) whose sizes sum to at least ``need``
    (``inf`` if all of them are not enough): exact for up to 10 items, else the fractional
    relaxation, which is never more than the exact least cost."""
    if need <= 0:
        return 0
    if sum(n for n, _ in items) < need:
        return math.inf
    if len(items) <= 10:
        best = math.inf
        for mask in range(1 << len(items)):
            n = c = 0
            for i, (sz, cost) in enumerate(items):
                if mask >> i & 1:
                    n += sz
                    c += cost
            if n >= need and c < best:
                best = c
        return best
    paid = 0.0
    for sz, cost in sorted(items, key=lambda it: it[1] / it[0] if it[0] else math.inf):
        if sz >= need:
            return paid + cost * need / sz
        paid += cost
        need -= sz
    return paid


def certainly_live(problem: Problem, order: Sequence[str] | None = None) -> dict[str, set[str]]:
    """For each operator ``v``, the tracked tensors that are live across ``v`` in every
    order (or in ``order``) without being its operands: made (or first read, for an input
    or parameter) before ``v`` and read after it.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> certainly_live(Problem(g, 16))["c"]
    {'p'}
    """
    g = problem.graph
    out: dict[str, set[str]] = {v: set() for v in g.file_order}
    if order is not None:
        pos = {v: i for i, v in enumerate(order)}
        for a in g.tracked(problem.setting):
            t = g.tensors[a]
            if not t.consumers:
                continue
            first = pos[t.producer] if t.producer is not None else min(map(pos.get, t.consumers))
            last = max(map(pos.get, t.consumers))
            for v in order[first + 1 : last]:
                out[v].add(a)
        for v in g.file_order:
            out[v] -= set(g.operands(v, problem.setting))
        return out
    desc, anc = timeline.reach(g)
    for a in g.tracked(problem.setting):
        t = g.tensors[a]
        if not t.consumers:
            continue
        if t.producer is not None:
            before = desc[t.producer]
        else:
            before = frozenset().union(*(desc[c] for c in t.consumers))
        after = frozenset().union(*(anc[c] for c in t.consumers))
        for v in before & after:
            out[v].add(a)
    for v in g.file_order:
        out[v] -= set(g.operands(v, problem.setting))
    return out


#: Longest chain of full operators :func:`chain_charges` considers per tensor.
CHAIN_LIMIT = 24


def chain_charges(
    problem: Problem,
    order: Sequence[str] | None = None,
    *,
    live: dict[str, set[str]] | None = None,
    until: float | None = None,
) -> list[Charge]:
    """Traffic forced on a tensor ``a`` by a chain of operators it cannot stay beside, when
    its readers may run on either side of them (the Transformer's encoder output, read by
    every decoder layer's key and value projections, while each decoder layer's FFN fills
    the scratchpad).

    **The argument.** "``u`` before ``v``" means in every order (or in ``order``). Let
    ``head`` be ``a``'s producer (for an input or parameter: a reader, so ``a`` has been
    loaded once, compulsorily, before anything below) and ``F_0, .., F_m`` operators after
    ``head``, each after the previous one, none reading or writing ``a``. At ``F_j``,
    ``T_j`` = the tensors certainly live across ``F_j`` (:func:`certainly_live`) other than
    ``a``. Call ``F_j`` *blocking* in a plan if ``a`` is not resident while ``F_j`` runs.

    1. If ``F_j`` does not block, ``a``, ``F_j``'s operands and the resident part of
       ``T_j`` fit in the budget, so the tensors of ``T_j`` that are absent (each awaited:
       it was stored if an activation, and is loaded again) have sizes summing to at least
       ``size(a) + size(T_j) - slack(F_j)``: they cost at least ``e_j``, the least such
       cover (infinite when ``a`` alone exceeds ``slack(F_j)``).
    2. Let ``F_i`` and ``F_k`` be consecutive blocking operators (or ``F_k`` = the end),
       and ``U`` the readers of ``a`` before ``F_k`` but not before ``F_i``. Either ``a``
       is loaded between ``F_i`` and ``F_k`` (a load, not its first), or every reader in
       ``U`` ran before ``F_i`` (``a`` is absent at ``F_i`` and cannot be read in between
       without a load), which is impossible if one is after ``F_i``; then each output of
       ``U`` read after ``F_i`` is awaited at ``F_i`` with ``T_i``: those not resident cost
       their load (and store), and what stays fits in ``slack(F_i)``.
    3. If any gap takes the load, ``a`` was stored before (an activation that is not an
       output), once.

    The readers in different gaps are different operators (their outputs are different
    tensors); items shared between two of these sets (a ``T_j`` in another ``T_j'`` or an
    output of ``U``) are dropped from all but none — dropped everywhere, which can only
    lower each cost. So the tensors charged are disjoint, and the least total over which
    ``F_j`` block (dynamic programming over the chain), taken with and without the store,
    is a lower bound on these tensors' traffic. The chain is taken greedily in topological
    order among the operators ``a`` does not fit beside with ``T_j`` (at most
    :data:`CHAIN_LIMIT`).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> [(ch.bytes, sorted(ch.tensors)) for ch in chain_charges(Problem(g, 16))]  # p: 10 + 10
    [(20, ['p', 'q', 'z'])]
    """
    g = problem.graph
    setting = problem.setting
    tracked = list(g.tracked(setting))
    size = {a: aligned(g.tensors[a].size, problem.alignment) for a in tracked}
    loads, stores = tensor_costs(problem)
    cost = {a: loads[a] + stores.get(a, 0) for a in tracked}
    operands = {v: set(g.operands(v, setting)) for v in g.file_order}
    slack = {v: problem.budget - sum(size[a] for a in operands[v]) for v in g.file_order}
    if live is None:
        live = certainly_live(problem, order)
    free = {v: slack[v] - sum(size[a] for a in live[v]) for v in g.file_order}
    if order is not None:
        pos = {v: i for i, v in enumerate(order)}

        def before(u: str, v: str) -> bool:
            return pos[u] < pos[v]

        rank = pos
    else:
        _, anc = timeline.reach(g)

        def before(u: str, v: str) -> bool:
            return u in anc[v]

        rank = {v: i for i, v in enumerate(nx.topological_sort(g.dag))}
    # Operators by room left (free), to find those a tensor cannot stay beside quickly: a
    # needs room > free[v], or > free[v] + size[a] where it is one of the certainly live.
    by_free = sorted(g.file_order, key=lambda v: free[v])
    frees = [free[v] for v in by_free]
    out: list[Charge] = []
    for a in tracked:
        if until is not None and time.perf_counter() > until:
            break  # the charges found so far hold each on its own
        t = g.tensors[a]
        if not size[a] or not loads[a] or not t.consumers:
            continue
        head = t.producer
        if head is None:
            head = min(t.consumers, key=rank.__getitem__)
        chain: list[str] = []
        tight = by_free[: bisect.bisect_left(frees, 2 * size[a])]
        for v in sorted(tight, key=rank.__getitem__):
            if v == head or a in operands[v] or not before(head, v):
                continue
            room = free[v] + (size[a] if a in live[v] else 0)
            if size[a] <= room:
                continue
            if chain and not before(chain[-1], v):
                continue
            chain.append(v)
            if len(chain) >= CHAIN_LIMIT:
                break
        if not chain:
            continue
        readers = sorted(set(t.consumers), key=rank.__getitem__)
        if not any(not before(u, chain[0]) for u in readers):
            continue  # every reader runs before the chain
        # With the tensors certainly live beside the chain, and without them (a smaller
        # charge set, so it adds up with more of the other charges).
        for beside in (live, None):
            charge = _chain_cost(problem, a, chain, readers, before, beside, slack, size, cost)
            if charge is not None and charge not in out:
                out.append(charge)
    return out


def _chain_cost(
    problem: Problem,
    a: str,
    chain: list[str],
    readers: list[str],
    before: Callable[[str, str], bool],
    live: dict[str, set[str]] | None,
    slack: dict[str, int],
    size: dict[str, int],
    cost: dict[str, int],
) -> Charge | None:
    """The dynamic program of :func:`chain_charges` for one tensor and chain (``live``
    None: leave the tensors certainly live beside the chain out, which only lowers it)."""
    g = problem.graph
    loads, stores = tensor_costs(problem)
    m = len(chain)
    outs: dict[str, list[str]] = {
        u: [b for b in g.operators[u].outputs if b in size and b != a] for u in readers
    }
    from_readers = {b for o in outs.values() for b in o}
    T = [set(live[f]) - {a} - from_readers if live is not None else set() for f in chain]
    # A tensor beside several chain operators is kept beside one operator per stretch
    # with no certain read of it in between (the one with the least room) and left out
    # at the others (which only lowers the bound): then each absence of it that is
    # charged ends in its own load. Beside one operator only, it pays its store too.
    room = [slack[f] - sum(size[b] for b in T[j]) for j, f in enumerate(chain)]
    at: dict[str, list[int]] = {}
    for j, items in enumerate(T):
        for b in items:
            at.setdefault(b, []).append(j)
    item_cost: dict[str, int] = {}
    for b, js in at.items():
        if len(js) == 1:
            item_cost[b] = cost[b]
            continue
        reads = g.tensors[b].consumers
        stretches = [[js[0]]]
        for j, k in itertools.pairwise(js):
            if any(before(chain[j], r) and before(r, chain[k]) for r in reads):
                stretches.append([k])
            else:
                stretches[-1].append(k)
        for stretch in stretches:
            keep = min(stretch, key=lambda j: (room[j], j))
            for j in stretch:
                if j != keep:
                    T[j].discard(b)
        item_cost[b] = cost[b] if len(stretches) == 1 else loads[b]
    operand_cache: dict[str, set[str]] = {}

    def operands_of(v: str) -> set[str]:
        if v not in operand_cache:
            operand_cache[v] = set(g.operands(v, problem.setting))
        return operand_cache[v]

    def beside(j: int) -> list[tuple[int, int]]:
        return [(size[b], item_cost[b]) for b in sorted(T[j])]

    e = []  # cost when a stays at chain[j]
    base = []  # cost of what else must leave when a does not
    for j, f in enumerate(chain):
        items = beside(j)
        total = sum(n for n, _ in items)
        e.append(math.inf if size[a] > slack[f] else _cover(items, size[a] + total - slack[f]))
        base.append(_cover(items, total - slack[f]))

    def gap(i: int, k: int | None) -> tuple[float, float]:
        """Costs of the gap after blocking chain[i]: (every reader of the gap ran before
        chain[i], a is loaded in the gap)."""
        f = chain[i]
        gap_readers = [
            u for u in readers if not before(u, f) and (k is None or before(u, chain[k]))
        ]
        if not gap_readers:
            return base[i], base[i]
        loaded = loads[a] + base[i]
        if any(before(f, u) for u in gap_readers):
            return math.inf, loaded
        items = beside(i)
        for u in gap_readers:
            for b in outs[u]:
                if b in operands_of(f):
                    continue
                if any(before(f, c) for c in g.tensors[b].consumers):
                    items.append((size[b], cost[b]))
        return _cover(items, sum(n for n, _ in items) - slack[f]), loaded

    gaps = {(i, k): gap(i, k) for i in range(m) for k in [*range(i + 1, m), None]}
    best = math.inf
    for with_loads in (False, True):
        # dp[k]: least cost of chain[:k+1] with chain[k] the last blocking operator so far.
        dp = [math.inf] * m
        stay = 0.0
        for k in range(m):
            dp[k] = stay
            stay += e[k]
        for i in range(m):
            for k in range(i + 1, m):
                u_cost, l_cost = gaps[i, k]
                step = min(u_cost, l_cost) if with_loads else u_cost
                dp[k] = min(dp[k], dp[i] + step + sum(e[i + 1 : k]))
        total = stay  # a stays at every chain operator
        for i in range(m):
            u_cost, l_cost = gaps[i, None]
            step = min(u_cost, l_cost) if with_loads else u_cost
            total = min(total, dp[i] + step + sum(e[i + 1 :]))
        if with_loads:
            total += stores.get(a, 0)
        best = min(best, total)
    if not best or math.isinf(best):
        return None
    charged = frozenset({a, *from_readers, *(b for items in T for b in items)})
    return Charge(math.ceil(best - 1e-9), charged, f"{a} across a chain of full operators")


def floor_charges(
    problem: Problem,
    order: Sequence[str] | None = None,
    *,
    live: dict[str, set[str]] | None = None,
    until: float | None = None,
) -> list[Charge]:
    """Every no-solver charge: :func:`forced_reloads` (one per tensor), :func:`join_charges`
    and :func:`chain_charges` (those found by ``until``, a ``time.perf_counter()`` value:
    each charge holds on its own, so fewer only weaken the floor)."""
    g = problem.graph
    out = []
    for a, k in forced_reloads(problem, order).items():
        t = g.tensors[a]
        paid = k * t.size + (t.size if t.kind is TensorKind.ACTIVATION else 0)
        out.append(Charge(paid, frozenset([a]), f"{a} must leave and come back {k}x"))
    return (
        out + join_charges(problem, order) + chain_charges(problem, order, live=live, until=until)
    )


def no_solver_floor(
    problem: Problem, order: Sequence[str] | None = None, *, until: float | None = None
) -> int:
    """The best lower bound on non-compulsory traffic cosma proves without a solver: the
    larger of :func:`traffic_floor` and a sum of :func:`floor_charges` on pairwise disjoint
    tensor sets (each tensor's traffic is counted by at most one charge, so they add up;
    chosen greedily, by bytes per tensor and by bytes, the better of the two). ``until``
    (a ``time.perf_counter()`` value) stops the search for chain charges early.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> no_solver_floor(Problem(g, 16))   # store p, load it again
    20
    """
    live = certainly_live(problem, order)
    charges = floor_charges(problem, order, live=live, until=until)
    best = traffic_floor(problem, order, live=live)
    for key in (
        lambda ch: (-ch.bytes / len(ch.tensors), ch.why),
        lambda ch: (-ch.bytes, ch.why),
    ):
        used: set[str] = set()
        total = 0
        for ch in sorted(charges, key=key):
            if used.isdisjoint(ch.tensors):
                used |= ch.tensors
                total += ch.bytes
        best = max(best, total)
    return best


def tensor_costs(problem: Problem) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes of one load of each tracked tensor, and of its store if it had none otherwise
    (activations; outputs are stored anyway and inputs/parameters are on host)."""
    g = problem.graph
    loads = {a: g.tensors[a].size for a in g.tracked(problem.setting)}
    stores = {a: n for a, n in loads.items() if g.tensors[a].kind is TensorKind.ACTIVATION}
    return loads, stores
