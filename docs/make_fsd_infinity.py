"""FSD and FSD-infinity of a generator against real probe-world images, and the segmenter's own error,
on several z seeds and world seeds (docs/world.md, "FSD free of its sample-size bias").

    python docs/make_fsd_infinity.py [--model world_generator] [--samples 5000] [--z-seeds 20000,30000]
        [--world-seeds 2,3] [--sizes 500,2000,5000] [--cache /tmp/unitscope-worlds]

Each set is segmented once (``--samples`` images); FSD and ``gan_eval.fsd_infinity`` are then taken on
its first N images for every N in ``--sizes``: generated against real (every z seed against every world
seed), the segmenter's own error (segmented against truth, the same images, paired subsets) and two
disjoint real sets (whose true distance is 0: the estimator's own error).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch


def main() -> None:
    from unitscope.models import create_model
    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.gan_eval import frechet_segmentation_distance, fsd_infinity, segment_objects, share_vectors
    from unitscope.organisms.nets import generate
    from unitscope.segment import create_segmenter

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="world_generator", help="a registered generator or file.py:factory")
    p.add_argument("--segmenter", default="world_segmenter")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--z-seeds", default="20000,30000")
    p.add_argument("--world-seeds", default="2,3")
    p.add_argument("--sizes", default="500,2000,5000")
    p.add_argument("--cache", default="/tmp/unitscope-worlds", help="where held-out worlds are kept")
    args = p.parse_args()
    n, sizes = args.samples, [int(s) for s in args.sizes.split(",")]
    if max(sizes) > n:
        raise SystemExit(f"--sizes go up to {max(sizes)}, more than --samples {n}")
    t0, c0 = time.perf_counter(), time.process_time()
    seg = create_segmenter(args.segmenter)
    g = create_model(args.model)
    real, truth, fake = {}, {}, {}
    for w in (int(s) for s in args.world_seeds.split(",")):
        arr = world_arrays(args.cache, w, n, 64)
        real[w] = share_vectors(segment_objects(seg, torch.from_numpy(arr["rgb"]).permute(0, 3, 1, 2).float() / 255))
        truth[w] = share_vectors(arr["object"])
    for z in (int(s) for s in args.z_seeds.split(",")):
        fake[z] = share_vectors(segment_objects(seg, generate(g, n, seed=z)))
    print(f"segmented in {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")

    def row(name: str, a, b, paired: bool = False) -> None:
        cells = []
        for m in sizes:
            r = fsd_infinity(a[:m], b[:m], paired=paired)
            cells.append(f"{frechet_segmentation_distance(a[:m], b[:m]):.2f} / {r['fsd_infinity']:.2f} +-{r['sd']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("| FSD / FSD-infinity | " + " | ".join(f"{m:,} images" for m in sizes) + " |")
    print("|---" * (1 + len(sizes)) + "|")
    for z, w in itertools.product(fake, real):
        row(f"generated z {z} against real seed {w}", fake[z], real[w])
    for w in real:
        row(f"segmenter's own error, seed {w}", real[w], truth[w], paired=True)
    for v, w in itertools.combinations(real, 2):
        row(f"two real sets, seeds {v} and {w} (segmented)", real[v], real[w])
        row(f"two real sets, seeds {v} and {w} (truth)", truth[v], truth[w])


if __name__ == "__main__":
    main()
