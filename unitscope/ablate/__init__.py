"""What a network does with its units: ablation, per-class importance, cumulative ablation curves,
class selectivity, steering and unit-targeted adversarial inputs.

    from unitscope.ablate import ablate_layer, cut_model, cache_layer, unit_importance
    ablate_layer(model, "features.8", data, "runs/scenes").summary()   # every stage, resumable
    cut = cut_model(model, "features.8")                      # cache the layer, run only the rest
    train = cache_layer(cut, data, train_positions)
    imp = unit_importance(cut, train, class_of_output, num_classes)   # imp.drop [C, Y]

Modules: ``cut`` (torch.fx head/tail split), ``evaluate`` (batched edits of ``unitscope.edits`` ->
a pluggable scorer, e.g. confusion counts -> metrics), ``importance``, ``curves``, ``selectivity``,
``steer``, ``attack``, ``split`` (labelled data and the train/val rule), ``experiment`` (the whole
run: catalog, arrays, report), ``result`` (``ablate_layer`` and its ``AblationResult``), ``tables``
(the catalog tables, torch-free: this package loads its modules on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unitscope.plugins import lazy_exports

_FROM = {
    "ablation_curves": "curves",
    "curve_area": "curves",
    "CutCache": "cut",
    "FxCut": "cut",
    "HookCut": "cut",
    "cut_model": "cut",
    **{
        name: "evaluate"
        for name in (
            "Confusion",
            "Edits",
            "LayerCache",
            "Predictions",
            "Scorer",
            "apply_edits",
            "cache_layer",
            "confusion",
            "metrics",
            "run_edits",
            "unit_moments",
        )
    },
    "Importance": "importance",
    "top_n_test": "importance",
    "unit_importance": "importance",
    "class_means": "selectivity",
    "class_selectivity": "selectivity",
    "correlation": "selectivity",
    "AblationResult": "result",
    "ablate_layer": "result",
    "experiment_result": "result",
}

if TYPE_CHECKING:
    from unitscope.ablate.curves import ablation_curves, curve_area
    from unitscope.ablate.cut import CutCache, FxCut, HookCut, cut_model
    from unitscope.ablate.evaluate import (
        Confusion,
        Edits,
        LayerCache,
        Predictions,
        Scorer,
        apply_edits,
        cache_layer,
        confusion,
        metrics,
        run_edits,
        unit_moments,
    )
    from unitscope.ablate.importance import Importance, top_n_test, unit_importance
    from unitscope.ablate.result import AblationResult, ablate_layer, experiment_result
    from unitscope.ablate.selectivity import class_means, class_selectivity, correlation


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


__all__ = [
    "AblationResult",
    "ablate_layer",
    "experiment_result",
    "ablation_curves",
    "curve_area",
    "CutCache",
    "FxCut",
    "HookCut",
    "cut_model",
    "Edits",
    "LayerCache",
    "apply_edits",
    "cache_layer",
    "confusion",
    "metrics",
    "unit_moments",
    "run_edits",
    "Scorer",
    "Confusion",
    "Predictions",
    "Importance",
    "top_n_test",
    "unit_importance",
    "class_means",
    "class_selectivity",
    "correlation",
]
