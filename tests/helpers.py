"""Test helpers importable from every test module: light model paths, random DAGs."""

from __future__ import annotations

import glob
import os

import onnx
import pytest
from cases import skip  # noqa: F401  (re-exported: the case library owns it)
from hypothesis import strategies as st
from hypothesis.errors import UnsatisfiedAssumption

from cosma import Graph, GraphBuilder
from cosma.plan import Status
from cosma.simulator import replay
from cosma.solvers import BACKENDS

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT_DIR, "*.onnx")))


def light(name: str) -> str:
    """Path of one of the onnx wheel's light models, e.g. light('resnet50')."""
    return os.path.join(LIGHT_DIR, f"light_{name}.onnx")


@st.composite
def random_dags(draw, max_ops: int = 8, max_size: int = 20, params: bool = True) -> Graph:
    """A random valid graph: operators in file order, each reading earlier tensors."""
    n = draw(st.integers(1, max_ops))
    b = GraphBuilder("random")
    available: list[str] = []
    n_inputs = draw(st.integers(0, 2))
    for i in range(n_inputs):
        b.input(f"in{i}", draw(st.integers(0, max_size)))
        available.append(f"in{i}")
    produced: list[str] = []
    consumed: set[str] = set()
    for k in range(n):
        reads = (
            draw(st.lists(st.sampled_from(available), max_size=3, unique=True)) if available else []
        )
        if params and draw(st.booleans()):
            w = f"w{k}"
            b.parameter(w, draw(st.integers(0, max_size)))
            reads.append(w)
        n_out = draw(st.integers(1, 2))
        outs = {f"t{k}_{j}": draw(st.integers(0, max_size)) for j in range(n_out)}
        b.op(f"op{k}", reads, outs)
        consumed.update(reads)
        available.extend(outs)
        produced.extend(outs)
    # Unconsumed tensors become outputs with some probability (otherwise they are dropped).
    for t in produced:
        if t not in consumed and draw(st.booleans()):
            b.output(t)
    b.output(produced[-1])  # nothing reads the last tensor: make it an output
    return b.build()


class SearchTooLarge(UnsatisfiedAssumption):
    """The exhaustive address search of :func:`brute_force_traffic` went past its node budget:
    the example is too large to judge. Raised inside a property test it discards the example
    (it is what hypothesis's ``reject()`` raises); elsewhere it fails the test."""


def brute_force_traffic(
    graph, budget: int, setting=None, *, max_nodes: int | None = 100_000
) -> int | None:
    """Exhaustive search: the least non-compulsory traffic of any plan (None if none).

    Best-first over partial plans without addresses: a step picks the next ready operator,
    keeps any subset of the resident tensors (a dropped tensor still needed is stored first),
    and brings in its missing operands (loads from host; creates for outputs). Complete plans
    come out in order of traffic; the first whose blocks can be given addresses (exhaustive
    backtracking over every address) is optimal. Loads happen only at uses and dead blocks
    are dropped right after the run: neither loses generality. Independent of cosma's
    solvers; only for tiny graphs with alignment 1. Backtracking over every address is
    exponential (a random 6-operator graph can need 12^20 nodes): the address search raises
    SearchTooLarge past ``max_nodes`` nodes (a count, not a time, so the outcome does not
    depend on the machine; 100,000 nodes take 3-9 s; None: no limit).
    """
    import heapq
    from itertools import combinations

    from cosma.graph import Setting, TensorKind

    setting = Setting.ACTIVATIONS if setting is None else setting
    g = graph
    tracked = set(g.tracked(setting))
    size = {t: g.tensors[t].size for t in tracked}
    kind = {t: g.tensors[t].kind for t in tracked}
    ops = list(g.file_order)
    preds = {v: set(g.dag.predecessors(v)) for v in ops}
    operands = {v: list(g.operands(v, setting)) for v in ops}
    outputs = {v: {t for t in g.operators[v].outputs if t in tracked} for v in ops}
    consumers = {t: set(g.tensors[t].consumers) for t in tracked}
    compulsory = sum(size[t] for t in tracked if kind[t] is not TensorKind.ACTIVATION)
    host0 = frozenset(t for t in tracked if kind[t] in (TensorKind.INPUT, TensorKind.PARAMETER))

    # state: (cost, counter, done, open {tensor: start}, host, closed intervals, step)
    heap = [(0, 0, frozenset(), (), host0, (), 0)]
    counter = 0
    nodes = [max_nodes if max_nodes is not None else -1]
    while heap:
        cost, _, done, opened, host, closed, step = heapq.heappop(heap)
        if len(done) == len(ops):
            if _placeable(list(closed), budget, nodes):
                return cost - compulsory
            continue
        opened = dict(opened)
        for v in ops:
            if v in done or not preds[v] <= done:
                continue
            names = sorted(opened)
            for k in range(len(names) + 1):
                for keep in combinations(names, k):
                    keep = set(keep)
                    c, h, cl = cost, set(host), list(closed)
                    for t in names:
                        if t not in keep:
                            if (consumers[t] - done or kind[t] is TensorKind.OUTPUT) and t not in h:
                                c += size[t]
                                h.add(t)
                            cl.append((t, opened[t], step - 1, size[t]))
                    missing = [t for t in operands[v] if t not in keep]
                    if any(t not in outputs[v] and t not in h for t in missing):
                        continue
                    if sum(size[t] for t in keep | set(operands[v])) > budget:
                        continue
                    c += sum(size[t] for t in missing if t not in outputs[v])
                    op2 = {t: opened[t] for t in keep}
                    op2.update({t: step for t in missing})
                    nd = done | {v}
                    for t in list(op2):
                        if not (consumers[t] - nd):  # dead after this run
                            if kind[t] is TensorKind.OUTPUT and t not in h:
                                c += size[t]
                                h.add(t)
                            cl.append((t, op2.pop(t), step, size[t]))
                    counter += 1
                    heapq.heappush(
                        heap,
                        (
                            c,
                            counter,
                            nd,
                            tuple(sorted(op2.items())),
                            frozenset(h),
                            tuple(cl),
                            step + 1,
                        ),
                    )
    return None


