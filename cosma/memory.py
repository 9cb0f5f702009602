"""Memory figures of a graph (SPEC §6): ``M_R``, the must-live bound, schedule peaks.

All figures are in bytes of *tracked* tensors under a :class:`~cosma.graph.Setting`, with
sizes rounded up to the scratchpad's alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cosma.errors import UsageError
from cosma.graph import Graph, Setting, TensorKind


def aligned(size: int, alignment: int = 1) -> int:
    """``size`` rounded up to a multiple of ``alignment``.

    >>> aligned(10, 8), aligned(16, 8), aligned(0, 8)
    (16, 16, 0)
    """
    return -(-size // alignment) * alignment


def _sizes(graph: Graph, setting: Setting, alignment: int) -> dict[str, int]:
    return {t: aligned(graph.tensors[t].size, alignment) for t in graph.tracked(setting)}


def operator_footprint(
    graph: Graph,
    operator: str,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
) -> int:
    """Bytes of the tracked inputs and outputs of ``operator``: what must be resident to run it.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 3).op("f", ["x", "x"], {"y": 4}).output("y").build()
    >>> operator_footprint(g, "f")
    7
    """
    setting = Setting.parse(setting)
    return sum(aligned(graph.tensors[t].size, alignment) for t in graph.operands(operator, setting))


def min_required(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> tuple[int, str]:
    """``M_R``: the largest operator footprint, and the operator with it (first in file order).

    No plan exists below it, since operators are not tiled.
    """
    setting = Setting.parse(setting)
    best, arg = -1, ""
    for op in graph.file_order:
        f = operator_footprint(graph, op, setting=setting, alignment=alignment)
        if f > best:
            best, arg = f, op
    return best, arg


def check_schedule(graph: Graph, order: Sequence[str]) -> list[str]:
    """Return ``order`` as a list if it is a schedule of ``graph``; raise UsageError if not."""
    order = list(order)
    if graph.is_schedule(order):
        return order
    missing = set(graph.operators) - set(order)
    unknown = [o for o in order if o not in graph.operators]
    if unknown:
        raise UsageError(f"the order names operators not in the graph: {unknown[:5]}")
    if missing or len(order) != graph.num_operators:
        raise UsageError(
            f"the order must list all {graph.num_operators} operators once; "
            f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(order)} given"
        )
    pos = {n: i for i, n in enumerate(order)}
    u, v = next((u, v) for u, v in graph.dag.edges if pos[u] >= pos[v])
    raise UsageError(f"the order is not topological: {v!r} runs before {u!r}, which it reads")


def live_intervals(
    graph: Graph, order: Sequence[str], *, setting: Setting | str = Setting.ACTIVATIONS
) -> dict[str, tuple[int, int]]:
    """Step interval ``[first, last]`` (inclusive) each tracked tensor is live with no spills.

    Live: from creation (graph inputs and parameters: first use) to last use; graph outputs
    to the end of the schedule (SPEC §6).
    """
    setting = Setting.parse(setting)
    order = check_schedule(graph, order)
    pos = {n: i for i, n in enumerate(order)}
    last = len(order) - 1
    out: dict[str, tuple[int, int]] = {}
    for t in graph.tracked(setting):
        tensor = graph.tensors[t]
        uses = [pos[c] for c in tensor.consumers]
        start = pos[tensor.producer] if tensor.producer is not None else min(uses)
        end = last if tensor.kind is TensorKind.OUTPUT else max(uses, default=start)
        out[t] = (start, end)
    return out


def schedule_peak(
    graph: Graph,
    order: Sequence[str],
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
) -> tuple[int, str]:
    """Peak of tracked live bytes over ``order`` with no spills, and the operator at the peak.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p", "q"], {"z": 1}).output("z").build())
    >>> schedule_peak(g, ["a", "b", "c"])  # at b: x, p, q live
    (31, 'b')
    """
    setting = Setting.parse(setting)
    iv = live_intervals(graph, order, setting=setting)
    sizes = _sizes(graph, setting, alignment)
    delta = [0] * (len(order) + 1)
    for t, (s, e) in iv.items():
        delta[s] += sizes[t]
        delta[e + 1] -= sizes[t]
    best, arg, cur = -1, 0, 0
    for i in range(len(order)):
        cur += delta[i]
        if cur > best:
            best, arg = cur, i
    return best, list(order)[arg]


def _reach_bitsets(graph: Graph) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Topological order and, per operator, bitsets (over that order) of strict ancestors
    and strict descendants."""
    order = graph.topological_order()
    idx = {n: i for i, n in enumerate(order)}
    dag = graph.dag
    anc: dict[str, int] = {}
    for n in order:
        a = 0
        for p in dag.predecessors(n):
            a |= anc[p] | (1 << idx[p])
        anc[n] = a
    desc: dict[str, int] = {}
    for n in reversed(order):
        d = 0
        for s in dag.successors(n):
            d |= desc[s] | (1 << idx[s])
        desc[n] = d
    return order, anc, desc


