"""Unit descriptions in plain English, chosen for specificity and scored on held-out images (issue 25).

    from unitscope.describe import describe_run
    describe_run("runs/lite0", layers=["bn2"]).summary()   # writes the catalog table ``descriptions``

The package: ``concepts.py`` (concept masks at a working resolution, derived position masks,
pixel signatures), ``formulas.py`` (formulas of up to three concepts, vectorised beam search),
``defaults.py`` (every default, import-free), ``phrases.py`` (formulas as English), ``select.py`` (MILAN's PMI choice), ``scores.py`` (F1,
IoU, AUPRC, Pearson simulation with base rates and permutation p-values), ``exemplars.py``
(top images, unit maps and masks: ``unitscope.exemplars``), ``run.py`` (a dissection run folder in,
catalog rows out, a ``DescribeResult`` with ``summary()``: ``result.py``), ``tables.py`` (the catalog
table), ``search.py`` (text search over units).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unitscope.plugins import lazy_exports

# ``exemplars`` names the module here (``from unitscope.describe import exemplars as ex``); the
# function is ``unitscope.exemplars``
_FROM = {"describe_run": "run", "DescribeResult": "result", "Exemplars": "exemplars", "search_units": "search"}

if TYPE_CHECKING:
    from unitscope.describe.exemplars import Exemplars
    from unitscope.describe.result import DescribeResult
    from unitscope.describe.run import describe_run
    from unitscope.describe.search import search_units


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


__all__ = ["DescribeResult", "Exemplars", "describe_run", "search_units"]
