"""Painting with units (GANPaint, Bau et al. 2019) in the live page: a generator's sample for a seed,
a brushed region of one layer's map, and a concept added there (its units forced on) or removed
(its units off); the segmenter says what changed.

    from unitscope.serve.paint import Painter
    painter = Painter(create_model("world_generator"), create_segmenter("world_segmenter"), run="runs/gan")
    region = torch.zeros(8, 8, dtype=torch.bool); region[4:6, 2:5] = True       # cells of relu2's map
    edit = painter.edit("relu2", {"action": "add", "concept": "tree", "mask": region.tolist()})
    result = painter.paint(seed=3, layer="relu2", edits=[edit])
    result.share        # (before, after): the tree's pixel share inside the region, as the segmenter sees it
    result.to_json()    # what POST /api/paint answers (image and segmentation as base64 PNGs)

An edit is the one edit primitive (:class:`unitscope.edits.Edits`) inside a region, as
``gan.effects.insertion_in_context`` applies it: **add** forces the units to each one's
``level_quantile`` (99.5th percentile, measured over ``level_samples`` samples of seed 0, the
dissection's samples) and **remove** sets them to 0. A concept's units are its top ``k`` units of
the run folder's IoU for it (``arrays/*.safetensors``, read directly); without a run, units are
picked by number. A region is bool ``[h, w]`` on the layer's grid, or ``[H, W]`` on the image's,
where a cell is in the region when the brush covers at least half of its patch of pixels. A cell
``(y, x)`` stands for the image's rows ``y*H//h .. (y+1)*H//h`` and columns likewise (the patches of
insertion in context); the share is measured on those pixels, in the concept's category plane.

Only the layers after the edited one run per request (``ablate.cut_model``, torch.fx); the layers
before run once per (seed, layer) and stay in a small cache. ``routes(app, painter)`` adds the
JSON API (documented in the README) to the probe page's app.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.ablate.cut import CutCache, FxCut, HookCut, cut_model
from unitscope.edits import Edits
from unitscope.errors import UnitscopeError
from unitscope.gan.effects import label_space
from unitscope.gan.sources import latents, to_unit_range
from unitscope.hooks import TraceDict
from unitscope.layers import layer_names
from unitscope.models import get_info
from unitscope.runs import ARRAYS, LABELS, LAYERS
from unitscope.segment import Segmenter

__all__ = ["Painter", "PaintEdit", "PaintResult", "PaintError", "routes"]

LEVEL_QUANTILE = 0.995  # "add" forces units to this quantile of their own values (gan.effects' insertion)
LEVEL_SAMPLES = 200  # samples of seed 0 the levels are measured on
TOP_K = 10  # a concept's units: its top k by the run's IoU
CACHE_SEEDS = 64  # (seed, layer) head caches kept
MAX_EDITS = 64
ACTIONS = ("add", "remove")


class PaintError(UnitscopeError):
    """A bad paint request: ``status`` 400 (malformed) or 404 (unknown name), ``close`` suggestions."""

    def __init__(self, status: int, message: str, close: Sequence[Any] = ()):
        super().__init__(message)
        self.status, self.close = status, list(close)


@dataclass
class PaintLayer:
    name: str
    units: int
    height: int
    width: int


@dataclass
class PaintEdit:
    """``units`` of a layer set by ``action`` inside ``region`` (bool ``[h, w]``); ``concept`` is what
    the shares measure (None: nothing)."""

    action: str
    units: list[int]
    region: torch.Tensor
    concept: str | None = None

    def edits(self, level: torch.Tensor) -> Edits:
        """As one :class:`Edits` row: add = each unit's ``level`` ``[C]``, remove = 0, within the region."""
        mask = torch.zeros(1, len(level), dtype=torch.bool)
        mask[0, self.units] = True
        if self.action == "add":
            return Edits.ablate(mask, "quantile", value=level).within(self.region)
        return Edits.ablate(mask, "zero").within(self.region)


