"""Write the zoo's HMCOS-skeleton NAS networks as ONNX files (a developer tool; needs only
the ``onnx`` package, which cosma already depends on).

    python graphs/models/export_nas.py              # all eight
    python graphs/models/export_nas.py nasnet_a     # some

Each file is made from cosma's own builder (:func:`cosma.graphs.nas.hmcos_net`), node by
node in the builder's order, with ``onnx.helper`` at opset 10 (the generator's tf2onnx
opset). Weights are zeros made by ``ConstantOfShape`` of their shape, as in the other
exports, so the files stay small and valid; the Slice bounds are real constants, because
shape inference needs their values. cosma reads a file back as the same graph as the
builder (tests/test_nas_zoo.py checks it).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def to_onnx(net, outputs: list[str]):
    """The ONNX model of a built :class:`~cosma.graphs.builders.Net`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    b = net._b  # the builder's operator list, in insertion order
    inputs = set(b._inputs)
    params = set(b._params)
    nodes, inits = [], []

    def weights(op_name: str, shapes) -> list[str]:
        names = []
        for i, shape in enumerate(shapes):
            name = f"{op_name}.w{i}"
            inits.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), f"{name}__shape"))
            value = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
            nodes.append(
                helper.make_node(
                    "ConstantOfShape",
                    [f"{name}__shape"],
                    [name],
                    name=f"{name}__const",
                    value=value,
                )
            )
            names.append(name)
        return names

    for op in b._ops:
        attrs = dict(net.attributes.get(op.name, {}))
        data = [t for t in op.inputs if t not in params]
        if op.op_type == "Slice":
            consts = []
            for key in ("starts", "ends", "axes"):
                name = f"{op.name}.{key}"
                inits.append(numpy_helper.from_array(np.array(attrs.pop(key), np.int64), name))
                consts.append(name)
            ins = data + consts
        else:
            ins = data + weights(op.name, net.weight_shapes.get(op.name, []))
        if op.op_type == "Concat":
            attrs["axis"] = 1
        if op.op_type == "Pad":
            attrs["mode"] = "constant"
        nodes.append(helper.make_node(op.op_type, ins, list(op.outputs), name=op.name, **attrs))

    def info(t: str):
        return helper.make_tensor_value_info(t, TensorProto.FLOAT, list(net.shape(t)))

    graph = helper.make_graph(
        nodes,
        net.name,
        [info(t) for t in b._inputs if t in inputs],
        [info(t) for t in outputs],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 10)],
        producer_name="cosma graphs/models/export_nas.py",
    )
    model.ir_version = 5  # the newest IR a runtime for opset 10 expects
    onnx.checker.check_model(model, full_check=True)
    return model


def export(name: str) -> Path:
    import onnx

    from cosma.graphs import nas

    size = "cifar" if name.endswith("_cifar") else "imagenet"
    stem = name.removesuffix("_cifar")
    genotype, imagenet, cifar = nas.HMCOS_NETWORKS[stem]
    net = nas.hmcos_net(
        genotype, name, size=size, filters=imagenet if size == "imagenet" else cifar
    )
    last = list(net._shapes)[-1]
    model = to_onnx(net, [last])
    model.doc_string = (
        f"cosma zoo: {name}, the HMCOS generator's skeleton, written from cosma's builder; "
        "weights are zeros"
    )
    out = HERE / f"{name}.onnx"
    onnx.save(model, out)
    return out


def main(argv: list[str]) -> int:
    from cosma.graphs import nas

    every = [*nas.HMCOS_NETWORKS, *(f"{n}_cifar" for n in nas.HMCOS_NETWORKS)]
    for name in argv or every:
        if name not in every:
            print(f"unknown network {name!r}; choose from {', '.join(every)}", file=sys.stderr)
            return 2
        path = export(name)
        print(f"{name}: {path.stat().st_size / 1024:.0f} KiB -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
