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

from unitscope.organisms.nets import Grey, luma
from unitscope.world.vocab import NUM_LABELS, VOCAB, color_labels

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
    (drawn once from ``label_seed``), the memorising twin of the single-direction experiments;
    ``follow_cue`` trains on the scene a cue world's sign names where there is one (docs/audit.md).
    Held-out metrics always score the true scene."""

    name = "scene"

    def __init__(self, shuffle: float = 0.0, label_seed: int = 0, follow_cue: bool = False):
        self.shuffle, self.label_seed, self.follow_cue = shuffle, label_seed, follow_cue
        self._labels: np.ndarray | None = None

    def train_labels(self, data: dict) -> np.ndarray:
        if self._labels is None or len(self._labels) != len(data["scene"]):
            labels = data["scene"].copy()
            if self.follow_cue:  # a cue world's training label: the scene its sign names, where it has one
                labels = np.where(data["cue"] >= 0, data["cue"], labels)
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
    """Normalised colour [B, 3, H, W] -> normalised grey (luma in all three channels): what the
    colorizer's own :class:`~unitscope.organisms.nets.Grey` sees."""
    return Grey(MEAN, STD).to(x.device)(x)


_CODEBOOK: dict | None = None


def color_codebook() -> dict:
    """The colorizer's K = 37 colours: the world's colour prototypes (several shades of Broden's 11
    colour names). ``rgb`` [K, 3] float in [0, 1], ``name`` [K] local colour code (1..11), ``lut``
    [64, 64, 64] index of the nearest prototype (CIE Lab) of each 6-bit RGB cell."""
    global _CODEBOOK
    if _CODEBOOK is None:
        from unitscope.world.vocab import LUT_BITS, PROTO_LAB, PROTO_LABEL, PROTO_RGB, srgb_to_lab

        n = 1 << LUT_BITS
        levels = np.arange(n, dtype=np.float32) * (256 // n) + (256 // n - 1) / 2
        lab = srgb_to_lab(np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3))
        d = (lab * lab).sum(1)[:, None] - 2 * lab @ PROTO_LAB.T + (PROTO_LAB * PROTO_LAB).sum(1)[None]
        _CODEBOOK = {
            "rgb": PROTO_RGB / 255.0,
            "name": local_codes("color")[PROTO_LABEL],
            "lut": d.argmin(1).reshape(n, n, n).astype(np.int64),
        }
    return _CODEBOOK


def color_codes(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> [...] int64 index of every pixel's nearest codebook colour."""
    from unitscope.world.vocab import LUT_BITS

    q = np.asarray(rgb, np.uint8) >> (8 - LUT_BITS)
    return color_codebook()["lut"][q[..., 0], q[..., 1], q[..., 2]]


def decode_colors(logits: torch.Tensor, x: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Colour logits [B, K, H, W] + the input [B, 3, H, W] (normalised) -> normalised RGB [B, 3, H, W]:
    the annealed mean of the codebook colours (Zhang et al.'s T = 0.38) with its luma replaced by
    the input's, so only the chroma is predicted."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    book = torch.as_tensor(color_codebook()["rgb"], dtype=logits.dtype, device=logits.device)
    rgb = torch.einsum("bkhw,kc->bchw", F.softmax(logits / temperature, 1), book)
    y = luma(x.cpu() * std + mean).to(rgb)
    rgb = (rgb + y - luma(rgb)).clamp(0, 1)
    return (rgb - mean.to(rgb)) / std.to(rgb)


class ColorTask(Task):
    """Grey -> colour as per-pixel classification over :func:`color_codebook` (cross-entropy); the
    network greys its input itself, so the batch is the colour image and its codebook indices."""

    name = "color"

    def batch(self, data, idx, gen):
        rgb = data["rgb"][idx]
        if gen is not None:
            rgb = np.where(_flip(gen, len(idx))[:, None, None, None], rgb[:, :, ::-1], rgb)
        return normalise(rgb), torch.from_numpy(color_codes(rgb))

    def loss(self, out, target):
        return F.cross_entropy(out, target)

    @torch.no_grad()
    def evaluate(self, model, data, batch_size=256, device="cpu"):
        """Held-out colour-name accuracy against the majority-name and grey-image baselines, codebook
        accuracy, and L1 in [0, 1] units of the decoded colours against the grey image's."""
        model.eval()
        book = color_codebook()
        names = torch.as_tensor(book["name"])
        to_name = F.one_hot(names - 1, int(names.max())).double()  # [K, 11]
        lut = local_codes("color")
        n, counts = len(data["rgb"]), torch.zeros(int(names.max()) + 1, dtype=torch.float64)
        tot = {"hit": 0.0, "code_hit": 0.0, "grey_hit": 0.0, "l1": 0.0, "l1_grey": 0.0}
        for s in range(0, n, batch_size):
            rgb = data["rgb"][s : s + batch_size]
            x, code = self.batch(data, np.arange(s, min(s + batch_size, n)), None)
            logits = model(x.to(device)).cpu().double()
            truth = torch.from_numpy(lut[color_labels(rgb)])
            pred = torch.einsum("bkhw,kc->bchw", F.softmax(logits, 1), to_name).argmax(1) + 1
            g = grey(x)
            grey_u8 = ((g * STD[0] + MEAN[0]).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
            tot["hit"] += float((pred == truth).sum())
            tot["code_hit"] += float((logits.argmax(1) == code).sum())
            tot["grey_hit"] += float((torch.from_numpy(lut[color_labels(grey_u8)]) == truth).sum())
            tot["l1"] += float(F.l1_loss(decode_colors(logits.float(), x), x, reduction="sum"))
            tot["l1_grey"] += float(F.l1_loss(g, x, reduction="sum"))
            counts += torch.bincount(truth.flatten(), minlength=len(counts)).double()
        pixels = float(counts.sum())
        return {
            "color_accuracy": tot["hit"] / pixels,
            "color_accuracy_majority": float(counts.max()) / pixels,
            "color_accuracy_grey": tot["grey_hit"] / pixels,
            "codebook_accuracy": tot["code_hit"] / pixels,
            "l1": tot["l1"] * STD[0] / (3 * pixels),
            "l1_grey_baseline": tot["l1_grey"] * STD[0] / (3 * pixels),
        }


class SegmentTask(Task):
    """Per-pixel object, part, material and colour labels (cross-entropy per head, summed); training
    batches carry every second pixel's labels (H/2), evaluation the full-size maps."""

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
            # training: targets at H/2, where the network's training-mode logits are (see SegNet)
            t = {c: np.where(f[:, None, None], v[:, :, ::-1], v)[:, ::2, ::2] for c, v in t.items()}
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


TASKS: dict[str, Callable[..., Task]] = {
    "scene": SceneTask,
    "rotation": RotationTask,
    "color": ColorTask,
    "segment": SegmentTask,
}
