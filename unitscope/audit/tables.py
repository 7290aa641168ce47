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
"""

from __future__ import annotations

from unitscope.catalog import define_table

define_table("edit_units", (("model", "TEXT"), ("query", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"),
                            ("rank", "INTEGER"), ("description", "TEXT"), ("formula", "TEXT"), ("match", "REAL"),
                            ("single_accuracy", "REAL"), ("removed", "INTEGER")),
             ("model", "query", "layer", "unit"))
define_table("edit_results", (("model", "TEXT"), ("query", "TEXT"), ("kind", "TEXT"), ("draw", "INTEGER"),
                              ("units", "INTEGER"), ("clean", "REAL"), ("agree", "REAL"), ("conflict", "REAL")),
             ("model", "query", "kind", "draw"))

TABLES = ("edit_units", "edit_results")
KINDS = ("none", "described", "random", "important")
