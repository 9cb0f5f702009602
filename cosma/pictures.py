"""Pictures: the memory map of a plan, traffic against budget from a sweep, and live bytes
over a schedule. matplotlib is imported only when a picture is drawn (``pip install
'cosma[plot]'``).

Each function returns a small record of what it drew (blocks with their coordinates, the
markers, the lines) next to the matplotlib ``Figure``, so a program or a test can check the
picture without reading pixels; ``save(path)`` writes PNG or SVG by the file's extension.

>>> from cosma.graph import GraphBuilder
>>> from cosma.plan import Plan, Setting, Status, Step, create, load, store, drop
>>> g = GraphBuilder("toy").input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
>>> p = Plan(g.name, g.identity(), 12, Setting.ACTIVATIONS, 1, "hand", Status.FEASIBLE,
...          [Step("f", (load("x", 0), create("y", 4)), (store("y"), drop("x"), drop("y")))])
>>> m = memory_map(p.describe(g))
>>> [(b.tensor, b.x0, b.x1, b.y0, b.y1) for b in m.blocks]
[('x', 0, 1, 0, 4), ('y', 0, 1, 4, 12)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cosma.errors import UsageError
from cosma.graph import Graph, Setting
from cosma.memory import aligned, live_intervals
from cosma.plan import Plan


def _figure(width: float = 10.0, height: float = 5.0) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "pictures need matplotlib: pip install matplotlib (or 'cosma[plot]')"
        ) from None
    # A bare Figure needs no GUI backend and is safe in worker threads and on servers.
    return Figure(figsize=(width, height), layout="constrained")


@dataclass
class Picture:
    """A drawn figure and ``save``; subclasses list what was drawn."""

    figure: Any
    ax: Any

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the picture; PNG or SVG by extension."""
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext not in (".png", ".svg"):
            raise UsageError(f"cannot write {path}: pictures are .png or .svg files")
        self.figure.savefig(path, dpi=120)
        return os.fspath(path)


@dataclass(frozen=True)
class Block:
    """One residency: ``tensor`` at addresses ``[y0, y1)`` from step ``x0`` to before
    ``x1`` (steps are unit wide: step i spans ``[i, i+1)``)."""

    tensor: str
    x0: int
    x1: int
    y0: int
    y1: int
    how: str  # how it arrived: create, load (input/parameter/reload/move), recompute


@dataclass
class MemoryMap(Picture):
    blocks: list[Block] = field(default_factory=list)
    #: (step, address, tensor) of each marker
    loads: list[tuple[int, int, str]] = field(default_factory=list)
    stores: list[tuple[int, int, str]] = field(default_factory=list)
    moves: list[tuple[int, int, str]] = field(default_factory=list)
    budget: int = 0


def residencies(plan: Plan) -> list[Block]:
    """Every residency of ``plan`` as a block, in order of arrival.

    A tensor placed before step ``i`` runs starts at ``x = i``; dropped before step ``j``
    it ends at ``j``, dropped after step ``j`` at ``j + 1``; still resident at the end, at
    the number of steps.
    """
    open_: dict[str, tuple[int, int, int, str]] = {}  # tensor -> (x0, address, bytes, how)
    blocks: list[Block] = []
    steps = plan.annotated_steps()
    for i, s in enumerate(steps):
        for phase, x in (("before", i), ("after", i + 1)):
            for e in s[phase]:
                t, k = e["tensor"], e["kind"]
                if k in ("load", "create", "recompute"):
                    how = f"load ({e.get('reason', '?')})" if k == "load" else k
                    open_[t] = (x, e["address"] or 0, e.get("bytes", 0), how)
                elif k == "drop" and t in open_:
                    x0, a, n, how = open_.pop(t)
                    blocks.append(Block(t, x0, x, a, a + n, how))
    for t, (x0, a, n, how) in open_.items():
        blocks.append(Block(t, x0, len(steps), a, a + n, how))
    blocks.sort(key=lambda b: (b.x0, b.y0, b.tensor))
    return blocks


