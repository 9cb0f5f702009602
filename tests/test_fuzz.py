"""Fuzzing: mutated ONNX models, plan files and networkx graphs give a result or a
CosmaError, never another exception.

A few hundred examples run by default; the ``slow`` copies run thousands.
"""

from __future__ import annotations

import json
import os
import tempfile

import networkx as nx
import numpy as np
import onnx
import onnx.helper as h
import pytest
from cases import shared_weight, skip
from helpers import light
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto
from schema import validate_plan

from cosma.errors import CosmaError, PlanError
from cosma.graph import Setting, from_networkx
from cosma.graphs import load_onnx
from cosma.memory import min_required
from cosma.plan import Plan
from cosma.problem import Problem
from cosma.simulator import replay
from cosma.solvers import solve

FEW = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))


# --- seeds: small valid models ------------------------------------------------------------


def _conv_model() -> onnx.ModelProto:
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = h.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)
    shape = h.make_tensor("shape", TensorProto.INT64, [2], [0, -1])
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("Shape", ["r"], ["s"]),
        h.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        h.make_node("Reshape", ["r", "shape"], ["flat"], name="flat"),
        h.make_node("Softmax", ["flat"], ["y"], axis=-1, name="softmax"),
    ]
    g = h.make_graph(nodes, "conv", [x], [y], [w, shape])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _paddle_head() -> onnx.ModelProto:
    from cases import paddle_recogniser_head

    return paddle_recogniser_head()


SEEDS = {
    "conv": _conv_model,
    "paddle": _paddle_head,
    "squeezenet": lambda: onnx.load(light("squeezenet"), load_external_data=False),
}

_seed_cache: dict[str, bytes] = {}


def _seed(name: str) -> bytes:
    if name not in _seed_cache:
        _seed_cache[name] = SEEDS[name]().SerializeToString()
    return _seed_cache[name]


def _load(model_or_bytes, shapes=None):
    """load_onnx must give a graph or a CosmaError; anything else fails the test."""
    try:
        return load_onnx(model_or_bytes, input_shapes=shapes)
    except CosmaError:
        return None


# --- ONNX: byte-level and structural mutations ----------------------------------------------


@st.composite
def byte_mutations(draw):
    data = bytearray(_seed(draw(st.sampled_from(["conv", "paddle"]))))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[i] = 0
    return bytes(data)


