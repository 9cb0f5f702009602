"""The one benchmark runner: ``cosma bench``, ``cosma sweep``, ``cosma.sweep`` and the
scripts in ``benchmarks/`` all run their cases through :func:`run_cases`.

A :class:`Case` is one (graph, budget, method) run; :func:`run_case` solves it, replays the
plan and returns one row. :func:`run_cases` runs many: in this process (``serial``), in
local worker processes (``process``, the default) or on a Dask cluster (``dask``), appending
each row to a JSON-lines file the moment its case finishes, so an interrupted run loses no
finished case. Like the CLI, this module sits at the edge: it uses the solvers, nothing
below imports it.

The reference evaluation's protocol (SPEC §6): networks x budgets (``M_R``, ``M_H``, ``M_P``;
``M_Rp``, ``M_Hp``, ``M_Pp``) x methods (the four baseline combinations, each exact method
with each installed backend), with a per-case time limit.

>>> rows = run(["zoo:resnet50"], budgets=["M_R"], methods=["file-arena-belady"])
>>> rows[0]["non_compulsory"], rows[0]["status"]
(0, 'optimal')
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cosma.errors import UsageError
from cosma.graph import Graph, Setting
from cosma.problem import Budgets, Problem
from cosma.problem import budgets as graph_budgets
from cosma.simulator import replay
from cosma.solvers import BACKENDS, PROTOCOL, solve

log = logging.getLogger(__name__)

BUDGETS = ("M_R", "M_H", "M_P", "M_Rp", "M_Hp", "M_Pp")
BASELINES = tuple(f"{o}-{a}-{r}" for o, a, r in PROTOCOL)
EXECUTORS = ("process", "serial", "dask")

#: The reference's published results (Li, Gupta, Malik, arXiv 2311.18246), with Gurobi.
REFERENCE = {
    "reduction_at_M_R": 0.84,
    "traffic_at_M_P": 0,
    "mean_solve_seconds": 0.296,
    "nas_reduction": 0.85,
}


def default_methods() -> list[str]:
    """The protocol's four baselines, the MILP with every installed backend, and CP-SAT."""
    exact = [f"milp:{n}" for n, b in BACKENDS.items() if b.available()]
    return [*BASELINES, *exact, "cpsat"]


@dataclass(frozen=True)
class Case:
    """One run: ``model`` (``zoo:NAME``, an ONNX path or a Graph) at ``budget`` (a name or
    bytes) with ``method`` (a name from ``cosma methods``, optionally ``:SOLVER``).

    ``options`` go to the method (e.g. ``{"order": "minpeak", "shortcut": False}``);
    ``extra`` is copied into the row as is (labels such as ``mode``, or the sweep's marks).
    """

    model: str | Graph
    budget: str | int
    method: str
    time_limit: float = 120.0
    setting: str | None = None
    alignment: int = 1
    element_bytes: float | None = 1
    budget_name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Keys of ``plan.stats`` copied into the row (e.g. ``("cuts", "placement")``).
    stats: tuple[str, ...] = ()


@functools.lru_cache(maxsize=8)
def _load(source: str, element_bytes: float | None) -> Graph:
    from cosma.graphs import load_graph

    return load_graph(source, element_bytes=element_bytes)


@functools.lru_cache(maxsize=32)
def _figures(graph: Graph, setting: Setting, alignment: int, time_limit: float) -> Budgets:
    return graph_budgets(graph, setting=setting, alignment=alignment, time_limit=time_limit)


def run_case(case: Case) -> dict[str, Any]:
    """Solve one case, replay the plan, and return its row. Runs in a worker process or on
    a Dask worker as well as here: everything it needs is in ``case``."""
    g = case.model if isinstance(case.model, Graph) else _load(case.model, case.element_bytes)
    name = str(case.budget)
    implied = Setting.ACTIVATIONS_PARAMETERS if name.endswith("p") and name in BUDGETS else None
    setting = Setting.parse(case.setting) if case.setting else (implied or Setting.ACTIVATIONS)
    figures = None
    if isinstance(case.budget, str) and case.budget in BUDGETS:
        figures = _figures(g, setting, case.alignment, case.time_limit)
        nbytes = figures.by_name(case.budget)
    else:
        from cosma.units import parse_bytes

        nbytes = case.budget if isinstance(case.budget, int) else parse_bytes(case.budget)
    problem = Problem(g, nbytes, setting, case.alignment)
    method, _, solver = case.method.partition(":")
    options: dict[str, Any] = {"time_limit": case.time_limit, **case.options}
    if solver:
        options["solver"] = solver
    t0 = time.perf_counter()
    plan = solve(problem, method, **options)
    seconds = time.perf_counter() - t0
    r = replay(g, plan)
    if plan.status.has_plan and not (r.valid and r.non_compulsory == plan.objective):
        from cosma.errors import PlanError

        raise PlanError(f"{g.name} {name} {case.method}: the plan does not replay as reported")
    return {
        "graph": g.name,
        "operators": g.num_operators,
        "setting": setting.value,
        "budget_name": case.budget_name or name,
        "budget": nbytes,
        "m_p_proven": figures.min_peak.optimal if figures else None,
        "method": case.method,
        "status": plan.status.value,
        "non_compulsory": plan.objective,
        "compulsory": r.compulsory if plan.status.has_plan else None,
        "lower_bound": plan.lower_bound,
        "gap": plan.gap,
        "seconds": round(seconds, 3),
        "rows": plan.stats.get("rows"),
        "columns": plan.stats.get("columns"),
        **{k: plan.stats.get(k) for k in case.stats},
        **dict(case.extra),
    }


