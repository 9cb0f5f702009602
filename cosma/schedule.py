"""Schedules: fast memory-aware orders, and the minimum-peak order behind ``M_P``.

Every peak here is measured by the one live-byte accounting, :mod:`cosma.liveness` (SPEC §6:
a tensor lives from creation, or first use, to its last reader; a graph output is stored
when created and lives only while operators still read it).

The minimum peak is searched exactly as a bottleneck shortest path over *downsets* (sets of
operators already run, closed under predecessors): the cost of running ``v`` after set ``S``
depends only on ``S`` and ``v``, so Dijkstra on the peak so far is exact. It is pruned by a
dominance rule (an operator that frees at least what it creates and fits under the current
peak can run at once) and by the must-live lower bound, which certifies an order as soon as
one reaches it. Under a time or state limit the best order found is returned with the
smallest peak not yet ruled out as its proven bound.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cosma.deadline import Deadline
from cosma.graph import Graph, Setting
from cosma.liveness import Liveness, liveness
from cosma.liveness import bits_of as _bits
from cosma.progress import report


@dataclass(frozen=True)
class PeakResult:
    """The best order found, its peak, a proven lower bound, and whether they meet.

    ``order`` names every operator once; ``peak`` is its no-spill peak (bytes, by
    :mod:`cosma.liveness`); ``lower_bound`` is proven for every schedule; ``optimal`` is
    True only when ``peak == lower_bound``.
    """

    order: tuple[str, ...]
    peak: int
    lower_bound: int
    optimal: bool
    method: str
    states: int = 0
    seconds: float = 0.0


def greedy_order(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> list[str]:
    """A fast memory-aware list schedule: among ready operators, run the one that leaves the
    fewest live bytes (then the smallest step peak, then file order).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p"], {"p2": 1}).op("d", ["q"], {"q2": 1})
    ...      .op("e", ["p2", "q2"], {"z": 1}).output("z").build())
    >>> greedy_order(g)
    ['a', 'c', 'b', 'd', 'e']
    """
    lv = liveness(graph, setting=setting, alignment=alignment)
    return lv.names(_greedy(lv))


def _greedy(lv: Liveness) -> list[int]:
    done, resident, order = 0, 0, []
    ready = set(lv.ready(0))
    pm = lv.pred_mask
    while ready:
        best = None
        for v in ready:
            during, after = lv.step(done, resident, v)
            key = (after, during, lv.file_pos[v])
            if best is None or key < best[0]:
                best = (key, v, after)
        assert best is not None
        _, v, resident = best
        done |= 1 << v
        order.append(v)
        ready.discard(v)
        ready.update(s for s in lv.succs[v] if not (pm[s] & ~done))
    return order


def rpo_order(graph: Graph) -> list[str]:
    """Reverse post-order: the reverse of a depth-first post-order over the operator DAG
    (roots and successors visited in file order). A common compiler default and the
    baseline HMCOS compares against.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p"], {"p2": 1}).op("d", ["q"], {"q2": 1})
    ...      .op("e", ["p2", "q2"], {"z": 1}).output("z").build())
    >>> rpo_order(g)
    ['b', 'd', 'a', 'c', 'e']
    """
    lv = liveness(graph)
    return lv.names(_rpo(lv))


def _rpo(lv: Liveness) -> list[int]:
    by_file = sorted(range(lv.n), key=lv.file_pos.__getitem__)
    succs = [sorted(lv.succs[v], key=lv.file_pos.__getitem__) for v in range(lv.n)]
    seen = [False] * lv.n
    post: list[int] = []
    for root in by_file:
        if seen[root] or lv.preds[root]:
            continue
        seen[root] = True
        stack = [(root, iter(succs[root]))]
        while stack:
            v, it = stack[-1]
            for s in it:
                if not seen[s]:
                    seen[s] = True
                    stack.append((s, iter(succs[s])))
                    break
            else:
                stack.pop()
                post.append(v)
    return post[::-1]


@dataclass
class _SearchResult:
    order: list[int] | None  # operators of the window in the best order found (None: none)
    peak: int  # its peak (floored), or the incumbent's if none better was found
    bound: int  # smallest peak not ruled out for this window
    complete: bool  # the search ran to the end: ``bound`` is the window's exact minimum
    states: int


def _downset_search(
    lv: Liveness,
    done0: int,
    resident0: int,
    window: int,
    *,
    floor: int,
    incumbent: int,
    deadline: Deadline,
    max_states: int,
    chain: Sequence[int] = (),
) -> _SearchResult:
    """Bottleneck Dijkstra over downsets from ``done0`` to ``done0 | window``.

    Minimises the largest live-byte count of the steps inside the window, floored at
    ``floor`` (a peak at or below it is as good as the floor). Only orders strictly below
    ``incumbent`` are looked for; if none exists the search is complete with
    ``bound == incumbent``. ``chain`` lists operators of the window that must also keep
    this relative order (the others move freely among them).
    """
    pm = lv.pred_mask
    succs = lv.succs
    if chain:
        pm, succs = list(pm), list(succs)
        for u, v in itertools.pairwise(chain):
            pm[v] |= 1 << u
            if v not in succs[u]:
                succs[u] = (*succs[u], v)
    target = done0 | window
    ready0 = tuple(v for v in _bits(window) if not (pm[v] & ~done0))
    best: dict[int, int] = {done0: floor}
    parent: dict[int, tuple[int, int]] = {}
    info: dict[int, tuple[int, tuple[int, ...]]] = {done0: (resident0, ready0)}
    heap = [(floor, 0, 0, done0)]
    counter = 0
    states = 0
    bound = floor
    while heap:
        peak, _, _, done = heapq.heappop(heap)
        if peak > best.get(done, peak):
            continue
        bound = max(bound, peak)
        if peak >= incumbent:
            return _SearchResult(None, incumbent, incumbent, True, states)
        if done == target:
            order = []
            m = done
            while m != done0:
                prev, v = parent[m]
                order.append(v)
                m = prev
            return _SearchResult(order[::-1], peak, peak, True, states)
        states += 1
        if states % 65536 == 0:
            report(
                "minpeak",
                seconds=deadline.elapsed(),
                objective=incumbent,
                bound=bound,
                phase="downset search",
                states=states,
            )
        if states > max_states or (states % 256 == 0 and deadline.expired()):
            return _SearchResult(None, incumbent, bound, False, states)
        resident, ready = info[done]
        moves = []
        for v in ready:
            during, after = lv.step(done, resident, v)
            if during <= peak and after <= resident:
                moves = [(v, during, after)]  # dominance: run it now, nothing is lost
                break
            moves.append((v, during, after))
        for v, during, after in moves:
            new = done | (1 << v)
            newpeak = max(peak, during)
            if newpeak >= incumbent:
                continue
            if newpeak < best.get(new, newpeak + 1):
                best[new] = newpeak
                parent[new] = (done, v)
                if new not in info:
                    nready = tuple(u for u in ready if u != v) + tuple(
                        s for s in succs[v] if (window >> s & 1) and not (pm[s] & ~new)
                    )
                    info[new] = (after, nready)
                counter += 1
                # Deeper states first among equal peaks: reach the goal sooner.
                heapq.heappush(heap, (newpeak, -new.bit_count(), counter, new))
    return _SearchResult(None, incumbent, incumbent, True, states)


def _beam(lv: Liveness, *, width: int, floor: int, deadline: Deadline) -> list[int] | None:
    """Beam search over downsets, one operator per level: keep the ``width`` partial orders
    with the least (peak so far, floored at ``floor``; bytes live after), distinct as sets.
    None if the deadline passes first."""
    pm = lv.pred_mask
    succs = lv.succs
    fp = lv.file_pos
    # state: (peak, resident, done, ready, path) with path a linked list (v, rest)
    beam: list[tuple[int, int, int, tuple[int, ...], tuple | None]] = [
        (floor, 0, 0, tuple(lv.ready(0)), None)
    ]
    for _ in range(lv.n):
        if deadline.expired():
            return None
        children: dict[int, tuple] = {}
        for peak, resident, done, ready, path in beam:
            for v in ready:
                during, after = lv.step(done, resident, v)
                new = done | (1 << v)
                key = (max(peak, during), after, fp[v])
                old = children.get(new)
                if old is None or key < old[0]:
                    children[new] = (key, done, ready, v, path)
        ranked = sorted(children.items(), key=lambda kv: kv[1][0])[:width]
        beam = []
        for new, (key, _done, ready, v, path) in ranked:
            nready = tuple(u for u in ready if u != v) + tuple(
                s for s in succs[v] if not (pm[s] & ~new)
            )
            beam.append((key[0], key[1], new, nready, (v, path)))
    best = min(beam, key=lambda s: (s[0], s[1]))
    order: list[int] = []
    path = best[4]
    while path is not None:
        order.append(path[0])
        path = path[1]
    return order[::-1]


def _improve(
    lv: Liveness,
    order: list[int],
    *,
    floor: int,
    deadline: Deadline,
    window_states: int = 20_000,
    max_half_width: int = 64,
) -> tuple[list[int], int]:
    """Large-neighbourhood search on the peak. For a step at the peak, re-order exactly
    (downset search) either a window of consecutive steps around it, widened while the
    search proves nothing below the peak exists there, or a *move*: a few short chains of
    operators (those making the tensors live across the peak, and those reading them) take
    new places anywhere in a stretch of the order while the rest of the stretch keeps its
    relative order. Every accepted change leaves the window's steps below the peak and the
    other steps as they were. Stops when some peak step cannot be lowered. Returns the
    order and its peak."""
    order = list(order)
    while not deadline.expired():
        prof = lv.profile(order)
        top = max(prof)
        if top <= floor:
            break
        i = prof.index(top)
        new = _lower_step(lv, order, prof, i, floor, deadline, window_states, max_half_width)
        if new is None:
            break  # a local optimum for these neighbourhoods
        order = new
    return order, max(lv.profile(order))


def _lower_step(
    lv: Liveness,
    order: list[int],
    prof: list[int],
    i: int,
    floor: int,
    deadline: Deadline,
    window_states: int,
    max_half_width: int,
) -> list[int] | None:
    """An order with step ``i`` (at the peak) and its neighbourhood below the peak, or None."""
    n = len(order)
    top = prof[i]

    def attempt(a: int, b: int, movers: set[int] | None = None) -> list[int] | None:
        window = 0
        for v in order[a:b]:
            window |= 1 << v
        done0 = 0
        for v in order[:a]:
            done0 |= 1 << v
        outside = [x for x in prof[:a] + prof[b:] if x < top]
        chain = [] if movers is None else [v for v in order[a:b] if v not in movers]
        r = _downset_search(
            lv,
            done0,
            lv.resident(done0),
            window,
            floor=max([floor, *outside]),
            incumbent=top,
            deadline=deadline,
            max_states=window_states,
            chain=chain,
        )
        if r.order is None:
            return None
        return order[:a] + r.order + order[b:]

    w = 4
    while w <= max_half_width and not deadline.expired():
        for a, b in ((i - w, i + w + 1), (i - 2 * w, i + 1), (i, i + 2 * w + 1)):
            found = attempt(max(0, a), min(n, b))
            if found is not None:
                return found
        if 2 * w + 1 >= n:
            break
        w *= 2

    # Moves: chains that make or read the tensors live across step i.
    pos = {v: k for k, v in enumerate(order)}
    iv = lv.intervals(order)
    here = set(lv.reads[order[i]]) | set(lv.writes[order[i]])
    across = sorted(
        (t for t, (s, e) in enumerate(iv) if s < i < e and t not in here),
        key=lambda t: (-lv.size[t] * (iv[t][1] - iv[t][0]), t),
    )
    groups = []
    for t in across[:8]:
        if lv.producer[t] >= 0:
            groups.append(_private_up(lv, lv.producer[t]))
        last = max(lv.consumers[t], key=pos.__getitem__)
        groups.append(_private_down(lv, last))
    tried: set[frozenset[int]] = set()
    for k in (1, 2, 3, 4, 6):
        for start in range(len(groups)):
            if deadline.expired():
                return None
            movers = set().union(*groups[start : start + k])
            key = frozenset(movers)
            if key in tried:
                continue
            tried.add(key)
            span = [pos[v] for v in movers]
            for v in movers:
                span += [pos[u] for u in lv.succs[v] if u not in movers]
                span += [pos[u] for u in lv.preds[v] if u not in movers]
            a, b = min([i, *span]), max([i, *span]) + 1
            found = attempt(a, b, movers)
            if found is not None:
                return found
    return None


def _private_up(lv: Liveness, v: int, limit: int = 8) -> set[int]:
    """``v`` and the chain above it of operators that feed only the next one."""
    out = {v}
    while len(out) < limit and len(lv.preds[v]) == 1 and len(lv.succs[lv.preds[v][0]]) == 1:
        v = lv.preds[v][0]
        out.add(v)
    return out


def _private_down(lv: Liveness, v: int, limit: int = 8) -> set[int]:
    """``v`` and the chain below it of operators that only the previous one feeds."""
    out = {v}
    while len(out) < limit and len(lv.succs[v]) == 1 and len(lv.preds[lv.succs[v][0]]) == 1:
        v = lv.succs[v][0]
        out.add(v)
    return out


def _induced(lv: Liveness, ops: Sequence[int]) -> Graph:
    """The sub-problem of ``ops`` alone, with tracked sizes already aligned: tensors made
    outside become graph inputs (live from their first reader in ``ops``), tensors read
    only outside become graph outputs (live while made). Its minimum peak is a lower bound
    on the whole graph's: in any schedule, the live set at a step of ``ops`` contains the
    sub-problem's live set at that step of the restricted order."""
    from cosma.graph import Operator

    inside = set(ops)
    sizes: dict[str, int] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    operators = []
    for v in sorted(ops):
        reads = [lv.tensors[t] for t in lv.reads[v]]
        writes = [lv.tensors[t] for t in lv.writes[v]]
        for t in lv.reads[v]:
            sizes[lv.tensors[t]] = lv.size[t]
            if lv.producer[t] not in inside and lv.tensors[t] not in inputs:
                inputs.append(lv.tensors[t])
        for t in lv.writes[v]:
            sizes[lv.tensors[t]] = lv.size[t]
            if not any(c in inside for c in lv.consumers[t]):
                outputs.append(lv.tensors[t])
        operators.append(Operator(lv.ops[v], "Op", tuple(reads), tuple(writes)))
    return Graph("induced", operators, sizes, inputs=inputs, outputs=outputs)


