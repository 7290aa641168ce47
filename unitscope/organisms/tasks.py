"""What each model organism learns: batches, loss and held-out metrics per training task.

    from unitscope.organisms.tasks import TASKS
    task = TASKS["scene"]
    x, y = task.batch(data, idx, gen)          # x [B, 3, 64, 64] normalised, y [B]
    loss = task.loss(model(x), y)
    task.evaluate(model, held_out)             # {"accuracy": 0.97, ...}

``data`` is the dict :func:`unitscope.organisms.data.world_arrays` returns (uint8 pixels, labels).
All randomness (flips, rotations, shuffled labels) comes from the generator passed in, so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.data._vocab import NUM_LABELS, VOCAB, color_labels

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
SEG_HEADS = ("object", "part", "material", "color")


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] normalised with MEAN, STD."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def local_codes(category: str) -> np.ndarray:
    """Lookup table: global Broden label number -> 1-based index within ``category`` (0 elsewhere)."""
    lut = np.zeros(NUM_LABELS, np.int64)
    for k, (_, num) in enumerate(VOCAB[category], start=1):
        lut[num] = k
    return lut


def global_numbers(category: str) -> np.ndarray:
    """The inverse of :func:`local_codes`: local index -> global label number (0 -> 0)."""
    return np.array([0] + [num for _, num in VOCAB[category]], np.int64)


def _flip(gen: torch.Generator, n: int) -> np.ndarray:
    return torch.rand(n, generator=gen).numpy() < 0.5


class Task:
    """Base: ``batch`` -> (input, target), ``loss``, ``evaluate`` on held-out arrays."""

    name = ""

    def batch(self, data: dict, idx: np.ndarray, gen: torch.Generator | None) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    def loss(self, out, target) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: dict, batch_size: int = 256, device: str = "cpu") -> dict:
        raise NotImplementedError


class SceneTask(Task):
    """Scene classification; ``shuffle`` > 0 replaces that fraction of training labels by random ones
    (drawn once from ``label_seed``), the memorising twin of the single-direction experiments."""

    name = "scene"

    def __init__(self, shuffle: float = 0.0, label_seed: int = 0):
        self.shuffle, self.label_seed = shuffle, label_seed
        self._labels: np.ndarray | None = None

    def train_labels(self, data: dict) -> np.ndarray:
        if self._labels is None or len(self._labels) != len(data["scene"]):
            labels = data["scene"].copy()
            if self.shuffle > 0:
                rng = np.random.default_rng(self.label_seed)
                pick = rng.random(len(labels)) < self.shuffle
                labels[pick] = rng.integers(0, len(VOCAB["scene"]), pick.sum())
            self._labels = labels
        return self._labels

    def batch(self, data, idx, gen):
        rgb = data["rgb"][idx]
        if gen is not None:
            rgb = np.where(_flip(gen, len(idx))[:, None, None, None], rgb[:, :, ::-1], rgb)
            y = self.train_labels(data)[idx]
        else:
            y = data["scene"][idx]
        return normalise(rgb), torch.from_numpy(np.asarray(y, np.int64))

    def loss(self, out, target):
        return F.cross_entropy(out, target)

    @torch.no_grad()
    def evaluate(self, model, data, batch_size=256, device="cpu"):
        model.eval()
        correct = 0
        for s in range(0, len(data["scene"]), batch_size):
            x, y = self.batch(data, np.arange(s, min(s + batch_size, len(data["scene"]))), None)
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        return {"accuracy": correct / len(data["scene"])}


class RotationTask(Task):
    """Predict which of 0/90/180/270 degrees an image was rotated by (self-supervised)."""

    name = "rotation"

    def batch(self, data, idx, gen):
        rgb = data["rgb"][idx]
        if gen is not None:
            k = torch.randint(0, 4, (len(idx),), generator=gen).numpy()
        else:
            k = np.asarray(idx) % 4  # evaluation: every rotation equally often, fixed
        rot = np.stack([np.rot90(im, int(r), axes=(0, 1)) for im, r in zip(rgb, k)])
        return normalise(rot), torch.from_numpy(k.astype(np.int64))

    loss = SceneTask.loss

    @torch.no_grad()
    def evaluate(self, model, data, batch_size=256, device="cpu"):
        model.eval()
        n, correct = len(data["rgb"]), 0
        for s in range(0, n, batch_size):
            x, y = self.batch(data, np.arange(s, min(s + batch_size, n)), None)
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        return {"accuracy": correct / n}


def grey(x: torch.Tensor) -> torch.Tensor:
    """Normalised colour [B, 3, H, W] -> normalised grey (luma in all three channels)."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    rgb = x * std + mean
    y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1).expand(-1, 3, -1, -1)
    return (y - mean) / std


