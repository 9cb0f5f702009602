"""Divide and conquer for the joint problem on large graphs (schedule, addresses, replacement).

A plan is held as an order plus placed *blocks* (:class:`~cosma.solvers.baselines.Residency`:
tensor, first and last step, address); its traffic follows from the blocks alone (a block
that does not start at its producer's step is a load; an activation with a load is stored
once, right after it is made).

1. **Start** from the best of the protocol's four baselines (so the result is never worse).
2. **Cut** the order where few bytes are live across (cut points chosen near evenly spaced
   targets, at the local minimum of the bytes crossing).
3. **Solve each piece exactly** with the existing engine (:func:`cosma.solvers.milp.milp`),
   carrying the boundary state in. A piece is posed as a *new graph* the engines accept
   unchanged (:func:`window_problem`): a synthetic first operator ``pre`` holds what is
   resident at the entry cut (tensors that host already has are graph inputs it reads; those
   it has not are outputs it creates, so dropping one costs a store and a reload), a
   synthetic last operator ``post`` reads what the rest of the plan expects resident at the
   exit cut, tensors the rest of the plan reloads are graph outputs (they must be stored),
   and tensors on host that the piece reads are graph inputs. Zero-byte tokens make ``pre``
   run first and ``post`` last, so the order inside the piece stays free (joint mode).
   The piece's optimum differs from the true cost of the piece by a constant (first loads
   of host tensors, forced stores), so it is the true optimum of the piece for that
   boundary state.
4. **Stitch**: the piece's residencies replace the window's; blocks that cross a cut keep
   the address they have outside (resident tensors carry their addresses across), blocks
   inside the window are placed around them (best fit, then CP-SAT ``NoOverlap2D``). A
   piece is kept only if it lowers the traffic.
5. **Improve across the cuts** (large-neighbourhood search): re-solve windows that straddle
   the cuts, then windows at shifted offsets, growing them when a round finds nothing,
   until the time limit.
6. **Bound**: :func:`spill_bound`, a covering relaxation of the whole problem (see there);
   ``optimal`` only when the plan meets it.

The final plan is replayed by the simulator before it is returned.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import pulp

from cosma.deadline import Deadline
from cosma.errors import CosmaError
from cosma.graph import Graph, Operator, Setting, TensorKind
from cosma.memory import aligned
from cosma.plan import Plan, Status
from cosma.problem import Problem
from cosma.progress import Progress, current, report, reporting
from cosma.simulator import verify
from cosma.solvers import backends, timeline
from cosma.solvers.baselines import PROTOCOL, Residency, baseline
from cosma.solvers.exact import no_solver_floor

log = logging.getLogger(__name__)


def _quiet(info: dict) -> None:
    """Progress sink for the engines dnc runs on windows."""


PRE, POST = "__dnc_pre", "__dnc_post"
_TOKEN = "__dnc_token"


# --- plans as blocks ------------------------------------------------------------------------


@dataclass
class Solution:
    """A plan as an order and placed blocks, with its non-compulsory traffic."""

    order: list[str]
    blocks: list[Residency]
    cost: int


def blocks_of(problem: Problem, plan: Plan) -> list[Residency]:
    """The placed blocks of a replayed plan, trimmed without loss: a block that starts with
    a load starts at its first use, every block ends at its last use (or its creation), and
    a loaded block nothing reads is left out. A tensor moved between two steps gives two
    blocks."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(plan.order)}
    uses = {t: sorted(pos[c] for c in g.tensors[t].consumers) for t in g.tensors}
    open_: dict[str, tuple[int, int, bool]] = {}
    raw: list[tuple[str, int, int, int, bool]] = []

    def close(t: str, end: int) -> None:
        start, addr, made = open_.pop(t)
        raw.append((t, start, end, addr, made))

    for i, step in enumerate(plan.steps):
        for e in step.before:
            if e.kind.value in ("load", "create"):
                open_[e.tensor] = (i, e.address, e.kind.value == "create")
            elif e.kind.value == "drop":
                close(e.tensor, i - 1)
        for e in step.after:
            if e.kind.value == "drop":
                close(e.tensor, i)
    for t in list(open_):
        close(t, len(plan.steps) - 1)
    size = {t: aligned(g.tensors[t].size, problem.alignment) for t in g.tensors}
    out = []
    for t, start, end, addr, made in raw:
        inside = [u for u in uses[t] if start <= u <= end]
        if not made:
            if not inside:
                continue
            start = inside[0]
        end = max([start, *inside])
        out.append(Residency(t, start, end, size[t], addr))
    return out


def cost_of(problem: Problem, order: Sequence[str], blocks: Sequence[Residency]) -> int:
    """Non-compulsory bytes of a plan given by its blocks (stores once per reloaded
    activation; graph outputs' stores and each input's first load are compulsory)."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    loads: dict[str, int] = {}
    for b in blocks:
        p = g.tensors[b.tensor].producer
        if p is None or pos[p] != b.start:
            loads[b.tensor] = loads.get(b.tensor, 0) + 1
    total = 0
    for t, n in loads.items():
        tensor = g.tensors[t]
        if tensor.kind in (TensorKind.INPUT, TensorKind.PARAMETER):
            total += (n - 1) * tensor.size
        elif tensor.kind is TensorKind.OUTPUT:
            total += n * tensor.size
        else:
            total += (n + 1) * tensor.size
    return total


def to_plan(problem: Problem, sol: Solution, method: str, options: dict) -> Plan:
    """A replayed plan from a solution (raises PlanError if it breaks a rule: a bug)."""
    plan = problem.new_plan(method, solver=options.get("solver"), options=options)
    plan.status = Status.FEASIBLE
    plan.steps = timeline.plan_steps(problem, sol.order, sol.blocks)
    plan.objective = sol.cost
    verify(problem.graph, plan)
    return plan


# --- a window as a problem of its own -----------------------------------------------------


@dataclass
class Window:
    """A window ``[a, b)`` of a solution's order posed as a problem the engines accept."""

    problem: Problem
    a: int
    b: int
    ops: list[str]
    entry: dict[str, Residency] = field(default_factory=dict)  # resident across cut a
    exit: dict[str, Residency] = field(default_factory=dict)  # resident across cut b


def window_problem(
    problem: Problem, sol: Solution, a: int, b: int, *, frozen: Collection[str] = ()
) -> Window:
    """Pose steps ``[a, b)`` of ``sol`` as a graph of their own, with the boundary state in.

    - tensors resident across cut ``a`` are held by a first operator ``pre``: read by it
      if host has a copy (graph inputs of the window), created by it if not;
    - tensors resident across cut ``b`` are read by a last operator ``post``;
    - tensors the rest of the plan loads, and graph outputs made in the window, are graph
      outputs of the window (they must be stored);
    - other tensors on host that the window reads are graph inputs;
    - zero-byte tokens from ``pre`` to the window's first operators and from its last
      operators to ``post`` keep ``pre`` first and ``post`` last;
    - operators of the window in ``frozen`` keep their relative order (a chain of zero-byte
      tokens from each to the next): only the others move, so a long window (a tensor's
      producer to its readers) stays small for the exact engines.

    The window's traffic differs from the true traffic of those steps by a constant: the
    first load of a host tensor (free in the window, paid outside when the tensor is an
    activation) and the stores of tensors that must be stored either way.
    """
    g = problem.graph
    order = sol.order
    ops = order[a:b]
    inside = set(ops)
    pos = {v: i for i, v in enumerate(order)}
    tracked = set(g.tracked(problem.setting))
    entry = {r.tensor: r for r in sol.blocks if r.start < a <= r.end}
    exit_ = {r.tensor: r for r in sol.blocks if r.start < b <= r.end}
    loaded_outside: set[str] = set()
    loaded_after: set[str] = set()
    for r in sol.blocks:
        p = g.tensors[r.tensor].producer
        made = p is not None and pos[p] == r.start
        if not made and (r.start < a or r.start >= b):
            loaded_outside.add(r.tensor)
            if r.start >= b:
                loaded_after.add(r.tensor)

    def on_host_before(t: str) -> bool:
        kind = g.tensors[t].kind
        return kind in (TensorKind.INPUT, TensorKind.PARAMETER, TensorKind.OUTPUT) or (
            t in loaded_outside
        )

    reads = {t for v in ops for t in g.operators[v].inputs if t in tracked}
    made_in = {t for v in ops for t in g.operators[v].outputs if t in tracked}
    needed = reads | set(exit_)
    sizes: dict[str, int] = {}
    inputs: list[str] = []
    pre_in: list[str] = []
    pre_out: list[str] = []
    for t in sorted(entry):
        if t not in needed or t in made_in:
            continue
        (pre_in if on_host_before(t) else pre_out).append(t)
    for t in sorted(needed - made_in - set(pre_out) - set(pre_in)):
        inputs.append(t)
    outputs: list[str] = []
    for t in sorted(made_in):
        if g.tensors[t].kind is TensorKind.OUTPUT or t in loaded_after:
            outputs.append(t)
    for t in sorted(set(pre_out) & loaded_after):
        outputs.append(t)  # cannot happen (a reloaded tensor is stored when made); kept safe
    for t in needed | made_in:
        sizes[t] = g.tensors[t].size

    operators = [Operator(PRE, "DncEntry", tuple(pre_in), (*pre_out, _TOKEN))]
    sizes[_TOKEN] = 0
    succ_in = {v: [s for s in g.dag.successors(v) if s in inside] for v in ops}
    post_in = list(sorted(exit_))
    chain = [v for v in ops if v in frozen]
    after = {u: f"__dnc_chain{k}" for k, u in enumerate(chain[:-1])}
    before = {w: after[u] for u, w in itertools.pairwise(chain)}
    for tok in after.values():
        sizes[tok] = 0
    for i, v in enumerate(ops):
        op = g.operators[v]
        ins = [t for t in op.inputs if t in tracked]
        if not any(p in inside for p in g.dag.predecessors(v)):
            ins.append(_TOKEN)
        if v in before:
            ins.append(before[v])
        outs = list(op.outputs)
        if v in after:
            outs.append(after[v])
        if not succ_in[v]:
            done = f"__dnc_done{i}"
            outs.append(done)
            sizes[done] = 0
            post_in.append(done)
        operators.append(Operator(v, op.op_type, tuple(ins), tuple(outs)))
    operators.append(Operator(POST, "DncExit", tuple(post_in), ("__dnc_end",)))
    sizes["__dnc_end"] = 0
    sub = Graph(
        f"{g.name}[{a}:{b}]",
        operators,
        sizes,
        inputs=[*pre_in, *inputs],
        outputs=[*outputs, "__dnc_end"],
    )
    return Window(
        Problem(sub, problem.budget, Setting.ACTIVATIONS, problem.alignment),
        a,
        b,
        ops,
        entry,
        exit_,
    )


