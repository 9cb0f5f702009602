"""Compute cost of operators: multiply-accumulates (MACs) estimated from tensor shapes.

The cost model (used by rematerialization, where recomputing an operator costs its compute):

- an operator with a ``cost`` attribute (``from_networkx`` node attribute ``cost``, a training
  graph, a Checkmate/MOCCASIN JSON file's ``cost_cpu``) costs exactly that;
- ``Conv``/``ConvTranspose``: output elements × (input channels per group × kernel volume),
  read from the weight's shape ``[C_out, C_in/g, k...]`` or, for a flat weight, as its element
  count divided by ``C_out``;
- ``MatMul``/``Gemm``: output elements × the inner dimension (the first operand's last axis,
  or a flat weight's elements divided by the output's last axis);
- every other operator: the element count of its largest input or output (one operation per
  element: activations, normalizations, pooling windows counted once, data movement);
- a tensor without a shape counts its bytes as elements.

Costs are whole numbers, at least 1, so exact engines can use them as integer weights.

>>> from cosma.graph import GraphBuilder
>>> g = (GraphBuilder().input("x", 6, shape=(1, 2, 3)).parameter("w", 8, shape=(2, 4))
...      .op("mm", ["x", "w"], {"y": 12}, op_type="MatMul", shapes={"y": (1, 3, 4)})
...      .output("y").build())
>>> operator_cost(g, "mm")  # 12 output elements x inner dimension 3 (x's last axis)
36
"""

from __future__ import annotations

import math

from cosma.graph import Graph, Tensor, TensorKind

#: Operator types whose cost is output elements × inner dimension.
MATMUL_TYPES = frozenset({"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul"})
CONV_TYPES = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"})


def elements(tensor: Tensor) -> int:
    """Element count of ``tensor`` from its shape, else its size in bytes."""
    if tensor.shape is not None:
        return max(1, math.prod(int(d) for d in tensor.shape))
    return max(1, tensor.size)


def explicit_cost(graph: Graph, operator: str) -> int | None:
    """The ``cost`` attribute of ``operator`` if it has a usable one, else None."""
    c = graph.operators[operator].attributes.get("cost")
    if c is None or isinstance(c, bool):
        return None
    try:
        value = float(c)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return round(value)


def shape_cost(graph: Graph, operator: str) -> int:
    """MACs of ``operator`` estimated from shapes by the cost model above (ignores ``cost``)."""
    op = graph.operators[operator]
    t = graph.tensors
    outs = [t[o] for o in op.outputs if o in t]
    ins = [t[i] for i in op.inputs if i in t]
    out_elems = max((elements(o) for o in outs), default=1)
    weights = [x for x in ins if x.kind is TensorKind.PARAMETER]
    acts = [x for x in ins if x.kind is not TensorKind.PARAMETER]
    if op.op_type in CONV_TYPES and weights:
        w = max(weights, key=elements)
        if w.shape is not None and len(w.shape) >= 3:
            per_output = math.prod(int(d) for d in w.shape[1:])
        else:
            c_out = _axis(outs, 1)
            per_output = max(1, elements(w) // c_out)
        return max(1, out_elems * per_output)
    if op.op_type in MATMUL_TYPES:
        inner = None
        if acts and acts[0].shape:
            inner = int(acts[0].shape[-1])
        elif weights:
            inner = max(1, elements(max(weights, key=elements)) // _axis(outs, -1))
        if inner:
            return max(1, out_elems * inner)
    return max([out_elems, *(elements(x) for x in acts)])


def _axis(tensors: list[Tensor], axis: int) -> int:
    for x in tensors:
        if x.shape is not None and len(x.shape) > (axis if axis >= 0 else -axis - 1):
            return max(1, int(x.shape[axis]))
    return 1


def operator_cost(graph: Graph, operator: str) -> int:
    """Compute cost of ``operator``: its ``cost`` attribute, else the shape estimate."""
    c = explicit_cost(graph, operator)
    return shape_cost(graph, operator) if c is None else c


def costs(graph: Graph) -> dict[str, int]:
    """Cost of every operator, in file order.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> costs(g)
    {'f': 8}
    """
    return {v: operator_cost(graph, v) for v in graph.file_order}
