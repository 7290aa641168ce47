"""The settings of one dissection, each default and help text once (import-free: the CLI reads them
at start-up, ``unitscope dissect``'s options are derived from these fields).

    from unitscope.dissect import Options, dissect
    dissect(model, data, layers, "runs/a", Options(quantile=0.01), topk=5)   # overrides by field name
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from unitscope.errors import UsageError


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass
class Options:
    """The settings of one dissection (see :func:`unitscope.dissect.dissect`); build by keyword."""

    quantile: float = field(
        default=0.005, metadata=_help("top fraction of activations that forms a unit's mask (paper: 0.005)")
    )
    iou_threshold: float = field(
        default=0.04, metadata=_help("a unit is a detector when its IoU is above this (IoU > 0.04, as in the paper)")
    )
    topk: int = field(default=10, metadata=_help("exemplar images per unit"))
    rotations: int = field(
        default=0, metadata=_help("also dissect this many random rotations of each layer (grandmother-neuron check)")
    )
    seed: int = field(default=0, metadata=_help("seed of the random rotations and of the significance null"))
    basis: list[str] = field(
        default_factory=list,
        metadata=_help(
            "also dissect bases of each layer, fitted on its outputs: units (its channels), rotation, pca, whiten, ica, "
            "nmf, sae, each with options as name:option=value (sae:expansion=4:k=8; see docs/bases.md); each basis's "
            "directions become a layer LAYER#NAME (default: the units alone)"
        ),
    )
    null_draws: int = field(
        default=8,
        metadata=_help(
            "draws of the chance null (masks matched to other images) behind the p-value of each unit above the "
            "IoU cut-off; 0 = no p-values"
        ),
    )
    denominator: str = field(
        default="annotated",
        metadata=_help(
            "unit area per category over images where it is 'annotated', or only where the mask 'overlap's a "
            "pixel of it (NetDissect-Lite's rule)"
        ),
    )
    values: str = field(
        default="auto",
        metadata=_help(
            "values thresholded and ranked: auto (a layer that ends in a bounded activation such as ReLU6 or sigmoid "
            "before it, where its output does not tie at the cap; others as they are), pre (every layer before its "
            "activation module) or post (every layer's output)"
        ),
    )
    precision: str = field(
        default="float32",
        metadata=_help(
            "the forward pass in float32, or under autocast in bfloat16 / float16 (statistics stay float32); "
            "compare a mixed-precision run's labels with a float32 run before relying on it"
        ),
    )
    memory_format: str = field(
        default="auto",
        metadata=_help(
            "the layout images go into the model in: auto (channels_last for a model with 2-D convolutions on the CPU, "
            "where they run a sixth to a quarter faster; contiguous elsewhere, or where the model's forward pass fails "
            "in it), channels_last or contiguous"
        ),
    )
    limit: int | None = field(default=None, metadata=_help("use only the first N images"))
    batch_size: int = field(default=32, metadata=_help("images per batch"))
    num_workers: int | str = field(
        default=0,
        metadata=_help(
            "DataLoader worker processes: a number (0: load in the main process) or auto (min(cores - 1, 8), "
            "shared among torchrun's ranks on the machine)"
        ),
    )
    device: Any = field(default="cpu", metadata=_help("torch device, e.g. cpu or cuda"))
    cache_gb: float = field(default=4.0, metadata=_help("disk for cached activations (skips a second forward pass)"))
    checkpoint_every: int = field(
        default=20, metadata=_help("batches between checkpoints (a rerun resumes from the last)")
    )
    exemplar_images: bool = field(default=True, metadata=_help("draw the exemplar strips of the unit cards"))
    keep_cache: bool = field(
        default=False,
        metadata=_help(
            "keep the activation cache in the run folder for other analyses (unitscope.dissect.open_activation_cache)"
        ),
    )
    skip_bad_images: bool = field(
        default=False,
        metadata=_help("leave unreadable images out and list them at the end, instead of stopping at the first"),
    )
    fresh: bool = field(default=False, metadata=_help("discard earlier results in the run folder and start over"))
    progress: bool = field(default=True, metadata=_help("show progress bars"))


FIELDS = {f.name: f for f in dataclasses.fields(Options)}


def with_overrides(options: Options | None, overrides: dict[str, Any]) -> Options:
    """``options`` (default: ``Options()``) with ``overrides`` by field name; an unknown name is an
    error that names the close matches."""
    for name in overrides:
        if name not in FIELDS:
            close = difflib.get_close_matches(name, list(FIELDS), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(
                f"dissect() got an unknown setting {name!r}; {hint}the settings are the fields of "
                f"unitscope.dissect.Options: {', '.join(FIELDS)}"
            )
    return dataclasses.replace(options if options is not None else Options(), **overrides)
