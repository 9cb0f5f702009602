"""The case library: the small graphs, hand-written plans and ONNX models that several test
files use, each with the facts derived by hand that tests check against.

Test files import cases from here (and helpers from ``helpers``), never from each other.
"""

from __future__ import annotations

import onnx
import onnx.helper as h
from onnx import TensorProto as T

from cosma import GraphBuilder, Setting
from cosma.plan import Plan, Status, Step, create, drop, load, store

# --- small graphs ------------------------------------------------------------------------


def chain(w: int | None = 7):
    """x(10) -a-> y1(40) -b-> y2(20) -c-> z(5); b also reads parameter w (``w`` bytes; none
    if None). Activations: footprints a = 50, b = 60, c = 25, so M_R = 60 at b, and the
    chain fits at M_R with no spill (z reuses y1's block at c)."""
    b = GraphBuilder("chain").input("x", 10)
    if w is not None:
        b = b.parameter("w", w)
    return (
        b.op("a", ["x"], {"y1": 40})
        .op("b", ["y1", "w"] if w is not None else ["y1"], {"y2": 20})
        .op("c", ["y2"], {"z": 5})
        .output("z")
        .build()
    )


def skip(p: int = 10):
    """x(1) -a-> p(``p``) -b-> q(5) -c-> r(5); d reads p and r -> z(1). With p = 10:
    M_R = 16 (at d). At c, q and r (10) leave 6 bytes of a 16-byte budget: p (10) must leave
    and come back, stored 10 + reloaded 10 = 20 bytes at budget 16; no spill from 21 up."""
    return (
        GraphBuilder("skip")
        .input("x", 1)
        .op("a", ["x"], {"p": p})
        .op("b", ["p"], {"q": 5})
        .op("c", ["q"], {"r": 5})
        .op("d", ["p", "r"], {"z": 1})
        .output("z")
        .build()
    )


def diamond():
    """x(4) feeds a -> p(6) and b -> q(6); c joins them into z(4). Footprints 10, 10, 16.
    Whatever the order, at the second of a/b: x, p, q = 16 <= 16; at c: p, q, z = 16."""
    return (
        GraphBuilder("diamond")
        .input("x", 4)
        .op("a", ["x"], {"p": 6})
        .op("b", ["x"], {"q": 6})
        .op("c", ["p", "q"], {"z": 4})
        .output("z")
        .build()
    )


def weighted_diamond():
    """x(10) and parameter w(7) feed a -> ya(20); x feeds b -> yb(30); c joins -> z(5):
    one tensor of every kind."""
    return (
        GraphBuilder("diamond")
        .input("x", 10)
        .parameter("w", 7)
        .op("a", ["x", "w"], {"ya": 20})
        .op("b", ["x"], {"yb": 30})
        .op("c", ["ya", "yb"], {"z": 5})
        .output("z")
        .build()
    )


def fan_out():
    """x(2) feeds a1, a2, a3 (each -> y_i of 3); j reads y1..y3 -> z(1). M_R = 10 (at j).
    At the last a_i, x (2, its operand), its output (3) and the two earlier y's (6) are
    all needed: 11 > 10, so one earlier y is stored and reloaded: 3 + 3 = 6 at budget 10."""
    b = GraphBuilder("fan_out").input("x", 2)
    for i in (1, 2, 3):
        b.op(f"a{i}", ["x"], {f"y{i}": 3})
    return b.op("j", ["y1", "y2", "y3"], {"z": 1}).output("z").build()


def shared_weight():
    """Parameter w(5) is read by a and by c. With parameters tracked: footprints a 2+5+3 =
    10, b 3+3 = 6, c 3+5+1 = 9: M_Rp = 10. At b, y and y2 (6) plus w (5) = 11 > 10: w is
    dropped and loaded again (host has it: no store): 5 at budget 10, 0 at 11."""
    return (
        GraphBuilder("shared_weight")
        .input("x", 2)
        .parameter("w", 5)
        .op("a", ["x", "w"], {"y": 3})
        .op("b", ["y"], {"y2": 3})
        .op("c", ["y2", "w"], {"z": 1})
        .output("z")
        .build()
    )


A, P = Setting.ACTIVATIONS, Setting.ACTIVATIONS_PARAMETERS
#: The conformance suite: (name, graph, budget, setting, least non-compulsory traffic),
#: each optimum derived by hand in the graph's docstring (and checked against exhaustive
#: search in test_milp).
CASES = [
    ("chain at M_R (exact fit)", lambda: chain(None), 60, A, 0),
    ("diamond at M_R", diamond, 16, A, 0),
    ("skip connection at M_R", skip, 16, A, 20),
    ("skip connection with room", skip, 21, A, 0),
    ("fan-out at M_R", fan_out, 10, A, 6),
    ("fan-out with room", fan_out, 11, A, 0),
    ("shared weight reloaded", shared_weight, 10, P, 5),
    ("shared weight kept", shared_weight, 11, P, 0),
]

# --- hand-written plans --------------------------------------------------------------------


def plan_for(g, steps, budget, setting=Setting.ACTIVATIONS, alignment=1):
    """A plan for ``g`` made of hand-written ``steps``."""
    return Plan(
        g.name, g.identity(), budget, setting, alignment, "hand", Status.FEASIBLE, steps=steps
    )


def chain_plan():
    """For chain() at budget 60: y1 at [0,40), x at [40,50); then y2 reuses x's place at
    [40,60)."""
    return [
        Step("a", (load("x", 40), create("y1", 0)), (drop("x"),)),
        Step("b", (create("y2", 40),), (drop("y1"),)),
        Step("c", (create("z", 0),), (store("z"), drop("z"), drop("y2"))),
    ]


def skip_spill_plan():
    """For skip() at budget 16: at c, q and r (10) leave no room for p (10): p is stored and
    reloaded."""
    return [
        Step("a", (load("x", 0), create("p", 1)), (drop("x"),)),
        Step("b", (create("q", 11),), ()),
        Step("c", (store("p"), drop("p"), create("r", 0)), (drop("q"),)),
        Step("d", (load("p", 5), create("z", 15)), (store("z"), drop("z"), drop("p"), drop("r"))),
    ]


# --- ONNX models ---------------------------------------------------------------------------


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