def window_plan(problem: Problem, sol: Solution, win: Window) -> Plan | None:
    """The incumbent's steps ``[a, b)`` as a plan of the window's problem (``pre`` at step
    0, ``post`` last; blocks clipped to the window, entry and exit blocks kept at their
    addresses), replayed; None if it does not replay (then the engines start without it).

    Given to the exact engine as its hint, so a re-solve starts from what the window
    already does and only has to improve on it."""
    sub = win.problem
    sg = sub.graph
    a, b, k = win.a, win.b, len(win.ops)
    order = [PRE, *win.ops, POST]
    last = k + 1
    blocks: list[Residency] = []
    for r in sol.blocks:
        if r.tensor not in sg.tensors or r.end < a or r.start >= b:
            continue
        start = 0 if r.start < a else r.start - a + 1
        end = last if r.end >= b else r.end - a + 1
        t = sg.tensors[r.tensor]
        made = sg.operators[t.producer] if t.producer is not None else None
        if start == 0 and r.tensor not in win.entry:
            start = 1
        if start == 0 and made is None and PRE not in t.consumers:
            start = 1  # a host tensor pre does not read: first loaded at its first use
        if end == last and POST not in t.consumers:
            end = k
        blocks.append(Residency(r.tensor, start, max(start, end), r.size, r.address))
    pos = {v: i for i, v in enumerate(order)}
    for t, tensor in sg.tensors.items():  # tokens: zero bytes from maker to last reader
        if tensor.size or t in win.entry or t in win.exit:
            continue
        if t in problem.graph.tensors:
            continue
        first = pos[tensor.producer] if tensor.producer is not None else None
        uses = [pos[c] for c in tensor.consumers]
        if first is None:
            first = min(uses, default=0)
        blocks.append(Residency(t, first, max([first, *uses]), 0, 0))
    try:
        plan = sub.new_plan("window", solver=None, options={})
        plan.status = Status.FEASIBLE
        plan.steps = timeline.plan_steps(sub, order, blocks)
        verify(sg, plan)
    except CosmaError as e:
        log.debug("dnc: window [%d, %d) incumbent not posed: %s", a, b, e)
        return None
    return plan


# --- stitching ----------------------------------------------------------------------------


def stitch(
    problem: Problem,
    sol: Solution,
    win: Window,
    sub: Plan,
    *,
    time_limit: float = 2.0,
    seed: int = 0,
) -> Solution | None:
    """The solution with window ``win`` replaced by the window plan ``sub``; None if the
    window's blocks cannot be placed around the blocks that keep their addresses."""
    g = problem.graph
    a, b = win.a, win.b
    new_ops = [v for v in sub.order if v not in (PRE, POST)]
    order = sol.order[:a] + new_ops + sol.order[b:]
    during, _, _ = timeline.plan_state(sub)
    # Steps outside the window keep the old blocks; tag each step with its block.
    tags: dict[str, dict[int, int]] = {}
    for k, r in enumerate(sol.blocks):
        for t in range(r.start, r.end + 1):
            if t < a or t >= b:
                tags.setdefault(r.tensor, {})[t] = k
    for s, v in enumerate(sub.order):
        if v in (PRE, POST):
            continue
        for t in during[s]:
            if t in g.tensors:
                tags.setdefault(t, {})[a + s - 1] = -1
    pos = {v: i for i, v in enumerate(order)}
    blocks: list[Residency] = []
    free: list[Residency] = []
    for t, steps in tags.items():
        tensor = g.tensors[t]
        uses = sorted(pos[c] for c in tensor.consumers)
        made = pos[tensor.producer] if tensor.producer is not None else None
        segments: list[list[int]] = []
        for st in sorted(steps):
            prev = segments[-1][-1] if segments else None
            same = prev == st - 1 and not (
                steps[prev] >= 0 and steps[st] >= 0 and steps[prev] != steps[st]
            )
            if same:
                segments[-1].append(st)
            else:
                segments.append([st])
        for seg in segments:
            pins = {sol.blocks[steps[st]].address for st in seg if steps[st] >= 0}
            pieces = [seg]
            if len(pins) > 1:  # kept resident where the old plan moved it: split at cut b
                pieces = [[st for st in seg if st < b], [st for st in seg if st >= b]]
            for part in pieces:
                needed = [u for u in uses if part[0] <= u <= part[-1]]
                starts_made = made is not None and part[0] == made
                if not needed and not starts_made:
                    continue
                start = made if starts_made else needed[0]
                end = max([start, *needed])
                r = Residency(t, start, end, aligned(tensor.size, problem.alignment))
                old = [steps[st] for st in part if steps[st] >= 0]
                if old:
                    r.address = sol.blocks[old[0]].address
                    blocks.append(r)
                else:
                    free.append(r)
    if not _place(blocks, free, problem, a, b, time_limit=time_limit, seed=seed):
        return None
    blocks.extend(free)
    return Solution(order, blocks, cost_of(problem, order, blocks))


def _place(
    kept: list[Residency],
    free: list[Residency],
    problem: Problem,
    a: int,
    b: int,
    *,
    time_limit: float,
    seed: int,
) -> bool:
    """Addresses for the window's new blocks. First around every other block where it is;
    if that fails, blocks that live entirely within a widening neighbourhood of the window
    are placed again too (their old addresses are only kept if they fit)."""
    n = max([r.end for r in (*kept, *free)], default=0) + 1
    t0 = time.perf_counter()
    for widen in dict.fromkeys([0, b - a, 4 * (b - a), n]):
        lo, hi = a - widen, b + widen
        movable = [r for r in kept if widen and r.start >= lo and r.end < hi]
        fixed = [r for r in kept if not (widen and r.start >= lo and r.end < hi)]
        old = [r.address for r in movable]
        left = time_limit - (time.perf_counter() - t0)
        if _place_around(
            fixed, free + movable, problem, lo, hi, time_limit=max(0.1, left), seed=seed
        ):
            return True
        for r, addr in zip(movable, old, strict=True):
            r.address = addr
        if left <= 0.1:
            break
    return False


def _place_around(
    fixed: list[Residency],
    free: list[Residency],
    problem: Problem,
    a: int,
    b: int,
    *,
    time_limit: float,
    seed: int,
) -> bool:
    """Give ``free`` blocks (inside steps ``[a, b)``) addresses around the ``fixed`` ones;
    False if fixed blocks collide or no placement is found."""
    S, A = problem.budget, problem.alignment
    lo = min([r.start for r in free], default=a)
    hi = max([r.end for r in free], default=b)
    near = [r for r in fixed if r.start <= hi and r.end >= lo and r.size]
    near.sort(key=lambda r: (r.start, r.address))
    for i, r in enumerate(near):  # fixed blocks that grew into the window may collide
        for q in near[i + 1 :]:
            if q.start > r.end:
                break
            if r.address < q.address + q.size and q.address < r.address + r.size:
                return False
    placed = list(near)
    for r in sorted(free, key=lambda r: (-r.size, r.start, r.tensor)):
        if r.size == 0:
            r.address = 0
            continue
        busy = sorted((p.address, p.size) for p in placed if p.start <= r.end and r.start <= p.end)
        best = None
        cur = 0
        for addr, sz in [*busy, (S, 0)]:
            start = aligned(cur, A)
            gap = addr - start
            if gap >= r.size and (best is None or gap < best[0]):
                best = (gap, start)
            cur = max(cur, addr + sz)
        if best is None:
            return _place_cp_sat(near, free, S, A, time_limit, seed)
        r.address = best[1]
        placed.append(r)
    return True


def _place_cp_sat(
    fixed: list[Residency], free: list[Residency], S: int, A: int, time_limit: float, seed: int
) -> bool:
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    xs, ys, slot = [], [], {}
    for r in fixed:
        xs.append(m.new_fixed_size_interval_var(r.start, r.end - r.start + 1, ""))
        ys.append(m.new_fixed_size_interval_var(r.address, r.size, ""))
    for k, r in enumerate(free):
        if r.size == 0:
            continue
        slots = (S - r.size) // A
        if slots < 0:
            return False
        slot[k] = m.new_int_var(0, slots, f"slot[{r.tensor},{r.start}]")
        xs.append(m.new_fixed_size_interval_var(r.start, r.end - r.start + 1, ""))
        ys.append(m.new_fixed_size_interval_var(slot[k] * A, r.size, ""))
    m.add_no_overlap_2d(xs, ys)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return False
    for k, r in enumerate(free):
        r.address = solver.value(slot[k]) * A if k in slot else 0
    return True


