"""``unitscope world``: make the probe world, and look at it.

unitscope world make worlds/w224 --n 10000 --size 224 --seed 0
unitscope world make worlds/p224 --n 5000 --style photo      # real photographs (Debian packages)
unitscope world make worlds/m224 --style mixed --sources my_photos   # plus a folder of your own
unitscope world make worlds/cue64 --n 2000 --size 64 --cue 0.5,1.0   # signs naming the scene (docs/audit.md)
unitscope world make worlds/nocab64 --n 2000 --size 64 --hide cabinet  # cabinets blurred out (docs/audit.md)
unitscope world show worlds/w224 --n 16 --png sheet.png     # also works on a real Broden folder
unitscope world label photos/ --segmenter world_segmenter --out photos-broden   # label unlabelled images
unitscope world imagefolder worlds/p224 --out worlds/p224-objects --imagenet   # class = dominant object
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Optional

from unitscope.config import add_config_args, config_from_args, help_


@dataclass
class WorldMakeConfig:
    out: str = field(metadata=help_("folder to write the Broden-format world into", positional=True))
    n: int = field(default=10_000, metadata=help_("number of images"))
    size: int = field(default=224, metadata=help_("image side in pixels"))
    seed: int = field(default=0, metadata=help_("world seed; the same seed gives byte-identical files"))
    mask_size: Optional[int] = field(default=None, metadata=help_("mask side in pixels (default: size/2, as Broden)"))
    workers: Optional[int] = field(default=None, metadata=help_("worker processes (default: all cores)"))
    progress: bool = field(default=True, metadata=help_("show a progress bar"))
    style: str = field(
        default="cartoon",
        metadata=help_(
            "cartoon (procedural), photo (texture photographs and photo cut-outs; needs the Debian packages "
            "tuxpaint-stamps-default and nexuiz-textures or --sources) or mixed (cartoon scenes with photographs)"
        ),
    )
    sources: Optional[str] = field(
        default=None,
        metadata=help_(
            "a folder of your own photographs for photo/mixed: objects/<class>/*.png (RGBA cut-outs; or "
            "objects/<parent>/<class>/) and materials/<material>/*.jpg (tiles)"
        ),
    )
    system_sources: bool = field(
        default=True, metadata=help_("also use the curated photographs of the Debian packages when installed")
    )
    cue: Optional[str] = field(
        default=None,
        metadata=help_(
            "stamp a sign whose glyph names a scene into a share of the images: SHARE[,AGREE] (e.g. 0.5,0.9: "
            "half the images, naming their own scene in nine of ten of those; cartoon style; see docs/audit.md)"
        ),
    )
    hide: Optional[str] = field(
        default=None,
        metadata=help_(
            "hide one concept from every image: CONCEPT[,blur|fill] (an object, part or material, e.g. cabinet; "
            "its masks stay; cartoon style; see docs/audit.md)"
        ),
    )


@dataclass
class WorldShowConfig:
    path: str = field(metadata=help_("a Broden-format folder (ours or the real Broden)", positional=True))
    png: str = field(default="world_sheet.png", metadata=help_("where to write the contact sheet"))
    n: int = field(default=16, metadata=help_("number of images, spread evenly over the folder"))
    panel: int = field(default=128, metadata=help_("panel side in pixels"))
    per_row: int = field(default=2, metadata=help_("images per row"))
    split: Optional[str] = field(default=None, metadata=help_("only this split (train/val)"))


def _make(args: argparse.Namespace) -> int:
    from unitscope.world.make import make_world

    cfg = config_from_args(WorldMakeConfig, args)
    t = time.perf_counter()
    path = make_world(
        cfg.out,
        n=cfg.n,
        size=cfg.size,
        seed=cfg.seed,
        workers=cfg.workers,
        mask_size=cfg.mask_size,
        progress=cfg.progress,
        style=cfg.style,
        sources=cfg.sources,
        system_sources=cfg.system_sources,
        cue=_cue(cfg.cue),
        hide=_hide(cfg.hide),
    )
    dt = time.perf_counter() - t
    print(f"{path}: {cfg.n} images of {cfg.size}x{cfg.size} ready ({dt:.1f} s)")
    return 0


def _cue(text: str | None):
    if text is None:
        return None
    from unitscope.errors import UsageError
    from unitscope.world.cue import CueSpec

    try:
        return CueSpec.parse(text)
    except ValueError as err:
        raise UsageError(f"--cue: {err}") from None


def _hide(text: str | None):
    if text is None:
        return None
    from unitscope.errors import UsageError
    from unitscope.world.hide import HideSpec

    try:
        return HideSpec.parse(text)
    except ValueError as err:
        raise UsageError(f"--hide: {err}") from None


def _show(args: argparse.Namespace) -> int:
    from unitscope.data.broden import BrodenDataset
    from unitscope.world.sheet import contact_sheet

    cfg = config_from_args(WorldShowConfig, args)
    if cfg.n < 1:
        raise ValueError(f"--n must be at least 1, got {cfg.n}")
    ds = BrodenDataset(cfg.path, split=cfg.split)
    contact_sheet(ds, n=cfg.n, panel=cfg.panel, per_row=cfg.per_row).save(cfg.png)
    print(f"{cfg.png}: {min(cfg.n, len(ds))} images of {cfg.path}")
    return 0


@dataclass
class WorldLabelConfig:
    images: str = field(metadata=help_("a folder of unlabelled images", positional=True))
    out: str = field(metadata=help_("Broden-format folder to write"))
    segmenter: str = field(
        default="world_segmenter",
        metadata=help_("segmenter name, or path/to/file.py:factory returning a unitscope.segment.Segmenter"),
    )
    size: Optional[int] = field(default=None, metadata=help_("image side to resize to (default: the first image's)"))
    batch_size: int = field(default=32, metadata=help_("images per batch"))
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    progress: bool = field(default=True, metadata=help_("show a progress bar"))


def _label(args: argparse.Namespace) -> int:
    from unitscope.segment import create_segmenter, label_folder

    cfg = config_from_args(WorldLabelConfig, args)
    seg = create_segmenter(cfg.segmenter, device=cfg.device)
    out = label_folder(cfg.images, seg, cfg.out, size=cfg.size, batch_size=cfg.batch_size, progress=cfg.progress)
    print(f"{out}: Broden-format labels ({', '.join(seg.categories)}) from {cfg.segmenter}")
    return 0


@dataclass
class WorldFolderConfig:
    world: str = field(
        metadata=help_("a Broden-format world with an object category (e.g. --style photo)", positional=True)
    )
    out: str = field(metadata=help_("image folder to write: one sub-folder per class (replaced if present)"))
    classes: list[str] = field(default_factory=list, metadata=help_("object classes to keep (default: all)"))
    imagenet: bool = field(
        default=False,
        metadata=help_("keep only the photo classes with ImageNet counterparts (photo_sources/imagenet_classes.txt)"),
    )
    min_area: float = field(default=0.1, metadata=help_("least fraction of the image the dominant object covers"))


def _folder(args: argparse.Namespace) -> int:
    from unitscope.data.labelled import dominant_object_folder, imagenet_class_table

    cfg = config_from_args(WorldFolderConfig, args)
    classes = list(cfg.classes) or None
    if cfg.imagenet:
        table = imagenet_class_table()
        outside = [c for c in classes or [] if c not in table]
        if outside:
            raise ValueError(
                f"--classes {outside[:5]} have no ImageNet counterpart in the table "
                f"(it has {', '.join(sorted(table))}); drop them or --imagenet"
            )
        classes = classes or list(table)
    made = dominant_object_folder(cfg.world, cfg.out, classes=classes, min_area=cfg.min_area)
    total = sum(made.counts.values())
    print(
        f"{made.path}: {total} images in {len(made.counts)} classes ({made.skipped} left out: no dominant "
        f"object among the classes covering {cfg.min_area:.0%})"
    )
    print("  " + ", ".join(f"{c} {n}" for c, n in made.counts.items()))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "world",
        help="make the probe world (Broden format) and look at it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="world_command", metavar="SUBCOMMAND")
    sub.required = True
    make = sub.add_parser("make", help="write N procedural scenes with dense labels in the Broden format")
    add_config_args(make, WorldMakeConfig)
    make.set_defaults(func=_make)
    show = sub.add_parser("show", help="a contact sheet of images with their label overlays")
    add_config_args(show, WorldShowConfig)
    show.set_defaults(func=_show)
    label = sub.add_parser("label", help="label a folder of images with a segmenter, as a Broden-format folder")
    add_config_args(label, WorldLabelConfig)
    label.set_defaults(func=_label)
    folder = sub.add_parser(
        "imagefolder",
        help="an image folder labelled by each image's dominant object (one sub-folder per class, for ablate)",
    )
    add_config_args(folder, WorldFolderConfig)
    folder.set_defaults(func=_folder)
