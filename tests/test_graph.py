"""The graph model: builder, validation, networkx conversion, identity."""

from __future__ import annotations

import networkx as nx
import pytest
from cases import weighted_diamond

from cosma import GraphBuilder, GraphValidationError, Setting, TensorKind, from_networkx
from cosma.graph import Graph, Operator


def test_builder_kinds_producers_consumers():
    g = weighted_diamond()
    assert g.tensors["x"].kind is TensorKind.INPUT
    assert g.tensors["w"].kind is TensorKind.PARAMETER
    assert g.tensors["ya"].kind is TensorKind.ACTIVATION
    assert g.tensors["z"].kind is TensorKind.OUTPUT
    assert g.tensors["x"].consumers == ("a", "b")
    assert g.tensors["ya"].producer == "a"
    assert set(g.dag.edges) == {("a", "c"), ("b", "c")}
    assert g.dag.edges["a", "c"]["tensors"] == ["ya"]
    assert g.file_order == ("a", "b", "c")
    assert g.tracked(Setting.ACTIVATIONS) == ["ya", "yb", "z", "x"]
    assert "w" in g.tracked("activations+parameters")
    assert g.operands("a") == ["x", "ya"]
    assert g.operands("a", "p") == ["x", "w", "ya"]


def test_graph_is_immutable():
    g = weighted_diamond()
    with pytest.raises(TypeError):
        g.tensors["x"] = None  # type: ignore[index]
    with pytest.raises(nx.NetworkXError):
        g.dag.add_node("new")


def test_validation_collects_every_problem():
    b = (
        GraphBuilder("broken")
        .input("x", 4)
        .op("a", ["x", "ghost"], {"y": 4})  # dangling reference
        .op("b", ["y"], {"y": 4})  # second producer of y
        .op("c", ["x"], {"neg": -3})  # negative size
        .op("d", ["x"], ["nosize"])  # missing size
        .op("e", ["neg", "nosize"], {"out": 1})
        .output("out")
    )
    with pytest.raises(GraphValidationError) as err:
        b.build()
    text = str(err.value)
    assert len(err.value.problems) == 4, text
    assert "'ghost'" in text and "no operator produces" in text
    assert "two producers" in text and "'a'" in text and "'b'" in text
    assert "negative size -3" in text
    assert "'nosize' has no size" in text


def test_validation_cycle_names_the_operators():
    b = (
        GraphBuilder("loop")
        .input("x", 1)
        .op("a", ["x", "yb"], {"ya": 1})
        .op("b", ["ya"], {"yb": 1})
        .output("yb")
    )
    with pytest.raises(GraphValidationError, match="cycle") as err:
        b.build()
    assert "a" in str(err.value) and "b" in str(err.value)


def test_validation_other_problems():
    with pytest.raises(GraphValidationError, match="not produced by any operator"):
        GraphBuilder().input("x", 1).op("a", ["x"], {"y": 1}).output("nope").build()
    with pytest.raises(GraphValidationError, match="two operators are named"):
        Graph(
            "g",
            [Operator("a", "Op", (), ("y",)), Operator("a", "Op", (), ("z",))],
            {"y": 1, "z": 1},
            outputs=["y", "z"],
        )
    with pytest.raises(GraphValidationError, match="has no producer"):
        Graph("g", [Operator("a", "Op", (), ("y",))], {"y": 1}, inputs=["y"], outputs=["y"])
    with pytest.raises(GraphValidationError, match="two sizes"):
        GraphBuilder().input("x", 1).input("x", 2).op("a", ["x"], {"y": 1}).output("y").build()
    with pytest.raises(GraphValidationError, match="no operators"):
        Graph("g", [], {})


def test_unconsumed_tensors_are_dropped():
    g = (
        GraphBuilder()
        .input("x", 1)
        .input("unused", 5)
        .op("a", ["x"], {"y": 1, "mask": 9})  # like an opset-9 Dropout mask
        .output("y")
        .build()
    )
    assert "mask" not in g.tensors and "unused" not in g.tensors
    assert g.operators["a"].outputs == ("y",)


def test_repeated_input_counted_once():
    g = GraphBuilder().input("x", 3).op("sq", ["x", "x"], {"y": 3}).output("y").build()
    assert g.operators["sq"].inputs == ("x",)
    assert g.tensors["x"].consumers == ("sq",)


def test_from_networkx_and_back():
    d = nx.DiGraph(name="pass")
    d.add_node("conv", size=100, inputs={"img": 30}, parameters={"w1": 9}, op_type="Conv")
    d.add_node("relu", size=100)
    d.add_node("split", outputs={"s0": 50, "s1": 50})
    d.add_node("cat", size=100, parameters={"w1": 9})
    d.add_edges_from([("conv", "relu"), ("relu", "split")])
    d.add_edge("split", "cat", tensors=["s0", "s1"])
    before = nx.to_dict_of_dicts(d)
    g = from_networkx(d)
    assert nx.to_dict_of_dicts(d) == before  # the input is not modified
    assert g.name == "pass"
    assert g.tensors["img"].kind is TensorKind.INPUT
    assert g.tensors["w1"].consumers == ("conv", "cat")
    assert g.tensors["cat"].kind is TensorKind.OUTPUT  # sink becomes the output
    assert g.operators["conv"].op_type == "Conv"
    again = from_networkx(g.to_networkx(), name="pass")
    assert again.identity() == g.identity()


def test_from_networkx_reports_problems():
    d = nx.DiGraph()
    d.add_node("a")  # no size
    d.add_node("b", size=1)
    d.add_edge("a", "b", tensors=["zzz"])
    with pytest.raises(GraphValidationError) as err:
        from_networkx(d)
    text = str(err.value)
    assert "neither 'size' nor 'outputs'" in text
    assert "does not write" in text


@pytest.mark.parametrize("bad", [-5, "abc", "12", float("nan"), float("inf"), True, [3]])
def test_from_networkx_refuses_a_cost_that_is_not_a_cost(bad):
    # A bad `cost` used to be dropped silently for the shape estimate (2,000 MACs here).
    d = nx.DiGraph()
    d.add_node("a", size=100, inputs={"x": 50}, cost=bad)
    d.add_node("b", size=10, cost=0)
    d.add_edge("a", "b")
    with pytest.raises(GraphValidationError, match="node 'a': attribute 'cost' should be a number"):
        from_networkx(d)
    d.nodes["a"]["cost"] = 7.0
    assert from_networkx(d).operators["a"].attributes["cost"] == 7.0


def test_identity_ignores_insertion_order_but_not_sizes():
    g1 = weighted_diamond()
    g2 = (
        GraphBuilder("diamond")
        .input("x", 10)
        .op("b", ["x"], {"yb": 30})
        .parameter("w", 7)
        .op("a", ["x", "w"], {"ya": 20})
        .op("c", ["ya", "yb"], {"z": 5})
        .output("z")
        .build()
    )
    g3 = (
        GraphBuilder("diamond")
        .input("x", 10)
        .parameter("w", 7)
        .op("a", ["x", "w"], {"ya": 21})
        .op("b", ["x"], {"yb": 30})
        .op("c", ["ya", "yb"], {"z": 5})
        .output("z")
        .build()
    )
    assert g1.identity() == g2.identity()
    assert g1.identity() != g3.identity()


def test_schedules():
    g = weighted_diamond()
    assert g.is_schedule(["b", "a", "c"])
    assert not g.is_schedule(["c", "a", "b"])
    assert not g.is_schedule(["a", "b"])
    assert g.topological_order() == ["a", "b", "c"]
