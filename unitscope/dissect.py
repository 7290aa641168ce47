"""Network Dissection (Bau et al., CVPR 2017): label every unit by the concept it detects.

    from unitscope.dissect import dissect
    from unitscope.data import BrodenDataset
    from unitscope.models import create_model, get_info
    model = create_model("efficientnet_lite0")
    data = BrodenDataset("probe-world", transform=get_info(model).transform())
    result = dissect(model, data, ["blocks.4", "blocks.6"], "runs/lite0")
    result.layers["blocks.6"].summary()      # "87 of 320 units are detectors, covering 31 concepts"

Two passes over the data, every layer at once:
1. per unit the activation threshold T_k, the top ``quantile`` level over all positions of all
   images (raw maps), and the top-k exemplar images; activations are cached on disk when they fit
   ``cache_gb`` so that the second pass need not run the model again;
2. maps upsampled bilinearly to the label resolution and thresholded at T_k; IoU(k, c) =
   sum |M_k & L_c| / sum |M_k | L_c| over the data set, image-level labels as full-image masks.
Each pass checkpoints into the run folder and resumes after a kill with identical results.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from io import BytesIO
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope._exemplars import write_concept_strips, write_exemplar_strips
from unitscope._iou import count_batch
from unitscope.hooks import TraceDict, list_layers, resolve_layer
from unitscope.models import get_info
from unitscope.runs import atomic_write_text, load_arrays, save_arrays


@dataclass
class LayerDissection:
    """Results for one layer: thresholds [C], IoU [C, L], the best label of each unit."""

    layer: str
    shape: tuple[int, int, int]  # [C, h, w]
    thresholds: np.ndarray  # [C]
    iou: np.ndarray  # [C, L]
    best_label: np.ndarray  # [C] label number
    best_iou: np.ndarray  # [C]
    iou_threshold: float
    label_names: list[str]
    label_categories: list[str]  # category name per label number

    @property
    def detectors(self) -> np.ndarray:
        return self.best_iou >= self.iou_threshold

    @property
    def unique_concepts(self) -> int:
        return len(set(self.best_label[self.detectors].tolist()))

    def concept(self, unit: int) -> str:
        return self.label_names[int(self.best_label[unit])]

    def summary(self) -> str:
        return (f"{self.layer}: {int(self.detectors.sum())} of {len(self.best_iou)} units are detectors, "
                f"covering {self.unique_concepts} concepts")


@dataclass
class DissectResult:
    run_dir: Path
    layers: dict[str, LayerDissection] = field(default_factory=dict)
    rotations: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # layer -> [(detectors, concepts)]


# -- helpers --------------------------------------------------------------------------------------

def check_layers(model: nn.Module, layers: Sequence[str], input_size: Sequence[int]) -> dict[str, tuple[int, int, int]]:
    """Resolve layer names and check each has a spatial map; returns ``{layer: (C, h, w)}``."""
    for layer in layers:
        resolve_layer(model, layer)  # unknown names fail here, with close matches
    shapes = {info.name: info.shape for info in list_layers(model, input_size)}
    result = {}
    for layer in layers:
        shape = shapes.get(layer)
        if shape is None:
            raise ValueError(f"layer {layer!r} returns no tensor; dissection needs a [N, C, H, W] feature map")
        if len(shape) == 2:  # transformer tokens [T, D]
            side = math.isqrt(shape[0]) if math.isqrt(shape[0]) ** 2 == shape[0] else math.isqrt(shape[0] - 1)
            shape = (shape[1], side, side)
        if len(shape) != 3:
            raise ValueError(
                f"layer {layer!r} has output [N, {', '.join(map(str, shape))}] without a spatial map; "
                "dissection needs [N, C, H, W] (or transformer tokens [N, T, D]). "
                f"Pick a convolutional layer: `unitscope layers {get_info(model).name} --spatial`"
            )
        result[layer] = tuple(shape)
    return result


def random_rotation(c: int, seed: int) -> torch.Tensor:
    """A random orthogonal ``[C, C]`` matrix (Haar-distributed), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, c, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).float()


