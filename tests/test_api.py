"""The library API: cosma.plan, cosma.budgets, cosma.sweep, progress, method="auto"."""

from __future__ import annotations

import logging
import subprocess
import sys

import networkx as nx
import pytest
from helpers import light, skip

import cosma
from cosma import Setting, UsageError
from cosma.simulator import replay


def test_import_cosma_does_not_import_the_solvers():
    code = "import sys, cosma; print('cosma.solvers' in sys.modules, callable(cosma.plan))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_plan_on_an_onnx_file_is_replayed_and_self_contained():
    path = light("squeezenet")
    b = cosma.budgets(path, element_bytes=1)
    p = cosma.plan(path, "M_R", method="baseline", element_bytes=1)
    g = cosma.load_model(path, element_bytes=1)
    r = replay(g, p)
    assert r.valid and r.non_compulsory == p.objective
    assert p.budget == b.m_r
    assert p.source == path and p.element_bytes == 1
    # The graph input's shape is recorded (the light squeezenet takes 1x3x224x224).
    assert list(p.input_shapes.values()) == [[1, 3, 224, 224]]
    loads = [c for c in p.dma_commands() if c["kind"] == "load"]
    assert sum(c["bytes"] for c in loads) == p.traffic["loaded"]


@pytest.mark.parametrize("budget", [16, "16", "16B", "M_R"])
def test_budget_forms(budget):
    # skip(): M_R = 16 (helpers.skip); at 16 p is stored and reloaded: 20 bytes.
    p = cosma.plan(skip(), budget, method="milp", solver="cbc", time_limit=10)
    assert (p.budget, p.objective, p.status.value) == (16, 20, "optimal")


def test_zoo_names_and_networkx():
    assert cosma.load_model("darts_v2").name == cosma.load_model("zoo:darts_v2").name
    dag = nx.DiGraph()
    dag.add_node("a", size=10, inputs={"x": 4})
    dag.add_node("b", size=3)
    dag.add_edge("a", "b")
    p = cosma.plan(dag, "M_R", method="baseline")
    # M_R: a holds x (4) + its output (10) = 14; b holds a's output and its own: 13.
    assert p.budget == 14 and p.status.has_plan


def test_strict_keywords():
    with pytest.raises(TypeError):
        cosma.plan(skip(), 16, "milp")  # method is keyword-only
    with pytest.raises(UsageError, match="no option 'solvr'"):
        cosma.plan(skip(), 16, method="milp", solvr="cbc")
    with pytest.raises(UsageError, match="no option 'solver'"):
        cosma.plan(skip(), 16, method="baseline", solver="cbc")
    with pytest.raises(UsageError, match="unknown method"):
        cosma.plan(skip(), 16, method="nope")


def test_below_m_r_is_a_status_not_an_exception():
    p = cosma.plan(skip(), 15, method="baseline")
    assert p.status.value == "infeasible" and "needs at least 16 B" in p.reason


def test_auto_says_what_it_picked(caplog):
    with caplog.at_level(logging.INFO, logger="cosma.api"):
        p = cosma.plan(skip(), 16, time_limit=10)
    auto = p.stats["auto"]
    assert auto["method"] == "milp" and "operators" in auto["reason"]
    assert any("method auto" in r.message for r in caplog.records)
    assert p.objective == 20 and p.status.value == "optimal"


def test_auto_falls_back_on_big_graphs(monkeypatch):
    monkeypatch.setattr(cosma.api, "AUTO_EXACT_MAX_OPERATORS", 2)
    method, _, why = cosma.pick_method(skip())  # 4 operators > 2
    assert method in ("dnc", "baseline") and "4 operators" in why


@pytest.mark.parametrize(
    "method, engine",
    [("milp", "milp"), ("cpsat", "cpsat"), ("file-arena-belady", "file-arena-belady")],
)
def test_every_engine_reports_progress(method, engine):
    seen = []
    options = {"solver": "cbc"} if method == "milp" else {}
    p = cosma.plan(skip(), 16, method=method, time_limit=10, progress=seen.append, **options)
    mine = [s for s in seen if s["engine"] == engine]
    assert mine, seen
    last = mine[-1]
    assert set(last) >= {"engine", "seconds", "objective", "bound", "gap"}
    # The last incumbent an exact engine reports is the plan it returns.
    assert last["objective"] == p.objective


