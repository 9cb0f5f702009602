"""Conformance cases for the exact engines and the harness that judges them against the
exhaustive search (:mod:`cosma.oracle`), issue 10.

Two generators of tiny problems, both deterministic in their seed:

- :func:`interval_puzzle`: a chain of operators that all read one small graph input, with
  activations of unequal sizes whose lifetimes fit the budget byte-wise at every step; the
  candidate is kept only if the exhaustive search proves that the optimum *with* moves is
  strictly below the optimum *without* (so some tensor must change address).
- :func:`random_case`: a random small DAG with unequal sizes (skip connections, fan-out,
  multi-output operators, optionally parameters) and a budget between ``M_R`` and the
  no-spill peak of its file order.

:func:`judge` runs one method on one case and lists its false claims against the search.
This module sits above the solvers (like :mod:`cosma.bench`); the search itself does not
import them.

>>> case = random_case(3)
>>> case.budget >= case.m_r
True
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cosma.errors import CosmaError
from cosma.graph import Graph, GraphBuilder, Setting, TensorKind
from cosma.memory import aligned, min_required
from cosma.oracle import OracleResult, exact_search
from cosma.plan import Plan, Status
from cosma.problem import Problem
from cosma.simulator import replay


@dataclass
class Case:
    """One problem of the suite, with the code that rebuilds its graph."""

    name: str
    graph: Graph
    budget: int
    setting: Setting = Setting.ACTIVATIONS
    kind: str = "random"
    m_r: int = 0
    peak: int = 0
    code: str = ""
    _truth: dict[Any, OracleResult] = field(default_factory=dict, repr=False)

    @property
    def problem(self) -> Problem:
        return Problem(self.graph, self.budget, self.setting)

    def truth(self, *, order: Sequence[str] | None = None, moves: bool = True) -> OracleResult:
        """The exhaustive search's answer (cached), joint or for one order."""
        key = (None if order is None else tuple(order), moves)
        if key not in self._truth:
            self._truth[key] = exact_search(
                self.graph, self.budget, setting=self.setting, order=order, moves=moves
            )
        return self._truth[key]


# --- graphs ---------------------------------------------------------------------------------


class _Recorder:
    """A GraphBuilder that also writes the Python that rebuilds the graph (for findings)."""

    def __init__(self, name: str):
        self.b = GraphBuilder(name)
        self.lines = [f"GraphBuilder({name!r})"]

    def input(self, t: str, size: int) -> None:
        self.b.input(t, size)
        self.lines.append(f".input({t!r}, {size})")

    def parameter(self, t: str, size: int) -> None:
        self.b.parameter(t, size)
        self.lines.append(f".parameter({t!r}, {size})")

    def op(self, name: str, reads: list[str], outs: dict[str, int]) -> None:
        self.b.op(name, reads, outs)
        self.lines.append(f".op({name!r}, {reads!r}, {outs!r})")

    def output(self, *names: str) -> None:
        self.b.output(*names)
        self.lines.append(f".output({', '.join(repr(t) for t in names)})")

    def build(self) -> tuple[Graph, str]:
        code = "(" + "\n    ".join(self.lines) + "\n    .build())"
        return self.b.build(), code


def no_spill_peak(
    graph: Graph, order: Sequence[str] | None = None, *, setting: Setting = Setting.ACTIVATIONS
) -> int:
    """Peak of tracked live bytes of ``order`` (file order by default) with no spills, SPEC
    §6's definition of live: from creation (or first use) to last use; a graph output lives
    from its creation to its last use (just its creation step if nothing reads it)."""
    order = list(order or graph.file_order)
    pos = {v: i for i, v in enumerate(order)}
    live = [0] * len(order)
    for t in graph.tracked(setting):
        tensor = graph.tensors[t]
        uses = [pos[c] for c in tensor.consumers]
        first = pos[tensor.producer] if tensor.producer is not None else min(uses)
        last = max([*uses, first])
        for i in range(first, last + 1):
            live[i] += tensor.size
    return max(live)


