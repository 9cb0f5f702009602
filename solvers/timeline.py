"""The time-indexed view both exact engines share: step windows, tensor lifetimes, and
turning "tensor a is resident at steps ..." back into placed blocks and plan steps.

Steps are ``t = 0..n-1``, one operator each. An operator's window is the steps it can run
at (ASAP/ALAP, or one step for a fixed order); a tracked tensor's lifetime is the steps it
can be resident at.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import networkx as nx

from cosma.graph import TensorKind
from cosma.memory import aligned
from cosma.plan import Event, Step, create, drop, load, steps_from_events, store
from cosma.problem import Problem
from cosma.solvers.baselines import Residency


def windows(problem: Problem, order: Sequence[str] | None) -> dict[str, tuple[int, int]]:
    """Steps each operator may run at: [#ancestors, n-1-#descendants], or its fixed step."""
    g = problem.graph
    if order is not None:
        return {op: (i, i) for i, op in enumerate(order)}
    n = g.num_operators
    desc, anc = reach(g)
    return {v: (len(anc[v]), n - 1 - len(desc[v])) for v in g.file_order}


_REACH: dict[str, tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]] = {}


def reach(graph) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Descendants and ancestors of every operator (remembered per graph identity: the
    windows, the bounds and the models all need them)."""
    key = graph.identity()
    if key not in _REACH:
        order = list(nx.topological_sort(graph.dag))
        desc: dict[str, frozenset[str]] = {}
        for v in reversed(order):
            acc: set[str] = set()
            for w in graph.dag.successors(v):
                acc.add(w)
                acc |= desc[w]
            desc[v] = frozenset(acc)
        anc: dict[str, set[str]] = {v: set() for v in order}
        for v, ds in desc.items():
            for w in ds:
                anc[w].add(v)
        if len(_REACH) > 16:
            _REACH.clear()
        _REACH[key] = (desc, {v: frozenset(a) for v, a in anc.items()})
    return _REACH[key]


def lifetimes(
    problem: Problem, window: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Steps a tracked tensor can be resident at: from its producer's (or first consumer's)
    earliest step to its last consumer's latest step."""
    g = problem.graph
    life = {}
    for a in g.tracked(problem.setting):
        t = g.tensors[a]
        users = [window[c] for c in t.consumers]
        if t.producer is not None:
            lo = window[t.producer][0]
            hi = max([u[1] for u in users], default=window[t.producer][1])
        else:
            lo = min(u[0] for u in users)
            hi = max(u[1] for u in users)
        life[a] = (lo, hi)
    return life


def residencies(
    problem: Problem,
    order: Sequence[str],
    resident_steps: Mapping[str, Sequence[int]],
    address: Callable[[str, int], int] | None = None,
    breaks: Collection[tuple[str, int]] = (),
) -> list[Residency]:
    """Blocks from the steps each tensor is resident at, trimmed without loss: a block that
    starts with a load starts at its first use instead, and every block ends at its last use
    (or at its creation). Blocks with neither a use nor a creation are dropped. ``breaks``
    holds ``(tensor, step)`` pairs where a new block starts with a load although the tensor
    was resident the step before (a *move*, SPEC §3). ``address`` (tensor, first step of
    the untrimmed block) gives addresses when the engine chose them; trimming only shortens
    blocks, so those addresses stay valid."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    cut = set(breaks)
    out: list[Residency] = []
    for a, steps in resident_steps.items():
        t_ = g.tensors[a]
        uses = sorted(pos[c] for c in t_.consumers)
        made = pos[t_.producer] if t_.producer is not None else None
        steps = sorted(set(steps) | ({made} if made is not None else set()))
        segments: list[list[int]] = []
        for t in steps:
            if segments and segments[-1][-1] == t - 1 and (a, t) not in cut:
                segments[-1].append(t)
            else:
                segments.append([t])
        size = aligned(t_.size, problem.alignment)
        for seg in segments:
            needed = [u for u in uses if seg[0] <= u <= seg[-1]]
            starts_made = made is not None and seg[0] == made
            if not needed and not starts_made:
                continue
            start = made if starts_made else needed[0]
            end = max([start, *needed])
            r = Residency(a, start, end, size)
            if address is not None:
                r.address = address(a, seg[0])
            out.append(r)
    return out


def retrim(problem: Problem, order: Sequence[str], blocks: Sequence[Residency]) -> list[Residency]:
    """Placed blocks (a tensor's residency possibly split by moves) trimmed as
    :func:`residencies` does, keeping their addresses."""
    steps: dict[str, list[int]] = {}
    breaks: set[tuple[str, int]] = set()
    where: dict[tuple[str, int], int] = {}
    for b in sorted(blocks, key=lambda b: (b.tensor, b.start)):
        span = steps.setdefault(b.tensor, [])
        if span and span[-1] == b.start - 1:
            breaks.add((b.tensor, b.start))
        span.extend(range(b.start, b.end + 1))
        where[b.tensor, b.start] = b.address
    return residencies(problem, order, steps, lambda a, t: where[a, t], breaks)


def plan_steps(problem: Problem, order: Sequence[str], res: Sequence[Residency]) -> list[Step]:
    """Plan steps for placed blocks: a load or create where each block starts, a drop after
    its last step; an activation that is ever reloaded, and every output, is stored right
    after it is made."""
    g = problem.graph
    pos = {v: i for i, v in enumerate(order)}
    before: dict[int, list[Event]] = {}
    after: dict[int, list[Event]] = {}

    def made_here(r: Residency) -> bool:
        p = g.tensors[r.tensor].producer
        return p is not None and r.start == pos[p]

    reloaded = {r.tensor for r in res if not made_here(r)}
    for r in sorted(res, key=lambda r: (r.start, r.tensor)):
        t = g.tensors[r.tensor]
        here = made_here(r)
        before.setdefault(r.start, []).append(
            create(r.tensor, r.address) if here else load(r.tensor, r.address)
        )
        if here and (
            t.kind is TensorKind.OUTPUT
            or (t.kind is TensorKind.ACTIVATION and r.tensor in reloaded)
        ):
            after.setdefault(r.start, []).append(store(r.tensor))
        after.setdefault(r.end, []).append(drop(r.tensor))
    for i, evs in after.items():  # stores before drops within a step
        after[i] = [e for e in evs if e.kind.value == "store"] + [
            e for e in evs if e.kind.value == "drop"
        ]
    return steps_from_events(list(order), before, after)


def plan_state(plan) -> tuple[dict[int, dict[str, int]], set[tuple[str, int]], set[str]]:
    """What a plan holds while each step runs: ``{step: {tensor: address}}``, the
    ``(tensor, step)`` loads, and the stored tensors (for warm starts and hints)."""
    resident: dict[str, int] = {}
    loads: set[tuple[str, int]] = set()
    stored: set[str] = set()
    during: dict[int, dict[str, int]] = {}
    for i, step in enumerate(plan.steps):
        for e in step.before:
            if e.kind.value in ("load", "create"):
                resident[e.tensor] = e.address
                if e.kind.value == "load":
                    loads.add((e.tensor, i))
            elif e.kind.value == "drop":
                resident.pop(e.tensor, None)
            elif e.kind.value == "store":
                stored.add(e.tensor)
        during[i] = dict(resident)
        for e in step.after:
            if e.kind.value == "drop":
                resident.pop(e.tensor, None)
            elif e.kind.value == "store":
                stored.add(e.tensor)
    return during, loads, stored
