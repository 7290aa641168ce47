"""Labelled image folders from a probe world, and the photo world's ImageNet class table.

    table = imagenet_class_table()        # {"cattle": [345, 346, 347], "sheep": [348, 349, 350], ...}
    made = dominant_object_folder("worlds/p224", "worlds/p224-objects", classes=list(table), min_area=0.1)
    # worlds/p224-objects/<class>/<image>.jpg: an image folder (torchvision ImageFolder style) whose
    # label is each image's dominant object; made.counts == {"cattle": 41, ...}

An image's dominant object is the object class with the largest area in its ``object`` plane
(the first mask of the object category: parents such as ``mammal`` are in the second; ``sky``, the
photo world's background, does not compete). Images whose dominant object covers less than
``min_area`` of the image, or is not among ``classes``, are left out (an image dominated by a
sheep is no dog image because a smaller dog stands beside it). Files are hard links to the
world's JPEGs when the file system allows it, else copies.

The table (``photo_sources/imagenet_classes.txt``) maps photo classes to the ImageNet-1k classes
that show them, so an ImageNet classifier can be scored on the photo world: its top-1 is right
when it falls in the image's class set (``unitscope ablate ... --class-map imagenet``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unitscope.world.sources import ALLOW_LISTS

IMAGENET_TABLE = ALLOW_LISTS / "imagenet_classes.txt"
BACKGROUND = ("sky",)  # object labels that never count as an image's dominant object
BACKGROUND = ("sky",)  # object labels that are not a default class


def _indices(text: str, where: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        try:
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ValueError(f"{where}: {part!r} is not an index or a range a-b") from None
        if not 0 <= lo <= hi:
            raise ValueError(f"{where}: bad range {part!r}")
        out.extend(range(lo, hi + 1))
    return out


def read_class_table(path: str | Path) -> dict[str, list[int]]:
    """``{data class: [model output indices]}`` from a text table: one line per class, the class
    name, then comma-separated indices or ranges ``a-b``; ``#`` starts a comment. An output may
    stand for one class only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such class table (lines of `class  3,7-9`)")
    table: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path} line {n}"
        if len(words) != 2:
            raise ValueError(f"{where}: expected `class indices`, got {line.strip()!r}")
        name, idx = words[0], _indices(words[1], where)
        if name in table:
            raise ValueError(f"{where}: class {name!r} listed twice")
        for i in idx:
            if i in owner:
                raise ValueError(
                    f"{where}: output {i} already stands for {owner[i]!r}; an output may stand for one class only"
                )
            owner[i] = name
        table[name] = idx
    return table


def imagenet_class_table() -> dict[str, list[int]]:
    """The curated photo class -> ImageNet-1k indices table (see the module docstring)."""
    return read_class_table(IMAGENET_TABLE)


@dataclass
class MadeFolder:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)  # images per class
    skipped: int = 0  # images with no dominant object among the classes, or too small


def dominant_objects(
    world: str | Path, classes: list[str] | None = None, min_area: float = 0.1
) -> list[tuple[int, str | None]]:
    """For each image of ``world`` (a Broden folder with an object category): ``(index, class)``;
    class None when its largest object (of all but the background) covers < ``min_area`` of the
    image or is not among ``classes`` (default: all)."""
    from unitscope.data.broden import BrodenDataset

    ds = BrodenDataset(world, categories=["object"], validate="none")
    names = ds.label_names
    everything = [names[n] for n in ds.category_labels("object") if names[n] not in BACKGROUND]
    unknown = sorted(set(classes or []) - set(names))
    if unknown:
        raise ValueError(f"{world}: no object label(s) {unknown[:5]}; its objects: {everything[:20]}")
    wanted = set(everything) if classes is None else set(classes)
    objects = np.zeros(len(names), bool)  # every cut-out class competes for "dominant"
    objects[[names.index(c) for c in everything]] = True
    out = []
    for i in range(len(ds)):
        plane = ds.get(i, image=False)["labels"][0].numpy()  # the object plane, not the parents'
        area = np.bincount(plane.ravel(), minlength=len(names)) * objects
        best = int(area.argmax())
        ok = names[best] in wanted and area[best] >= min_area * plane.size and area[best] > 0
        out.append((ds.get(i, image=False, labels=False)["index"], names[best] if ok else None))
    return out


def dominant_object_folder(
    world: str | Path, out: str | Path, classes: list[str] | None = None, min_area: float = 0.1
) -> MadeFolder:
    """Write ``out/<class>/<image>.jpg`` for every image of ``world`` with a dominant object among
    ``classes`` (see the module docstring); an existing ``out`` is replaced."""
    from unitscope.data.broden import BrodenDataset

    if not 0 <= min_area < 1:
        raise ValueError(f"min_area is a fraction of the image in [0, 1), got {min_area}")
    ds = BrodenDataset(world, categories=["object"], validate="none")
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    made = MadeFolder(out)
    for pos, (_, cls) in enumerate(dominant_objects(world, classes, min_area)):
        if cls is None:
            made.skipped += 1
            continue
        src = ds.image_path(pos)
        dst = tmp / cls / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        made.counts[cls] = made.counts.get(cls, 0) + 1
    if not made.counts:
        raise ValueError(
            f"{world}: no image has a dominant object among the classes covering {min_area:.0%} "
            "of it; lower --min-area or pick other classes"
        )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    made.counts = dict(sorted(made.counts.items()))
    return made