def _placeable(intervals, budget: int, nodes: list[int]) -> bool:
    """Whether blocks (tensor, first step, last step, size) fit in [0, budget) with no two
    blocks alive at the same step overlapping: backtracking over every address, visiting at
    most ``nodes[0]`` nodes (decremented; negative: no limit)."""
    return _assign(sorted(intervals, key=lambda x: (x[1], x[0])), 0, [], budget, nodes)


def _assign(items, i, placed, budget, nodes) -> bool:
    if i == len(items):
        return True
    if nodes[0] == 0:
        raise SearchTooLarge("the address search passed its node budget")
    nodes[0] -= 1  # below 0 from the start: no budget
    _, s, e, size = items[i]
    for a in range(0, budget - size + 1):
        clear = all(
            not (s <= pe and ps <= e and size and psz and a < pa + psz and pa < a + size)
            for (ps, pe, pa, psz) in placed
        )
        if clear and _assign(items, i + 1, [*placed, (s, e, a, size)], budget, nodes):
            return True
    return False


def reference_peak(g, order, setting=None) -> int:
    """SPEC §6 read step by step, independently of cosma.liveness: at step i a tracked tensor
    is live if it exists (its producer ran at or before i; an input or parameter: a reader
    ran at or before i) and it is needed (a reader runs at i or later, or it is created at
    i). Graph outputs get no special case: they are stored when created."""
    from cosma import Setting

    setting = setting or Setting.ACTIVATIONS
    pos = {op: i for i, op in enumerate(order)}
    peak = 0
    for i in range(len(order)):
        live = 0
        for t in g.tracked(setting):
            tensor = g.tensors[t]
            readers = [pos[c] for c in tensor.consumers]
            if tensor.producer is not None:
                exists = pos[tensor.producer] <= i
                created_now = pos[tensor.producer] == i
            else:
                exists = any(r <= i for r in readers)
                created_now = False
            needed = created_now or any(r >= i for r in readers)
            if exists and needed:
                live += tensor.size
        peak = max(peak, live)
    return peak


def check(g, plan, expected=None):
    """The simulator is the oracle: the plan replays cleanly, its objective is the replayed
    traffic (and ``expected`` if given), and an optimal plan meets its bound."""
    r = replay(g, plan)
    assert r.valid, r.violations
    assert r.non_compulsory == plan.objective
    if expected is not None:
        assert plan.objective == expected
    if plan.status is Status.OPTIMAL:
        assert plan.lower_bound == plan.objective


#: Every MILP backend, skipped with its reason where it is not installed.
SOLVERS = [
    pytest.param(name, marks=pytest.mark.skipif(not b.available(), reason=b.why_unavailable()))
    for name, b in BACKENDS.items()
]


def oracle_optimum(graph, data, alignment: int):
    """A budget drawn from ``data`` between M_R and M_P + alignment, and cosma.oracle's
    optimal plan there (addresses, moves, alignment); the example is discarded when the
    oracle gives up or proves no optimum."""
    from hypothesis import assume

    from cosma.oracle import OracleLimitError, exact_search
    from cosma.problem import budgets

    b = budgets(graph, alignment=alignment)
    budget = data.draw(st.integers(b.m_r, b.m_p + alignment), label="budget")
    try:
        best = exact_search(graph, budget, alignment=alignment, max_states=200_000)
    except OracleLimitError:
        assume(False)
    assume(best.status is Status.OPTIMAL)
    return budget, best
