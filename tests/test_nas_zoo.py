"""The NAS networks in the HMCOS generator's skeleton (the reference evaluation's graphs).

Operator counts are derived by hand below from the generator's structure, not from the
builders. Rules (the generator's Keras graph after tf2onnx, which merges identical
weightless nodes):

- stem: one convolution;
- every cell: a "squeeze" 1x1 convolution of the last cell's output, and a "fit" of the
  one before: none in the first cell, one 1x1 convolution at equal resolution, else a
  factorized reduction of 8 operators (2 one-pixel pools, 2 convolutions, Pad, Slice,
  Concat, BatchNorm);
- a ReLU per raw cell output (and the stem's): the squeeze, the next cell's fit and the
  head share it, so cells + 1 of them;
- cell body: a separable convolution (sep_conv) is 5 operators (dw, pw, ReLU, dw, pw) plus
  a ReLU shared by everything reading the same input; dil_conv is dw, pw plus that ReLU;
  equal poolings of one tensor are one operator; conv_7x1_1x7 is 2 convolutions; the
  identity is none; one Add per block (two blocks adding the same two tensors in the same
  order share one) and one Concat;
- in the first cell both inputs are one tensor, so more of its ReLUs and pools merge;
- head: GlobalAveragePool, Squeeze, MatMul (its ReLU is counted above).

ImageNet: R R Nx4 R Nx4 R Nx4 (16 cells); fits: factorized in cells 2, 3, 8, 13, a
convolution in the other 11 but the first: 4 x 8 + 11 = 43. Skeleton total 1 + 17 + 16 +
43 + 3 = 80 operators.
CIFAR: Nx6 R Nx6 R Nx6 (20 cells); fits: factorized in cells 8 and 15, a convolution in
the 17 others but the first: 2 x 8 + 17 = 33. Skeleton total 1 + 21 + 20 + 33 + 3 = 78.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from cosma import Setting, memory_figures
from cosma.graphs import nas, zoo

IMAGENET_SKELETON = 1 + 17 + 16 + (4 * 8 + 11) + 3
CIFAR_SKELETON = 1 + 21 + 20 + (2 * 8 + 17) + 3

# Cell bodies: sep-conv operators + shared ReLUs + distinct pools (+ other) + adds + concat.
# NASNet-A normal: 5 sep_convs on inputs {0, 1}; avg(1), avg(0) twice -> 2 pools; 5 blocks.
NASNET_N = 5 * 5 + 2 + 2 + 5 + 1  # 35
# ... first cell (0 = 1): one shared ReLU, and avg(1) = avg(0): one pool.
NASNET_N_FIRST = 5 * 5 + 1 + 1 + 5 + 1  # 33
# NASNet-A reduction: 5 sep_convs on {0, 1, 2}; max(1) twice, avg(1), avg(2): 3 pools.
NASNET_R = 5 * 5 + 3 + 3 + 5 + 1  # 37
NASNET_R_FIRST = 5 * 5 + 2 + 3 + 5 + 1  # 36: ReLUs on {0=1, 2}
# AmoebaNet normal: 4 sep_convs on {2, 1, 0}; avg(0), max(0), avg(1), avg(4): 4 pools.
AMOEBA_N = 4 * 5 + 3 + 4 + 5 + 1  # 33
AMOEBA_N_FIRST = 4 * 5 + 2 + 3 + 5 + 1  # 31: avg(1) = avg(0)
# AmoebaNet reduction: 4 sep_convs on {1, 2, 0, 3}; avg(0), max(1), max(0) twice, avg(1):
# 4 pools; conv_7x1_1x7: 2 convolutions.
AMOEBA_R = 4 * 5 + 4 + 4 + 2 + 5 + 1  # 36
AMOEBA_R_FIRST = 4 * 5 + 3 + 2 + 2 + 5 + 1  # 33: avg(0) = avg(1), max(0) = max(1)
# DARTS normal: 5 sep_convs and 1 dil_conv on {0, 1, 2}; 4 blocks.
DARTS_N = 5 * 5 + 2 + 3 + 4 + 1  # 35
DARTS_N_FIRST = 5 * 5 + 2 + 2 + 4 + 1  # 34
# DARTS reduction: max(0) twice, max(1) three times: 2 pools; 4 blocks, but blocks 1 and 3
# both add block 2 and max(1) (in that order): one Add.
DARTS_R = 2 + 3 + 1  # 6
DARTS_R_FIRST = 1 + 3 + 1  # 5
# PNASNet-5 (normal = reduction): 6 sep_convs on {0, 1, 4}; max(0), max(1) twice,
# avg_1x1(1): 3 pools.
PNAS = 6 * 5 + 3 + 3 + 5 + 1  # 42
PNAS_FIRST = 6 * 5 + 2 + 2 + 5 + 1  # 40: max(0) = max(1)

EXPECTED = {
    # ImageNet: first cell R, then 3 R and 12 N. CIFAR: first cell N, 17 N, 2 R.
    "nasnet_a": IMAGENET_SKELETON + NASNET_R_FIRST + 3 * NASNET_R + 12 * NASNET_N,
    "amoebanet_d": IMAGENET_SKELETON + AMOEBA_R_FIRST + 3 * AMOEBA_R + 12 * AMOEBA_N,
    "darts_v2": IMAGENET_SKELETON + DARTS_R_FIRST + 3 * DARTS_R + 12 * DARTS_N,
    "pnasnet5": IMAGENET_SKELETON + PNAS_FIRST + 15 * PNAS,
    "nasnet_a_cifar": CIFAR_SKELETON + NASNET_N_FIRST + 17 * NASNET_N + 2 * NASNET_R,
    "amoebanet_d_cifar": CIFAR_SKELETON + AMOEBA_N_FIRST + 17 * AMOEBA_N + 2 * AMOEBA_R,
    "darts_v2_cifar": CIFAR_SKELETON + DARTS_N_FIRST + 17 * DARTS_N + 2 * DARTS_R,
    "pnasnet5_cifar": CIFAR_SKELETON + PNAS_FIRST + 19 * PNAS,
}


def test_hand_derived_totals():
    # The totals of the derivation above, written out (the generator's tf2onnx files,
    # made outside this repository, have these counts too).
    assert EXPECTED == {
        "nasnet_a": 647,
        "amoebanet_d": 617,
        "darts_v2": 523,
        "pnasnet5": 750,
        "nasnet_a_cifar": 780,
        "amoebanet_d_cifar": 742,
        "darts_v2_cifar": 719,
        "pnasnet5_cifar": 916,
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_operator_counts_match_the_generator_structure(name):
    assert zoo.load(name).num_operators == EXPECTED[name]


def test_the_eight_hmcos_graphs_and_the_protocol_group():
    assert sorted(zoo.HMCOS_NAS) == sorted(EXPECTED)
    # The protocol's NAS rows are the ImageNet-size HMCOS graphs (224x224, as the
    # reference evaluation's inputs); the DARTS-skeleton graphs keep names that say so.
    assert sorted(zoo.names("nas")) == ["amoebanet_d", "darts_v2", "nasnet_a", "pnasnet5"]
    for name in zoo.names("nas"):
        g = zoo.load(name)
        assert g.tensors[g.inputs[0]].shape == (1, 3, 224, 224)
        assert g.tensors[g.outputs[0]].shape == (1, 1000)
    for name in ("nasnet_a", "amoebanet_d", "pnasnet5", "darts_v2"):
        skeleton = zoo.load(f"{name}_darts_skeleton")
        assert skeleton.name == f"{name}_darts_skeleton"
        assert skeleton.num_operators != zoo.load(name).num_operators
    g = zoo.load("darts_v2_cifar")
    assert g.tensors[g.inputs[0]].shape == (1, 3, 32, 32)
    assert g.tensors[g.outputs[0]].shape == (1, 100)


def test_nasnet_imagenet_matches_the_issue_figures():
    f = memory_figures(zoo.load("nasnet_a"))
    # M_R: the zero padding of the second cell's factorized reduction reads the stem's
    # ReLU, 32 x 112 x 112 = 401,408 bytes, and writes 32 x 113 x 113 = 408,608.
    assert f.m_r == 401_408 + 408_608 == 810_016
    assert f.m_r_operator.endswith("fit/pad")
    # The file-order peak given in issue 14 (measured there on the generator's graph).
    assert f.file_order_peak == 1_292_960


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_spill_peak_is_well_above_m_r(name):
    # What makes these graphs real problems: the file order needs far more than M_R.
    f = memory_figures(zoo.load(name))
    assert f.file_order_peak > 1.3 * f.m_r


def test_widths_follow_the_generator():
    def widths(g):
        return sorted(
            {
                g.tensors[op.outputs[0]].shape[1]
                for op in g.operators.values()
                if op.op_type == "Add"
            }
        )

    # The width doubles at each reduction cell from the initial filters (ImageNet: 4
    # reductions, 2x to 16x; CIFAR: starts at 1x, 2 reductions); AmoebaNet's 12.5 gives
    # the integer widths 25, 50, 100, 200.
    assert widths(zoo.load("nasnet_a")) == [22, 44, 88, 176]
    assert widths(zoo.load("amoebanet_d")) == [25, 50, 100, 200]
    assert widths(zoo.load("darts_v2")) == [24, 48, 96, 192]
    assert widths(zoo.load("pnasnet5")) == [26, 52, 104, 208]
    assert widths(zoo.load("nasnet_a_cifar")) == [32, 64, 128]
    assert widths(zoo.load("amoebanet_d_cifar")) == [36, 72, 144]
    assert widths(zoo.load("pnasnet5_cifar")) == [48, 96, 192]


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="imagenet"):
        nas.nasnet_a(size="mnist")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_file_is_the_builder(name):
    built, shipped = zoo.load(name), zoo.load(f"{name}-onnx")
    assert shipped.num_operators == built.num_operators
    assert Counter(op.op_type for op in shipped.operators.values()) == Counter(
        op.op_type for op in built.operators.values()
    )
    # Same tensors in the same node order: every figure agrees, in both settings.
    for setting in Setting:
        fb, fs = memory_figures(built, setting=setting), memory_figures(shipped, setting=setting)
        assert (fb.m_r, fb.must_live, fb.file_order_peak, fb.compulsory_traffic) == (
            fs.m_r,
            fs.must_live,
            fs.file_order_peak,
            fs.compulsory_traffic,
        )


def test_shipped_files_are_what_the_script_writes(tmp_path, monkeypatch):
    import onnx

    script = Path(__file__).resolve().parent.parent / "graphs" / "models" / "export_nas.py"
    spec = importlib.util.spec_from_file_location("export_nas", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    for name in ("darts_v2", "nasnet_a_cifar"):
        written = onnx.load(module.export(name))
        shipped = onnx.load(str(resources.files("cosma.graphs") / "models" / f"{name}.onnx"))
        assert written.SerializeToString() == shipped.SerializeToString()
