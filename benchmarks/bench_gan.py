"""Cost of a generator dissection and of a removal curve on ``world_generator`` + ``world_segmenter``.

    python benchmarks/bench_gan.py [--samples 1000] [--removal-samples 1000] [--layer relu2] [--out DIR]

1. Dissect ``--samples`` generated samples at the generator's 4 layers (relu1-relu4) with the
   dissection engine (``GeneratorActivations`` + ``SegmenterLabels``, top 1%, no exemplar strips).
2. The removal curve of one concept (``--concept``, default sky) over ``--removal-samples`` other
   samples: the layers before ``--layer`` run once (the torch.fx cut), then k = 1, 2, 5, 10, 20, 30
   of the concept's units by IoU and one random draw of as many, through the tail only; beside it
   the cost of the head alone and of one full forward pass, to show the cut's saving.

Prints wall and CPU seconds of each step, the load average, and a linear extrapolation to the
issue's 10,000 samples (labelled as such: the dissection's three passes are linear in samples).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch


def cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(label: str, fn):
    w0, c0 = time.perf_counter(), cpu()
    out = fn()
    wall, used = time.perf_counter() - w0, cpu() - c0
    print(f"{label}: {wall:.1f} s wall, {used:.1f} s CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    return out, wall, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--removal-samples", type=int, default=1000)
    ap.add_argument("--layer", default="relu2")
    ap.add_argument("--concept", default="sky")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from unitscope.ablate import cut_model
    from unitscope.dissect import Options, dissect_sources
    from unitscope.gan import GeneratorActivations, SegmenterLabels, cache_samples, removal_curve
    from unitscope.models import create_model
    from unitscope.organisms.nets import GENERATOR_LAYERS
    from unitscope.segment import create_segmenter

    g, seg = create_model("world_generator"), create_segmenter("world_segmenter")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_gan_"))
    print(f"torch threads {args.threads}; load before {os.getloadavg()}")
    acts = GeneratorActivations(g, list(GENERATOR_LAYERS), n=args.samples, seed=0)
    opts = Options(quantile=0.01, batch_size=50, exemplar_images=False, progress=False, null_draws=8)
    result, wall, used = timed(
        f"dissect {args.samples} samples at {', '.join(GENERATOR_LAYERS)}",
        lambda: dissect_sources(acts, SegmenterLabels(seg), out / "dissect", opts),
    )
    scale = 10_000 / args.samples
    print(
        f"  extrapolated (linear, not measured) to 10,000 samples: {wall * scale:.0f} s wall, {used * scale:.0f} s CPU"
    )
    d = result.layers[args.layer]
    order = _order(d, args.concept)
    print(f"  {args.layer}: {d.summary()}; '{args.concept}' order by IoU starts {order[:5]}")

    cut = cut_model(g, args.layer)
    z = torch.randn(args.removal_samples, 64)
    _, head_wall, _ = timed(
        f"head (layers before {args.layer}) over {args.removal_samples} samples, once",
        lambda: cache_samples(cut, g, n=args.removal_samples, seed=1, batch_size=100),
    )
    samples = cache_samples(cut, g, n=args.removal_samples, seed=1, batch_size=100)
    with torch.no_grad():
        timed(
            f"one full forward pass over {args.removal_samples} samples",
            lambda: [g(z[s : s + 100]) for s in range(0, len(z), 100)],
        )
        timed(
            f"the segmenter over {args.removal_samples} samples (one edit's scoring)",
            lambda: [seg.segment(g(z[s : s + 100])) for s in range(0, len(z), 100)],
        )
    ks = (1, 2, 5, 10, 20, 30)
    removal, wall, used = timed(
        f"removal curve, {len(ks)} k + {len(ks)} random + the unedited: "
        f"{2 * len(ks) + 1} tail passes x {args.removal_samples} samples",
        lambda: removal_curve(cut, samples, seg, order, args.concept, ks=ks, random_draws=1, max_batch=500),
    )
    print(f"  {removal.summary(20)}")
    print(f"  per edit and sample: {1000 * wall / (2 * len(ks) + 1) / args.removal_samples:.2f} ms wall")


def _order(d, concept: str) -> list[int]:
    """Units of the layer by IoU with ``concept`` (best first)."""
    import numpy as np

    col = d.label_names.index(concept)
    return [int(u) for u in np.argsort(-np.asarray(d.iou)[:, col], kind="stable")]


if __name__ == "__main__":
    main()
