"""A problem: a graph, a scratchpad budget, a setting and an alignment (SPEC §2, §6).

Budgets are given in bytes (``262144``, ``256KiB``) or by name: ``M_R`` (the largest operator
footprint), ``M_P`` (the minimum no-spill peak over all schedules), ``M_H`` (halfway), and
their parameter-tracking forms ``M_Rp``, ``M_Hp``, ``M_Pp``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cosma.errors import UsageError
from cosma.graph import Graph, Setting
from cosma.liveness import liveness
from cosma.memory import min_required
from cosma.plan import Plan, Status
from cosma.schedule import PeakResult, min_peak_order
from cosma.units import format_bytes, parse_bytes

BUDGET_NAMES = ("M_R", "M_H", "M_P", "M_Rp", "M_Hp", "M_Pp")


@dataclass(frozen=True)
class Budgets:
    """``M_R``, ``M_P``, ``M_H`` of a graph under one setting, with how ``M_P`` was found."""

    setting: Setting
    m_r: int
    m_r_operator: str
    m_p: int
    m_h: int
    min_peak: PeakResult

    def by_name(self, name: str) -> int:
        return {"M_R": self.m_r, "M_P": self.m_p, "M_H": self.m_h}[name.rstrip("p")]


def budgets(
    graph: Graph,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    time_limit: float | None = 30.0,
) -> Budgets:
    """Compute ``M_R``, ``M_P`` (exact where the min-peak search completes) and ``M_H``.

    If the min-peak search hits its limit, ``M_P`` is the best peak found (still a budget
    with a zero-spill plan) and ``min_peak.optimal`` is False.

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["x"], {"q": 20})
    ...      .op("c", ["p"], {"p2": 1}).op("d", ["q"], {"q2": 1})
    ...      .op("e", ["p2", "q2"], {"z": 1}).output("z").build())
    >>> b = budgets(g)
    >>> b.m_r, b.m_p, b.m_h
    (21, 22, 21)
    """
    lv = liveness(graph, setting=setting, alignment=alignment)
    m_r, op = lv.m_r()
    mp = min_peak(graph, setting=setting, alignment=alignment, time_limit=time_limit)
    return Budgets(lv.setting, m_r, lv.ops[op], mp.peak, (m_r + mp.peak) // 2, mp)


_MIN_PEAK: dict[tuple[str, str, int], tuple[float, PeakResult]] = {}


def min_peak(
    graph: Graph,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    time_limit: float | None = 30.0,
) -> PeakResult:
    """:func:`~cosma.schedule.min_peak_order`, remembered per graph identity, setting and
    alignment: the budget names, the baselines and the exact engines all ask for it within
    one call. A proven result is reused always; one stopped by its limit only by calls
    with no larger limit.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> min_peak(g).peak, min_peak(g) is min_peak(g)
    (12, True)
    """
    setting = Setting.parse(setting)
    key = (graph.identity(), setting.value, alignment)
    limit = math.inf if time_limit is None else time_limit
    hit = _MIN_PEAK.get(key)
    if hit is not None and (hit[1].optimal or limit <= hit[0]):
        return hit[1]
    mp = min_peak_order(graph, setting=setting, alignment=alignment, time_limit=time_limit)
    if len(_MIN_PEAK) > 64:
        _MIN_PEAK.clear()
    _MIN_PEAK[key] = (limit, mp)
    return mp


def budget_setting(budget: str | int) -> Setting | None:
    """The setting a budget name implies (``M_Rp`` -> parameters), or None for bytes."""
    text = str(budget).strip()
    if text in BUDGET_NAMES:
        return Setting.ACTIVATIONS_PARAMETERS if text.endswith("p") else Setting.ACTIVATIONS
    return None


def resolve_budget(
    graph: Graph,
    budget: str | int,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    time_limit: float | None = 30.0,
) -> int:
    """The budget in bytes: a number with optional unit, or a name such as ``M_H``.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> resolve_budget(g, "M_R"), resolve_budget(g, "1KiB")
    (12, 1024)
    """
    setting = Setting.parse(setting)
    if isinstance(budget, int):
        return budget
    text = str(budget).strip()
    implied = budget_setting(text)
    if implied is not None:
        if implied is not setting:
            raise UsageError(
                f"budget {text} is a figure of the {implied.value} setting, but the setting "
                f"is {setting.value}: use --setting {implied.value} or the "
                f"{'M_R/M_H/M_P' if implied is Setting.ACTIVATIONS else 'M_Rp/M_Hp/M_Pp'} form"
            )
        return budgets(graph, setting=setting, alignment=alignment, time_limit=time_limit).by_name(
            text
        )
    if re.fullmatch(r"(?i)m_[a-z]+p?", text):
        raise UsageError(f"unknown budget name {text!r}: use one of {', '.join(BUDGET_NAMES)}")
    return parse_bytes(text)


@dataclass(frozen=True)
class Problem:
    """What a plan finder solves: fit ``graph`` in ``budget`` bytes under ``setting``."""

    graph: Graph
    budget: int
    setting: Setting = Setting.ACTIVATIONS
    alignment: int = 1

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise UsageError(f"the budget must not be negative ({self.budget})")
        if self.alignment < 1:
            raise UsageError(f"alignment must be a positive number of bytes ({self.alignment})")
        object.__setattr__(self, "setting", Setting.parse(self.setting))

    def new_plan(
        self, method: str, *, solver: str | None = None, options: dict | None = None
    ) -> Plan:
        """An empty result for this problem (status ``no_solution``) for a method to fill."""
        g = self.graph
        return Plan(
            g.name,
            g.identity(),
            self.budget,
            self.setting,
            self.alignment,
            method,
            Status.NO_SOLUTION,
            solver=solver,
            options=dict(options or {}),
        )

    def shortfall(self) -> str | None:
        """Why no plan can exist (budget below ``M_R``), or None.

        >>> from cosma.graph import GraphBuilder
        >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
        >>> print(Problem(g, 10).shortfall())
        needs at least 12 B (12 bytes) because of operator 'f' (Op), whose inputs and
        outputs must be resident together; the budget is 10 B
        """
        m_r, op = min_required(self.graph, setting=self.setting, alignment=self.alignment)
        if self.budget >= m_r:
            return None
        return (
            f"needs at least {format_bytes(m_r)} ({m_r:,} bytes) because of operator {op!r} "
            f"({self.graph.operators[op].op_type}), whose inputs and outputs must be resident "
            f"together; the budget is {format_bytes(self.budget)}"
        )
