"""Graph sources, installed as ``cosma.graphs``: ONNX import, builders and the zoo.

:func:`load_graph` is the one entry point the CLI uses: a path to an ONNX file, or a zoo name
as ``zoo:NAME`` once the zoo has it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources

from cosma.graph import Graph
from cosma.graphs.onnx_import import load_onnx, parse_input_shape

__all__ = ["load_graph", "load_onnx", "parse_input_shape", "shipped_model"]


def shipped_model(name: str) -> str:
    """Path of an ONNX file that ships inside the package (``graphs/models/NAME.onnx``)."""
    return str(resources.files("cosma.graphs") / "models" / f"{name}.onnx")


def load_graph(
    source: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
    element_bytes: float | None = None,
) -> Graph:
    """Load a graph from an ONNX file path.

    >>> g = load_graph(shipped_model("squeezenet"), element_bytes=1)
    >>> g.num_operators
    66
    """
    return load_onnx(source, input_shapes=input_shapes, element_bytes=element_bytes)
