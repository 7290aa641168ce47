"""``unitscope organisms``: the probe-world model organisms.

unitscope organisms list                                  # names, what they learn, shipped metrics
unitscope organisms train world_scenes --out runs/organisms --device cpu   # rerun to resume
unitscope organisms sample world_generator --n 64 --out samples   # PNGs; then `unitscope world label samples ...`
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Optional

from unitscope.config import add_config_args, config_from_args, help_


@dataclass
class OrganismsTrainConfig:
    name: str = field(metadata=help_("organism to train (see `unitscope organisms list`)", positional=True))
    out: str = field(default="runs/organisms", metadata=help_("folder for NAME.safetensors, NAME.json and checkpoints"))
    cache: Optional[str] = field(
        default=None,
        metadata=help_("where rendered training worlds are kept (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)"),
    )
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    seed: int = field(default=0, metadata=help_("seed of initialisation, batch order and augmentation"))
    epochs: Optional[int] = field(
        default=None, metadata=help_("passes over the training images (default: the recipe's)")
    )
    n_train: Optional[int] = field(
        default=None, metadata=help_("training images (default: the recipe's, e.g. 40,000 for world_scenes)")
    )
    n_held_out: Optional[int] = field(default=None, metadata=help_("held-out images for the metrics (default: 2,000)"))
    checkpoint_every: int = field(
        default=50, metadata=help_("steps between checkpoints (a rerun resumes from the last)")
    )
    fresh: bool = field(default=False, metadata=help_("ignore an earlier checkpoint and start over"))
    progress: bool = field(default=True, metadata=help_("show a progress bar"))


def _train(args: argparse.Namespace) -> int:
    from unitscope.commands.dissect import cache_dir
    from unitscope.organisms.recipes import RECIPES
    from unitscope.organisms.train import train

    cfg = config_from_args(OrganismsTrainConfig, args)
    if cfg.name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(cfg.name, list(RECIPES), n=3, cutoff=0.4)
        raise ValueError(
            f"no organism named {cfg.name!r}"
            + (f"; close matches: {', '.join(close)}" if close else "")
            + f". Known: {', '.join(RECIPES)}"
        )
    meta = train(
        cfg.name,
        out=cfg.out,
        cache=cache_dir(cfg.cache) / "organisms",
        device=cfg.device,
        seed=cfg.seed,
        epochs=cfg.epochs,
        n_train=cfg.n_train,
        n_held_out=cfg.n_held_out,
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        fresh=cfg.fresh,
    )
    print(f"{cfg.out}/{meta['file']}: sha256 {meta['sha256']}")
    print("held-out metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in meta["metrics"].items()))
    return 0


@dataclass
class OrganismsSampleConfig:
    name: str = field(default="world_generator", metadata=help_("a generator organism", positional=True))
    out: str = field(default="samples", metadata=help_("folder for the PNGs (000000.png, ...)"))
    n: int = field(default=64, metadata=help_("number of samples"))
    seed: int = field(default=0, metadata=help_("seed of the latent vectors z (the same seed gives the same images)"))
    checkpoint: Optional[str] = field(
        default=None, metadata=help_("a trained NAME.safetensors instead of the shipped weights")
    )
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))


def _sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unitscope.models import create_model, get_info
    from unitscope.organisms.gan import save_samples

    cfg = config_from_args(OrganismsSampleConfig, args)
    if cfg.n < 1:
        raise ValueError(f"--n must be at least 1, got {cfg.n}")
    model = create_model(cfg.name, checkpoint=cfg.checkpoint, pretrained=False if cfg.checkpoint else None)
    if get_info(model).kind != "generator":
        raise ValueError(f"{cfg.name} is not a generator (its input is an image); try world_generator")
    files = save_samples(model.to(cfg.device), Path(cfg.out), cfg.n, seed=cfg.seed, device=cfg.device)
    print(
        f"{cfg.out}: {len(files)} samples of {cfg.name} (z seed {cfg.seed}); label them with "
        f"`unitscope world label {cfg.out} --segmenter world_segmenter --out {cfg.out}-broden`"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    import json

    from unitscope.organisms.recipes import RECIPES
    from unitscope.organisms.registry import WEIGHTS

    for name, recipe in RECIPES.items():
        meta_path = WEIGHTS / f"{name}.json"
        shipped = "not shipped"
        if meta_path.exists():
            metrics = json.loads(meta_path.read_text())["metrics"]
            shipped = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        print(f"{name:24s} {recipe.about}\n{'':24s} {shipped}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "organisms",
        help="probe-world model organisms: list them, train them, sample the generator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="organisms_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("train", help="train one organism (seeded, checkpointed, resumable)")
    add_config_args(p, OrganismsTrainConfig)
    p.set_defaults(func=_train)
    p = sub.add_parser("sample", help="write PNG samples of a generator organism (z drawn from --seed)")
    add_config_args(p, OrganismsSampleConfig)
    p.set_defaults(func=_sample)
    p = sub.add_parser("list", help="the organisms, what they learn and their shipped metrics")
    p.set_defaults(func=_list)
