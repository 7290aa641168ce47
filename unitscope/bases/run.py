"""``dissect(..., basis=[...])`` / ``unitscope dissect --basis``: a model's layers and their bases
dissected in one run, the bases' metrics into the catalog (``basis_metrics``, :mod:`.tables`).

    from unitscope.dissect import dissect
    dissect(model, data, ["features.relu5"], "runs/b", basis=["units", "rotation", "pca", "sae:k=8"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from unitscope.dissect.options import Options
from unitscope.runs import CATALOG


def dissect_bases(
    model: nn.Module,
    dataset: Any,
    layers: Sequence[str],
    run_dir: str | Path,
    opts: Options,
    *,
    key: dict | None = None,
    config: dict | None = None,
) -> Any:
    """What :func:`unitscope.dissect.dissect` does when ``opts.basis`` names bases: fit them
    (:func:`.source.fit_layer_bases`), dissect the layers' units (with ``units``) and every basis'
    directions with the same engine, and record the bases' metrics."""
    from unitscope.bases.source import fit_layer_bases, parse_bases
    from unitscope.dissect.distributed import barrier, is_main
    from unitscope.dissect.engine import dissect_sources, record_bases
    from unitscope.dissect.sources import BrodenLabels, model_activations
    from unitscope.layers import check_bases

    specs = parse_bases(opts.basis)  # bad specs fail before anything is written
    model = model.to(opts.device).eval()
    inner = model_activations(model, dataset, layers, opts, key)
    inner.shapes()  # unknown layers fail here

    def fit(fresh: bool) -> Any:
        return fit_layer_bases(
            inner,
            specs,
            run_dir,
            batch_size=opts.batch_size,
            progress=opts.progress,
            fresh=fresh,
            cache_gb=opts.cache_gb,
        )

    # under torchrun rank 0 fits (or loads) the bases over all the data and saves them; the other
    # ranks then load what it saved, and every rank dissects its shard of the same directions
    acts = fit(opts.fresh) if is_main() else None
    barrier()
    if acts is None:
        acts = fit(False)
    main = is_main()
    bases = check_bases(model, [layer for layer in inner.layers if layer in acts.layers]) if main else {}
    result = dissect_sources(acts, BrodenLabels(dataset), run_dir, opts, config=config)
    if main:
        record_bases(Path(run_dir), acts.model_name, bases)
        record_metrics(Path(run_dir), acts.model_name, acts.metrics())
    return result


def record_metrics(run_dir: Path, model_name: str, rows: list[dict[str, Any]]) -> None:
    """The bases' rows into ``basis_metrics``, replacing those of their layers."""
    from unitscope.bases.tables import TABLE
    from unitscope.catalog import Catalog

    with Catalog(run_dir / CATALOG) as cat, cat.transaction():
        for layer in dict.fromkeys(r["base_layer"] for r in rows):
            cat.replace(
                TABLE,
                [
                    {("basis_layer" if k == "layer" else k): v for k, v in r.items() if k != "base_layer"}
                    for r in rows
                    if r["base_layer"] == layer
                ],
                model=model_name,
                layer=layer,
            )