@dataclass
class PaintResult:
    """One paint: the image after every edit ``[3, H, W]`` in [0, 1], its segmentation
    ``{category: [H, W]}``, the edited layer's maps ``[C, h, w]``, and the last edit's concept's
    pixel share inside its region before and after that edit (None without a concept)."""

    seed: int
    layer: str
    image: torch.Tensor
    segmentation: dict[str, torch.Tensor]
    maps: torch.Tensor
    edit: PaintEdit | None
    share: tuple[float, float] | None
    pixels: torch.Tensor | None  # bool [H, W]: the region's pixels
    painter: Painter = field(repr=False)
    category: str = ""
    took_ms: float = 0.0

    def to_json(self, category: str | None = None) -> dict[str, Any]:
        from unitscope.serve.probe import encode_atlas

        p = self.painter
        cat = category or self.category
        h, w = self.maps.shape[-2:]
        out: dict[str, Any] = {
            "seed": self.seed,
            "layer": self.layer,
            "grid": [int(h), int(w)],
            "image": {"png": _png(self.image), "width": int(self.image.shape[-1]), "height": int(self.image.shape[-2])},
            "segmentation": p.segmentation_json(self.segmentation, cat),
            "atlas": encode_atlas(self.maps.numpy()),
            "took_ms": round(self.took_ms, 1),
        }
        if self.edit is not None:
            e = self.edit
            out["edit"] = {
                "action": e.action,
                "units": e.units,
                "concept": e.concept,
                "levels": [float(p.levels(self.layer)[u]) for u in e.units]
                if e.action == "add"
                else [0.0] * len(e.units),
                "region": e.region.int().tolist(),
                "cells": int(e.region.sum()),
                "pixels": int(self.pixels.sum()) if self.pixels is not None else 0,
            }
        out["share"] = (
            None
            if self.share is None
            else {"concept": self.edit.concept if self.edit else None, "before": self.share[0], "after": self.share[1]}
        )
        return out


