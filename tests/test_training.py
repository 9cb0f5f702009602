"""Training graphs against small cases derived by hand."""

from __future__ import annotations

import networkx as nx
import pytest

from cosma.cost import operator_cost, shape_cost
from cosma.graph import GraphBuilder, TensorKind, from_networkx
from cosma.graphs import load_graph, shipped_model
from cosma.graphs.training import training_graph


def mlp():
    # x (1x3) -> MatMul w (3x4) -> h (1x4) -> Relu -> y (1x4)
    return (
        GraphBuilder("mlp")
        .input("x", 3, shape=(1, 3))
        .parameter("w", 12, shape=(3, 4))
        .op("fc", ["x", "w"], {"h": 4}, op_type="MatMul", shapes={"h": (1, 4)})
        .op("act", ["h"], {"y": 4}, op_type="Relu", shapes={"y": (1, 4)})
        .output("y")
        .build()
    )


def test_mlp_by_hand():
    t = training_graph(mlp())
    assert t.file_order == ("fc", "act", "loss", "act/backward", "fc/backward")
    ops = t.operators
    # loss reads the forward output, writes the scalar loss and the seed gradient of y.
    assert ops["loss"].inputs == ("y",) and ops["loss"].outputs == ("loss", "grad(y)")
    # ReLU's backward reads its output; its input h needs a gradient (MatMul has weights).
    assert set(ops["act/backward"].inputs) == {"grad(y)", "y"}
    assert ops["act/backward"].outputs == ("grad(h)",)
    # MatMul's backward reads both operands; x is data (no gradient), w gets grad(w).
    assert set(ops["fc/backward"].inputs) == {"grad(h)", "x", "w"}
    assert ops["fc/backward"].outputs == ("grad(w)",)
    assert t.outputs == ["loss", "grad(w)"]
    assert t.tensors["grad(w)"].kind is TensorKind.OUTPUT and t.tensors["grad(w)"].size == 12
    assert t.tensors["grad(h)"].size == 4 and t.tensors["grad(y)"].size == 4
    # Costs: MatMul 4 outputs x inner 3 = 12 MACs; ReLU 4; loss 4 (elements of y);
    # ReLU backward writes grad(h): 4; MatMul backward writes one gradient: 12 x 1.
    cost = {v: ops[v].attributes["cost"] for v in t.file_order}
    assert cost == {"fc": 12, "act": 4, "loss": 4, "act/backward": 4, "fc/backward": 12}
    assert {v: ops[v].attributes["phase"] for v in t.file_order} == {
        "fc": "forward",
        "act": "forward",
        "loss": "loss",
        "act/backward": "backward",
        "fc/backward": "backward",
    }


def residual():
    # x -> conv c (weights k) -> a; a -> relu -> r; add(r, a) -> y
    return (
        GraphBuilder("res")
        .input("x", 8, shape=(1, 2, 2, 2))
        .parameter("k", 4, shape=(2, 2, 1, 1))
        .op("c", ["x", "k"], {"a": 8}, "Conv", shapes={"a": (1, 2, 2, 2)})
        .op("r", ["a"], {"b": 8}, "Relu", shapes={"b": (1, 2, 2, 2)})
        .op("s", ["b", "a"], {"y": 8}, "Add", shapes={"y": (1, 2, 2, 2)})
        .output("y")
        .build()
    )


def test_residual_partial_gradients():
    t = training_graph(residual())
    ops = t.operators
    # Add reads nothing but its output gradient, and gives one to each operand.
    assert ops["s/backward"].inputs == ("grad(y)",)
    assert set(ops["s/backward"].outputs) == {"grad(b)", "grad(a)@s/backward"}
    # a has two consumers, so two partial gradients, summed in the conv's backward.
    assert ops["r/backward"].outputs == ("grad(a)@r/backward",)
    assert set(ops["c/backward"].inputs) == {
        "grad(a)@r/backward",
        "grad(a)@s/backward",
        "x",
        "k",
    }
    assert ops["c/backward"].outputs == ("grad(k)",)
    # Conv: 8 outputs x (C_in/g x kernel = 2 x 1 x 1) = 16 MACs; its backward writes one
    # gradient (16) and sums two partials of a (8 additions): 24.
    assert ops["c"].attributes["cost"] == 16
    assert ops["c/backward"].attributes["cost"] == 16 + 8
    # Add's backward writes two gradients of 8 elements.
    assert ops["s/backward"].attributes["cost"] == 16


