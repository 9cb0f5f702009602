"""ONNX import (SPEC §1): shape inference, constant folding of weights, static sizes.

Nodes whose inputs are all parameters (initializers, ``Constant``, ``ConstantOfShape``,
``Identity``/``Unsqueeze``/``Cast``... on weights) are folded: their outputs are parameters,
not operators. So is shape arithmetic: ``Shape``/``Size`` of a tensor with a static shape is a
constant. Outputs that nothing consumes and that are not graph outputs are dropped (e.g. the
mask of an opset-9 ``Dropout``), and so are operators left with no output.
"""

from __future__ import annotations

import heapq
import logging
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import shape_inference

from cosma import options as check
from cosma.errors import ModelImportError, UnsupportedModelError, UsageError
from cosma.graph import Graph, Operator
from cosma.graphs.shape_folding import CONTROL_FLOW, NONDETERMINISTIC, fold_shapes
from cosma.graphs.shape_folding import static_dims as _dims
from cosma.options import MAX_BYTES

log = logging.getLogger(__name__)

#: Bits per element of each ONNX data type with a fixed size.
ELEMENT_BITS: dict[str, int] = {
    "FLOAT": 32,
    "UINT8": 8,
    "INT8": 8,
    "UINT16": 16,
    "INT16": 16,
    "INT32": 32,
    "INT64": 64,
    "BOOL": 8,
    "FLOAT16": 16,
    "DOUBLE": 64,
    "UINT32": 32,
    "UINT64": 64,
    "COMPLEX64": 64,
    "COMPLEX128": 128,
    "BFLOAT16": 16,
    "FLOAT8E4M3FN": 8,
    "FLOAT8E4M3FNUZ": 8,
    "FLOAT8E5M2": 8,
    "FLOAT8E5M2FNUZ": 8,
    "FLOAT8E8M0": 8,
    "UINT4": 4,
    "INT4": 4,
    "FLOAT4E2M1": 4,
    "UINT2": 2,
    "INT2": 2,
    "FLOAT6E2M3": 6,
    "FLOAT6E3M2": 6,
}

#: Nodes whose output depends only on their input's (static) shape.
SHAPE_ONLY = {"Shape", "Size"}


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Read ``NAME=1x3x224x224`` (``,`` also separates dims; the name may contain ``=``).

    >>> parse_input_shape("data_0=1x3x224x224")
    ('data_0', (1, 3, 224, 224))
    """
    name, sep, dims = str(text).rpartition("=")
    if not sep or not name or not re.fullmatch(r"\s*\d+(\s*[x,]\s*\d+)*\s*", dims):
        raise UsageError(
            f"cannot read input shape {text!r}: write NAME=DIMS with whole dimensions of at "
            "least 1, e.g. data_0=1x3x224x224"
        )
    shape = tuple(int(d) for d in re.split(r"[x,]", dims))
    _check_dims(name, shape)
    return name, shape


def _check_dims(name: str, shape: Sequence[int]) -> None:
    """Every dimension is a whole number in [1, 2^53]; the product stays below 2^53."""
    numel = 1
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 1 <= d <= MAX_BYTES:
            raise UsageError(
                f"input shape of {name!r}: dimension {d!r} is not a whole number from 1 to "
                f"2^53; give the size you run with, e.g. {name}=1x3x224x224"
            )
        numel *= int(d)
    if numel > MAX_BYTES:
        raise UsageError(
            f"input shape of {name!r}: {'x'.join(map(str, shape))} has {numel:.3g} elements, "
            "more than cosma can size (2^53 bytes); check the dimensions"
        )


def _read_model(source: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        return source, source.graph.name or "model"
    path = Path(source)
    if not path.exists():
        raise ModelImportError(f"{path}: no such file; check the path (or use zoo:NAME)")
    if path.is_dir():
        raise ModelImportError(f"{path} is a directory; give the path of an .onnx file")
    data = path.read_bytes()
    if not data:
        raise ModelImportError(f"{path} is empty; it is not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelImportError(
            f"{path} is not a readable ONNX model (the protobuf does not parse: {e}); "
            "the file may be truncated, corrupt, or another format"
        ) from None
    if model.ir_version > 0 and model.HasField("graph") and not model.graph.node:
        raise ModelImportError(
            f"{path}: the model's graph has no operators (nodes), so there is nothing to "
            "plan; export the model with its operators"
        )
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise ModelImportError(
            f"{path} is not an ONNX model (it parses, but has no IR version or no graph "
            "nodes); the file may be truncated, corrupt, or another format"
        )
    return model, path.stem


def _dim_text(tensor_type: onnx.TypeProto.Tensor) -> str:
    if not tensor_type.HasField("shape"):
        return "unknown rank"
    return (
        "x".join(
            str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor_type.shape.dim
        )
        or "scalar"
    )


def _example(vi: onnx.ValueInfoProto) -> str:
    """A valid ``--input-shape`` for ``vi``: static dims kept, dynamic ones 1."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return f"{vi.name}=1x3x224x224"
    dims = [str(d.dim_value) if d.dim_value > 0 else "1" for d in tt.shape.dim]
    return f"{vi.name}={'x'.join(dims) or '1'}"


