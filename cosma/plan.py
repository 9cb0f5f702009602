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

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cosma.errors import CosmaError, PlanError
from cosma.graph import Graph, Setting, TensorKind

SCHEMA_VERSION = 2
#: Versions :meth:`Plan.from_dict` reads.
READABLE_VERSIONS = (1, 2)
#: Why a load happens.
LOAD_REASONS = ("input", "parameter", "reload", "move")

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
    objective: int | float | None = None
    lower_bound: int | float | None = None
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
            "traffic": self.traffic,
            "peak": self.peak,
            "stats": {k: v for k, v in self.stats.items() if k not in VOLATILE_STATS},
            # Everything that changes from run to run of the same solve lives here, so two
            # runs with the same seed and one thread differ in this object only.
            "timing": {
                "solve_seconds": self.solve_time,
                **{k: self.stats[k] for k in VOLATILE_STATS if k in self.stats},
            },
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
        naming the field, never another exception. What the reader accepts is a complete
        schema-2 plan: :meth:`to_dict` of the result validates against ``plan.schema.json``
        (checked here, as the last step). With ``graph``, what the graph says (tensor
        sizes and kinds, input shapes, the host layout) is taken from the graph; without
        it, from the file. The one exception is a version-1 file read without its graph:
        it records no sizes (no ``tensors`` table), so the plan has none (export and
        pictures refuse it and say to replay it against its model first).
        """
        try:
            if not isinstance(doc, dict):
                raise PlanError("not a valid cosma plan: the JSON is not an object")
            version = doc.get("schema_version")
            if isinstance(version, bool) or version not in READABLE_VERSIONS:
                raise PlanError(
                    f"plan schema version {version!r} is not supported (this cosma reads "
                    f"versions {', '.join(map(str, READABLE_VERSIONS))}); re-create the plan "
                    "with this version of cosma"
                )
            gdoc = _field(doc, "graph", dict)
            ident = _field(gdoc, "identity", str, "graph.identity")
            gname = _field(gdoc, "name", str, "graph.name")
            if not _IDENTITY.fullmatch(ident):
                raise PlanError(
                    f"not a valid cosma plan: graph.identity {ident[:80]!r} is not of the "
                    "form sha256:<hex digits> that cosma writes"
                )
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
            if not _seconds(solve_time):
                raise PlanError(
                    "not a valid cosma plan: timing.solve_seconds should be a finite number "
                    "of seconds, 0 or more"
                )
            layout = _optional(doc, "host_layout", dict) or {}
            offsets = _optional(layout, "offsets", dict) or {}
            shapes = _optional(doc, "input_shapes", dict) or {}
            tensors = _optional(doc, "tensors", dict) or {}
            element_bytes = doc.get("element_bytes")
            if element_bytes is not None and (
                isinstance(element_bytes, bool)
                or not isinstance(element_bytes, (int, float))
                or not math.isfinite(element_bytes)
            ):
                raise PlanError("not a valid cosma plan: element_bytes is not a finite number")
            stats = dict(_optional(doc, "stats", dict) or {})
            stats.update({k: timing[k] for k in VOLATILE_STATS if k in timing})
            for k in VOLATILE_STATS:
                if k in stats and not (
                    isinstance(stats[k], dict) and all(map(_seconds, stats[k].values()))
                ):
                    raise PlanError(
                        f"not a valid cosma plan: timing.{k} should map names to seconds"
                    )
            objective = _objective_value(doc, "objective")
            lower_bound = _objective_value(doc, "lower_bound")
            if objective is not None and lower_bound is not None and lower_bound > objective:
                raise PlanError(
                    f"not a valid cosma plan: its lower_bound ({lower_bound:,} B) is above its "
                    f"objective ({objective:,} B); a bound cannot exceed a plan's traffic"
                )
            alignment = _whole(doc.get("alignment", 1), "alignment")
            if alignment < 1:
                raise PlanError("not a valid cosma plan: alignment should be 1 or more")
            plan = cls(
                graph_name=gname,
                graph_identity=ident,
                budget=_whole(doc.get("budget"), "budget"),
                setting=Setting.parse(_field(doc, "setting", str)),
                alignment=alignment,
                method=_field(doc, "method", str),
                status=status_value,
                steps=steps,
                solver=_optional(doc, "solver", str),
                options=dict(_optional(doc, "options", dict) or {}),
                objective=objective,
                lower_bound=lower_bound,
                solve_time=float(solve_time),
                reason=_optional(doc, "reason", str),
                traffic={
                    str(k): _whole(v, f"traffic[{k!r}]")
                    for k, v in (_optional(doc, "traffic", dict) or {}).items()
                },
                peak=_optional_whole(doc, "peak"),
                stats=stats,
                source=_optional(doc, "source", str),
                element_bytes=element_bytes,
                input_shapes={
                    str(k): [_whole(d, f"input_shapes[{k!r}]") for d in _list(v, "input_shapes")]
                    for k, v in shapes.items()
                },
                tensors={str(k): _tensor_entry(v, f"tensors[{k!r}]") for k, v in tensors.items()},
                host_layout={
                    str(k): _whole(v, f"host_layout.offsets[{k!r}]") for k, v in offsets.items()
                },
                host_bytes=_whole(layout.get("bytes") or 0, "host_layout.bytes"),
            )
            if graph is not None:
                _known_tensors(plan, graph.tensors, f"graph {graph.name!r}")
                plan.describe(graph)
            elif version == 1 and not plan.tensors:
                return plan  # no sizes to check against: see the docstring
            else:
                _known_tensors(plan, plan.tensors, "the plan's tensors table")
                moved = {
                    e.tensor
                    for _, _, e in plan.events()
                    if e.kind in (EventKind.LOAD, EventKind.STORE)
                }
                missing = sorted(moved - plan.host_layout.keys())
                if missing:
                    raise PlanError(
                        f"not a valid cosma plan: tensor {missing[0]!r} is loaded or stored "
                        "but has no offset in host_layout.offsets"
                    )
            _check_schema(plan.to_dict())
            return plan
        except PlanError:
            raise
        except CosmaError as e:
            raise PlanError(f"not a valid cosma plan: {e}") from None
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
            raise PlanError(f"not a valid cosma plan: {type(e).__name__} {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes, graph: Graph | None = None) -> Plan:
        """Read a plan from JSON text (or the bytes of a file, which must be UTF-8)."""
        return cls.from_dict(plan_document(text), graph)


def plan_document(text: str | bytes) -> dict[str, Any]:
    """The JSON object of a plan (text, or a file's bytes, which must be UTF-8); a
    PlanError for anything else: not UTF-8, not JSON, Infinity/NaN, numbers too long to
    convert, nesting too deep, not an object."""
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
    return doc


_IDENTITY = re.compile(r"sha256:[0-9a-f]+")


def _seconds(value: object) -> bool:
    """A time in seconds: a finite number, 0 or more."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value >= 0
    )


