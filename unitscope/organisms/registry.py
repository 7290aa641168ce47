"""Registers the shipped model organisms in :mod:`unitscope.models` and the probe-world segmenter
in :mod:`unitscope.segment`. Those registries call :func:`register_models` and
:func:`register_segmenters` on first need (``unitscope.plugins``); they never import this module.

    from unitscope.models import create_model, get_info
    net = create_model("world_scenes")      # offline, weights checked against their sha256
    get_info(net).class_names               # the probe world's scene names
    get_info(net).default_layers            # ["features.relu2", "features.relu4", "features.relu5"]
    from unitscope.segment import create_segmenter
    seg = create_segmenter("world_segmenter")
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch import nn

WEIGHTS = Path(__file__).parent / "weights"


def weights_metadata(name: str) -> dict:
    """The metadata JSON shipped beside ``name``'s weights (recipe, world seeds, metrics, sha256)."""
    path = WEIGHTS / f"{name}.json"
    if not path.exists():
        raise ValueError(
            f"{name} has no shipped weights ({path} is missing); train them with "
            f"`unitscope organisms train {name} --out DIR` and load with checkpoint=DIR/{name}.safetensors"
        )
    return json.loads(path.read_text())


def load_organism(name: str, pretrained: bool = True) -> nn.Module:
    """Build organism ``name``; with ``pretrained`` load its shipped weights after checking the sha256."""
    from safetensors.torch import load_file

    from unitscope.models import ModelInfo, attach_info
    from unitscope.organisms.checkpoint import sha256_file
    from unitscope.organisms.recipes import RECIPES, build_net
    from unitscope.organisms.tasks import MEAN, STD

    recipe = RECIPES[name]
    model = build_net(recipe)
    source = "random initialisation"
    if pretrained:
        meta = weights_metadata(name)
        path = WEIGHTS / meta["file"]
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise ValueError(
                f"{path}: sha256 {digest} does not match {meta['sha256']} in {name}.json; "
                "the file is damaged: restore it from the package or retrain"
            )
        model.load_state_dict(load_file(str(path)))
        source = f"unitscope.organisms ({path.name}, sha256 {digest[:12]})"
    info = ModelInfo(
        name=name,
        mean=MEAN,
        std=STD,
        input_size=(3, recipe.size, recipe.size),
        class_names=list(recipe.class_names),
        default_layers=list(recipe.default_layers),
        source=source,
    )
    if recipe.net == "generator":  # z [N, Z] in, image [N, 3, 64, 64] in [0, 1] out
        info = dataclasses.replace(
            info,
            kind="generator",
            input_size=(model.latent, 1, 1),
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            output_size=(3, recipe.size, recipe.size),
        )
    return attach_info(model, info)


def register_models() -> None:
    """Every recipe's organism as a model (``create_model("world_scenes")``)."""
    from unitscope.models import register_model
    from unitscope.organisms.recipes import RECIPES

    for name in RECIPES:
        register_model(name, lambda pretrained=True, _n=name: load_organism(_n, pretrained))


def world_segmenter(device: str = "cpu"):
    """The shipped ``world_segmenter`` as a :class:`~unitscope.segment.Segmenter` (object, part,
    material and colour maps in the world's label numbers)."""
    from unitscope.models import create_model, get_info
    from unitscope.organisms.tasks import SEG_HEADS, global_numbers
    from unitscope.segment import ModelSegmenter
    from unitscope.world.vocab import VOCAB

    model = create_model("world_segmenter")
    info = get_info(model)
    return ModelSegmenter(
        model,
        {c: global_numbers(c) for c in SEG_HEADS},
        {c: VOCAB[c] for c in SEG_HEADS},
        info.mean,
        info.std,
        info.input_size[-1],
        device,
    )


def register_segmenters() -> None:
    from unitscope.segment import register_segmenter

    register_segmenter("world_segmenter", world_segmenter)
