"""Labelled images for ablation: a Broden-format folder (its scene per image) or an image folder
with one sub-folder per class, and a deterministic train/val split.

    data = labelled_data("worlds/w64", transform=info.transform())
    data.class_names                    # ["street", "forest", ...]
    train, val = data.split()           # index lists; rank units on train, test on val
    image, label = data[train[0]]       # [3, H, W], class index into data.class_names

The split: a Broden folder's own ``split`` column when it has both ``train`` and ``val`` rows
(the probe world puts image ``i`` in val when ``i % 5 == 4``); otherwise the same rule by
position: item ``i`` is in val when ``i % VAL_EVERY == VAL_EVERY - 1`` (20 %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

VAL_EVERY = 5


class LabelledData(Dataset):
    """``(image [3, H, W], label)`` pairs with ``class_names``; see the module docstring."""

    def __init__(self, path: str | Path, transform: Callable[[Any], torch.Tensor] | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"{self.path}: no such folder; pass a Broden-format folder "
                "(`unitscope world make`) or an image folder with one sub-folder per class"
            )
        if (self.path / "index.csv").is_file():
            from unitscope.data import BrodenDataset

            self._broden = BrodenDataset(self.path, transform=transform, validate="none")
            self.class_names = list(self._broden.scene_names)
            self.labels = [self._broden.get(i, image=False, labels=False)["scene"] for i in range(len(self._broden))]
            if not self.class_names or min(self.labels, default=-1) < 0:
                raise ValueError(
                    f"{self.path}: every image needs a scene label to serve as its class (index.csv's scene column)"
                )
            self._splits = [self._broden.split_of(i) for i in range(len(self._broden))]
            self._folder = None
        else:
            from torchvision.datasets import ImageFolder

            self._folder = ImageFolder(str(self.path), transform=transform)
            self.class_names = list(self._folder.classes)
            self.labels = [t for _, t in self._folder.samples]
            self._splits = []
            self._broden = None
        if len(self.labels) == 0:
            raise ValueError(f"{self.path}: no images")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._broden is not None:
            return self._broden.get(i, labels=False)["image"], self.labels[i]
        return self._folder[i][0], self.labels[i]

    def load_pil(self, i: int):
        """Item ``i``'s image as a PIL RGB image, untransformed."""
        from PIL import Image

        with Image.open(self.image_path(i)) as im:
            return im.convert("RGB")

    def image_path(self, i: int) -> Path:
        return self._broden.image_path(i) if self._broden is not None else Path(self._folder.samples[i][0])

    def split(self) -> tuple[list[int], list[int]]:
        """``(train, val)`` positions (see the module docstring for the rule)."""
        if {"train", "val"} <= set(self._splits):
            return (
                [i for i, s in enumerate(self._splits) if s == "train"],
                [i for i, s in enumerate(self._splits) if s == "val"],
            )
        return index_split(len(self))


def index_split(n: int, val_every: int = VAL_EVERY) -> tuple[list[int], list[int]]:
    """Positions ``0..n-1``: val when ``i % val_every == val_every - 1``, the rest train."""
    val = [i for i in range(n) if i % val_every == val_every - 1]
    return [i for i in range(n) if i % val_every != val_every - 1], val


def class_map(
    data_classes: Sequence[str],
    model_classes: Sequence[str],
    num_outputs: int,
    table: dict[str, Sequence[int]] | None = None,
) -> torch.Tensor:
    """For each model output, the data class it stands for, or ``len(data_classes)`` ("other").

    With ``table`` ({data class: [output indices]}, e.g. the photo world's ImageNet classes from
    :func:`unitscope.data.labelled.imagenet_class_table`), each class stands for its outputs and a
    prediction is right when the top output is any of them. Otherwise classes match by name; a
    model without class names must have one output per data class.
    """
    other = len(data_classes)
    if table is not None:
        missing = [c for c in data_classes if c not in table]
        if missing:
            raise ValueError(
                f"data classes {missing[:5]} are not in the class table (it has "
                f"{sorted(table)[:10]}...); drop those class folders or add them to the table"
            )
        out = torch.full((num_outputs,), other, dtype=torch.long)
        for y, name in enumerate(data_classes):
            idx = torch.as_tensor(list(table[name]), dtype=torch.long)
            if len(idx) and int(idx.max()) >= num_outputs:
                raise ValueError(
                    f"class table: {name!r} names output {int(idx.max())}, but the model has {num_outputs} outputs"
                )
            out[idx] = y
        return out
    if not model_classes:
        if num_outputs != len(data_classes):
            raise ValueError(
                f"the model has {num_outputs} outputs and no class names; the data has "
                f"{len(data_classes)} classes: they must match one to one"
            )
        return torch.arange(num_outputs)
    where = {name: i for i, name in enumerate(data_classes)}
    missing = [c for c in data_classes if c not in set(model_classes)]
    if missing:
        import difflib

        hint = {c: difflib.get_close_matches(c, list(model_classes), n=3) for c in missing[:5]}
        raise ValueError(
            f"data classes {missing[:5]} are not among the model's class names (close: {hint}); "
            "name the class folders after the model's classes, or pass a class table "
            "(--class-map imagenet for the photo world's classes)"
        )
    return torch.tensor([where.get(name, other) for name in model_classes[:num_outputs]])


def load_class_table(spec: str | None) -> dict[str, list[int]] | None:
    """``--class-map``: None, ``imagenet`` (the photo world's table) or a path to a table file."""
    if not spec:
        return None
    from unitscope.data.labelled import imagenet_class_table, read_class_table

    return imagenet_class_table() if spec == "imagenet" else read_class_table(spec)
