"""ONNX import on the onnx wheel's nine light models and on small models built here.

Sizes are checked against an independent source: onnx's reference evaluator actually runs
each model and we compare every tensor cosma sized with the array it computed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as h
import pytest
from helpers import LIGHT_MODELS, light
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

from cosma import ModelImportError, TensorKind, UnsupportedModelError, UsageError, memory_figures
from cosma.graphs import load_onnx


def _reference_arrays(path: str) -> dict[str, np.ndarray]:
    """Run the model with onnx's reference evaluator, returning every node output."""
    model = onnx.load(path)
    names = [o for node in model.graph.node for o in node.output if o]
    del model.graph.output[:]
    model.graph.output.extend(h.make_empty_tensor_value_info(o) for o in names)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for i in model.graph.input:
        if i.name not in inits:
            dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
            feeds[i.name] = np.zeros(dims, dtype=np.float32)
    values = ReferenceEvaluator(model).run(None, feeds)
    out = dict(zip(names, values, strict=True))
    out.update(feeds)
    return out


def test_all_nine_light_models_are_there():
    assert len(LIGHT_MODELS) == 9


def test_light_model_sizes_match_a_reference_run(light_model):
    g = load_onnx(light_model, element_bytes=1)
    arrays = _reference_arrays(light_model)
    inits = {t.name: t for t in onnx.load(light_model).graph.initializer}
    checked = 0
    for name, tensor in g.tensors.items():
        if name in arrays:
            assert tensor.size == np.asarray(arrays[name]).size, name
            checked += 1
        else:
            assert name in inits and tensor.kind is TensorKind.PARAMETER
            assert tensor.size == int(np.prod(inits[name].dims)), name
    assert checked >= g.num_operators  # every operator output at least
    # Graph outputs agree with the expected output file shipped beside the model.
    expected = onnx.TensorProto()
    with open(light_model[:-5] + "_output_0.pb", "rb") as f:
        expected.ParseFromString(f.read())
    (out,) = g.outputs
    assert g.tensors[out].size == numpy_helper.to_array(expected).size
    # Every tracked tensor has a static size, and element types are the ONNX ones.
    g4 = load_onnx(light_model)
    for name, tensor in g4.tensors.items():
        if tensor.dtype == "FLOAT":
            assert tensor.size == 4 * g.tensors[name].size


# M_R at 1 byte per element, worked out from each architecture (largest operator footprint):
HAND_M_R = {
    # conv1 11x11/4, 96 ch: 96x54x54 = 279,936; its Relu holds input+output.
    "bvlc_alexnet": 2 * 96 * 54 * 54,
    # conv1 7x7/2 -> 64x112x112 = 802,816; BN/Mul/Add/Relu hold input+output.
    "densenet121": 2 * 64 * 112 * 112,
    # conv1 7x7/2 -> 64x112x112; Relu in+out.
    "inception_v1": 2 * 64 * 112 * 112,
    "inception_v2": 2 * 64 * 112 * 112,
    # res2 residual Sum: two inputs and one output of 256x56x56.
    "resnet50": 3 * 256 * 56 * 56,
    # SqueezeNet 1.1 conv1 3x3/2, 64 ch -> 64x111x111, Relu in+out.
    "squeezenet": 2 * 64 * 111 * 111,
    # conv1_1 3x3, 64 ch at 224x224; Relu in+out.
    "vgg19": 2 * 64 * 224 * 224,
    # conv1 7x7/2 no pad, 96 ch -> 96x109x109; Relu in+out.
    "zfnet512": 2 * 96 * 109 * 109,
}


@pytest.mark.parametrize("name", sorted(HAND_M_R))
def test_m_r_matches_hand_derivation(name):
    f = memory_figures(load_onnx(light(name), element_bytes=1))
    assert f.m_r == HAND_M_R[name]
    assert f.m_r <= f.must_live <= f.file_order_peak


def test_architecture_operator_counts():
    resnet = Counter(op.op_type for op in load_onnx(light("resnet50")).operators.values())
    # ResNet-50: 1 stem conv + 16 bottlenecks x 3 convs + 4 projection shortcuts = 53 convs,
    # one BatchNorm per conv, 16 residual additions, one FC.
    assert resnet["Conv"] == 53 and resnet["BatchNormalization"] == 53
    assert resnet["Sum"] == 16 and resnet["Gemm"] == 1
    dense = load_onnx(light("densenet121"))
    counts = Counter(op.op_type for op in dense.operators.values())
    # DenseNet-121: 6+12+24+16 = 58 dense layers (2 convs, 1 concat each), 3 transition
    # convs, a stem conv and the classifier conv: 121 convs, 58 concats.
    assert counts["Conv"] == 121 and counts["Concat"] == 58
    assert dense.num_operators == 668
    # No weight-preparation node survives as an operator.
    assert counts["ConstantOfShape"] == 0 and counts["Unsqueeze"] == 0


def test_resnet50_parameter_bytes():
    g = load_onnx(light("resnet50"), element_bytes=1)
    params = sum(g.tensors[t].size for t in g.parameters)
    # torchvision's ResNet-50 has 25,557,032 parameters; Caffe2's BatchNormalization also
    # carries running mean and variance over the 26,560 BN channels (+53,120), and the
    # Reshape before the FC reads a 2-element shape tensor (+2).
    assert params == 25_557_032 + 2 * 26_560 + 2


def test_dropout_mask_is_dropped():
    g = load_onnx(light("bvlc_alexnet"))
    for op in g.operators.values():
        if op.op_type == "Dropout":
            assert len(op.outputs) == 1


# --- small models built here ------------------------------------------------------------


