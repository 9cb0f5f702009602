"""The simulator: replays a plan against a graph and reports every violation and the traffic.

It is the judge of every plan cosma returns, so it depends only on the graph and the plan
model (never on a formulation or a solver) and checks SPEC §3 literally.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosma.cost import operator_cost
from cosma.errors import PlanError
from cosma.graph import Graph, Setting, TensorKind
from cosma.memory import aligned
from cosma.plan import Event, EventKind, Plan


@dataclass(frozen=True)
class Violation:
    """One breach of the execution rules: which step, which tensor, what rule."""

    step: int | None
    kind: str
    message: str
    tensor: str | None = None

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "end"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class Replay:
    """What replaying a plan found."""

    violations: list[Violation] = field(default_factory=list)
    loaded: int = 0
    stored: int = 0
    compulsory: int = 0
    peak: int = 0
    compute: int = 0  #: cost of every operator run, recomputations included
    recompute: int = 0  #: cost of the recomputations alone

    @property
    def valid(self) -> bool:
        return not self.violations

    @property
    def total(self) -> int:
        return self.loaded + self.stored

    @property
    def non_compulsory(self) -> int:
        return self.total - self.compulsory

    def traffic(self) -> dict[str, int]:
        return {
            "loaded": self.loaded,
            "stored": self.stored,
            "total": self.total,
            "compulsory": self.compulsory,
            "non_compulsory": self.non_compulsory,
        }


def replay(
    graph: Graph,
    plan: Plan,
    *,
    budget: int | None = None,
    setting: Setting | str | None = None,
    alignment: int | None = None,
) -> Replay:
    """Replay ``plan`` on ``graph``; budget, setting and alignment default to the plan's.

    Rules checked (SPEC §3): the steps run every operator once in a topological order; every
    tracked operand is resident when its operator runs; blocks lie in ``[0, budget)``, are
    aligned and never overlap; loads need a valid host copy; a tensor is stored at most once
    and only once computed; a tensor still needed is dropped only if host has it; every
    graph output has a host copy at the end.

    Rematerialization plans (options ``recompute``/``memory: pooled``, see
    :mod:`cosma.remat`): a ``recompute`` event re-runs the producer of its tensor, which must
    have run already and whose tracked inputs must be resident; consecutive recompute events
    of one producer are one run, after which all its tracked outputs are resident; a needed
    activation may be dropped (it can be recomputed). With pooled memory, events carry no
    address and the check is that resident bytes never exceed the budget.
    """
    budget = plan.budget if budget is None else budget
    setting = Setting.parse(plan.setting if setting is None else setting)
    alignment = plan.alignment if alignment is None else alignment
    r = Replay()
    pooled = plan.options.get("memory") == "pooled"
    may_recompute = bool(plan.options.get("recompute")) or any(
        e.kind is EventKind.RECOMPUTE for _, _, e in plan.events()
    )
    tensors = graph.tensors
    tracked = set(graph.tracked(setting))
    size = {t: aligned(tensors[t].size, alignment) for t in tracked}

    def bad(step: int | None, kind: str, msg: str, tensor: str | None = None) -> None:
        r.violations.append(Violation(step, kind, msg, tensor))

    order = plan.order
    seen: set[str] = set()
    for i, op in enumerate(order):
        if op not in graph.operators:
            bad(i, "unknown operator", f"{op!r} is not an operator of {graph.name!r}")
        elif op in seen:
            bad(i, "order", f"{op!r} runs twice")
        seen.add(op)
    for op in graph.file_order:
        if op not in seen:
            bad(None, "order", f"{op!r} never runs")

    # Remaining uses per tensor, to know whether a dropped tensor is still needed.
    # (One pass over the order: counting per tensor was quadratic on 700-operator graphs.)
    remaining = dict.fromkeys(tracked, 0)
    for op in order:
        if op in graph.operators:
            for t in set(graph.operators[op].inputs):
                if t in remaining:
                    remaining[t] += 1
    resident: dict[str, tuple[int, int]] = {}  # tensor -> (address, aligned size)
    on_host = {t for t in tracked if tensors[t].kind in (TensorKind.INPUT, TensorKind.PARAMETER)}
    stored: set[str] = set()
    computed: set[str] = set(on_host)  # inputs and parameters hold data from the start
    loaded_once: set[str] = set()
    ran: set[str] = set()
    occupancy = 0

    def place(i: int, e: Event) -> None:
        nonlocal occupancy
        t = e.tensor
        if pooled:
            if t in resident:
                bad(i, "already resident", f"{e.kind.value} of {t!r}, which is already resident", t)
                return
            resident[t] = (-1, size[t])
            occupancy += size[t]
            r.peak = max(r.peak, occupancy)
            if occupancy > budget:
                bad(
                    i,
                    "over budget",
                    f"{e.kind.value} of {t!r} brings resident bytes to {occupancy}, over the "
                    f"budget of {budget}",
                    t,
                )
            return
        if e.address is None:
            bad(i, "no address", f"{e.kind.value} of {t!r} gives no address", t)
            return
        if t in resident:
            bad(i, "already resident", f"{e.kind.value} of {t!r}, which is already resident", t)
            return
        a, s = e.address, size[t]
        if a < 0 or a + s > budget:
            bad(
                i,
                "out of bounds",
                f"{t!r} at [{a}, {a + s}) is outside the scratchpad [0, {budget})",
                t,
            )
        if alignment > 1 and a % alignment:
            bad(i, "misaligned", f"{t!r} at {a} is not a multiple of {alignment}", t)
        if s > 0:
            for other, (oa, os_) in resident.items():
                if os_ > 0 and a < oa + os_ and oa < a + s:
                    bad(
                        i,
                        "overlap",
                        f"{t!r} at [{a}, {a + s}) overlaps {other!r} at [{oa}, {oa + os_})",
                        t,
                    )
        resident[t] = (a, s)
        occupancy += s
        r.peak = max(r.peak, occupancy)

    def event(i: int, op: str, phase: str, e: Event) -> None:
        nonlocal occupancy
        t = e.tensor
        if e.kind is not EventKind.RECOMPUTE:
            finish_group()
        if t not in tensors:
            bad(i, "unknown tensor", f"{e.kind.value} of {t!r}, which is not in the graph", t)
            return
        if t not in tracked:
            bad(
                i,
                "untracked tensor",
                f"{e.kind.value} of {t!r}, a {tensors[t].kind.value} not tracked under "
                f"setting {setting.value}",
                t,
            )
            return
        if e.kind is EventKind.LOAD:
            if t not in on_host:
                bad(i, "load without host copy", f"{t!r} is loaded but host has no valid copy", t)
            place(i, e)
            r.loaded += tensors[t].size
            if tensors[t].kind in (TensorKind.INPUT, TensorKind.PARAMETER) and t not in loaded_once:
                r.compulsory += tensors[t].size
            loaded_once.add(t)
        elif e.kind is EventKind.CREATE:
            if tensors[t].producer != op or phase != "before":
                bad(
                    i,
                    "create",
                    f"{t!r} can only be created before its producer {tensors[t].producer!r} runs",
                    t,
                )
            elif op in ran:
                bad(i, "create", f"{t!r} is created twice", t)
            place(i, e)
        elif e.kind is EventKind.STORE:
            if t not in resident:
                bad(i, "store of non-resident", f"{t!r} is stored but not resident", t)
            elif t not in computed:
                bad(i, "store before compute", f"{t!r} is stored before it is computed", t)
            if t in on_host:
                bad(
                    i,
                    "stored twice" if t in stored else "store of host tensor",
                    f"{t!r} already has a valid host copy; a tensor is stored at most once",
                    t,
                )
            stored.add(t)
            on_host.add(t)
            r.stored += tensors[t].size
            if tensors[t].kind is TensorKind.OUTPUT:
                r.compulsory += tensors[t].size
        elif e.kind is EventKind.DROP:
            if t not in resident:
                bad(i, "drop of non-resident", f"{t!r} is dropped but not resident", t)
                return
            needed = remaining[t] > 0 or tensors[t].kind is TensorKind.OUTPUT
            if may_recompute and tensors[t].producer is not None:
                needed = tensors[t].kind is TensorKind.OUTPUT  # can come back by recompute
            if needed and t not in on_host and t in computed:
                bad(
                    i,
                    "needed tensor lost",
                    f"{t!r} is dropped while still needed, and host has no copy",
                    t,
                )
            occupancy -= resident.pop(t)[1]
        elif e.kind is EventKind.RECOMPUTE:
            p = tensors[t].producer
            if p is None:
                bad(i, "recompute", f"{t!r} has no producer to recompute it", t)
                return
            if p not in ran:
                bad(i, "recompute", f"{t!r} is recomputed before {p!r} first ran", t)
            if group[0] != (i, phase, p):
                finish_group()
                group[0] = (i, phase, p)
                for x in graph.operands(p, setting):
                    if x in graph.operators[p].inputs and x not in resident:
                        bad(
                            i,
                            "operand not resident",
                            f"{p!r} is recomputed but its input {x!r} is not resident",
                            x,
                        )
                c = operator_cost(graph, p)
                r.compute += c
                r.recompute += c
            place(i, e)
            computed.add(t)
            return
        else:
            bad(i, "unsupported event", f"{e.kind.value} events are not replayed yet", t)

    # The recompute run in progress: (step, phase, producer); its outputs are checked when
    # it ends (all tracked outputs resident, SPEC §3).
    group: list[tuple[int, str, str] | None] = [None]

    def finish_group() -> None:
        if group[0] is None:
            return
        i, _, p = group[0]
        group[0] = None
        for x in graph.operators[p].outputs:
            if x in tracked and x not in resident:
                bad(i, "recompute", f"{p!r} is recomputed but its output {x!r} is not resident", x)

    for i, step in enumerate(plan.steps):
        op = step.operator
        if op not in graph.operators:
            continue
        for e in step.before:
            event(i, op, "before", e)
        finish_group()
        # Run: every predecessor ran, every tracked operand resident.
        for p in graph.dag.predecessors(op):
            if p not in ran:
                bad(i, "order", f"{op!r} runs before {p!r}, whose output it reads")
        for t in graph.operands(op, setting):
            if t not in resident:
                bad(i, "operand not resident", f"{op!r} runs but {t!r} is not resident", t)
        ran.add(op)
        r.compute += operator_cost(graph, op)
        for t in graph.operators[op].outputs:
            if t in tracked:
                computed.add(t)
        for t in graph.operators[op].inputs:
            if t in tracked:
                remaining[t] -= 1
        for e in step.after:
            event(i, op, "after", e)
        finish_group()

    for t in graph.outputs:
        if t in tracked and t not in on_host:
            bad(None, "output not stored", f"graph output {t!r} has no host copy at the end", t)
    return r


def verify(graph: Graph, plan: Plan) -> Plan:
    """Replay ``plan``, fill in its traffic, objective and peak and what a compiler needs
    (:meth:`~cosma.plan.Plan.describe`), and return it.

    Raises :class:`~cosma.errors.PlanError` if the plan breaks a rule or its claimed
    objective disagrees with the replay: either is a bug in the method that made it.
    """
    plan.describe(graph)
    if not plan.status.has_plan:
        return plan
    r = replay(graph, plan)
    if not r.valid:
        shown = "\n  ".join(str(v) for v in r.violations[:10])
        raise PlanError(
            f"plan from method {plan.method!r} is not valid on {graph.name!r} "
            f"({len(r.violations)} violations):\n  {shown}"
        )
    if plan.options.get("objective") == "compute":
        # Rematerialization (GPU style): no host spills; the objective is total compute.
        if r.non_compulsory:
            raise PlanError(
                f"method {plan.method!r} moves {r.non_compulsory} bytes of non-compulsory "
                "traffic in a compute-objective plan, which allows none: a bug in the method"
            )
        if plan.objective is not None and plan.objective != r.compute:
            raise PlanError(
                f"method {plan.method!r} claims a compute of {plan.objective} but the replay "
                f"measures {r.compute}: a bug in the method"
            )
        plan.objective = r.compute
        plan.traffic = r.traffic()
        plan.peak = r.peak
        plan.stats["compute"] = {"total": r.compute, "recompute": r.recompute}
        return plan
    measured: int | float = r.non_compulsory
    if plan.options.get("recompute_rate") is not None:
        # Recompute versus reload (docs/recompute.md): traffic + rate x recomputed MACs.
        measured = combined_objective(r.non_compulsory, r.recompute, plan.options["recompute_rate"])
    if plan.objective is not None and plan.objective != measured:
        if plan.options.get("recompute_rate") is None:
            raise PlanError(
                f"method {plan.method!r} claims {plan.objective} bytes of non-compulsory "
                f"traffic but the replay measures {measured}: a bug in the method"
            )
        raise PlanError(
            f"method {plan.method!r} claims an objective of {plan.objective} but the replay "
            f"measures {measured} (non-compulsory traffic {r.non_compulsory} bytes, "
            f"{r.recompute} recomputed MACs): a bug in the method"
        )
    plan.objective = measured
    plan.traffic = r.traffic()
    plan.peak = r.peak
    if r.recompute:
        plan.stats["compute"] = {"total": r.compute, "recompute": r.recompute}
    return plan


def combined_objective(traffic: int, recompute: int, rate: object) -> int | float:
    """``traffic + rate * recompute`` (bytes, and MACs at ``rate`` bytes per MAC, given as a
    number or a fraction string such as ``"4/625"``), exact: a whole number when it is one,
    else the nearest float of the exact value (so equal values compare equal).

    >>> combined_objective(100, 50, "4/625"), combined_objective(100, 625, "4/625")
    (100.32, 104)
    """
    from fractions import Fraction

    value = traffic + Fraction(str(rate)) * recompute
    return int(value) if value.denominator == 1 else float(value)
