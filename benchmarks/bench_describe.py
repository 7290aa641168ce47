"""Time ``unitscope describe`` on one layer of a dissection run, stage by stage.

    python benchmarks/bench_describe.py RUN --layer bn2        # e.g. Lite0 on a 1,000-image photo world
    python benchmarks/bench_describe.py RUN --layer bn2 --draws 20 --beam 10

RUN is a dissection made with ``--keep-cache``. Prints the seconds of each stage -- concepts of
every image as pixel signatures, the exemplar search (top images, masks, counts, beam search,
PMI over the pooled formulas), the fair single labels' choice on the search images, the held-out
scores of the four kinds (pmi, ml, fair_label, label) with their permutation nulls -- and the
total against the issue's target (Lite0 ``bn2``, 1,280 units, 1,000 images: 10 minutes on the
2-core CPU). ``--write`` also writes the rows into RUN's catalog.

    python benchmarks/bench_describe.py RUN --layer features.relu5 --captions-only --captioner default --search lumber

``--captioner`` also times the exemplar captioner on every unit of the layer (its top 15 search
images and masks; no labels); ``--search`` times one text search of the run's descriptions without
and with sentence embeddings (the model load included); ``--captions-only`` skips the label-based
descriptions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from unitscope.describe import exemplars as ex
from unitscope.describe import run as R
from unitscope.describe import tables  # noqa: F401  (declares the table)

TARGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--layer", default="bn2")
    ap.add_argument("--draws", type=int, default=R.DRAWS)
    ap.add_argument("--beam", type=int, default=R.BEAM)
    ap.add_argument("--write", action="store_true", help="also write the rows into RUN's catalog")
    ap.add_argument("--captioner", help="also time this captioner (default or file.py:factory) on every unit")
    ap.add_argument("--captions-only", action="store_true", help="skip the label-based descriptions")
    ap.add_argument("--search", help="also time a text search for this query (without and with embeddings)")
    args = ap.parse_args()
    if args.captioner:
        bench_captioner(Path(args.run), args.layer, args.captioner)
    if args.search:
        bench_search(Path(args.run), args.search)
    if args.captions_only:
        return
    run = Path(args.run)
    opts = R.Options(draws=args.draws, beam=args.beam, progress=True)  # progress: each stage's seconds
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    n = ex.num_images(run, args.layer)
    rc = R.load_concepts(run, n, opts)
    t1 = time.perf_counter()
    model = R.model_name(run)
    rows = R.describe_layer(run, model, args.layer, rc, opts)
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    units = len(rows["pmi"])
    total = t2 - t0
    print(
        f"{args.layer}: {units} units, {n} images ({int(R.held_out(n).sum())} held out), {rc.sigs.size} signatures; "
        f"torch threads {torch.get_num_threads()}, load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"concepts {t1 - t0:.1f} s | search + held-out scores (3 kinds, {args.draws} draws) {t2 - t1:.1f} s | "
        f"total {total:.1f} s against {TARGET_S:.0f} s: {total / TARGET_S:.2f}x the target; process CPU {cpu:.0f} s"
    )
    described = sum(r.get("description") is not None for r in rows["pmi"])
    print(f"{described} of {units} units described")
    if args.write:
        from unitscope.catalog import Catalog

        with Catalog(run / "catalog.sqlite") as cat:
            cat.replace("descriptions", [r for k in rows.values() for r in k], model=model, layer=args.layer)


def bench_captioner(run: Path, layer: str, spec: str) -> None:
    from unitscope.describe.captioner import caption_layer, load_captioner

    load, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
    rows = caption_layer(run, layer, load_captioner(spec))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"captioner {spec} on {layer}: {len(rows)} units in {wall:.1f} s ({1000 * wall / len(rows):.0f} ms a unit), "
        f"process CPU {cpu:.1f} s, load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"{len({r.get('description') for r in rows})} distinct captions"
    )


def bench_search(run: Path, query: str) -> None:
    from unitscope.describe.embed import default_embedder
    from unitscope.describe.search import search_units

    for name, embed in (("words + WordNet", False), ("+ embeddings", None)):
        cpu0, t0 = time.process_time(), time.perf_counter()
        if embed is None and default_embedder() is None:
            print("search: the extra `embed` is not installed")
            continue
        hits = search_units(run, query, limit=0, embed=embed)
        print(
            f"search {query!r} ({name}): {len(hits)} hits in {time.perf_counter() - t0:.2f} s, "
            f"process CPU {time.process_time() - cpu0:.2f} s (the first search loads WordNet / the model)"
        )


if __name__ == "__main__":
    main()