def rotate(acts: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Units of a rotated basis: ``[N, C, h, w]`` -> ``[N, C, h, w]`` with unit j = sum_i R[i, j] a_i."""
    return torch.einsum("nchw,cd->ndhw", acts, rotation.to(acts))


class _Items(torch.utils.data.Dataset):
    """Positions ``0..n-1`` of a data set (its first ``limit`` items) with the parts a pass needs.

    ``pos`` indexes the activation cache and the statistics; ``index`` is the data set's own
    image index (the row of index.csv), which is what the catalog records.
    """

    def __init__(self, dataset: Any, n: int, images: bool = True, labels: bool = True):
        self.dataset, self.n, self.images, self.labels = dataset, n, images, labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, pos: int) -> dict[str, Any]:
        get = getattr(self.dataset, "get", None)
        item = get(pos, image=self.images, labels=self.labels) if get else self.dataset[pos]
        out = {"pos": pos, "index": item["index"]}
        if self.images:
            out["image"] = item["image"]
        if self.labels:
            out.update(labels=item["labels"], image_labels=item["image_labels"],
                       category_present=item["category_present"])
        return out


class _Forward:
    """Runs the model up to the last traced layer and returns every layer's map."""

    def __init__(self, model: nn.Module, layers: Sequence[str], device: torch.device):
        self.model, self.layers, self.device = model, list(layers), device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        with TraceDict(self.model, self.layers, stop=True, as_map=True) as td:
            self.model(images.to(self.device))
        out = {}
        for layer in self.layers:
            acts = td[layer].output.float()
            if not torch.isfinite(acts).all():
                bad = (~torch.isfinite(acts)).flatten(1).any(1).nonzero().flatten()
                raise ValueError(
                    f"layer {layer!r} produced NaN/inf activations on images "
                    f"{index[bad.cpu()].tolist()[:10]}; check the model weights and the input normalisation"
                )
            out[layer] = acts
        return out


class _ActivationCache:
    """Each layer's maps for every image in one flat float32 file, rows indexed by image.

    Plain ``pwrite``/``pread`` rather than a memory map, so resident memory stays flat however
    many images there are. ``complete`` is only set once pass 1 has written every row.
    """

    def __init__(self, folder: Path, shapes: dict[str, tuple[int, int, int]], n: int):
        self.folder, self.shapes, self.n = folder, shapes, n
        self.row = {t: int(np.prod(s)) * 4 for t, s in shapes.items()}
        self.nbytes = sum(r * n for r in self.row.values())
        self._files: dict[str, int] = {}

    def _fd(self, t: str) -> int:
        if t not in self._files:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._files[t] = os.open(self.folder / f"{t}.f32", os.O_RDWR | os.O_CREAT, 0o644)
        return self._files[t]

    def write(self, t: str, index: np.ndarray, acts: np.ndarray) -> None:
        data = np.ascontiguousarray(acts, dtype=np.float32)
        if len(index) and np.all(np.diff(index) == 1):  # batches are contiguous: one write
            os.pwrite(self._fd(t), data.tobytes(), int(index[0]) * self.row[t])
        else:
            for i, row in zip(index, data):
                os.pwrite(self._fd(t), row.tobytes(), int(i) * self.row[t])

    def read(self, t: str, index: np.ndarray) -> np.ndarray:
        shape = self.shapes[t]
        if len(index) and np.all(np.diff(index) == 1):
            buf = os.pread(self._fd(t), self.row[t] * len(index), int(index[0]) * self.row[t])
            return np.frombuffer(buf, dtype=np.float32).reshape(len(index), *shape).copy()
        return np.stack([np.frombuffer(os.pread(self._fd(t), self.row[t], int(i) * self.row[t]),
                                       dtype=np.float32).reshape(shape) for i in index])

    def flush(self) -> None:
        for fd in self._files.values():
            os.fsync(fd)

    @property
    def complete(self) -> bool:
        return (self.folder / "complete").exists()

    def mark_complete(self) -> None:
        self.flush()
        atomic_write_text(self.folder / "complete", json.dumps({"images": self.n}) + "\n")

    def remove(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the run ----------------------------------------------------------------------------------------

def dissect(
    model: nn.Module,
    dataset: Any,
    layers: Sequence[str],
    run_dir: str | Path,
    *,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    topk: int = 10,
    rotations: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    cache_gb: float = 4.0,
    checkpoint_every: int = 20,
    exemplar_images: bool = True,
    keep_cache: bool = False,
    limit: int | None = None,
    progress: bool = True,
    key: dict | None = None,
) -> DissectResult:
    """Dissect ``layers`` of ``model`` over a Broden-format ``dataset``; results go to ``run_dir``.

    ``key`` (e.g. model name and data path) identifies the run for resume: a rerun with the same
    key skips finished work; a different key in the same folder is an error.
    """
    from unitscope.catalog import Catalog
    from unitscope.stats import CombinedStat, IoUCounts, Quantile, TopK
    from unitscope.tally import tally

    if not 0 < quantile < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5), the fraction of top activations; got {quantile}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model = model.to(device).eval()
    info = get_info(model)
    layers = list(dict.fromkeys(layers))
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the data set is empty")
    # layer shapes from the images the model will really see (its transform may resize them)
    shapes = check_layers(model, layers, tuple(_Items(dataset, n, labels=False)[0]["image"].shape))
    base_key = {"model": info.name, "layers": layers, "images": n, **(key or {})}
    forward = _Forward(model, layers, device)
    rots = {layer: [random_rotation(shapes[layer][0], seed + 1000 * i + r) for r in range(rotations)]
            for i, layer in enumerate(layers)}
    tag = {layer: f"l{i}" for i, layer in enumerate(layers)}

    # pass 1: thresholds and exemplars (and the activation cache) ---------------------------------
    cache = _ActivationCache(run_dir / "cache", {tag[l]: shapes[l] for l in layers}, n)
    use_cache = cache.nbytes <= cache_gb * 2**30

    stats1 = {}
    for layer in layers:
        stats1[f"{tag[layer]}_q"] = Quantile(device=device)
        stats1[f"{tag[layer]}_top"] = TopK(topk, device=device)
        for r in range(rotations):
            stats1[f"{tag[layer]}_r{r}_q"] = Quantile(device=device)
    pass1 = CombinedStat(**stats1)
    ran_pass1 = False
    # the data set's own index of each position (the row of index.csv), for the catalog
    if hasattr(dataset, "get"):
        row_index = np.array([dataset.get(p, image=False, labels=False)["index"] for p in range(n)], dtype=np.int64)
    else:
        row_index = np.arange(n, dtype=np.int64)
    for batch in tally(pass1, _Items(dataset, n, labels=False), batch_size=batch_size, num_workers=num_workers,
                       run_dir=run_dir / "pass1", key={**base_key, "pass": 1, "topk": topk,
                                                       "rotations": rotations, "seed": seed},
                       checkpoint_every=checkpoint_every, progress=progress,
                       on_checkpoint=cache.flush, desc="dissect pass 1"):
        index = batch["pos"]
        acts = forward(batch["image"], batch["index"])
        for layer, a in acts.items():
            t = tag[layer]
            pass1[f"{t}_q"].add(a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]))
            pass1[f"{t}_top"].add(a, index.to(device))
            for r, rot in enumerate(rots[layer]):
                ra = rotate(a, rot)
                pass1[f"{t}_r{r}_q"].add(ra.permute(0, 2, 3, 1).reshape(-1, a.shape[1]))
            if use_cache:
                cache.write(t, index.numpy(), a.cpu().numpy())
        ran_pass1 = True
    if use_cache and ran_pass1:
        cache.mark_complete()
    # a finished pass 1 whose cache was removed (the run completed before) recomputes instead
    use_cache = use_cache and cache.complete

    thresholds = {layer: pass1[f"{tag[layer]}_q"].quantiles(1 - quantile).float().to(device) for layer in layers}
    rot_thresholds = {layer: [pass1[f"{tag[layer]}_r{r}_q"].quantiles(1 - quantile).float().to(device)
                              for r in range(rotations)] for layer in layers}

    # pass 2: IoU counts ---------------------------------------------------------------------------
    label_category = torch.as_tensor(dataset.label_category, dtype=torch.long)
    num_labels = len(dataset.label_names)
    num_categories = len(dataset.categories)
    stats2 = {}
    for layer in layers:
        c = shapes[layer][0]
        stats2[f"{tag[layer]}_iou"] = IoUCounts(c, label_category.clamp(min=0), num_categories, device=device)
        for r in range(rotations):
            stats2[f"{tag[layer]}_r{r}_iou"] = IoUCounts(c, label_category.clamp(min=0), num_categories, device=device)
    pass2 = CombinedStat(**stats2)
    for batch in tally(pass2, _Items(dataset, n, images=not use_cache), batch_size=batch_size, num_workers=num_workers,
                       run_dir=run_dir / "pass2", key={**base_key, "pass": 2, "quantile": quantile,
                                                       "rotations": rotations, "seed": seed},
                       checkpoint_every=checkpoint_every, progress=progress, desc="dissect pass 2"):
        index = batch["pos"]
        if use_cache:
            acts = {layer: torch.from_numpy(cache.read(tag[layer], index.numpy())).to(device) for layer in layers}
        else:
            acts = forward(batch["image"], batch["index"])
        labels = batch["labels"].to(device)
        image_labels = batch["image_labels"].to(device)
        present = batch["category_present"].to(device)
        for layer, a in acts.items():
            t = tag[layer]
            pass2[f"{t}_iou"].add_counts(*count_batch(a, thresholds[layer], labels, image_labels, present, num_labels))
            for r, rot in enumerate(rots[layer]):
                pass2[f"{t}_r{r}_iou"].add_counts(*count_batch(
                    rotate(a, rot), rot_thresholds[layer][r], labels, image_labels, present, num_labels))

    # results ----------------------------------------------------------------------------------------
    categories = list(dataset.categories)
    label_cats = [categories[int(g)] if int(g) >= 0 else "" for g in label_category.tolist()]
    result = DissectResult(run_dir)
    for layer in layers:
        t = tag[layer]
        iou = pass2[f"{t}_iou"].iou().cpu().numpy()
        result.layers[layer] = _summarise(layer, shapes[layer], thresholds[layer].cpu().numpy(), iou,
                                          iou_threshold, list(dataset.label_names), label_cats)
        rows = [(int(result.layers[layer].detectors.sum()), result.layers[layer].unique_concepts)]
        for r in range(rotations):
            rot_iou = pass2[f"{t}_r{r}_iou"].iou().cpu().numpy()
            rd = _summarise(layer, shapes[layer], rot_thresholds[layer][r].cpu().numpy(), rot_iou,
                            iou_threshold, list(dataset.label_names), label_cats)
            rows.append((int(rd.detectors.sum()), rd.unique_concepts))
        result.rotations[layer] = rows
        values, images, ys, xs = (x.cpu().numpy() for x in pass1[f"{t}_top"].result())
        save_arrays(run_dir / "arrays" / f"{t}.safetensors", {
            "thresholds": result.layers[layer].thresholds, "iou": iou.astype(np.float32),
            "top_values": values.astype(np.float32), "top_images": images.astype(np.int64),
            "top_y": ys.astype(np.int64), "top_x": xs.astype(np.int64),
        })

    strips: dict[str, list[str]] = {}
    if exemplar_images:
        strips = write_exemplar_strips(run_dir, dataset, layers, tag, forward, cache if use_cache else None,
                                        thresholds, {l: pass1[f"{tag[l]}_top"].result() for l in layers})
    masks = write_concept_strips(run_dir, dataset, layers, tag, {l: pass1[f"{tag[l]}_top"].result() for l in layers},
                                 result.layers) if exemplar_images else {}

    with Catalog(run_dir / "catalog.sqlite") as cat, cat.transaction():
        cat.replace("concepts", [{"name": name, "category": cat_name}
                                 for name, cat_name in zip(dataset.label_names[1:], label_cats[1:]) if cat_name])
        for layer in layers:
            _write_layer_rows(cat, info.name, result.layers[layer], n, quantile, row_index,
                              pass1[f"{tag[layer]}_top"].result(), strips.get(layer), result.rotations[layer])
            cat.replace("concept_images", masks.get(layer, []), model=info.name, layer=layer)
    atomic_write_text(run_dir / "layers.json", json.dumps({tag[l]: l for l in layers}, indent=2) + "\n")
    if not keep_cache:
        cache.remove()
    return result


