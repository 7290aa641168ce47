"""Catalog tables of the ablation experiments (importing this module declares them).

- ``unit_importance(model, layer, unit, class, accuracy_drop, probability_drop)`` -- one row per
  unit and class: the class's train-split accuracy with the unit minus without it (positive:
  removing it hurts); ``probability_drop`` the same for the mean softmax mass on the class's own
  outputs, which ranks units whose removal changes no prediction (ties in ``accuracy_drop``)
- ``unit_selectivity(model, layer, unit, selectivity, top_class)`` -- Morcos' class selectivity
- ``ablation_layers(model, layer, units, train_images, val_images, base_accuracy, val_accuracy,
  mode, seeds, cut)`` -- what was run; ``cut`` says whether the fx tail or the hook fallback ran
- ``ablation_topn(model, layer, class, n, kind, class_accuracy, other_accuracy, class_balanced)``
  -- val split; ``kind`` is remove (the class's top n), keep (only them), random (n at random)
- ``ablation_curves(model, layer, mode, seed, fraction, accuracy)`` -- cumulative ablation (val)
- ``ablation_steering(model, layer, source, target, units, images, flip_rate, base_rate)``
- ``ablation_attacks(model, layer, method, epsilon, images, success_rate, max_linf, moved_units,
  source_shift, target_shift)`` -- ``moved_units`` the five units moved most, comma-separated
- ``ablation_examples(model, layer, kind, rank, path, caption)`` -- before/after images (PNG)
"""

from __future__ import annotations

from unitscope.catalog import define_table

_UNIT = (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"))
_LAYER = (("model", "TEXT"), ("layer", "TEXT"))

define_table(
    "unit_importance",
    _UNIT + (("class", "TEXT"), ("accuracy_drop", "REAL"), ("probability_drop", "REAL")),
    ("model", "layer", "unit", "class"),
    indexes={"unit_importance_class": ("class", "model", "layer", "accuracy_drop")},
)
define_table("unit_selectivity", _UNIT + (("selectivity", "REAL"), ("top_class", "TEXT")), ("model", "layer", "unit"))
define_table(
    "ablation_layers",
    _LAYER
    + (
        ("units", "INTEGER"),
        ("train_images", "INTEGER"),
        ("val_images", "INTEGER"),
        ("base_accuracy", "REAL"),
        ("val_accuracy", "REAL"),
        ("mode", "TEXT"),
        ("seeds", "INTEGER"),
        ("cut", "TEXT"),
    ),
    ("model", "layer"),
)
define_table(
    "ablation_topn",
    _LAYER
    + (
        ("class", "TEXT"),
        ("n", "INTEGER"),
        ("kind", "TEXT"),
        ("class_accuracy", "REAL"),
        ("other_accuracy", "REAL"),
        ("class_balanced", "REAL"),
    ),
    ("model", "layer", "class", "n", "kind"),
)
define_table(
    "ablation_curves",
    _LAYER + (("mode", "TEXT"), ("seed", "INTEGER"), ("fraction", "REAL"), ("accuracy", "REAL")),
    ("model", "layer", "mode", "seed", "fraction"),
)
define_table(
    "ablation_steering",
    _LAYER
    + (
        ("source", "TEXT"),
        ("target", "TEXT"),
        ("units", "INTEGER"),
        ("images", "INTEGER"),
        ("flip_rate", "REAL"),
        ("base_rate", "REAL"),
    ),
    ("model", "layer", "source", "target"),
)
define_table(
    "ablation_attacks",
    _LAYER
    + (
        ("method", "TEXT"),
        ("epsilon", "REAL"),
        ("images", "INTEGER"),
        ("success_rate", "REAL"),
        ("max_linf", "REAL"),
        ("moved_units", "TEXT"),
        ("source_shift", "REAL"),
        ("target_shift", "REAL"),
    ),
    ("model", "layer", "method", "epsilon"),
)
define_table(
    "ablation_examples",
    _LAYER + (("kind", "TEXT"), ("rank", "INTEGER"), ("path", "TEXT"), ("caption", "TEXT")),
    ("model", "layer", "kind", "rank"),
)

TABLES = (
    "unit_importance",
    "unit_selectivity",
    "ablation_layers",
    "ablation_topn",
    "ablation_curves",
    "ablation_steering",
    "ablation_attacks",
    "ablation_examples",
)
