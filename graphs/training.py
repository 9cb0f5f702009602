"""Training graphs: a forward graph plus a loss and one backward operator per forward operator.

:func:`training_graph` turns any forward :class:`~cosma.graph.Graph` (ONNX, zoo, builder,
``from_networkx``) into the graph one training step runs, which is what rematerialization
(checkpoint selection) works on:

- the forward operators, unchanged (``phase`` attribute ``forward``);
- a ``loss`` operator (type ``Loss``) reading every forward output, writing the scalar
  ``loss`` (a graph output) and the seed gradient ``grad(y)`` of each forward output ``y``;
- for each forward operator ``v`` whose outputs get a gradient, a backward operator
  ``v/backward`` (``phase`` ``backward``). It reads the gradients of ``v``'s outputs (one
  partial gradient per consumer when an output has several: the sum is done inside the
  backward operator, so there are no extra accumulation operators) and the forward tensors
  its operator type needs (:data:`SAVED`); it writes the gradient of each input that needs
  one: ``grad(x)`` for an activation (``grad(x)@c`` when several operators ``c`` contribute
  to it) and ``grad(p)`` for a parameter (the parameter gradients are graph outputs).

Which forward tensors a backward operator reads, by operator type (:data:`SAVED`):

==============================================================  ========================
operator types                                                  backward reads
==============================================================  ========================
Conv, ConvTranspose, MatMul, Gemm, Mul, Div, Pow                its inputs (operands and
                                                                weights)
Relu, Sigmoid, Tanh, Softmax, LogSoftmax, Exp, Sqrt, Reciprocal its output
Gelu, LeakyRelu, Elu, Selu, Softplus, HardSigmoid, HardSwish,   its input
Erf, Log, Abs, Clip, Sin, Cos
BatchNormalization, LayerNormalization, InstanceNormalization,  its inputs
GroupNormalization
MaxPool                                                         its input and output
Add, Sub, Sum, Neg, Concat, Split, Reshape, Flatten, Transpose, nothing (shapes only)
Identity, Squeeze, Unsqueeze, Slice, Pad, Expand, Tile,
AveragePool, GlobalAveragePool, ReduceMean, ReduceSum, Dropout,
Cast
Gather                                                          its inputs (the indices)
any other type                                                  all its inputs
                                                                (conservative)
==============================================================  ========================

Gradients flow to activations and to parameters of a floating type (``dtype`` unknown counts
as floating); graph inputs (the data) get none, and neither do the non-data operands of shape
operators (the ``shape`` of ``Reshape``, the indices of ``Gather``...) nor BatchNormalization's
running mean and variance (statistics, not weights). An activation needs a
gradient if its operator reads something that does.

Compute cost (``cost`` attribute of every operator, see :mod:`cosma.cost`): a forward
operator keeps its cost (its own ``cost`` attribute or the shape estimate); the loss costs
the element count of the forward outputs; a backward operator costs, per gradient it
writes, its forward cost for ``Conv``/``MatMul``/``Gemm`` (computing ``dX`` and ``dW`` each
takes as many MACs as the forward pass) and the element count of that gradient otherwise,
plus one addition per element for every extra partial gradient it sums.

>>> from cosma.graph import GraphBuilder
>>> g = (GraphBuilder("mlp").input("x", 4).parameter("w", 16)
...      .op("fc", ["x", "w"], {"h": 4}, op_type="MatMul").op("act", ["h"], {"y": 4}, "Relu")
...      .output("y").build())
>>> t = training_graph(g)
>>> t.file_order
('fc', 'act', 'loss', 'act/backward', 'fc/backward')
>>> t.operators["act/backward"].inputs, t.operators["fc/backward"].outputs
(('grad(y)', 'y'), ('grad(w)',))
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cosma.cost import CONV_TYPES, MATMUL_TYPES, elements, operator_cost
from cosma.errors import UsageError
from cosma.graph import Graph, Operator, TensorKind

_INPUTS, _OUTPUT, _INPUT, _IN_OUT, _NOTHING = "inputs", "output", "input", "input+output", ""


def _table(types: Iterable[str], reads: str) -> dict[str, str]:
    return {t: reads for t in types}


#: What the backward of each operator type reads of the forward tensors (see module doc).
SAVED: dict[str, str] = {
    **_table(["Conv", "ConvTranspose", "MatMul", "Gemm", "Mul", "Div", "Pow", "Gather"], _INPUTS),
    **_table(
        ["Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Exp", "Sqrt", "Reciprocal"],
        _OUTPUT,
    ),
    **_table(
        [
            "Gelu",
            "LeakyRelu",
            "Elu",
            "Selu",
            "Softplus",
            "HardSigmoid",
            "HardSwish",
            "Erf",
            "Log",
            "Abs",
            "Clip",
            "Sin",
            "Cos",
        ],
        _INPUT,
    ),
    **_table(
        [
            "BatchNormalization",
            "LayerNormalization",
            "InstanceNormalization",
            "GroupNormalization",
        ],
        _INPUTS,
    ),
    "MaxPool": _IN_OUT,
    **_table(
        [
            "Add",
            "Sub",
            "Sum",
            "Neg",
            "Concat",
            "Split",
            "Reshape",
            "Flatten",
            "Transpose",
            "Identity",
            "Squeeze",
            "Unsqueeze",
            "Slice",
            "Pad",
            "Expand",
            "Tile",
            "AveragePool",
            "GlobalAveragePool",
            "ReduceMean",
            "ReduceSum",
            "Dropout",
            "Cast",
        ],
        _NOTHING,
    ),
}

#: Operator types whose operands after the first carry no gradient (shapes, indices, pads).
FIRST_OPERAND_ONLY = frozenset(
    {
        "Reshape",
        "Expand",
        "Tile",
        "Slice",
        "Pad",
        "Resize",
        "Upsample",
        "Squeeze",
        "Unsqueeze",
        "TopK",
        "Gather",
        "GatherElements",
        "GatherND",
        "ScatterND",
        "OneHot",
    }
)

#: Operator types with no gradient at all (their outputs are integers or masks).
NOT_DIFFERENTIABLE = frozenset(
    {
        "Shape",
        "Size",
        "NonZero",
        "ArgMax",
        "ArgMin",
        "Equal",
        "Less",
        "LessOrEqual",
        "Greater",
        "GreaterOrEqual",
        "Not",
        "And",
        "Or",
        "Xor",
        "IsNaN",
        "IsInf",
        "Range",
        "ConstantOfShape",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
    }
)


#: Operator types whose operands past the first N are not trained: BatchNormalization's
#: running mean and variance (inputs 4 and 5) are statistics, not weights.
TRAINED_OPERANDS = {"BatchNormalization": 3}


def saved_reads(op: Operator) -> list[str]:
    """The forward tensors the backward of ``op`` reads, by :data:`SAVED` (default: inputs)."""
    rule = SAVED.get(op.op_type, _INPUTS)
    reads: list[str] = []
    if rule in (_INPUTS, _IN_OUT):
        reads += list(op.inputs)
    if rule == _INPUT:
        reads += list(op.inputs[:1])
    if rule in (_OUTPUT, _IN_OUT):
        reads += list(op.outputs)
    return reads


def _floating(dtype: str | None) -> bool:
    return dtype is None or "float" in dtype.lower() or "double" in dtype.lower()


def is_training_graph(graph: Graph) -> bool:
    """Whether ``graph`` already has backward operators (``phase`` ``backward``: made by
    :func:`training_graph`, or a Checkmate/MOCCASIN training file).

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder("f").input("x", 4).op("a", ["x"], {"y": 4}, "Relu").output("y").build()
    >>> is_training_graph(g), is_training_graph(training_graph(g))
    (False, True)
    """
    return any(
        op.attributes.get("phase") in ("backward", "loss") for op in graph.operators.values()
    )


def training_graph(forward: Graph, *, name: str | None = None) -> Graph:
    """The training graph of ``forward``: forward, loss, backward (see the module doc).

    Every operator gets a ``cost`` attribute and a ``phase`` attribute (``forward``, ``loss``
    or ``backward``); a backward operator also gets ``forward``, its forward operator.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder("f").input("x", 4).op("a", ["x"], {"y": 4}, "Relu").output("y").build()
    >>> training_graph(g).outputs  # no parameter: no gradient is needed at all
    ['loss']
    """
    if is_training_graph(forward):
        raise UsageError(
            f"graph {forward.name!r} is already a training graph (it has backward operators): "
            "plan it as it is, without --training"
        )
    t = forward.tensors
    order = forward.topological_order()
    fw_cost = {v: operator_cost(forward, v) for v in order}
    ops = forward.operators

    def diff_operands(op: Operator) -> list[str]:
        if op.op_type in NOT_DIFFERENTIABLE:
            return []
        slots = op.inputs[:1] if op.op_type in FIRST_OPERAND_ONLY else op.inputs
        slots = slots[: TRAINED_OPERANDS.get(op.op_type, len(slots))]
        return [x for x in slots if _floating(t[x].dtype)]

    # Which tensors need a gradient: parameters read at a differentiable slot, and
    # activations whose operator reads a tensor that needs one.
    needs: set[str] = set()
    for v in order:
        op = ops[v]
        if any(t[x].kind is TensorKind.PARAMETER or x in needs for x in diff_operands(op)):
            needs.update(y for y in op.outputs if _floating(t[y].dtype))

    def grad_wanted(op: Operator) -> list[str]:
        """Operands of ``op`` that get a gradient from its backward."""
        return [x for x in diff_operands(op) if x in needs or t[x].kind is TensorKind.PARAMETER]

    # Operators that get a backward: some output receives a gradient (from the loss, or
    # from an operator that gets one) and some operand wants one. An operator whose
    # outputs never reach the loss (a dead end, an operator left with no outputs) has
    # none, and so contributes to no gradient.
    outs = forward.outputs
    reached = {y for y in outs if y in needs}
    active: set[str] = set()
    for v in reversed(order):
        wanted = grad_wanted(ops[v])
        if wanted and any(y in reached for y in ops[v].outputs):
            active.add(v)
            reached.update(wanted)
    # Contributors to each gradient: backward operators of consumers, and the loss.
    contributors: dict[str, list[str]] = {}
    for y in outs:
        if y in needs:
            contributors.setdefault(y, []).append("loss")
    for v in order:
        if v in active:
            for x in grad_wanted(ops[v]):
                contributors.setdefault(x, []).append(f"{v}/backward")

    def gname(x: str, by: str) -> str:
        return f"grad({x})" if len(contributors[x]) == 1 else f"grad({x})@{by}"

    sizes = {n: x.size for n, x in t.items()}
    shapes = {n: x.shape for n, x in t.items() if x.shape is not None}
    dtypes = {n: x.dtype for n, x in t.items() if x.dtype is not None}
    new_ops: list[Operator] = [
        Operator(
            v,
            ops[v].op_type,
            ops[v].inputs,
            ops[v].outputs,
            {**dict(ops[v].attributes), "cost": fw_cost[v], "phase": "forward"},
        )
        for v in order
    ]

    def add_grad(x: str, by: str) -> str:
        g = gname(x, by)
        sizes[g] = t[x].size
        if t[x].shape is not None:
            shapes[g] = t[x].shape
        if t[x].dtype is not None:
            dtypes[g] = t[x].dtype
        return g

    # The loss: reads the forward outputs, writes the scalar loss and the seed gradients.
    loss_bytes = max(1, math.ceil(t[outs[0]].size / elements(t[outs[0]]))) if outs else 1
    sizes["loss"] = loss_bytes
    shapes["loss"] = ()
    if "loss" in t or "loss" in ops:
        raise UsageError(
            f"graph {forward.name!r} already has a tensor or operator named 'loss'; "
            "rename it to make its training graph"
        )
    seeds = [add_grad(y, "loss") for y in outs if y in needs]
    new_ops.append(
        Operator(
            "loss",
            "Loss",
            tuple(outs),
            ("loss", *seeds),
            {"cost": sum(elements(t[y]) for y in outs), "phase": "loss"},
        )
    )
    param_grads: list[str] = []
    for v in reversed(order):
        op = ops[v]
        name_b = f"{v}/backward"
        if name_b in ops:
            raise UsageError(f"graph {forward.name!r} already has an operator named {name_b!r}")
        incoming = [gname(y, c) for y in op.outputs if y in contributors for c in contributors[y]]
        wanted = grad_wanted(op)
        if not incoming or not wanted:
            continue
        written = [add_grad(x, name_b) for x in wanted]
        param_grads += [
            g for x, g in zip(wanted, written, strict=True) if t[x].kind is TensorKind.PARAMETER
        ]
        if op.op_type in CONV_TYPES or op.op_type in MATMUL_TYPES:
            cost = fw_cost[v] * len(written)
        else:
            cost = sum(elements(t[x]) for x in wanted)
        cost += sum(
            (len(contributors[y]) - 1) * elements(t[y]) for y in op.outputs if y in contributors
        )
        reads = tuple(dict.fromkeys([*incoming, *saved_reads(op)]))
        new_ops.append(
            Operator(
                name_b,
                "Backward" + op.op_type,
                reads,
                tuple(written),
                {"cost": max(1, cost), "phase": "backward", "forward": v},
            )
        )
    return Graph(
        name or f"{forward.name}_training",
        new_ops,
        sizes,
        inputs=forward.inputs,
        parameters=forward.parameters,
        outputs=["loss", *param_grads],
        shapes=shapes,
        dtypes=dtypes,
    )
