"""Graph sources, installed as ``cosma.graphs``: ONNX import, builders and the zoo.

:func:`load_graph` is the one entry point the CLI uses: a path to an ONNX file, or a zoo name
as ``zoo:NAME`` once the zoo has it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources

from cosma.errors import UsageError
from cosma.graph import Graph

__all__ = ["load_graph", "load_onnx", "parse_input_shape", "shipped_model"]


def __getattr__(name: str):
    # The ONNX importer (and the onnx package, a few tenths of a second to import) loads
    # only when an ONNX file is read: zoo networks built in code do not need it.
    if name in ("load_onnx", "parse_input_shape"):
        from cosma.graphs import onnx_import

        return getattr(onnx_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shipped_model(name: str) -> str:
    """Path of an ONNX file that ships inside the package (``graphs/models/NAME.onnx``)."""
    return str(resources.files("cosma.graphs") / "models" / f"{name}.onnx")


def load_graph(
    source: str | os.PathLike,
    *,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
    element_bytes: float | None = None,
    training: bool = False,
) -> Graph:
    """Load a graph: ``zoo:NAME`` for a zoo network, a ``.json`` file for a Checkmate/MOCCASIN
    node-link graph (:mod:`cosma.graphs.nodelink`), otherwise the path of an ONNX file.

    Zoo networks default to 1 byte per element (the reference protocol); ONNX files to
    their tensors' types. ``training=True`` (or a zoo name ending in ``:training`` or
    ``_training``) gives the training graph (:func:`cosma.graphs.training.training_graph`).

    >>> load_graph(shipped_model("squeezenet"), element_bytes=1).num_operators
    66
    >>> load_graph("zoo:darts_v2").name
    'darts_v2'
    >>> load_graph("zoo:resnet50:training").name
    'resnet50_training'
    """
    text = str(source)
    if text.startswith("zoo:") and text.endswith(":training"):
        text, training = text[: -len(":training")], True
    if training:
        from cosma.graphs.training import training_graph

        base = load_graph(text, input_shapes=input_shapes, element_bytes=element_bytes)
        return training_graph(base)
    if text.lower().endswith(".json"):
        from cosma.graphs.nodelink import load_nodelink

        return load_nodelink(source)
    if text.startswith("zoo:"):
        from cosma.graphs import zoo

        if input_shapes:
            raise UsageError(
                "--input-shape applies to ONNX files; zoo networks are sized by their "
                "builders (see cosma.graphs.zoo.load for resolution and batch)"
            )
        options = {} if element_bytes is None else {"element_bytes": element_bytes}
        return zoo.load(text[4:], **options)
    from cosma.graphs.onnx_import import load_onnx

    return load_onnx(source, input_shapes=input_shapes, element_bytes=element_bytes)
