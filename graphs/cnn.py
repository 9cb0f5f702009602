"""Image and video CNNs of the reference evaluation, built as torchvision defines them.

Each follows torchvision's reference implementation (``torchvision.models``), in inference
form: BatchNorm after a convolution is folded into it, Dropout is gone, as in an ONNX export.
Input resolution, batch and element bytes are parameters; the defaults are the reference
protocol's (1x3x224x224 images, 1x3x16x224x224 video, 1 byte per element).
"""

from __future__ import annotations

from cosma.graph import Graph
from cosma.graphs.builders import Net

# --- ResNet family ------------------------------------------------------------------------


def _bottleneck(
    n: Net,
    x: str,
    planes: int,
    stride: int,
    dilation: int,
    prev_dilation: int,
    groups: int,
    base_width: int,
    downsample: bool,
) -> str:
    width = int(planes * (base_width / 64.0)) * groups
    out = n.relu(n.conv(x, width, 1, bias=True))
    out = n.relu(
        n.conv(
            out,
            width,
            3,
            stride=stride,
            padding=prev_dilation,
            dilation=prev_dilation,
            groups=groups,
        )
    )
    out = n.conv(out, planes * 4, 1)
    identity = n.conv(x, planes * 4, 1, stride=stride) if downsample else x
    return n.relu(n.add(out, identity))


def _resnet_trunk(
    n: Net,
    x: str,
    *,
    groups: int = 1,
    width_per_group: int = 64,
    dilate: tuple[bool, bool, bool] = (False, False, False),
) -> str:
    """Stem and the four bottleneck stages of ResNet-50 (layers 3, 4, 6, 3)."""
    with n.scope("stem"):
        x = n.max_pool(n.relu(n.conv(x, 64, 7, stride=2, padding=3)), 3, stride=2, padding=1)
    inplanes, dilation = 64, 1
    for stage, (planes, blocks, stride, dil) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2), (False, *dilate), strict=True),
        start=1,
    ):
        prev = dilation
        if dil:
            dilation *= stride
            stride = 1
        for b in range(blocks):
            with n.scope(f"layer{stage}.{b}"):
                first = b == 0
                x = _bottleneck(
                    n,
                    x,
                    planes,
                    stride if first else 1,
                    dilation,
                    prev if first else dilation,
                    groups,
                    width_per_group,
                    downsample=first and (stride != 1 or inplanes != planes * 4),
                )
            inplanes = planes * 4
    return x


def _classifier(n: Net, x: str, classes: int = 1000) -> str:
    with n.scope("head"):
        return n.linear(n.flatten(n.global_pool(x)), classes)