def memory_map(plan: Plan, *, title: str | None = None, labels: bool | None = None) -> MemoryMap:
    """Draw ``plan``: steps across, scratchpad addresses up, one rectangle per residency
    (coloured by how it arrived), loads (▲), stores (▼) and moves (◆) marked where they
    happen, the budget as a dashed line. ``labels`` names the blocks (default: when there
    are at most 60)."""
    if not plan.status.has_plan:
        raise UsageError(f"the plan has status {plan.status.value}: there is nothing to draw")
    if plan.steps and not plan.tensors:
        raise UsageError(
            "the plan has no tensor sizes (schema version 1): replay it with "
            "`cosma replay MODEL PLAN -o NEW.json` first"
        )
    from matplotlib.patches import Rectangle

    fig = _figure()
    ax = fig.add_subplot()
    blocks = residencies(plan)
    colours = {
        "create": "#8fb8de",
        "recompute": "#c9a0dc",
        "load (input)": "#9fd49f",
        "load (parameter)": "#d4d49f",
        "load (reload)": "#f2b880",
        "load (move)": "#f28e8e",
    }
    show_labels = len(blocks) <= 60 if labels is None else labels
    for b in blocks:
        ax.add_patch(
            Rectangle(
                (b.x0, b.y0),
                b.x1 - b.x0,
                b.y1 - b.y0,
                facecolor=colours.get(b.how, "#cccccc"),
                edgecolor="#333333",
                linewidth=0.4,
                label=b.tensor,
                gid=f"block:{b.tensor}",
            )
        )
        if show_labels and b.y1 > b.y0:
            ax.text(
                (b.x0 + b.x1) / 2,
                (b.y0 + b.y1) / 2,
                b.tensor,
                ha="center",
                va="center",
                fontsize=6,
                clip_on=True,
            )
    mm = MemoryMap(fig, ax, blocks=blocks, budget=plan.budget)
    for i, s in enumerate(plan.annotated_steps()):
        for phase, x in (("before", i), ("after", i + 1)):
            for e in s[phase]:
                mid = (e["address"] or 0) + e.get("bytes", 0) / 2
                if e["kind"] == "load":
                    (mm.moves if e.get("reason") == "move" else mm.loads).append(
                        (x, e["address"] or 0, e["tensor"])
                    )
                    ax.plot(
                        [x],
                        [mid],
                        marker="D" if e.get("reason") == "move" else "^",
                        color="#b22222" if e.get("reason") == "move" else "#1a7f1a",
                        markersize=4,
                        linestyle="none",
                    )
                elif e["kind"] == "store":
                    mm.stores.append((x, e["address"] or 0, e["tensor"]))
                    ax.plot([x], [mid], marker="v", color="#1f3f9f", markersize=4)
    ax.axhline(plan.budget, color="#b22222", linestyle="--", linewidth=1, label="budget")
    ax.text(0, plan.budget, f" budget {plan.budget:,} B", va="bottom", fontsize=7)
    ax.set_xlim(0, max(1, len(plan.steps)))
    ax.set_ylim(0, plan.budget * 1.08 or 1)
    ax.set_xlabel("step")
    ax.set_ylabel("scratchpad address (bytes)")
    ax.set_title(
        title
        or f"{plan.graph_name}: {plan.method}, {plan.status.value}"
        + ("" if plan.objective is None else f", non-compulsory {plan.objective:,} B")
    )
    return mm


@dataclass
class TrafficChart(Picture):
    #: method -> [(budget, traffic)]
    lines: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: [(budget, best lower bound, best traffic)]: the band where the optimum lies
    band: list[tuple[int, int, int]] = field(default_factory=list)
    #: budget name -> bytes, drawn as vertical lines
    marks: dict[str, int] = field(default_factory=dict)