class ColorTask(Task):
    """Grey -> colour, L1 loss in normalised RGB."""

    name = "color"

    def batch(self, data, idx, gen):
        rgb = data["rgb"][idx]
        if gen is not None:
            rgb = np.where(_flip(gen, len(idx))[:, None, None, None], rgb[:, :, ::-1], rgb)
        x = normalise(rgb)
        return grey(x), x

    def loss(self, out, target):
        return F.l1_loss(out, target)

    @torch.no_grad()
    def evaluate(self, model, data, batch_size=256, device="cpu"):
        model.eval()
        n, err, base = len(data["rgb"]), 0.0, 0.0
        for s in range(0, n, batch_size):
            x, y = self.batch(data, np.arange(s, min(s + batch_size, n)), None)
            err += float(F.l1_loss(model(x.to(device)).cpu(), y, reduction="sum"))
            base += float(F.l1_loss(x, y, reduction="sum"))
        # in units of [0, 1] pixel values; the grey input itself is the baseline
        scale = STD[0] / (n * 3 * x.shape[-1] * x.shape[-2])
        return {"l1": err * scale, "l1_grey_baseline": base * scale}


class SegmentTask(Task):
    """Per-pixel object, part, material and colour labels (cross-entropy per head, summed)."""

    name = "segment"

    def __init__(self):
        self.luts = {c: local_codes(c) for c in SEG_HEADS}

    def targets(self, data: dict, idx: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        t = {c: self.luts[c][data[c][idx]] for c in SEG_HEADS if c != "color"}
        t["color"] = self.luts["color"][color_labels(rgb)]
        return t

    def batch(self, data, idx, gen):
        rgb = data["rgb"][idx]
        t = self.targets(data, idx, rgb)
        if gen is not None:
            f = _flip(gen, len(idx))
            rgb = np.where(f[:, None, None, None], rgb[:, :, ::-1], rgb)
            t = {c: np.where(f[:, None, None], v[:, :, ::-1], v) for c, v in t.items()}
        return normalise(rgb), {c: torch.from_numpy(np.ascontiguousarray(v)) for c, v in t.items()}

    def loss(self, out, target):
        return sum(F.cross_entropy(out[c], target[c]) for c in SEG_HEADS)

    @torch.no_grad()
    def evaluate(self, model, data, batch_size=128, device="cpu"):
        model.eval()
        n = len(data["rgb"])
        sizes = {c: len(VOCAB[c]) + 1 for c in SEG_HEADS}
        conf = {c: torch.zeros(sizes[c], sizes[c], dtype=torch.int64) for c in SEG_HEADS}
        for s in range(0, n, batch_size):
            x, t = self.batch(data, np.arange(s, min(s + batch_size, n)), None)
            out = model(x.to(device))
            for c in SEG_HEADS:
                pred = out[c].argmax(1).cpu().flatten()
                conf[c] += torch.bincount(t[c].flatten() * sizes[c] + pred, minlength=sizes[c] ** 2).view(sizes[c], -1)
        return segmentation_metrics(conf)


def segmentation_metrics(conf: dict[str, torch.Tensor]) -> dict:
    """Pixel accuracy and mean IoU (over classes present in the truth) per category from confusion
    matrices [true, predicted]."""
    metrics = {}
    for c, m in conf.items():
        m = m.double()
        inter = m.diag()
        union = m.sum(0) + m.sum(1) - inter
        present = m.sum(1) > 0
        metrics[f"{c}_pixel_accuracy"] = float(inter.sum() / m.sum())
        metrics[f"{c}_mean_iou"] = float((inter[present] / union[present]).mean())
    return metrics


TASKS: dict[str, Callable[..., Task]] = {"scene": SceneTask, "rotation": RotationTask, "color": ColorTask,
                                         "segment": SegmentTask}