def resnet50(*, resolution: int = 224, batch: int = 1, element_bytes: float = 1) -> Graph:
    """ResNet-50 (He et al. 2016), torchvision's v1.5 form (stride in the 3x3 convolution).

    >>> g = resnet50()
    >>> sum(op.op_type == "Conv" for op in g.operators.values())
    53
    """
    n = Net("resnet50", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    return n.build([_classifier(n, _resnet_trunk(n, x))])


def resnext50_32x4d(*, resolution: int = 224, batch: int = 1, element_bytes: float = 1) -> Graph:
    """ResNeXt-50 32x4d (Xie et al. 2017), torchvision's ``resnext50_32x4d``: 32 groups of
    width 4 in the bottleneck's 3x3 convolution."""
    n = Net("resnext50_32x4d", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    return n.build([_classifier(n, _resnet_trunk(n, x, groups=32, width_per_group=4))])


def fcn_resnet50(
    *, resolution: int = 224, batch: int = 1, element_bytes: float = 1, classes: int = 21
) -> Graph:
    """FCN-ResNet50 (Long et al. 2015), torchvision's ``fcn_resnet50``: a ResNet-50 backbone
    with dilation in its last two stages (output stride 8), the FCN head (3x3 conv to 512,
    1x1 conv to 21 classes) and bilinear upsampling to the input size; no auxiliary head."""
    n = Net("fcn_resnet50", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    f = _resnet_trunk(n, x, dilate=(False, True, True))
    with n.scope("head"):
        y = n.conv(n.relu(n.conv(f, 512, 3, padding=1, bias=True)), classes, 1)
        out = n.resize(y, (resolution, resolution))
    return n.build([out])


def deeplabv3_resnet50(
    *, resolution: int = 224, batch: int = 1, element_bytes: float = 1, classes: int = 21
) -> Graph:
    """DeepLabV3-ResNet50 (Chen et al. 2017), torchvision's ``deeplabv3_resnet50``: dilated
    ResNet-50 (output stride 8), ASPP with rates 12/24/36 and image pooling, a 3x3 conv and
    a 1x1 classifier, bilinear upsampling to the input size; no auxiliary head."""
    n = Net("deeplabv3_resnet50", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    f = _resnet_trunk(n, x, dilate=(False, True, True))
    h, w = n.shape(f)[2:]
    with n.scope("aspp"):
        branches = [n.relu(n.conv(f, 256, 1))]
        for rate in (12, 24, 36):
            branches.append(n.relu(n.conv(f, 256, 3, padding=rate, dilation=rate)))
        pooled = n.relu(n.conv(n.global_pool(f), 256, 1))
        branches.append(n.resize(pooled, (h, w)))
        y = n.relu(n.conv(n.concat(branches), 256, 1))
    with n.scope("head"):
        y = n.conv(n.relu(n.conv(y, 256, 3, padding=1)), classes, 1)
        out = n.resize(y, (resolution, resolution))
    return n.build([out])


# --- DenseNet -----------------------------------------------------------------------------


def densenet121(*, resolution: int = 224, batch: int = 1, element_bytes: float = 1) -> Graph:
    """DenseNet-121 (Huang et al. 2017), torchvision's ``densenet121``: growth 32, blocks of
    6/12/24/16 layers, pre-activation (BN-ReLU-Conv) layers, so each BN is its own operator
    except the stem's; every layer concatenates all earlier features of its block.

    >>> g = densenet121()
    >>> sum(op.op_type == "Conv" for op in g.operators.values())
    120
    """
    n = Net("densenet121", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    with n.scope("stem"):
        x = n.max_pool(n.relu(n.conv(x, 64, 7, stride=2, padding=3)), 3, stride=2, padding=1)
    growth, bn_size = 32, 4
    for bi, layers in enumerate((6, 12, 24, 16), start=1):
        features = [x]
        for li in range(layers):
            with n.scope(f"block{bi}.layer{li + 1}"):
                cat = n.concat(features) if len(features) > 1 else features[0]
                y = n.relu(n.batch_norm(cat))
                y = n.relu(n.conv(y, bn_size * growth, 1, bias=True))  # norm2 folds into conv1
                y = n.conv(y, growth, 3, padding=1, bias=False)
            features.append(y)
        with n.scope(f"block{bi}.out"):
            x = n.concat(features)
        if bi < 4:
            with n.scope(f"transition{bi}"):
                y = n.relu(n.batch_norm(x))
                x = n.avg_pool(n.conv(y, n.shape(x)[1] // 2, 1, bias=False), 2, stride=2)
    with n.scope("head"):
        x = n.relu(n.batch_norm(x))
        out = n.linear(n.flatten(n.global_pool(x)), 1000)
    return n.build([out])


# --- MobileNetV3 and LR-ASPP --------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


#: MobileNetV3-Large blocks: (kernel, expanded, out, squeeze-excite, activation, stride).
MOBILENET_V3_LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]


def _act(n: Net, x: str, kind: str) -> str:
    return n.relu(x) if kind == "RE" else n.unary("HardSwish", x)


def lraspp_mobilenet_v3_large(
    *, resolution: int = 224, batch: int = 1, element_bytes: float = 1, classes: int = 21
) -> Graph:
    """LR-ASPP with a MobileNetV3-Large backbone (Howard et al. 2019), torchvision's
    ``lraspp_mobilenet_v3_large``: the backbone's last three blocks dilated (output stride
    16), low-level features after block 4 (stride 8, 40 channels), the LR-ASPP head with a
    sigmoid attention branch, bilinear upsampling to the input size."""
    n = Net("lraspp_mobilenet_v3_large", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    with n.scope("stem"):
        x = n.unary("HardSwish", n.conv(x, 16, 3, stride=2, padding=1))
    low = None
    for i, (k, exp, out, se, act, stride) in enumerate(MOBILENET_V3_LARGE, start=1):
        dilation = 2 if i >= 13 else 1
        if dilation > 1:
            stride = 1
        cin = n.shape(x)[1]
        with n.scope(f"block{i}"):
            y = x
            if exp != cin:
                y = _act(n, n.conv(y, exp, 1), act)
            pad = (k - 1) // 2 * dilation
            y = _act(
                n, n.conv(y, exp, k, stride=stride, padding=pad, dilation=dilation, groups=exp), act
            )
            if se:
                sq = _make_divisible(exp // 4, 8)
                s = n.relu(n.conv(n.global_pool(y), sq, 1))
                s = n.unary("HardSigmoid", n.conv(s, exp, 1))
                y = n.mul(y, s)
            y = n.conv(y, out, 1)
            if stride == 1 and cin == out:
                y = n.add(y, x)
        x = y
        if i == 4:
            low = x
    with n.scope("last"):
        high = n.unary("HardSwish", n.conv(x, 960, 1))
    assert low is not None
    with n.scope("head"):
        cbr = n.relu(n.conv(high, 128, 1))
        scale = n.unary("Sigmoid", n.conv(n.global_pool(high), 128, 1, bias=False))
        y = n.resize(n.mul(cbr, scale), n.shape(low)[2:])
        y = n.add(n.conv(low, classes, 1), n.conv(y, classes, 1))
        out = n.resize(y, (resolution, resolution))
    return n.build([out])


# --- video --------------------------------------------------------------------------------


def r2plus1d_18(
    *, frames: int = 16, resolution: int = 224, batch: int = 1, element_bytes: float = 1
) -> Graph:
    """R(2+1)D-18 (Tran et al. 2018), torchvision's ``r2plus1d_18``: every 3x3x3 convolution
    factored into a 1x3x3 spatial and a 3x1x1 temporal one with the mid-plane count that
    keeps the parameter count; BasicBlocks [2, 2, 2, 2]; 400 Kinetics classes."""
    n = Net("r2plus1d_18", element_bytes=element_bytes)
    x = n.input((batch, 3, frames, resolution, resolution))
    with n.scope("stem"):
        x = n.relu(n.conv(x, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)))
        x = n.relu(n.conv(x, 64, (3, 1, 1), padding=(1, 0, 0)))

    def conv2plus1d(y: str, out: int, mid: int, stride: int) -> str:
        y = n.relu(n.conv(y, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1)))
        return n.conv(y, out, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0))

    inplanes = 64
    for stage, (planes, stride) in enumerate(
        zip((64, 128, 256, 512), (1, 2, 2, 2), strict=True), start=1
    ):
        for b in range(2):
            s = stride if b == 0 else 1
            with n.scope(f"layer{stage}.{b}"):
                # torchvision computes one mid-plane count per block, from its input width.
                mid = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
                out = n.relu(conv2plus1d(x, planes, mid, s))
                out = conv2plus1d(out, planes, mid, 1)
                identity = n.conv(x, planes, 1, stride=s) if (s != 1 or inplanes != planes) else x
                x = n.relu(n.add(out, identity))
            inplanes = planes
    return n.build([_classifier(n, x, 400)])


def s3d(
    *, frames: int = 16, resolution: int = 224, batch: int = 1, element_bytes: float = 1
) -> Graph:
    """S3D (Xie et al. 2018), torchvision's ``s3d``: separable 3D convolutions (1xkxk then
    kx1x1) in an Inception-v1 layout; 400 Kinetics classes, averaged over the remaining
    time and space as torchvision's classifier does."""
    n = Net("s3d", element_bytes=element_bytes)
    x = n.input((batch, 3, frames, resolution, resolution))

    def basic(y: str, out: int, k, stride=1, padding=0) -> str:
        return n.relu(n.conv(y, out, k, stride=stride, padding=padding))

    def sep(y: str, out: int, k: int, stride: int = 1, padding: int = 0) -> str:
        y = basic(y, out, (1, k, k), (1, stride, stride), (0, padding, padding))
        return basic(y, out, (k, 1, 1), (stride, 1, 1), (padding, 0, 0))

    def inception(y: str, b0: int, b1m: int, b1: int, b2m: int, b2: int, b3: int) -> str:
        x0 = basic(y, b0, 1)
        x1 = sep(basic(y, b1m, 1), b1, 3, 1, 1)
        x2 = sep(basic(y, b2m, 1), b2, 3, 1, 1)
        x3 = basic(n.max_pool(y, (3, 3, 3), stride=1, padding=1), b3, 1)
        return n.concat([x0, x1, x2, x3])

    with n.scope("stem"):
        x = sep(x, 64, 7, 2, 3)
        x = n.max_pool(x, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        x = basic(x, 64, 1)
        x = sep(x, 192, 3, 1, 1)
        x = n.max_pool(x, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
    blocks = [
        ("3b", (64, 96, 128, 16, 32, 32)),
        ("3c", (128, 128, 192, 32, 96, 64)),
        ("pool", ((3, 3, 3), (2, 2, 2), (1, 1, 1))),
        ("4b", (192, 96, 208, 16, 48, 64)),
        ("4c", (160, 112, 224, 24, 64, 64)),
        ("4d", (128, 128, 256, 24, 64, 64)),
        ("4e", (112, 144, 288, 32, 64, 64)),
        ("4f", (256, 160, 320, 32, 128, 128)),
        ("pool", ((2, 2, 2), (2, 2, 2), (0, 0, 0))),
        ("5b", (256, 160, 320, 32, 128, 128)),
        ("5c", (384, 192, 384, 48, 128, 128)),
    ]
    for name, args in blocks:
        if name == "pool":
            k, st, p = args
            x = n.max_pool(x, k, stride=st, padding=p)
        else:
            with n.scope(f"mixed_{name}"):
                x = inception(x, *args)
    with n.scope("head"):
        t, h, w = n.shape(x)[2:]
        x = n.avg_pool(x, (min(2, t), min(7, h), min(7, w)), stride=1)
        x = n.conv(x, 400, 1)
        s = n.shape(x)
        out = n.op("ReduceMean", [x], (s[0], s[1]))
    return n.build([out])