def test_min_peak_search_reports_progress():
    from cosma.progress import reporting
    from cosma.schedule import min_peak_order

    seen = []
    with reporting(seen.append):
        # RandWire-WS: the must-live bound does not certify it at once (M_R < M_P, and a
        # search of tens of thousands of states in issue 4's measurements).
        r = min_peak_order(cosma.load_model("zoo:randwire_ws"), time_limit=60)
    reports = [s for s in seen if s["engine"] == "minpeak"]
    assert reports
    assert all(s["bound"] <= s["objective"] for s in reports)
    assert reports[-1]["phase"] == r.method and reports[-1]["objective"] == r.peak


def test_sweep_serial_rows():
    rows = cosma.sweep(skip(), steps=3, methods=["milp:cbc", "baseline"], executor="serial")
    assert [(r["budget"], r["method"]) for r in rows] == [
        (16, "milp:cbc"),
        (16, "baseline"),
        (18, "milp:cbc"),
        (18, "baseline"),
        (20, "milp:cbc"),
        (20, "baseline"),
    ]
    assert all(r["m_r"] == 16 and r["m_p"] == 20 for r in rows)
    # 16 and 18 cannot hold p, q, r (20) at c: 20 bytes of spill; none at 20.
    exact = [r["non_compulsory"] for r in rows if r["method"] == "milp:cbc"]
    assert exact == [20, 20, 0]
    assert all(r["lower_bound"] <= r["non_compulsory"] for r in rows)


def test_sweep_setting_from_budget_names():
    rows = cosma.sweep(skip(), budgets=["M_Rp"], methods=["baseline"], executor="serial")
    assert rows[0]["setting"] == Setting.ACTIVATIONS_PARAMETERS.value


def test_sweep_refuses_a_backwards_range():
    with pytest.raises(UsageError, match="swap"):
        cosma.sweep(skip(), start="M_P", stop="M_R", methods=["baseline"], executor="serial")


def _moccasin_doc(duration0: int = 4) -> dict:
    # MOCCASIN's keys; order 0, 2, 1, 3; node 3 reads 0 again, nodes 1 and 3 are sinks.
    return {
        "graph": {"name": "tiny", "order": [0, 2, 1, 3]},
        "nodes": [
            {"name": 0, "out_cost": 10, "duration": duration0},
            {"name": 1, "out_cost": 20, "duration": 5},
            {"name": 2, "out_cost": 30, "duration": 7},
            {"name": 3, "out_cost": 40, "duration": 9},
        ],
        "links": [{"0": 0, "1": 2}, {"0": 2, "1": 1}, {"0": 0, "1": 3}],
    }


@pytest.mark.parametrize("method", ["auto", "milp", "cpsat", "remat-cpsat"])
def test_plan_rematerialization_from_the_library(method):
    """By hand: the no-recomputation peak is 60 (at node 1: 0, 2 and 1 resident), so
    0.9xpeak = 54. Node 1 needs 2 and itself (50); of what is kept only 0 (10) can go, and
    it must come back for node 3: one recomputation of 0 (4). Optimum 4 + 7 + 5 + 9 + 4."""
    from cosma.graphs.nodelink import graph_from_nodelink

    g = graph_from_nodelink(_moccasin_doc())
    p = cosma.plan(g, "0.9xpeak", objective="compute", method=method, time_limit=30)
    assert p.method.startswith("remat-") and p.budget == 54
    assert p.status.value == "optimal" and p.objective == 29 == p.lower_bound
    assert replay(g, p).compute == 29


def test_plan_rematerialization_of_a_training_graph_and_bad_objectives():
    from cosma.cost import costs
    from cosma.graphs.training import training_graph

    g = (
        cosma.GraphBuilder("mlp")
        .input("x", 4)
        .parameter("w", 16)
        .op("fc", ["x", "w"], {"h": 4}, op_type="MatMul")
        .op("act", ["h"], {"y": 4}, "Relu")
        .output("y")
        .build()
    )
    p = cosma.plan(g, "1xpeak", objective="compute", method="checkpoint-all", training=True)
    assert p.status.value == "optimal"
    assert p.objective == sum(costs(training_graph(g)).values())  # every operator once
    with pytest.raises(UsageError, match="already a training graph"):
        training_graph(training_graph(g))
    with pytest.raises(UsageError, match="objective compute"):
        cosma.plan(g, "0.9xpeak")  # a fraction of the peak is a rematerialization budget
    with pytest.raises(UsageError, match="unknown objective"):
        cosma.plan(g, 100, objective="time")
    with pytest.raises(UsageError, match="does not minimise compute"):
        cosma.plan(g, 100, objective="compute", method="dnc")
    with pytest.raises(UsageError, match="no addresses"):  # was silently ignored
        cosma.plan(g, 100, objective="compute", method="sqrtn", alignment=64)
