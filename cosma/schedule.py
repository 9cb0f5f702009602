"""Schedules: a fast memory-aware order, and the exact minimum-peak order behind ``M_P``.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cosma.graph import Graph, Setting, TensorKind
from cosma.memory import aligned, check_schedule, must_live_bound, schedule_peak
from cosma.progress import report


@dataclass(frozen=True)
class PeakResult:
    """The best order found, its peak, a proven lower bound, and whether they meet."""

    order: tuple[str, ...]
    peak: int
    lower_bound: int
    optimal: bool
    method: str
    states: int = 0
    seconds: float = 0.0


class _Accounting:
    """Per-operator data for incremental live-byte accounting over downsets."""

    def __init__(self, graph: Graph, setting: Setting, alignment: int):
        self.ops = graph.topological_order()
        self.idx = {op: i for i, op in enumerate(self.ops)}
        n = len(self.ops)
        tracked = graph.tracked(setting)
        size = {t: aligned(graph.tensors[t].size, alignment) for t in tracked}
        self.pred_mask = [0] * n
        for u, v in graph.dag.edges:
            self.pred_mask[self.idx[v]] |= 1 << self.idx[u]
        # For each tensor: mask of its consumers; whether it outlives all of them.
        self.tensor_consumers: dict[str, int] = {}
        self.persist: dict[str, bool] = {}
        self.size = size
        for t in tracked:
            mask = 0
            for c in graph.tensors[t].consumers:
                mask |= 1 << self.idx[c]
            self.tensor_consumers[t] = mask
            self.persist[t] = graph.tensors[t].kind is TensorKind.OUTPUT
        self.outputs = [[t for t in graph.operators[op].outputs if t in size] for op in self.ops]
        self.inputs = [[t for t in graph.operators[op].inputs if t in size] for op in self.ops]
        self.external = {
            t for t in tracked if graph.tensors[t].producer is None
        }  # graph inputs and parameters: live from first use

    def step(self, done: int, resident: int, v: int) -> tuple[int, int]:
        """Bytes live while ``v`` runs after set ``done``, and bytes resident after it."""
        during = resident
        after = resident
        bit = 1 << v
        new_done = done | bit
        for t in self.inputs[v]:
            started = t not in self.external or (self.tensor_consumers[t] & done)
            if not started:
                during += self.size[t]
                after += self.size[t]
            if not (self.tensor_consumers[t] & ~new_done) and not self.persist[t]:
                after -= self.size[t]
        for t in self.outputs[v]:
            during += self.size[t]
            if (self.tensor_consumers[t] & ~new_done) or self.persist[t]:
                after += self.size[t]
        return during, after


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
    setting = Setting.parse(setting)
    acc = _Accounting(graph, setting, alignment)
    file_pos = [graph.position(op) for op in acc.ops]
    n = len(acc.ops)
    done, resident, order = 0, 0, []
    for _ in range(n):
        best = None
        for v in range(n):
            if done >> v & 1 or (acc.pred_mask[v] & ~done):
                continue
            during, after = acc.step(done, resident, v)
            key = (after, during, file_pos[v])
            if best is None or key < best[0]:
                best = (key, v, after)
        assert best is not None
        _, v, resident = best
        done |= 1 << v
        order.append(acc.ops[v])
    return order


def min_peak_order(
    graph: Graph,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    time_limit: float | None = 30.0,
    max_states: int = 2_000_000,
    candidates: Sequence[Sequence[str]] = (),
) -> PeakResult:
    """The schedule with the least no-spill peak, proven where the search completes.

    ``candidates`` are extra orders to start from (the file order and the greedy order are
    always tried). ``optimal`` is True only when the peak is proven minimal.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p"], {"p2": 1}).op("d", ["q"], {"q2": 1})
    ...      .op("e", ["p2", "q2"], {"z": 1}).output("z").build())
    >>> r = min_peak_order(g)
    >>> r.peak, r.optimal, r.order
    (22, True, ('a', 'c', 'b', 'd', 'e'))
    """
    setting = Setting.parse(setting)
    t0 = time.perf_counter()
    lb, _ = must_live_bound(graph, setting=setting, alignment=alignment)

    starts = [graph.topological_order(), greedy_order(graph, setting=setting, alignment=alignment)]
    starts += [check_schedule(graph, c) for c in candidates]
    best_order, best_peak = None, None
    for o in starts:
        p, _ = schedule_peak(graph, o, setting=setting, alignment=alignment)
        if best_peak is None or p < best_peak:
            best_order, best_peak = list(o), p
    assert best_order is not None and best_peak is not None
    if best_peak <= lb:
        return PeakResult(
            tuple(best_order),
            best_peak,
            lb,
            True,
            "certified by must-live bound",
            0,
            time.perf_counter() - t0,
        )

    acc = _Accounting(graph, setting, alignment)
    n = len(acc.ops)
    full = (1 << n) - 1
    # Dijkstra on the bottleneck (peak so far). State: downset mask.
    best: dict[int, int] = {0: 0}
    parent: dict[int, tuple[int, int]] = {}
    resident_of: dict[int, int] = {0: 0}
    heap = [(0, 0, 0)]  # (peak so far, tie-break counter, mask)
    counter = 0
    states = 0
    frontier_bound = lb
    while heap:
        peak, _, done = heapq.heappop(heap)
        if peak > best.get(done, peak):
            continue
        frontier_bound = max(frontier_bound, peak)
        if peak >= best_peak:
            break  # nothing left can beat the incumbent: it is optimal
        if done == full:
            order = []
            m = done
            while m:
                prev, v = parent[m]
                order.append(acc.ops[v])
                m = prev
            best_order, best_peak = order[::-1], peak
            break
        states += 1
        if states % 65536 == 0:
            report(
                "minpeak",
                seconds=time.perf_counter() - t0,
                objective=best_peak,
                bound=frontier_bound,
                phase="search",
                states=states,
            )
        if states > max_states or (
            time_limit is not None and states % 512 == 0 and time.perf_counter() - t0 > time_limit
        ):
            return PeakResult(
                tuple(best_order),
                best_peak,
                frontier_bound,
                False,
                "downset search (stopped by limit)",
                states,
                time.perf_counter() - t0,
            )
        resident = resident_of[done]
        ready = [v for v in range(n) if not done >> v & 1 and not (acc.pred_mask[v] & ~done)]
        moves = []
        for v in ready:
            during, after = acc.step(done, resident, v)
            if during <= peak and after <= resident:
                moves = [(v, during, after)]  # dominance: run it now, nothing is lost
                break
            moves.append((v, during, after))
        for v, during, after in moves:
            new = done | (1 << v)
            newpeak = max(peak, during)
            if newpeak >= best_peak:
                continue
            if newpeak < best.get(new, newpeak + 1):
                best[new] = newpeak
                parent[new] = (done, v)
                resident_of[new] = after
                counter += 1
                heapq.heappush(heap, (newpeak, counter, new))
    # The search ran to the end: nothing below the incumbent exists.
    return PeakResult(
        tuple(best_order),
        best_peak,
        best_peak,
        True,
        "downset search (complete)",
        states,
        time.perf_counter() - t0,
    )
