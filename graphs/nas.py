"""NAS networks: NASNet-A, AmoebaNet-D, PNASNet-5 and DARTS (V2) cells in the DARTS code
base's ImageNet network, and RandWire-WS.

The four cell-based networks share one skeleton — the ``NetworkImageNet`` of the DARTS
reference implementation (Liu et al. 2019): two stride-2 stems (input/8), 14 cells with
reductions at cells 4 and 9, ``C = 48``, a 7x7 average pool and a linear classifier. Each
is instantiated with its genotype expressed in the DARTS search space, as the DARTS
repository does for NASNet-A and AmoebaNet (a DARTS-space approximation of the original
cells) and as PNASNet.pytorch does for PNASNet-5. Layers and width are parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import networkx as nx

from cosma.graph import Graph
from cosma.graphs.builders import Net


class Genotype(NamedTuple):
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


NASNET = Genotype(
    normal=[
        ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1),
        ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_5x5", 0),
        ("skip_connect", 3),
        ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[4, 5, 6],
)

AMOEBANET = Genotype(
    normal=[
        ("avg_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 1),
    ],
    normal_concat=[4, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0),
        ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0),
        ("sep_conv_3x3", 5),
    ],
    reduce_concat=[3, 4, 6],
)

_PNAS_CELL = [
    ("sep_conv_5x5", 0),
    ("max_pool_3x3", 0),
    ("sep_conv_7x7", 1),
    ("max_pool_3x3", 1),
    ("sep_conv_5x5", 1),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 4),
    ("max_pool_3x3", 1),
    ("sep_conv_3x3", 0),
    ("skip_connect", 1),
]
PNASNET = Genotype(_PNAS_CELL, [2, 3, 4, 5, 6], _PNAS_CELL, [2, 3, 4, 5, 6])

DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def _relu_conv(n: Net, x: str, c: int) -> str:
    return n.conv(n.relu(x), c, 1, bias=True)


def _factorized_reduce(n: Net, x: str, c: int) -> str:
    """ReLU, two stride-2 1x1 convolutions (one on the input shifted by a pixel), concat."""
    r = n.relu(x)
    a = n.conv(r, c // 2, 1, stride=2)
    b_, ch, h, w = n.shape(r)
    shifted = n.slice(r, (b_, ch, h - 1, w - 1))
    b = n.conv(shifted, c // 2, 1, stride=2)
    if n.shape(a) != n.shape(b):  # odd sizes: pad the shifted branch back (as F.pad would)
        b = n.op("Pad", [b], n.shape(a))
    return n.concat([a, b])


def _sep_conv(n: Net, x: str, c: int, k: int, stride: int) -> str:
    p = k // 2
    y = n.conv(n.relu(x), c, k, stride=stride, padding=p, groups=c, bias=False)
    y = n.conv(y, c, 1)
    y = n.conv(n.relu(y), c, k, padding=p, groups=c, bias=False)
    return n.conv(y, c, 1)


def _dil_conv(n: Net, x: str, c: int, k: int, stride: int, dilation: int) -> str:
    p = dilation * (k // 2)
    y = n.conv(n.relu(x), c, k, stride=stride, padding=p, dilation=dilation, groups=c, bias=False)
    return n.conv(y, c, 1)


def _cell_op(n: Net, name: str, x: str, c: int, stride: int) -> str:
    if name == "skip_connect":
        return x if stride == 1 else _factorized_reduce(n, x, c)
    if name == "avg_pool_3x3":
        return n.avg_pool(x, 3, stride=stride, padding=1)
    if name == "max_pool_3x3":
        return n.max_pool(x, 3, stride=stride, padding=1)
    if name.startswith("sep_conv_"):
        return _sep_conv(n, x, c, int(name[-1]), stride)
    if name.startswith("dil_conv_"):
        return _dil_conv(n, x, c, int(name[-1]), stride, 2)
    if name == "conv_7x1_1x7":
        y = n.conv(n.relu(x), c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False)
        return n.conv(y, c, (7, 1), stride=(stride, 1), padding=(3, 0))
    raise ValueError(f"unknown cell operation {name!r}")


def _cell(
    n: Net, g: Genotype, s0: str, s1: str, c: int, reduction: bool, reduction_prev: bool
) -> str:
    s0 = _factorized_reduce(n, s0, c) if reduction_prev else _relu_conv(n, s0, c)
    s1 = _relu_conv(n, s1, c)
    ops, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
    states = [s0, s1]
    for i in range(len(ops) // 2):
        hs = []
        for name, idx in ops[2 * i : 2 * i + 2]:
            stride = 2 if reduction and idx < 2 else 1
            hs.append(_cell_op(n, name, states[idx], c, stride))
        states.append(n.add(*hs))
    return n.concat([states[i] for i in concat])


def darts_imagenet(
    genotype: Genotype,
    name: str,
    *,
    c: int = 48,
    layers: int = 14,
    resolution: int = 224,
    batch: int = 1,
    element_bytes: float = 1,
) -> Graph:
    """The DARTS ``NetworkImageNet`` with ``genotype`` (no auxiliary head)."""
    n = Net(name, element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    with n.scope("stem0"):
        s = n.relu(n.conv(x, c // 2, 3, stride=2, padding=1))
        s0 = n.conv(s, c, 3, stride=2, padding=1)
    with n.scope("stem1"):
        s1 = n.conv(n.relu(s0), c, 3, stride=2, padding=1)
    c_cur, reduction_prev = c, True
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c_cur *= 2
        with n.scope(f"cell{i}"):
            out = _cell(n, genotype, s0, s1, c_cur, reduction, reduction_prev)
        s0, s1, reduction_prev = s1, out, reduction
    with n.scope("head"):
        h = n.shape(s1)[2]
        y = n.avg_pool(s1, h)  # 7x7 at 224
        out = n.linear(n.flatten(y), 1000)
    return n.build([out])


def nasnet_a(**kw) -> Graph:
    """NASNet-A (Zoph et al. 2018), its cells in the DARTS space, DARTS ImageNet skeleton."""
    return darts_imagenet(NASNET, "nasnet_a", **kw)


def amoebanet_d(**kw) -> Graph:
    """AmoebaNet (Real et al. 2019) cells as the DARTS repository gives them, DARTS ImageNet
    skeleton (the reference evaluation's "AmoebaNet-D")."""
    return darts_imagenet(AMOEBANET, "amoebanet_d", **kw)


def pnasnet5(**kw) -> Graph:
    """PNASNet-5 (Liu et al. 2018) cell, as PNASNet.pytorch gives it in the DARTS space, in
    the DARTS ImageNet skeleton (same cell for normal and reduction)."""
    return darts_imagenet(PNASNET, "pnasnet5", **kw)


def darts_v2(**kw) -> Graph:
    """DARTS (Liu et al. 2019), the second-order (V2) genotype, ImageNet network, C = 48.

    >>> g = darts_v2()
    >>> g.tensors[g.outputs[0]].shape
    (1, 1000)
    """
    return darts_imagenet(DARTS_V2, "darts_v2", **kw)


# --- RandWire -----------------------------------------------------------------------------


def _random_stage(n: Net, x: str, c: int, nodes: int, k: int, p: float, seed: int) -> str:
    """One randomly wired stage: a Watts-Strogatz graph oriented from low to high node index;
    each node sums its inputs, then ReLU - separable 3x3 conv - BN; nodes with no
    predecessor read the stage input with stride 2; the stage output averages the sinks."""
    ws = nx.connected_watts_strogatz_graph(nodes, k, p, seed=seed)
    outs: dict[int, str] = {}
    for v in range(nodes):
        preds = sorted(u for u in ws.neighbors(v) if u < v)
        with n.scope(f"node{v}"):
            if preds:
                agg = outs[preds[0]] if len(preds) == 1 else n.add(*(outs[u] for u in preds))
                stride = 1
            else:
                agg, stride = x, 2
            y = n.relu(agg)
            y = n.conv(
                y, n.shape(y)[1], 3, stride=stride, padding=1, groups=n.shape(y)[1], bias=False
            )
            outs[v] = n.conv(y, c, 1)
    sinks = [outs[v] for v in range(nodes) if not any(u > v for u in ws.neighbors(v))]
    with n.scope("out"):
        return sinks[0] if len(sinks) == 1 else n.op("Mean", sinks, n.shape(sinks[0]))


def randwire_ws(
    *,
    seed: int = 0,
    nodes: int = 32,
    k: int = 4,
    p: float = 0.75,
    c: int = 78,
    resolution: int = 224,
    batch: int = 1,
    element_bytes: float = 1,
) -> Graph:
    """RandWire-WS (Xie et al. 2019), small regime: WS(k=4, p=0.75) graphs of 32 nodes in
    three stages of width C, 2C, 4C (C = 78), after a 3x3 stride-2 conv (C/2) and a 3x3
    stride-2 conv (C); then a 1x1 conv to 1280, global pooling and a classifier. The
    random graphs come from ``networkx.connected_watts_strogatz_graph`` seeded with
    ``seed``, ``seed + 1``, ``seed + 2``: the same seed gives the same network.
    """
    n = Net(f"randwire_ws_s{seed}", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    with n.scope("conv1"):
        x = n.conv(x, c // 2, 3, stride=2, padding=1)
    with n.scope("conv2"):
        x = n.conv(n.relu(x), c, 3, stride=2, padding=1)
    for i, width in enumerate((c, 2 * c, 4 * c)):
        with n.scope(f"stage{i + 3}"):
            x = _random_stage(n, x, width, nodes, k, p, seed + i)
    with n.scope("head"):
        x = n.relu(n.conv(n.relu(x), 1280, 1))
        out = n.linear(n.flatten(n.global_pool(x)), 1000)
    return n.build([out])
