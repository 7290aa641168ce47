"""Catalog tables of the editing experiment (importing this module declares them; no torch).

- ``edit_units(model, query, layer, unit, rank, description, formula, match, single_accuracy, removed)``
  -- the units whose descriptions match ``query``, in MILAN's order (``rank`` 0 first): by the
  validation accuracy on cue-conflicting images with that unit alone removed, best first;
  ``removed`` is 1 for the first ones, as many as the validation sets chose
- ``edit_results(model, query, kind, draw, units, clean, agree, conflict)`` -- test accuracy with
  nothing removed (``kind`` none), the described units removed (``described``), as many random
  units of the same layers (``random``, ``draw`` 0..4) and as many of the layers' most important
  units (``important``: largest single-unit accuracy drop on clean validation images); ``clean``:
  images without the cue, ``agree``: the cue names the image's scene, ``conflict``: another scene
- ``audit_counts(model, concept, layer, role, name, units, iou_threshold, detectors, significant,
  described)`` -- the auditing experiment (:mod:`unitscope.audit.count`): per layer, the units of
  ``name`` whose dissection label is ``concept`` above the IoU cut-off (``detectors``), those that
  also pass the permutation test (``significant``, NULL without p-values) and those whose ``pmi``
  description asserts it (``described``); ``role`` is ``audited`` (``name`` = ``model``, the run's
  model) or ``reference`` (the unedited model, dissected on the same world)
- ``desc_ablation(model, layer, ordering, seed, fraction, units, accuracy)`` -- cumulative ablation of
  ``layer`` in orders given by its units' descriptions (:mod:`unitscope.audit.analysis`): ``ordering``
  ``unrelated`` (compositional descriptions joining unrelated concepts first), ``single`` (single
  concepts first), ``random`` or a feature ordering (``length_high``, ``f1_low``, ...); the rest of
  the units follow in seed ``seed``'s random order;
  ``units`` removed at ``fraction``, ``accuracy`` on held-out images
- ``desc_ablation_units(model, layer, ordering, unit, rank, description, formula)`` -- the units each
  description ordering puts first, in its order
- ``desc_ablation_summary(model, layer, ordering, metric, images, auc, auc_min, auc_max, auc_lo, auc_hi,
  gap, gap_lo, gap_hi, at_fraction, at_mean, at_min, at_max, ref_mean, ref_min, ref_max)`` -- per
  ordering (also the continuous ``FEATURE_high``/``_low`` ones, :mod:`unitscope.audit.features`):
  the area under the mean curve, its range over seeds and 95 % bootstrap interval over images, the
  gap to ``random`` with its paired interval, and the fraction where the mean curves differ most;
  ``metric`` ``accuracy`` (``desc_ablation.accuracy`` is accuracy) or ``fidelity`` (agreement with
  the unablated model's top-1)
"""

from __future__ import annotations

from unitscope.catalog import define_table

define_table(
    "edit_units",
    (
        ("model", "TEXT"),
        ("query", "TEXT"),
        ("layer", "TEXT"),
        ("unit", "INTEGER"),
        ("rank", "INTEGER"),
        ("description", "TEXT"),
        ("formula", "TEXT"),
        ("match", "REAL"),
        ("single_accuracy", "REAL"),
        ("removed", "INTEGER"),
    ),
    ("model", "query", "layer", "unit"),
)
define_table(
    "edit_results",
    (
        ("model", "TEXT"),
        ("query", "TEXT"),
        ("kind", "TEXT"),
        ("draw", "INTEGER"),
        ("units", "INTEGER"),
        ("clean", "REAL"),
        ("agree", "REAL"),
        ("conflict", "REAL"),
    ),
    ("model", "query", "kind", "draw"),
)

define_table(
    "audit_counts",
    (
        ("model", "TEXT"),
        ("concept", "TEXT"),
        ("layer", "TEXT"),
        ("role", "TEXT"),
        ("name", "TEXT"),
        ("units", "INTEGER"),
        ("iou_threshold", "REAL"),
        ("detectors", "INTEGER"),
        ("significant", "INTEGER"),
        ("described", "INTEGER"),
    ),
    ("model", "concept", "layer", "role"),
)
define_table(
    "desc_ablation",
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("ordering", "TEXT"),
        ("seed", "INTEGER"),
        ("fraction", "REAL"),
        ("units", "INTEGER"),
        ("accuracy", "REAL"),
    ),
    ("model", "layer", "ordering", "seed", "fraction"),
)
define_table(
    "desc_ablation_units",
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("ordering", "TEXT"),
        ("unit", "INTEGER"),
        ("rank", "INTEGER"),
        ("description", "TEXT"),
        ("formula", "TEXT"),
    ),
    ("model", "layer", "ordering", "unit"),
)

define_table(
    "desc_ablation_summary",
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("ordering", "TEXT"),
        ("metric", "TEXT"),
        ("images", "INTEGER"),
        ("auc", "REAL"),
        ("auc_min", "REAL"),
        ("auc_max", "REAL"),
        ("auc_lo", "REAL"),
        ("auc_hi", "REAL"),
        ("gap", "REAL"),
        ("gap_lo", "REAL"),
        ("gap_hi", "REAL"),
        ("at_fraction", "REAL"),
        ("at_mean", "REAL"),
        ("at_min", "REAL"),
        ("at_max", "REAL"),
        ("ref_mean", "REAL"),
        ("ref_min", "REAL"),
        ("ref_max", "REAL"),
    ),
    ("model", "layer", "ordering"),
)

TABLES = ("edit_units", "edit_results")
COUNT_TABLES = ("audit_counts",)
ANALYSIS_TABLES = ("desc_ablation", "desc_ablation_units", "desc_ablation_summary")
ORDERINGS = ("unrelated", "single", "random")
KINDS = ("none", "described", "random", "important")
