"""The zoo: every network loads and validates, matches its reference implementation's
published parameter count, and agrees with the exported ONNX file of the same architecture.

Parameter counts: the builders fold BatchNorm into the convolution before it (as an ONNX
export does), which turns BN's 2 parameters per channel (weight, bias) into 1 (the
convolution's bias); a BatchNorm not after a convolution keeps 4 per channel (scale, bias,
running mean and variance, as ONNX's BatchNormalization reads them). Each expected value is
the torchvision documentation's count adjusted by that rule, the channel sums worked out in
the comments.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cosma import Setting, memory_figures
from cosma.app.cli import cli
from cosma.graphs import load_graph, zoo
from cosma.graphs.nas import randwire_ws


def params(g) -> int:
    return sum(g.tensors[p].size for p in g.parameters)  # 1 byte per element


@pytest.mark.parametrize("name", zoo.names())
def test_every_network_loads_and_validates(name):
    g = zoo.load(name)  # Graph() validates: a DAG, one producer per tensor, sizes...
    assert g.num_operators > 10
    assert g.is_schedule(g.file_order)
    f = memory_figures(g)
    assert 0 < f.m_r <= f.must_live <= f.file_order_peak


def test_reference_groups():
    assert len(zoo.names("human")) == 10
    assert sorted(zoo.names("nas")) == ["amoebanet_d", "darts_v2", "nasnet_a", "pnasnet5"]


# BN channels folded (conv + BN): ResNet-50: stem 64; per bottleneck width, width, 4*planes,
# plus the projection shortcut's 4*planes in the first block of each stage:
# 64 + 3*(64+64+256)+256 + 4*(128+128+512)+512 + 6*(256+256+1024)+1024
#    + 3*(512+512+2048)+2048 = 26,560.
RESNET50_BN = 26_560
TORCHVISION = {
    # name: (published torchvision parameter count, correction)
    "resnet50": (25_557_032, -RESNET50_BN),
    # ResNeXt widths are 2x planes: 64 + 1792 + 4608 + 13312 + 14336 = 34,112.
    "resnext50_32x4d": (25_028_904, -34_112),
    # DenseNet-121: standalone BNs (norm1 of every layer, transitions, norm5) over
    # 864 + 3648 + 14976 + 12032 + 256 + 512 + 1024 + 1024 = 34,336 channels gain 2 each;
    # folded BNs (stem 64, norm2 of 58 layers x 128 = 7424) lose 1 each.
    "densenet121": (7_978_856, 2 * 34_336 - (64 + 58 * 128)),
    # Published counts include the auxiliary FCN head (1024->256 3x3, BN, 256->21 1x1:
    # 2,359,296 + 512 + 5,397 = 2,365,205), which the builders leave out.
    # FCN: ResNet-50 BNs + the head's 512.
    "fcn_resnet50": (35_322_218, -2_365_205 - RESNET50_BN - 512),
    # DeepLabV3: ResNet-50 BNs + ASPP 5 x 256 + projection 256 + head 256.
    "deeplabv3_resnet50": (42_004_074, -2_365_205 - RESNET50_BN - 1_792),
    # LR-ASPP: stem 16; per block (expand if any) + depthwise + project channels:
    # 32+152+168+184+280+280+560+480+448+448+1072+1456+1504+2080+2080; last 960; cbr 128.
    "lraspp_mobilenet_v3_large": (3_221_538, -12_328),
    # R(2+1)D-18: stem 45 + 64; blocks (mid + planes) x 2 (+ planes for a projection), mid
    # = 144, 230/288, 460/576, 921/1152: 109 + 832 + 844 + 832 + 1688 + 1664 + 3378 + 3328.
    "r2plus1d_18": (31_505_325, -12_675),
    # S3D: every conv has a BN: 128 + 64 + 384 (stem) + inception blocks
    # 528 + 928 + 880 + 936 + 984 + 1056 + 1472 + 1472 + 1776 = 10,608.
    "s3d": (8_320_048, -10_608),
    # ViT-B/16 has no BatchNorm.
    "vit_b_16": (86_567_656, 0),
    # nn.Transformer(): 44,140,544, plus the 128 x 128 causal mask constant.
    "transformer": (44_140_544, 128 * 128),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_counts_match_reference_implementations(name):
    published, correction = TORCHVISION[name]
    assert params(zoo.load(name)) == published + correction


def test_nas_parameter_counts_match_papers():
    # DARTS ImageNet (C=48, 14 cells): 4.7M in the DARTS paper; RandWire-WS small: 5.6M.
    assert round(params(zoo.load("darts_v2_darts_skeleton")) / 1e6, 1) == 4.7
    assert round(params(zoo.load("randwire_ws")) / 1e6, 1) == 5.6


def test_architecture_counts():
    def count(name, op_type):
        return sum(op.op_type == op_type for op in zoo.load(name).operators.values())

    # ResNet-50: 53 convolutions, 16 residual additions. DenseNet-121: 120 convolutions;
    # every layer but the first of a block concatenates its predecessors (5 + 11 + 23 + 15
    # = 54), plus one concatenation at each of the 4 block outputs = 58.
    assert count("resnet50", "Conv") == 53 and count("resnet50", "Add") == 16
    assert count("densenet121", "Conv") == 120 and count("densenet121", "Concat") == 58
    # Transformer: 6 + 2*6 = 18 attentions, each one Softmax and 6 MatMuls (Q, K, V and
    # output projections, scores, context); 12 feed-forward blocks add 2 each: 132.
    assert count("transformer", "Softmax") == 18 and count("transformer", "MatMul") == 132
    # ViT-B/16: 12 blocks x 2 LayerNorms + the final one.
    assert count("vit_b_16", "LayerNormalization") == 25
    # DARTS V2: 10 normal cells x 4 steps x 2 ops are mostly separable convolutions.
    assert count("darts_v2_darts_skeleton", "Softmax") == 0


def test_darts_skeleton_operator_count_by_hand():
    # Stems: conv-relu-conv and relu-conv = 5. A normal DARTS V2 cell: two ReLU-conv
    # preprocessings (4); 5 sep_conv_3x3 (relu, dw, pw, relu, dw, pw: 6 each = 30); one
    # dil_conv_3x3 (relu, dw, pw = 3); 3 skips (no operator); 4 step sums; 1 concat = 42.
    # A reduction cell: preprocessing 4, 5 max pools, 3 stride-1 skips (none), 4 sums,
    # 1 concat = 14. Cells after a reduction (cells 0, 5, 10) preprocess their first input
    # with a factorized reduce (relu, conv, slice, conv, concat: 5 instead of 2): +3 each.
    # Head: pool, flatten, linear = 3. 14 cells, reductions at 4 and 9:
    expected = 5 + 12 * 42 + 3 * 3 + 2 * 14 + 3
    assert expected == 549
    assert zoo.load("darts_v2_darts_skeleton").num_operators == expected


def test_output_shapes():
    def out(name):
        g = zoo.load(name)
        return g.tensors[g.outputs[0]].shape

    assert out("resnet50") == (1, 1000)
    assert out("r2plus1d_18") == (1, 400) and out("s3d") == (1, 400)
    for seg in ("fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large"):
        assert out(seg) == (1, 21, 224, 224)
    assert out("transformer") == (1, 128, 512)
    assert out("nasnet_a") == (1, 1000)


def test_builders_are_parametrised():
    g = zoo.load("resnet50", resolution=112, batch=2, element_bytes=4)
    assert g.tensors[g.inputs[0]].size == 2 * 3 * 112 * 112 * 4
    with pytest.raises(Exception, match="does not take"):
        zoo.load("resnet50", frames=3)


def test_randwire_is_reproducible():
    assert randwire_ws(seed=3).identity() == randwire_ws(seed=3).identity()
    assert randwire_ws(seed=3).identity() != randwire_ws(seed=4).identity()


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "densenet121", "vit_b_16"])
def test_builder_agrees_with_exported_file(name):
    built, exported = zoo.load(name), zoo.load(f"{name}-onnx")
    fb, fe = memory_figures(built), memory_figures(exported)
    # Activations: the same M_R (same operator footprint), the same must-live bound and the
    # same file-order peak. ViT's export has 380 operators to the builder's 175 (reshapes,
    # transposes and per-head slices are separate ONNX nodes) yet the same figures, because
    # the largest footprints are the MLP and the score matrices, which both have.
    assert (fb.m_r, fb.must_live, fb.file_order_peak) == (fe.m_r, fe.must_live, fe.file_order_peak)
    if name != "vit_b_16":
        assert built.num_operators == exported.num_operators
    # With parameters tracked the figures differ by at most a few KiB: the exports come
    # from freshly initialised models, whose BatchNorm folds to all-zero biases that the
    # exporter's optimizer drops, and whose identical constants (BN statistics, LayerNorm
    # weights) it merges into one shared tensor.
    pb = memory_figures(built, setting=Setting.ACTIVATIONS_PARAMETERS)
    pe = memory_figures(exported, setting=Setting.ACTIVATIONS_PARAMETERS)
    assert abs(pb.m_r - pe.m_r) <= 4096
    assert abs(pb.must_live - pe.must_live) <= 4096


def test_cli_takes_zoo_names():
    r = CliRunner().invoke(cli, ["zoo", "--family", "nas", "--json"])
    assert r.exit_code == 0, r.output
    assert "darts_v2" in r.output
    r = CliRunner().invoke(cli, ["inspect", "zoo:resnet50", "--json"])
    assert r.exit_code == 0 and '"m_r": 2408448' in r.output
    r = CliRunner().invoke(cli, ["inspect", "zoo:resnet5"])
    assert r.exit_code == 2 and "did you mean resnet50" in r.output
    r = CliRunner().invoke(cli, ["inspect", "zoo:resnet50:train"])  # a misspelt training form
    assert r.exit_code == 2 and "did you mean resnet50:training" in r.output
    r = CliRunner().invoke(cli, ["inspect", "zoo:resnet50", "--input-shape", "x=1x3x8x8"])
    assert r.exit_code == 2 and "applies to ONNX files" in r.output
    assert load_graph("zoo:squeezenet-onnx").num_operators == 66