def _serial(cases: Sequence[Case]) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, c in enumerate(cases):
        yield i, run_case(c)


#: In a worker process: whether a case is running, and whether it is already unwinding.
_worker_state = {"in_case": False, "stopping": False}


def _worker_started() -> None:
    """Each worker process: SIGTERM (sent by the parent when the run ends early) and SIGINT
    (a terminal's Ctrl-C reaches the whole process group) unwind the running case like
    Ctrl-C, so its ``finally`` blocks kill its solver's process group and remove its
    temporary folders; the interruption comes back to the parent as the case's exception.
    An idle worker just exits."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _worker_signal)


def _worker_signal(signum: int, frame: object) -> None:
    if not _worker_state["in_case"]:
        os._exit(128 + signum)
    if _worker_state["stopping"]:
        return  # already unwinding: let the cleanup finish
    _worker_state["stopping"] = True
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _run_in_worker(case: Case) -> dict[str, Any]:
    _worker_state.update(in_case=True, stopping=False)
    try:
        return run_case(case)
    finally:
        _worker_state["in_case"] = False


def _stop_workers(pool: Any) -> None:
    """SIGTERM to every worker of ``pool`` (see :func:`_worker_started`)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the executor keeps its processes in a private mapping.
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            p.terminate()


def _processes(cases: Sequence[Case], workers: int | None) -> Iterator[tuple[int, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: solver libraries start threads, and forking a process with threads is unsafe.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers or 1, mp_context=ctx, initializer=_worker_started
    )
    finished = False
    try:
        futures = {pool.submit(_run_in_worker, c): i for i, c in enumerate(cases)}
        for f in as_completed(futures):
            yield futures[f], f.result()
        finished = True
    finally:
        if not finished:  # a signal, an error, or the caller stopped early: stop the cases
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(cases: Sequence[Case], workers: int | None, scheduler: Any) -> Iterator[tuple[int, dict]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UsageError(
            "--executor dask needs Dask distributed: pip install 'cosma[dask]'"
        ) from None
    own: list[Any] = []
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True)
        own.append(cluster)
        client = Client(cluster)
        own.insert(0, client)
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        # An address ("tcp://host:8786") or a cluster object (LocalCluster, SLURMCluster...).
        client = Client(scheduler)
        own.append(client)
    try:
        futures = {
            client.submit(run_case, c, pure=False, key=f"cosma-case-{i}-{time.time_ns()}"): i
            for i, c in enumerate(cases)
        }
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:
            client.cancel(list(futures))
    finally:
        for x in own:
            x.close()


def _bar(total: int, enabled: bool) -> Any:
    """A progress bar on standard error, only when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)


def run_cases(
    cases: Sequence[Case],
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: Any = None,
    out: str | os.PathLike[str] | None = None,
    progress_bar: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``cases``; rows come back in the order of ``cases``.

    ``out`` names a JSON-lines file each row is appended to (and flushed) as soon as its
    case finishes; ``on_row`` is called at the same moment. ``executor`` is ``process``
    (``workers`` local processes, 1 by default), ``serial`` (this process) or ``dask``
    (``scheduler``: an address such as ``tcp://10.0.0.5:8786``, a ``Client``, a cluster
    object, or None for a ``LocalCluster`` of ``workers`` processes).

    >>> rows = run_cases([Case("zoo:resnet50", "M_R", "file-arena-belady")], executor="serial")
    >>> rows[0]["graph"], rows[0]["status"]
    ('resnet50', 'optimal')
    """
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1 (got {workers})")
    stream = None
    if out is not None:
        path = Path(out)
        if not path.parent.exists():
            raise UsageError(f"cannot write {out}: the folder {path.parent} does not exist")
        stream = path.open("a")
    if executor == "serial":
        it: Iterable[tuple[int, dict]] = _serial(cases)
    elif executor == "process":
        it = _processes(cases, workers)
    else:
        it = _dask(cases, workers, scheduler)
    rows: dict[int, dict[str, Any]] = {}
    bar = _bar(len(cases), progress_bar)
    try:
        for i, row in it:
            rows[i] = row
            if stream is not None:
                stream.write(json.dumps(row) + "\n")
                stream.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{row['graph']} {row['budget_name']} {row['method']}")
            if on_row is not None:
                on_row(row)
    finally:
        if bar is not None:
            bar.close()
        if stream is not None:
            stream.close()
        if isinstance(it, Iterator):
            with contextlib.suppress(Exception):
                it.close()  # type: ignore[attr-defined]
    return [rows[i] for i in sorted(rows)]


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows from a JSON-lines stream written by :func:`run_cases` (or a JSON list)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def protocol_cases(
    graphs: Sequence[str],
    *,
    budgets: Sequence[str] = BUDGETS,
    methods: Sequence[str] | None = None,
    time_limit: float = 120.0,
) -> list[Case]:
    """The protocol's cases: every graph x budget x method, 1 byte per element."""
    methods = list(methods or default_methods())
    return [
        Case(src, b, m, time_limit=time_limit, element_bytes=1)
        for src in graphs
        for b in budgets
        for m in methods
    ]


def run(
    graphs: Sequence[str],
    *,
    budgets: Sequence[str] = BUDGETS,
    methods: Sequence[str] | None = None,
    time_limit: float = 120.0,
    progress: Callable[[dict], None] | None = None,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: Any = None,
    out: str | os.PathLike[str] | None = None,
) -> list[dict]:
    """One row per (graph, budget, method) of the protocol. A method is a name from
    ``cosma methods``, optionally with ``:SOLVER`` (``milp:highs``). Graphs are ``zoo:NAME``
    or ONNX paths at 1 byte per element."""
    cases = protocol_cases(graphs, budgets=budgets, methods=methods, time_limit=time_limit)
    return run_cases(
        cases,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        out=out,
        on_row=progress,
    )


def machine() -> str:
    """The machine and versions the numbers come from."""
    versions = []
    for pkg in ("cosma", "ortools", "pulp", "highspy", "networkx", "onnx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, Python "
        f"{platform.python_version()}; " + ", ".join(versions)
    )


def report(rows: list[dict], *, time_limit: float, total_seconds: float) -> str:
    """A Markdown report: per case the traffic of every method, the reduction against the
    best baseline, status and time; then the summary and how it compares to the reference."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    exact = [m for m in methods if m not in BASELINES]
    cases: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cases.setdefault((r["graph"], r["budget_name"]), {})[r["method"]] = r

    head = ["graph", "budget", "bytes", *methods, "best baseline", "reduction"]
    lines = [
        "# The reference protocol, reproduced",
        "",
        "Non-compulsory traffic in bytes at 1 byte per element; each plan replayed by the "
        "simulator. Exact methods show traffic / status / seconds; `opt` means proven optimal, "
        "`feas` a plan with a gap. Reduction: the best exact result against the best of the "
        f"protocol's four baselines. Time limit {time_limit:g} s per case; total "
        f"{total_seconds:.0f} s.",
        "",
        f"Machine: {machine()}.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
    ]
    reductions: dict[str, list[float]] = {}
    for (graph, bname), by in cases.items():
        first = next(iter(by.values()))
        cells = []
        for m in methods:
            r = by.get(m)
            if r is None or r["non_compulsory"] is None:
                cells.append("-" if r is None else r["status"])
            elif m in exact:
                st = {"optimal": "opt", "feasible": "feas"}.get(r["status"], r["status"])
                cells.append(f"{r['non_compulsory']:,} / {st} / {r['seconds']:.1f}")
            else:
                cells.append(f"{r['non_compulsory']:,}")
        base = [
            by[m]["non_compulsory"]
            for m in BASELINES
            if m in by and by[m]["non_compulsory"] is not None
        ]
        best_base = min(base) if base else None
        best_exact = min(
            (
                by[m]["non_compulsory"]
                for m in exact
                if m in by and by[m]["non_compulsory"] is not None
            ),
            default=None,
        )
        red = "-"
        if best_base and best_exact is not None:
            frac = 1 - best_exact / best_base
            reductions.setdefault(bname, []).append(frac)
            red = f"{100 * frac:.0f} %"
        elif best_base == 0:
            red = "(0 already)"
        lines.append(
            f"| {graph} | {bname} | {first['budget']:,} | "
            + " | ".join(cells)
            + f" | {best_base if best_base is None else f'{best_base:,}'} | {red} |"
        )

    lines += ["", "## Summary", ""]
    for bname in dict.fromkeys(r["budget_name"] for r in rows):
        n_cases = sum(1 for k in cases if k[1] == bname)
        red = reductions.get(bname, [])
        zero_base = sum(
            1
            for (g, b), by in cases.items()
            if b == bname and all(by[m]["non_compulsory"] == 0 for m in BASELINES if m in by)
        )
        avg = f"{100 * statistics.mean(red):.0f} %" if red else "n/a"
        lines.append(
            f"- {bname}: {n_cases} cases; the baselines already reach zero in "
            f"{zero_base}; average reduction over the other {len(red)}: {avg}"
        )
    lines += [
        "",
        "| method | cases | proven optimal | median s | worst s |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        sub = [r for r in rows if r["method"] == m]
        ts = [r["seconds"] for r in sub]
        lines.append(
            f"| {m} | {len(sub)} | {sum(r['status'] == 'optimal' for r in sub)} | "
            f"{statistics.median(ts):.2f} | {max(ts):.2f} |"
        )
    lines += ["", "## Against the reference", ""]
    red_r = reductions.get("M_R", [])
    mp = [r for r in rows if r["budget_name"] in ("M_P", "M_Pp") and r["method"] in exact]
    exact_times = [r["seconds"] for r in rows if r["method"] in exact]
    lines += [
        "- Reduction at M_R: reference 84 % on average (Gurobi); here "
        + (
            f"{100 * statistics.mean(red_r):.0f} % over the {len(red_r)} cases where the "
            "baselines are not already at zero"
            if red_r
            else "no case with baseline traffic"
        )
        + ". Our zoo builders fold BatchNorm and use the protocol's 224x224 inputs, so in "
        "most CNNs the stem's first layers set both M_R and M_P and every method is at zero; "
        "the reference's graphs evidently differ there, so the averages are not over the "
        "same cases.",
        "- Traffic at M_P (and M_Pp): reference zero; here "
        + (
            f"zero in {sum(r['non_compulsory'] == 0 for r in mp)} of {len(mp)} exact runs"
            if mp
            else "no exact run"
        )
        + ".",
        "- Solve time: reference 0.296 s on average with Gurobi; here "
        + (
            f"median {statistics.median(exact_times):.2f} s, mean "
            f"{statistics.mean(exact_times):.2f} s, worst {max(exact_times):.2f} s with open-"
            "source solvers on 2 cores, per exact run"
            if exact_times
            else "no exact run"
        )
        + ".",
        _nas_sentence(rows, cases),
    ]
    return "\n".join(lines) + "\n"


def _nas_sentence(rows: list[dict], cases: dict[tuple, dict[str, dict]]) -> str:
    """How the NAS rows compare with the reference's divide-and-conquer heuristic."""
    head = (
        "- NAS networks: the reference uses a divide-and-conquer heuristic (about 2 minutes, "
        "85 % less traffic than the baselines); "
    )
    from cosma.graphs import zoo

    nas = set(zoo.names("nas"))
    red = []
    secs = []
    for (graph, _), by in cases.items():
        d = by.get("dnc")
        if graph not in nas or d is None or d["non_compulsory"] is None:
            continue
        base = [by[m]["non_compulsory"] for m in BASELINES if m in by]
        base = [b for b in base if b is not None]
        secs.append(d["seconds"])
        if base and min(base):
            red.append(1 - d["non_compulsory"] / min(base))
    if not red:
        return head + "the NAS rows here show the whole-graph engines within the time limit."
    return head + (
        f"cosma's `dnc` gives {100 * statistics.mean(red):.0f} % less on average over the "
        f"{len(red)} NAS cases it was run on (worst wall time {max(secs):.0f} s)."
    )


def comparable(rows: list[dict], keys: Iterable[str] | None = None) -> list[dict]:
    """Rows without timings (and only ``keys`` if given), for checking a fresh run against
    a committed one."""
    drop = {"seconds"}
    keep = set(keys) if keys is not None else None
    return [
        {k: v for k, v in r.items() if k not in drop and (keep is None or k in keep)} for r in rows
    ]
