"""Plans (SPEC §7): an ordered list of steps, each running one operator with typed events
around it, plus what was asked and what was proven.

Every method, exact or heuristic, returns a :class:`Plan`, so results compare directly.
A plan is written as versioned JSON carrying the graph's identity, and can only be read back
against the same graph.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cosma.errors import PlanError
from cosma.graph import Graph, Setting

SCHEMA_VERSION = 1


class EventKind(str, Enum):
    """What happens to a tensor around an operator's run (SPEC §3)."""

    LOAD = "load"  #: read from host into [address, address+size)
    CREATE = "create"  #: reserve [address, address+size) for an output of this step's operator
    STORE = "store"  #: write to host (at most once per tensor)
    DROP = "drop"  #: free its block
    RECOMPUTE = "recompute"  #: reserved for rematerialisation; not replayed yet

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    """Solve status (SPEC §8)."""

    OPTIMAL = "optimal"  #: a valid plan, proven minimal
    FEASIBLE = "feasible"  #: a valid plan, not proven minimal: see lower_bound and gap
    INFEASIBLE = "infeasible"  #: proven that no plan exists; ``reason`` says why
    NO_SOLUTION = "no_solution"  #: a limit was reached before any plan was found

    def __str__(self) -> str:
        return self.value

    @property
    def has_plan(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclass(frozen=True)
class Event:
    """One event: ``kind`` of ``tensor``, at ``address`` for loads and creates."""

    kind: EventKind
    tensor: str
    address: int | None = None

    def __str__(self) -> str:
        at = f"@{self.address}" if self.address is not None else ""
        return f"{self.kind.value} {self.tensor}{at}"


def load(tensor: str, address: int) -> Event:
    return Event(EventKind.LOAD, tensor, address)


def create(tensor: str, address: int) -> Event:
    return Event(EventKind.CREATE, tensor, address)


def store(tensor: str) -> Event:
    return Event(EventKind.STORE, tensor)


def drop(tensor: str) -> Event:
    return Event(EventKind.DROP, tensor)


@dataclass(frozen=True)
class Step:
    """Run ``operator``; ``before`` happens first (evictions, loads, creates of its outputs),
    ``after`` once it has run (stores, drops)."""

    operator: str
    before: tuple[Event, ...] = ()
    after: tuple[Event, ...] = ()


@dataclass
class Plan:
    """The result of every method: the steps (empty unless the status has a plan), the
    problem it answers, and what the method proved.

    ``objective`` is the non-compulsory traffic in bytes as replayed by the simulator;
    ``lower_bound`` the best proven bound on it; ``gap`` follows from the two.
    """

    graph_name: str
    graph_identity: str
    budget: int
    setting: Setting
    alignment: int
    method: str
    status: Status
    steps: list[Step] = field(default_factory=list)
    solver: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    objective: int | None = None
    lower_bound: int | None = None
    solve_time: float = 0.0
    reason: str | None = None
    traffic: dict[str, int] = field(default_factory=dict)
    peak: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        """The schedule: operators in the order the steps run them."""
        return [s.operator for s in self.steps]

    @property
    def gap(self) -> float | None:
        """Relative gap ``(objective - lower_bound) / objective``; 0 when both are 0."""
        if self.objective is None or self.lower_bound is None:
            return None
        if self.objective == 0:
            return 0.0
        return (self.objective - self.lower_bound) / self.objective

    def events(self) -> Iterable[tuple[int, str, Event]]:
        """Every event with its step index and phase (``before``/``after``)."""
        for i, step in enumerate(self.steps):
            for e in step.before:
                yield i, "before", e
            for e in step.after:
                yield i, "after", e

    # --- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "schema_version": SCHEMA_VERSION,
            "graph": {"name": self.graph_name, "identity": self.graph_identity},
            "budget": self.budget,
            "setting": self.setting.value,
            "alignment": self.alignment,
            "method": self.method,
            "solver": self.solver,
            "options": self.options,
            "status": self.status.value,
            "reason": self.reason,
            "objective": self.objective,
            "lower_bound": self.lower_bound,
            "gap": None if gap is None or math.isnan(gap) else gap,
            "solve_time": self.solve_time,
            "traffic": self.traffic,
            "peak": self.peak,
            "stats": self.stats,
            "steps": [
                {
                    "operator": s.operator,
                    "before": [_event_dict(e) for e in s.before],
                    "after": [_event_dict(e) for e in s.after],
                }
                for s in self.steps
            ],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], graph: Graph | None = None) -> Plan:
        """Read a plan; with ``graph``, refuse a plan made for another graph."""
        try:
            version = doc["schema_version"]
            if version != SCHEMA_VERSION:
                raise PlanError(
                    f"plan schema version {version} is not supported (this cosma reads "
                    f"version {SCHEMA_VERSION}); re-create the plan with this version"
                )
            ident = doc["graph"]["identity"]
            if graph is not None and ident != graph.identity():
                raise PlanError(
                    f"the plan was made for graph {doc['graph']['name']!r} ({ident}), not for "
                    f"{graph.name!r} ({graph.identity()}): load the graph the plan was made for "
                    "with the same options (element bytes, input shapes)"
                )
            steps = [
                Step(
                    s["operator"],
                    tuple(_event_from(e) for e in s["before"]),
                    tuple(_event_from(e) for e in s["after"]),
                )
                for s in doc["steps"]
            ]
            return cls(
                graph_name=doc["graph"]["name"],
                graph_identity=ident,
                budget=int(doc["budget"]),
                setting=Setting.parse(doc["setting"]),
                alignment=int(doc.get("alignment", 1)),
                method=doc["method"],
                status=Status(doc["status"]),
                steps=steps,
                solver=doc.get("solver"),
                options=dict(doc.get("options") or {}),
                objective=doc.get("objective"),
                lower_bound=doc.get("lower_bound"),
                solve_time=float(doc.get("solve_time") or 0.0),
                reason=doc.get("reason"),
                traffic=dict(doc.get("traffic") or {}),
                peak=doc.get("peak"),
                stats=dict(doc.get("stats") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"not a valid cosma plan: {type(e).__name__} {e}") from None

    @classmethod
    def from_json(cls, text: str, graph: Graph | None = None) -> Plan:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"the plan is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise PlanError("not a valid cosma plan: the JSON is not an object")
        return cls.from_dict(doc, graph)


def _event_dict(e: Event) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": e.kind.value, "tensor": e.tensor}
    if e.address is not None:
        d["address"] = e.address
    return d


def _event_from(d: dict[str, Any]) -> Event:
    addr = d.get("address")
    return Event(EventKind(d["kind"]), d["tensor"], None if addr is None else int(addr))


def steps_from_events(
    order: Sequence[str], before: dict[int, list[Event]], after: dict[int, list[Event]]
) -> list[Step]:
    """Assemble steps from per-step event lists."""
    return [
        Step(op, tuple(before.get(i, ())), tuple(after.get(i, ()))) for i, op in enumerate(order)
    ]
