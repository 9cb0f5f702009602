"""Plans (SPEC §7): an ordered list of steps, each running one operator with typed events
around it, plus what was asked and what was proven.

Every method, exact or heuristic, returns a :class:`Plan`, so results compare directly.
A plan is written as versioned JSON carrying the graph's identity, and can only be read back
against the same graph. Schema version 2 (this one; version 1 files are still read) is
self-contained for a compiler: every event carries its tensor, bytes and scratchpad address;
loads say why they happen (``input``, ``parameter``, ``reload``, ``move``); loads and stores
carry an offset in a host layout the plan defines; the plan records the element size, the
input shapes and the setting. ``plan.schema.json`` next to this module is its JSON Schema,
and :meth:`Plan.dma_commands` flattens a plan into the DMA commands a runtime issues.
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

SCHEMA_VERSION = 2
#: Versions :meth:`Plan.from_dict` reads.
READABLE_VERSIONS = (1, 2)
#: Why a load happens.
LOAD_REASONS = ("input", "parameter", "reload", "move")


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
    #: Where the graph came from (``zoo:NAME`` or a path), if cosma loaded it.
    source: str | None = None
    #: The uniform element size the graph was loaded with; None: each tensor's own type.
    element_bytes: float | None = None
    #: Shapes of the graph inputs (from the graph), by name.
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    #: Every tensor the steps touch: ``{"bytes": size, "kind": kind}``.
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Host offset of every tensor that is loaded or stored (see :meth:`describe`).
    host_layout: dict[str, int] = field(default_factory=dict)
    #: Bytes of host memory the layout spans.
    host_bytes: int = 0

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

    # --- what a compiler needs ---------------------------------------------------------

    def describe(self, graph: Graph) -> Plan:
        """Record the facts a compiler needs that the steps alone do not say: the size and
        kind of every tensor they touch, the input shapes, and the host layout (inputs,
        parameters and stored tensors, each at its own offset, in order of first use,
        aligned like the scratchpad). Returns the plan itself.

        >>> from cosma.graph import GraphBuilder
        >>> g = (GraphBuilder().input("x", 4, shape=(1, 4)).op("f", ["x"], {"y": 8})
        ...      .output("y").build())
        >>> p = Plan(g.name, g.identity(), 12, Setting.ACTIVATIONS, 1, "hand", Status.FEASIBLE,
        ...          [Step("f", (load("x", 0), create("y", 4)), (store("y"),))])
        >>> p.describe(g).host_layout, p.input_shapes
        ({'x': 0, 'y': 4}, {'x': [1, 4]})
        """
        self.input_shapes = {
            t: list(graph.tensors[t].shape or ()) for t in graph.inputs if graph.tensors[t].shape
        }
        touched = dict.fromkeys(e.tensor for _, _, e in self.events())
        self.tensors = {
            t: {"bytes": graph.tensors[t].size, "kind": graph.tensors[t].kind.value}
            for t in touched
            if t in graph.tensors
        }
        step = max(1, self.alignment)
        offset = 0
        layout: dict[str, int] = {}
        for _, _, e in self.events():
            if e.kind in (EventKind.LOAD, EventKind.STORE) and e.tensor not in layout:
                size = self.tensors.get(e.tensor, {}).get("bytes", 0)
                layout[e.tensor] = offset
                offset += -(-size // step) * step
        self.host_layout, self.host_bytes = layout, offset
        return self

    def annotated_steps(self) -> list[dict[str, Any]]:
        """The steps as schema-2 dicts: every event with ``bytes`` and ``address`` (where
        the block is), loads with ``reason`` and ``host_offset``, stores with
        ``host_offset``. Needs :meth:`describe` (done for every plan cosma returns)."""
        where: dict[str, int | None] = {}
        seen: set[str] = set()
        resident_at_last_run: set[str] = set()
        out = []

        def ev(e: Event) -> dict[str, Any]:
            t = e.tensor
            d: dict[str, Any] = {"kind": e.kind.value, "tensor": t}
            info = self.tensors.get(t)
            if info is not None:
                d["bytes"] = info["bytes"]
            if e.kind in (EventKind.LOAD, EventKind.CREATE, EventKind.RECOMPUTE):
                d["address"] = e.address
                if e.kind is EventKind.LOAD:
                    if (
                        t not in seen
                        and info is not None
                        and info["kind"]
                        in (
                            "input",
                            "parameter",
                        )
                    ):
                        d["reason"] = info["kind"]
                    elif t in resident_at_last_run:
                        d["reason"] = "move"
                    else:
                        d["reason"] = "reload"
                where[t] = e.address
                seen.add(t)
            else:
                d["address"] = where.get(t, e.address)
                if e.kind is EventKind.DROP:
                    where.pop(t, None)
            if e.kind in (EventKind.LOAD, EventKind.STORE) and t in self.host_layout:
                d["host_offset"] = self.host_layout[t]
            return d

        for s in self.steps:
            before = [ev(e) for e in s.before]
            resident_at_last_run = set(where)
            after = [ev(e) for e in s.after]
            out.append({"operator": s.operator, "before": before, "after": after})
        return out

    def dma_commands(self) -> list[dict[str, Any]]:
        """The plan as one flat list of commands in issue order: ``load`` (host ->
        scratchpad) and ``store`` (scratchpad -> host) with ``bytes``, ``address`` (in the
        scratchpad) and ``host_offset``; ``run`` for each operator, with the addresses of
        its resident operands; ``recompute`` where a tensor is recomputed. Creates and
        drops move no data and only show up as the addresses of later commands."""
        cmds: list[dict[str, Any]] = []
        where: dict[str, int] = {}
        for i, s in enumerate(self.annotated_steps()):
            for phase in ("before", "run", "after"):
                if phase == "run":
                    cmds.append(
                        {
                            "kind": "run",
                            "step": i,
                            "operator": s["operator"],
                            "resident": dict(where),
                        }
                    )
                    continue
                for e in s[phase]:
                    k = e["kind"]
                    if k in ("load", "create", "recompute"):
                        where[e["tensor"]] = e["address"]
                    elif k == "drop":
                        where.pop(e["tensor"], None)
                    if k in ("load", "store", "recompute"):
                        cmds.append({"step": i, **e})
        for n, c in enumerate(cmds):
            c["seq"] = n
        return cmds

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
            "source": self.source,
            "element_bytes": self.element_bytes,
            "input_shapes": self.input_shapes,
            "tensors": self.tensors,
            "host_layout": {
                "alignment": max(1, self.alignment),
                "bytes": self.host_bytes,
                "offsets": self.host_layout,
            },
            "steps": self.annotated_steps(),
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], graph: Graph | None = None) -> Plan:
        """Read a plan; with ``graph``, refuse a plan made for another graph."""
        try:
            version = doc["schema_version"]
            if version not in READABLE_VERSIONS:
                raise PlanError(
                    f"plan schema version {version} is not supported (this cosma reads "
                    f"versions {', '.join(map(str, READABLE_VERSIONS))}); re-create the plan "
                    "with this version of cosma"
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
            layout = doc.get("host_layout") or {}
            plan = cls(
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
                source=doc.get("source"),
                element_bytes=doc.get("element_bytes"),
                input_shapes={k: list(v) for k, v in (doc.get("input_shapes") or {}).items()},
                tensors={k: dict(v) for k, v in (doc.get("tensors") or {}).items()},
                host_layout={k: int(v) for k, v in (layout.get("offsets") or {}).items()},
                host_bytes=int(layout.get("bytes") or 0),
            )
            if graph is not None:
                plan.describe(graph)
            return plan
        except (KeyError, TypeError, ValueError, AttributeError) as e:
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
