"""Cost of streaming statistics on a traced layer, against the bare forward pass.

    python benchmarks/bench_trace_stats.py [--layer blocks.4] [--batch 16] [--batches 6]

EfficientNet-Lite0 at 224 px on random inputs: times the bare forward pass, and the forward pass
with one layer traced into Quantile + TopK, alternating the two on the same batches (so load from
other processes hits both alike), and prints images/s for each, the ratio, and the statistics'
own time (fastest batch of each). Target: statistics add at most 15% to the forward time.
"""

from __future__ import annotations

import argparse
import time

import torch

from unitscope.hooks import Trace
from unitscope.models import create_model
from unitscope.stats import CombinedStat, Quantile, TopK


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="blocks.4", help="a mid layer: 14x14x112 at 224 px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0")
    images = [torch.randn(args.batch, 3, args.size, args.size) for _ in range(args.batches)]
    stat = CombinedStat(q=Quantile(), top=TopK(15))
    bare_s, traced_s, add_s = [], [], []
    with torch.no_grad():
        model(images[0])  # warm-up
        for i, x in enumerate(images):
            t0 = time.perf_counter()
            model(x)
            bare_s.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            with Trace(model, args.layer) as tr:
                model(x)
            t1 = time.perf_counter()
            acts = tr.output  # [N, C, H, W]
            stat.q.add(acts)
            stat.top.add(acts, torch.arange(i * args.batch, (i + 1) * args.batch))
            t2 = time.perf_counter()
            traced_s.append(t2 - t0)
            add_s.append(t2 - t1)

    n, c, h, w = acts.shape
    # the fastest batch of each kind: other processes on a shared CPU only ever add time
    bare, traced, add = (min(s) for s in (bare_s, traced_s, add_s))
    print(f"layer {args.layer}: activations [{n}, {c}, {h}, {w}] per batch, {torch.get_num_threads()} threads")
    print(f"bare forward        {args.batch / bare:8.1f} images/s  ({bare * 1000:.0f} ms/batch, fastest)")
    print(f"forward + stats     {args.batch / traced:8.1f} images/s  ({traced * 1000:.0f} ms/batch)")
    print(f"statistics alone    {add * 1000:8.1f} ms/batch  ({n * h * w * c / add / 1e6:.0f} M values/s)")
    print(f"ratio (with stats / bare): {traced / bare:.3f}   stats / bare forward: {add / bare:.1%}")
    print(f"quantile 0.995 of units 0-3: {stat.q.quantiles(0.995)[:4].tolist()}")


if __name__ == "__main__":
    main()