def _check_bytes(data: bytes) -> None:
    fd, path = tempfile.mkstemp(suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _load(path, ["x=1x3x8x8"])
        _load(path)
    finally:
        os.unlink(path)


@st.composite
def structural_mutations(draw):
    m = onnx.ModelProto.FromString(_seed(draw(st.sampled_from(list(SEEDS)))))
    g = m.graph
    ints = st.one_of(st.integers(-3, 300), st.integers(-(2**63), 2**63 - 1))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                [
                    "dim",
                    "elem",
                    "drop_node",
                    "rename_input",
                    "attr",
                    "op_type",
                    "opset",
                    "dup_output",
                    "value_info",
                    "control",
                    "output_name",
                    "initializer_dims",
                ]
            )
        )
        nodes = list(g.node)
        if kind == "dim" and g.input:
            vi = draw(st.sampled_from(list(g.input)))
            tt = vi.type.tensor_type
            if tt.HasField("shape") and tt.shape.dim:
                d = draw(st.sampled_from(list(tt.shape.dim)))
                d.Clear()
                if draw(st.booleans()):
                    d.dim_value = draw(ints)
                else:
                    d.dim_param = draw(st.text(max_size=3))
        elif kind == "elem" and g.input:
            draw(st.sampled_from(list(g.input))).type.tensor_type.elem_type = draw(
                st.integers(0, 60)
            )
        elif kind == "drop_node" and nodes:
            del g.node[draw(st.integers(0, len(nodes) - 1))]
        elif kind == "rename_input" and nodes:
            n = draw(st.sampled_from(nodes))
            if n.input:
                n.input[draw(st.integers(0, len(n.input) - 1))] = draw(
                    st.sampled_from(["", "x", "nope", *[o for k in nodes for o in k.output]])
                )
        elif kind == "attr" and nodes:
            n = draw(st.sampled_from(nodes))
            n.attribute.append(
                h.make_attribute(
                    draw(st.sampled_from(["axis", "perm", "to", "pads"])),
                    draw(st.one_of(ints, st.lists(st.integers(-5, 5), min_size=1, max_size=5))),
                )
            )
        elif kind == "op_type" and nodes:
            draw(st.sampled_from(nodes)).op_type = draw(
                st.sampled_from(["Relu", "NoSuchOp", "Reshape", "Loop", "Concat", "Shape", ""])
            )
        elif kind == "opset":
            m.opset_import[0].version = draw(st.integers(-1, 40))
        elif kind == "dup_output" and nodes:
            a, b = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes))
            if a.output and b.output:
                b.output[0] = a.output[0]
        elif kind == "value_info":
            g.value_info.append(
                h.make_tensor_value_info(
                    draw(st.sampled_from(["r", "c", "y", "s", "flat"])),
                    draw(st.sampled_from([TensorProto.FLOAT, TensorProto.INT64, 99])),
                    draw(st.lists(ints, max_size=5)),
                )
            )
        elif kind == "control":
            g.node.append(h.make_node("If", ["x"], ["z"]))
        elif kind == "output_name" and g.output:
            g.output[0].name = draw(st.sampled_from(["x", "w", "nope", "r"]))
        elif kind == "initializer_dims" and g.initializer:
            t = draw(st.sampled_from(list(g.initializer)))
            t.dims[:] = draw(st.lists(st.integers(0, 2**40), max_size=4))
    shapes = draw(
        st.sampled_from([None, ["x=1x3x8x8"], ["x=2x3x8x8"], ["x=1x3"], ["x=0x3x8x8"], ["q=1"]])
    )
    return m, shapes


def _check_structure(case) -> None:
    m, shapes = case
    g = _load(m, shapes)
    if g is not None and g.num_operators:
        # A graph that loads is a graph cosma can plan for.
        mr, _ = min_required(g)
        plan = solve(Problem(g, mr), "file-arena-belady")
        assert replay(g, plan).valid or not plan.status.has_plan


@FEW
@given(byte_mutations())
def test_mutated_onnx_bytes(data):
    _check_bytes(data)


@FEW
@given(structural_mutations())
def test_mutated_onnx_models(case):
    _check_structure(case)


@pytest.mark.slow
@MANY
@given(byte_mutations())
def test_mutated_onnx_bytes_many(data):
    _check_bytes(data)


@pytest.mark.slow
@MANY
@given(structural_mutations())
def test_mutated_onnx_models_many(case):
    _check_structure(case)


# --- plan files ------------------------------------------------------------------------------
# Seeds: a baseline's plan on skip() (a spill and a reload), and one with parameters tracked
# on shared_weight() (a parameter dropped and loaded again).