def _tensor_entry(value: object, label: str) -> dict[str, Any]:
    entry = dict(_dict(value, label))
    _whole(entry.get("bytes"), f"{label}.bytes")
    if entry.get("kind") not in [k.value for k in TensorKind]:
        raise PlanError(
            f"not a valid cosma plan: {label}.kind should be one of "
            f"{', '.join(k.value for k in TensorKind)}, not {entry.get('kind')!r}"[:300]
        )
    return entry


def _known_tensors(plan: Plan, known: Any, where: str) -> None:
    """Every event names a tensor that ``known`` (the graph's, or the file's table) has."""
    for i, phase, e in plan.events():
        if e.tensor not in known:
            raise PlanError(
                f"not a valid cosma plan: step {i} ({plan.steps[i].operator!r}) {phase} "
                f"names tensor {e.tensor[:80]!r}, which {where} does not have"
            )


@functools.lru_cache(maxsize=1)
def _schema_validator() -> Any:
    from importlib import resources

    import fastjsonschema

    text = resources.files("cosma").joinpath("plan.schema.json").read_text(encoding="utf-8")
    return fastjsonschema.compile(json.loads(text))


def _check_schema(doc: dict[str, Any]) -> None:
    """The reader's last check: the plan it returns matches ``plan.schema.json`` (what
    the specific checks above missed gets the schema's own words)."""
    import fastjsonschema

    try:
        _schema_validator()(doc)
    except fastjsonschema.JsonSchemaException as e:
        message = str(e.message).replace("data", "the plan", 1)[:300]
        raise PlanError(
            f"not a valid cosma plan: it does not match cosma's plan schema: {message}"
        ) from None


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


def _list(value: object, label: str) -> list:
    if not isinstance(value, list):
        raise PlanError(f"not a valid cosma plan: {label} should be a list")
    return value


def _dict(value: object, label: str) -> dict:
    if not isinstance(value, dict):
        raise PlanError(f"not a valid cosma plan: {label} should be an object")
    return value


def _optional_whole(doc: dict[str, Any], key: str) -> int | None:
    return None if doc.get(key) is None else _whole(doc[key], key)


def _objective_value(doc: dict[str, Any], key: str) -> int | float | None:
    """Objective or bound: whole bytes, or, for recompute versus reload (``options`` has a
    ``recompute_rate``), traffic plus rate x MACs, which need not be whole."""
    value = doc.get(key)
    options = doc.get("options")
    if (
        isinstance(options, dict)
        and options.get("recompute_rate") is not None
        and isinstance(value, float)
    ):
        if not math.isfinite(value) or not 0 <= value <= 2**53:
            raise PlanError(f"not a valid cosma plan: {key} should be a finite number >= 0")
        return value
    return _optional_whole(doc, key)


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