def random_case(
    seed: int,
    *,
    max_ops: int = 6,
    max_size: int = 4,
    max_budget: int = 10,
    parameters: bool = False,
    budget_pick: str = "random",
) -> Case:
    """A random small DAG with unequal tensor sizes and a budget in ``[M_R, peak]`` (the
    no-spill peak of its file order), at most ``max_budget`` bytes. ``budget_pick`` is
    ``random``, ``low`` (``M_R``) or ``high`` (the peak).

    Operators read the previous operator's output most of the time (chains, so lifetimes
    overlap in order), plus older tensors (skip connections), graph inputs (fan-out) and,
    with ``parameters``, weights (so the activations+parameters setting has something to
    move). Draws are retried with the next sub-seed until ``M_R <= max_budget``.
    """
    for attempt in range(1000):
        rng = random.Random(f"random:{seed}:{attempt}")
        rec = _Recorder(f"random{seed}")
        avail: list[str] = []
        n_in = rng.randint(1, 2)
        for i in range(n_in):
            rec.input(f"x{i}", rng.randint(1, max_size))
            avail.append(f"x{i}")
        n_ops = rng.randint(3, max_ops)
        last_outs: list[str] = list(avail)
        consumed: set[str] = set()
        produced: list[str] = []
        weights: list[str] = []
        for k in range(n_ops):
            reads: list[str] = []
            if last_outs and rng.random() < 0.85:
                reads.append(rng.choice(last_outs))
            for _ in range(rng.randint(0 if reads else 1, 2)):
                t = rng.choice(avail)
                if t not in reads:
                    reads.append(t)
            if parameters and rng.random() < 0.5:
                if weights and rng.random() < 0.5:
                    w = rng.choice(weights)
                else:
                    w = f"w{len(weights)}"
                    rec.parameter(w, rng.randint(1, max_size))
                    weights.append(w)
                if w not in reads:
                    reads.append(w)
            outs = {f"t{k}_{j}": rng.randint(1, max_size) for j in range(rng.choice((1, 1, 2)))}
            rec.op(f"op{k}", reads, outs)
            consumed.update(reads)
            avail.extend(outs)
            produced.extend(outs)
            last_outs = list(outs)
        outputs = [t for t in produced if t not in consumed]
        outputs += [t for t in produced if t in consumed and rng.random() < 0.15]
        rec.output(*sorted(set(outputs), key=produced.index))
        graph, code = rec.build()
        setting = Setting.ACTIVATIONS_PARAMETERS if parameters else Setting.ACTIVATIONS
        m_r, _ = min_required(graph, setting=setting)
        peak = max(no_spill_peak(graph, setting=setting), m_r)
        if m_r > max_budget:
            continue
        hi = min(peak, max_budget)
        budget = {"low": m_r, "high": hi, "random": rng.randint(m_r, hi)}[budget_pick]
        return Case(
            f"random{seed}{'p' if parameters else ''}@{budget}",
            graph,
            budget,
            setting,
            "random",
            m_r,
            peak,
            code,
        )
    raise CosmaError(f"random_case({seed}): no graph within {max_budget} bytes in 1000 draws")


