"""The case library: small graphs and ONNX models that several test files use.

Test files import cases from here (and helpers from ``helpers``), never from each other.
"""

from __future__ import annotations

import onnx
import onnx.helper as h
from onnx import TensorProto as T


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return h.make_tensor(name, T.INT64, [len(values)], values)


def paddle_recogniser_head(width: int = 80, channels: int = 64) -> onnx.ModelProto:
    """A PaddleOCR-style text-recogniser head, as Paddle2ONNX exports it: features
    ``[1, C, 1, W]`` are transposed to ``[1, 1, W, C]`` and reshaped to ``[1, W', C]`` where
    ``W' = floor(W / 2) * 2`` is computed at run time: ``Shape -> Cast(float) -> Gather ->
    Div -> Floor -> Mul -> Cast(int64) -> Concat -> Reshape``. ONNX's data propagation
    stops at the float ``Div``, so without folding the output has an unknown dimension.
    Output: ``[1, W', C]`` floats (softmax over C)."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, channels, 1, width])
    y = h.make_tensor_value_info("y", T.FLOAT, None)
    nodes = [
        h.make_node("Relu", ["x"], ["r"], name="relu"),
        h.make_node("Shape", ["r"], ["s"], name="shape"),
        h.make_node("Cast", ["s"], ["sf"], to=T.FLOAT, name="cast_f"),
        h.make_node("Gather", ["sf", "i3"], ["w"], axis=0, name="gather_w"),
        h.make_node("Div", ["w", "two"], ["wh"], name="div"),
        h.make_node("Floor", ["wh"], ["wf"], name="floor"),
        h.make_node("Mul", ["wf", "two"], ["w2"], name="mul"),
        h.make_node("Cast", ["w2"], ["wi"], to=T.INT64, name="cast_i"),
        h.make_node("Gather", ["s", "i1"], ["c"], axis=0, name="gather_c"),
        h.make_node("Concat", ["one", "wi", "c"], ["newshape"], axis=0, name="concat"),
        h.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 3, 1], name="transpose"),
        h.make_node("Reshape", ["rt", "newshape"], ["rs"], name="reshape"),
        h.make_node("Softmax", ["rs"], ["y"], axis=-1, name="softmax"),
    ]
    inits = [
        _ints("i3", [3]),
        _ints("i1", [1]),
        h.make_tensor("two", T.FLOAT, [], [2.0]),
        _ints("one", [1]),
    ]
    g = h.make_graph(nodes, "paddle_rec_head", [x], [y], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def paddle_direction_classifier(classes: int = 2) -> onnx.ModelProto:
    """A PaddleOCR-style direction-classifier head: ``x [N, 16, 6, 20]`` (N dynamic) ->
    GlobalAveragePool -> flatten by a run-time shape ``[N, prod(dims[1:])]`` computed with
    ``Shape -> Slice -> ReduceProd -> Concat`` (ReduceProd is not data-propagated) -> MatMul
    ``16 x classes`` -> Softmax. Output ``[N, classes]``."""
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 16, 6, 20])
    y = h.make_tensor_value_info("y", T.FLOAT, None)
    nodes = [
        h.make_node("GlobalAveragePool", ["x"], ["p"], name="pool"),
        h.make_node("Shape", ["p"], ["s"], name="shape"),
        h.make_node("Slice", ["s", "start0", "end1"], ["n"], name="batch"),
        h.make_node("Slice", ["s", "start1", "end_big"], ["rest"], name="rest"),
        h.make_node("ReduceProd", ["rest"], ["feat"], keepdims=1, name="prod"),
        h.make_node("Concat", ["n", "feat"], ["flat_shape"], axis=0, name="concat"),
        h.make_node("Reshape", ["p", "flat_shape"], ["f"], name="flatten"),
        h.make_node("MatMul", ["f", "w"], ["logits"], name="fc"),
        h.make_node("Softmax", ["logits"], ["y"], axis=-1, name="softmax"),
    ]
    inits = [
        _ints("start0", [0]),
        _ints("end1", [1]),
        _ints("start1", [1]),
        _ints("end_big", [2**31]),
        h.make_tensor("w", T.FLOAT, [16, classes], [0.5] * (16 * classes)),
    ]
    g = h.make_graph(nodes, "paddle_cls_head", [x], [y], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
