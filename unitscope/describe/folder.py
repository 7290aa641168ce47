"""Describe the units of a model on any image folder, with no dissection run made beforehand.

    unitscope describe --model efficientnet_lite0 --images photos/ --layers bn2 --out runs/photos \\
        --captioner default                      # exemplars computed here, then captioned (no labels)

    from unitscope.describe.folder import FolderData, exemplar_run
    run = exemplar_run(model, "photos/", ["bn2"], "runs/photos")   # a run folder describe_run / caption_run read

An image folder is every image under it (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``, sorted
by path). When every image sits in a first-level sub-folder and there are at least two of them
(torchvision's ImageFolder layout, as ``unitscope world imagefolder`` writes), the sub-folders
are classes: each image carries its class as an image-level label of category ``object`` (the
whole image), so ``describe`` also describes units from labels (formulas of classes, chosen by
PMI, scored on held-out images). Otherwise the folder is unlabelled: only a captioner describes it.

The exemplars come from the dissection engine itself (:func:`unitscope.dissect.dissect`, with the
activation cache kept): its first pass computes each unit's quantiles (the 0.99 one is the mask
threshold of the exemplars) and caches the maps, from which :mod:`.exemplars` reads every unit's
top 15 images. Its IoU pass runs against the class labels (or none), so the run folder is a
dissection run like any other: the report and ``unitscope serve --run`` read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unitscope.data.images import load_image
from unitscope.describe.defaults import WORKING_SIDE
from unitscope.errors import UsageError

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLASS_CATEGORY = "object"


def list_images(root: Path) -> list[Path]:
    """Every image file under ``root``, sorted by path."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


class FolderData(torch.utils.data.Dataset):
    """The images of a folder with the reader interface of :class:`~unitscope.data.BrodenDataset`
    that the dissection and ``describe`` use: no label planes, at most one image-level label (the
    image's class sub-folder). ``mask_size``: the resolution units' masks are compared at;
    ``size`` ``(H, W)``: without a ``transform``, images come resized to it (the model's input
    size, so that a set of exemplars stacks), else as they are."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Any], torch.Tensor] | None = None,
        mask_size: Sequence[int] = (WORKING_SIDE, WORKING_SIDE),
        size: Sequence[int] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UsageError(f"--images {self.root}: no such folder")
        self.files = list_images(self.root)
        if not self.files:
            raise UsageError(f"--images {self.root}: no images ({', '.join(SUFFIXES)}) under it")
        rel = [p.relative_to(self.root) for p in self.files]
        classes = sorted({r.parts[0] for r in rel if len(r.parts) == 2})
        self.labelled = len(classes) >= 2 and all(len(r.parts) == 2 for r in rel)
        self.classes = classes if self.labelled else []
        self.label_names = ["-"] + self.classes
        self.categories = [CLASS_CATEGORY]  # an unlabelled folder: a category without labels
        self.label_category = np.array([-1] + [0] * len(self.classes), dtype=np.int64)
        self.class_of = [self.classes.index(r.parts[0]) + 1 if self.labelled else 0 for r in rel]
        self.transform = transform
        self.size = tuple(int(x) for x in size) if size else None
        self.mask_size = tuple(int(s) for s in mask_size)
        self.num_planes = 0
        self.plane_category = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.get(i)

    def image_path(self, i: int) -> Path:
        return self.files[i]

    def load_image(self, i: int):
        return load_image(self.files[i], where=f"image {i} of {self.root}")

    def get(self, i: int, image: bool = True, labels: bool = True) -> dict[str, Any]:
        """``index``, ``scene`` (-1), ``category_present [G]``; ``image [3, H, W]`` (the transform's,
        else [0, 1]); ``labels [0, S, S']`` (no planes) and ``image_labels [1]`` (the class, 0: none)."""
        out: dict[str, Any] = {
            "index": i,
            "scene": -1,
            "category_present": torch.tensor([self.labelled], dtype=torch.bool),
        }
        if image:
            img = self.load_image(i)
            if self.transform is not None:
                out["image"] = self.transform(img)
            else:
                if self.size is not None and img.size != (self.size[1], self.size[0]):
                    img = img.resize((self.size[1], self.size[0]), Image.BILINEAR)
                out["image"] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
        if labels:
            out["labels"] = torch.zeros((0, *self.mask_size), dtype=torch.long)
            out["image_labels"] = torch.tensor([self.class_of[i]], dtype=torch.long)
        return out

    def __repr__(self) -> str:
        kind = f"{len(self.classes)} classes" if self.labelled else "unlabelled"
        return f"FolderData({str(self.root)!r}, {len(self)} images, {kind})"


def open_data(config: dict[str, Any], transform: Callable[[Any], torch.Tensor] | None = None):
    """The data set a run was made on: its image folder (``config["images"]``, a run of
    :func:`exemplar_run`) or its Broden folder (``config["data"]``)."""
    if config.get("images"):
        return FolderData(
            config["images"],
            transform=transform,
            size=config.get("input_size"),
            mask_size=config.get("mask_size") or (WORKING_SIDE, WORKING_SIDE),
        )
    from unitscope.data import BrodenDataset

    if not config.get("data"):
        raise UsageError("the run names no data folder (config.json has neither 'data' nor 'images')")
    return BrodenDataset(
        config["data"], categories=config.get("categories") or None, transform=transform, validate="none"
    )


def mask_size(input_size: Sequence[int]) -> tuple[int, int]:
    """The model's input ``(H, W)`` divided by the smallest integer that brings it to at most
    ``WORKING_SIDE`` a side (224 -> 56)."""
    h, w = int(input_size[-2]), int(input_size[-1])
    f = -(-max(h, w) // WORKING_SIDE)
    return (max(1, h // f), max(1, w // f))


def exemplar_run(
    model: torch.nn.Module,
    images: str | Path,
    layers: Sequence[str],
    out: str | Path,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
    **options: Any,
) -> Path:
    """Dissect ``layers`` of ``model`` on the image folder ``images`` into the run folder ``out``
    (activation cache kept, no report), so that :func:`~.run.describe_run` (a labelled folder) and
    :func:`~.captioner.caption_run` read its exemplars. A rerun resumes or reuses it."""
    from unitscope.dissect import dissect
    from unitscope.models import get_info

    info = get_info(model)
    size = mask_size(info.input_size)
    data = FolderData(images, transform=info.transform(), mask_size=size)
    out = Path(out)
    root = str(Path(images).resolve())
    config = {
        "model": info.name,
        "images": root,
        "data": None,
        "layers": list(layers),
        "categories": [],
        "mask_size": list(size),
        "input_size": list(info.input_size[1:]),
        "keep_cache": True,
        "classes": data.classes,
    }
    if progress:
        print(f"{data!r}: exemplars of {', '.join(layers)} by the dissection engine into {out}", flush=True)
    dissect(
        model,
        data,
        list(layers),
        out,
        key={"model": info.name, "images": root},
        config=config,
        keep_cache=True,
        batch_size=batch_size,
        device=device,
        progress=progress,
        **options,
    )
    return out