def interval_puzzle(
    seed: int, *, max_ops: int = 6, max_size: int = 3, max_budget: int = 9, tries: int = 200
) -> Case:
    """An address puzzle: lifetimes that fit the budget byte for byte at every step but
    cannot be packed at fixed addresses.

    Built like issue 10's example: a chain of operators that all read a small graph input
    ``x`` (so it is resident throughout unless it moves); at every step the live bytes are
    exactly ``W`` (each operator's outputs fill what the tensors still live leave free), and
    each activation lives to a random later operator, read there and sometimes in between.
    The budget is the largest of ``W, W-1, ..., M_R`` at which the exhaustive search proves
    that moves help: the optimum with moves is strictly below the optimum without (or there
    is no plan without). Candidates are drawn from sub-seeds of ``seed`` until one qualifies
    (at most ``tries``); the claim is the search's, not the generator's.
    """
    for attempt in range(tries):
        rng = random.Random(f"puzzle:{seed}:{attempt}")
        candidate = _tight_chain(rng, seed, max_ops, max_size, max_budget)
        if candidate is None:
            continue
        graph, code = candidate
        m_r, _ = min_required(graph)
        peak = no_spill_peak(graph)
        for budget in range(peak, m_r - 1, -1):
            case = Case(
                f"puzzle{seed}@{budget}",
                graph,
                budget,
                Setting.ACTIVATIONS,
                "puzzle",
                m_r,
                peak,
                code,
            )
            with_moves = case.truth()
            without = case.truth(moves=False)
            if with_moves.objective is not None and (
                without.objective is None or with_moves.objective < without.objective
            ):
                return case
    raise CosmaError(f"interval_puzzle({seed}): no candidate in {tries} needed a move")


def _tight_chain(
    rng: random.Random, seed: int, max_ops: int, max_size: int, max_budget: int
) -> tuple[Graph, str] | None:
    """A chain whose live bytes are exactly W at every step (None if a draw does not fit)."""
    width = rng.randint(5, max_budget)
    n = rng.randint(4, max_ops)
    x = rng.choice((1, 1, 2))
    first = rng.randint(1, max_size)
    if x + first >= width:
        return None
    end: dict[str, int] = {}
    size: dict[str, int] = {}
    made: dict[int, list[str]] = {}
    reads: dict[int, list[str]] = {k: ["x"] for k in range(n)}
    reads[0].append("i")
    side: list[str] = []
    for k in range(n):
        carried = sum(size[t] for t in end if end[t] >= k and t not in made.get(k, ()))
        fill = width - x - carried - (first if k == 0 else 0)
        if fill < 1:
            return None
        pieces = []
        while fill > 0:  # unequal pieces of at most max_size (the last operator: one)
            p = fill if k == n - 1 else rng.randint(1, min(fill, max_size))
            pieces.append(p)
            fill -= p
        made[k] = []
        for j, p in enumerate(pieces):
            t = "z" if k == n - 1 else f"t{k}_{j}"
            size[t] = p
            made[k].append(t)
            if k < n - 1 and rng.random() < 0.25:
                end[t] = k  # a side output: returned, read by nobody, lives one step
                side.append(t)
            elif k < n - 1:
                end[t] = min(n - 1, k + rng.choice((1, 1, 2, 3)))
                reads[end[t]].append(t)
                for m in range(k + 1, end[t]):
                    if rng.random() < 0.3:
                        reads[m].append(t)
        kept = [t for t in made.get(k - 1, ()) if t not in side]
        if kept and not any(t in reads[k] for t in kept):
            reads[k].append(kept[0])  # keep the chain: k reads what k-1 made (live at k)
    rec = _Recorder(f"puzzle{seed}")
    rec.input("x", x)
    rec.input("i", first)
    for k in range(n):
        rec.op(f"op{k}", list(dict.fromkeys(reads[k])), {t: size[t] for t in made[k]})
    rec.output(*side, "z")
    return rec.build()


def issue_puzzle() -> Case:
    """Issue 10's example (1 B with a move, 4 B without, budget 6 = M_R)."""
    rec = _Recorder("issue10_puzzle")
    rec.input("t0", 3)
    rec.input("t2", 1)
    rec.op("op0", ["t0", "t2"], {"t1": 2})
    rec.op("op1", ["t1", "t2"], {"t3": 1, "t4": 2})
    rec.op("op2", ["t2", "t3"], {"t5": 1, "t6": 1})
    rec.op("op3", ["t2", "t4", "t6"], {"t7": 2})
    rec.op("op4", ["t2", "t7"], {"t8": 3})
    rec.output("t5", "t8")
    graph, code = rec.build()
    return Case("issue10_puzzle@6", graph, 6, Setting.ACTIVATIONS, "puzzle", 6,
                no_spill_peak(graph), code)