def _model(nodes, inputs, outputs, initializers=(), opset=17, **kw):
    graph = h.make_graph(nodes, "m", inputs, outputs, list(initializers), **kw)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def _vi(name, dims, dtype=TensorProto.FLOAT):
    return h.make_tensor_value_info(name, dtype, dims)


def test_shape_arithmetic_and_weight_prep_are_folded():
    # Flatten x by hand: Shape -> Gather -> Concat -> Reshape, and a weight made by
    # Identity(Transpose(initializer)). Only Reshape and MatMul are operators.
    w = numpy_helper.from_array(np.zeros((6, 4), np.float32), "w_raw")
    zero = numpy_helper.from_array(np.array([0], np.int64), "zero")
    minus1 = numpy_helper.from_array(np.array([-1], np.int64), "minus1")
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "zero"], ["batch"]),
        h.make_node("Concat", ["batch", "minus1"], ["newshape"], axis=0),
        h.make_node("Reshape", ["x", "newshape"], ["flat"]),
        h.make_node("Transpose", ["w_raw"], ["wt"], perm=[1, 0]),
        h.make_node("Identity", ["wt"], ["w"]),
        h.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", [2, 2, 2])], [_vi("y", None)], [w, zero, minus1])
    g = load_onnx(m)
    assert [op.op_type for op in g.operators.values()] == ["Reshape", "MatMul"]
    assert g.tensors["newshape"].kind is TensorKind.PARAMETER
    # w = transpose of a 6x4 float weight: 4x6 floats.
    assert g.tensors["w"].kind is TensorKind.PARAMETER and g.tensors["w"].size == 4 * 6 * 4
    assert g.tensors["flat"].shape == (2, 4)
    assert g.tensors["y"].size == 2 * 6 * 4  # (2,4) @ (4,6) floats
    assert g.tensors["x"].consumers == ("Reshape_3",)  # Shape no longer reads x


def test_dynamic_input_needs_an_override():
    m = _model([h.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", 3, 8])], [_vi("y", None)])
    with pytest.raises(UnsupportedModelError) as err:
        load_onnx(m)
    assert "'x' is batchx3x8" in str(err.value)
    assert "--input-shape x=1x3x8" in str(err.value)  # a hint that parses
    g = load_onnx(m, input_shapes=["x=2x3x8"])
    assert g.tensors["y"].size == 2 * 3 * 8 * 4
    assert load_onnx(m, input_shapes={"x": (5, 3, 8)}).tensors["x"].shape == (5, 3, 8)
    with pytest.raises(UsageError, match="not a graph input"):
        load_onnx(m, input_shapes=["nope=1"])


def test_tensor_without_static_shape_is_named():
    # Reshape to a shape computed from data (not from shapes) cannot be inferred statically.
    nodes = [
        h.make_node("Cast", ["n"], ["n64"], to=TensorProto.INT64),
        h.make_node("Reshape", ["x", "n64"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", [6]), _vi("n", [1], TensorProto.FLOAT)], [_vi("y", None)])
    with pytest.raises(UnsupportedModelError, match=r"'y' .*Reshape.* no static shape"):
        load_onnx(m)


def test_control_flow_is_refused():
    then_g = h.make_graph([h.make_node("Relu", ["x"], ["a"])], "then", [], [_vi("a", [4])])
    else_g = h.make_graph([h.make_node("Neg", ["x"], ["b"])], "else", [], [_vi("b", [4])])
    nodes = [h.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    m = _model(nodes, [_vi("c", [], TensorProto.BOOL), _vi("x", [4])], [_vi("y", [4])])
    with pytest.raises(UnsupportedModelError, match="'branch' \\(If\\) is control flow"):
        load_onnx(m)


def test_element_type_without_size_needs_element_bytes():
    nodes = [h.make_node("Identity", ["s"], ["t"]), h.make_node("Size", ["t"], ["n"])]
    m = _model(nodes, [_vi("s", [3], TensorProto.STRING)], [_vi("t", [3], TensorProto.STRING)])
    with pytest.raises(UnsupportedModelError, match=r"element type STRING.*--element-bytes"):
        load_onnx(m)
    assert load_onnx(m, element_bytes=2).tensors["t"].size == 6


def test_local_functions_are_inlined():
    fn = h.make_function(
        "local",
        "Twice",
        ["a"],
        ["b"],
        [h.make_node("Relu", ["a"], ["r"]), h.make_node("Neg", ["r"], ["b"])],
        [h.make_opsetid("", 17)],
    )
    graph = h.make_graph(
        [h.make_node("Twice", ["x"], ["y"], domain="local")], "m", [_vi("x", [8])], [_vi("y", None)]
    )
    m = h.make_model(
        graph, functions=[fn], opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)]
    )
    g = load_onnx(m)
    assert sorted(op.op_type for op in g.operators.values()) == ["Neg", "Relu"]
    assert g.tensors["y"].size == 32


def test_unreadable_files(tmp_path):
    with pytest.raises(ModelImportError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(ModelImportError, match="directory"):
        load_onnx(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelImportError, match="empty"):
        load_onnx(empty)
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelImportError, match=r"not .*ONNX model"):
        load_onnx(text)
    data = Path(light("squeezenet")).read_bytes()
    for cut in (100, len(data) // 2, len(data) - 7):
        truncated = tmp_path / f"cut{cut}.onnx"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ModelImportError):
            load_onnx(truncated)


def test_a_valid_model_without_operators_says_so(tmp_path):
    # It used to be called "not an ONNX model ... truncated, corrupt, or another format".
    x = h.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    graph = h.make_graph([], "empty", [x], [x])
    path = tmp_path / "empty.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    with pytest.raises(ModelImportError, match="graph has no operators"):
        load_onnx(path)
