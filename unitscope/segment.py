"""Segmenters: images -> per-category label maps in the Broden label numbering.

    from unitscope.segment import create_segmenter, label_folder
    seg = create_segmenter("world_segmenter")            # the shipped probe-world segmenter
    maps = seg.segment(images)                           # images [N, 3, H, W] in [0, 1]
    maps["object"].shape                                 # [N, H, W] int64 label numbers, 0 = none
    label_folder("photos/", seg, "photos-labelled/")     # a Broden-format folder BrodenDataset reads

A segmenter labels images that carry no labels (generated images, user photos), the role the
Unified Perceptual Parsing network plays in the PNAS paper. Any user segmenter can take part:
subclass :class:`Segmenter` (``categories``, ``labels``, ``segment``) and pass the object,
register a factory (``register_segmenter("mine", factory)``, or a function named in the
``unitscope.segmenters`` entry-point group that does), or point ``create_segmenter`` at
``path/to/file.py:factory``. ``list_segmenters()`` names the registered ones; the shipped
``world_segmenter`` registers itself from ``unitscope.organisms.registry`` on first need (this
module names no organism). Label numbers are the world's (``unitscope.world.vocab.VOCAB``), so a
labelled folder dissects like a probe world.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unitscope.errors import UsageError
from unitscope.plugins import Plugins, file_factory

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Segmenter(abc.ABC):
    """``categories``: the pixel categories it labels; ``labels[cat]``: (name, number) pairs."""

    categories: tuple[str, ...] = ()
    labels: dict[str, list[tuple[str, int]]] = {}

    @abc.abstractmethod
    def segment(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images float [N, 3, H, W] in [0, 1] -> {category: int64 label numbers [N, H, W]}."""


class ModelSegmenter(Segmenter):
    """A network with one logits head per category ({cat: [N, L, H, W]}, class 0 = none) as a
    :class:`Segmenter`; ``numbers[cat][k]`` is the label number of head class ``k``."""

    def __init__(
        self,
        model: nn.Module,
        numbers: dict[str, np.ndarray],
        labels: dict[str, list[tuple[str, int]]],
        mean,
        std,
        size: int,
        device: str = "cpu",
    ):
        self.model, self.device, self.size = model.eval().to(device), device, size
        self.numbers = {c: torch.as_tensor(v) for c, v in numbers.items()}
        self.categories, self.labels = tuple(numbers), labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        h, w = images.shape[-2:]
        x = images.float()
        if (h, w) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        out = self.model(((x - self.mean) / self.std).to(self.device))
        maps = {}
        for c in self.categories:
            logits = F.interpolate(out[c].float().cpu(), size=(h, w), mode="bilinear")
            maps[c] = self.numbers[c][logits.argmax(1)]
        return maps


# -- registry: create_segmenter / list_segmenters / register_segmenter -------------------------------

_SEGMENTERS: dict[str, Callable[..., Segmenter]] = {}
ENTRY_POINT_GROUP = "unitscope.segmenters"
#: registering functions loaded on first need: the probe world's segmenter, then the entry points'
PLUGINS = Plugins(ENTRY_POINT_GROUP, builtin=("unitscope.organisms.registry:register_segmenters",))


def register_segmenter(name: str, factory: Callable[..., Segmenter] | None = None):
    """Register ``factory(device="cpu") -> Segmenter`` under ``name`` (usable as a decorator).
    Duplicate names are an error; ``:`` is reserved for ``file.py:factory``."""

    def add(fn: Callable[..., Segmenter]) -> Callable[..., Segmenter]:
        if name in _SEGMENTERS:
            raise ValueError(f"a segmenter named {name!r} is already registered")
        if ":" in name:
            raise ValueError(f"segmenter name {name!r} may not contain ':' (reserved for file.py:factory)")
        _SEGMENTERS[name] = fn
        return fn

    return add(factory) if factory is not None else add


def list_segmenters(pattern: str = "*") -> list[str]:
    """Registered segmenter names matching a shell-style ``pattern`` (the plug-ins' too)."""
    import fnmatch

    PLUGINS.load()
    return sorted(n for n in _SEGMENTERS if fnmatch.fnmatch(n, pattern))


def create_segmenter(name: str, device: str = "cpu") -> Segmenter:
    """A registered segmenter by name, or ``path/to/file.py:factory`` returning a :class:`Segmenter`."""
    if name not in _SEGMENTERS and ":" not in name:
        PLUGINS.load()
    if name in _SEGMENTERS:
        return _SEGMENTERS[name](device=device)
    path, sep, fn = name.rpartition(":")
    if sep and path.endswith(".py"):
        if not Path(path).exists():
            raise FileNotFoundError(f"segmenter file {path} does not exist (expected path/to/file.py:factory)")
        seg = file_factory(path, fn, "unitscope_segmenter")()
        if not isinstance(seg, Segmenter):
            raise UsageError(f"{name} returned {type(seg).__name__}, not a unitscope.segment.Segmenter")
        return seg
    raise UsageError(
        f"unknown segmenter {name!r}; registered: {', '.join(list_segmenters())}; "
        "or pass path/to/file.py:factory returning a unitscope.segment.Segmenter"
    )


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise UsageError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def label_folder(
    images: str | Path,
    segmenter: Segmenter,
    out: str | Path,
    size: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Path:
    """Label every image under ``images`` with ``segmenter`` and write a Broden-format folder.

    Images are resized to ``size``² (default: the first image's size); masks are ``size/2``² as in
    Broden. Every image goes to the ``val`` split. Returns ``out``."""
    from PIL import Image
    from tqdm import tqdm

    from unitscope.data.broden_writer import encode_mask, write_label_tables
    from unitscope.runs import atomic_write_bytes, atomic_write_text

    files, out = _image_files(Path(images)), Path(out)
    with Image.open(files[0]) as im:
        size = size or min(im.size)
    sh = max(1, size // 2)
    cats = list(segmenter.categories)
    freq = {c: np.zeros(max(num for _, num in segmenter.labels[c]) + 1, np.int64) for c in cats}
    rows = ["image,split,ih,iw,sh,sw," + ",".join(cats)]
    for start in tqdm(range(0, len(files), batch_size), desc="label", unit="batch", disable=not progress):
        batch = files[start : start + batch_size]
        rgb = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in batch]
        x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255.0
        maps = segmenter.segment(x)
        for k, (p, im) in enumerate(zip(batch, rgb)):
            stem = f"labelled/{start + k:06d}"
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=92)
            atomic_write_bytes(out / "images" / f"{stem}.jpg", buf.getvalue(), fsync=False)
            cells = []
            for c in cats:
                m = maps[c][k].numpy()
                rows_ = ((np.arange(sh) + 0.5) * m.shape[0] / sh).astype(np.int64)
                small = m[rows_[:, None], rows_[None, :]].astype(np.int64)
                atomic_write_bytes(out / "images" / f"{stem}_{c}.png", encode_mask(small), fsync=False)
                freq[c][np.unique(small)] += 1  # images in which each label occurs
                cells.append(f"{stem}_{c}.png")
            rows.append(f"{stem}.jpg,val,{size},{size},{sh},{sh}," + ",".join(cells))
    atomic_write_text(out / "index.csv", "\n".join(rows) + "\n")
    write_label_tables(out, segmenter.categories, segmenter.labels, freq, None, len(files))
    atomic_write_text(out / "sources.txt", "\n".join(str(p) for p in files) + "\n")
    return out
