"""Time ``unitscope describe`` on one layer of a dissection run, stage by stage.

    python benchmarks/bench_describe.py RUN --layer bn2        # e.g. Lite0 on a 1,000-image photo world
    python benchmarks/bench_describe.py RUN --layer bn2 --draws 20 --beam 10

RUN is a dissection made with ``--keep-cache``. Prints the seconds of each stage -- concepts of
every image as pixel signatures, the exemplar search (top images, masks, counts, beam search,
PMI over the pooled formulas), the held-out scores of the three kinds (pmi, ml, label) with
their permutation nulls -- and the total against the issue's target (Lite0 ``bn2``, 1,280 units,
1,000 images: 10 minutes on the 2-core CPU). Writes nothing.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from unitscope.describe import exemplars as ex
from unitscope.describe import run as R

TARGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--layer", default="bn2")
    ap.add_argument("--draws", type=int, default=R.DRAWS)
    ap.add_argument("--beam", type=int, default=R.BEAM)
    args = ap.parse_args()
    run = Path(args.run)
    opts = R.Options(draws=args.draws, beam=args.beam, progress=False)
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    n = ex.num_images(run, args.layer)
    rc = R.load_concepts(run, n, opts)
    t1 = time.perf_counter()
    found = R.search_layer(run, args.layer, rc, opts)
    t2 = time.perf_counter()
    rows = R.describe_layer(run, R.model_name(run), args.layer, rc, opts)  # search again + score + rows
    t3 = time.perf_counter()
    search = t2 - t1
    score = (t3 - t2) - search
    units = len(found["choice"].pmi)
    total = (t1 - t0) + search + score
    print(f"{args.layer}: {units} units, {n} images ({int(R.held_out(n).sum())} held out), "
          f"{rc.sigs.size} signatures, {len(found['pool'].concepts)} pooled formulas; torch threads "
          f"{torch.get_num_threads()}, load {load:.1f}")
    cpu = time.process_time() - cpu0  # all threads; the search ran twice (once timed alone)
    print(f"concepts {t1 - t0:.1f} s | search {search:.1f} s | held-out scores (3 kinds, {args.draws} draws) "
          f"{score:.1f} s | total {total:.1f} s against {TARGET_S:.0f} s: {total / TARGET_S:.2f}x the target; "
          f"process CPU {cpu:.0f} s (search counted twice), load {os.getloadavg()[0]:.1f} at the end")
    described = sum(r.get("description") is not None for r in rows["pmi"])
    print(f"{described} of {units} units described")


if __name__ == "__main__":
    main()
