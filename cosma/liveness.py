"""The one accounting of live bytes (SPEC §6) that every figure and every schedule search uses.

A tracked tensor is *live* with no spills from the step that creates it (graph inputs and
parameters: the step that first reads it) to the last step that reads it. A graph output is
stored (compulsory traffic) right after it is created, so it too lives only while operators
still read it; one that nothing reads is live only while its producer runs. The peak of a
schedule is the most bytes live at any one step.

:func:`liveness` builds, once per graph, setting and alignment, a :class:`Liveness`: operators
indexed in a topological order, tracked tensors indexed with their aligned sizes, producers,
consumers and bitmasks. ``M_R``, the must-live bound, the peak and live intervals of an order,
and the incremental step used by the minimum-peak searches all read it, so there is one
definition of "live" in cosma. The structure is cached per graph (graphs are immutable).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence

import numpy as np

from cosma.errors import UsageError
from cosma.graph import Graph, Setting


def aligned(size: int, alignment: int = 1) -> int:
    """``size`` rounded up to a multiple of ``alignment``.

    >>> aligned(10, 8), aligned(16, 8), aligned(0, 8)
    (16, 16, 0)
    """
    return -(-size // alignment) * alignment


def check_schedule(graph: Graph, order: Sequence[str]) -> list[str]:
    """Return ``order`` as a list if it is a schedule of ``graph``; raise UsageError if not.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 1).op("a", ["x"], {"y": 1}).output("y").build()
    >>> check_schedule(g, ("a",))
    ['a']
    """
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


class Liveness:
    """Live-byte accounting of one graph under one setting and alignment (build it with
    :func:`liveness`, which caches it).

    Operators are numbered ``0..n-1`` in :meth:`Graph.topological_order`; a set of operators
    is a Python int used as a bitmask. Tracked tensors are numbered ``0..m-1``.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p", "q"], {"z": 1}).output("z").build())
    >>> lv = liveness(g)
    >>> lv.peak(["a", "b", "c"]), lv.m_r()
    ((31, 1), (31, 2))
    """

    def __init__(self, graph: Graph, setting: Setting, alignment: int):
        if alignment < 1:
            raise UsageError(f"alignment must be a positive number of bytes, not {alignment}")
        self.graph = graph
        self.setting = setting
        self.alignment = alignment
        self.ops: tuple[str, ...] = tuple(graph.topological_order())
        self.index: dict[str, int] = {op: i for i, op in enumerate(self.ops)}
        n = self.n = len(self.ops)
        self.tensors: tuple[str, ...] = tuple(graph.tracked(setting))
        tindex = {t: i for i, t in enumerate(self.tensors)}
        self.tensor_index = tindex
        self.size: list[int] = [aligned(graph.tensors[t].size, alignment) for t in self.tensors]
        #: producing operator of each tensor, -1 for graph inputs and parameters
        self.producer: list[int] = []
        #: operators that read each tensor (sorted)
        self.consumers: list[tuple[int, ...]] = []
        #: the same as a bitmask
        self.consumer_mask: list[int] = []
        for t in self.tensors:
            tensor = graph.tensors[t]
            self.producer.append(-1 if tensor.producer is None else self.index[tensor.producer])
            cs = tuple(sorted(self.index[c] for c in tensor.consumers))
            self.consumers.append(cs)
            m = 0
            for c in cs:
                m |= 1 << c
            self.consumer_mask.append(m)
        #: tracked tensors each operator reads / writes
        self.reads: list[tuple[int, ...]] = []
        self.writes: list[tuple[int, ...]] = []
        for op in self.ops:
            o = graph.operators[op]
            self.reads.append(tuple(tindex[t] for t in o.inputs if t in tindex))
            self.writes.append(tuple(tindex[t] for t in o.outputs if t in tindex))
        #: bytes of each operator's tracked inputs and outputs
        self.footprint: list[int] = [
            sum(self.size[t] for t in self.reads[v]) + sum(self.size[t] for t in self.writes[v])
            for v in range(n)
        ]
        self.preds: list[tuple[int, ...]] = [
            tuple(sorted(self.index[p] for p in graph.dag.predecessors(op))) for op in self.ops
        ]
        self.succs: list[tuple[int, ...]] = [
            tuple(sorted(self.index[s] for s in graph.dag.successors(op))) for op in self.ops
        ]
        self.pred_mask: list[int] = []
        for v in range(n):
            m = 0
            for p in self.preds[v]:
                m |= 1 << p
            self.pred_mask.append(m)
        #: file-order position of each operator (tie-breaks)
        self.file_pos: list[int] = [graph.position(op) for op in self.ops]
        self.full = (1 << n) - 1
        self._reach: tuple[list[int], list[int]] | None = None

    # --- orders --------------------------------------------------------------------------

    def indices(self, order: Sequence[str]) -> list[int]:
        """Operator indices of a schedule given by names (checked)."""
        return [self.index[op] for op in check_schedule(self.graph, order)]

    def names(self, order: Iterable[int]) -> list[str]:
        """Operator names of a schedule given by indices."""
        return [self.ops[v] for v in order]

    # --- figures of one order ------------------------------------------------------------

    def intervals(self, order: Sequence[int]) -> list[tuple[int, int]]:
        """Per tracked tensor, the steps ``[first, last]`` it is live when ``order`` runs
        (indices, assumed a schedule)."""
        pos = [0] * self.n
        for i, v in enumerate(order):
            pos[v] = i
        out = []
        for t in range(len(self.tensors)):
            cs = self.consumers[t]
            p = self.producer[t]
            start = pos[p] if p >= 0 else min(pos[c] for c in cs)
            end = max((pos[c] for c in cs), default=start)
            out.append((start, max(start, end)))
        return out

    def profile(self, order: Sequence[int]) -> list[int]:
        """Bytes live at each step of ``order`` (indices, assumed a schedule)."""
        delta = [0] * (len(order) + 1)
        for t, (s, e) in enumerate(self.intervals(order)):
            delta[s] += self.size[t]
            delta[e + 1] -= self.size[t]
        out, cur = [], 0
        for i in range(len(order)):
            cur += delta[i]
            out.append(cur)
        return out

    def peak(self, order: Sequence[str] | Sequence[int]) -> tuple[int, int]:
        """Peak live bytes of a schedule (names or indices) and the first step at the peak."""
        idx = self.indices(order) if order and isinstance(order[0], str) else list(order)
        prof = self.profile(idx)
        best = max(prof)
        return best, prof.index(best)

    # --- incremental accounting over sets of operators already run ------------------------

    def step(self, done: int, resident: int, v: int) -> tuple[int, int]:
        """Running ``v`` after the set ``done`` (whose live bytes are ``resident``): bytes
        live while ``v`` runs, and bytes live after it.

        >>> from cosma.graph import GraphBuilder
        >>> g = GraphBuilder().input("x", 2).op("a", ["x"], {"y": 3}).output("y").build()
        >>> liveness(g).step(0, 0, 0)  # x is loaded, y created; y is stored, nothing left
        (5, 0)
        """
        during = resident
        after = resident
        new_done = done | (1 << v)
        size = self.size
        cmask = self.consumer_mask
        producer = self.producer
        for t in self.reads[v]:
            if producer[t] < 0 and not (cmask[t] & done):
                during += size[t]  # first use of a graph input / parameter
                after += size[t]
            if not (cmask[t] & ~new_done):
                after -= size[t]  # v was its last reader
        for t in self.writes[v]:
            during += size[t]
            if cmask[t]:
                after += size[t]
        return during, after

    def resident(self, done: int) -> int:
        """Bytes live between steps once exactly the operators in ``done`` (a downset) ran."""
        total = 0
        for t in range(len(self.tensors)):
            cm = self.consumer_mask[t]
            p = self.producer[t]
            started = (done >> p & 1) if p >= 0 else bool(cm & done)
            if started and (cm & ~done):
                total += self.size[t]
        return total

    def ready(self, done: int, allowed: int | None = None) -> list[int]:
        """Operators not in ``done`` whose predecessors all are (within ``allowed``)."""
        pool = range(self.n) if allowed is None else bits_of(allowed & ~done)
        pm = self.pred_mask
        return [v for v in pool if not (done >> v & 1) and not (pm[v] & ~done)]

    # --- order-free figures --------------------------------------------------------------

    def m_r(self) -> tuple[int, int]:
        """``M_R``: the largest operator footprint, and its operator (first in file order)."""
        best = max(self.footprint)
        return best, self._first_in_file_order(self.footprint, best)

    def _first_in_file_order(self, values: Sequence[int], best: int) -> int:
        at = (v for v in range(self.n) if values[v] == best)
        return min(at, key=self.file_pos.__getitem__)

    def reach(self) -> tuple[list[int], list[int]]:
        """Per operator, bitmasks of its strict ancestors and strict descendants."""
        if self._reach is None:
            anc = [0] * self.n
            for v in range(self.n):
                a = 0
                for p in self.preds[v]:
                    a |= anc[p] | (1 << p)
                anc[v] = a
            desc = [0] * self.n
            for v in reversed(range(self.n)):
                d = 0
                for s in self.succs[v]:
                    d |= desc[s] | (1 << s)
                desc[v] = d
            self._reach = (anc, desc)
        return self._reach

    def must_live(self) -> tuple[int, list[int]]:
        """The must-live bound and its per-operator terms.

        At operator v every schedule holds v's operands plus each tracked tensor certainly
        live across v: created before v in every order (its producer is a strict ancestor of
        v; for a graph input or parameter, one of its readers is) and still read after v in
        every order (one of its readers is a strict descendant of v). Graph outputs follow the
        same rule: they are stored when created and need not stay.
        """
        anc, desc = self.reach()
        n = self.n
        total = np.array(self.footprint, dtype=np.int64)
        for t, size in enumerate(self.size):
            if size == 0 or not self.consumers[t]:
                continue
            p = self.producer[t]
            if p >= 0:
                before = desc[p]
                own = 1 << p
            else:
                before = 0
                own = 0
                for c in self.consumers[t]:
                    before |= desc[c]
            after = 0
            for c in self.consumers[t]:
                after |= anc[c]
            both = before & after & ~(own | self.consumer_mask[t])
            if both:
                total += _bitarray(both, n) * size
        return int(total.max()), [int(x) for x in total]

    def must_live_bound(self) -> tuple[int, int]:
        """The must-live bound and its operator (first in file order among those at it)."""
        best, terms = self.must_live()
        return best, self._first_in_file_order(terms, best)


def _bitarray(x: int, n: int) -> np.ndarray:
    raw = np.frombuffer(x.to_bytes((n + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(np.int64)


def bits_of(x: int) -> list[int]:
    """The positions of the set bits of ``x``, lowest first.

    >>> bits_of(0b10110)
    [1, 2, 4]
    """
    out = []
    while x:
        low = x & -x
        out.append(low.bit_length() - 1)
        x ^= low
    return out


_CACHE: weakref.WeakKeyDictionary[Graph, dict[tuple[Setting, int], Liveness]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def liveness(
    graph: Graph, *, setting: Setting | str = Setting.ACTIVATIONS, alignment: int = 1
) -> Liveness:
    """The live-byte accounting of ``graph`` under ``setting`` (built once, then cached).

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> liveness(g) is liveness(g, setting="activations"), liveness(g).m_r()
    (True, (12, 0))
    """
    setting = Setting.parse(setting)
    key = (setting, int(alignment))
    with _LOCK:
        per = _CACHE.setdefault(graph, {})
        lv = per.get(key)
    if lv is None:
        lv = Liveness(graph, setting, int(alignment))
        with _LOCK:
            lv = _CACHE[graph].setdefault(key, lv)
    return lv
