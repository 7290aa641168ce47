"""Network Dissection (Bau et al., CVPR 2017): label every unit by the concept it detects.

    from unitscope.dissect import dissect
    from unitscope.data import BrodenDataset
    from unitscope.models import create_model, get_info
    model = create_model("efficientnet_lite0")
    data = BrodenDataset("probe-world", transform=get_info(model).transform())
    result = dissect(model, data, ["blocks.4", "blocks.6"], "runs/lite0")
    result.layers["blocks.6"].summary()      # "87 of 320 units are detectors, covering 31 concepts"

The package: ``engine.py`` (the passes as named steps, the run folder), ``sources.py`` (the
ActivationSource and LabelSource interfaces, with today's model-on-images and Broden planes),
``cache.py`` (the activation cache, a run-folder asset: ``open_activation_cache(run, layer)``),
``iou.py`` (the counting kernel), ``results.py`` (per-layer results, catalog rows, saved arrays),
``exemplars.py`` (the strips on unit cards), ``options.py`` (the settings, import-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unitscope.dissect.options import Options
from unitscope.plugins import lazy_exports

# the rest loads on first use (PEP 562), so that the CLI reads ``Options`` without importing torch
_FROM = {
    "ActivationCache": "cache",
    "LayerCache": "cache",
    "open_activation_cache": "cache",
    "RUN_OUTPUTS": "engine",
    "clear_run": "engine",
    "dissect": "engine",
    "dissect_sources": "engine",
    "random_rotation": "engine",
    "rotate": "engine",
    "DissectResult": "results",
    "LayerDissection": "results",
    "label_agreement": "results",
    "load_layer_arrays": "results",
    "summarise": "results",
    "ActivationSource": "sources",
    "BrodenLabels": "sources",
    "LabelSource": "sources",
    "ModelActivations": "sources",
    "check_layers": "sources",
}

if TYPE_CHECKING:
    from unitscope.dissect.cache import ActivationCache, LayerCache, open_activation_cache
    from unitscope.dissect.engine import RUN_OUTPUTS, clear_run, dissect, dissect_sources, random_rotation, rotate
    from unitscope.dissect.results import (
        DissectResult,
        LayerDissection,
        label_agreement,
        load_layer_arrays,
        summarise,
    )
    from unitscope.dissect.sources import ActivationSource, BrodenLabels, LabelSource, ModelActivations, check_layers


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


__all__ = [
    "RUN_OUTPUTS",
    "ActivationCache",
    "ActivationSource",
    "BrodenLabels",
    "DissectResult",
    "LabelSource",
    "LayerCache",
    "LayerDissection",
    "ModelActivations",
    "Options",
    "check_layers",
    "clear_run",
    "dissect",
    "dissect_sources",
    "label_agreement",
    "load_layer_arrays",
    "open_activation_cache",
    "random_rotation",
    "rotate",
    "summarise",
]
