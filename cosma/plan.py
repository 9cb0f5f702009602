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

from cosma.errors import CosmaError, PlanError
from cosma.graph import Graph, Setting

SCHEMA_VERSION = 1

#: Entries of ``Plan.stats`` that change from run to run (wall-clock times of phases). The
#: JSON keeps them, with the solve time, in its ``timing`` object and nowhere else.
VOLATILE_STATS = ("phases",)


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
            "traffic": self.traffic,
            "peak": self.peak,
            "stats": {k: v for k, v in self.stats.items() if k not in VOLATILE_STATS},
            # Everything that changes from run to run of the same solve lives here, so two
            # runs with the same seed and one thread differ in this object only.
            "timing": {
                "solve_seconds": self.solve_time,
                **{k: self.stats[k] for k in VOLATILE_STATS if k in self.stats},
            },
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

    def stable_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``timing``: what two runs of the same solve share (with
        the same seed, one thread, and a solver that finishes within its limit).

        >>> from cosma.graph import GraphBuilder, Setting
        >>> p = Plan("g", "id", 8, Setting.ACTIVATIONS, 1, "m", Status.FEASIBLE, solve_time=1.5)
        >>> "timing" in p.stable_dict(), p.to_dict()["timing"]
        (False, {'solve_seconds': 1.5})
        """
        doc = self.to_dict()
        doc.pop("timing")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], graph: Graph | None = None) -> Plan:
        """Read a plan; with ``graph``, refuse a plan made for another graph.

        Every field is type-checked: a hand-edited or damaged plan gives one PlanError
        naming the field, never another exception.
        """
        try:
            if not isinstance(doc, dict):
                raise PlanError("not a valid cosma plan: the JSON is not an object")
            version = doc.get("schema_version")
            if version != SCHEMA_VERSION:
                raise PlanError(
                    f"plan schema version {version!r} is not supported (this cosma reads "
                    f"version {SCHEMA_VERSION}); re-create the plan with this version"
                )
            gdoc = _field(doc, "graph", dict)
            ident = _field(gdoc, "identity", str, "graph.identity")
            gname = _field(gdoc, "name", str, "graph.name")
            if graph is not None and ident != graph.identity():
                raise PlanError(
                    f"the plan was made for graph {gname!r} ({ident}), not for "
                    f"{graph.name!r} ({graph.identity()}): load the graph the plan was made for "
                    "with the same options (element bytes, input shapes)"
                )
            steps = []
            for i, sd in enumerate(_field(doc, "steps", list)):
                where = f"steps[{i}]"
                if not isinstance(sd, dict):
                    raise PlanError(f"not a valid cosma plan: {where} is not an object")
                steps.append(
                    Step(
                        _field(sd, "operator", str, f"{where}.operator"),
                        tuple(
                            _event_from(e, f"{where}.before[{j}]")
                            for j, e in enumerate(_field(sd, "before", list, f"{where}.before"))
                        ),
                        tuple(
                            _event_from(e, f"{where}.after[{j}]")
                            for j, e in enumerate(_field(sd, "after", list, f"{where}.after"))
                        ),
                    )
                )
            status = _field(doc, "status", str)
            try:
                status_value = Status(status)
            except ValueError:
                raise PlanError(
                    f"not a valid cosma plan: unknown status {status!r} (one of "
                    f"{', '.join(s.value for s in Status)})"
                ) from None
            timing = _optional(doc, "timing", dict) or {}
            # "solve_time" at the top: plans written before the "timing" object existed.
            solve_time = timing.get("solve_seconds", doc.get("solve_time")) or 0.0
            if (
                isinstance(solve_time, bool)
                or not isinstance(solve_time, (int, float))
                or not math.isfinite(solve_time)
            ):
                raise PlanError(
                    "not a valid cosma plan: timing.solve_seconds is not a finite number"
                )
            return cls(
                graph_name=gname,
                graph_identity=ident,
                budget=_whole(doc.get("budget"), "budget"),
                setting=Setting.parse(_field(doc, "setting", str)),
                alignment=_whole(doc.get("alignment", 1), "alignment"),
                method=_field(doc, "method", str),
                status=status_value,
                steps=steps,
                solver=_optional(doc, "solver", str),
                options=dict(_optional(doc, "options", dict) or {}),
                objective=_optional_whole(doc, "objective"),
                lower_bound=_optional_whole(doc, "lower_bound"),
                solve_time=float(solve_time),
                reason=_optional(doc, "reason", str),
                traffic=dict(_optional(doc, "traffic", dict) or {}),
                peak=_optional_whole(doc, "peak"),
                stats={
                    **dict(_optional(doc, "stats", dict) or {}),
                    **{k: timing[k] for k in VOLATILE_STATS if k in timing},
                },
            )
        except PlanError:
            raise
        except CosmaError as e:
            raise PlanError(f"not a valid cosma plan: {e}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise PlanError(f"not a valid cosma plan: {type(e).__name__} {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes, graph: Graph | None = None) -> Plan:
        """Read a plan from JSON text (or the bytes of a file, which must be UTF-8)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise PlanError(
                    f"the plan is not UTF-8 text (byte {e.start}); give the JSON file "
                    "written by cosma plan -o"
                ) from None
        try:
            doc = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            raise PlanError(f"the plan is not valid JSON: {e}") from None
        except RecursionError:
            raise PlanError("the plan is not a cosma plan: its JSON is nested too deeply") from None
        except ValueError as e:  # e.g. a number with more digits than Python converts
            raise PlanError(f"the plan is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise PlanError("not a valid cosma plan: the JSON is not an object")
        return cls.from_dict(doc, graph)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a plan can hold")


def _field(doc: dict[str, Any], key: str, kind: type, label: str | None = None) -> Any:
    if key not in doc:
        raise PlanError(f"not a valid cosma plan: {label or key} is missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PlanError(
            f"not a valid cosma plan: {label or key} should be a {kind.__name__}, "
            f"not {type(value).__name__}"
        )
    return value


def _optional(doc: dict[str, Any], key: str, kind: type) -> Any:
    if doc.get(key) is None:
        return None
    return _field(doc, key, kind)


def _whole(value: object, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53:
        raise PlanError(
            f"not a valid cosma plan: {label} should be a whole number of bytes from 0 to "
            f"2^53, not {value!r}"[:300]
        )
    return value


def _optional_whole(doc: dict[str, Any], key: str) -> int | None:
    return None if doc.get(key) is None else _whole(doc[key], key)


def _event_dict(e: Event) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": e.kind.value, "tensor": e.tensor}
    if e.address is not None:
        d["address"] = e.address
    return d


def _event_from(d: object, where: str = "event") -> Event:
    if not isinstance(d, dict):
        raise PlanError(f"not a valid cosma plan: {where} is not an object")
    kind = _field(d, "kind", str, f"{where}.kind")
    try:
        kind_value = EventKind(kind)
    except ValueError:
        raise PlanError(
            f"not a valid cosma plan: {where}.kind {kind!r} is not one of "
            f"{', '.join(k.value for k in EventKind)}"
        ) from None
    addr = d.get("address")
    return Event(
        kind_value,
        _field(d, "tensor", str, f"{where}.tensor"),
        None if addr is None else _whole(addr, f"{where}.address"),
    )


def steps_from_events(
    order: Sequence[str], before: dict[int, list[Event]], after: dict[int, list[Event]]
) -> list[Step]:
    """Assemble steps from per-step event lists."""
    return [
        Step(op, tuple(before.get(i, ())), tuple(after.get(i, ()))) for i, op in enumerate(order)
    ]
