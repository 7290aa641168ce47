"""Catalog tables of a generator's causal analyses (importing this module declares them; no torch).

- ``gan_effects(model, layer, analysis, concept, samples, seconds, summary, settings)`` -- one row
  per analysis run (``removal``, ``ace_remove``, ``ace_insert``, ``insertion``, ``artifacts``);
  ``settings`` is the JSON of its options, so a rerun with the same ones is skipped (resume)
- ``gan_removal(model, layer, concept, ranking, k, label, change, ci, before)`` -- the relative
  change of ``label``'s pixel share when the top ``k`` units of ``ranking`` (``iou``, ``ace`` or
  ``random``: the mean of the random draws) are zeroed; ``ci`` the 99% half-width (``random``: the
  spread of the draws is not an interval, so NULL); ``before`` the label's mean share unedited
- ``gan_insertion(model, layer, concept, context, trials, appeared, rate)`` -- insertion in context
- ``gan_unit_effects(model, layer, unit, concept, iou, iou_rank, ace_remove, ace_insert, ace_rank)`` --
  per unit: its IoU with the concept and rank by it, its ACE mask values and rank by removal mask
- ``gan_artifacts(model, layer, unit, gain, gain_all, rank)`` -- realism gain of removing the unit
  on the least realistic samples (``gain``) and on all (``gain_all``), ``rank`` 1 = most artifact-like
- ``gan_examples(model, layer, kind, rank, path, caption, units)`` -- before/after grids (PNG, relative
  to the run folder): ``removal:CONCEPT``, ``insertion:CONCEPT``, ``artifacts``; ``units`` the JSON
  list of the units edited in the grid (NULL in runs made before it was recorded)
"""

from __future__ import annotations

from unitscope.catalog import define_table

_LAYER = (("model", "TEXT"), ("layer", "TEXT"))

define_table(
    "gan_effects",
    _LAYER
    + (
        ("analysis", "TEXT"),
        ("concept", "TEXT"),
        ("samples", "INTEGER"),
        ("seconds", "REAL"),
        ("summary", "TEXT"),
        ("settings", "TEXT"),
    ),
    ("model", "layer", "analysis", "concept"),
)
define_table(
    "gan_removal",
    _LAYER
    + (
        ("concept", "TEXT"),
        ("ranking", "TEXT"),
        ("k", "INTEGER"),
        ("label", "TEXT"),
        ("change", "REAL"),
        ("ci", "REAL"),
        ("before", "REAL"),
    ),
    ("model", "layer", "concept", "ranking", "k", "label"),
)
define_table(
    "gan_insertion",
    _LAYER
    + (("concept", "TEXT"), ("context", "TEXT"), ("trials", "INTEGER"), ("appeared", "INTEGER"), ("rate", "REAL")),
    ("model", "layer", "concept", "context"),
)
define_table(
    "gan_unit_effects",
    _LAYER
    + (
        ("unit", "INTEGER"),
        ("concept", "TEXT"),
        ("iou", "REAL"),
        ("iou_rank", "INTEGER"),
        ("ace_remove", "REAL"),
        ("ace_insert", "REAL"),
        ("ace_rank", "INTEGER"),
    ),
    ("model", "layer", "unit", "concept"),
)
define_table(
    "gan_artifacts",
    _LAYER + (("unit", "INTEGER"), ("gain", "REAL"), ("gain_all", "REAL"), ("rank", "INTEGER")),
    ("model", "layer", "unit"),
)
define_table(
    "gan_examples",
    _LAYER + (("kind", "TEXT"), ("rank", "INTEGER"), ("path", "TEXT"), ("caption", "TEXT"), ("units", "TEXT")),
    ("model", "layer", "kind", "rank"),
)

TABLES = ("gan_effects", "gan_removal", "gan_insertion", "gan_unit_effects", "gan_artifacts", "gan_examples")
