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
This module sits above the solvers (like :mod:`cosma.app.bench`); the search itself does not
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
from cosma.graph import Graph, GraphBuilder, Setting
from cosma.memory import min_required
from cosma.oracle import OracleLimitError, OracleResult, exact_search
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

    def truth(
        self,
        *,
        order: Sequence[str] | None = None,
        moves: bool = True,
        max_states: int = 2_000_000,
    ) -> OracleResult:
        """The exhaustive search's answer (cached), joint or for one order."""
        key = (None if order is None else tuple(order), moves)
        if key not in self._truth:
            self._truth[key] = exact_search(
                self.graph,
                self.budget,
                setting=self.setting,
                order=order,
                moves=moves,
                max_states=max_states,
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


Lifetime = tuple[str, int, int, int]

#: Lifetimes ``(name, first step, last step, bytes)`` that fit ``width`` bytes at every step
#: (exactly: every step is full) but cannot be packed at fixed addresses. The first is
#: issue 10's example without its always-read input t2. The others were found by sampling
#: random full-width lifetimes (about 1 in 4,000 draws cannot be packed), checked by an
#: exhaustive packer and by the search; every instance built from them is checked again.
GADGETS: tuple[tuple[int, tuple[Lifetime, ...]], ...] = (
    (
        5,
        (
            ("t0", 0, 0, 3),
            ("t1", 0, 1, 2),
            ("t3", 1, 2, 1),
            ("t4", 1, 3, 2),
            ("t5", 2, 2, 1),
            ("t6", 2, 3, 1),
            ("t7", 3, 4, 2),
            ("t8", 4, 4, 3),
        ),
    ),
    (
        6,
        (
            ("t0_1", 0, 0, 2),
            ("t0_0", 0, 1, 3),
            ("t0_2", 0, 2, 1),
            ("t1_0", 1, 2, 1),
            ("t1_1", 1, 3, 1),
            ("t2_0", 2, 4, 1),
            ("t2_1", 2, 3, 2),
            ("t3_0", 3, 4, 2),
            ("t4_0", 4, 5, 3),
            ("t5_0", 5, 5, 3),
        ),
    ),
    # sample 9174
    (
        6,
        (
            ("t0_0", 0, 1, 2),
            ("t0_1", 0, 2, 2),
            ("t0_2", 0, 0, 2),
            ("t1_0", 1, 2, 2),
            ("t2_0", 2, 3, 1),
            ("t2_1", 2, 4, 1),
            ("t3_0", 3, 3, 1),
            ("t3_1", 3, 5, 2),
            ("t3_2", 3, 4, 1),
            ("t4_0", 4, 5, 2),
            ("t5_0", 5, 5, 2),
        ),
    ),
    # sample 9724
    (
        7,
        (
            ("t0_0", 0, 0, 3),
            ("t0_1", 0, 1, 1),
            ("t0_2", 0, 1, 3),
            ("t1_0", 1, 2, 2),
            ("t1_1", 1, 3, 1),
            ("t2_0", 2, 2, 2),
            ("t2_1", 2, 3, 2),
            ("t3_0", 3, 3, 1),
            ("t3_1", 3, 4, 3),
            ("t4_0", 4, 4, 4),
        ),
    ),
    # sample 20181
    (
        5,
        (
            ("t0_0", 0, 0, 3),
            ("t0_1", 0, 0, 1),
            ("t0_2", 0, 2, 1),
            ("t1_0", 1, 1, 2),
            ("t1_1", 1, 3, 2),
            ("t2_0", 2, 2, 1),
            ("t2_1", 2, 4, 1),
            ("t3_0", 3, 3, 2),
            ("t4_0", 4, 4, 4),
        ),
    ),
    # sample 23717
    (
        6,
        (
            ("t0_0", 0, 1, 2),
            ("t0_1", 0, 0, 2),
            ("t0_2", 0, 1, 2),
            ("t1_0", 1, 3, 1),
            ("t1_1", 1, 2, 1),
            ("t2_0", 2, 2, 2),
            ("t2_1", 2, 2, 1),
            ("t2_2", 2, 3, 1),
            ("t3_0", 3, 4, 2),
            ("t3_1", 3, 4, 2),
            ("t4_0", 4, 4, 2),
        ),
    ),
    # sample 41600
    (
        6,
        (
            ("t0_0", 0, 2, 3),
            ("t0_1", 0, 0, 3),
            ("t1_0", 1, 3, 1),
            ("t1_1", 1, 1, 2),
            ("t2_0", 2, 4, 1),
            ("t2_1", 2, 2, 1),
            ("t3_0", 3, 3, 2),
            ("t3_1", 3, 4, 2),
            ("t4_0", 4, 4, 3),
        ),
    ),
)


def interval_puzzle(
    seed: int, *, max_budget: int = 10, tries: int = 50, max_states: int = 40_000
) -> Case:
    """An address puzzle: lifetimes that fit the budget byte for byte at every step but
    cannot be packed at fixed addresses, so a plan without traffic would have to move
    something.

    Built from one of :data:`GADGETS` (chosen by ``seed``), transformed at random: reversed
    in time (packing does not care about the direction of time), with an always-read graph
    input ``x`` of 1 or 2 bytes (any packing around a fixed block shifts down into a strip
    that much narrower, so the lifetimes stay unpackable), sometimes a second always-read
    input ``pad``, random extra reads in the middle of lifetimes, and sizes sometimes
    doubled (so the engines see sizes that are not in units of one byte). Operators form a
    chain (each reads something its predecessor made), so the file order is the only one.
    The budget is the full width. A candidate is kept only if the exhaustive search proves
    that the optimum with moves is strictly below the optimum without moves (or that only
    moves make a plan possible); the claim is the search's, not the generator's. Candidates
    whose search passes ``max_states`` states are skipped, to keep generation quick.

    >>> case = interval_puzzle(0)
    >>> case.truth().objective < case.truth(moves=False).objective
    True
    """
    for attempt in range(tries):
        rng = random.Random(f"puzzle:{seed}:{attempt}")
        width, lifetimes = GADGETS[seed % len(GADGETS)]
        lifetimes = list(lifetimes)
        steps = _steps(lifetimes)
        if rng.random() < 0.5:
            lifetimes = [(n, steps - 1 - e, steps - 1 - a, s) for n, a, e, s in lifetimes]
            lifetimes.sort(key=lambda t: (t[1], t[0]))
        x = rng.choice((1, 1, 2))
        width += x
        if width < max_budget and rng.random() < 0.3:
            pad = rng.randint(1, max_budget - width)
            lifetimes.append(("pad", 0, steps - 1, pad))
            width += pad
        scale = 2 if rng.random() < 0.25 else 1
        lifetimes = [(n, a, e, s * scale) for n, a, e, s in lifetimes]
        reads = _middle_reads(rng, lifetimes)
        graph, code = _lifetimes_graph(f"puzzle{seed}", x * scale, lifetimes, reads)
        budget = width * scale
        case = Case(
            f"puzzle{seed}@{budget}",
            graph,
            budget,
            Setting.ACTIVATIONS,
            "puzzle",
            min_required(graph)[0],
            no_spill_peak(graph),
            code,
        )
        try:
            with_moves = case.truth(max_states=max_states)
            without = case.truth(moves=False, max_states=max_states)
        except OracleLimitError:
            continue  # too large to certify quickly: draw another
        if with_moves.objective is not None and (
            without.objective is None or with_moves.objective < without.objective
        ):
            return case
    raise CosmaError(f"interval_puzzle({seed}): no candidate in {tries} needed a move")


def _steps(lifetimes: Sequence[Lifetime]) -> int:
    return 1 + max(e for _, _, e, _ in lifetimes)


def _middle_reads(rng: random.Random, lifetimes: Sequence[Lifetime]) -> dict[str, list[int]]:
    """Steps at which each tensor is read: its last step, and sometimes some in between."""
    return {
        n: [m for m in range(a + 1, e) if rng.random() < 0.3] + ([e] if e > a else [])
        for n, a, e, _ in lifetimes
    }


def _lifetimes_graph(
    name: str, x: int, lifetimes: Sequence[Lifetime], reads: dict[str, list[int]]
) -> tuple[Graph, str]:
    """Operators ``op0..`` realising ``lifetimes``: step ``k``'s operator reads ``x``, what is
    read at ``k`` and (to make the file order the only order) something step ``k - 1``
    made that is still alive, and creates what starts at ``k``. The first tensor that lives
    at step 0 only is a graph input of the first operator (like issue 10's t0), ``pad`` an
    input read at every step; a tensor read by nobody is a graph output."""
    steps = _steps(lifetimes)
    reads = {n: list(r) for n, r in reads.items()}
    for k in range(1, steps):
        alive = [n for n, a, e, _ in lifetimes if a == k - 1 and e >= k]
        if alive and not any(k in reads[n] for n in alive):
            reads[alive[0]].append(k)
    first_only = [n for n, a, e, _ in lifetimes if a == 0 and e == 0][:1]
    inputs = set(first_only) | {"pad"}
    rec = _Recorder(name)
    rec.input("x", x)
    for n, _, _, s in lifetimes:
        if n in inputs:
            rec.input(n, s)
    returned = []
    for k in range(steps):
        op_reads = ["x"]
        for n, _, _, _ in lifetimes:
            if n == "pad" or (n in first_only and k == 0) or (n not in inputs and k in reads[n]):
                op_reads.append(n)
        outs = {n: s for n, a, _, s in lifetimes if a == k and n not in inputs}
        if not outs:
            outs = {f"y{k}": 0}  # an operator writes something; 0 bytes keeps the width
        rec.op(f"op{k}", op_reads, outs)
        returned += [n for n in outs if not reads.get(n)]
    rec.output(*returned)
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
    return Case(
        "issue10_puzzle@6", graph, 6, Setting.ACTIVATIONS, "puzzle", 6, no_spill_peak(graph), code
    )


# --- judging the engines ------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """One method with one backend and mode, as the conformance suite runs it."""

    label: str
    method: str
    options: tuple[tuple[str, Any], ...] = ()
    fixed: bool = False
    exact: bool = True


def engines(*, baselines: bool = True) -> tuple[list[Engine], dict[str, str]]:
    """Every exact method on every installed backend, both modes (fixed order = the file
    order), plus the baselines; and, for each backend not installed, why it is skipped."""
    from cosma.solvers import BACKENDS, method_names

    out: list[Engine] = []
    skipped: dict[str, str] = {}
    for name, backend in BACKENDS.items():
        if not backend.available():
            skipped[name] = backend.why_unavailable()
            continue
        out.append(Engine(f"milp/{name}", "milp", (("solver", name),)))
        out.append(
            Engine(f"milp-fixed/{name}", "milp-fixed", (("solver", name), ("order", "file")), True)
        )
    out.append(Engine("cpsat", "cpsat"))
    out.append(Engine("cpsat-fixed", "cpsat-fixed", (("order", "file"),), True))
    if baselines:
        out += [
            Engine(m, m, exact=False)
            for m in method_names()
            if m == "baseline" or (m.count("-") == 2 and not m.startswith(("milp", "cpsat")))
        ]
    return out, skipped


@dataclass
class Verdict:
    """One engine on one case: what it claimed, what is true, and every false claim."""

    case: str
    engine: str
    status: str
    objective: int | None
    lower_bound: int | None
    truth: int | None
    false_claims: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.false_claims


def judge(case: Case, engine: Engine, *, time_limit: float = 10.0) -> Verdict:
    """Run ``engine`` on ``case`` (1 thread, seed 0) and list its false claims against the
    exhaustive search: ``optimal`` with an objective other than the optimum (for a fixed
    order, the optimum of that order); a lower bound above the optimum; ``infeasible`` when a
    plan exists; a plan the simulator rejects or whose traffic differs from the claimed
    objective; an objective below the optimum (a bug in the search or the simulator)."""
    from cosma.solvers import solve

    options = dict(engine.options)
    if engine.exact:
        options.update(threads=1, seed=0)
    t0 = time.perf_counter()
    problems: list[str] = []
    try:
        plan: Plan | None = solve(case.problem, engine.method, time_limit=time_limit, **options)
    except CosmaError as e:  # e.g. the engine's own replay rejects its plan
        plan = None
        problems.append(f"raised {type(e).__name__}: {str(e).splitlines()[0]}")
    seconds = time.perf_counter() - t0
    order = tuple(case.graph.file_order) if engine.fixed else None
    truth = case.truth(order=order)
    best = truth.objective
    if plan is None:
        return Verdict(case.name, engine.label, "error", None, None, best, problems, seconds)
    if engine.fixed and plan.status.has_plan and tuple(plan.order) != order:
        problems.append(f"ran order {plan.order}, not the file order it was given")
    if plan.status.has_plan:
        r = replay(case.graph, plan)
        if not r.valid:
            problems.append(f"plan fails replay: {r.violations[0]}")
        elif plan.objective != r.non_compulsory:
            problems.append(
                f"claims {plan.objective} B but the replay measures {r.non_compulsory} B"
            )
        if best is None:
            problems.append("a plan replays where the search proved none exists (search bug)")
        elif plan.objective is not None and plan.objective < best:
            problems.append(
                f"objective {plan.objective} B below the true optimum {best} B "
                "(search or simulator bug)"
            )
    if best is not None:
        if plan.status is Status.OPTIMAL and plan.objective != best:
            problems.append(f"optimal {plan.objective} B, true optimum {best} B")
        if plan.lower_bound is not None and plan.lower_bound > best:
            problems.append(f"lower bound {plan.lower_bound} B above the true optimum {best} B")
        if plan.status is Status.INFEASIBLE:
            problems.append(f"infeasible, but a plan with {best} B exists")
    return Verdict(
        case.name,
        engine.label,
        plan.status.value,
        plan.objective,
        plan.lower_bound,
        best,
        problems,
        seconds,
    )


def suite(n_puzzles: int, n_random: int, *, first_seed: int = 0) -> list[Case]:
    """The conformance cases: issue 10's example, ``n_puzzles`` distinct interval puzzles
    (two seeds can draw the same transformations of one gadget: repeats are skipped) and
    ``n_random`` random cases (every third with parameters tracked; budgets cycling through
    ``M_R``, random and the peak)."""
    cases = [issue_puzzle()]
    seen = {(cases[0].graph.identity(), cases[0].budget)}
    seed = first_seed
    while len(cases) < 1 + n_puzzles:
        case = interval_puzzle(seed)
        seed += 1
        if (case.graph.identity(), case.budget) not in seen:
            seen.add((case.graph.identity(), case.budget))
            cases.append(case)
    picks = ("low", "random", "high")
    cases += [
        random_case(first_seed + i, parameters=i % 3 == 2, budget_pick=picks[i % len(picks)])
        for i in range(n_random)
    ]
    return cases