def test_unknown_type_reads_all_inputs_and_cost_attribute_overrides():
    d = nx.DiGraph()
    d.add_node("a", size=10, inputs={"x": 5}, parameters={"w": 3}, op_type="Mystery", cost=7)
    d.add_node("b", size=4, op_type="Mystery")
    d.add_edge("a", "b")
    g = from_networkx(d)
    assert operator_cost(g, "a") == 7  # the attribute wins over the estimate
    assert shape_cost(g, "a") == 10  # largest of its tensors, no shapes: bytes as elements
    t = training_graph(g)
    assert t.operators["a"].attributes["cost"] == 7
    assert set(t.operators["b/backward"].inputs) == {"grad(b)", "a"}
    assert set(t.operators["a/backward"].inputs) == {"grad(a)", "x", "w"}
    assert t.operators["a/backward"].outputs == ("grad(w)",)
    # The training graph survives a round trip through networkx with its costs.
    back = from_networkx(t.to_networkx())
    assert (
        back.operators["a/backward"].attributes["cost"]
        == (t.operators["a/backward"].attributes["cost"])
    )


def test_shared_parameter_and_no_gradient_for_indices():
    g = (
        GraphBuilder("shared")
        .input("x", 4)
        .parameter("w", 4)
        .parameter("idx", 2)
        .op("m1", ["x", "w"], {"h": 4}, "Mul")
        .op("m2", ["h", "w"], {"z": 4}, "Mul")
        .op("g", ["z", "idx"], {"y": 2}, "Gather")
        .output("y")
        .build()
    )
    t = training_graph(g)
    assert set(t.outputs) == {"loss", "grad(w)@m1/backward", "grad(w)@m2/backward"}
    assert t.operators["g/backward"].outputs == ("grad(z)",)  # no gradient for indices
    assert set(t.operators["m2/backward"].outputs) == {"grad(h)", "grad(w)@m2/backward"}


def test_onnx_and_zoo_training_graphs():
    g = load_graph(shipped_model("squeezenet"), element_bytes=1)
    t = training_graph(g)
    forward = [v for v in t.file_order if t.operators[v].attributes["phase"] == "forward"]
    backward = [v for v in t.file_order if t.operators[v].attributes["phase"] == "backward"]
    assert len(forward) == g.num_operators
    # every forward operator that reads a weight gets a backward operator
    with_weights = [
        v
        for v in g.file_order
        if any(g.tensors[x].kind is TensorKind.PARAMETER for x in g.operators[v].inputs)
    ]
    assert {f"{v}/backward" for v in with_weights} <= set(backward)
    assert t.is_schedule(t.file_order)
    z = load_graph("zoo:resnet50:training")
    assert z.name == "resnet50_training" and z.num_operators == 2 * 122 + 1
    assert all(op.attributes["cost"] >= 1 for op in z.operators.values())


def test_training_zoo_name_errors():
    from cosma.errors import UsageError
    from cosma.graphs import zoo

    with pytest.raises(UsageError):
        zoo.load("nonesuch_training")


def test_batch_norm_running_statistics_get_no_gradient():
    # ONNX BatchNormalization(X, scale, B, mean, var): scale and B are trained, the running
    # mean and variance are statistics (they used to get gradients, graph outputs).
    g = (
        GraphBuilder("bn")
        .input("x", 8)
        .parameter("w", 4)
        .op("conv", ["x", "w"], {"c": 8}, "Conv")
        .parameter("scale", 2)
        .parameter("bias", 2)
        .parameter("mean", 2)
        .parameter("var", 2)
        .op("bn", ["c", "scale", "bias", "mean", "var"], {"y": 8}, "BatchNormalization")
        .output("y")
        .build()
    )
    t = training_graph(g)
    assert set(t.operators["bn/backward"].outputs) == {"grad(c)", "grad(scale)", "grad(bias)"}
    assert set(t.outputs) == {"loss", "grad(w)", "grad(scale)", "grad(bias)"}
    # its backward still reads what the table says: its inputs
    assert set(t.operators["bn/backward"].inputs) >= {"c", "scale", "bias", "mean", "var"}


def test_an_operator_whose_outputs_never_reach_the_loss_has_no_backward():
    # `probe` reads h but its output is read by nobody and is no graph output, so it is
    # dropped: `probe` has no outputs, gets no gradient and contributes none to grad(h).
    # (The training graph used to name a partial gradient grad(h)@probe/backward that no
    # operator wrote, and failed to build.)
    g = (
        GraphBuilder("dead_end")
        .input("x", 4)
        .parameter("w", 4)
        .op("fc", ["x", "w"], {"h": 4}, "MatMul")
        .op("probe", ["h"], {"unused": 4}, "Relu")
        .op("act", ["h"], {"y": 4}, "Relu")
        .output("y")
        .build()
    )
    assert g.operators["probe"].outputs == ()
    t = training_graph(g)
    assert "probe/backward" not in t.operators
    assert t.operators["act/backward"].outputs == ("grad(h)",)
    assert t.operators["fc/backward"].inputs[0] == "grad(h)"
    assert t.outputs == ["loss", "grad(w)"]
