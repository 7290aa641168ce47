"""Run one image through a model once and read every unit of one layer.

    from unitscope.models import create_model
    from unitscope.serve.probe import Prober
    prober = Prober(create_model("efficientnet_lite0"))      # the model is built once, here
    result = prober.probe(pil_image, "blocks.6")
    result.top            # [("Egyptian cat", 0.61), ...] top-5 classes
    result.maps           # [C, H, W] float32 activations of blocks.6 for this image
    result.to_json()      # what POST /api/probe answers: top, units (max, mean), atlas PNG

Probe-able layers are those whose output is a ``[N, C, H, W]`` map (``list_layers`` decides, from
one dummy forward pass at start). The maps are the values a dissection thresholds (``values``, the
same rule as ``unitscope dissect --values``; ``auto`` by default, and per layer what a run
read for the layers it dissected, ``layer_rules``): a layer that ends in a bounded activation (ReLU6) is shown before it, where units
do not tie at the cap, so the map, the exemplars' values and the threshold T share one scale.
A forward pass holds a lock: hooks are global state on the model, so two requests must never
trace it at once.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.errors import UnitscopeError
from unitscope.hooks import Trace
from unitscope.layers import LayerNotFoundError, layer_names, list_layers, resolve_layer
from unitscope.models import get_info

MAX_TILE = 128  # maps larger than this on a side are average-pooled down for the atlas


class UnknownLayer(UnitscopeError, LookupError):
    """A layer the model lacks or that has no ``[C, H, W]`` map; ``close`` lists suggestions."""

    def __init__(self, message: str, close: list[str]):
        super().__init__(message)
        self.close = close


@dataclass
class ProbeLayer:
    name: str
    type: str
    units: int
    height: int
    width: int


@dataclass
class ProbeResult:
    layer: str
    top: list[tuple[str, float]]
    maps: np.ndarray  # [C, H, W] float32
    values: str = "layer output"  # which values the maps are (unitscope.layers.LayerValues.note)

    def to_json(self) -> dict[str, Any]:
        """``{"layer", "top": [[name, p]], "shape": [C, H, W], "units": [{"unit", "max", "mean"}],
        "atlas": {...}}`` (see :func:`encode_atlas`)."""
        c = self.maps.shape[0]
        flat = self.maps.reshape(c, -1)
        maxes, means = flat.max(1), flat.mean(1)
        return {
            "layer": self.layer,
            "values": self.values,
            "top": [[name, round(p, 6)] for name, p in self.top],
            "shape": list(self.maps.shape),
            "units": [{"unit": k, "max": float(maxes[k]), "mean": float(means[k])} for k in range(c)],
            "atlas": encode_atlas(self.maps),
        }


def encode_atlas(maps: np.ndarray) -> dict[str, Any]:
    """Tile ``maps`` ``[C, H, W]`` into one grayscale PNG, ``cols`` tiles a row, unit k at
    ``(k // cols, k % cols)``. Each tile is scaled to 0..255 between its own ``lo[k]`` and
    ``hi[k]``, so a pixel ``p`` means ``lo[k] + p / 255 * (hi[k] - lo[k])``.

    Returns ``{"png": base64 PNG, "cols", "rows", "tile": [h, w], "lo": [...], "hi": [...]}``.
    """
    from PIL import Image

    c, h, w = maps.shape
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    if max(h, w) > MAX_TILE:
        f = math.ceil(max(h, w) / MAX_TILE)
        x = torch.nn.functional.avg_pool2d(x[None], f, ceil_mode=True)[0]
        h, w = x.shape[1:]
    flat = x.reshape(c, -1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    tiles = ((x - lo[:, None, None]) / span[:, None, None] * 255).round().clamp(0, 255).to(torch.uint8)
    cols = max(1, math.ceil(math.sqrt(c * h / w)))  # a roughly square atlas
    rows = math.ceil(c / cols)
    atlas = torch.zeros(rows * cols, h, w, dtype=torch.uint8)
    atlas[:c] = tiles
    atlas = atlas.reshape(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w)
    buf = io.BytesIO()
    Image.fromarray(atlas.numpy(), mode="L").save(buf, "PNG", compress_level=1)
    return {
        "png": base64.b64encode(buf.getvalue()).decode("ascii"),
        "cols": cols,
        "rows": rows,
        "tile": [int(h), int(w)],
        "lo": lo.tolist(),
        "hi": hi.tolist(),
    }


class Prober:
    """A model built once, its probe-able layers listed once; :meth:`probe` per request.

    ``default_layer``: the model's last default layer (``ModelInfo.default_layers``), else the
    deepest layer with a spatial map.
    """

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", topk: int = 5, values: str = "auto"):
        from unitscope.layers import VALUES

        if values not in VALUES:
            raise ValueError(f"values must be one of {', '.join(VALUES)}, got {values!r}")
        self.values = values
        self.layer_rules: dict[str, str] = {}  # layer -> "pre" / "post" where a run says which it read
        self.bases: dict[str, Any] = {}  # pseudo-layer "LAYER#NAME" -> serve.bases.RunBasis (a run's bases)
        self._values: dict[tuple[str, str], Any] = {}  # (rule, layer) -> LayerValues
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.info = get_info(model)
        self.topk = topk
        self.transform = self.info.transform()
        self._lock = threading.Lock()
        with self._lock:
            listed = list_layers(self.model, device=self.device)
        self.layers = {
            li.name: ProbeLayer(li.name, li.type, li.shape[0], li.shape[1], li.shape[2])
            for li in listed
            if li.kind == "map"
        }
        if not self.layers:
            raise ValueError(f"{self.info.name} has no layer with a [C, H, W] output to probe")
        defaults = [n for n in self.info.default_layers if n in self.layers]
        self.default_layer = defaults[-1] if defaults else list(self.layers)[-1]

    def layer(self, name: str | None) -> ProbeLayer:
        """The probe-able layer ``name`` (None: the default), else :class:`UnknownLayer`."""
        if name is None or name == "":
            return self.layers[self.default_layer]
        if name in self.layers:
            return self.layers[name]
        if name in self.bases:  # a basis' directions: shaped as the layer it encodes
            rb = self.bases[name]
            base = self.layer(rb.layer)
            return ProbeLayer(name, f"{rb.kind} basis of {rb.layer}", rb.directions, base.height, base.width)
        if "#" in name:
            import difflib

            close = difflib.get_close_matches(name, list(self.bases), n=6, cutoff=0.6)
            raise UnknownLayer(
                f"no basis {name!r} in the run folder; its bases: {', '.join(self.bases) or 'none'} "
                "(fit them with `unitscope dissect --basis`)",
                close,
            )
        try:
            resolve_layer(self.model, name)
        except LayerNotFoundError as exc:
            import difflib

            close = difflib.get_close_matches(name, list(self.layers), n=6, cutoff=0.6)
            raise UnknownLayer(str(exc), close) from None
        names = layer_names(self.model)  # suggest the probe-able layers just before it
        close = [n for n in names[: names.index(name)] if n in self.layers][-3:][::-1]
        raise UnknownLayer(
            f"layer {name!r} has no [C, H, W] output to show as maps; probe-able layers near it: "
            f"{', '.join(close) or 'none'} (all of them: GET /api/layers)",
            close,
        )

    @torch.inference_mode()
    def probe(self, image: Any, layer: str | None = None) -> ProbeResult:
        """Top classes of a PIL ``image`` and the ``[C, H, W]`` maps of ``layer`` for it."""
        target = self.layer(layer)
        x = self.transform(image)[None].to(self.device)  # [1, 3, H, W]
        if target.name in self.bases:  # the codes of the layer's output, as the dissection encoded it
            rb = self.bases[target.name]
            with self._lock, Trace(self.model, rb.layer, retain_output=True) as trace:
                logits = self.model(x)
            codes = rb.codes(trace.output)[0].numpy()
            return ProbeResult(target.name, self._top(logits), codes, f"{rb.name} codes of {rb.layer}'s output")
        with self._lock:
            values = self.layer_values(target.name)
            trace = Trace(
                self.model,
                values.module if values.values == "pre" else target.name,
                call=values.call,
                retain_input=values.values == "pre",
                retain_output=values.values == "post",
            )
            with trace:
                logits = self.model(x)
        maps = (values.read(trace.input) if values.values == "pre" else trace.output)[0].float().cpu().numpy()
        return ProbeResult(target.name, self._top(logits), maps, values.note)

    def layer_values(self, layer: str):
        """Which values :meth:`probe` shows for ``layer`` (:func:`unitscope.layers.dissection_values`)."""
        from unitscope.layers import dissection_values

        rule = self.layer_rules.get(layer, self.values)
        if (rule, layer) not in self._values:
            self._values[rule, layer] = dissection_values(self.model, layer, rule, device=self.device)
        return self._values[rule, layer]

    def _top(self, logits: Any) -> list[tuple[str, float]]:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            return []  # a backbone without a classifier: maps only
        probs = logits[0].float().softmax(-1)
        top = probs.topk(min(self.topk, probs.numel()))
        return [(self.info.class_name(int(i)), float(p)) for p, i in zip(top.values, top.indices)]
