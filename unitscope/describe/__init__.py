"""Unit descriptions in plain English, chosen for specificity and scored on held-out images (issue 25).

    from unitscope.describe import describe_run
    describe_run("runs/lite0", layers=["bn2"])      # writes the catalog table ``descriptions``

The package: ``concepts.py`` (concept masks at a working resolution, derived position masks,
pixel signatures), ``formulas.py`` (formulas of up to three concepts, vectorised beam search),
``defaults.py`` (every default, import-free), ``phrases.py`` (formulas as English), ``select.py`` (MILAN's PMI choice), ``scores.py`` (F1,
IoU, AUPRC, Pearson simulation with base rates and permutation p-values), ``exemplars.py``
(top images, unit maps and the 0.99 threshold), ``run.py`` (a dissection run folder in,
catalog rows out), ``tables.py`` (the catalog table), ``search.py`` (text search over units).
"""
