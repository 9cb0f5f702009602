"""Test helpers importable from every test module: light model paths, random DAGs."""

from __future__ import annotations

import glob
import os

import onnx
from hypothesis import strategies as st

from cosma import Graph, GraphBuilder

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT_DIR, "*.onnx")))


def light(name: str) -> str:
    """Path of one of the onnx wheel's light models, e.g. light('resnet50')."""
    return os.path.join(LIGHT_DIR, f"light_{name}.onnx")


@st.composite
def random_dags(draw, max_ops: int = 8, max_size: int = 20, params: bool = True) -> Graph:
    """A random valid graph: operators in file order, each reading earlier tensors."""
    n = draw(st.integers(1, max_ops))
    b = GraphBuilder("random")
    available: list[str] = []
    n_inputs = draw(st.integers(0, 2))
    for i in range(n_inputs):
        b.input(f"in{i}", draw(st.integers(0, max_size)))
        available.append(f"in{i}")
    produced: list[str] = []
    consumed: set[str] = set()
    for k in range(n):
        reads = (
            draw(st.lists(st.sampled_from(available), max_size=3, unique=True)) if available else []
        )
        if params and draw(st.booleans()):
            w = f"w{k}"
            b.parameter(w, draw(st.integers(0, max_size)))
            reads.append(w)
        n_out = draw(st.integers(1, 2))
        outs = {f"t{k}_{j}": draw(st.integers(0, max_size)) for j in range(n_out)}
        b.op(f"op{k}", reads, outs)
        consumed.update(reads)
        available.extend(outs)
        produced.extend(outs)
    # Unconsumed tensors become outputs with some probability (otherwise they are dropped).
    for t in produced:
        if t not in consumed and draw(st.booleans()):
            b.output(t)
    b.output(produced[-1])  # nothing reads the last tensor: make it an output
    return b.build()
