"""Real exports import: shape subgraphs are folded once input shapes are fixed, and every
real ONNX file shipped in the onnx wheel imports or gives a CosmaError."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from cases import paddle_direction_classifier, paddle_recogniser_head
from onnx import numpy_helper

from cosma.errors import CosmaError
from cosma.graphs import load_onnx
from cosma.graphs.shape_folding import fold_shapes, infer, static_dims

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
REAL_FILES = sorted(glob.glob(os.path.join(DATA, "*", "*", "model.onnx")))


def _unfolded_dims(model: onnx.ModelProto, name: str):
    types = {vi.name: vi.type.tensor_type for vi in infer(model).graph.value_info}
    types.update({vi.name: vi.type.tensor_type for vi in infer(model).graph.output})
    return static_dims(types[name]) if name in types else None


def test_paddle_recogniser_head_imports():
    m = paddle_recogniser_head(width=80, channels=64)
    # ONNX's own inference alone leaves the reshape's width unknown (the float Div)...
    assert _unfolded_dims(m, "rs") is None
    g = load_onnx(m)
    # ...cosma folds it: W' = floor(80 / 2) * 2 = 80; [1, 80, 64] floats.
    assert g.tensors["rs"].shape == (1, 80, 64)
    assert g.tensors["y"].size == 80 * 64 * 4
    assert [op.op_type for op in g.operators.values()] == [
        "Relu",
        "Transpose",
        "Reshape",
        "Softmax",
    ]
    # The operators keep their names; the shape arithmetic became parameters.
    assert "reshape" in g.operators and g.tensors["newshape"].kind.value == "parameter"
    # The width is computed from the input, not baked in: floor(96 / 2) * 2 = 96.
    assert load_onnx(paddle_recogniser_head(width=96)).tensors["rs"].shape == (1, 96, 64)


def test_paddle_direction_classifier_imports_with_a_batch():
    m = paddle_direction_classifier(classes=2)
    g = load_onnx(m, input_shapes=["x=3x16x6x20"])
    # GlobalAveragePool -> [3, 16, 1, 1]; flatten to [3, 16*1*1]; MatMul 16x2 -> [3, 2].
    assert g.tensors["f"].shape == (3, 16)
    assert g.tensors["y"].shape == (3, 2) and g.tensors["y"].size == 3 * 2 * 4
    # Still dynamic without the batch: a clear error whose hint parses.
    with pytest.raises(CosmaError, match="--input-shape x=1x16x6x20"):
        load_onnx(m)
    assert load_onnx(m, input_shapes=["x=1x16x6x20"]).tensors["y"].shape == (1, 2)


def test_folding_keeps_nodes_that_are_not_constant():
    m = paddle_recogniser_head()
    folded, count = fold_shapes(m)
    kinds = [n.op_type for n in folded.graph.node]
    # shape, cast_f, gather_w, div, floor, mul, cast_i, gather_c, concat: 9 folded.
    assert count == 9
    assert kinds.count("Constant") == 9
    assert [k for k in kinds if k != "Constant"] == ["Relu", "Transpose", "Reshape", "Softmax"]
    assert len(m.graph.node) == 13  # the input model is not modified


def test_large_constants_are_not_evaluated():
    m = paddle_direction_classifier()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    # max_elements=1: the 16x2 weight is never read as a value; shape vectors of 2+
    # elements are not folded either, so the flatten stays unknown.
    folded, _ = fold_shapes(m, max_elements=1)
    assert "w" in {t.name for t in folded.graph.initializer}
    assert all(n.output[0] != "flat_shape" for n in folded.graph.node if n.op_type == "Constant")


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.split(os.sep)[-2])
def test_real_files_import_or_say_why(path):
    """Every model file in the onnx wheel's test data gives a graph or a CosmaError. Where
    it gives a graph and the file comes with reference outputs, each graph output's size
    equals the reference output's (an independent check of the shapes cosma inferred)."""
    try:
        g = load_onnx(path)
    except CosmaError:
        return
    ref_dir = os.path.join(os.path.dirname(path), "test_data_set_0")
    model = onnx.load(path, load_external_data=False)
    for k, out in enumerate(model.graph.output):
        ref = os.path.join(ref_dir, f"output_{k}.pb")
        if out.name not in g.tensors or not os.path.exists(ref):
            continue
        t = onnx.TensorProto()
        with open(ref, "rb") as f:
            t.ParseFromString(f.read())
        expected = tuple(int(d) for d in t.dims)
        assert g.tensors[out.name].shape == expected, out.name
        assert g.tensors[out.name].size == numpy_helper.to_array(t).nbytes or (
            numpy_helper.to_array(t).dtype == np.bool_
        )