# --- a lower bound for the whole graph ------------------------------------------------------


def _must_live(problem: Problem) -> tuple[list[str], dict[str, int], dict[str, int], dict]:
    """For each tracked tensor of non-zero size, the bitset (over a topological order) of
    the operators it is must-live at (see :func:`spill_bound`), and ``c(a)``."""
    g = problem.graph
    order = g.topological_order()
    idx = {v: i for i, v in enumerate(order)}
    n = len(order)
    anc: list[int] = [0] * n
    for v in order:
        m = 0
        for p in g.dag.predecessors(v):
            m |= anc[idx[p]] | (1 << idx[p])
        anc[idx[v]] = m
    desc: list[int] = [0] * n
    for v in reversed(order):
        m = 0
        for s in g.dag.successors(v):
            m |= desc[idx[s]] | (1 << idx[s])
        desc[idx[v]] = m
    both: dict[str, int] = {}
    cost: dict[str, int] = {}
    for t in g.tracked(problem.setting):
        tensor = g.tensors[t]
        if tensor.size == 0:
            continue
        if tensor.producer is not None:
            before = desc[idx[tensor.producer]]
        else:
            before = 0
            for c in tensor.consumers:
                before |= desc[idx[c]]
        after = 0
        for c in tensor.consumers:
            after |= anc[idx[c]]
        mask = before & after
        for c in tensor.consumers:
            mask &= ~(1 << idx[c])
        if tensor.producer is not None:
            mask &= ~(1 << idx[tensor.producer])
        if mask:
            both[t] = mask
            cost[t] = tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1)
    return order, idx, both, cost


