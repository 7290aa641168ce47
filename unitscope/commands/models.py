"""``unitscope models``, ``unitscope layers MODEL``, ``unitscope classify MODEL IMAGE...``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_


@dataclass
class ModelsConfig:
    pattern: str = field(default="*", metadata=help_("shell-style filter on model names", positional=True))


@dataclass
class LayersConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)", positional=True))
    spatial: bool = field(
        default=False,
        metadata=help_(
            "only layers whose output is a map over the image: [C, H, W], or transformer tokens [T, D] on a patch grid"
        ),
    )


@dataclass
class ClassifyConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)", positional=True))
    images: list[str] = field(default_factory=list, metadata=help_("image files", positional=True, nargs="+"))
    topk: int = field(default=5, metadata=help_("how many classes to show per image"))


def run_models(args: argparse.Namespace) -> int:
    from unitscope.models import list_models

    cfg = config_from_args(ModelsConfig, args)
    for name in list_models(cfg.pattern):
        print(name)
    print("also: timm:<arch>, torchvision:<arch>, path/to/checkpoint.pt, path/to/file.py:factory")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from unitscope.layers import list_layers, privileged_layers

    cfg = config_from_args(LayersConfig, args)
    model = cfg.create_model()
    marks = privileged_layers(model)
    print(f"{'layer':40s} {'type':24s} {'output':16s} {'units':>6} {'stride':>6}  basis")
    for layer in list_layers(model):
        if cfg.spatial and layer.kind is None:
            continue
        print(f"{layer}  {'privileged' if marks.get(layer.name) else '-'}")
    print(
        "basis: privileged = the output follows an elementwise nonlinearity (ReLU, GELU, ...), so its "
        "units are meaningful axes; dissect those layers"
    )
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from unitscope.classify import classify, load_image

    cfg = config_from_args(ClassifyConfig, args)
    images = [load_image(p) for p in cfg.images]  # fail on a bad file before loading the model
    model = cfg.create_model()
    for path, top in zip(cfg.images, classify(model, images, k=cfg.topk)):
        print(path)
        for name, p in top:
            print(f"  {p:6.3f}  {name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    for name, cls, fn, text in [
        ("models", ModelsConfig, run_models, "list registered models"),
        ("layers", LayersConfig, run_layers, "list a model's layers with output shapes and unit counts"),
        ("classify", ClassifyConfig, run_classify, "top-k classes of images"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        add_config_args(p, cls)
        p.set_defaults(func=fn)