class Painter:
    """A generator and a segmenter (built once by the caller), an optional dissection run folder.

    ``layers``: names to offer (default: the model's ``default_layers``, else every layer with a
    ``[C, H, W]`` output); ``default_layer``: the run's first dissected one, else the middle one.
    """

    def __init__(
        self,
        generator: nn.Module,
        segmenter: Segmenter,
        run: str | Path | None = None,
        *,
        layers: Sequence[str] | None = None,
        level_quantile: float = LEVEL_QUANTILE,
        level_samples: int = LEVEL_SAMPLES,
        top_k: int = TOP_K,
        device: torch.device | str = "cpu",
        segmenter_name: str | None = None,
    ):
        self.info = get_info(generator)
        if self.info.kind != "generator":
            raise ValueError(
                f"{self.info.name} is not a generator (ModelInfo.kind {self.info.kind!r}); painting "
                "needs kind='generator', input_size=(Z, 1, 1)"
            )
        self.generator, self.segmenter = generator.eval().to(device), segmenter
        self.segmenter_name = segmenter_name or type(segmenter).__name__
        self.device = torch.device(device)
        self.level_quantile, self.level_samples, self.top_k = level_quantile, level_samples, top_k
        self.names, self.categories, self.label_category = label_space(segmenter)
        self.palette = _palette(len(self.names))
        self._lock = threading.Lock()
        self._cuts: dict[str, FxCut | HookCut] = {}
        self._heads: OrderedDict[tuple[int, str], CutCache] = OrderedDict()
        self._levels: dict[str, torch.Tensor] = {}
        self.layers = self._list_layers(layers)
        self.run = RunConcepts(run) if run is not None else None
        dissected = [n for n in (self.run.layers if self.run else []) if n in self.layers]
        names = list(self.layers)
        self.default_layer = dissected[0] if dissected else names[(len(names) - 1) // 2]

    @torch.no_grad()
    def _list_layers(self, wanted: Sequence[str] | None) -> dict[str, PaintLayer]:
        names = list(wanted or self.info.default_layers or layer_names(self.generator))
        with TraceDict(self.generator, names) as td:
            image = self.generator(self.z(0).to(self.device))
        self.image_size = (int(image.shape[-2]), int(image.shape[-1]))  # [H, W] of its output
        out = {}
        for n in names:
            o = td[n].output
            if isinstance(o, torch.Tensor) and o.dim() == 4:
                out[n] = PaintLayer(n, int(o.shape[1]), int(o.shape[2]), int(o.shape[3]))
        if not out:
            raise ValueError(f"{self.info.name} has no layer with a [C, H, W] output to paint in")
        return out

    def z(self, seed: int) -> torch.Tensor:
        """The latent of a seed, ``[1, *input_size]``: sample 0 of ``--sample-seed seed``."""
        return latents(1, seed, self.info.input_size)

    # -- names -------------------------------------------------------------------------------------
    def layer(self, name: str | None) -> PaintLayer:
        if not name:
            return self.layers[self.default_layer]
        if name not in self.layers:
            close = difflib.get_close_matches(name, list(self.layers), n=6, cutoff=0.5)
            raise PaintError(404, f"no layer {name!r} to paint in; layers: {', '.join(self.layers)}", close)
        return self.layers[name]

    def concept_units(self, layer: str, concept: str, k: int | None = None) -> list[int]:
        """The top ``k`` units of ``concept`` at ``layer`` by the run's IoU (IoU > 0 only)."""
        if concept not in self.names[1:]:
            known = [n for n in self.names[1:] if n != "-"]
            raise PaintError(
                404,
                f"the segmenter has no label {concept!r}; it labels {', '.join(known)}",
                difflib.get_close_matches(concept, known, n=6, cutoff=0.5),
            )
        if self.run is None:
            raise PaintError(
                404,
                f"no run folder, so no unit is known to paint {concept!r}: pick units by number "
                '("units": [3, 7]) or start `unitscope serve RUN` with a dissection of this generator',
            )
        units = self.run.ranked(layer, concept)
        if units is None:
            raise PaintError(
                404,
                f"the run {self.run.path} did not dissect layer {layer!r}; it has {', '.join(self.run.layers)}",
                [n for n in self.run.layers if n in self.layers],
            )
        if not units:
            have = [c["concept"] for c in self.run.concepts(layer)]
            raise PaintError(
                404,
                f"no unit of {layer} overlaps {concept!r} in the run (IoU 0 for every unit); "
                f"concepts with units there: {', '.join(have) or 'none'}",
                difflib.get_close_matches(concept, have, n=6, cutoff=0.3),
            )
        return units[: k or self.top_k]

    def edit(self, layer: str, spec: dict[str, Any]) -> PaintEdit:
        """A :class:`PaintEdit` from a request's ``{"action", "mask", "concept" and/or "units", "k"}``."""
        target = self.layer(layer)
        action = spec.get("action", "add")
        if action not in ACTIONS:
            raise PaintError(400, f"action must be 'add' or 'remove', got {action!r}")
        concept = spec.get("concept") or None
        if concept is not None and not isinstance(concept, str):
            raise PaintError(400, f"concept must be a label name, got {concept!r}")
        k = spec.get("k")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise PaintError(400, f"k (how many of the concept's top units) must be a positive integer, got {k!r}")
        units = spec.get("units")
        if units is None or units == []:
            if concept is None:
                raise PaintError(
                    400,
                    'say what to paint: "concept": NAME (its top units by the run\'s IoU) or "units": [unit numbers]',
                )
            units = self.concept_units(target.name, concept, k)
        else:
            if not isinstance(units, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in units):
                raise PaintError(400, f"units must be a list of unit numbers, got {units!r}")
            bad = [u for u in units if not 0 <= u < target.units]
            if bad:
                raise PaintError(
                    404,
                    f"layer {target.name!r} has {target.units} units, numbered "
                    f"0..{target.units - 1}; there is no unit {bad[0]}",
                    sorted({min(max(u, 0), target.units - 1) for u in bad}),
                )
            if concept is not None and concept not in self.names[1:]:
                self.concept_units(target.name, concept)  # raises the unknown-label error
        return PaintEdit(action, sorted(set(units)), self.region(target, spec.get("mask")), concept)

    def region(self, target: PaintLayer, mask: Any) -> torch.Tensor:
        """bool ``[h, w]`` on the layer's grid from a mask on the layer's or the image's grid."""
        try:
            m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
        except (TypeError, ValueError):
            m = torch.zeros(0)
        h, w = target.height, target.width
        big_h, big_w = self.image_size
        if m.dim() != 2 or tuple(m.shape) not in ((h, w), (big_h, big_w)):
            got = "x".join(map(str, m.shape)) if m.dim() else "not a 2-D array"
            raise PaintError(
                400,
                f"mask must be a 2-D array of 0/1 on the layer's grid {h}x{w} or the image's "
                f"{big_h}x{big_w}; got {got}",
            )
        if tuple(m.shape) != (h, w):
            m = torch.nn.functional.adaptive_avg_pool2d((m > 0).float()[None, None], (h, w))[0, 0]
            region = m >= 0.5
        else:
            region = m > 0
        if not region.any():
            raise PaintError(400, "the mask selects no cell of the layer's grid: brush at least half of one cell")
        return region

    # -- computing ---------------------------------------------------------------------------------
    def cut(self, layer: str) -> FxCut | HookCut:
        if layer not in self._cuts:
            self._cuts[layer] = cut_model(self.generator, layer)
        return self._cuts[layer]

    @torch.no_grad()
    def levels(self, layer: str) -> torch.Tensor:
        """Each unit's ``level_quantile`` over ``level_samples`` samples of seed 0, ``[C]`` (linear
        interpolation, as ``torch.quantile``, which refuses more than 2**24 values)."""
        if layer not in self._levels:
            z = latents(self.level_samples, 0, self.info.input_size)
            cut = self.cut(layer)
            maps = torch.cat(
                [cut.head(z[i : i + 50].to(self.device)).layer.float().cpu() for i in range(0, len(z), 50)]
            )  # [N, C, h, w]
            values = maps.transpose(0, 1).flatten(1)  # [C, N*h*w]
            pos = self.level_quantile * (values.shape[1] - 1)
            lo, frac = int(pos), pos - int(pos)
            below = values.kthvalue(lo + 1, dim=1).values
            above = values.kthvalue(min(lo + 2, values.shape[1]), dim=1).values
            self._levels[layer] = below + frac * (above - below)
        return self._levels[layer]

    def _head(self, seed: int, layer: str) -> CutCache:
        key = (seed, layer)
        if key in self._heads:
            self._heads.move_to_end(key)
        else:
            self._heads[key] = self.cut(layer).head(self.z(seed).to(self.device))
            while len(self._heads) > CACHE_SEEDS:
                self._heads.popitem(last=False)
        return self._heads[key]

    @torch.no_grad()
    def paint(
        self, seed: int, layer: str | None = None, edits: Sequence[PaintEdit] = (), category: str | None = None
    ) -> PaintResult:
        """The sample of ``seed`` with ``edits`` applied in order at ``layer``; shares of the last one."""
        if len(edits) > MAX_EDITS:
            raise PaintError(400, f"at most {MAX_EDITS} edits a request, got {len(edits)}: reset the painting")
        if not 0 <= seed < 2**63:
            raise PaintError(400, f"seed must be an integer from 0 to 2**63 - 1, got {seed}")
        target = self.layer(layer)
        if category is not None and category not in self.categories:
            raise PaintError(
                404,
                f"the segmenter has no category {category!r}; it has {', '.join(self.categories)}",
                difflib.get_close_matches(category, self.categories),
            )
        t0 = time.perf_counter()
        with self._lock:
            cache = self._head(seed, target.name)
            level = self.levels(target.name) if any(e.action == "add" for e in edits) else None
            z = cache.layer
            before = z
            for e in edits:
                before = z
                z = e.edits(level if level is not None else torch.zeros(target.units)).apply(z)
            both = torch.cat([before, z]) if edits else z
            out = self.cut(target.name).tail(cache.repeat(len(both), layer=False), edit=lambda _: both)
        images = to_unit_range(out, self.info.output_range).cpu()
        maps = self.segmenter.segment(images)
        last = edits[-1] if edits else None
        share, pixels = None, None
        if last is not None:
            pixels = pixel_region(last.region, images.shape[-2], images.shape[-1])
        if last is not None and last.concept is not None and pixels is not None:
            num = self.names.index(last.concept)
            plane = maps[self.categories[self.label_category[num]]]
            share = (float((plane[0][pixels] == num).float().mean()), float((plane[-1][pixels] == num).float().mean()))
        cat = category or (
            self.categories[self.label_category[self.names.index(last.concept)]]
            if last is not None and last.concept
            else _first(self.categories)
        )
        return PaintResult(
            seed,
            target.name,
            images[-1],
            {c: m[-1] for c, m in maps.items()},
            z[-1].float().cpu(),
            last,
            share,
            pixels,
            self,
            cat,
            (time.perf_counter() - t0) * 1000,
        )

    def segmentation_json(self, maps: dict[str, torch.Tensor], category: str) -> dict[str, Any]:
        """``{"category", "png": base64 colour PNG, "legend": [{"label", "number", "color", "share"}]}``."""
        plane = maps[category].long()
        rgb = self.palette[plane.numpy()]
        counts = torch.bincount(plane.flatten(), minlength=len(self.names))
        total = plane.numel()
        legend = [
            {
                "label": self.names[i],
                "number": i,
                "color": "#%02x%02x%02x" % tuple(self.palette[i]),
                "share": round(float(counts[i]) / total, 6),
            }
            for i in torch.argsort(-counts, stable=True).tolist()
            if i and counts[i]
        ]
        return {"category": category, "categories": list(self.categories), "png": _png_rgb(rgb), "legend": legend}

    def info_json(self) -> dict[str, Any]:
        """What GET /api/paint/info answers: model, layers, concepts with units per dissected layer."""
        return {
            "model": self.info.name,
            "kind": "generator",
            "default": self.default_layer,
            "segmenter": self.segmenter_name,
            "categories": list(self.categories),
            "labels": [n for n in self.names[1:] if n != "-"],
            "run": str(self.run.path) if self.run else None,
            "top_k": self.top_k,
            "level_quantile": self.level_quantile,
            "image": {"width": self.image_size[1], "height": self.image_size[0]},
            "layers": [
                {
                    **vars(li),
                    "dissected": bool(self.run and li.name in self.run.layers),
                    "concepts": self.run.concepts(li.name, self.top_k) if self.run else [],
                    "labels": self.run.unit_labels(li.name) if self.run else {},
                }
                for li in self.layers.values()
            ],
        }


class RunConcepts:
    """A generator dissection's IoU matrices (``arrays/<tag>.safetensors``, ``labels.json``,
    ``layers.json``), read once: per layer and concept the units ranked by IoU."""

    def __init__(self, run: str | Path):
        from unitscope.runs import load_arrays

        self.path = Path(run)
        try:
            tags = json.loads((self.path / LAYERS).read_text())
            labels = json.loads((self.path / LABELS).read_text())
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                f"{self.path} is not a finished dissection (no readable layers.json / "
                f"labels.json: {exc}); run `unitscope dissect --model GEN --segmenter SEG "
                f"--out {self.path}` first"
            ) from None
        self.names, self.label_categories = list(labels["names"]), list(labels["categories"])
        self.iou: dict[str, np.ndarray] = {}
        for tag, name in tags.items():
            path = self.path / ARRAYS / f"{tag}.safetensors"
            if path.is_file():
                self.iou[name] = np.nan_to_num(np.asarray(load_arrays(path)["iou"], dtype=np.float64))  # [C, L]
        self.layers = list(self.iou)

    def ranked(self, layer: str, concept: str) -> list[int] | None:
        """Units with IoU > 0 for ``concept``, highest first (ties: lower unit first); None: layer not dissected."""
        if layer not in self.iou:
            return None
        if concept not in self.names:
            return []
        col = self.iou[layer][:, self.names.index(concept)]
        order = np.argsort(-col, kind="stable")
        return [int(u) for u in order if col[u] > 0]

    def unit_labels(self, layer: str) -> dict[str, dict[str, Any]]:
        """Each unit's best label and its IoU: ``{unit: {"concept", "category", "iou"}}``."""
        if layer not in self.iou:
            return {}
        iou = self.iou[layer][:, 1:]
        best = iou.argmax(1) + 1
        return {
            str(u): {
                "concept": self.names[b] if iou[u, b - 1] > 0 else None,
                "category": self.label_categories[b],
                "iou": round(float(iou[u, b - 1]), 4),
            }
            for u, b in enumerate(best.tolist())
        }

    def concepts(self, layer: str, top_k: int = TOP_K) -> list[dict[str, Any]]:
        """Concepts that are some unit's best label, most units first: ``{"concept", "category",
        "detectors" (units it labels), "units" (its top ``top_k`` by IoU), "iou"}``."""
        labels = self.unit_labels(layer)
        count: dict[str, int] = {}
        for lab in labels.values():
            if lab["concept"]:
                count[lab["concept"]] = count.get(lab["concept"], 0) + 1
        out = []
        for concept, n in sorted(count.items(), key=lambda kv: (-kv[1], kv[0])):
            units = (self.ranked(layer, concept) or [])[:top_k]
            col = self.names.index(concept)
            out.append(
                {
                    "concept": concept,
                    "category": self.label_categories[col],
                    "detectors": n,
                    "units": units,
                    "iou": [round(float(self.iou[layer][u, col]), 4) for u in units],
                }
            )
        return out