def _check_override(gname: str, name: str, tt: onnx.TypeProto.Tensor, dims: Sequence[int]) -> None:
    """An override must keep the declared rank and every dimension the model fixes."""
    if not tt.HasField("shape"):
        return  # rank unknown: any shape is the user's call
    declared = list(tt.shape.dim)
    given = "x".join(map(str, dims))
    if len(declared) != len(dims):
        raise UsageError(
            f"--input-shape {name}={given}: {gname} declares {name!r} with "
            f"{len(declared)} dimension(s) ({_dim_text(tt)}), not {len(dims)}; give "
            f"{len(declared)}, e.g. --input-shape {_example_dims(name, declared)}"
        )
    for i, (d, new) in enumerate(zip(declared, dims, strict=True)):
        if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != new:
            raise UsageError(
                f"--input-shape {name}={given}: dimension {i} of {name!r} is fixed at "
                f"{d.dim_value} in {gname} ({_dim_text(tt)}); only dynamic dimensions can be "
                f"set, e.g. --input-shape {_example_dims(name, declared)}"
            )


def _example_dims(name: str, declared) -> str:
    return f"{name}=" + "x".join(str(d.dim_value) if d.dim_value > 0 else "1" for d in declared)


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"node {node.name or f'#{index}'!r} ({node.op_type})"


