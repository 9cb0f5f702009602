"""The ``cosma`` command line. Errors become one message and a documented exit code, never
a traceback: :func:`_fail` at the edge maps every exception to :class:`~cosma.errors.ExitCode`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from cosma import files, interrupt
from cosma import options as check
from cosma.errors import CosmaError, ExitCode, NoPlanError, PlanError, UsageError, exit_code
from cosma.graph import Graph, Setting, TensorKind
from cosma.memory import MemoryFigures, memory_figures
from cosma.plan import Plan, plan_document
from cosma.problem import Problem, budget_setting, resolve_budget
from cosma.progress import format_report, reporting
from cosma.units import format_bytes

log = logging.getLogger(__name__)

SETTINGS = {
    "activations": [Setting.ACTIVATIONS],
    "activations+parameters": [Setting.ACTIVATIONS_PARAMETERS],
    "both": [Setting.ACTIVATIONS, Setting.ACTIVATIONS_PARAMETERS],
}


EXIT_CODES_HELP = """\b
Exit codes:
  0    success (a plan was found, a replayed plan is valid)
  1    internal error: a bug in cosma (rerun with -vv for the traceback; please report it)
  2    usage: a wrong option, argument or output path; nothing was computed
  3    bad input: a model, graph or plan file that cannot be used
  4    no plan: the budget is infeasible, a limit was reached before any plan, or a
       replayed plan is invalid
  5    solver failure: a solver crashed, rejected the model, or it would not fit in memory
  130  interrupted (128 + signal: 130 for Ctrl-C, 143 for SIGTERM); the best plan found
       so far is still printed and written to -o, marked interrupted
  141  the output pipe was closed (e.g. cosma zoo | head): cosma stops quietly
"""


class _Failure(click.ClickException):
    """A message and an exit code for click to show (``Error: message``)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def _fail(error: BaseException) -> click.ClickException:
    """The one mapping from an exception to what the user sees and the exit code."""
    if isinstance(error, CosmaError):
        return _Failure(str(error), exit_code(error))
    log.debug("internal error", exc_info=error)
    return _Failure(
        f"internal error: {type(error).__name__}: {error}. This is a bug in cosma; rerun "
        "with -vv to see the traceback and please report it",
        int(ExitCode.INTERNAL),
    )


class _Group(click.Group):
    """Runs a command; every exception leaves as one message and its exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            # Every command unwinds on SIGINT/SIGTERM (plan stops its solver gracefully).
            with interrupt.handle_signals(graceful=False):
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            _closed_pipe()
        except KeyboardInterrupt as e:
            # cosma's handler names the signal; a plain Ctrl-C without it is SIGINT.
            name = e.args[0] if e.args and e.args[0] in ("SIGINT", "SIGTERM") else "SIGINT"
            signum = int(signal.Signals[name])
            message = f"interrupted by {name}"
            raise _Failure(message, 128 + signum) from None
        except Exception as e:
            raise _fail(e) from None


def _graceful_signals(command):
    """SIGINT/SIGTERM during the command stop the solver and keep its best plan
    (:mod:`cosma.interrupt`); before a solve they end the command at once."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        with interrupt.handle_signals():
            return command(*args, **kwargs)

    return run


def _checked(fn):
    """A click callback that runs an option-value check of :mod:`cosma.options`."""

    def callback(ctx: click.Context, param: click.Parameter, value):
        if value is None:
            return None
        try:
            return fn(value, option=param.opts[0])
        except UsageError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def _checked_option(*decls: str, check_value, type, default, help: str, **extra):
    """An option whose value :mod:`cosma.options` checks before any work (the checks the
    library makes too), with its default shown when it has one."""
    return click.option(
        *decls,
        type=type,
        default=default,
        show_default=default is not None,
        callback=_checked(check_value),
        help=help,
        **extra,
    )


def alignment_option(help: str = "Scratchpad alignment in bytes."):
    return _checked_option(
        "--alignment", check_value=check.alignment, type=int, default=1, help=help
    )


def time_limit_option(default: float, help: str):
    return _checked_option(
        "--time-limit", check_value=check.time_limit, type=float, default=default, help=help
    )


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(package_name="cosma")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Map DNNs onto accelerators with a small scratchpad, with least off-chip traffic."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def model_options(f):
    """Options shared by every command that reads a model."""
    f = click.option(
        "--element-bytes",
        type=float,
        default=None,
        callback=_checked(check.element_bytes),
        help="Bytes per element for every tensor (the reference protocol uses 1; 0.5 for "
        "4-bit data). Default: 1 for zoo networks, each tensor's ONNX type for files.",
    )(f)
    f = click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME=DIMS",
        help="Static shape for a graph input with dynamic dims, e.g. data=1x3x224x224. Repeatable.",
    )(f)
    f = click.option(
        "--training",
        is_flag=True,
        help="Use the training graph of MODEL (forward, loss, one backward operator per "
        "forward operator); zoo:NAME:training does the same.",
    )(f)
    f = click.argument("model", metavar="MODEL")(f)
    return f


def load_model(
    model: str,
    input_shapes: Sequence[str],
    element_bytes: float | None,
    training: bool = False,
) -> Graph:
    from cosma.graphs import load_graph

    return load_graph(
        model, input_shapes=list(input_shapes), element_bytes=element_bytes, training=training
    )


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _b(n: int, exact: bool) -> str:
    return f"{n:,} B" if exact or n < 1024 else f"{format_bytes(n)} ({n:,} B)"