def _summarise(layer, shape, thresholds, iou, iou_threshold, label_names, label_cats) -> LayerDissection:
    scored = iou.copy()
    scored[:, 0] = -1  # label 0 means "unlabelled"
    best = scored.argmax(axis=1)
    return LayerDissection(layer, tuple(shape), thresholds, iou, best, scored[np.arange(len(best)), best],
                           iou_threshold, label_names, label_cats)


def _write_layer_rows(cat, model_name, d: LayerDissection, n_images, quantile, row_index, top, strip_paths,
                      rotation_rows):
    key = {"model": model_name, "layer": d.layer}
    c, h, w = d.shape
    cat.replace("layers", [{**key, "units": c, "height": h, "width": w, "images": n_images,
                            "quantile": quantile, "iou_threshold": d.iou_threshold,
                            "detectors": int(d.detectors.sum()), "unique_concepts": d.unique_concepts}], **key)
    cat.replace("dissection", [{
        **key, "unit": u, "concept": d.concept(u), "category": d.label_categories[int(d.best_label[u])],
        "iou": float(d.best_iou[u]), "is_detector": int(d.detectors[u]), "threshold": float(d.thresholds[u]),
    } for u in range(c)], **key)
    per_cat = []
    categories = sorted(set(d.label_categories) - {""})
    cats = np.array(d.label_categories)
    for g in categories:
        cols = np.nonzero(cats == g)[0]
        cols = cols[cols > 0]
        if not len(cols):
            continue
        best = cols[d.iou[:, cols].argmax(axis=1)]
        per_cat += [{**key, "unit": u, "category": g, "concept": d.label_names[int(best[u])],
                     "iou": float(d.iou[u, best[u]])} for u in range(c)]
    cat.replace("dissection_category", per_cat, **key)
    values, images, ys, xs = (x.cpu().numpy() for x in top)
    cat.replace("exemplars", [{**key, "unit": u, "rank": r, "image": int(row_index[images[u, r]]),
                               "activation": float(values[u, r]), "y": int(ys[u, r]), "x": int(xs[u, r])}
                              for u in range(c) for r in range(values.shape[1]) if images[u, r] >= 0], **key)
    if strip_paths is not None:
        cat.replace("unit_images", [{**key, "unit": u, "path": p} for u, p in enumerate(strip_paths)], **key)
    cat.replace("rotations", [{**key, "rotation": r, "detectors": det, "unique_concepts": uc}
                              for r, (det, uc) in enumerate(rotation_rows)], **key)


def load_layer_arrays(run_dir: str | Path, layer: str) -> dict[str, np.ndarray]:
    """The arrays a dissection saved for ``layer`` (thresholds, IoU matrix, top-k exemplars)."""
    run_dir = Path(run_dir)
    tags = json.loads((run_dir / "layers.json").read_text())
    for t, name in tags.items():
        if name == layer:
            return load_arrays(run_dir / "arrays" / f"{t}.safetensors")
    raise ValueError(f"run {run_dir} has no layer {layer!r}; it has {', '.join(tags.values())}")
