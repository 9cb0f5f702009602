"""Folding shape subgraphs once the input shapes are fixed.

Real exports compute reshape targets at run time: ``Shape -> Cast -> Div -> Floor -> Cast ->
Concat -> Reshape`` (PaddleOCR's recognisers do this). ONNX shape inference with data
propagation follows only a few integer operators (``Shape``, ``Gather``, ``Concat``, ``Cast``,
``Add``...), so one float ``Div`` or a ``Floor`` on the way leaves the ``Reshape`` output with
an unknown dimension, although every value on the path is a constant once the graph inputs
have static shapes.

:func:`fold_shapes` closes that gap with ONNX's own tools and no hand-written operator
semantics: shape inference (with data propagation) says which tensors have static shapes;
``Shape``/``Size`` of those become constants; every node whose inputs are all constants is
then evaluated by ``onnx.reference.ReferenceEvaluator`` (ONNX's reference implementation of
every standard operator) and replaced by an initializer; shape inference runs again on the
result, and so on until nothing changes. Only small tensors are evaluated (at most
``max_elements`` elements, so weights are never loaded or computed on), and only standard
operators that are deterministic.

Why not another library: ``onnxsim`` (which does the same with ONNX Runtime) has no wheel
on the package index this project installs from, and ONNX Runtime's symbolic shape
inference would add ONNX Runtime and sympy (hundreds of MB) for what the ``onnx`` package
cosma already needs can do.

>>> import onnx, onnx.helper as h
>>> T = onnx.TensorProto
>>> nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Cast", ["s"], ["f"], to=T.FLOAT),
...          h.make_node("Floor", ["f"], ["g"]), h.make_node("Cast", ["g"], ["n"], to=T.INT64),
...          h.make_node("Reshape", ["x", "n"], ["y"])]
>>> m = h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
...                  [h.make_tensor_value_info("y", T.FLOAT, None)]))
>>> folded, count = fold_shapes(m)
>>> count, [n.op_type for n in folded.graph.node]
(4, ['Constant', 'Constant', 'Constant', 'Constant', 'Reshape'])
>>> [d.dim_value for d in infer(folded).graph.output[0].type.tensor_type.shape.dim]
[2, 3]
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

log = logging.getLogger(__name__)

#: Operators with subgraphs: cosma needs one static dataflow graph.
CONTROL_FLOW = {"If", "Loop", "Scan", "SequenceMap"}

#: Nodes with no data inputs that are still not constants.
NONDETERMINISTIC = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
}

#: Operators never evaluated: random, or holding subgraphs.
_SKIP = NONDETERMINISTIC | CONTROL_FLOW


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation (raises ONNX's own errors)."""
    return shape_inference.infer_shapes(model, data_prop=True)


def static_dims(tensor_type: onnx.TypeProto.Tensor) -> tuple[int, ...] | None:
    """The dims of a tensor type if every one is known, else None."""
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for d in tensor_type.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def _types(inferred: onnx.ModelProto) -> dict[str, onnx.TypeProto.Tensor]:
    g = inferred.graph
    out: dict[str, onnx.TypeProto.Tensor] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.type.HasField("tensor_type"):
            out.setdefault(vi.name, vi.type.tensor_type)
    return out


def _small_initializers(graph: onnx.GraphProto, max_elements: int) -> dict[str, np.ndarray]:
    values = {}
    for t in graph.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        if n <= max_elements and t.data_location != onnx.TensorProto.EXTERNAL:
            try:
                values[t.name] = numpy_helper.to_array(t)
            except (ValueError, TypeError, RuntimeError):  # an odd dtype: just not a constant
                continue
    return values


def _shape_value(node: onnx.NodeProto, dims: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end")
    # ONNX clamps start/end like Python slicing does.
    return np.array(dims[slice(start, end)], dtype=np.int64)


def _evaluate(
    node: onnx.NodeProto, feeds: dict[str, np.ndarray], opsets: dict[str, int]
) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(node, opsets=opsets)
        return list(evaluator.run(None, feeds))
    except Exception as e:  # any operator the reference cannot run stays a node
        log.debug("not folded: %s (%s): %s", node.name, node.op_type, e)
        return None


def fold_shapes(
    model: onnx.ModelProto, *, max_elements: int = 65536, rounds: int = 20
) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every constant-computable node (of at most ``max_elements``
    output elements) replaced by an initializer, and the number of nodes folded.

    Shape inference must succeed on ``model`` (ONNX errors propagate to the caller).
    """
    opsets = {o.domain or "": o.version for o in model.opset_import}
    opsets.setdefault("", 1)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    total = 0
    for _ in range(rounds):
        types = _types(infer(model))
        graph = model.graph
        values = _small_initializers(graph, max_elements)
        folded: list[int] = []
        for i, node in enumerate(graph.node):
            if node.op_type == "Constant" and not node.input:
                attr = {a.name: a for a in node.attribute}
                outs = (
                    [numpy_helper.to_array(attr["value"].t)]
                    if "value" in attr
                    else _evaluate(node, {}, opsets)
                )
                if outs is not None and np.asarray(outs[0]).size <= max_elements:
                    values[node.output[0]] = np.asarray(outs[0])
                continue  # already folded
            if node.op_type in _SKIP or node.domain not in ("", "ai.onnx"):
                continue
            if any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute
            ):
                continue
            data_inputs = [t for t in node.input if t]
            outs: list[np.ndarray] | None = None
            if node.op_type in ("Shape", "Size") and data_inputs:
                dims = static_dims(types[data_inputs[0]]) if data_inputs[0] in types else None
                if dims is not None:
                    outs = [_shape_value(node, dims)]
            elif all(t in values for t in data_inputs):
                outs = _evaluate(node, {t: values[t] for t in data_inputs}, opsets)
            if outs is None or len(outs) < len([o for o in node.output if o]):
                continue
            outs = [np.asarray(v) for v in outs]
            if any(v.size > max_elements or v.dtype == object for v in outs):
                continue
            for name, v in zip(node.output, outs, strict=False):
                if name:
                    values[name] = v
            folded.append(i)
        if not folded:
            break
        # A single-output node becomes a Constant node in its place (file positions, and so
        # the names of unnamed nodes, stay put); a multi-output one becomes initializers.
        new_nodes, new_inits = [], []
        folded_set = set(folded)
        for i, node in enumerate(graph.node):
            outs_ = [o for o in node.output if o]
            if i not in folded_set:
                new_nodes.append(node)
            elif len(outs_) == 1:
                tensor = numpy_helper.from_array(values[outs_[0]], outs_[0] + "_value")
                new_nodes.append(
                    onnx.helper.make_node("Constant", [], outs_, name=node.name, value=tensor)
                )
            else:
                new_inits += [numpy_helper.from_array(values[o], o) for o in outs_]
        done_names = {o for i in folded for o in graph.node[i].output if o}
        kept_info = [vi for vi in graph.value_info if vi.name not in done_names]
        del graph.node[:]
        graph.node.extend(new_nodes)
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        graph.initializer.extend(new_inits)
        if model.ir_version < 4:  # then an initializer is seen only if it is also an input
            graph.input.extend(
                onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                for t in new_inits
            )
        total += len(folded)
    return model, total