def _window_bound(
    lv: Liveness,
    order: list[int],
    *,
    lower: int,
    incumbent: int,
    deadline: Deadline,
    max_states: int,
) -> int:
    """A lower bound from exact searches of sub-problems (:func:`_induced`): windows of
    the order around its peak, widened while the search finishes."""
    prof = lv.profile(order)
    i = prof.index(max(prof))
    n = len(order)
    w = 8
    while not deadline.expired() and lower < incumbent:
        a, b = max(0, i - w), min(n, i + w + 1)
        sub = liveness(_induced(lv, order[a:b]))
        r = _downset_search(
            sub,
            0,
            0,
            sub.full,
            floor=lower,
            incumbent=incumbent,
            deadline=deadline,
            max_states=max_states,
        )
        lower = max(lower, r.bound)
        if not r.complete or b - a >= n:
            break
        w *= 2
    return lower


def min_peak_order(
    graph: Graph,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    time_limit: float | Deadline | None = 30.0,
    max_states: int = 2_000_000,
    candidates: Sequence[Sequence[str]] = (),
) -> PeakResult:
    """The schedule with the least no-spill peak, proven where the search completes.

    Small graphs are solved exactly (downset search). Where that search cannot finish, a
    beam search and a large-neighbourhood search around the peak (exact re-ordering of
    windows of the order) give the order, and exact searches of sub-problems around the
    peak give a lower bound at least the must-live bound.

    ``candidates`` are extra orders to start from (the file order, the greedy order and
    reverse post-order are always tried). ``time_limit`` (seconds, or a shared
    :class:`~cosma.deadline.Deadline`) is a wall-clock deadline for the whole call.
    ``optimal`` is True only when the peak is proven minimal; otherwise ``lower_bound`` is
    a proven bound below it. ``max_states`` caps the exact search (further capped so its
    memory stays within a few hundred megabytes).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p"], {"p2": 1}).op("d", ["q"], {"q2": 1})
    ...      .op("e", ["p2", "q2"], {"z": 1}).output("z").build())
    >>> r = min_peak_order(g)
    >>> r.peak, r.optimal, r.order
    (22, True, ('a', 'c', 'b', 'd', 'e'))
    """
    deadline = Deadline.of(time_limit)
    lv = liveness(graph, setting=setting, alignment=alignment)
    lb, _ = lv.must_live_bound()

    starts = [list(range(lv.n)), _greedy(lv), _rpo(lv)]
    starts += [lv.indices(c) for c in candidates]
    best_order, best_peak = starts[0], lv.peak(starts[0])[0]
    for o in starts[1:]:
        p = lv.peak(o)[0]
        if p < best_peak:
            best_order, best_peak = o, p
    total_states = 0

    def note(phase: str, lower: int) -> None:
        report(
            "minpeak",
            seconds=deadline.elapsed(),
            objective=best_peak,
            bound=min(lower, best_peak),
            phase=phase,
            states=total_states,
        )

    def result(lower: int, method: str) -> PeakResult:
        note(method, lower)
        return PeakResult(
            tuple(lv.names(best_order)),
            best_peak,
            lower,
            lower >= best_peak,
            method,
            total_states,
            deadline.elapsed(),
        )

    def exact(states: int, limit: Deadline) -> _SearchResult:
        nonlocal best_order, best_peak, total_states
        r = _downset_search(
            lv, 0, 0, lv.full, floor=lb, incumbent=best_peak, deadline=limit, max_states=states
        )
        total_states += r.states
        if r.order is not None:
            best_order, best_peak = r.order, lv.peak(r.order)[0]
        return r

    if best_peak <= lb:
        return result(best_peak, "certified by must-live bound")
    # Each state of the exact search keeps a set of n bits and a ready list: cap the
    # states so the search stays within a few hundred megabytes on large graphs.
    max_states = min(max_states, 300_000_000 // (lv.n // 8 + 600))
    # The exact search first: the NAS networks of 500-900 operators end here within
    # seconds. Beyond 1,000 operators it rarely finishes; the heuristic gets the time.
    r = exact(max_states, deadline.sub(0.4 if lv.n <= 1000 else 0.1))
    if r.complete:
        return result(best_peak, "downset search (complete)")
    lb = max(lb, r.bound)
    note("downset search stopped", lb)

    # Large graphs: heuristic orders (the best start, then beam searches of growing width,
    # each improved by the search around its peak), then a lower bound from sub-problems.
    heuristic = deadline.sub(0.7)
    o, p = _improve(lv, best_order, floor=lb, deadline=heuristic)
    if p < best_peak:
        best_order, best_peak = o, p
    for width in (4, 16, 64, 256):
        if best_peak <= lb or heuristic.expired():
            break
        o = _beam(lv, width=width, floor=lb, deadline=heuristic)
        if o is None:
            break
        o, p = _improve(lv, o, floor=lb, deadline=heuristic)
        if p < best_peak:
            best_order, best_peak = o, p
            note(f"heuristic order (beam {width})", lb)
    note("heuristic order", lb)
    if best_peak <= lb:
        return result(best_peak, "heuristic, certified by must-live bound")
    lb = _window_bound(
        lv,
        best_order,
        lower=lb,
        incumbent=best_peak,
        deadline=deadline,
        max_states=200_000,
    )
    if best_peak <= lb:
        return result(best_peak, "heuristic, certified by sub-problem bound")
    return result(lb, "heuristic (beam + windows; stopped by limit)")
