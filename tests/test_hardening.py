"""Bad input never gives a traceback: every case of issue 11 gets one clear message naming
the problem and the fix, and its documented exit code (README, ``cosma --help``)."""

from __future__ import annotations

import json
import os

import networkx as nx
import numpy as np
import onnx
import onnx.helper as h
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from cosma import from_networkx
from cosma.app.cli import cli
from cosma.errors import CosmaError, GraphValidationError, UsageError
from cosma.graphs import load_onnx, shipped_model
from cosma.plan import Plan

USAGE, BAD_INPUT, NO_PLAN, SOLVER = 2, 3, 4, 5
SQUEEZE = shipped_model("squeezenet")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _relu_model(tmp_path, shape=(1, 3, 8, 8), elem=TensorProto.FLOAT, name="m.onnx"):
    x = h.make_tensor_value_info("x", elem, list(shape))
    y = h.make_tensor_value_info("y", elem, None)
    m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return str(path)


def _no_traceback(r, code: int, *needles: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    for n in needles:
        assert n in r.output, (n, r.output)


# --- option values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--time-limit", "nan"], "time limit must be a finite number"),
        (["--time-limit", "inf"], "time limit must be a finite number"),
        (["--time-limit", "0"], "above 0"),  # 0 is refused, not silently 60 s
        (["--time-limit", "-5"], "above 0"),
        (["--threads", "0"], "threads must be a whole number from 1"),
        (["--threads", "-3"], "threads must be a whole number from 1"),
        (["--threads", "100000"], "threads must be a whole number from 1"),
        (["--seed", str(2**70)], "seed must be a whole number from 0"),
        (["--seed", "-1"], "seed must be a whole number from 0"),
        (["--alignment", "0"], "alignment must be a whole number"),
        (["--alignment", str(2**40)], "alignment must be a whole number"),
        (["--element-bytes", "inf"], "element bytes must be"),
        (["--element-bytes", "nan"], "element bytes must be"),
        (["--element-bytes", "1e300"], "element bytes must be"),
        (["--element-bytes", "0"], "element bytes must be"),
        (["--element-bytes", "0.3"], "whole number of bits"),
        (["--order", "random"], "Invalid value for '--order'"),
        (["--solver", "magic"], "unknown MILP solver 'magic'"),
        (["-s", "1.5"], "a byte count is a whole number"),
        (["-s", "1" + "0" * 30], "too large"),
        (["--write-model", "model.txt"], "must end in .lp or .mps"),
        # rates beyond what the engines' number types hold (1e400 was an internal error)
        (["--recompute-rate", "1e400"], "out of range"),
        (["--recompute-rate", "1e-400"], "out of range"),
        (["--recompute-rate", "1e30"], "out of range"),
        (["--accelerator", "dram=1e30B/s,macs=1/s"], "out of range"),
    ],
)
def test_plan_option_values_are_checked_up_front(args, needle):
    base = ["plan", SQUEEZE, "-m", "milp", "-s", "M_R", "--element-bytes", "1"]
    if "-s" in args:
        base = ["plan", SQUEEZE, "-m", "milp", "--element-bytes", "1"]
    if "--element-bytes" in args:
        base = ["plan", SQUEEZE, "-m", "milp", "-s", "M_R"]
    _no_traceback(run(*base, *args), USAGE, needle)


def test_inspect_checks_alignment_and_element_bytes_on_the_zoo():
    _no_traceback(run("inspect", "zoo:darts_v2", "--element-bytes", "0"), USAGE, "element bytes")
    _no_traceback(run("inspect", SQUEEZE, "--alignment", "0"), USAGE, "alignment")


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "zoo:no-such-network", "--alignment", "0"],
        ["sweep", "zoo:no-such-network", "--time-limit", "nan"],
        ["bench", "--graphs", "zoo:no-such-network", "--time-limit", "0"],
    ],
)
def test_sweep_and_bench_check_option_values_up_front(args):
    # Checked by click before the command runs: the unknown network is never looked at.
    r = run(*args)
    _no_traceback(r, USAGE, "Invalid value for '--")
    assert "no-such-network" not in r.output


