"""Where a dissection's activations and labels come from: two small interfaces.

    acts = ModelActivations(model, dataset, ["blocks.6"])   # images through a model
    labels = BrodenLabels(dataset)                          # Broden label planes
    result = dissect_sources(acts, labels, "runs/x")        # the engine, whatever the sources

An :class:`ActivationSource` names positions ``0..n-1``; per position it loads what the forward
pass needs (in a DataLoader worker), and per batch it returns every layer's maps ``[N, C, h, w]``.
Images through a model today; z vectors through a generator fit the same shape. A
:class:`LabelSource` gives per-position label planes in Broden numbering (``labels [K, S, S']``,
``image_labels [M]``, ``category_present [G]``); Broden planes today, a segmenter's output on the
images of the batch later (``label_batch`` runs after ``activations``; ``needs_forward = True``
makes pass 2 run the source even when the activations are cached).
"""

from __future__ import annotations

import json
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unitscope.data.broden import BrodenDataset
from unitscope.hooks import TraceDict, tokens_to_map
from unitscope.layers import LayerValues, list_layers, resolve_layer
from unitscope.models import get_info
from unitscope.runs import BAD_IMAGES, atomic_write_text

Batch = dict[str, Any]


class ActivationSource(ABC):
    """Activations of ``layers`` at positions ``0..len-1``."""

    layers: list[str]
    model_name: str = "model"  # the name the catalog records

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """``{layer: (C, h, w)}``; raises a clear error for a layer that cannot be dissected."""

    @abstractmethod
    def load(self, pos: int) -> dict[str, Any]:
        """What position ``pos`` contributes to a batch (runs in a DataLoader worker)."""

    @abstractmethod
    def activations(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{layer: [N, C, h, w] float}`` for a collated batch (``batch["pos"]`` its positions)."""

    @abstractmethod
    def key(self) -> dict[str, Any]:
        """JSON-able facts the activations depend on (model, layers, data, image size, transform)."""

    def index(self, pos: int) -> int:
        """The data set's own number of position ``pos`` (what the catalog records)."""
        return pos

    def values(self) -> dict[str, LayerValues]:
        """Per layer, which values :meth:`activations` returns (default: the layer's output)."""
        return {layer: LayerValues(layer, "post", "layer output") for layer in self.layers}

    def picture(self, pos: int) -> Any:
        """A PIL image of position ``pos`` for exemplar strips."""
        raise NotImplementedError(f"{type(self).__name__} has no pictures; pass exemplar_images=False")


class LabelSource(ABC):
    """Concept labels in Broden numbering: ``label_names [L]`` (0 = none), ``label_category [L]``
    (index into ``categories``, -1 for none)."""

    label_names: list[str]
    label_category: torch.Tensor
    categories: list[str]
    needs_forward: bool = False  # labels come from what ``activations`` puts in the batch: pass 2 runs it
    # ``load`` reads stored arrays (no decoding): cheaper in the main process than a worker process,
    # whose fork makes every page the main process writes while the worker lives a copy-on-write fault
    cheap: bool = False

    @abstractmethod
    def load(self, pos: int) -> dict[str, Any]:
        """``labels [K, S, S']``, ``image_labels [M]``, ``category_present [G]`` of ``pos`` (in a worker)."""

    def label_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``labels [N, K, S, S']``, ``image_labels [N, M]``, ``present [N, G]`` of a batch, after
        :meth:`ActivationSource.activations` ran on it."""
        return batch["labels"], batch["image_labels"], batch["category_present"]


# -- today's sources: images through a model, Broden planes ------------------------------------------

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def check_layers(model: nn.Module, layers: Sequence[str], input_size: Sequence[int]) -> dict[str, tuple[int, int, int]]:
    """Resolve layer names and check each has a spatial map; returns ``{layer: (C, h, w)}``."""
    for layer in layers:
        resolve_layer(model, layer)  # unknown names fail here, with close matches
    infos = {info.name: info for info in list_layers(model, input_size)}
    shapes = {name: info.shape for name, info in infos.items()}
    result = {}
    for layer in layers:
        if infos[layer].calls > 1:
            warnings.warn(
                f"layer {layer!r} runs {infos[layer].calls} times per forward pass (a reused module); "
                "dissection sees its first call",
                stacklevel=2,
            )
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


def _same_maps(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """``a`` and ``b`` equal within ``tol`` of ``b``'s largest finite magnitude (and ``tol``
    relative); NaN and infinities where both have them (the passes name such maps' images)."""
    scale = float(torch.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0).abs().max())
    return torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


class ModelActivations(ActivationSource):
    """Images of a Broden-format ``dataset`` (its first ``n``) through ``model``, traced at ``layers``.

    ``precision``: "float32", or "bfloat16" / "float16" to run the model's forward pass under
    autocast (mixed precision); the maps are turned back to float32 before any statistic sees them,
    so thresholds, top-k and IoU counts are float32 whatever the forward pass ran in.
    ``values``: "auto" returns a layer that ends in a bounded activation (ReLU6, sigmoid, ...)
    before it, as the activation's input (which does not tie at the cap), other layers as they are;
    "pre" every layer before its activation module; "post" every layer's output
    (:func:`unitscope.layers.dissection_values`; :meth:`values` says what each layer got).
    ``memory_format``: the layout the images go into the model in (:meth:`memory_format` says
    which one a run got). "auto" feeds a model with 2-D convolutions ``channels_last`` on a CPU
    where oneDNN runs them (``torch.backends.mkldnn``): 15-32% faster in it (Lite0 to blocks.6,
    ResNet-18/50, VGG-11, MobileNetV3 at batch 32-50 on 2 cores: ``benchmarks/README.md``, round
    23), and leaves any other model or device as it is; a model whose forward pass fails in that
    layout (a ``view`` of a 4-D map), or gives other maps in it than contiguous on two images
    (a kernel that reads the storage as if contiguous), runs contiguous, with a warning. The maps
    come back contiguous either way; they differ from the contiguous layout's by float rounding (a
    sum in another order), never more. "channels_last" or "contiguous" forces one (forced
    channels_last where "auto" would fall back: a ``ValueError`` naming the fix).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Any,
        layers: Sequence[str],
        *,
        device: torch.device | str = "cpu",
        n: int | None = None,
        key: dict[str, Any] | None = None,
        precision: str = "float32",
        values: str = "auto",
        memory_format: str = "auto",
    ):
        from unitscope.layers import VALUES
        from unitscope.models import get_info

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if values not in VALUES:
            raise ValueError(f"values must be one of {', '.join(VALUES)}, got {values!r}")
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
        self.values_rule, self.format_rule = values, memory_format
        self._values: dict[str, LayerValues] | None = None
        self._format: str | None = None
        self.model, self.dataset, self.layers = model, dataset, list(dict.fromkeys(layers))
        self.device = torch.device(device)
        self.precision = precision
        self.n = len(dataset) if n is None else min(n, len(dataset))
        if self.n == 0:
            raise ValueError("the data set is empty")
        self.info = get_info(model)
        self.model_name = self.info.name
        self.extra_key = dict(key or {})
        self._shapes: dict[str, tuple[int, int, int]] | None = None
        self._image_size: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return self.n

    def _get(self, pos: int, image: bool) -> dict[str, Any]:
        get = getattr(self.dataset, "get", None)
        return get(pos, image=image, labels=False) if get else self.dataset[pos]

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        if self._shapes is None:
            # layer shapes from the images the model will really see (its transform may resize them)
            self._image_size = tuple(self._get(0, image=True)["image"].shape)
            self._shapes = check_layers(self.model, self.layers, self._image_size)
        return self._shapes

    def values(self) -> dict[str, LayerValues]:
        if self._values is None:
            from unitscope.layers import dissection_values

            self.shapes()
            self._values = {
                layer: dissection_values(self.model, layer, self.values_rule, self._image_size, self.device)
                for layer in self.layers
            }
        return self._values

    def memory_format(self) -> str:
        """The layout the images go into the model in, "channels_last" or "contiguous" (the
        ``memory_format`` rule resolved for this model and device, once)."""
        if self._format is None:
            self._format = self._resolve_format()
        return self._format

    def _resolve_format(self) -> str:
        self.shapes()
        rule = self.format_rule
        if rule == "contiguous" or len(self._image_size or ()) != 3:  # channels_last is a layout of 4-D input
            return "contiguous"
        if rule == "auto" and (  # measured where oneDNN runs the CPU's convolutions, not elsewhere
            self.device.type != "cpu"
            or not torch.backends.mkldnn.is_available()
            or not any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        ):
            return "contiguous"
        image = self._get(0, image=True)["image"]
        probe = torch.stack([image, image]).to(self.device)
        try:  # the forward pass up to the layers, as the passes run it, on two images in each layout
            plain = self._forward(probe, None)
        except Exception:  # noqa: BLE001 - it fails whatever the layout: the passes raise its error
            return "contiguous" if rule == "auto" else rule
        try:
            last = self._forward(probe.contiguous(memory_format=torch.channels_last), None)
        except Exception as e:  # noqa: BLE001 - a view of a 4-D map, a check of the strides, ...
            first = next(iter(str(e).splitlines()), "")  # a long message's first line
            problem, cause = f"fails on channels_last input ({type(e).__name__}: {first})", e
        else:  # a kernel that reads the storage as if contiguous: other maps, silently
            # the layouts differ by float rounding: at most 2e-6 of a map's largest value in float32,
            # 1.4e-2 under bfloat16 autocast (Lite0's demo layers and blocks.6, ResNet-18 layer4,
            # VGG-11, 8 images); a misread layout moves values by as much as that largest value
            tol = 1e-3 if self.precision == "float32" else 0.1
            wrong = [layer for layer in self.layers if not _same_maps(last[layer], plain[layer], tol)]
            if not wrong:
                return "channels_last"
            problem, cause = f"gives other maps on channels_last input (at {', '.join(wrong)})", None
        if rule == "channels_last":
            raise ValueError(
                f"{self.model_name}'s forward pass {problem}; dissect it with memory_format='contiguous' (or 'auto')"
            ) from cause
        warnings.warn(
            f"{self.model_name}'s forward pass {problem}, so it runs on contiguous input (its convolutions "
            "slower on the CPU)",
            stacklevel=2,
        )
        return "contiguous"

    def load(self, pos: int) -> dict[str, Any]:
        item = self._get(pos, image=True)
        return {"index": item["index"], "image": item["image"]}

    @torch.no_grad()
    def activations(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = batch["image"].to(self.device, non_blocking=True)  # pinned under CUDA
        last = self.memory_format() == "channels_last"
        return self._forward(
            images.contiguous(memory_format=torch.channels_last) if last else images, batch["index"], last
        )

    @torch.no_grad()
    def _forward(self, images: torch.Tensor, index: Any, repack: bool = True) -> dict[str, torch.Tensor]:
        """Each layer's maps on ``images``; ``index``: their data set indices, named when a map is not
        finite (None: unchecked, the layout's probe); ``repack``: maps made contiguous."""
        dtype = PRECISIONS[self.precision]
        values = self.values()
        td = TraceDict(
            self.model, [layer for layer in self.layers if values[layer].values == "post"], stop=True, as_map=True
        )
        for layer in self.layers:  # before its activation: the activation module's input
            if values[layer].values == "pre":
                td.add_input(layer, self.model, values[layer].module, values[layer].call)
        with td, torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            self.model(images)
        out = {}
        for layer in self.layers:
            trace = td[layer]
            acts = trace.output.float() if trace.retain_output else values[layer].read(trace.input.float())
            if acts.dim() == 3:  # transformer tokens before their activation
                acts = tokens_to_map(acts)
            # a sum is finite when every value is (10-20x cheaper than isfinite(acts).all() on a
            # batch of the demo's layers); a sum that overflows is checked value by value
            if index is not None and not torch.isfinite(acts.sum()) and not torch.isfinite(acts).all():
                bad = (~torch.isfinite(acts)).flatten(1).any(1).nonzero().flatten().cpu()
                raise ValueError(
                    f"layer {layer!r} produced NaN/inf activations on images "
                    f"{torch.as_tensor(index)[bad].tolist()[:10]}; check the model weights and the "
                    "input normalisation"
                )
            out[layer] = acts.contiguous() if repack else acts  # channels_last maps: in the layout the passes read
        return out

    def key(self) -> dict[str, Any]:
        self.shapes()
        return {
            "model": self.info.name,
            "layers": self.layers,
            "images": self.n,
            "image_size": list(self._image_size or ()),
            "transform": repr(getattr(self.dataset, "transform", None)),
            **({"precision": self.precision} if self.precision != "float32" else {}),  # float32 runs keep their key
            # contiguous runs keep their key; channels_last maps differ from theirs by rounding
            **({"memory_format": "channels_last"} if self.memory_format() == "channels_last" else {}),
            # runs that read every layer's output keep their key; others must not mix with them
            **(
                {"values": {v.layer: v.note for v in self.values().values() if v.values == "pre"}}
                if any(v.values == "pre" for v in self.values().values())
                else {}
            ),
            **self.extra_key,
        }

    def index(self, pos: int) -> int:
        return int(self._get(pos, image=False)["index"])

    def picture(self, pos: int) -> Any:
        return self.dataset.load_image(pos)

    def image_path(self, pos: int) -> Path | None:
        return self.dataset.image_path(pos) if hasattr(self.dataset, "image_path") else None


def model_activations(model: nn.Module, dataset: Any, layers: Sequence[str], opts: Any, key=None) -> ModelActivations:
    """:class:`ModelActivations` with a dissection's settings (``opts``: an
    :class:`~unitscope.dissect.options.Options`): its device, image limit, precision, values and
    memory format."""
    return ModelActivations(
        model,
        dataset,
        layers,
        device=opts.device,
        n=opts.limit,
        key=key,
        precision=opts.precision,
        values=opts.values,
        memory_format=opts.memory_format,
    )


class BrodenLabels(LabelSource):
    """Label planes of a :class:`~unitscope.data.BrodenDataset` (or anything with its ``get``)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.cheap = getattr(dataset, "label_store", "none") == "fresh"  # planes read from its label store
        self.label_names = list(dataset.label_names)
        self.label_category = torch.as_tensor(dataset.label_category, dtype=torch.long)
        self.categories = list(dataset.categories)

    def load(self, pos: int) -> dict[str, Any]:
        if isinstance(self.dataset, BrodenDataset):  # planes in the store's own narrow type: no widening
            item = self.dataset.get(pos, image=False, labels=True, narrow=True)
        else:
            get = getattr(self.dataset, "get", None)
            item = get(pos, image=False, labels=True) if get else self.dataset[pos]
        return {
            "labels": item["labels"],
            "image_labels": item["image_labels"],
            "category_present": item["category_present"],
        }


# -- loading positions, unreadable items --------------------------------------------------------------


class Items(torch.utils.data.Dataset):
    """Positions ``0..n-1`` with what a pass needs from each source; an item that cannot be read
    comes back as ``{"pos", "error"}`` so that the main process reports it (not a worker)."""

    def __init__(self, n: int, acts: ActivationSource | None = None, labels: LabelSource | None = None):
        self.n, self.acts, self.labels = n, acts, labels

    def __len__(self) -> int:
        return self.n

    @property
    def cheap(self) -> bool:
        """Whether an item costs no decoding (no activation source; labels none or ``cheap``): then the
        main process reads it, and no DataLoader worker is started for it."""
        return self.acts is None and (self.labels is None or self.labels.cheap)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        out: dict[str, Any] = {"pos": pos}
        try:
            if self.acts is not None:
                out.update(self.acts.load(pos))
            if self.labels is not None:
                out.update(self.labels.load(pos))
        except (OSError, ValueError) as exc:  # unreadable image or mask
            return {"pos": pos, "error": self._message(pos, exc)}
        return out

    def _message(self, pos: int, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        path = getattr(self.acts, "image_path", lambda p: None)(pos)
        if path is not None and str(path) not in text:
            text = f"image {path}: {text}"
        return text if path is not None else f"data set item {pos}: {text}"


def collate_items(items: list[dict[str, Any]]) -> Batch:
    """DataLoader collate for :class:`Items`: stacks the readable items; ``batch["bad"]`` lists
    ``(position, message)`` of the unreadable ones."""
    good = [it for it in items if "error" not in it]
    batch = torch.utils.data.default_collate(good) if good else {"pos": torch.zeros(0, dtype=torch.long)}
    batch["bad"] = [(it["pos"], it["error"]) for it in items if "error" in it]
    return batch


class BadImages:
    """Unreadable images met during a run: an error naming the file, or (``skip=True``) a list kept
    in ``run_dir/bad_images.json`` across resumes (rank ``r > 0`` of torchrun: ``bad_images.rank{r}.json``;
    :meth:`gather` reads them all)."""

    def __init__(self, run_dir: Path, skip: bool, rank: int = 0):
        self.run_dir, self.skip = run_dir, skip
        self.path = run_dir / (BAD_IMAGES if rank == 0 else f"bad_images.rank{rank}.json")
        self.items: dict[int, str] = {}
        self.gather()

    def gather(self) -> None:
        """Add what every process listed so far."""
        for path in sorted(self.run_dir.glob("bad_images*.json")):
            self.items.update({int(k): v for k, v in json.loads(path.read_text()).items()})

    def check(self, bad: list[tuple[int, str]]) -> None:
        if not bad:
            return
        if not self.skip:
            more = f" (and {len(bad) - 1} more in this batch)" if len(bad) > 1 else ""
            raise ValueError(
                f"{bad[0][1]}{more}. Replace or remove the file, or pass --skip-bad-images "
                "(skip_bad_images=True) to leave unreadable images out and list them at the end"
            )
        new = {int(p): m for p, m in bad if int(p) not in self.items}
        if new:
            self.items.update(new)
            self._write(self.path)

    def consolidate(self) -> None:
        """One list for the run folder: every process's items into ``bad_images.json`` (rank 0, at the end)."""
        self.gather()
        if self.items:
            self._write(self.run_dir / BAD_IMAGES)
        for path in self.run_dir.glob("bad_images.rank*.json"):
            path.unlink(missing_ok=True)

    def _write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({str(k): v for k, v in sorted(self.items.items())}, indent=1))

    def messages(self) -> list[str]:
        return [self.items[k] for k in sorted(self.items)]
