"""NAS networks: NASNet-A, AmoebaNet-D, PNASNet-5 and DARTS (V2), and RandWire-WS.

The four cell-based networks come in two skeletons. The reference evaluation's is the HMCOS
generator's (:func:`nasnet_a`, :func:`amoebanet_d`, :func:`pnasnet5`, :func:`darts_v2`, at
ImageNet or CIFAR size; see the comment above :data:`HMCOS_NASNET`). The other
(``*_darts_skeleton``) is the ``NetworkImageNet`` of the DARTS reference implementation
(Liu et al. 2019): two stride-2 stems (input/8), 14 cells with reductions at cells 4 and 9,
``C = 48``, a 7x7 average pool and a linear classifier. There the stem's first ReLU sets
both M_R and M_P, so those graphs pose no memory problem at the protocol's settings. Each
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


def nasnet_a_darts_skeleton(**kw) -> Graph:
    """NASNet-A (Zoph et al. 2018), its cells in the DARTS space, DARTS ImageNet skeleton."""
    return darts_imagenet(NASNET, "nasnet_a_darts_skeleton", **kw)


def amoebanet_d_darts_skeleton(**kw) -> Graph:
    """AmoebaNet (Real et al. 2019) cells as the DARTS repository gives them, DARTS ImageNet
    skeleton."""
    return darts_imagenet(AMOEBANET, "amoebanet_d_darts_skeleton", **kw)


def pnasnet5_darts_skeleton(**kw) -> Graph:
    """PNASNet-5 (Liu et al. 2018) cell, as PNASNet.pytorch gives it in the DARTS space, in
    the DARTS ImageNet skeleton (same cell for normal and reduction)."""
    return darts_imagenet(PNASNET, "pnasnet5_darts_skeleton", **kw)


def darts_v2_darts_skeleton(**kw) -> Graph:
    """DARTS (Liu et al. 2019), the second-order (V2) genotype, the DARTS ImageNet network
    (14 cells, C = 48).

    >>> g = darts_v2_darts_skeleton()
    >>> g.tensors[g.outputs[0]].shape
    (1, 1000)
    """
    return darts_imagenet(DARTS_V2, "darts_v2_darts_skeleton", **kw)


# --- The HMCOS skeleton -------------------------------------------------------------------
#
# The reference evaluation's NAS graphs come from the HMCOS generator (wzh99/HMCOS,
# script/nas.py): Keras NASNet-style cells, channels first, exported through tf2onnx (opset
# 10) with BatchNorm folded into the convolution before it. What the builders below follow:
#
# - Stem: one 3x3 convolution with 32 filters ("same" padding), stride 2 on ImageNet
#   (224x224 input, 1000 classes), stride 1 on CIFAR (32x32 input, 100 classes); no ReLU.
# - Cells: ImageNet R R Nx4 R Nx4 R Nx4, CIFAR Nx6 R Nx6 R Nx6. The width starts at the
#   initial filter count and doubles at every reduction cell; convolutions take its integer
#   part (AmoebaNet's 12.5 gives 25, 50, ...).
# - A cell's inputs: "squeeze" the last cell's output (ReLU, 1x1 convolution); "fit" the one
#   before: nothing in the first cell (it uses the squeezed input twice), a squeeze when it
#   has the same resolution, else a factorized reduction (ReLU; a 1x1-pooled stride-2 copy
#   and a copy shifted by one pixel through zero padding and cropping, each to a 1x1
#   convolution of half the width; concatenation; a BatchNorm, which stays because no
#   convolution precedes it).
# - Each block adds two operations; in a reduction cell those reading the cell's inputs
#   have stride 2. Separable convolutions are depthwise + pointwise; sep_conv_k is twice
#   ReLU-separable; "dil_conv_3x3" is one ReLU-separable 3x3, undilated (the generator's
#   work-around for tf2onnx, which it notes does not change memory); conv_7x1_1x7 is a 1x7
#   then a 7x1 convolution with no ReLU; pools use "same" padding; identity is no operator.
# - The cell output concatenates the listed blocks; the head is ReLU, global average pool,
#   a squeeze of the spatial axes and a matrix product (the bias, zero at initialisation,
#   is gone from the exported file).
# - tf2onnx merges identical nodes: operators of one type with the same inputs (in order)
#   and attributes and no weights become one. Every ReLU of one tensor is therefore one
#   operator (the squeeze of a cell output and the next cell's fit share it, and so do the
#   separable convolutions reading one cell input), so is every repeated pooling of one
#   tensor, and so is a repeated sum (DARTS' reduction cell adds block 2 and max_pool(1)
#   twice). This changes lifetimes, so the builders do the same. tf2onnx inserts no
#   Transpose: the Keras graph is channels first throughout.

#: The HMCOS generator's genotypes, written in this module's names: pairs of (operation,
#: input) per block, 0 and 1 being the fitted and the squeezed cell inputs.
HMCOS_NASNET = Genotype(
    normal=[
        ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
        ("identity", 0),
        ("avg_pool_3x3", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("identity", 1),
    ],
    normal_concat=[0, 2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1),
        ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_5x5", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_5x5", 0),
        ("identity", 3),
        ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[3, 4, 5, 6],
)

HMCOS_AMOEBANET = Genotype(
    normal=[
        ("avg_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("identity", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 2),
        ("identity", 1),
        ("avg_pool_3x3", 4),
        ("sep_conv_3x3", 0),
    ],
    normal_concat=[3, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_3x3", 3),
        ("conv_7x1_1x7", 0),
    ],
    reduce_concat=[4, 5, 6],
)

#: The generator's PNASNet cell ends in a 1x1 average pool where the DARTS repository's has a
#: skip connection; the other nine entries are the same.
_HMCOS_PNAS_CELL = [*_PNAS_CELL[:-1], ("avg_pool_1x1", 1)]
HMCOS_PNASNET = Genotype(_HMCOS_PNAS_CELL, [2, 3, 4, 5, 6], _HMCOS_PNAS_CELL, [2, 3, 4, 5, 6])

#: The generator's DARTS genotype is DARTS V2, the same as the DARTS-skeleton one.
HMCOS_DARTS = DARTS_V2


class _Merged:
    """Layers as tf2onnx leaves them: weightless operators with the same type, inputs and
    attributes are made once."""

    def __init__(self, n: Net):
        self.n = n
        self._made: dict[tuple, str] = {}

    def once(self, key: tuple, make) -> str:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def relu(self, x: str) -> str:
        return self.once(("Relu", x), lambda: self.n.relu(x))

    def pool(self, kind: str, x: str, k: int, stride: int) -> str:
        return self.once(
            (kind, x, k, stride),
            lambda: self.n.pool(x, kind, k, stride=stride, padding="same"),
        )


def _separable(n: Net, x: str, c: int, k: int, stride: int) -> str:
    """Depthwise k x k (stride) then pointwise 1x1 to ``c`` (BatchNorm folded into it)."""
    y = n.conv(x, n.shape(x)[1], k, stride=stride, padding="same", groups=n.shape(x)[1], bias=False)
    return n.conv(y, c, 1)


def _hmcos_op(m: _Merged, name: str, x: str, c: int, stride: int) -> str:
    n = m.n
    if name in ("identity", "skip_connect"):  # the generator ignores the stride; never 2 here
        return x
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        y = _separable(n, m.relu(x), c, k, stride)
        return _separable(n, n.relu(y), c, k, 1)
    if name == "dil_conv_3x3":
        return _separable(n, m.relu(x), c, 3, 1)
    if name.startswith(("avg_pool_", "max_pool_")):
        kind = "AveragePool" if name.startswith("avg") else "MaxPool"
        return m.pool(kind, x, int(name[-1]), stride)
    if name == "conv_7x1_1x7":
        y = n.conv(x, c, (1, 7), stride=stride, padding="same", bias=True)
        return n.conv(y, c, (7, 1), padding="same")
    raise ValueError(f"unknown cell operation {name!r}")


def _squeeze(m: _Merged, x: str, c: int) -> str:
    with m.n.scope("squeeze"):
        return m.n.conv(m.relu(x), c, 1)


def _fit(m: _Merged, src: str | None, tgt: str, c: int) -> str:
    n = m.n
    if src is None:
        return tgt
    if n.shape(src)[2] == n.shape(tgt)[2]:
        return _squeeze(m, src, c)
    with n.scope("fit"):
        x = m.relu(src)
        a = n.conv(n.avg_pool(x, 1, stride=2), c // 2, 1, bias=False)
        b_, ch, h, w = n.shape(x)
        padded = n.op(
            "Pad", [x], (b_, ch, h + 1, w + 1), attributes={"pads": [0, 0, 0, 0, 0, 0, 1, 1]}
        )
        # Cropping: a Slice whose starts, ends and axes are constants over the four axes.
        shifted = n.op(
            "Slice",
            [padded],
            (b_, ch, h, w),
            weights=12,
            attributes={
                "starts": [0, 0, 1, 1],
                "ends": [b_, ch, h + 1, w + 1],
                "axes": [0, 1, 2, 3],
            },
            weight_shapes=[(4,), (4,), (4,)],
        )
        b = n.conv(n.avg_pool(shifted, 1, stride=2), c // 2, 1, bias=False)
        return n.batch_norm(n.concat([a, b]))


def _hmcos_cell(
    m: _Merged, g: Genotype, prev: str | None, cur: str, c: int, reduction: bool
) -> str:
    cur = _squeeze(m, cur, c)
    prev = _fit(m, prev, cur, c)
    ops, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
    blocks = [prev, cur]
    for i in range(len(ops) // 2):
        with m.n.scope(f"block{i}"):
            hs = [
                _hmcos_op(m, name, blocks[idx], c, 2 if reduction and idx < 2 else 1)
                for name, idx in ops[2 * i : 2 * i + 2]
            ]
            blocks.append(m.once(("Add", *hs), lambda hs=hs: m.n.add(*hs)))
    return m.n.concat([blocks[i] for i in concat])


#: The cell sequences of the two sizes: (R)eduction and (N)ormal.
_SIZES = {
    "imagenet": dict(
        resolution=224, stem_stride=2, classes=1000, cells="RR" + "NNNNR" * 2 + "NNNN"
    ),
    "cifar": dict(resolution=32, stem_stride=1, classes=100, cells="NNNNNNR" * 2 + "NNNNNN"),
}


def hmcos_net(
    genotype: Genotype,
    name: str,
    *,
    size: str = "imagenet",
    filters: float,
    batch: int = 1,
    element_bytes: float = 1,
) -> Net:
    """The HMCOS generator's network for ``genotype`` at ``size`` (``imagenet`` or
    ``cifar``), starting at ``filters``, as a :class:`Net` (its ``build`` gives the graph)."""
    if size not in _SIZES:
        raise ValueError(f"size must be 'imagenet' or 'cifar', not {size!r}")
    spec = _SIZES[size]
    n = Net(name, element_bytes=element_bytes)
    m = _Merged(n)
    r = spec["resolution"]
    x = n.input((batch, 3, r, r))
    with n.scope("stem"):
        cur = n.conv(x, 32, 3, stride=spec["stem_stride"], padding="same")
    prev = None
    width = float(filters)
    for i, kind in enumerate(spec["cells"]):
        if kind == "R":
            width *= 2
        with n.scope(f"cell{i}"):
            nxt = _hmcos_cell(m, genotype, prev, cur, int(width), kind == "R")
        prev, cur = cur, nxt
    with n.scope("head"):
        y = n.global_pool(m.relu(cur))
        b_, ch = n.shape(y)[:2]
        y = n.op("Squeeze", [y], (b_, ch), attributes={"axes": [2, 3]})
        n.op(
            "MatMul",
            [y],
            (b_, spec["classes"]),
            weights=ch * spec["classes"],
            weight_shapes=[(ch, spec["classes"])],
        )
    return n  # the last tensor made, the logits, is the output


#: name -> (genotype, initial filters at ImageNet size, at CIFAR size).
HMCOS_NETWORKS = {
    "nasnet_a": (HMCOS_NASNET, 11, 32),
    "amoebanet_d": (HMCOS_AMOEBANET, 12.5, 36),
    "pnasnet5": (HMCOS_PNASNET, 13, 48),
    "darts_v2": (HMCOS_DARTS, 12, 36),
}


def hmcos(name: str, *, size: str = "imagenet", **kw) -> Graph:
    """One of :data:`HMCOS_NETWORKS` in the HMCOS skeleton at ``size``.

    >>> g = hmcos("nasnet_a", size="cifar")
    >>> g.tensors[g.outputs[0]].shape
    (1, 100)
    """
    if name not in HMCOS_NETWORKS:
        raise ValueError(f"no HMCOS network {name!r}; choose from {', '.join(HMCOS_NETWORKS)}")
    genotype, imagenet, cifar = HMCOS_NETWORKS[name]
    filters = imagenet if size == "imagenet" else cifar
    suffix = "" if size == "imagenet" else f"_{size}"
    n = hmcos_net(genotype, f"{name}{suffix}", size=size, filters=filters, **kw)
    return n.build()


def nasnet_a(*, size: str = "imagenet", **kw) -> Graph:
    """NASNet-A (Zoph et al. 2018) as the HMCOS generator builds it: 11 initial filters at
    ImageNet size (normal cells 44, 88, 176 wide), 32 at CIFAR size."""
    return hmcos("nasnet_a", size=size, **kw)


def amoebanet_d(*, size: str = "imagenet", **kw) -> Graph:
    """AmoebaNet (Real et al. 2019) as the HMCOS generator builds it: 12.5 initial filters at
    ImageNet size (normal cells 50, 100, 200 wide), 36 at CIFAR size."""
    return hmcos("amoebanet_d", size=size, **kw)


def pnasnet5(*, size: str = "imagenet", **kw) -> Graph:
    """PNASNet-5 (Liu et al. 2018), the HMCOS generator's cell (the same for normal and
    reduction cells) in its skeleton.

    The generator defines this cell but makes no network of it, so the widths are chosen
    here: at CIFAR size the paper's F = 48; at ImageNet size 13 initial filters (normal
    cells 52, 104, 208 wide), the nearest to the paper's mobile F = 54 that the generator
    can build (13.5 would give the factorized reduction 2 x 13 = 26 channels against 27).
    """
    return hmcos("pnasnet5", size=size, **kw)


def darts_v2(*, size: str = "imagenet", **kw) -> Graph:
    """DARTS (Liu et al. 2019), the V2 genotype, as the HMCOS generator builds it: 12
    initial filters at ImageNet size (normal cells 48, 96, 192 wide), 36 at CIFAR size.

    >>> g = darts_v2()
    >>> g.num_operators, g.tensors[g.outputs[0]].shape
    (523, (1, 1000))
    """
    return hmcos("darts_v2", size=size, **kw)


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
