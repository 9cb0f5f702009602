"""Memory figures of a graph (SPEC §6): ``M_R``, the must-live bound, schedule peaks.

All figures are in bytes of *tracked* tensors under a :class:`~cosma.graph.Setting`, with
sizes rounded up to the scratchpad's alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from cosma.graph import Graph, Setting, TensorKind
from cosma.liveness import Liveness, aligned, check_schedule, liveness

__all__ = [
    "Liveness",
    "MemoryFigures",
    "aligned",
    "check_schedule",
    "compulsory_traffic",
    "live_intervals",
    "liveness",
    "memory_figures",
    "min_required",
    "must_live_bound",
    "operator_footprint",
    "schedule_peak",
]


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
    lv = liveness(graph, setting=setting, alignment=alignment)
    return lv.footprint[lv.index[operator]]


def min_required(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> tuple[int, str]:
    """``M_R``: the largest operator footprint, and the operator with it (first in file order).

    No plan exists below it, since operators are not tiled.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 3).op("f", ["x"], {"y": 4}).output("y").build()
    >>> min_required(g)
    (7, 'f')
    """
    lv = liveness(graph, setting=setting, alignment=alignment)
    best, v = lv.m_r()
    return best, lv.ops[v]


def live_intervals(
    graph: Graph,
    order: Sequence[str],
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
) -> dict[str, tuple[int, int]]:
    """Step interval ``[first, last]`` (inclusive) each tracked tensor is live with no spills.

    Live (SPEC §6): from creation (graph inputs and parameters: first use) to last use. A
    graph output is stored right after it is created, so it lives only while operators still
    read it (just its producer's step if none does).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"o": 7}).op("b", ["x"], {"y": 3})
    ...      .output("o", "y").build())
    >>> live_intervals(g, ["a", "b"])
    {'o': (0, 0), 'y': (1, 1), 'x': (0, 1)}
    """
    lv = liveness(graph, setting=setting)
    iv = lv.intervals(lv.indices(order))
    return {lv.tensors[t]: iv[t] for t in range(len(lv.tensors))}


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
    lv = liveness(graph, setting=setting, alignment=alignment)
    idx = lv.indices(order)
    best, step = lv.peak(idx)
    return best, lv.ops[idx[step]]


def must_live_bound(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> tuple[int, str]:
    """A lower bound on the no-spill peak of *every* schedule, and the operator that sets it.

    At operator v, every schedule holds v's operands plus each tracked tensor that is
    certainly live across v: created before v in every order (its producer is a strict
    ancestor of v; for a graph input or parameter, one of its consumers is) and read after v
    in every order (a consumer is a strict descendant of v). A graph output is stored when
    created and counts only while operators still read it.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p", "q"], {"z": 1}).output("z").build())
    >>> must_live_bound(g)  # at c: p, q, z; at b only x and q (a may still follow b)
    (31, 'c')
    """
    lv = liveness(graph, setting=setting, alignment=alignment)
    best, v = lv.must_live_bound()
    return best, lv.ops[v]


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
    lv = liveness(graph, setting=setting, alignment=alignment)
    m_r, m_r_v = lv.m_r()
    ml, ml_v = lv.must_live_bound()
    topo = graph.is_schedule(graph.file_order)
    order = lv.indices(graph.file_order if topo else graph.topological_order())
    peak, peak_step = lv.peak(order)
    return MemoryFigures(
        setting=lv.setting.value,
        alignment=alignment,
        operators=graph.num_operators,
        tracked_tensors=len(lv.tensors),
        tracked_bytes=sum(lv.size),
        compulsory_traffic=compulsory_traffic(graph, setting=lv.setting),
        m_r=m_r,
        m_r_operator=lv.ops[m_r_v],
        must_live=ml,
        must_live_operator=lv.ops[ml_v],
        file_order_peak=peak,
        file_order_peak_operator=lv.ops[order[peak_step]],
        file_order_is_topological=topo,
    )