def _bits(x: int, n: int) -> np.ndarray:
    raw = np.frombuffer(x.to_bytes((n + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def must_live_bound(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> tuple[int, str]:
    """A lower bound on the no-spill peak of *every* schedule, and the operator that sets it.

    At operator v, every schedule holds v's operands plus each tracked tensor that is
    certainly live across v: created before v in every order (its producer is a strict
    ancestor of v; for a graph input or parameter, one of its consumers is) and needed after
    v in every order (a consumer is a strict descendant of v, or it is a graph output).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p", "q"], {"z": 1}).output("z").build())
    >>> must_live_bound(g)  # at c: p, q, z; at b only x and q (a may still follow b)
    (31, 'c')
    """
    setting = Setting.parse(setting)
    order, anc, desc = _reach_bitsets(graph)
    n = len(order)
    idx = {op: i for i, op in enumerate(order)}
    sizes = _sizes(graph, setting, alignment)
    total = np.zeros(n, dtype=np.int64)
    for t, size in sizes.items():
        if size == 0:
            continue
        tensor = graph.tensors[t]
        if tensor.producer is not None:
            before = desc[tensor.producer]
        else:
            before = 0
            for c in tensor.consumers:
                before |= desc[c]
        if tensor.kind is TensorKind.OUTPUT:
            after = (1 << n) - 1
        else:
            after = 0
            for c in tensor.consumers:
                after |= anc[c]
        both = before & after
        # v's own operands are counted below; don't count them twice.
        if tensor.producer is not None:
            both &= ~(1 << idx[tensor.producer])
        for c in tensor.consumers:
            both &= ~(1 << idx[c])
        if both:
            total += _bits(both, n) * size
    for op in order:
        total[idx[op]] += sum(sizes[t] for t in graph.operands(op, setting))
    i = int(np.argmax(total))
    # Report the first operator in file order among those attaining the bound.
    best = int(total[i])
    arg = min((op for op in order if total[idx[op]] == best), key=graph.position)
    return best, arg


@dataclass(frozen=True)
class MemoryFigures:
    """The memory figures of a graph under one setting (all sizes in bytes)."""

    setting: str
    alignment: int
    operators: int
    tracked_tensors: int
    tracked_bytes: int
    compulsory_traffic: int
    m_r: int
    m_r_operator: str
    must_live: int
    must_live_operator: str
    file_order_peak: int
    file_order_peak_operator: str
    file_order_is_topological: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compulsory_traffic(graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS) -> int:
    """First loads of tracked inputs/parameters plus stores of graph outputs (SPEC §4)."""
    setting = Setting.parse(setting)
    return sum(
        graph.tensors[t].size
        for t in graph.tracked(setting)
        if graph.tensors[t].kind is not TensorKind.ACTIVATION
    )


def memory_figures(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> MemoryFigures:
    """All figures of ``graph`` under ``setting``.

    If the file order is not topological the peak is taken over :meth:`Graph.topological_order`
    (the file order with the fewest changes) and ``file_order_is_topological`` says so.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> f = memory_figures(g)
    >>> f.m_r, f.must_live, f.file_order_peak, f.compulsory_traffic
    (12, 12, 12, 12)
    """
    setting = Setting.parse(setting)
    if alignment < 1:
        raise UsageError(f"alignment must be a positive number of bytes, not {alignment}")
    sizes = _sizes(graph, setting, alignment)
    m_r, m_r_op = min_required(graph, setting=setting, alignment=alignment)
    ml, ml_op = must_live_bound(graph, setting=setting, alignment=alignment)
    topo = graph.is_schedule(graph.file_order)
    order = graph.file_order if topo else graph.topological_order()
    peak, peak_op = schedule_peak(graph, order, setting=setting, alignment=alignment)
    return MemoryFigures(
        setting=setting.value,
        alignment=alignment,
        operators=graph.num_operators,
        tracked_tensors=len(sizes),
        tracked_bytes=sum(sizes.values()),
        compulsory_traffic=compulsory_traffic(graph, setting=setting),
        m_r=m_r,
        m_r_operator=m_r_op,
        must_live=ml,
        must_live_operator=ml_op,
        file_order_peak=peak,
        file_order_peak_operator=peak_op,
        file_order_is_topological=topo,
    )
