"""The command line: figures printed, JSON parsable, bad input gives one message and exit 1."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import onnx.helper as h
import pytest
from click.testing import CliRunner
from helpers import light
from onnx import TensorProto

from cosma import GraphBuilder
from cosma.app.cli import cli
from cosma.graphs import shipped_model


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_inspect_prints_both_settings():
    r = run("inspect", shipped_model("squeezenet"), "--element-bytes", "1")
    assert r.exit_code == 0, r.output
    assert "66 operators" in r.output
    # M_R of SqueezeNet 1.1 at 1 byte/element: conv1's Relu, 2 x 64x111x111.
    assert "1,577,088 B" in r.output
    assert "activations+parameters" in r.output


def test_inspect_json_is_machine_readable():
    r = run("inspect", light("resnet50"), "--element-bytes", "1", "--json")
    doc = json.loads(r.output)
    assert doc["operators"] == 176
    fa = doc["figures"]["activations"]
    assert fa["m_r"] == 3 * 256 * 56 * 56
    assert fa["m_r"] <= fa["must_live"] <= fa["file_order_peak"]
    assert set(doc["figures"]) == {"activations", "activations+parameters"}


def test_inspect_exact_bytes_and_one_setting():
    r = run("inspect", shipped_model("squeezenet"), "--bytes", "--setting", "activations")
    assert r.exit_code == 0
    assert "MiB" not in r.output and "activations+parameters" not in r.output


def _dynamic_model(tmp_path):
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    path = tmp_path / "dyn.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


def test_input_shape_override(tmp_path):
    path = _dynamic_model(tmp_path)
    r = run("inspect", path, "--input-shape", "x=3x4", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["figures"]["activations"]["m_r"] == 2 * 3 * 4 * 4


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such file"),
        ("text", "not a readable ONNX model"),
        ("dynamic", "--input-shape x=1x4"),
        ("bad_shape", "write NAME=DIMS"),
        ("unknown_input", "not a graph input"),
        ("bad_setting", "Invalid value for '--setting'"),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path, case, expected):
    text = tmp_path / "t.onnx"
    text.write_text("hello")
    args = {
        "missing": [str(tmp_path / "none.onnx")],
        "text": [str(text)],
        "dynamic": [_dynamic_model(tmp_path)],
        "bad_shape": [_dynamic_model(tmp_path), "--input-shape", "x"],
        "unknown_input": [_dynamic_model(tmp_path), "--input-shape", "q=1"],
        "bad_setting": [shipped_model("squeezenet"), "--setting", "weird"],
    }[case]
    r = run("inspect", *args)
    assert r.exit_code != 0
    assert expected in r.output
    assert "Traceback" not in r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)


def test_installed_script_runs_without_traceback(tmp_path):
    # The real entry point in a subprocess: exit code and stderr as a user sees them.
    r = subprocess.run(
        [sys.executable, "-m", "cosma", "inspect", str(tmp_path / "none.onnx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 3  # bad input (README, cosma --help)
    assert "Error:" in r.stderr and "Traceback" not in r.stderr


def test_plan_writes_json_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "plan.json"
    model = light("shufflenet")
    r = run("plan", model, "-s", "M_R", "--element-bytes", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "non-compulsory" in r.output and "feasible" in r.output
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 2 and doc["steps"]
    assert doc["objective"] == doc["traffic"]["non_compulsory"]
    before = out.read_text()
    r = run("plan", model, "-s", "M_H", "--element-bytes", "1", "-o", str(out))
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert out.read_text() == before  # nothing overwritten
    r = run("plan", model, "-s", "M_H", "--element-bytes", "1", "-o", str(out), "--force")
    assert r.exit_code == 0
    # The plan replays on the same graph...
    r = run("replay", model, str(out), "--element-bytes", "1")
    assert r.exit_code == 0 and "valid" in r.output
    # ...also without --element-bytes (the plan records it)...
    r = run("replay", model, str(out))
    assert r.exit_code == 0 and "valid" in r.output
    # ...and is refused for another graph (other element bytes: other sizes).
    r = run("replay", model, str(out), "--element-bytes", "4")
    assert r.exit_code == 3 and "was made for graph" in r.output


def test_tampered_plan_is_reported(tmp_path):
    out = tmp_path / "plan.json"
    model = shipped_model("squeezenet")
    assert run("plan", model, "-s", "M_R", "--element-bytes", "1", "-o", str(out)).exit_code == 0
    doc = json.loads(out.read_text())
    doc["steps"][3]["before"] = []  # drop the loads/creates of one step
    out.write_text(json.dumps(doc))
    r = run("replay", model, str(out), "--element-bytes", "1")
    assert r.exit_code == 4 and "INVALID" in r.output and "not resident" in r.output


def test_plan_below_m_r_is_refused():
    r = run("plan", shipped_model("squeezenet"), "-s", "1MiB", "--element-bytes", "1")
    assert r.exit_code == 4  # no plan
    assert "needs at least" in r.output and "'n1' (Relu)" in r.output
    assert "Traceback" not in r.output


def test_plan_json_summary_and_parameter_budget():
    r = run(
        "plan",
        shipped_model("squeezenet"),
        "-s",
        "M_Rp",
        "--element-bytes",
        "1",
        "--json",
        "-m",
        "minpeak-firstfit-greedy",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["setting"] == "activations+parameters"
    assert doc["status"] in ("optimal", "feasible") and "steps" not in doc


def test_plan_unknown_method_and_methods_list():
    r = run("plan", shipped_model("squeezenet"), "-s", "M_R", "-m", "magic")
    assert r.exit_code == 2 and "unknown method 'magic'" in r.output
    r = run("methods")
    assert r.exit_code == 0 and "file-arena-belady" in r.output


def test_plan_time_line_counts_the_solve_inside_the_total(tmp_path):
    """`time T s (solve S s)`: both on the limit's clock, so S <= T. (The exact engines'
    solve time used to be counted from interpreter start, the total from the command's
    start, so the real script printed a solve longer than the total.)"""
    from cosma.graphs.nodelink import save_nodelink

    g = (
        GraphBuilder("skip")
        .input("x", 1)
        .op("a", ["x"], {"p": 10})
        .op("b", ["p"], {"q": 5})
        .op("c", ["q"], {"r": 5})
        .op("d", ["p", "r"], {"z": 1})
        .output("z")
        .build()
    )
    path = tmp_path / "skip.json"
    save_nodelink(g, path)
    argv = [sys.executable, "-m", "cosma", "plan", str(path), "-s", "16", "-m", "milp"]
    r = subprocess.run([*argv, "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    timing = json.loads(r.stdout)["timing"]
    assert 0 <= timing["solve_seconds"] <= timing["elapsed_seconds"]
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    total, solve = re.search(r"time\s+([\d.]+) s \(solve ([\d.]+) s\)", r.stdout).groups()
    assert float(solve) <= float(total)