# --- output paths: checked before any work, written atomically --------------------------


@pytest.mark.parametrize("option", ["-o", "--solver-log", "--write-model"])
@pytest.mark.parametrize("where", ["folder", "under_file", "missing_folder"])
def test_output_paths_are_refused_before_any_work(tmp_path, option, where):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    name = "out.lp" if option == "--write-model" else "out.json"
    path = {
        "folder": str(tmp_path),
        "under_file": str(a_file / name),
        "missing_folder": str(tmp_path / "nope" / name),
    }[where]
    needle = {
        "folder": "is a folder",
        "under_file": "is a file",
        "missing_folder": "does not exist",
    }
    # A model that does not exist: the path check must come first, so it is what fails.
    r = run("plan", str(tmp_path / "missing.onnx"), "-m", "milp", "-s", "1KiB", option, path)
    _no_traceback(r, USAGE, needle[where], option)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run("plan", SQUEEZE, "-s", "M_R", "-o", str(ro / "p.json"))
    _no_traceback(r, USAGE, "cannot write")


def test_file_size_limit_leaves_the_old_plan_whole(tmp_path):
    # RLIMIT_FSIZE in a child process: the write fails (EFBIG) and --force must not leave
    # a truncated file behind. Real CLI, real limit.
    import subprocess
    import sys

    out = tmp_path / "plan.json"
    r = run("plan", SQUEEZE, "-s", "M_R", "--element-bytes", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    before = out.read_text()
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000));"
        "from cosma.app.cli import main; main(sys.argv[1:])"
    )
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "plan",
            SQUEEZE,
            "-s",
            "M_H",
            "--element-bytes",
            "1",
            "-o",
            str(out),
            "--force",
            "-m",
            "file-arena-belady",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == USAGE, p.stderr
    assert "file-size limit" in p.stderr and "Traceback" not in p.stderr
    assert out.read_text() == before
    json.loads(out.read_text())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".cosma-")]


@pytest.mark.parametrize(
    "args",
    [
        ["zoo", "--json"],  # 9 KB: a write inside the command meets EPIPE
        ["methods"],  # under 8 KB: Python's final flush does
        ["--help"],  # click's own help output does
    ],
)
def test_a_closed_output_pipe_stops_quietly(args):
    # `cosma zoo | head`: the reader is gone before cosma writes (closed before cosma has
    # even started). Real process, real pipe: exit 141 (as if ended by SIGPIPE) and nothing
    # on standard error.
    import subprocess
    import sys

    p = subprocess.Popen(
        [sys.executable, "-m", "cosma", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()
    stderr = p.stderr.read()
    p.wait(timeout=60)
    assert (p.returncode, stderr) == (141, "")


# --- models -----------------------------------------------------------------------------


def test_unknown_element_type(tmp_path):
    path = _relu_model(tmp_path, elem=77)
    _no_traceback(run("inspect", path), BAD_INPUT, "element type 77")


def test_overflowing_shapes(tmp_path):
    path = _relu_model(tmp_path, shape=(2**40, 2**40))
    _no_traceback(run("inspect", path), BAD_INPUT, "more than cosma can size")
    dyn = _relu_model(tmp_path, shape=("n", 4), name="dyn.onnx")
    r = run("inspect", dyn, "--input-shape", f"x={10**22}x4")
    _no_traceback(r, USAGE, "not a whole number from 1 to 2^53")
    r = run("inspect", dyn, "--input-shape", f"x={2**30}x{2**30}")
    _no_traceback(r, USAGE, "more than cosma can size")


def test_model_local_function_that_fails_validation(tmp_path):
    f = h.make_function(
        "local",
        "F",
        ["a"],
        ["b"],
        [h.make_node("NoSuchOp", ["a"], ["b"])],
        [h.make_opsetid("", 17)],
    )
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = h.make_graph([h.make_node("F", ["x"], ["y"], domain="local")], "g", [x], [y])
    m = h.make_model(
        g, functions=[f], opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)]
    )
    path = tmp_path / "f.onnx"
    path.write_bytes(m.SerializeToString())
    r = run("inspect", str(path))
    assert r.exit_code == BAD_INPUT and "Traceback" not in r.output, r.output


