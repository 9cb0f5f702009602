"""The zoo: the reference evaluation's networks by name, built in Python or read from the
ONNX files that ship with cosma.

>>> "resnet50" in names() and "darts_v2" in names()
True
>>> load("resnet50").num_operators
122
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources

from cosma.errors import UsageError
from cosma.graph import Graph
from cosma.graphs import attention, cnn, nas


@dataclass(frozen=True)
class Entry:
    """One zoo network: its name, its family, how to make it, and a line about it."""

    name: str
    family: str  # "human" or "nas" (the reference evaluation's two groups), "export", "other"
    make: Callable[..., Graph]
    about: str


def _onnx_entry(stem: str, about: str) -> Entry:
    def make(*, element_bytes: float = 1) -> Graph:
        from cosma.graphs.onnx_import import load_onnx

        path = resources.files("cosma.graphs") / "models" / f"{stem}.onnx"
        return load_onnx(str(path), element_bytes=element_bytes, name=f"{stem}-onnx")

    return Entry(f"{stem}-onnx", "export", make, about)


_NAS_LABELS = {
    "pnasnet5": "PNASNet-5",
    "amoebanet_d": "AmoebaNet",
    "nasnet_a": "NASNet-A",
    "darts_v2": "DARTS V2",
}

#: The eight NAS graphs of the reference evaluation's generator: ImageNet and CIFAR size.
HMCOS_NAS = (*_NAS_LABELS, *(f"{stem}_cifar" for stem in _NAS_LABELS))

_ENTRIES = [
    Entry("resnet50", "human", cnn.resnet50, "ResNet-50, torchvision v1.5"),
    Entry("densenet121", "human", cnn.densenet121, "DenseNet-121, torchvision"),
    Entry("resnext50_32x4d", "human", cnn.resnext50_32x4d, "ResNeXt-50 32x4d, torchvision"),
    Entry("r2plus1d_18", "human", cnn.r2plus1d_18, "R(2+1)D-18 video, 16x224x224"),
    Entry("s3d", "human", cnn.s3d, "S3D video, 16x224x224"),
    Entry("fcn_resnet50", "human", cnn.fcn_resnet50, "FCN-ResNet50 segmentation"),
    Entry(
        "lraspp_mobilenet_v3_large",
        "human",
        cnn.lraspp_mobilenet_v3_large,
        "LR-ASPP MobileNetV3-Large segmentation",
    ),
    Entry("deeplabv3_resnet50", "human", cnn.deeplabv3_resnet50, "DeepLabV3-ResNet50 segmentation"),
    Entry(
        "transformer",
        "human",
        attention.transformer,
        "base Transformer (nn.Transformer), 128 tokens",
    ),
    Entry("vit_b_16", "human", attention.vit_b_16, "ViT-B/16, torchvision"),
    Entry("pnasnet5", "nas", nas.pnasnet5, "PNASNet-5, HMCOS skeleton, ImageNet size"),
    Entry("amoebanet_d", "nas", nas.amoebanet_d, "AmoebaNet, HMCOS skeleton, ImageNet size"),
    Entry("nasnet_a", "nas", nas.nasnet_a, "NASNet-A, HMCOS skeleton, ImageNet size"),
    Entry("darts_v2", "nas", nas.darts_v2, "DARTS V2, HMCOS skeleton, ImageNet size"),
    *(
        Entry(
            f"{stem}_cifar",
            "other",
            partial(getattr(nas, stem), size="cifar"),
            f"{label}, HMCOS skeleton, CIFAR size",
        )
        for stem, label in _NAS_LABELS.items()
    ),
    *(
        Entry(
            f"{stem}_darts_skeleton",
            "other",
            getattr(nas, f"{stem}_darts_skeleton"),
            f"{label} cells in the DARTS ImageNet network (14 cells, C = 48)",
        )
        for stem, label in _NAS_LABELS.items()
    ),
    Entry("randwire_ws", "other", nas.randwire_ws, "RandWire-WS small regime, seed 0"),
    _onnx_entry("squeezenet", "SqueezeNet 1.1 (the onnx wheel's light model)"),
]

#: Exported files, present when graphs/models/export.py has made them.
_EXPORTS = {
    "resnet50": "timm resnet50, dynamo export",
    "resnext50_32x4d": "timm resnext50_32x4d, dynamo export",
    "densenet121": "timm densenet121, dynamo export",
    "vit_b_16": "timm vit_base_patch16_224, dynamo export",
    "mobilenetv2": "timm mobilenetv2_100, dynamo export",
    "mobilenetv3_large": "timm mobilenetv3_large_100, dynamo export",
    "efficientnet_b0": "timm efficientnet_b0, dynamo export",
    "inception_v3": "timm inception_v3 at 299x299, dynamo export",
    "bert_base": "BERT-base encoder (transformers), 128 tokens, dynamo export",
    "gpt2": "GPT-2 small (transformers), 128 tokens, dynamo export",
    **{
        stem: f"{label}, HMCOS skeleton, ImageNet size, written from the builder"
        for stem, label in _NAS_LABELS.items()
    },
    **{
        f"{stem}_cifar": f"{label}, HMCOS skeleton, CIFAR size, written from the builder"
        for stem, label in _NAS_LABELS.items()
    },
}


def _available_exports() -> list[Entry]:
    folder = resources.files("cosma.graphs") / "models"
    return [
        _onnx_entry(stem, about)
        for stem, about in _EXPORTS.items()
        if (folder / f"{stem}.onnx").is_file()
    ]


def entries() -> dict[str, Entry]:
    """Every zoo network by name."""
    return {e.name: e for e in [*_ENTRIES, *_available_exports()]}


def names(family: str | None = None) -> list[str]:
    """Zoo names, optionally of one family (``human``, ``nas``, ``export``, ``other``)."""
    return [n for n, e in entries().items() if family is None or e.family == family]


def load(name: str, **options: object) -> Graph:
    """Build or read the zoo network ``name``; options go to its builder (``resolution``,
    ``batch``, ``element_bytes``...). Zoo graphs default to 1 byte per element.
    ``NAME_training`` is the training graph of ``NAME`` (forward, loss, backward)."""
    table = entries()
    if name not in table and name.endswith("_training") and name[: -len("_training")] in table:
        from cosma.graphs.training import training_graph

        return training_graph(load(name[: -len("_training")], **options))
    if name not in table:
        close = [n for n in table if name.lower() in n or n in name.lower()]
        if ":" in name and name.split(":")[0] in table:
            close = [f"{name.split(':')[0]}:training"]  # zoo:NAME:train -> zoo:NAME:training
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"no zoo network named {name!r}{hint}; 'cosma zoo' lists them "
            "(zoo:NAME:training for a network's training graph)"
        )
    try:
        return table[name].make(**options)
    except TypeError as e:
        raise UsageError(f"zoo network {name!r} does not take these options: {e}") from None