def pixel_region(region: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """bool ``[height, width]``: the image pixels of the cells of ``region`` ``[h, w]`` (cell (y, x) has
    rows ``y*height//h .. (y+1)*height//h``, as insertion in context's patches)."""
    h, w = region.shape
    out = torch.zeros(height, width, dtype=torch.bool)
    for y, x in region.nonzero().tolist():
        out[y * height // h : (y + 1) * height // h, x * width // w : (x + 1) * width // w] = True
    return out


def _first(categories: Sequence[str]) -> str:
    return "object" if "object" in categories else categories[0]


def _palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 colours, one a label (golden-angle hues; label 0 dark grey)."""
    import colorsys

    out = np.zeros((max(n, 1), 3), np.uint8)
    out[0] = (40, 40, 40)
    for i in range(1, n):
        r, g, b = colorsys.hls_to_rgb((i * 0.618033988749895) % 1.0, 0.55 if i % 2 else 0.42, 0.75)
        out[i] = (round(r * 255), round(g * 255), round(b * 255))
    return out


def _png_rgb(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png(image: torch.Tensor) -> str:
    """``[3, H, W]`` in [0, 1] -> base64 PNG."""
    return _png_rgb((image.clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


def routes(app: Any, painter: Painter, api_error: type) -> None:
    """``GET /api/paint/info``, ``GET /api/paint/sample?seed=S&layer=L``, ``POST /api/paint`` on ``app``;
    a :class:`PaintError` is answered as ``api_error(status, message, close=...)``."""
    from fastapi import Request

    def fail(exc: PaintError) -> Exception:
        extra = {"close": exc.close} if exc.status == 404 else {}
        return api_error(exc.status, str(exc), **extra)

    @app.get("/api/paint/info")
    def info() -> dict[str, Any]:
        return painter.info_json()

    @app.get("/api/paint/sample")
    def sample(seed: int = 0, layer: str | None = None, category: str | None = None) -> dict[str, Any]:
        try:
            return painter.paint(seed, layer, (), category).to_json()
        except PaintError as exc:
            raise fail(exc) from None

    async def paint(request: Request) -> Any:
        import asyncio

        try:
            body = await request.json()
        except ValueError:
            raise api_error(
                400,
                'the body must be JSON: {"seed", "layer", "action", "mask", "concept" or "units"} (or "edits": [...])',
            ) from None
        if not isinstance(body, dict):
            raise api_error(400, f"the body must be a JSON object, got {type(body).__name__}")
        seed = body.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise api_error(400, f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
        for key in ("layer", "category"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise api_error(400, f"{key} must be a name, got {body[key]!r}")
        specs = body.get("edits")
        if specs is None:
            specs = [body]
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise api_error(400, 'edits must be a list of {"action", "mask", "concept" or "units"} objects')

        def run() -> dict[str, Any]:
            layer = painter.layer(body.get("layer")).name
            edits = [painter.edit(layer, s) for s in specs]
            return painter.paint(seed, layer, edits, body.get("category")).to_json()

        try:
            # off the event loop; the painter's lock keeps one paint at a time
            return await asyncio.get_running_loop().run_in_executor(None, run)
        except PaintError as exc:
            raise fail(exc) from None

    # the annotation as the class itself: FastAPI cannot resolve the string "Request" (imported here,
    # so that the Painter works without FastAPI installed)
    paint.__annotations__["request"] = Request
    app.post("/api/paint")(paint)