def test_input_shape_overrides_are_checked(tmp_path):
    path = _relu_model(tmp_path, shape=("n", 3, 8, 8))
    # wrong rank: refused, naming the declared rank
    r = run("inspect", path, "--input-shape", "x=1x3x8x8x2")
    _no_traceback(r, USAGE, "declares 'x' with 4 dimension(s)", "x=1x3x8x8")
    # a static dimension overridden: refused
    r = run("inspect", path, "--input-shape", "x=1x4x8x8")
    _no_traceback(r, USAGE, "dimension 1 of 'x' is fixed at 3")
    # the dynamic one: taken
    r = run("inspect", path, "--input-shape", "x=2x3x8x8", "--json")
    assert r.exit_code == 0, r.output


def test_every_dynamic_input_hint_is_valid_input(tmp_path):
    # -1 and symbolic dims both become 1 in the hint, which the parser accepts.
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    x.type.tensor_type.shape.dim[0].Clear()
    x.type.tensor_type.shape.dim[0].dim_value = -1
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    path = tmp_path / "neg.onnx"
    path.write_bytes(m.SerializeToString())
    r = run("inspect", str(path))
    assert r.exit_code == BAD_INPUT
    hint = r.output.split("--input-shape ")[1].split()[0]
    assert hint == "x=1x3x1x1"
    assert run("inspect", str(path), "--input-shape", hint).exit_code == 0


def test_stale_value_info_is_recomputed(tmp_path):
    # The file records y as 1x4 (made for batch 1); with batch 5 the shape is recomputed.
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    stale = h.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4])
    g = h.make_graph(
        [h.make_node("Relu", ["x"], ["r"]), h.make_node("Neg", ["r"], ["y"])], "g", [x], [y]
    )
    g.value_info.append(stale)
    m = h.make_model(g)
    gr = load_onnx(m, input_shapes=["x=5x4"])
    assert gr.tensors["r"].shape == (5, 4) and gr.tensors["r"].size == 5 * 4 * 4


# --- replay -------------------------------------------------------------------------------


def _edit(text: str, change) -> str:
    doc = json.loads(text)
    change(doc)
    return json.dumps(doc)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    r = run("plan", SQUEEZE, "-s", "M_R", "--element-bytes", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda t: b"\xff\xfe" + t.encode(), "not UTF-8"),
        (lambda t: t.replace('"budget": ', '"budget": Infinity, "x": ', 1), "Infinity"),
        (lambda t: t.replace('"budget": ', '"budget": ' + "9" * 5000 + ', "x": ', 1), "JSON"),
        (lambda t: "[" * 100000 + "]" * 100000, "nested too deeply"),
        (lambda t: _edit(t, lambda d: d["steps"][0].update(operator=["a"])), "should be a str"),
        (
            lambda t: _edit(t, lambda d: d["steps"][0]["before"][0].update(tensor={"a": 1})),
            "should be a str",
        ),
        (lambda t: _edit(t, lambda d: d.update(steps={"a": 1})), "should be a list"),
        (lambda t: _edit(t, lambda d: d.update(status="great")), "unknown status"),
        (lambda t: '{"schema_version": 1}', "missing"),
    ],
)
def test_damaged_plans_are_one_message(tmp_path, plan_file, damage, needle):
    bad = tmp_path / "bad.json"
    data = damage(plan_file.read_text())
    bad.write_bytes(data if isinstance(data, bytes) else data.encode())
    r = run("replay", SQUEEZE, str(bad), "--element-bytes", "1")
    _no_traceback(r, BAD_INPUT, needle)