def _figures_text(graph: Graph, f: MemoryFigures, exact: bool) -> list[str]:
    def op(name: str) -> str:
        return f"{name} ({graph.operators[name].op_type})"

    peak_note = "" if f.file_order_is_topological else "  [file order is not topological]"
    return [
        f"  setting: {f.setting}" + (f", alignment {f.alignment} B" if f.alignment > 1 else ""),
        f"    tracked tensors     {f.tracked_tensors:,}, {_b(f.tracked_bytes, exact)}",
        f"    compulsory traffic  {_b(f.compulsory_traffic, exact)}",
        f"    M_R                 {_b(f.m_r, exact)}  at {op(f.m_r_operator)}",
        f"    must-live bound     {_b(f.must_live, exact)}  at {op(f.must_live_operator)}",
        f"    file-order peak     {_b(f.file_order_peak, exact)}  at "
        f"{op(f.file_order_peak_operator)}{peak_note}",
    ]


@cli.command()
@model_options
@click.option(
    "--setting",
    type=click.Choice(list(SETTINGS)),
    default="both",
    show_default=True,
    help="Which tensors occupy the scratchpad.",
)
@alignment_option("Scratchpad alignment in bytes (sizes round up to it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--bytes", "exact", is_flag=True, help="Exact byte counts only, no units.")
@click.option(
    "--plot",
    default=None,
    metavar="FILE",
    help="Draw live bytes over the file order and the minimum-peak order, with M_R, the "
    "must-live bound and M_P marked (.png or .svg; first setting only).",
)
@click.option("--force", is_flag=True, help="Overwrite the --plot file if it exists.")
def inspect(
    model: str,
    training: bool,
    input_shapes: tuple[str, ...],
    element_bytes: float | None,
    setting: str,
    alignment: int,
    as_json: bool,
    exact: bool,
    plot: str | None,
    force: bool,
) -> None:
    """Print the memory figures of MODEL (an ONNX file or zoo:NAME).

    M_R is the largest operator footprint (no plan exists below it); the must-live bound is
    a lower bound on the peak of every schedule; the file-order peak is the peak of live
    bytes when operators run in file order with no spills.
    """
    if plot:
        files.check_writable(plot, force=force, option="--plot")
    graph = load_model(model, input_shapes, element_bytes, training)
    figures = [memory_figures(graph, setting=s, alignment=alignment) for s in SETTINGS[setting]]
    counts = {k.value: len(graph.tensors_of_kind(k)) for k in TensorKind}
    if plot:
        from cosma.pictures import live_bytes
        from cosma.problem import budgets as graph_budgets

        f0 = figures[0]
        b = graph_budgets(graph, setting=f0.setting, alignment=alignment)
        live_bytes(
            graph,
            {"file order": graph.file_order, "minimum-peak order": b.min_peak.order},
            setting=f0.setting,
            alignment=alignment,
            marks={"M_R": b.m_r, "must-live": f0.must_live, "M_P": b.m_p},
        ).save(plot)
        log.info("live-bytes chart written to %s", plot)
    if as_json:
        doc = {
            "graph": graph.name,
            "source": model,
            "identity": graph.identity(),
            "element_bytes": element_bytes,
            "operators": graph.num_operators,
            "tensors": len(graph.tensors),
            "tensor_kinds": counts,
            "figures": {f.setting: f.to_dict() for f in figures},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if element_bytes is not None:
        eb = f"{element_bytes:g}"
    else:
        eb = "1 (zoo default)" if model.startswith("zoo:") else "from ONNX types"
    lines = [
        f"{graph.name}  ({model})",
        f"  {graph.num_operators:,} operators, {len(graph.tensors):,} tensors "
        f"({_n(counts['input'], 'input')}, {_n(counts['output'], 'output')}, "
        f"{_n(counts['parameter'], 'parameter')}, {_n(counts['activation'], 'other activation')}"
        f"); element bytes: {eb}",
    ]
    for f in figures:
        lines += _figures_text(graph, f, exact)
    click.echo("\n".join(lines))


def _write_output(path: str, text: str, option: str = "-o") -> str:
    """Write ``text`` to ``path`` ('-' is stdout) atomically; the path was checked before."""
    if path == "-":
        click.echo(text)
        return "standard output"
    return files.write_text(path, text, option=option)


def _plan_summary(graph: Graph, plan: Plan, elapsed: float) -> list[str]:
    lines = [
        f"{graph.name}: {plan.method}"
        + (f" [{plan.solver}]" if plan.solver else "")
        + f"  ->  {plan.status.value}",
        f"  scratchpad          {format_bytes(plan.budget)} ({plan.budget:,} B), "
        f"setting {plan.setting.value}"
        + (f", alignment {plan.alignment} B" if plan.alignment > 1 else ""),
    ]
    if plan.reason:
        lines.append(f"  reason              {plan.reason}")
    if plan.status.has_plan:
        t = plan.traffic
        lines += [
            f"  non-compulsory      {_b(t['non_compulsory'], False)}"
            f"   (loads {t['loaded']:,} B, stores {t['stored']:,} B in all)",
            f"  compulsory          {_b(t['compulsory'], False)}",
            f"  peak occupancy      {_b(plan.peak or 0, False)}",
        ]
        rate = plan.options.get("recompute_rate")
        if rate is not None:  # recompute versus reload: the objective adds rate x MACs
            macs = plan.stats.get("compute", {}).get("recompute", 0)
            lines += [
                f"  recomputed          {macs:,} MACs at {rate} B/MAC",
                f"  objective           {plan.objective:,} B equivalent (traffic + rate x MACs)",
            ]
        if plan.lower_bound is not None:
            gap = plan.gap
            lines.append(
                f"  lower bound         {plan.lower_bound:,} B"
                + (f"   (gap {100 * gap:.1f} %)" if gap is not None else "")
            )
        cands = plan.stats.get("candidates")
        if cands:
            lines.append(
                "  candidates          "
                + ", ".join(f"{k} {v:,}" if v is not None else f"{k} -" for k, v in cands.items())
            )
    if plan.stats.get("interrupted"):
        lines.append(
            f"  interrupted         by {plan.stats['interrupted']}: the best plan found so far"
        )
    lines.append(f"  time                {elapsed:.2f} s (solve {plan.solve_time:.2f} s)")
    return lines


#: `cosma plan` flags by the method option they set (messages name the flag, not the key).
_FLAGS = {
    "time_limit": "--time-limit",
    "threads": "--threads",
    "seed": "--seed",
    "memory_limit": "--memory-limit",
    "solver": "--solver",
    "order": "--order",
    "write_model": "--write-model",
    "log_path": "--solver-log",
    "recompute_rate": "--recompute-rate",
    "accelerator": "--accelerator",
    "max_computes": "--max-computes",
}


def _check_flags(method: str, given: dict) -> None:
    """:func:`cosma.solvers.check_options` in the command line's words: a flag the method
    does not take is named as a flag, with the flags it does take."""
    from cosma.solvers import check_options, method_options

    accepted = method_options(method)
    for name in given if accepted is not None else ():
        if name not in accepted:
            takes = [_FLAGS[o] for o in accepted if o in _FLAGS]
            raise UsageError(
                f"-m {method} has no option {_FLAGS.get(name, name)}; it takes: "
                + (", ".join(takes) or "no solver options")
            )
    check_options(method, given)


def _remat_summary(graph: Graph, plan: Plan, elapsed: float) -> list[str]:
    lines = [
        f"{graph.name}: {plan.method}"
        + (f" [{plan.solver}]" if plan.solver else "")
        + f"  ->  {plan.status.value}",
        f"  memory budget       {format_bytes(plan.budget)} ({plan.budget:,} B), pooled, "
        f"setting {plan.setting.value}",
    ]
    if plan.reason:
        lines.append(f"  reason              {plan.reason}")
    if plan.status.has_plan:
        base = plan.stats.get("base_compute", 0)
        total = plan.objective or 0
        over = f"   (+{100 * (total - base) / base:.2f} % over one run each)" if base else ""
        lines += [
            f"  total compute       {total:,}{over}",
            f"  recomputations      {plan.stats.get('recomputations', 0):,}",
            f"  peak memory         {_b(plan.peak or 0, False)}",
        ]
        if plan.lower_bound is not None:
            gap = plan.gap
            lines.append(
                f"  lower bound         {plan.lower_bound:,}"
                + (f"   (gap {100 * gap:.2f} %)" if gap is not None else "")
            )
    elif plan.lower_bound is not None:
        lines.append(f"  lower bound         {plan.lower_bound:,}")
    lines.append(f"  time                {elapsed:.2f} s (solve {plan.solve_time:.2f} s)")
    return lines


@cli.command()
@model_options
@click.option(
    "-s",
    "--scratchpad",
    "budget",
    required=True,
    metavar="BUDGET",
    help="Scratchpad size: bytes with optional unit (256KiB, 1.5MiB) or a name: "
    "M_R, M_H, M_P (activations) or M_Rp, M_Hp, M_Pp (with parameters).",
)
@click.option(
    "-m",
    "--method",
    default="baseline",
    show_default=True,
    help="Plan finder; 'cosma methods' lists them. 'auto' picks one by graph size.",
)
@click.option(
    "--setting",
    type=click.Choice(["activations", "activations+parameters"]),
    default=None,
    help="Which tensors occupy the scratchpad [default: from the budget name, else activations].",
)
@alignment_option()
@time_limit_option(
    60.0, "Seconds allowed to searches with a limit (min-peak order, solvers); above 0."
)
@click.option(
    "--solver",
    default="cbc",
    show_default=True,
    help="MILP backend for the milp methods: cbc, highs, gurobi.",
)
@click.option(
    "--order",
    type=click.Choice(["file", "greedy", "minpeak"]),
    default="minpeak",
    show_default=True,
    help="Schedule for the -fixed methods.",
)
@_checked_option(
    "--threads",
    check_value=check.threads,
    type=int,
    default=1,
    help=f"Solver threads (1 to {check.MAX_THREADS}; 1 gives repeatable plans).",
)
@_checked_option(
    "--seed",
    check_value=check.seed,
    type=int,
    default=0,
    help=f"Solver random seed (0 to {check.MAX_SEED:,}).",
)
@click.option(
    "--write-model",
    default=None,
    metavar="FILE",
    help="Save the MILP as FILE (.lp or .mps) to run another solver on it.",
)
@click.option("--solver-log", default=None, metavar="FILE", help="Save the solver's log.")
@_checked_option(
    "--memory-limit",
    check_value=check.memory_limit,
    type=None,
    default=None,
    metavar="SIZE",
    help="Largest exact model to build, e.g. 8GiB; a larger one is refused with its "
    "estimated size [default: half of this machine's memory].",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write the plan as JSON to FILE ('-' for standard output).",
)
@click.option("--force", is_flag=True, help="Overwrite the -o file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--objective",
    type=click.Choice(["traffic", "compute"]),
    default="traffic",
    show_default=True,
    help="traffic: least off-chip traffic (the accelerator model). compute: "
    "rematerialization, GPU style (pooled memory budget, no spills, least total compute); "
    "-m milp|cpsat|checkpoint-all|sqrtn|chen-greedy|evict, BUDGET may be 0.9xpeak.",
)
@click.option(
    "--max-computes",
    type=int,
    default=2,
    show_default=True,
    help="With --objective compute: most runs of one operator (2 = one recomputation, as "
    "MOCCASIN); 0 for no bound.",
)
@_checked_option(
    "--recompute-rate",
    check_value=check.recompute_rate,
    type=None,
    default=None,
    metavar="BYTES_PER_MAC",
    help="Let a dropped activation come back by re-running its producer (milp, cpsat and "
    "their -fixed forms), and minimise traffic + this rate x recomputed MACs, e.g. 0.0064.",
)
@_checked_option(
    "--accelerator",
    check_value=check.accelerator_rate,
    type=None,
    default=None,
    metavar="dram=BW,macs=RATE",
    help="The recompute rate from the accelerator: DRAM bandwidth over peak MAC rate, "
    "e.g. dram=25.6GB/s,macs=4T/s (0.0064 B/MAC).",
)
@_graceful_signals
def plan(
    model: str,
    training: bool,
    input_shapes: tuple[str, ...],
    element_bytes: float | None,
    budget: str,
    method: str,
    setting: str | None,
    alignment: int,
    time_limit: float,
    solver: str,
    order: str,
    threads: int,
    seed: int,
    write_model: str | None,
    solver_log: str | None,
    memory_limit: int | None,
    output: str | None,
    force: bool,
    as_json: bool,
    objective: str,
    max_computes: int,
    recompute_rate,
    accelerator,
) -> None:
    """Find a plan for MODEL (an ONNX file or zoo:NAME) in a scratchpad of BUDGET bytes and
    replay it.

    Prints the status, the traffic split into compulsory and non-compulsory, the peak
    occupancy and the time. A budget below M_R is refused, naming the operator that needs
    more.
    """
    from cosma.api import objective_and_method
    from cosma.deadline import Deadline, tail_reserve
    from cosma.solvers import method_options, solve

    objective, method = objective_and_method(objective, method, budget, alignment=alignment)
    # Only the options given on the command line go to the method, so one it does not take
    # (or an unknown solver or order) is an error, not silently ignored.
    ctx = click.get_current_context()
    given = {
        name: value
        for name, value in [
            ("solver", solver),
            ("order", order),
            ("threads", threads),
            ("seed", seed),
            ("write_model", write_model),
            ("log_path", solver_log),
            ("memory_limit", memory_limit),
        ]
        if ctx.get_parameter_source("solver_log" if name == "log_path" else name)
        is not click.core.ParameterSource.DEFAULT
    }
    if max_computes < 0:
        raise UsageError(
            f"--max-computes {max_computes}: give 0 (no bound) or the most runs of one "
            "operator, at least 1"
        )
    # The default goes to the methods that take it; given on the command line it goes to
    # the method in any case, so one that does not take it says so.
    max_given = ctx.get_parameter_source("max_computes") is not click.core.ParameterSource.DEFAULT
    if max_given or "max_computes" in (method_options(method) or ()):
        given["max_computes"] = max_computes or None
    if recompute_rate is not None and accelerator is not None:
        raise UsageError(
            "give one of --recompute-rate and --accelerator (the rate is derived from it)"
        )
    # Recompute versus reload (both callbacks return the rate in bytes per MAC).
    rate = recompute_rate if recompute_rate is not None else accelerator
    if rate is not None:
        given["recompute_rate"] = rate
    if method != "auto":
        _check_flags(method, given)
    # Every output path is checked before any work: a bad one fails now, not after a solve.
    if output and output != "-":
        files.check_writable(output, force=force, option="-o")
    if write_model:
        files.check_writable(write_model, force=force, option="--write-model")
        if not write_model.endswith((".lp", ".mps")):
            raise UsageError(f"--write-model {write_model}: the name must end in .lp or .mps")
    if solver_log:
        files.check_writable(solver_log, force=True, option="--solver-log")
    # The whole command, from interpreter start, shares one wall-clock limit; run in
    # process (a test's CliRunner, a notebook) it counts from this call instead.
    reserve = tail_reserve(time_limit)
    if _AS_SCRIPT:
        deadline = Deadline.since_process_start(time_limit, reserve=reserve)
    else:
        deadline = Deadline(time_limit, reserve=reserve)

    def progress(info: dict) -> None:
        shown_by_log = logging.getLogger("cosma.progress").isEnabledFor(logging.INFO)
        if not as_json and output != "-" and not _quiet() and not shown_by_log:
            click.echo("  " + format_report(info), err=True)

    # The min-peak search behind M_P/M_H and the minpeak order reports through it too.
    stack = contextlib.ExitStack()
    stack.enter_context(reporting(progress))
    click.get_current_context().call_on_close(stack.close)
    with deadline.phase("load"):
        graph = load_model(model, input_shapes, element_bytes, training)
    chosen = Setting.parse(setting) if setting else (budget_setting(budget) or Setting.ACTIVATIONS)
    with deadline.phase("budget"):
        if objective == "compute":
            from cosma.remat import resolve_remat_budget

            nbytes = resolve_remat_budget(graph, budget, setting=chosen)
        else:
            nbytes = resolve_budget(
                graph, budget, setting=chosen, alignment=alignment, time_limit=deadline.left(0.3)
            )
    problem = Problem(graph, nbytes, chosen, alignment)
    why = problem.shortfall()
    if why:
        raise NoPlanError(f"no plan fits: {graph.name} {why}. Use a budget of at least M_R")

    auto = None
    if method == "auto":
        from cosma.api import pick_method

        method, picked, why = pick_method(graph)
        for k, v in picked.items():
            given.setdefault(k, v)
        auto = {"method": method, **picked, "reason": why}
        log.info("method auto: %s", why)
        _check_flags(method, given)

    result = solve(problem, method, time_limit=deadline, progress=progress, **given)
    if result.stats.get("phases") is not None:
        result.stats["phases"] = {**deadline.phases, **result.stats["phases"]}
    stopped = interrupt.requested_number()
    # On the time limit's clock (from interpreter start when run as the cosma script), so
    # the total covers start-up and loading as the limit does, and the solve fits inside it.
    elapsed = deadline.elapsed()
    result.source, result.element_bytes = model, element_bytes
    if auto is not None:
        result.stats = {**result.stats, "auto": auto}
    result.describe(graph)
    if output and output != "-":
        where = _write_output(output, result.to_json())
        log.info("plan written to %s", where)
    if output == "-" and as_json:
        # One document on standard output: the whole plan, with the elapsed time.
        doc = result.to_dict()
        doc["timing"]["elapsed_seconds"] = elapsed
        click.echo(json.dumps(doc, indent=1))
    elif output == "-":
        _write_output("-", result.to_json())
    elif as_json:
        doc = result.to_dict()
        doc.pop("steps")
        doc["timing"]["elapsed_seconds"] = elapsed
        click.echo(json.dumps(doc, indent=2))
    elif output != "-":
        lines = (
            _remat_summary(graph, result, elapsed)
            if objective == "compute"
            else _plan_summary(graph, result, elapsed)
        )
        if output:
            lines.append(f"  plan written to     {output}")
        click.echo("\n".join(lines))
    if stopped:
        sys.exit(128 + stopped)
    if not result.status.has_plan:
        sys.exit(int(ExitCode.NO_PLAN))


def _read_plan_doc(plan_file: str, model: str | None = None) -> dict:
    """The JSON object of a plan file; one clear error for anything else."""
    if (
        model is not None
        and model.lower().endswith(".json")
        and plan_file.lower().endswith(".onnx")
    ):
        raise UsageError(
            f"the arguments look swapped: the model comes first, then the plan; run "
            f"cosma replay {plan_file} {model}"
        )
    path = Path(plan_file)
    if not path.is_file():
        raise UsageError(
            f"{plan_file}: no such plan file"
            + (" (it is a folder)" if path.is_dir() else "")
            + "; give the JSON file written by cosma plan -o"
        )
    return plan_document(path.read_bytes())


@cli.command()
@model_options
@click.argument("plan_file", metavar="PLAN")
@click.option(
    "-o", "--output", default=None, metavar="FILE", help="Write the replayed plan (schema 2)."
)
@click.option("--force", is_flag=True, help="Overwrite the -o file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def replay(
    model: str,
    training: bool,
    input_shapes: tuple[str, ...],
    element_bytes: float | None,
    plan_file: str,
    output: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Replay PLAN (a plan JSON file) on MODEL and report its traffic or every violation.

    The element size and input shapes the plan was made with are read from the plan
    (schema 2); --element-bytes and --input-shape override them.
    """
    from cosma.simulator import replay as run_replay

    if output and output != "-":
        files.check_writable(output, force=force, option="-o")
    doc = _read_plan_doc(plan_file, model)
    if element_bytes is None:
        element_bytes = doc.get("element_bytes")
        if element_bytes is not None:
            try:
                element_bytes = check.element_bytes(element_bytes)
            except UsageError as e:
                raise PlanError(f"{plan_file}: the plan's element_bytes: {e}") from None
    if not input_shapes and doc.get("input_shapes") and not model.startswith("zoo:"):
        shapes = doc["input_shapes"]
        if not isinstance(shapes, dict) or not all(
            isinstance(v, list) and all(type(d) is int for d in v) for v in shapes.values()
        ):
            raise PlanError(f"{plan_file}: input_shapes should map names to lists of integers")
        input_shapes = tuple(f"{k}={'x'.join(str(d) for d in v)}" for k, v in shapes.items())
    graph = load_model(model, input_shapes, element_bytes, training)
    p = Plan.from_dict(doc, graph)
    r = run_replay(graph, p)
    verdict = {
        "plan": plan_file,
        "graph": graph.name,
        "valid": r.valid,
        "violations": [str(v) for v in r.violations],
        "traffic": r.traffic(),
        "peak": r.peak,
        "budget": p.budget,
    }
    if as_json and not (output == "-" and r.valid):
        click.echo(json.dumps(verdict, indent=1))
        if not r.valid:
            sys.exit(int(ExitCode.NO_PLAN))
    if not r.valid:
        click.echo(f"{plan_file}: INVALID, {len(r.violations)} violation(s):")
        for v in r.violations[:50]:
            click.echo(f"  {v}")
        sys.exit(int(ExitCode.NO_PLAN))
    t = r.traffic()
    if output:
        p.traffic, p.peak, p.objective = t, r.peak, r.non_compulsory
        if p.options.get("recompute_rate") is not None:  # recompute versus reload
            from cosma.simulator import combined_objective

            p.objective = combined_objective(
                r.non_compulsory, r.recompute, p.options["recompute_rate"]
            )
        if output == "-" and as_json:  # one document: the plan with the verdict
            click.echo(json.dumps({**p.to_dict(), "replay": verdict}, indent=1))
            return
        _write_output(output, p.to_json())
    if as_json:
        return
    click.echo(
        f"{plan_file}: valid on {graph.name}; non-compulsory {t['non_compulsory']:,} B, "
        f"compulsory {t['compulsory']:,} B, peak {r.peak:,} B of {p.budget:,} B"
        + (f", recomputed {r.recompute:,} MACs" if r.recompute else ""),
        err=output == "-",
    )


@cli.command(name="export")
@click.argument("plan_file", metavar="PLAN")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["dma-json", "c-header"]),
    default="dma-json",
    show_default=True,
    help="dma-json: a flat list of DMA commands; c-header: sizes, offsets and commands in C.",
)
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="Where.")
@click.option("--force", is_flag=True, help="Overwrite the -o file if it exists.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON on standard output: the DMA document, or the C header as a JSON string, or "
    "(with -o FILE) what was written.",
)
def export_cmd(plan_file: str, fmt: str, output: str, force: bool, as_json: bool) -> None:
    """Export PLAN (a schema-2 plan file) for a compiler: a DMA command list or a C header.

    Needs no model: the plan records every size, address and host offset.
    """
    from cosma.export import export

    if output != "-":
        files.check_writable(output, force=force, option="-o")
    p = Plan.from_dict(_read_plan_doc(plan_file))
    text = export(p, fmt)
    if output == "-" and as_json and fmt == "c-header":
        text = json.dumps({"format": fmt, "text": text}, indent=1)
    where = _write_output(output, text)
    if output != "-":
        if as_json:
            click.echo(json.dumps({"format": fmt, "written": where}))
        else:
            click.echo(f"wrote {where} ({fmt})")


@cli.command()
@click.option(
    "--family",
    type=click.Choice(["human", "nas", "export", "other"]),
    default=None,
    help="Only one family.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def zoo(family: str | None, as_json: bool) -> None:
    """List the zoo networks with their operator counts and memory figures (1 byte per
    element, activations setting). Use them as zoo:NAME wherever a MODEL is taken, and
    zoo:NAME:training for the training graph (forward, loss, backward) of NAME."""
    from cosma.graphs import zoo as zoo_module

    rows = []
    for name, entry in zoo_module.entries().items():
        if family and entry.family != family:
            continue
        g = entry.make()
        f = memory_figures(g)
        rows.append(
            {
                "name": name,
                "family": entry.family,
                "operators": g.num_operators,
                "m_r": f.m_r,
                "must_live": f.must_live,
                "file_order_peak": f.file_order_peak,
                "about": entry.about,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'name':28s} {'family':7s} {'ops':>5s} {'M_R':>11s} {'must-live':>11s} "
        f"{'file peak':>11s}  about"
    )
    for r in rows:
        click.echo(
            f"{r['name']:28s} {r['family']:7s} {r['operators']:5d} "
            f"{format_bytes(r['m_r']):>11s} {format_bytes(r['must_live']):>11s} "
            f"{format_bytes(r['file_order_peak']):>11s}  {r['about']}"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def methods(as_json: bool) -> None:
    """List the plan finders."""
    from cosma.solvers import METHODS, REMAT_METHODS

    found = {**METHODS, **REMAT_METHODS}
    if as_json:
        doc = [
            {
                "name": name,
                "about": (fn.__doc__ or "").strip().splitlines()[0],
                "options": list(getattr(fn, "options", ()) or ()),
            }
            for name, fn in found.items()
        ]
        click.echo(
            json.dumps(
                [{"name": "auto", "about": "picked by graph size", "options": []}, *doc], indent=1
            )
        )
        return
    for name, fn in found.items():
        click.echo(f"{name:28s} {(fn.__doc__ or '').strip().splitlines()[0]}")


def _budget_spec(text: str) -> str:
    """A budget name or a size; refused early with the accepted forms."""
    from cosma.problem import BUDGET_NAMES
    from cosma.units import parse_bytes

    if text.strip() in BUDGET_NAMES:
        return text.strip()
    parse_bytes(text)  # raises UsageError naming the accepted forms
    return text.strip()


def _write_rows(path: str, rows: list[dict]) -> str:
    """Rows as CSV (``.csv``) or JSON (anything else); '-' is standard output (JSON)."""
    import csv
    import io

    if path.endswith(".csv"):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
        return _write_output(path, buf.getvalue())
    return _write_output(path, json.dumps(rows, indent=1))


def executor_options(f):
    """Where cases run: local processes (default), this process, or a Dask cluster."""
    f = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler to send cases to (e.g. tcp://10.0.0.5:8786); implies "
        "--executor dask. Without it, --executor dask starts a LocalCluster.",
    )(f)
    f = click.option(
        "--workers",
        type=int,
        default=1,
        show_default=True,
        help="Local worker processes (process executor, or the LocalCluster's size).",
    )(f)
    f = click.option(
        "--executor",
        type=click.Choice(["process", "serial", "dask"]),
        default="process",
        show_default=True,
        help="Run cases in local processes, in this process, or on Dask distributed.",
    )(f)
    return f


@cli.command()
@model_options
@click.option(
    "--from",
    "start",
    default="M_R",
    show_default=True,
    metavar="BUDGET",
    help="Smallest budget: a name (M_R, M_H, M_P, M_Rp...) or bytes (256KiB).",
)
@click.option(
    "--to", "stop", default="M_P", show_default=True, metavar="BUDGET", help="Largest budget."
)
@click.option(
    "--steps",
    type=int,
    default=8,
    show_default=True,
    help="Budgets from --from to --to, evenly spaced, both included.",
)
@click.option(
    "-b",
    "--budget",
    "budget_list",
    multiple=True,
    metavar="BUDGET",
    help="Explicit budgets instead of a range; repeatable.",
)
@click.option(
    "-m",
    "--method",
    "method_list",
    multiple=True,
    metavar="METHOD[:SOLVER]",
    help="Methods; repeatable (e.g. -m baseline -m milp:highs). Default: auto.",
)
@click.option(
    "--setting",
    type=click.Choice(["activations", "activations+parameters"]),
    default=None,
    help="[default: from the budget names, else activations]",
)
@alignment_option()
@time_limit_option(60.0, "Seconds per case.")
@executor_options
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Rows as CSV (.csv) or JSON (.json, '-' for standard output). Rows are "
    "also appended to FILE.jsonl as each case finishes.",
)
@click.option(
    "--plot", default=None, metavar="FILE", help="Draw traffic against budget (.png or .svg)."
)
@click.option("--force", is_flag=True, help="Overwrite output files.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def sweep(
    model,
    training,
    input_shapes,
    element_bytes,
    start,
    stop,
    steps,
    budget_list,
    method_list,
    setting,
    alignment,
    time_limit,
    executor,
    workers,
    scheduler,
    output,
    plot,
    force,
    as_json,
) -> None:
    """Plan MODEL at many scratchpad sizes with one or more methods.

    One row per (budget, method): budget, non_compulsory (the traffic), lower_bound,
    status, seconds, with the graph's M_R, M_H and M_P. Every plan is replayed.
    """
    from cosma.api import sweep as run_sweep

    start, stop = _budget_spec(start), _budget_spec(stop)
    budgets_ = [_budget_spec(b) for b in budget_list]
    if plot and not plot.lower().endswith((".png", ".svg")):
        raise UsageError(f"--plot {plot}: pictures are .png or .svg files")
    stream = None
    if output and output != "-":
        stream = Path(output + ".jsonl")
        for path, option in ((output, "-o"), (str(stream), "-o")):
            files.check_writable(path, force=force, option=option)
        stream.unlink(missing_ok=True)
    if plot:
        files.check_writable(plot, force=force, option="--plot")
    quiet = as_json or output == "-" or _quiet()

    def show(row: dict) -> None:
        if not quiet:
            nc, lb = row["non_compulsory"], row["lower_bound"]
            nc_text = "-" if nc is None else f"{nc:,}"
            lb_text = "-" if lb is None else f"{lb:,}"
            click.echo(
                f"  {row['budget_name']:>10s} {row['budget']:>13,} B  {row['method']:20s} "
                f"{row['status']:11s} {nc_text:>14s}  bound {lb_text}  {row['seconds']:.2f} s",
                err=True,
            )

    graph = load_model(model, input_shapes, element_bytes, training)
    rows = run_sweep(
        graph,
        budgets=budgets_ or None,
        start=start,
        stop=stop,
        steps=steps,
        methods=list(method_list) or ["auto"],
        time_limit=time_limit,
        setting=setting,
        alignment=alignment,
        executor="dask" if scheduler else executor,
        workers=workers,
        scheduler=scheduler,
        out=stream,
        progress_bar=not quiet,
        on_row=show,
    )
    if output:
        _write_rows(output, rows)
    if plot:
        from cosma.pictures import traffic_vs_budget

        traffic_vs_budget(rows).save(plot)
    if as_json and output != "-":
        click.echo(json.dumps(rows, indent=1))
    elif not quiet:
        click.echo(
            f"{len(rows)} rows"
            + (f"; written to {output} (and {output}.jsonl)" if output else "")
            + (f"; plot in {plot}" if plot else "")
        )


@cli.command()
@click.argument("plan_file", metavar="PLAN")
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Picture file (.png or .svg) [default: PLAN with .png].",
)
@click.option(
    "--labels/--no-labels",
    default=None,
    help="Name the blocks [default: when there are at most 60].",
)
@click.option("--force", is_flag=True, help="Overwrite the picture if it exists.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print what was drawn (blocks, loads, stores, moves) as JSON.",
)
def show(
    plan_file: str, output: str | None, labels: bool | None, force: bool, as_json: bool
) -> None:
    """Draw the memory map of PLAN: steps across, scratchpad addresses up, one block per
    residency, loads, stores and moves marked, the budget as a dashed line."""
    from cosma.pictures import memory_map

    p = Plan.from_dict(_read_plan_doc(plan_file))
    target = output or str(Path(plan_file).with_suffix(".png"))
    files.check_writable(target, force=force, option="-o")
    m = memory_map(p, labels=labels)
    m.save(target)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "picture": target,
                    "budget": m.budget,
                    "blocks": [b.__dict__ for b in m.blocks],
                    "loads": m.loads,
                    "stores": m.stores,
                    "moves": m.moves,
                },
                indent=1,
            )
        )
    else:
        click.echo(
            f"wrote {target}: {len(m.blocks)} blocks, {len(m.loads)} loads, "
            f"{len(m.stores)} stores, {len(m.moves)} moves"
        )


@cli.command()
@click.option(
    "--graphs",
    "graph_list",
    multiple=True,
    metavar="MODEL",
    help="Graphs (zoo:NAME or ONNX files); repeatable. Default: the reference's "
    "ten human-designed and four NAS networks.",
)
@click.option(
    "--budgets",
    "budget_list",
    multiple=True,
    metavar="BUDGET",
    help="Budgets: names (M_R, M_H, M_P, M_Rp, M_Hp, M_Pp) or bytes (256KiB); repeatable. "
    "Default: the six names.",
)
@click.option(
    "--methods",
    "method_list",
    multiple=True,
    metavar="METHOD[:SOLVER]",
    help="Methods; repeatable. Default: the four protocol baselines and milp with "
    "every installed solver.",
)
@time_limit_option(120.0, "Seconds per case.")
@executor_options
@click.option(
    "--out",
    default="benchmarks/results/protocol",
    show_default=True,
    help="Writes OUT.jsonl (each row as its case finishes), OUT.json (rows) and OUT.md (report).",
)
@click.option("--force", is_flag=True, help="Overwrite existing result files.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON at the end.")
def bench(
    graph_list,
    budget_list,
    method_list,
    time_limit,
    executor,
    workers,
    scheduler,
    out,
    force,
    as_json,
) -> None:
    """Run the reference evaluation's protocol (or a subset) and write its results."""
    from cosma.app import bench as bench_module
    from cosma.graphs import zoo as zoo_module

    targets = [Path(out + ".json"), Path(out + ".md"), Path(out + ".jsonl")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist; pass --force to overwrite")
    for t in targets:
        files.check_writable(t, force=True, option="--out")
    graphs = list(graph_list) or [
        f"zoo:{n}" for n in (*zoo_module.names("human"), *zoo_module.names("nas"))
    ]
    budgets_ = [_budget_spec(b) for b in budget_list] or list(bench_module.BUDGETS)
    methods_ = list(method_list) or bench_module.default_methods()
    cases = bench_module.protocol_cases(
        graphs, budgets=budgets_, methods=methods_, time_limit=time_limit
    )
    targets[2].unlink(missing_ok=True)
    done = [0]
    t0 = time.perf_counter()
    bar = sys.stderr.isatty() and not as_json and not _quiet()

    def progress(row: dict) -> None:
        done[0] += 1
        if bar or as_json or _quiet():
            return  # the bar shows progress on a terminal
        nc = row["non_compulsory"]
        nc_text = "-" if nc is None else f"{nc:,}"
        click.echo(
            f"[{done[0]}/{len(cases)}] {row['graph']} {row['budget_name']} {row['method']}: "
            f"{row['status']} {nc_text} ({row['seconds']:.2f} s)",
            err=True,
        )

    rows = bench_module.run_cases(
        cases,
        executor="dask" if scheduler else executor,
        workers=workers,
        scheduler=scheduler,
        out=targets[2],
        progress_bar=bar,
        on_row=progress,
    )
    elapsed = time.perf_counter() - t0
    files.write_text(targets[0], json.dumps(rows, indent=1), option="--out")
    report = bench_module.report(rows, time_limit=time_limit, total_seconds=elapsed)
    files.write_text(targets[1], report, option="--out")
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        click.echo(f"wrote {targets[0]} and {targets[1]} ({len(rows)} rows, {elapsed:.0f} s)")


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("cosma.quiet"))


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int | bool) -> None:
    """-v/-q anywhere on the line: before or after the subcommand."""
    if not value:
        return
    if param.name == "quiet":
        ctx.find_root().meta["cosma.quiet"] = True
        level = logging.ERROR
    else:
        level = logging.WARNING - 10 * min(int(value), 2)
    logging.getLogger().setLevel(level)


def _verbosity_params() -> list[click.Option]:
    return [
        click.Option(
            ["-v", "--verbose", "sub_verbose"],
            count=True,
            expose_value=False,
            callback=_set_verbosity,
            help="More log output (-v info, -vv debug).",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_set_verbosity,
            help="Only errors: no progress lines or bars.",
        ),
    ]


for _command in cli.commands.values():
    _command.params.extend(_verbosity_params())
cli.params.append(_verbosity_params()[1])


def _closed_pipe() -> None:
    """Standard output was closed by its reader (``cosma zoo | head``): stop quietly, with
    the exit code of a process that SIGPIPE ended, as other command-line tools do."""
    with contextlib.suppress(OSError, ValueError):
        # Python flushes sys.stdout on the way out: let that write go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


#: True when the ``cosma`` script runs (``main()`` with the process's own command line):
#: only then does a time limit count from interpreter start.
_AS_SCRIPT = False


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``cosma`` script."""
    global _AS_SCRIPT
    _AS_SCRIPT = argv is None
    try:
        try:
            cli.main(args=list(argv) if argv is not None else None, prog_name="cosma")
        finally:
            sys.stdout.flush()  # a closed pipe shows here when the output was short
    except KeyboardInterrupt:  # outside a command (e.g. while click parses)
        click.echo("Error: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit as e:
        # click meets a closed pipe itself while it prints help or usage: it wraps the
        # streams so that nothing more is written, and exits 1 (cosma's "internal error").
        if e.code == 1 and isinstance(sys.stdout, click.utils.PacifyFlushWrapper):
            _closed_pipe()
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
