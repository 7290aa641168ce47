"""Attribution and the Building Blocks of Interpretability for one image.

    from unitscope.attribution import spatial_attribution, channel_attribution, nmf_groups
    heat = spatial_attribution(model, x, "blocks.4.1.bn2", target=207)          # [N, h, w]
    write_explain(model, image, "blocks.4.1.bn2", run_dir)                      # the explain page

``core``: gradient x activation, spatial / channel / layer-to-layer, path-integrated option.
``blocks``: semantic dictionary, NMF neuron groups (scikit-learn), activation grid, feature inversion.
``page``: ``unitscope explain``'s static offline page (``explain`` returns an ``ExplainResult``:
``result``). ``tables``: the catalog tables, torch-free
(this package loads its modules on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unitscope.plugins import lazy_exports

_FROM = {
    **{
        name: "blocks"
        for name in (
            "activation_grid",
            "feature_inversion",
            "group_icons",
            "layer_activations",
            "nmf_groups",
            "semantic_dictionary",
        )
    },
    **{
        name: "core"
        for name in ("attribution_map", "channel_attribution", "gradients", "layer_to_layer", "spatial_attribution")
    },
    "ExplainResult": "result",
    "explain": "page",
    "write_explain": "page",
}

if TYPE_CHECKING:
    from unitscope.attribution.blocks import (
        activation_grid,
        feature_inversion,
        group_icons,
        layer_activations,
        nmf_groups,
        semantic_dictionary,
    )
    from unitscope.attribution.core import (
        attribution_map,
        channel_attribution,
        gradients,
        layer_to_layer,
        spatial_attribution,
    )
    from unitscope.attribution.page import explain, write_explain
    from unitscope.attribution.result import ExplainResult


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


__all__ = [
    "ExplainResult",
    "explain",
    "write_explain",
    "activation_grid",
    "attribution_map",
    "channel_attribution",
    "feature_inversion",
    "gradients",
    "group_icons",
    "layer_activations",
    "layer_to_layer",
    "nmf_groups",
    "semantic_dictionary",
    "spatial_attribution",
]