def test_swapped_replay_arguments(plan_file):
    r = run("replay", str(plan_file), SQUEEZE)
    _no_traceback(r, USAGE, "swapped")


def test_plan_reader_only_raises_plan_errors(plan_file):
    doc = json.loads(plan_file.read_text())
    doc["steps"][0]["before"][0]["address"] = -4
    with pytest.raises(CosmaError, match="address"):
        Plan.from_dict(doc)


# --- Python API ---------------------------------------------------------------------------


def test_networkx_inputs_that_are_not_digraphs():
    und = nx.Graph([("a", "b")])
    nx.set_node_attributes(und, 4, "size")
    with pytest.raises(GraphValidationError, match="undirected"):
        from_networkx(und)
    multi = nx.MultiDiGraph([("a", "b"), ("a", "b")])
    nx.set_node_attributes(multi, 4, "size")
    with pytest.raises(GraphValidationError, match="MultiDiGraph"):
        from_networkx(multi)
    with pytest.raises(GraphValidationError, match="None"):
        from_networkx(None)
    bad = nx.DiGraph()
    bad.add_node("a", outputs=5)
    with pytest.raises(GraphValidationError, match="should be a dict"):
        from_networkx(bad)


def test_numpy_integer_sizes_are_sizes():
    d = nx.DiGraph()
    d.add_node("a", size=np.int64(4), inputs={"x": np.int32(3)})
    d.add_node("b", size=np.uint16(5))
    d.add_edge("a", "b")
    g = from_networkx(d)
    assert [type(g.tensors[t].size) for t in ("a", "b", "x")] == [int, int, int]
    assert g.tensors["x"].size == 3


def test_absurd_sizes_are_refused():
    d = nx.DiGraph()
    d.add_node("a", size=10**18)
    with pytest.raises(GraphValidationError, match="2\\^53"):
        from_networkx(d)


def test_library_checks_option_values():
    from cosma.problem import Problem
    from cosma.solvers import solve

    d = nx.DiGraph()
    d.add_node("a", size=4)
    g = from_networkx(d)
    for kw in ({"time_limit": float("nan")}, {"threads": 0}, {"seed": 2**64}):
        with pytest.raises(UsageError):
            solve(Problem(g, 8), "milp", **kw)


def test_onnx_model_is_not_modified_in_place():
    x = h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])
    y = h.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    before = m.SerializeToString()
    load_onnx(m, input_shapes=["x=3x2"])
    assert m.SerializeToString() == before
    assert onnx.load_model_from_string(before).graph.input[0].name == "x"


@pytest.mark.parametrize(
    "args, needle",
    [
        # --max-computes was silently ignored by the traffic methods
        (["-m", "milp", "--max-computes", "3"], "-m milp has no option --max-computes"),
        (["-m", "baseline", "--threads", "2"], "-m baseline has no option --threads"),
        (["-m", "cpsat", "--solver", "cbc"], "it takes: --time-limit, --threads"),
        (["--objective", "compute", "-m", "cpsat", "--max-computes", "-1"], "give 0 (no bound)"),
    ],
)
def test_plan_names_the_flags_a_method_does_not_take(args, needle):
    _no_traceback(run("plan", SQUEEZE, "-s", "M_R", *args), USAGE, needle)


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", SQUEEZE, "-b", "0.9xpeak", "-m", "baseline"],
        ["bench", "--graphs", SQUEEZE, "--budgets", "0.9xpeak", "--methods", "baseline"],
    ],
)
def test_peak_fractions_outside_rematerialization_say_where_they_belong(args, tmp_path):
    # It used to be "unknown size unit 'xpeak'".
    if args[0] == "bench":
        args = [*args, "--out", str(tmp_path / "run")]
    _no_traceback(run(*args), USAGE, "--objective compute")
