"""The command line: figures printed, JSON parsable, bad input gives one message and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx.helper as h
import pytest
from click.testing import CliRunner
from helpers import light
from onnx import TensorProto

from cosma.cli import cli
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
        ("dynamic", "--input-shape x=Nx4"),
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
    assert r.returncode == 1
    assert "Error:" in r.stderr and "Traceback" not in r.stderr