_PLAN_SEEDS = {
    "skip": (skip(), 16, Setting.ACTIVATIONS),
    "shared_weight": (shared_weight(), 10, Setting.ACTIVATIONS_PARAMETERS),
}
_SEED_DOCS = {
    name: solve(Problem(g, budget, setting=setting), "file-arena-belady").to_dict()
    for name, (g, budget, setting) in _PLAN_SEEDS.items()
}
_NAMES = sorted({t for g, _, _ in _PLAN_SEEDS.values() for t in g.tensors} | set(_SEED_DOCS))
_WORDS = ["nope", "load", "store", "drop", "create", "recompute", "optimal", "input"]
_WORDS += ["parameter", "activation", "output", "reload", "move", "sha256:0a"]

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.sampled_from([-1, 0, 1, 2, 5, 16, 2**53, 2**53 + 1, 1.0, 0.5, -0.0]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.sampled_from(_NAMES),
        st.sampled_from(_WORDS),
    ),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def plan_mutations(draw):
    """(seed name, JSON text): the seed's plan with 1 to 4 values replaced or deleted, and
    sometimes cut short."""
    seed = draw(st.sampled_from(sorted(_SEED_DOCS)))
    doc = json.loads(json.dumps(_SEED_DOCS[seed]))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    text = json.dumps(doc, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    return seed, text


def _check_plan(case) -> None:
    """Read with and without the graph: a PlanError, or a plan whose JSON matches the schema
    (jsonschema, the reference validator) and which replays (violations are a result, not
    an exception). A version-1 file read without its graph and without a tensors table is
    the one documented exception: it records no sizes, and the plan read from it has none."""
    seed, text = case
    graph = _PLAN_SEEDS[seed][0]
    for g in (graph, None):
        try:
            plan = Plan.from_json(text, g)
        except PlanError:
            continue
        if g is None and json.loads(text).get("schema_version") == 1 and not plan.tensors:
            continue
        validate_plan(plan.to_dict())
        replay(graph, plan)


@settings(FEW, max_examples=300)
@given(plan_mutations())
def test_mutated_plan_files_are_refused_or_match_the_schema(case):
    _check_plan(case)


@pytest.mark.slow
@settings(MANY, max_examples=5000)
@given(plan_mutations())
def test_mutated_plan_files_are_refused_or_match_the_schema_many(case):
    _check_plan(case)


# --- networkx graphs ---------------------------------------------------------------------------

sizes = st.one_of(
    st.integers(0, 100),
    st.integers(-5, -1),
    st.integers(2**53, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "12", True, np.int64(7), np.uint8(3), np.float32(2.0), [1], {}]),
)
tables = st.one_of(st.dictionaries(st.sampled_from(["i", "j", "w", "0"]), sizes, max_size=2), sizes)


@st.composite
def nx_graphs(draw):
    kind = draw(st.sampled_from([nx.DiGraph, nx.DiGraph, nx.DiGraph, nx.Graph, nx.MultiDiGraph]))
    d = kind()
    n = draw(st.integers(0, 6))
    names = draw(
        st.lists(
            st.one_of(st.integers(0, 9), st.text(min_size=1, max_size=2)),
            min_size=n,
            max_size=n,
            unique_by=str,
        )
    )
    for name in names:
        attrs = {}
        if draw(st.integers(0, 5)):
            attrs["size"] = draw(sizes)
        if not draw(st.integers(0, 3)):
            attrs["outputs"] = draw(tables)
        if not draw(st.integers(0, 3)):
            attrs["inputs"] = draw(tables)
        if not draw(st.integers(0, 3)):
            attrs["parameters"] = draw(tables)
        if not draw(st.integers(0, 4)):
            attrs["output"] = draw(st.booleans())
        d.add_node(name, **attrs)
    if len(names) > 1:
        for _ in range(draw(st.integers(0, 2 * len(names)))):
            u, v = draw(st.sampled_from(names)), draw(st.sampled_from(names))
            attrs = {}
            if not draw(st.integers(0, 3)):
                attrs["tensors"] = draw(
                    st.one_of(
                        st.lists(st.sampled_from([*map(str, names), "zz"]), max_size=2), sizes
                    )
                )
            d.add_edge(u, v, **attrs)
    if not draw(st.integers(0, 4)):
        d.graph["outputs"] = draw(st.one_of(st.lists(st.text(max_size=2), max_size=2), sizes))
    return d


def _check_nx(d) -> None:
    try:
        g = from_networkx(d)
    except CosmaError:
        return
    mr, _ = min_required(g)
    plan = solve(Problem(g, mr), "file-arena-belady")
    assert not plan.status.has_plan or replay(g, plan).valid


@FEW
@given(nx_graphs())
def test_mutated_networkx_graphs(d):
    _check_nx(d)


@pytest.mark.slow
@MANY
@given(nx_graphs())
def test_mutated_networkx_graphs_many(d):
    _check_nx(d)
