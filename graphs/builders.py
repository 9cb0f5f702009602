"""A small network-building language with shapes computed in plain Python (no torch).

:class:`Net` wraps :class:`~cosma.graph.GraphBuilder`: each layer call adds one operator,
computes its output shape, and declares its weights as one parameter tensor of the right
size. Conventions follow an ONNX export in inference mode: BatchNorm that directly follows a
convolution is folded into it (its weights become the convolution's bias), so ``conv``
includes it; a BatchNorm that does not follow a convolution is its own operator.

>>> n = Net("tiny")
>>> x = n.input((1, 3, 32, 32))
>>> y = n.relu(n.conv(x, 8, 3, stride=2, padding=1))
>>> n.shape(y), n.build().num_operators
((1, 8, 16, 16), 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cosma.graph import Graph, GraphBuilder

Shape = tuple[int, ...]


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, Sequence) else (v,) * n


def conv_out(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis.

    >>> conv_out(224, 7, 2, 3), conv_out(56, 3, 1, 1), conv_out(28, 3, 1, 2, 2)
    (112, 56, 28)
    """
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _pads(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: int | Sequence[int] | str,
) -> tuple[list[int], list[int]]:
    """Padding before and after each spatial axis; ``"same"`` as TensorFlow computes it.

    >>> _pads((224, 224), (3, 3), (2, 2), (1, 1), "same")
    ([0, 0], [1, 1])
    """
    nd = len(spatial)
    if padding == "same":
        begin, end = [], []
        for i in range(nd):
            out = -(-spatial[i] // stride[i])
            total = max((out - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 - spatial[i], 0)
            begin.append(total // 2)
            end.append(total - total // 2)
        return begin, end
    if isinstance(padding, str):
        raise ValueError(f"padding must be a number, a tuple or 'same', not {padding!r}")
    p = list(_tuple(padding, nd))
    return p, list(p)


class Net:
    """Build a network layer by layer; tensors are named after the operator making them."""

    def __init__(self, name: str, *, element_bytes: float = 1):
        self.name = name
        self.eb = element_bytes
        self._b = GraphBuilder(name)
        self._shapes: dict[str, Shape] = {}
        self._count: dict[str, int] = {}
        self._scope: list[str] = []
        self.parameter_elements = 0
        #: Per operator: its ONNX attributes and the shapes of the weights it reads, for
        #: writing the network as an ONNX file (graphs/models/export_nas.py).
        self.attributes: dict[str, dict[str, object]] = {}
        self.weight_shapes: dict[str, list[Shape]] = {}

    # --- plumbing ------------------------------------------------------------------------

    def bytes(self, shape: Shape) -> int:
        return math.ceil(math.prod(shape) * self.eb)

    def shape(self, t: str) -> Shape:
        return self._shapes[t]

    def scope(self, name: str) -> _Scope:
        """``with net.scope("layer1"):`` prefixes operator names."""
        return _Scope(self, name)

    def _name(self, kind: str) -> str:
        prefix = "/".join(self._scope)
        base = f"{prefix}/{kind}" if prefix else kind
        k = self._count.get(base, 0)
        self._count[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def input(self, shape: Shape, name: str = "input") -> str:
        self._b.input(name, self.bytes(shape), shape)
        self._shapes[name] = tuple(shape)
        return name

    def parameter(self, name: str, elements: int) -> str:
        """Declare a parameter several operators share (e.g. a mask); returns its name."""
        self._b.parameter(name, math.ceil(elements * self.eb), (elements,))
        self.parameter_elements += elements
        return name

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        shape: Shape,
        *,
        weights: int = 0,
        name: str | None = None,
        attributes: dict[str, object] | None = None,
        weight_shapes: Sequence[Shape] = (),
    ) -> str:
        """Add an operator reading ``inputs`` and making one tensor of ``shape``.

        ``weights`` is the number of parameter elements it reads (0 for none), declared as
        one parameter; ``weight_shapes`` optionally says how an ONNX file splits them.
        """
        name = name or self._name(op_type.lower())
        reads = list(inputs)
        if weights:
            reads.append(self.parameter(f"{name}.weight", weights))
        self.attributes[name] = dict(attributes or {})
        self.weight_shapes[name] = [tuple(w) for w in weight_shapes]
        shape = tuple(int(d) for d in shape)
        self._b.op(name, reads, {name: self.bytes(shape)}, op_type=op_type, shapes={name: shape})
        self._shapes[name] = shape
        return name

    def build(self, outputs: Sequence[str] | None = None) -> Graph:
        """Mark ``outputs`` (default: the last tensor made) and build the graph."""
        if outputs is None:
            outputs = [list(self._shapes)[-1]]
        self._b.output(*outputs)
        return self._b.build()

    # --- layers --------------------------------------------------------------------------

    def conv(
        self,
        x: str,
        out_channels: int,
        kernel: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> str:
        """Convolution over the trailing spatial axes (1-D to 3-D), BatchNorm folded in.

        ``padding="same"`` pads as TensorFlow does (output = ceil(input / stride), the odd
        pixel at the end).
        """
        s = self.shape(x)
        nd = len(s) - 2
        k, st, d = (_tuple(v, nd) for v in (kernel, stride, dilation))
        begin, end = _pads(s[2:], k, st, d, padding)
        spatial = [conv_out(s[2 + i] + begin[i] + end[i], k[i], st[i], 0, d[i]) for i in range(nd)]
        cin = s[1]
        weights = out_channels * (cin // groups) * math.prod(k) + (out_channels if bias else 0)
        shapes = [(out_channels, cin // groups, *k)] + ([(out_channels,)] if bias else [])
        attributes = {
            "kernel_shape": list(k),
            "strides": list(st),
            "pads": [*begin, *end],
            "dilations": list(d),
            "group": groups,
        }
        return self.op(
            "Conv",
            [x],
            (s[0], out_channels, *spatial),
            weights=weights,
            attributes=attributes,
            weight_shapes=shapes,
        )

    def pool(
        self,
        x: str,
        kind: str,
        kernel: int | Sequence[int],
        *,
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] | str = 0,
        ceil_mode: bool = False,
    ) -> str:
        """``MaxPool`` or ``AveragePool`` over the spatial axes (``padding="same"`` as in
        :meth:`conv`; an average then leaves the padding out)."""
        s = self.shape(x)
        nd = len(s) - 2
        k = _tuple(kernel, nd)
        st = _tuple(stride if stride is not None else kernel, nd)
        begin, end = _pads(s[2:], k, st, (1,) * nd, padding)
        spatial = []
        for i in range(nd):
            total = s[2 + i] + begin[i] + end[i] - k[i]
            o = (-(-total // st[i]) if ceil_mode else total // st[i]) + 1
            spatial.append(o)
        attributes: dict[str, object] = {
            "kernel_shape": list(k),
            "strides": list(st),
            "pads": [*begin, *end],
        }
        if ceil_mode:
            attributes["ceil_mode"] = 1
        return self.op(kind, [x], (s[0], s[1], *spatial), attributes=attributes)

    def max_pool(self, x: str, kernel, **kw) -> str:
        return self.pool(x, "MaxPool", kernel, **kw)

    def avg_pool(self, x: str, kernel, **kw) -> str:
        return self.pool(x, "AveragePool", kernel, **kw)

    def global_pool(self, x: str) -> str:
        s = self.shape(x)
        return self.op("GlobalAveragePool", [x], (s[0], s[1]) + (1,) * (len(s) - 2))

    def unary(self, op_type: str, x: str) -> str:
        return self.op(op_type, [x], self.shape(x))

    def relu(self, x: str) -> str:
        return self.unary("Relu", x)

    def batch_norm(self, x: str) -> str:
        """A BatchNorm not folded into a convolution (scale, bias, mean, variance)."""
        c = self.shape(x)[1]
        return self.op(
            "BatchNormalization",
            [x],
            self.shape(x),
            weights=4 * c,
            attributes={"epsilon": 1e-3},
            weight_shapes=[(c,)] * 4,
        )

    def add(self, *xs: str) -> str:
        """Elementwise sum (broadcasting to the largest operand)."""
        shape = max((self.shape(x) for x in xs), key=math.prod)
        return self.op("Add" if len(xs) == 2 else "Sum", list(xs), shape)

    def mul(self, a: str, b: str) -> str:
        shape = max((self.shape(a), self.shape(b)), key=math.prod)
        return self.op("Mul", [a, b], shape)

    def concat(self, xs: Sequence[str], axis: int = 1) -> str:
        shapes = [self.shape(x) for x in xs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return self.op("Concat", list(xs), tuple(out))

    def resize(self, x: str, spatial: Sequence[int]) -> str:
        s = self.shape(x)
        return self.op("Resize", [x], (s[0], s[1], *spatial))

    def flatten(self, x: str) -> str:
        s = self.shape(x)
        return self.op("Flatten", [x], (s[0], math.prod(s[1:])))

    def linear(self, x: str, out_features: int, *, bias: bool = True) -> str:
        """Fully connected layer over the last axis (Gemm on 2-D input, MatMul otherwise)."""
        s = self.shape(x)
        weights = s[-1] * out_features + (out_features if bias else 0)
        gemm = len(s) == 2
        return self.op(
            "Gemm" if gemm else "MatMul",
            [x],
            (*s[:-1], out_features),
            weights=weights,
            weight_shapes=[(s[-1], out_features)] + ([(out_features,)] if bias and gemm else []),
        )

    def matmul(self, a: str, b: str, shape: Shape) -> str:
        """Product of two activations (attention scores and context), result ``shape``."""
        return self.op("MatMul", [a, b], shape)

    def slice(self, x: str, shape: Shape) -> str:
        return self.op("Slice", [x], shape)

    def layer_norm(self, x: str) -> str:
        return self.op("LayerNormalization", [x], self.shape(x), weights=2 * self.shape(x)[-1])

    def softmax(self, x: str) -> str:
        return self.unary("Softmax", x)


class _Scope:
    def __init__(self, net: Net, name: str):
        self.net, self.name = net, name

    def __enter__(self) -> Net:
        self.net._scope.append(self.name)
        return self.net

    def __exit__(self, *exc: object) -> None:
        self.net._scope.pop()
