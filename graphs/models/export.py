"""Regenerate the exported ONNX files of the zoo (a developer tool, never run by cosma or CI).

Set-up, on a machine that reaches PyPI (torch 2.13.0 is a local CPU build here; any other
torch pulls gigabytes of CUDA wheels, and torchvision has no CPU build at all)::

    pip install torch==2.13.0 onnxscript transformers
    pip install --no-deps timm
    python graphs/models/export.py            # all models
    python graphs/models/export.py resnet50   # some

Each model is built with random weights (no download), exported with the current exporter
(``dynamo=True``: static shapes), and its weights are stripped: every initializer larger than
a few elements becomes a ``ConstantOfShape`` of its shape, as in the ONNX wheel's own "light"
models. cosma folds those into parameters of the right size, and the file stays valid and
runnable (with zero weights). timm imports torchvision for a few names it never uses to build
these models, so an import stub stands in for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _AnyMeta(type):
    """Attributes of a stub class are distinct strings (enum members such as
    ``InterpolationMode.BILINEAR`` must differ)."""

    def __getattr__(cls, name):
        return f"{cls.__name__}.{name}"


def _stub_class(name: str) -> type:
    if name.startswith("__"):  # __file__, __spec__...: let introspection see none
        raise AttributeError(name)
    return _AnyMeta(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve any ``torchvision`` module as an empty stub."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__getattr__ = _stub_class  # type: ignore[method-assign]
        return mod

    def exec_module(self, module):
        pass


def _timm(name: str, size: int = 224):
    import timm
    import torch

    model = timm.create_model(name, pretrained=False)
    return model.eval(), (torch.zeros(1, 3, size, size),)


def _hf(kind: str, seq: int = 128):
    import torch
    import transformers

    if kind == "bert":
        inner = transformers.BertModel(transformers.BertConfig())
    else:  # no key/value cache: an inference pass over a fixed prompt
        inner = transformers.GPT2Model(transformers.GPT2Config(use_cache=False))

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(input_ids=ids).last_hidden_state

    ids = torch.zeros(1, seq, dtype=torch.long)
    return LastHidden().eval(), (ids,)


#: file stem -> (how to build it, what it is)
MODELS = {
    "resnet50": (lambda: _timm("resnet50"), "timm resnet50 (torchvision architecture)"),
    "resnext50_32x4d": (lambda: _timm("resnext50_32x4d"), "timm resnext50_32x4d"),
    "densenet121": (lambda: _timm("densenet121"), "timm densenet121"),
    "vit_b_16": (lambda: _timm("vit_base_patch16_224"), "timm vit_base_patch16_224"),
    "mobilenetv2": (lambda: _timm("mobilenetv2_100"), "timm mobilenetv2_100"),
    "mobilenetv3_large": (lambda: _timm("mobilenetv3_large_100"), "timm mobilenetv3_large_100"),
    "efficientnet_b0": (lambda: _timm("efficientnet_b0"), "timm efficientnet_b0"),
    "inception_v3": (lambda: _timm("inception_v3", 299), "timm inception_v3, 299x299"),
    "bert_base": (lambda: _hf("bert"), "transformers BertModel, default config, 128 tokens"),
    "gpt2": (lambda: _hf("gpt2"), "transformers GPT2Model, default config, 128 tokens"),
}


def strip_weights(model, keep_elements: int = 16):
    """Replace every initializer with more than ``keep_elements`` elements by a
    ``ConstantOfShape`` of its shape (zeros of its type)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    kept, nodes = [], []
    for init in g.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        if n <= keep_elements:
            kept.append(init)
            continue
        shape_name = f"{init.name}__shape"
        kept.append(numpy_helper.from_array(np.array(list(init.dims), dtype=np.int64), shape_name))
        value = helper.make_tensor(
            "value",
            init.data_type,
            [1],
            [0]
            if init.data_type
            in (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL)
            else [0.0],
        )
        nodes.append(
            helper.make_node(
                "ConstantOfShape",
                [shape_name],
                [init.name],
                name=f"{init.name}__const",
                value=value,
            )
        )
    del g.initializer[:]
    g.initializer.extend(kept)
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    return model


def export(stem: str) -> Path:
    import onnx
    import torch

    build, _ = MODELS[stem]
    model, args = build()
    out = HERE / f"{stem}.onnx"
    with torch.no_grad():
        program = torch.onnx.export(model, args, dynamo=True, optimize=True)
    proto = strip_weights(program.model_proto)
    proto.doc_string = f"cosma zoo export of {MODELS[stem][1]}; weights stripped"
    onnx.checker.check_model(proto)
    onnx.save(proto, out)
    return out


def main(argv: list[str]) -> int:
    sys.meta_path.insert(0, _StubFinder())
    names = argv or list(MODELS)
    for stem in names:
        if stem not in MODELS:
            print(f"unknown model {stem!r}; choose from {', '.join(MODELS)}", file=sys.stderr)
            return 2
        path = export(stem)
        print(f"{stem}: {path.stat().st_size / 1024:.0f} KiB -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