def traffic_vs_budget(rows: Sequence[dict[str, Any]], *, title: str | None = None) -> TrafficChart:
    """Non-compulsory traffic against budget, one line per method, from sweep rows
    (``budget``, ``method``, ``non_compulsory``, ``lower_bound``; ``m_r``/``m_h``/``m_p``
    if present are marked). The band spans, at each budget, from the best proven lower bound
    to the best traffic found: the optimum lies inside it (a line where they meet)."""
    rows = [r for r in rows if r.get("non_compulsory") is not None]
    if not rows:
        raise UsageError("no row with a plan to draw")
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    chart = TrafficChart(fig, ax)
    for r in sorted(rows, key=lambda r: r["budget"]):
        chart.lines.setdefault(r["method"], []).append((r["budget"], r["non_compulsory"]))
    by_budget: dict[int, list[dict]] = {}
    for r in rows:
        by_budget.setdefault(r["budget"], []).append(r)
    for b in sorted(by_budget):
        rs = by_budget[b]
        best = min(r["non_compulsory"] for r in rs)
        bound = max((r["lower_bound"] or 0) for r in rs)
        chart.band.append((b, min(bound, best), best))
    xs = [b for b, _, _ in chart.band]
    ax.fill_between(
        xs,
        [lo for _, lo, _ in chart.band],
        [hi for _, _, hi in chart.band],
        color="#f2b880",
        alpha=0.4,
        label="lower bound .. best found",
    )
    for m, pts in chart.lines.items():
        ax.plot([b for b, _ in pts], [t for _, t in pts], marker="o", markersize=3, label=m)
    first = rows[0]
    suffix = "p" if first.get("setting") == Setting.ACTIVATIONS_PARAMETERS.value else ""
    for key, name in (("m_r", "M_R"), ("m_h", "M_H"), ("m_p", "M_P")):
        if first.get(key) is not None:
            chart.marks[name + suffix] = first[key]
            ax.axvline(first[key], color="#666666", linestyle=":", linewidth=1)
            ax.text(first[key], 0, f" {name}{suffix}", rotation=90, va="bottom", fontsize=7)
    ax.set_xlabel("scratchpad budget (bytes)")
    ax.set_ylabel("non-compulsory traffic (bytes)")
    ax.set_title(title or f"{first.get('graph', '')}: traffic against scratchpad size")
    ax.legend(fontsize=7)
    return chart


@dataclass
class LiveChart(Picture):
    #: schedule name -> live bytes at each step
    profiles: dict[str, list[int]] = field(default_factory=dict)
    #: budget name -> bytes, drawn as horizontal lines
    marks: dict[str, int] = field(default_factory=dict)


def live_profile(
    graph: Graph,
    order: Sequence[str],
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
) -> list[int]:
    """Tracked live bytes at each step of ``order`` with no spills (the intervals of
    :func:`cosma.memory.live_intervals`).

    >>> from cosma.graph import GraphBuilder
    >>> g = (GraphBuilder().input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
    ...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
    >>> live_profile(g, ["a", "b", "c", "d"])   # c: p, q, r live
    [11, 15, 20, 16]
    """
    setting = Setting.parse(setting)
    spans = live_intervals(graph, order, setting=setting)
    prof = [0] * len(order)
    for t, (a, b) in spans.items():
        size = aligned(graph.tensors[t].size, alignment)
        for i in range(a, b + 1):
            prof[i] += size
    return prof


def live_bytes(
    graph: Graph,
    orders: dict[str, Sequence[str]],
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    marks: dict[str, int] | None = None,
    title: str | None = None,
) -> LiveChart:
    """Live bytes over time for each named schedule, with budget marks (e.g. ``M_R``,
    ``M_P``) as horizontal lines: the ``inspect`` figures as a picture."""
    fig = _figure(9, 4)
    ax = fig.add_subplot()
    chart = LiveChart(fig, ax, marks=dict(marks or {}))
    for name, order in orders.items():
        prof = live_profile(graph, order, setting=setting, alignment=alignment)
        chart.profiles[name] = prof
        ax.step(range(len(prof)), prof, where="post", label=f"{name} (peak {max(prof):,} B)")
    same: dict[int, list[str]] = {}
    for name, value in chart.marks.items():
        same.setdefault(value, []).append(name)
    for value, names in same.items():  # marks that coincide share one line and label
        ax.axhline(value, linestyle=":", linewidth=1, color="#666666")
        ax.text(0, value, f" {' = '.join(names)} {value:,} B", va="bottom", fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("live bytes (no spills)")
    ax.set_title(title or f"{graph.name}: live bytes over the schedule ({Setting.parse(setting)})")
    ax.legend(fontsize=7)
    return chart