def load_onnx(
    source: str | os.PathLike | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
    element_bytes: float | None = None,
    name: str | None = None,
) -> Graph:
    """Load an ONNX model (a path or a ModelProto) as a :class:`~cosma.graph.Graph`.

    ``input_shapes`` fixes dynamic input dimensions (``{"x": (1, 3, 224, 224)}`` or
    ``["x=1x3x224x224"]``); ``element_bytes`` gives every tensor that many bytes per element
    instead of its ONNX type's (SPEC §6 uses 1). Weights are never loaded.

    >>> import onnx.helper as h
    >>> x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])
    >>> y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    >>> m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    >>> g = load_onnx(m)
    >>> g.tensors["x"].size, g.tensors["y"].size, g.tensors["y"].kind.value
    (32, 32, 'output')
    """
    if element_bytes is not None:
        element_bytes = check.element_bytes(element_bytes, option="element_bytes")
    model, stem = _read_model(source)
    gname = name or stem

    if model.functions:
        from onnx import inliner

        try:
            model = inliner.inline_local_functions(model)
        except Exception as e:  # onnx raises plain C++ errors here; any failure means the same
            raise UnsupportedModelError(
                f"{gname}: its model-local functions cannot be inlined ({type(e).__name__}: "
                f"{str(e)[:300]}); check the model with onnx.checker.check_model(..., "
                "full_check=True) and re-export it"
            ) from None

    for i, node in enumerate(model.graph.node):
        if node.op_type in CONTROL_FLOW or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise UnsupportedModelError(
                f"{gname}: {_node_label(node, i)} is control flow (it holds a subgraph); cosma "
                "needs a static dataflow graph. Export the model with the loop unrolled or the "
                "branch resolved (e.g. trace it with fixed inputs), or simplify it first "
                "(onnxsim folds constant conditions)"
            )

    initializers = {t.name: t for t in model.graph.initializer}
    initializers.update({t.values.name: t.values for t in model.graph.sparse_initializer})
    real_inputs = [i for i in model.graph.input if i.name not in initializers]

    # Apply shape overrides on a copy, then insist every input is static.
    overrides: dict[str, tuple[int, ...]] = {}
    if input_shapes:
        items = (
            input_shapes.items()
            if isinstance(input_shapes, Mapping)
            else (parse_input_shape(s) for s in input_shapes)
        )
        overrides = {k: tuple(int(d) for d in v) for k, v in items}
    if overrides:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        real_inputs = [i for i in model.graph.input if i.name not in initializers]
        by_name = {i.name: i for i in real_inputs}
        for k, dims in overrides.items():
            if k not in by_name:
                raise UsageError(
                    f"--input-shape names {k!r}, which is not a graph input of {gname}; "
                    f"its inputs are: {', '.join(by_name) or '(none)'}"
                )
            _check_dims(k, dims)
            tt = by_name[k].type.tensor_type
            _check_override(gname, k, tt, dims)
            tt.shape.Clear()
            for d in dims:
                tt.shape.dim.add().dim_value = d
    dynamic = [i for i in real_inputs if _dims(i.type.tensor_type) is None]
    if dynamic:
        lines = "; ".join(f"{i.name!r} is {_dim_text(i.type.tensor_type)}" for i in dynamic)
        example = " ".join(f"--input-shape {_example(i)}" for i in dynamic)
        raise UnsupportedModelError(
            f"{gname}: graph input(s) with dynamic or unknown dimensions: {lines}. "
            f"Give static shapes, e.g. {example} (each 1 stands for a dynamic dimension: "
            "replace it by the size you run with)"
        )

    model, value_types, folded_count = _static_shapes(model, gname, bool(overrides))
    if folded_count:
        log.info("%s: %d shape-computing nodes folded into constants", gname, folded_count)
        initializers = {t.name: t for t in model.graph.initializer}
        initializers.update({t.values.name: t.values for t in model.graph.sparse_initializer})

    # Constant folding: which node outputs are parameters. Nodes are topologically sorted
    # in a valid model; sort them ourselves in case they are not.
    nodes = _topological_nodes(model.graph, gname)
    params: set[str] = set(initializers)
    folded: set[int] = set()
    for i, node in nodes:
        data_inputs = [t for t in node.input if t]
        if node.op_type in NONDETERMINISTIC:
            continue
        if node.op_type in SHAPE_ONLY and data_inputs:
            src = value_types.get(data_inputs[0])
            if src is not None and _dims(src) is not None:
                folded.add(i)
                params.update(t for t in node.output if t)
            continue
        if all(t in params for t in data_inputs):
            folded.add(i)
            params.update(t for t in node.output if t)

    # Operators: the nodes not folded away.
    ops: list[Operator] = []
    used_names: set[str] = set()
    for i, node in sorted(nodes, key=lambda p: p[0]):
        if i in folded:
            continue
        base = node.name or f"{node.op_type}_{i}"
        op_name, k = base, 1
        while op_name in used_names:
            op_name, k = f"{base}_{k}", k + 1
        used_names.add(op_name)
        attrs = {
            a.name: onnx.helper.get_attribute_value(a)
            for a in node.attribute
            if a.type
            in (
                onnx.AttributeProto.INT,
                onnx.AttributeProto.INTS,
                onnx.AttributeProto.FLOAT,
                onnx.AttributeProto.STRING,
            )
        }
        ops.append(
            Operator(
                op_name,
                node.op_type,
                tuple(t for t in node.input if t),
                tuple(t for t in node.output if t),
                attrs,
            )
        )

    graph_outputs = []
    for o in model.graph.output:
        if o.name in params:
            log.warning("%s: graph output %r is a constant; it is left out", gname, o.name)
        elif o.name in {i.name for i in real_inputs}:
            log.warning("%s: graph output %r is a graph input; it is left out", gname, o.name)
        else:
            graph_outputs.append(o.name)

    ops = _drop_dead(ops, set(graph_outputs), gname)

    # Sizes of every tensor an operator touches.
    needed: dict[str, str] = {}
    for op in ops:
        for t in op.inputs:
            needed.setdefault(t, f"read by {op.name!r} ({op.op_type})")
        for t in op.outputs:
            needed[t] = f"output of {op.name!r} ({op.op_type})"
    sizes: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    problems: list[str] = []
    unshaped: set[str] = set()
    for t, where in needed.items():
        if t in initializers and not isinstance(initializers[t], onnx.SparseTensorProto):
            init = initializers[t]
            dims: tuple[int, ...] | None = tuple(init.dims)
            elem = init.data_type
        elif t in value_types:
            dims = _dims(value_types[t])
            elem = value_types[t].elem_type
        else:
            dims, elem = None, 0
        if dims is None:
            unshaped.add(t)
            problems.append(
                f"tensor {t!r} ({where}) has no static shape after shape inference"
                + (f" (inferred {_dim_text(value_types[t])})" if t in value_types else "")
            )
            continue
        if elem not in onnx.TensorProto.DataType.values():
            problems.append(
                f"tensor {t!r} ({where}) has element type {elem}, which ONNX does not define; "
                "fix the model's type, or pass --element-bytes N to size every element"
            )
            continue
        dtype = onnx.TensorProto.DataType.Name(elem)
        numel = 1
        for d in dims:
            numel *= d
        if numel * 16 > MAX_BYTES * 8:  # 16 bytes: the widest element (complex128)
            problems.append(
                f"tensor {t!r} ({where}) has shape {'x'.join(map(str, dims))}: "
                f"{numel:.3g} elements, more than cosma can size (2^53 bytes); check the "
                "input shapes"
            )
            continue
        if element_bytes is not None:
            size = int(-(-numel * element_bytes // 1))
        elif dtype in ELEMENT_BITS:
            size = -(-numel * ELEMENT_BITS[dtype] // 8)
        else:
            problems.append(
                f"tensor {t!r} ({where}) has element type {dtype}, which has no fixed size; "
                "pass --element-bytes N to give every element N bytes"
            )
            continue
        sizes[t], shapes[t], dtypes[t] = size, dims, dtype
    if problems:
        shown = problems[:10]
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        if unshaped:
            # Every graph input is static here (dynamic ones were refused above): the
            # shapes are lost inside the graph, at operators inference cannot follow.
            kinds = sorted({str(op.op_type) for op in ops if set(op.outputs) & unshaped}) or [
                "the nodes listed"
            ]
            fix = (
                f"\nThe graph inputs have static shapes; ONNX shape inference (with shape "
                f"subgraphs folded) still cannot size the outputs of {', '.join(kinds)}: a "
                "custom or unsupported operator, or shapes that depend on data. Export the "
                "model with static shapes, or simplify it (e.g. onnxsim) and try again"
            )
        else:
            fix = ""
        raise UnsupportedModelError(
            f"{gname}: cannot give every tensor a static size:\n  - "
            + "\n  - ".join(shown)
            + more
            + fix
        )

    return Graph(
        gname,
        ops,
        sizes,
        inputs=[i.name for i in real_inputs],
        parameters=sorted(params),
        outputs=graph_outputs,
        shapes=shapes,
        dtypes=dtypes,
    )


def _static_shapes(
    model: onnx.ModelProto, gname: str, overridden: bool
) -> tuple[onnx.ModelProto, dict[str, onnx.TypeProto.Tensor], int]:
    """Shapes recomputed from the (now static) inputs, folding shape subgraphs if needed.

    The file's ``value_info`` is not trusted: inference runs without it (a shape the file
    recorded for other input shapes would be stale). Only if inference cannot say, and the
    inputs are as the file declares them, is the file's own entry used. Returns the model
    (with shape subgraphs folded into initializers, if any were), the tensor types, and how
    many nodes were folded.
    """
    recorded = {
        vi.name: vi.type.tensor_type
        for vi in model.graph.value_info
        if vi.type.HasField("tensor_type")
    }
    fresh = onnx.ModelProto.FromString(model.SerializeToString())
    del fresh.graph.value_info[:]
    if overridden:  # declared output shapes may be stale too: keep only their types
        for o in fresh.graph.output:
            if o.type.HasField("tensor_type"):
                o.type.tensor_type.ClearField("shape")
    folded = 0
    try:
        inferred = shape_inference.infer_shapes(fresh, data_prop=True)
        types = _value_types(inferred)
        if any(
            t and (t not in types or _dims(types[t]) is None)
            for n in fresh.graph.node
            for t in n.output
        ):
            fresh, folded = fold_shapes(fresh)
            types = _value_types(shape_inference.infer_shapes(fresh, data_prop=True))
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        raise UnsupportedModelError(
            f"{gname}: ONNX shape inference failed: {e}. Check the input shapes given with "
            "--input-shape, or fix the model with onnx.checker"
        ) from None
    except (RuntimeError, ValueError, OverflowError) as e:  # onnx's C++ errors surface so
        raise UnsupportedModelError(
            f"{gname}: ONNX shape inference failed ({type(e).__name__}: {str(e)[:300]}). "
            "Check the input shapes, or fix the model with onnx.checker"
        ) from None
    if not overridden:
        for name, tt in recorded.items():
            if (name not in types or _dims(types[name]) is None) and _dims(tt) is not None:
                types[name] = tt
    return fresh, types, folded


def _value_types(inferred: onnx.ModelProto) -> dict[str, onnx.TypeProto.Tensor]:
    out: dict[str, onnx.TypeProto.Tensor] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            out.setdefault(vi.name, vi.type.tensor_type)
    return out


def _topological_nodes(graph: onnx.GraphProto, gname: str) -> list[tuple[int, onnx.NodeProto]]:
    """Nodes with their file index, in a topological order (file order where it is one)."""
    producer = {}
    for i, node in enumerate(graph.node):
        for t in node.output:
            if t:
                producer[t] = i
    indeg = [0] * len(graph.node)
    succ: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for p in {producer[t] for t in node.input if t in producer}:
            if p == i:
                raise UnsupportedModelError(
                    f"{gname}: {_node_label(node, i)} reads its own output; the graph has a cycle"
                )
            succ.setdefault(p, []).append(i)
            indeg[i] += 1
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append((i, graph.node[i]))
        for s in succ.get(i, ()):
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, s)
    if len(out) != len(graph.node):
        stuck = [_node_label(graph.node[i], i) for i, d in enumerate(indeg) if d > 0][:5]
        raise UnsupportedModelError(f"{gname}: the nodes form a cycle (involving {stuck})")
    return out


def _drop_dead(ops: list[Operator], outputs: set[str], gname: str) -> list[Operator]:
    """Drop outputs nothing reads (and that are not graph outputs), then operators with none
    left, until nothing changes."""
    while True:
        read = {t for op in ops for t in op.inputs} | outputs
        kept = []
        for op in ops:
            live = tuple(t for t in op.outputs if t in read)
            if not live:
                log.info("%s: operator %r computes nothing used; dropped", gname, op.name)
                continue
            kept.append(Operator(op.name, op.op_type, op.inputs, live, op.attributes))
        if len(kept) == len(ops):
            return kept
        ops = kept