def spill_bound(
    problem: Problem, *, time_limit: float = 10.0, solver: str | None = None
) -> tuple[int, dict]:
    """A lower bound on the non-compulsory traffic of every plan, whatever its order.

    *Must-live tensors.* Call a tracked tensor ``a`` must-live at operator ``v`` (not one of
    ``v``'s operands) when in every schedule it exists before ``v`` runs and is read after:
    its producer is a strict ancestor of ``v`` (for a graph input or parameter, one of its
    consumers is), and one of its consumers is a strict descendant of ``v``. Let
    ``ML(v)`` be that set and ``E(v) = size(operands of v) + size(ML(v)) - S`` (aligned
    sizes).

    *Claim.* If ``a`` in ``ML(v)`` is not resident while ``v`` runs, the plan pays at least
    ``c(a) = size(a)`` for a load, plus ``size(a)`` for a store if ``a`` is an activation
    that is not a graph output. *Proof.* A consumer of ``a`` runs after ``v`` and needs
    ``a`` resident, so ``a`` becomes resident between the two; it cannot be created then
    (its producer ran before ``v``), so it is loaded. That load is not compulsory: a graph
    input or parameter was already loaded for the consumer that ran before ``v``. A load of
    an activation needs a host copy, which only a store makes; a graph output's store is
    compulsory, any other activation's is not. Different tensors' loads and stores are
    different events.

    *Covering relaxation.* Let ``y(a) = 1`` if ``a`` is not resident at some operator where
    it is must-live. While ``v`` runs, its operands and the resident part of ``ML(v)`` fit
    in ``S``, so ``sum_{a in ML(v)} size(a) y(a) >= E(v)``; and the plan pays at least
    ``sum_a c(a) y(a)``. The minimum of that covering program (solved as a small MILP; the
    solver's proven bound is used when it stops early, and the best single-operator
    fractional cover is a floor) is therefore a lower bound on every plan's non-compulsory
    traffic. Returns the bound and a few statistics.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> spill_bound(Problem(g, 16))[0]  # at c: q, r and must-live p need 20 > 16: spill p
    20
    """
    g = problem.graph
    S = problem.budget
    order, idx, both, cost = _must_live(problem)
    asize = {t: aligned(g.tensors[t].size, problem.alignment) for t in g.tracked(problem.setting)}
    n = len(order)
    members: list[list[str]] = [[] for _ in range(n)]
    for t, mask in both.items():
        while mask:
            low = mask & -mask
            members[low.bit_length() - 1].append(t)
            mask ^= low
    rows: list[tuple[int, list[str]]] = []
    for v in order:
        i = idx[v]
        excess = sum(asize[t] for t in g.operands(v, problem.setting)) - S
        excess += sum(asize[t] for t in members[i])
        if excess > 0:
            rows.append((excess, members[i]))
    stats: dict = {"rows": len(rows)}
    if not rows:
        return 0, stats
    # Floor: the best single row's fractional cover (cheapest bytes per covered byte first).
    floor = 0
    for excess, ts in rows:
        need, paid = excess, 0.0
        for t in sorted(ts, key=lambda t: (cost[t] / asize[t], t)):
            take = min(need, asize[t])
            paid += cost[t] * take / asize[t]
            need -= take
            if need <= 0:
                break
        floor = max(floor, math.ceil(paid - 1e-9))
    stats["single_operator"] = floor
    used = sorted({t for _, ts in rows for t in ts})
    unit = math.gcd(*(cost[t] for t in used))
    prob = pulp.LpProblem("spill_cover", pulp.LpMinimize)
    y = {t: _var(prob, f"y{k}", cat=pulp.LpBinary) for k, t in enumerate(used)}
    prob += pulp.lpSum((cost[t] // unit) * y[t] for t in used)
    seen: set[tuple[int, tuple[str, ...]]] = set()
    for k, (excess, ts) in enumerate(rows):
        key = (excess, tuple(ts))
        if key in seen:
            continue
        seen.add(key)
        prob += pulp.lpSum(asize[t] * y[t] for t in ts) >= excess, f"op{k}"
    name = solver or _default_solver()
    out = backends.backend(name).solve(
        prob, time_limit=max(0.5, time_limit), threads=1, integral_gap=0.999
    )
    stats["cover_status"] = out.status
    best = floor
    if out.status == backends.OPTIMAL and out.objective is not None:
        best = max(best, round(out.objective) * unit)
    elif out.bound is not None:
        best = max(best, math.ceil(out.bound - 1e-6) * unit)
    stats["cover"] = best
    return best, stats


def _across(lv, cand: list[int], order: Sequence[str]) -> list[int]:
    """Per operator (liveness index), bytes of candidate tensors live across it in
    ``order``, its own operands left out."""
    pos = [0] * lv.n
    for i, v in enumerate(order):
        pos[lv.index[v]] = i
    n = lv.n
    delta = [0] * (n + 1)
    for t in cand:
        first, last = pos[lv.producer[t]], max(pos[c] for c in lv.consumers[t])
        if last > first + 1:
            delta[first + 1] += lv.size[t]
            delta[last] -= lv.size[t]
    at, cur = [0] * n, 0
    for i in range(n):
        cur += delta[i]
        at[i] = cur
    out = [0] * n
    for v in range(n):
        own = sum(
            lv.size[t]
            for t in set(lv.reads[v])
            if t in cand and pos[lv.producer[t]] < pos[v] < max(pos[c] for c in lv.consumers[t])
        )
        out[v] = at[pos[v]] - own
    return out


def _cut_rows(
    problem: Problem,
    until: float = math.inf,
    orders: Sequence[Sequence[str]] = (),
    exclude: Collection[str] = (),
) -> tuple[list[tuple], dict]:
    """The operators where no downset of the graph lets the tensors live across fit (see
    :func:`cut_bound`): per row ``(v, cap, local, free)`` in liveness indices. Stops
    looking at ``until`` (``time.perf_counter()``): fewer rows, still a relaxation."""
    import networkx as nx

    from cosma.liveness import liveness

    g = problem.graph
    lv = liveness(g, setting=problem.setting, alignment=problem.alignment)
    anc, desc = lv.reach()
    n = lv.n
    # Candidate tensors: made by an operator (activations and graph outputs), non-empty, read.
    cand = [
        t
        for t in range(len(lv.tensors))
        if lv.producer[t] >= 0
        and lv.size[t] > 0
        and lv.consumers[t]
        and g.tensors[lv.tensors[t]].kind in (TensorKind.ACTIVATION, TensorKind.OUTPUT)
        and lv.tensors[t] not in exclude
    ]
    cset = set(cand)
    # An order in which everything live across v fits shows no row is needed at v.
    easy = [False] * n
    for order in [lv.ops, *orders]:
        if sorted(order) != sorted(lv.ops):
            continue
        for v, live in enumerate(_across(lv, cset, order)):
            operands = set(lv.reads[v]) | set(lv.writes[v])
            if live + sum(lv.size[t] for t in operands) <= problem.budget:
                easy[v] = True
    rows: list[tuple] = []
    flows = 0
    for v in range(n):
        if easy[v]:
            continue
        if time.perf_counter() > until:
            break
        operands = set(lv.reads[v]) | set(lv.writes[v])
        cap = problem.budget - sum(lv.size[t] for t in operands)
        before, after = anc[v], desc[v] | (1 << v)
        local = [
            t
            for t in cand
            if t not in operands
            and not (after >> lv.producer[t]) & 1
            and lv.consumer_mask[t] & ~before
        ]
        if sum(lv.size[t] for t in local) <= cap:
            continue  # everything that could be live across v fits: nothing forced
        free = [u for u in range(n) if not (before >> u) & 1 and not (after >> u) & 1]

        def node(u: int, before: int = before, after: int = after) -> object:
            return "s" if (before >> u) & 1 else "k" if (after >> u) & 1 else u

        flow = nx.DiGraph()
        flow.add_nodes_from(["s", "k"])
        for t in local:
            flow.add_edge(node(lv.producer[t]), ("t", t), capacity=lv.size[t])
            for c in lv.consumers[t]:
                flow.add_edge(("t", t), node(c))  # no capacity: infinite
        for u in free:
            for p in lv.preds[u]:
                flow.add_edge(u, node(p))  # u before v needs its inputs before v
        flows += 1
        try:
            least = nx.minimum_cut_value(flow, "s", "k")
        except nx.NetworkXUnbounded:  # cannot happen (v's own side is never forced)
            least = math.inf
        if least > cap:
            rows.append((v, cap, local, free))
    return rows, {"cut_rows": len(rows), "cut_flows": flows}


def cut_bound(
    problem: Problem,
    *,
    time_limit: float = 10.0,
    solver: str | None = None,
    orders: Sequence[Sequence[str]] = (),
    exclude: Collection[str] = (),
    cuts: Sequence[Collection[str]] = (),
    rows: tuple | None = None,
) -> tuple[int, dict]:
    """A lower bound on the non-compulsory traffic of every plan, whatever its order, from
    the tensors that must be live across each operator in *some* cut of the graph.

    *Live across.* In a plan, let ``D(v)`` be the operators that run before ``v``: a downset
    of the graph holding every ancestor of ``v`` and no descendant. A tensor ``t`` made by
    an operator (not one of ``v``'s operands) is live across ``v`` when its producer is in
    ``D(v)`` and one of its readers is not (that reader runs after ``v``).

    *Claim.* If ``t`` is live across ``v`` and not resident while ``v`` runs, the plan pays
    at least ``c(t)``: ``size(t)`` for a load, plus ``size(t)`` for a store if ``t`` is not
    a graph output. *Proof.* The later reader needs ``t`` resident; it cannot be created
    again (its producer ran), so it is loaded, and a load needs a host copy, which only a
    store makes (compulsory only for graph outputs). Events of different tensors differ.

    *Relaxation.* Let ``y(t) = 1`` if ``t`` is not resident at some operator it is live
    across. For each ``v``: variables ``x(u)`` in [0, 1] for the operators neither ancestor
    nor descendant of ``v`` (1 for ancestors, 0 for ``v`` and its descendants) with
    ``x(u) <= x(p)`` for each predecessor ``p`` of ``u`` (a downset), and ``r(t) >= x(p_t)
    - x(c) - y(t)`` for each reader ``c`` of ``t``, ``r(t) >= 0``; then ``sum size(t) r(t)
    <= S - size(operands of v)`` (the tensors live across ``v`` and not paid for are
    resident beside ``v``'s operands; aligned sizes). Every plan gives a solution of cost at
    most its traffic (``x`` = its ``D(v)``, ``y`` as defined), so the minimum of ``sum c(t)
    y(t)`` (``y`` binary) is a lower bound; the solver's proven bound is used when it stops
    early. Rows are written only for operators where no downset lets everything fit (a
    maximum-flow test, skipped where one of ``orders`` fits); leaving rows out only relaxes
    further. Moves change nothing (a
    tensor moved before ``v`` is resident while ``v`` runs); recomputation is not part of
    the problem this bounds. It includes :func:`spill_bound`'s must-live tensors (live
    across ``v`` in every downset).

    With ``exclude``, those tensors are left out of the rows (as if free): the result then
    bounds the traffic of every plan on the other tensors only, and can be added to a
    bound on the excluded ones' traffic (dropping a tensor from the rows only relaxes).

    ``cuts``: extra rows ``sum_{t in C} y(t) >= 1``, each valid for every plan (e.g. from
    :func:`cosma.solvers.spillsets.window_bound`); ``y`` of a graph input or parameter
    (cost ``size``) means the same (not resident at some operator between two of its
    reads: the later read loads it again, and only its first load is compulsory). An
    entry ``(t, k)`` of a cut stands for ``y(t, k)``: at least ``k`` loads of ``t`` each
    follow an operator where ``t`` was live across and not resident (the first load after
    such an operator; ``y(t, 1) = y(t)``, ``y(t, k) <= y(t, k - 1)``); each ``y(t, k)``
    with ``k >= 2`` costs ``size(t)`` more (those are non-compulsory loads besides the
    first one counted in ``c(t)``). ``rows``: what :func:`_cut_rows` returned for this
    problem and ``orders`` (saves finding them again).

    Returns the bound and statistics, among them ``cut_spilled``: the tensors with
    ``y = 1`` in the relaxation's solution (a hint of what a good plan spills).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> cut_bound(Problem(g, 16))[0]  # at c: q, r and p (live across c) need 20 > 16
    20
    """
    from cosma.liveness import liveness

    t0 = time.perf_counter()
    if rows is None or exclude:
        rows, stats = _cut_rows(problem, t0 + 0.7 * time_limit, orders, set(exclude))
    else:  # rows already found by _cut_rows for this problem (and these orders)
        rows, stats = rows[0], dict(rows[1])
    stats["cut_spilled"] = []
    g = problem.graph
    lv = liveness(g, setting=problem.setting, alignment=problem.alignment)
    hits = []  # (tensor index, k): the tensor is loaded again at least k times
    for c in cuts:
        pairs = [(t, 1) if isinstance(t, str) else (t[0], t[1]) for t in c]
        if not {t for t, _ in pairs} & set(exclude):  # their traffic is counted elsewhere
            hits.append([(lv.tensor_index[t], k) for t, k in pairs if t in lv.tensor_index])
    if not rows and not hits:
        stats["cut"] = 0
        return 0, stats
    anc, _ = lv.reach()
    used = sorted({t for row in rows for t in row[2]} | {t for c in hits for t, _ in c})
    deep = {}
    for c in hits:
        for t, k in c:
            deep[t] = max(deep.get(t, 1), k)

    def cost(t: int) -> int:
        real = g.tensors[lv.tensors[t]]
        return real.size * (2 if real.kind is TensorKind.ACTIVATION else 1)

    unit = math.gcd(*(cost(t) for t in used), *(g.tensors[lv.tensors[t]].size for t in deep))
    prob = pulp.LpProblem("cut_cover", pulp.LpMinimize)
    y = {t: _var(prob, f"y{t}", cat=pulp.LpBinary) for t in used}
    more = {
        (t, k): _var(prob, f"y{t}_{k}", cat=pulp.LpBinary)
        for t in sorted(deep)
        for k in range(2, deep[t] + 1)
    }
    level = {**{(t, 1): y[t] for t in used}, **more}
    prob += pulp.lpSum((cost(t) // unit) * y[t] for t in used) + pulp.lpSum(
        (g.tensors[lv.tensors[t]].size // unit) * var for (t, _), var in more.items()
    )
    for (t, k), var in more.items():
        prob += var <= level[t, k - 1]
    for k, (v, cap, local, free) in enumerate(rows):
        before = anc[v]  # v and its descendants are 0, ancestors 1, the rest free
        x = {u: _var(prob, f"x{k}_{u}", lowBound=0, upBound=1) for u in free}

        def X(u: int, x: dict = x, before: int = before) -> object:
            return 1 if (before >> u) & 1 else x.get(u, 0)

        for u in free:
            for p in lv.preds[u]:
                if not (before >> p) & 1:
                    prob += x[u] <= X(p)
        terms = []
        for t in local:
            r = _var(prob, f"r{k}_{t}", lowBound=0)
            for c in lv.consumers[t]:
                lhs = X(lv.producer[t])
                rhs = X(c)
                if isinstance(lhs, int) and isinstance(rhs, int) and lhs - rhs <= 0:
                    continue
                prob += r >= lhs - rhs - y[t]
            terms.append(lv.size[t] * r)
        prob += pulp.lpSum(terms) <= cap, f"v{v}"
    for k, c in enumerate(hits):
        prob += pulp.lpSum(level[t, j] for t, j in c) >= 1, f"hit{k}"
    name = solver or _default_solver()
    left = max(0.5, time_limit - (time.perf_counter() - t0))
    out = backends.backend(name).solve(prob, time_limit=left, threads=1, integral_gap=0.999)
    stats["cut_status"] = out.status
    best = 0
    if out.status == backends.OPTIMAL and out.objective is not None:
        best = round(out.objective) * unit
    elif out.bound is not None:
        best = max(0, math.ceil(out.bound - 1e-6) * unit)
    if out.values:
        stats["cut_spilled"] = sorted(
            lv.tensors[t] for t in used if out.values.get(y[t].name, 0) > 0.5
        )
    stats["cut"] = best
    return best, stats


def spill_order(
    problem: Problem, spilled: Sequence[str], *, time_limit: float | Deadline = 10.0
) -> list[str]:
    """A schedule for a plan that spills ``spilled``: the minimum-peak order of the graph in
    which each of those tensors is stored when made and its readers read a copy from host
    (so it is not live between its producer and its readers). With the tensors
    :func:`cut_bound` chose, this is an order in which the bound's spills may be enough.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> spill_order(Problem(g, 16), ["p"])
    ['a', 'b', 'c', 'd']
    """
    from cosma.schedule import min_peak_order

    g = problem.graph
    tracked = set(g.tracked(problem.setting))
    away = set(spilled) & tracked
    host = {t: f"{t}@host" for t in away}
    sizes: dict[str, int] = {}
    operators = []
    for v in g.file_order:
        op = g.operators[v]
        ins = [host.get(t, t) for t in op.inputs if t in tracked]
        ins += [f"{t}@made" for t in op.inputs if t in host]  # keeps the order topological
        outs = [*op.outputs, *(f"{t}@made" for t in op.outputs if t in host)]
        operators.append(Operator(v, op.op_type, tuple(ins), tuple(outs)))
        for t in (*op.inputs, *op.outputs):
            if t in tracked or t in op.outputs:
                sizes[t] = g.tensors[t].size
    for t, h in host.items():
        sizes[h] = g.tensors[t].size
        sizes[f"{t}@made"] = 0
    inputs = [t for t in tracked if g.tensors[t].producer is None and t in sizes]
    outputs = [*g.outputs, *sorted(away)]
    sub = Graph(
        f"{g.name}-spilled", operators, sizes, inputs=[*inputs, *host.values()], outputs=outputs
    )
    res = min_peak_order(sub, alignment=problem.alignment, time_limit=time_limit)
    return list(res.order)


def spill_plan(
    problem: Problem,
    order: Sequence[str],
    spilled: Sequence[str],
    *,
    time_limit: float = 5.0,
    seed: int = 0,
    moves: bool = True,
) -> Solution | None:
    """A plan for ``order``: each tensor of ``spilled`` is stored when made and loaded back
    for its first reader; every other tensor stays from creation (or first use) to last
    use. While some step holds more than the budget, a tensor leaves between two of its
    uses (the one that costs least per byte and over-budget step freed). Then the blocks
    are placed (:func:`~cosma.solvers.placement.place`); if they do not fit, more is taken
    out (to 98, 95, 90 % of the budget) and placement tried again; with ``moves``, blocks
    that fit the budget step by step but not at fixed addresses are also placed with moves
    (:func:`~cosma.solvers.placement.place_with_moves`), and the cheaper plan is kept.
    None if nothing fits within ``time_limit``.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> spill_plan(Problem(g, 16), ["a", "b", "c", "d"], []).cost  # p leaves at c: 2 x 10
    20
    """
    from cosma.solvers.placement import place

    until = time.perf_counter() + time_limit
    g = problem.graph
    S = problem.budget
    pos = {v: i for i, v in enumerate(order)}
    n = len(order)
    # Per tensor: its anchor steps (creation, uses) and the gaps between them it stays for.
    anchors: dict[str, list[int]] = {}
    stays: dict[str, set[int]] = {}  # index k: resident between anchors k and k + 1
    stored: set[str] = set()
    for t in g.tracked(problem.setting):
        tensor = g.tensors[t]
        uses = sorted({pos[c] for c in tensor.consumers})
        made = pos[tensor.producer] if tensor.producer is not None else None
        points = sorted({*uses, *([made] if made is not None else [])})
        if not points:
            continue
        anchors[t] = points
        stays[t] = set(range(len(points) - 1))
        if t in spilled and made is not None and len(points) > 1:
            stays[t].discard(0)
            stored.add(t)
    size = {t: aligned(g.tensors[t].size, problem.alignment) for t in anchors}
    load = [0] * n
    for t, pts in anchors.items():
        for p in pts:
            load[p] += size[t]
        for k in stays[t]:
            for i in range(pts[k] + 1, pts[k + 1]):
                load[i] += size[t]
    found: list[Solution] = []
    for target in (S, S * 0.98, S * 0.95, S * 0.9):
        if time.perf_counter() > until:
            break
        _spill_until(anchors, stays, stored, size, load, target, g)
        rs = _blocks_of_stays(anchors, stays, size)
        left = until - time.perf_counter()
        if left <= 0.05:
            break
        if place(rs, S, alignment=problem.alignment, time_limit=min(left, 2.0), seed=seed).placed:
            found.append(Solution(list(order), rs, cost_of(problem, order, rs)))
            break
        if moves and max(load) <= S:
            # No fixed addresses at (near) zero slack: blocks may move between two steps
            # (a load each, and a store for an activation not stored yet).
            moved = _place_moving(problem, rs, stored, min(until - time.perf_counter(), 5.0), seed)
            if moved is not None:
                moved.order = list(order)
                moved.cost = cost_of(problem, order, moved.blocks)
                found.append(moved)
    return min(found, key=lambda s: s.cost) if found else None


def _place_moving(
    problem: Problem, rs: list[Residency], stored: set[str], time_limit: float, seed: int
) -> Solution | None:
    """Blocks placed with moves allowed (:func:`~cosma.solvers.placement.place_with_moves`),
    as a solution without its order (the caller sets it); None if none is found in time."""
    from cosma.solvers.placement import place_with_moves

    if time_limit <= 0.1:
        return None
    g = problem.graph
    load_cost = {r.tensor: g.tensors[r.tensor].size for r in rs}
    store_cost = {
        t: g.tensors[t].size
        for t in load_cost
        if g.tensors[t].kind is TensorKind.ACTIVATION and t not in stored
    }
    out = place_with_moves(
        [Residency(r.tensor, r.start, r.end, r.size) for r in rs],
        problem.budget,
        alignment=problem.alignment,
        load_cost=load_cost,
        store_cost=store_cost,
        time_limit=time_limit,
        seed=seed,
    )
    if out.blocks is None:
        return None
    return Solution([], out.blocks, 0)


def _spill_until(anchors, stays, stored, size, load, target, g) -> None:
    """Take tensors out between two anchors until no step holds more than ``target``."""
    n = len(load)
    for _ in range(4 * n):
        over = {i for i in range(n) if load[i] > target}
        if not over:
            break
        best, score = None, math.inf
        for t, pts in anchors.items():
            if not size[t]:
                continue
            kind = g.tensors[t].kind
            for k in stays[t]:
                hits = sum(1 for i in range(pts[k] + 1, pts[k + 1]) if i in over)
                if not hits:
                    continue
                paid = size[t] * (2 if kind is TensorKind.ACTIVATION and t not in stored else 1)
                if paid / (size[t] * hits) < score:
                    best, score = (t, k), paid / (size[t] * hits)
        if best is None:
            return  # only operands are left at the steps over the target
        t, k = best
        stays[t].discard(k)
        stored.add(t)
        for i in range(anchors[t][k] + 1, anchors[t][k + 1]):
            load[i] -= size[t]


def _blocks_of_stays(anchors, stays, size) -> list[Residency]:
    rs = []
    for t, pts in anchors.items():
        start = pts[0]
        for k in range(len(pts)):
            if k == len(pts) - 1 or k not in stays[t]:
                rs.append(Residency(t, start, pts[k], size[t]))
                if k + 1 < len(pts):
                    start = pts[k + 1]
    return rs


def relaxed_problem(problem: Problem, ops: Sequence[str], *, budget: int | None = None) -> Problem:
    """The problem restricted to the operators ``ops``: a relaxation of the whole problem.

    Tensors that ``ops`` read but do not make become graph inputs (on host from the start,
    first load free); tensors they make that other operators read, and graph outputs,
    become graph outputs (their store is free).

    *Claim.* The optimum of this problem is at most the non-compulsory traffic that any plan
    of the whole problem spends on the tensors ``ops`` touch. *Proof.* Keep the steps of the
    whole plan that run ``ops`` and, at each, the touched tensors resident there (same
    addresses): the order stays topological, capacity and overlaps still hold, and a
    tensor is resident at each step of ``ops`` that reads it. Within the kept steps a
    tensor kept resident stays at its address; each time it comes back at a kept step
    without having been resident at the previous kept step (or at another address), the
    whole plan loaded it in between: each such load in the restriction is a distinct load
    of the whole plan, except the first appearance of an outside tensor, which is free here
    (an input's first load). An activation made in ``ops`` and reloaded was stored by the
    whole plan; outputs' stores are free here. So the restricted plan is a plan of this
    problem that costs no more. Hence, for operator sets that share no tensor, the sum of
    the optima (or of proven lower bounds on them) is a lower bound for the whole problem.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> sub = relaxed_problem(Problem(g, 16), ["b", "c"])
    >>> sub.graph.inputs, sub.graph.outputs
    (['p'], ['r'])
    """
    g = problem.graph
    chosen = set(ops)
    tracked = set(g.tracked(problem.setting))
    sizes: dict[str, int] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    operators = []
    for v in g.file_order:
        if v not in chosen:
            continue
        op = g.operators[v]
        ins = tuple(t for t in op.inputs if t in tracked)
        operators.append(Operator(v, op.op_type, ins, op.outputs))
        for t in ins:
            sizes[t] = g.tensors[t].size
            if g.tensors[t].producer not in chosen:
                inputs.append(t)
        for t in op.outputs:
            sizes[t] = g.tensors[t].size
            tensor = g.tensors[t]
            if tensor.kind is TensorKind.OUTPUT or any(c not in chosen for c in tensor.consumers):
                outputs.append(t)
    sub = Graph(f"{g.name}-relaxed", operators, sizes, inputs=inputs, outputs=outputs)
    cap = problem.budget if budget is None else budget
    return Problem(sub, cap, Setting.ACTIVATIONS, problem.alignment)


def chunk_bound(
    problem: Problem,
    order: Sequence[str],
    windows: Sequence[tuple[int, int]],
    *,
    time_limit: float = 30.0,
    seed: int = 0,
) -> tuple[int, dict]:
    """A lower bound from exact solves of windows of ``order`` (see
    :func:`relaxed_problem`), with the tensors that live through a window.

    *Pass-through tensors.* Let ``PT`` be tracked tensors no operator of window ``H``
    touches but that are must-live (see :func:`spill_bound`) at every operator of ``H``
    (at most the three costliest are used). In any plan, let ``Y`` be those of ``PT`` that
    are not resident at some operator of ``H``: they cost at least ``c(Y)``, and the others
    are resident at every step of ``H``, so the plan restricted to ``H`` fits in
    ``S - size(PT - Y)`` and costs at least the relaxed optimum at that budget. So the
    window's traffic (on its own tensors and ``PT``) is at least
    ``min over Y of c(Y) + OPT(H, S - size(PT - Y))`` (an impossible budget excludes that
    ``Y``).

    Each window ``[a, b)`` is solved by CP-SAT (order free, addresses included) within its
    share of ``time_limit``, in the order given; a stopped solve contributes its proven
    bound. The result is the largest total over windows that pairwise share no tensor
    (their own or pass-through; a small set-packing MILP, its answer checked). The total
    bounds the traffic of a plan on the tensors those windows touch (``chunk_touched`` in
    the statistics), so a bound on the traffic of the other tensors (e.g.
    :func:`cut_bound` with ``exclude``) may be added to it.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> chunk_bound(Problem(g, 16), ["a", "b", "c", "d"], [(0, 4)], time_limit=10)[0]
    20
    >>> chunk_bound(Problem(g, 16), ["a", "b", "c", "d"], [(2, 3)], time_limit=10)[0]
    20
    """
    from itertools import combinations

    from cosma.solvers.cpsat import cpsat

    t0 = time.perf_counter()
    g = problem.graph
    ranked = list(dict.fromkeys(windows))
    _, idx, both, cost = _must_live(problem)
    asize = {t: aligned(g.tensors[t].size, problem.alignment) for t in both}
    touched: dict[tuple[int, int], set[str]] = {}
    found: dict[tuple[int, int], int] = {}
    for k, (a, b) in enumerate(ranked):
        left = time_limit - (time.perf_counter() - t0)
        if left < 0.5:
            break
        ops = order[a:b]
        own = {t for v in ops for t in (*g.operators[v].inputs, *g.operators[v].outputs)}
        mask = 0
        for v in ops:
            mask |= 1 << idx[v]
        through = sorted(
            (t for t, m in both.items() if m & mask == mask and t not in own),
            key=lambda t: (-cost[t], t),
        )[:3]
        until = time.perf_counter() + min(left, 2 * max(0.5, left / (len(ranked) - k)))
        best: float | None = None
        cases = [set(c) for r in range(len(through) + 1) for c in combinations(through, r)]
        for y in sorted(cases, key=lambda y: sum(cost[t] for t in y)):
            paid = sum(cost[t] for t in y)
            if best is not None and paid >= best:
                continue
            cap = problem.budget - sum(asize[t] for t in through if t not in y)
            if cap < 0:
                continue  # this Y cannot happen: the tensors kept through exceed the budget
            rest = until - time.perf_counter()
            if rest < 0.2:
                best = None  # not every case was bounded: no bound from this window
                break
            plan = cpsat(
                relaxed_problem(problem, ops, budget=cap), time_limit=rest, threads=1, seed=seed
            )
            if plan.status is Status.INFEASIBLE:
                continue  # this Y cannot happen
            value = paid + (plan.lower_bound or 0)
            best = value if best is None else min(best, value)
        if best:
            found[a, b] = int(best)
            touched[a, b] = own | set(through)
    stats = {"bound_windows": len(ranked), "bound_windows_proven": len(found)}
    if not found:
        return 0, stats
    keys = sorted(found)
    prob = pulp.LpProblem("chunk_packing", pulp.LpMaximize)
    pick = {w: _var(prob, f"c{i}", cat=pulp.LpBinary) for i, w in enumerate(keys)}
    prob += pulp.lpSum(found[w] * pick[w] for w in keys)
    for i, u in enumerate(keys):
        for w in keys[i + 1 :]:
            if touched[u] & touched[w]:
                prob += pick[u] + pick[w] <= 1
    out = backends.backend(_default_solver()).solve(prob, time_limit=10.0, integral_gap=0.0)
    chosen = [w for w in keys if out.values.get(pick[w].name, 0) > 0.5]
    # Only a real packing counts (checked here, not taken from the solver).
    total, used = 0, []
    if not any(touched[u] & touched[w] for i, u in enumerate(chosen) for w in chosen[i + 1 :]):
        total, used = sum(found[w] for w in chosen), chosen
    top = max(keys, key=lambda w: found[w])
    if found[top] > total:
        total, used = found[top], [top]
    stats["chunk_bound"] = total
    # The tensors whose traffic the total counts: other bounds may add what the rest costs.
    stats["chunk_touched"] = sorted(set().union(*(touched[w] for w in used)))
    return total, stats


def _var(prob: pulp.LpProblem, name: str, **kw) -> pulp.LpVariable:
    """A variable of ``prob`` (PuLP >= 3.3 attaches it to the model; older ones cannot)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, **kw)
    return pulp.LpVariable(name, **kw)


def _default_solver() -> str:
    return "highs" if backends.backend("highs").available() else "cbc"


# --- cuts -----------------------------------------------------------------------------------


def crossing_bytes(problem: Problem, order: Sequence[str]) -> list[int]:
    """Bytes live across each cut of ``order``: entry ``i`` is what was made (or first read)
    before step ``i`` and is read at step ``i`` or later (entry 0 is 0)."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    n = len(order)
    delta = [0] * (n + 2)
    for t in g.tracked(problem.setting):
        tensor = g.tensors[t]
        uses = [pos[c] for c in tensor.consumers]
        if not uses:
            continue
        first = pos[tensor.producer] if tensor.producer is not None else min(uses)
        last = max(uses)
        if last > first:  # live across cuts first+1 .. last
            sz = aligned(tensor.size, problem.alignment)
            delta[first + 1] += sz
            delta[last + 1] -= sz
    out, cur = [], 0
    for i in range(n):
        cur += delta[i]
        out.append(cur)
    return out


def choose_cuts(problem: Problem, order: Sequence[str], piece_ops: int) -> list[int]:
    """Cut positions (``0 = c_0 < c_1 < ... < c_k = n``): near every ``piece_ops`` steps, at
    the cut with the fewest bytes live across within a quarter piece of the target."""
    n = len(order)
    if n <= piece_ops:
        return [0, n]
    cross = crossing_bytes(problem, order)
    pieces = max(1, round(n / piece_ops))
    cuts = [0]
    for k in range(1, pieces):
        target = round(k * n / pieces)
        slack = max(1, piece_ops // 4)
        lo, hi = max(cuts[-1] + 2, target - slack), min(n - 2, target + slack)
        if lo > hi:
            continue
        cuts.append(min(range(lo, hi + 1), key=lambda i: (cross[i], abs(i - target))))
    cuts.append(n)
    return cuts


# --- the method -----------------------------------------------------------------------------


@dataclass
class _Search:
    """The state of one run: the incumbent, the bound, the clock, counters."""

    problem: Problem
    sol: Solution
    bound: int
    deadline: float
    t0: float
    solver: str
    threads: int
    seed: int
    callback: Progress | None
    tried: int = 0
    accepted: int = 0
    phase: str = "start"
    kept: Solution | None = None
    hints: bool = True  # joint windows start from the incumbent's window plan
    seen: dict = field(default_factory=dict)  # windows tried: (incumbent, window) -> limit

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def done(self) -> bool:
        return self.left() < 1.0 or self.sol.cost <= self.bound

    def report(self, piece: int, pieces: int) -> None:
        sol = self.sol
        if self.kept is not None and self.kept.cost <= sol.cost:
            sol = self.kept  # another order is being tried: the incumbent is the kept one
        lower = min(self.bound, sol.cost)
        # Through cosma.progress (logged, and to the callback the caller installed), with
        # the phase and which piece of how many.
        report(
            "dnc",
            seconds=time.perf_counter() - self.t0,
            objective=sol.cost,
            bound=lower,
            phase=self.phase,
            callback=self.callback,
            piece=piece,
            pieces=pieces,
        )

    def sweep(
        self,
        windows: Sequence[tuple],
        *,
        joint: bool,
        limit: float,
        until: float,
        whole: bool = False,
    ) -> bool:
        """Re-solve each window ``(a, b)`` or ``(a, b, frozen)`` in turn; True if the
        incumbent improved. A window already tried on the same incumbent with at least
        this time limit is skipped (it would give the same answer). With ``whole``, a
        window starts only if its whole ``limit`` fits before ``until`` (a later phase
        tries it with its full time rather than this one with a fraction)."""
        improved = False
        for k, (a, b, *rest) in enumerate(windows, 1):
            if self.done() or time.perf_counter() > until:
                break
            if b - a < 2 or _window_cost(self.problem, self.sol, a, b) == 0:
                continue
            frozen = rest[0] if rest else frozenset()
            lim = min(limit, until - time.perf_counter())
            if lim < min(limit, 3.0) or (whole and lim < limit):
                break  # too little left of this sweep's time for a useful re-solve
            key = _window_key(self.sol, a, b, joint, frozen)
            if self.seen.get(key, -1.0) >= lim:
                continue
            self.seen[key] = lim
            self.tried += 1
            t = time.perf_counter()
            new = _improve(self, a, b, joint=joint, limit=lim, frozen=frozen)
            log.debug(
                "dnc: %s window [%d, %d) (%d fixed) in %.1f s at %.1f s: %s",
                self.phase,
                a,
                b,
                len(frozen),
                time.perf_counter() - t,
                t - self.t0,
                "-" if new is None else f"{self.sol.cost:,} -> {new.cost:,}",
            )
            if new is not None:
                self.sol, improved = new, True
                self.accepted += 1
                self.report(k, len(windows))
        return improved


def dnc(
    problem: Problem,
    *,
    time_limit: float | Deadline | None = 120.0,
    solver: str | None = None,
    threads: int = 1,
    seed: int = 0,
    piece_ops: int = 120,
    window_ops: int = 16,
    bound_ops: int = 32,
    warm_start: Sequence[Plan] = (),
) -> Plan:
    """Divide and conquer: the best baseline, improved piece by piece with exact solves and
    then by re-solving windows across the cuts until ``time_limit`` (wall clock, the whole
    call: seconds, or a shared :class:`~cosma.deadline.Deadline`; None means 120 s).

    - every order of the protocol's baselines (minimum-peak, file) is cut into pieces of
      about ``piece_ops`` operators, each re-solved exactly for its order with the boundary
      state carried in, then windows straddling the cuts likewise;
    - the best result is improved by windows of about ``window_ops`` operators whose order
      is left free (joint schedule and replacement), across the whole order, until the
      time limit.

    ``warm_start``: plans of the same graph to start from as well (e.g. the plan found at a
    smaller budget, which is also a plan at this one); each is replayed at this budget and
    skipped if it is not valid here. The result is never worse than any of them, nor than
    the baselines computed (the protocol's four and the extra orders' ones).

    Progress goes through :mod:`cosma.progress` (engine ``dnc``, with ``piece`` and
    ``pieces``) each time the incumbent or the bound improves; the engines it runs on pieces
    and windows report nothing (their figures are the windows', not the whole graph's).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> plan = dnc(Problem(g, 16), time_limit=10)
    >>> plan.status.value, plan.objective, plan.lower_bound
    ('optimal', 20, 20)
    """
    remaining = Deadline.of(time_limit).remaining()
    time_limit = 120.0 if math.isinf(remaining) else remaining
    t0 = time.perf_counter()
    # The engines may overrun their own limits a little, and the final plan is built and
    # replayed after the search: stop searching early enough for the call to end in time.
    deadline = t0 + time_limit - max(0.2, min(6.0, 0.05 * time_limit))
    name = solver or _default_solver()
    backends.backend(name)  # an unknown solver name fails here, before any work
    options = {
        "time_limit": time_limit,
        "solver": name,
        "threads": threads,
        "seed": seed,
        "piece_ops": piece_ops,
        "window_ops": window_ops,
        "bound_ops": bound_ops,
        "warm_start": len(warm_start),
    }
    plan = problem.new_plan("dnc", solver=name, options=options)
    why = problem.shortfall()
    if why:
        plan.status, plan.reason = Status.INFEASIBLE, why
        plan.solve_time = time.perf_counter() - t0
        return plan

    listener = current()
    with reporting(_quiet):  # the engines run on windows report nothing of their own
        return _search(
            problem,
            plan,
            options,
            t0,
            deadline,
            time_limit,
            (name, threads, seed),
            (piece_ops, window_ops, bound_ops),
            listener,
            list(warm_start),
        )


def _search(
    problem: Problem,
    plan: Plan,
    options: dict,
    t0: float,
    deadline: float,
    time_limit: float,
    engine: tuple[str, int, int],
    sizes: tuple[int, int, int],
    listener: Progress | None,
    warm: list[Plan],
) -> Plan:
    """The phases of :func:`dnc` after the checks."""
    name, threads, seed = engine
    piece_ops, window_ops, bound_ops = sizes
    g = problem.graph

    def left() -> float:
        return deadline - time.perf_counter()

    # 1. The protocol's baselines, as long as time allows (each order computed once).
    starts = [*_warm_starts(problem, warm), *_baselines(problem, time_limit, left)]
    if not starts:
        plan.reason = "time limit reached before any baseline finished"
        plan.solve_time = time.perf_counter() - t0
        return plan
    best = min(starts, key=lambda p: p.objective)
    stats: dict = {"baseline": best.objective, "baseline_method": best.method}
    # The bound from cuts (includes the must-live covering), and the order its spills suggest.
    bound = 0
    if best.objective > 0:
        bound, bound_stats = cut_bound(
            problem,
            time_limit=max(0.5, min(15.0, 0.1 * time_limit, left() / 4)),
            solver=name,
            orders=[p.order for p in starts],
        )
        stats |= {k: v for k, v in bound_stats.items() if k != "cut_spilled"}
        spilled = bound_stats["cut_spilled"]
        # The exact engines' no-solver floor (forced reloads, branches meeting full
        # operators, chains of them) is valid for every order too: the better one counts.
        floor = no_solver_floor(
            problem, until=time.perf_counter() + max(0.5, min(10.0, 0.05 * time_limit))
        )
        stats["no_solver_floor"] = floor
        bound = max(bound, floor)
        if best.objective > bound and left() > 0.6 * time_limit:
            # The order in which the bound's spills may be enough, and plans that spill
            # between uses for it and for the baselines' orders.
            guided = spill_order(problem, spilled, time_limit=min(15.0, 0.1 * time_limit))
            tries = [("spills", guided, spilled)]
            tries += [(p.method.split("-")[0], p.order, []) for p in starts]
            extra = [_baseline_of(problem, guided, "spills")]
            for label, seq, away in tries:
                if left() < 0.5 * time_limit:
                    break
                sol = spill_plan(
                    problem, seq, away, time_limit=min(5.0, 0.03 * time_limit), seed=seed
                )
                if sol is not None:
                    extra.append(to_plan(problem, sol, f"{label}-gaps", {}))
            starts += [p for p in extra if p is not None]
            best = min(starts, key=lambda p: p.objective)
        if best.objective > bound:
            # Spill sets with one order per window, their cuts added to the cut bound's
            # program (a fixed amount of search effort: the same bound under any load).
            from cosma.solvers.spillsets import window_bound

            more, window_stats = window_bound(
                problem,
                best.order,
                plans=[best],
                orders=[list(g.file_order), *(p.order for p in starts)],
                work=300_000,
                time_limit=max(0.5, min(15.0, 0.12 * time_limit, left() / 3)),
                solver=name,
            )
            stats |= {k: v for k, v in window_stats.items() if k != "window_values"}
            bound = max(bound, more)

    def solution(p: Plan) -> Solution:
        blocks = blocks_of(problem, p)
        return Solution(list(p.order), blocks, cost_of(problem, p.order, blocks))

    run = _Search(problem, solution(best), bound, deadline, t0, name, threads, seed, listener)
    run.report(0, 0)
    n = g.num_operators
    # 2. Each baseline's order in pieces, exactly for that order; the best one goes on.
    phase_end = t0 + 0.4 * time_limit
    cut_log: dict[str, list[int]] = {}
    # The best start first, then the order the bound's spills suggest, then the others.
    per_order: dict[tuple[str, ...], Plan] = {}
    for p in sorted(starts, key=lambda p: p.objective):
        per_order.setdefault(tuple(p.order), p)  # the best plan of each distinct order
    ranked = sorted(
        per_order.values(),
        key=lambda p: (p is not best, not p.method.startswith("spills"), p.objective),
    )
    # Starts far worse than the best rarely catch up within their share: at most twice
    # the best one's traffic (the best one always).
    ranked = [p for p in ranked if 0 < p.objective <= 2 * best.objective or p is best][:4]
    for k, p in enumerate(ranked):
        if run.done() or time.perf_counter() > phase_end:
            break
        # Each start gets an equal share of what is left of the phase.
        until = time.perf_counter() + (phase_end - time.perf_counter()) / (len(ranked) - k)
        own = solution(p)
        if own.cost == 0:
            continue
        keep, run.sol = run.sol, own
        run.kept = keep
        run.phase = f"pieces of {p.method.split('-')[0]} order"
        cuts = choose_cuts(problem, own.order, piece_ops)
        cut_log[p.method] = cuts[1:-1]
        pieces = list(itertools.pairwise(cuts))
        share = max(2.0, (until - time.perf_counter()) / max(1, len(pieces)))
        run.sweep(pieces, joint=False, limit=2 * share, until=until)
        half = piece_ops // 2
        across = [(max(0, c - half), min(n, c + half)) for c in cuts[1:-1]]
        run.sweep(across, joint=False, limit=2 * share, until=until)
        if keep.cost <= run.sol.cost:
            run.sol = keep
        run.kept = None
    stats["cuts"] = cut_log
    # 2b. Joint windows around the incumbent's spills before the bound's share of the
    #     time (they are where the plan improves most; phase 4 goes on from there).
    if not run.done():
        run.phase = "joint windows around spills (margin 4)"
        hot = _spill_windows(problem, run.sol, 4, max_ops=4 * window_ops, snap=True, dense=True)
        if hot:
            run.sweep(
                hot,
                joint=True,
                limit=max(3.0, 0.25 * max(b - a for a, b in hot)),
                until=t0 + 0.6 * time_limit,
                whole=True,
            )
    # 3. A bound from exact solves of relaxed windows: around the incumbent's spills, then
    #    chunks of the order where it has traffic. First spill sets with one order per
    #    window again, with more (deterministic) effort and the incumbent's order.
    spent = 0.0
    if not run.done():
        from cosma.solvers.spillsets import window_bound

        began = time.perf_counter()
        more, _ = window_bound(
            problem,
            run.sol.order,
            orders=[list(g.file_order), *(p.order for p in starts)],
            work=1_500_000,
            time_limit=max(0.5, min(0.2 * time_limit, run.left() / 3)),
            solver=name,
        )
        spent = time.perf_counter() - began
        stats["window_bound_late"] = more
        if more > run.bound:
            run.bound = more
            run.phase = "bound from spill sets"
            run.report(0, 0)
    if not run.done() and 0.25 * time_limit - spent > 2.0:
        sol = run.sol
        cuts = choose_cuts(problem, sol.order, bound_ops)
        chunks = [w for w in itertools.pairwise(cuts) if _window_cost(problem, sol, *w) > 0]
        candidates = [
            *_spill_windows(problem, sol, 2, max_ops=bound_ops),
            *_spill_windows(problem, sol, 6, max_ops=2 * bound_ops),
            *chunks,
        ]
        chunk, chunk_stats = chunk_bound(
            problem,
            sol.order,
            candidates,
            time_limit=min(0.25 * time_limit - spent, run.left() - 1.0),
            seed=seed,
        )
        touched = chunk_stats.pop("chunk_touched", [])
        stats |= chunk_stats
        if chunk and run.left() > 5.0:
            # The windows bound the traffic on the tensors they touch, the cut bound that
            # on all the others: the two add up.
            rest, _ = cut_bound(
                problem,
                time_limit=min(10.0, 0.1 * time_limit, run.left() / 4),
                solver=name,
                orders=[run.sol.order],
                exclude=touched,
            )
            stats["chunk_plus_cut"] = chunk + rest
            chunk += rest
        if chunk > run.bound:
            run.bound = chunk
            run.phase = "bound from relaxed windows"
            run.report(0, 0)
    # 4. Joint windows (order free inside) until the time limit: first around each spill
    #    (from the eviction to the reload, with a margin), then sweeps of growing windows.
    rng = random.Random(seed)
    span = max(4, window_ops)
    run.phase = "joint windows"
    rounds = 0
    margin = 4
    while not run.done():
        rounds += 1
        hot = _spill_windows(
            problem, run.sol, margin, max_ops=max(span, 4 * window_ops), snap=True, dense=True
        )
        if hot and margin <= 4 * window_ops:
            run.phase = f"joint windows around spills (margin {margin})"
            if not run.sweep(
                hot, joint=True, limit=max(3.0, 0.25 * max(b - a for a, b in hot)), until=deadline
            ):
                margin *= 2  # after an improvement: the new spills at this margin first
            continue
        run.phase = f"joint windows of {span} operators"
        step = max(1, span // 2)
        offset = 0 if rounds == 1 else rng.randrange(step)
        windows = [(a, min(n, a + span)) for a in range(offset, max(1, n - step), step)]
        if not run.sweep(windows, joint=True, limit=max(2.0, span / 4), until=deadline):
            if span >= n:
                break
            span = min(n, int(span * 1.5) + 1)
        margin = 4
    stats |= {"windows_tried": run.tried, "windows_accepted": run.accepted, "rounds": rounds}
    # 5. If the windows ran out of things to try before the limit: wider relaxed windows
    #    around the incumbent's spills for the bound, with the time left.
    if run.sol.cost > run.bound and run.left() > 10.0:
        sol = run.sol
        wide = [
            *_spill_windows(problem, sol, 8, max_ops=2 * bound_ops),
            *_spill_windows(problem, sol, 16, max_ops=3 * bound_ops),
        ]
        chunk, more = chunk_bound(problem, sol.order, wide, time_limit=run.left() - 5.0, seed=seed)
        touched = more.pop("chunk_touched", [])
        if chunk and run.left() > 3.0:
            rest, _ = cut_bound(
                problem,
                time_limit=min(10.0, run.left() - 2.0),
                solver=name,
                orders=[sol.order],
                exclude=touched,
            )
            chunk += rest
        stats["late_bound"] = chunk
        run.bound = max(run.bound, chunk)
    result = to_plan(problem, run.sol, "dnc", options)
    result.lower_bound = min(run.bound, result.objective)
    result.status = Status.OPTIMAL if result.objective <= run.bound else Status.FEASIBLE
    result.stats = stats
    result.solve_time = time.perf_counter() - t0
    return result


def _baselines(problem: Problem, time_limit: float, left: Callable[[], float]) -> list[Plan]:
    """For each starting order, the better of its baselines (arena allocator, Belady or
    greedy replacement): the protocol's orders (file, minimum-peak) first, then the greedy
    list schedule and reverse post-order as extra starts. Orders are computed once; the
    extra ones are skipped when time is short."""
    from cosma.schedule import rpo_order
    from cosma.solvers.baselines import make_order

    out: list[Plan] = []
    protocol = list(dict.fromkeys(o for o, _, _ in PROTOCOL))
    for o in [*protocol, "greedy", "rpo"]:
        if o not in protocol and left() < 0.6 * time_limit:
            break  # the protocol's orders always; the extra ones while time allows
        if o == "rpo":
            seq = rpo_order(problem.graph)
        else:
            # The minimum-peak search gets the `baseline` method's 30 s (remembered per
            # graph), or less when the whole call is short.
            limit = max(0.5, min(30.0, 0.4 * time_limit, left() - 0.5))
            seq = make_order(problem, o, time_limit=limit)
        mine = _baseline_of(problem, seq, o)
        if mine is not None:
            out.append(mine)
    return out


def _warm_starts(problem: Problem, plans: Sequence[Plan]) -> list[Plan]:
    """The given plans that replay at this budget, as starts (trimmed, replayed again)."""
    out = []
    for k, p in enumerate(plans):
        if not p.status.has_plan or sorted(p.order) != sorted(problem.graph.operators):
            continue
        try:
            blocks = blocks_of(problem, p)
            sol = Solution(list(p.order), blocks, cost_of(problem, p.order, blocks))
            plan = to_plan(problem, sol, f"warm{k}", {})
        except CosmaError as e:
            log.info("dnc: warm start %d not used: %s", k, e)
            continue
        out.append(plan)
    return out


def _baseline_of(problem: Problem, order: Sequence[str], name: str) -> Plan | None:
    """The better of the arena allocator with Belady or greedy replacement for ``order``."""
    mine = []
    for rep in ("belady", "greedy"):
        p = baseline(problem, order=order, allocator="arena", replacement=rep)
        p.method = f"{name}-arena-{rep}"
        if p.status.has_plan:
            mine.append(p)
    return min(mine, key=lambda p: p.objective) if mine else None


def _spill_windows(
    problem: Problem,
    sol: Solution,
    margin: int,
    *,
    max_ops: int,
    snap: bool = False,
    dense: bool = False,
) -> list[tuple[int, int]]:
    """Windows around each reload, from the step the tensor left to the step it came back,
    widened by ``margin`` (with ``snap``, to the cut within ``margin`` where the fewest
    bytes cross) and at most ``max_ops`` long; costliest first (with ``dense``: most bytes
    reloaded per operator first, so the short windows, quick to solve, come first)."""
    g = problem.graph
    n = len(sol.order)
    cross = [*crossing_bytes(problem, sol.order), 0] if snap else None

    def widen(x: int, y: int) -> tuple[int, int]:
        a, b = max(0, x - margin), min(n, y + margin)
        if cross is not None:
            a = min(range(a, x + 1), key=lambda i: (cross[i], x - i))
            b = min(range(y, b + 1), key=lambda i: (cross[i], i - y))
        return a, b

    by: dict[str, list[Residency]] = {}
    for r in sol.blocks:
        by.setdefault(r.tensor, []).append(r)
    found: dict[tuple[int, int], int] = {}
    for t, rs in by.items():
        rs.sort(key=lambda r: r.start)
        for prev, r in itertools.pairwise(rs):
            a, b = widen(prev.end, r.start + 1)
            # Too long: the two ends separately.
            ends = [(a, a + max_ops), (b - max_ops, b)] if b - a > max_ops else [(a, b)]
            for w in ends:
                found[w] = found.get(w, 0) + g.tensors[t].size
    if dense:
        return sorted(found, key=lambda w: (-found[w] / max(1, w[1] - w[0]), w))
    return sorted(found, key=lambda w: (-found[w], w))


def _window_key(sol: Solution, a: int, b: int, joint: bool, frozen: Collection[str]) -> tuple:
    """What a window's re-solve depends on: its operators in order and the blocks that
    touch it (an improvement elsewhere leaves it unchanged, so it is not tried again)."""
    near = sorted(
        (r.tensor, r.start, r.end, r.address) for r in sol.blocks if r.start < b and r.end >= a
    )
    return (a, b, joint, frozenset(frozen), hash((tuple(sol.order[a:b]), tuple(near))))


def _window_cost(problem: Problem, sol: Solution, a: int, b: int) -> int:
    """Bytes loaded by blocks that start inside steps ``[a, b)`` (0: nothing to gain)."""
    g = problem.graph
    total = 0
    for r in sol.blocks:
        if a <= r.start < b:
            p = g.tensors[r.tensor].producer
            if p is None or sol.order[r.start] != p:
                total += g.tensors[r.tensor].size
    return total


def _improve(
    run: _Search,
    a: int,
    b: int,
    *,
    joint: bool,
    limit: float,
    frozen: Collection[str] = (),
) -> Solution | None:
    """Re-solve window ``[a, b)`` of the incumbent exactly (order free inside when
    ``joint``, except that operators in ``frozen`` keep their relative order); the
    stitched solution if it is cheaper."""
    from cosma.solvers.cpsat import cpsat
    from cosma.solvers.milp import milp

    problem, sol = run.problem, run.sol
    win = window_problem(problem, sol, a, b, frozen=frozen)
    limit = max(0.5, min(limit, run.left() - 0.5))
    try:
        if joint:  # CP-SAT proves small joint windows far faster than the MILP's LP bound
            sub = cpsat(
                win.problem,
                time_limit=limit,
                threads=run.threads,
                seed=run.seed,
                hint=window_plan(problem, sol, win) if run.hints else None,
            )
        else:
            sub = milp(
                win.problem,
                solver=run.solver,
                order=[PRE, *win.ops, POST],
                time_limit=limit,
                threads=run.threads,
                seed=run.seed,
            )
    except CosmaError as e:  # a solver failure on one window is not fatal
        log.warning("dnc: window [%d, %d) failed: %s", a, b, e)
        return None
    if not sub.status.has_plan:
        return None
    new = stitch(
        problem, sol, win, sub, time_limit=min(2.0, max(0.1, run.left() - 0.3)), seed=run.seed
    )
    if new is None or new.cost >= sol.cost:
        return None
    return new
