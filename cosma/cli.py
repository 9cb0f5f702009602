"""The ``cosma`` command line. Errors become one message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import click

from cosma.errors import CosmaError
from cosma.graph import Graph, Setting, TensorKind
from cosma.memory import MemoryFigures, memory_figures
from cosma.units import format_bytes

SETTINGS = {
    "activations": [Setting.ACTIVATIONS],
    "activations+parameters": [Setting.ACTIVATIONS_PARAMETERS],
    "both": [Setting.ACTIVATIONS, Setting.ACTIVATIONS_PARAMETERS],
}


class _Group(click.Group):
    """Turns every CosmaError raised by a command into ``Error: message`` and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CosmaError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
        help="Bytes per element for every tensor (the reference protocol uses 1). "
        "Default: from each tensor's ONNX type.",
    )(f)
    f = click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME=DIMS",
        help="Static shape for a graph input with dynamic dims, e.g. data=1x3x224x224. Repeatable.",
    )(f)
    f = click.argument("model", metavar="MODEL")(f)
    return f


def load_model(model: str, input_shapes: Sequence[str], element_bytes: float | None) -> Graph:
    from cosma.graphs import load_graph

    return load_graph(model, input_shapes=list(input_shapes), element_bytes=element_bytes)


def _b(n: int, exact: bool) -> str:
    return f"{n:,} B" if exact else f"{format_bytes(n)} ({n:,} B)"


def _figures_text(graph: Graph, f: MemoryFigures, exact: bool) -> list[str]:
    def op(name: str) -> str:
        return f"{name} ({graph.operators[name].op_type})"

    peak_note = "" if f.file_order_is_topological else "  [file order is not topological]"
    return [
        f"  setting: {f.setting}" + (f", alignment {f.alignment} B" if f.alignment > 1 else ""),
        f"    tracked tensors     {f.tracked_tensors:,}  ({_b(f.tracked_bytes, exact)})",
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
@click.option(
    "--alignment",
    type=int,
    default=1,
    show_default=True,
    help="Scratchpad alignment in bytes (sizes round up to it).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--bytes", "exact", is_flag=True, help="Exact byte counts only, no units.")
def inspect(
    model: str,
    input_shapes: tuple[str, ...],
    element_bytes: float | None,
    setting: str,
    alignment: int,
    as_json: bool,
    exact: bool,
) -> None:
    """Print the memory figures of MODEL (an ONNX file).

    M_R is the largest operator footprint (no plan exists below it); the must-live bound is
    a lower bound on the peak of every schedule; the file-order peak is the peak of live
    bytes when operators run in file order with no spills.
    """
    graph = load_model(model, input_shapes, element_bytes)
    figures = [memory_figures(graph, setting=s, alignment=alignment) for s in SETTINGS[setting]]
    counts = {k.value: len(graph.tensors_of_kind(k)) for k in TensorKind}
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
    eb = "from ONNX types" if element_bytes is None else f"{element_bytes:g}"
    lines = [
        f"{graph.name}  ({model})",
        f"  {graph.num_operators:,} operators, {len(graph.tensors):,} tensors "
        f"({counts['input']} inputs, {counts['output']} outputs, {counts['parameter']} "
        f"parameters, {counts['activation']} other activations); element bytes: {eb}",
    ]
    for f in figures:
        lines += _figures_text(graph, f, exact)
    click.echo("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``cosma`` script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="cosma")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
